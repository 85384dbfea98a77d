"""Composition root of the dropzone: WebDAV deposit space, REST upload, sites and deposit accounts."""

from __future__ import annotations

import uuid
from pathlib import Path

from services.dropzone import store
from services.dropzone.api import build_router
from services.dropzone.davguard import DepositLocks
from services.dropzone.handlers import Dropzone
from services.dropzone.landings import Landings, WebdavSweeper
from services.dropzone.webdav import webdav_factory
from shared.messages import NOTIFICATIONS_EXCHANGE, STATUS_EXCHANGE, Mode
from shared.outbox import Outbox
from shared.web import Runtime, Service, TokenRevocations, run_service
from shared.worker import PeriodicPurge, PrivacyWorker

LIFECYCLE_QUEUE = "edt.dropzone.lifecycle"
NOTIFICATIONS_QUEUE = "edt.dropzone.notifications"


class WebdavGate:
    """The dropzone as the WebDAV layer's `DepositGate`: a file landed by PUT/MOVE/COPY is an automatic
    import deposited by the account that sent it."""

    def __init__(self, dropzone: Dropzone) -> None:
        self.dropzone = dropzone

    async def authenticate(self, login: str, password: str, client_ip: str) -> str | None:
        return await self.dropzone.authenticate(login, password, client_ip)

    async def establishment_ids(self, site: str) -> list[str] | None:
        ests = await self.dropzone.site_establishments(site)
        return None if ests is None else sorted(ests)

    async def file_read(self, site: str, path: str, login: str) -> None:
        await self.dropzone.file_read(site, path, login)

    async def take_deposit(self, site: str, establishment: str | None, name: str, path: Path, login: str) -> str:
        return await self.dropzone.take_deposit(site, establishment, name, path, source="webdav", account=login,
                                                mode=Mode.AUTO)


def build(rt: Runtime) -> Service:
    outbox = Outbox(rt.db, store.outbox, rt.bus)
    locks = DepositLocks(rt.settings.webdav_lock_timeout_s)
    dropzone = Dropzone(rt.db, rt.blobs, outbox, rt.settings, locks)
    folder = rt.settings.data_dir / "webdav"
    landings = Landings(folder, grace_s=rt.settings.webdav_grace_s, stale_s=rt.settings.webdav_stale_s)
    sweeper = WebdavSweeper(landings)
    privacy = PrivacyWorker("dropzone", dropzone.on_privacy, outbox=outbox, bus=rt.bus, blobs=rt.blobs)
    retention = PeriodicPurge("dropzone", dropzone.purge_now, rt.settings.retention_interval_s)
    webdav = webdav_factory(folder, WebdavGate(dropzone), rt.blobs.keyring, landings, mount_path="/webdav",
                            max_upload_bytes=rt.settings.max_upload_bytes, locks=locks)

    async def start() -> None:
        outbox.relay.start_in_background()
        sweeper.start_in_background()
        retention.start_in_background()
        await rt.bus.consume(LIFECYCLE_QUEUE, dropzone.on_lifecycle,
                             bindings=((STATUS_EXCHANGE, "import.history.#"),))
        await privacy.start()
        await rt.bus.consume(NOTIFICATIONS_QUEUE, dropzone.on_notification,
                             bindings=((NOTIFICATIONS_EXCHANGE, "threshold.#"),))
        # This process's own queue: the acknowledgements of the deposits, revocations and establishments it is
        # answering.
        await rt.bus.consume(f"edt.dropzone.acks.{uuid.uuid4().hex[:12]}", dropzone.on_ack,
                             bindings=((STATUS_EXCHANGE, "deposit.ack.*"), (STATUS_EXCHANGE, "token.ack.*"),
                                       (STATUS_EXCHANGE, "establishment.ack.*")),
                             transient=True)

    async def stop() -> None:
        await retention.stop()
        await sweeper.stop()
        await outbox.relay.stop()

    return Service("dropzone", build_router(rt.db, dropzone, rt.settings), start, stop,
                   mounts=[("/webdav", webdav)],
                   revocations=TokenRevocations(rt.db, store.revoked_tokens, outbox, "dropzone"))


if __name__ == "__main__":
    run_service("dropzone", build)
