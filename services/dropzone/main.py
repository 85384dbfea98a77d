"""Composition root of the dropzone: WebDAV deposit space, REST upload, sites and deposit accounts."""

from __future__ import annotations

import uuid
from pathlib import Path

from services.dropzone import store
from services.dropzone.api import build_router
from services.dropzone.handlers import Dropzone
from services.dropzone.webdav import webdav_factory
from shared.messages import NOTIFICATIONS_EXCHANGE, STATUS_EXCHANGE, Mode
from shared.outbox import Outbox
from shared.web import Runtime, Service, TokenRevocations, run_service

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

    async def take_deposit(self, site: str, establishment: str | None, name: str, path: Path, login: str) -> str:
        return await self.dropzone.take_deposit(site, establishment, name, path, source="webdav", account=login,
                                                mode=Mode.AUTO)


def build(rt: Runtime) -> Service:
    outbox = Outbox(rt.db, store.outbox, rt.bus)
    dropzone = Dropzone(rt.db, rt.blobs, outbox, rt.settings)
    webdav = webdav_factory(rt.settings.data_dir / "webdav", WebdavGate(dropzone), mount_path="/webdav",
                            max_upload_bytes=rt.settings.max_upload_bytes)

    async def start() -> None:
        outbox.relay.start_in_background()
        await rt.bus.consume(LIFECYCLE_QUEUE, dropzone.on_lifecycle,
                             bindings=((STATUS_EXCHANGE, "import.history.done"),))
        await rt.bus.consume(NOTIFICATIONS_QUEUE, dropzone.on_notification,
                             bindings=((NOTIFICATIONS_EXCHANGE, "threshold.#"),))
        # This process's own queue: the acknowledgements of the deposits and revocations it is answering.
        await rt.bus.consume(f"edt.dropzone.acks.{uuid.uuid4().hex[:12]}", dropzone.on_ack,
                             bindings=((STATUS_EXCHANGE, "deposit.ack.*"), (STATUS_EXCHANGE, "token.ack.*")),
                             transient=True)

    return Service("dropzone", build_router(rt.db, dropzone, rt.settings), start, outbox.relay.stop,
                   mounts=[("/webdav", webdav)],
                   revocations=TokenRevocations(rt.db, store.revoked_tokens, outbox, "dropzone"))


if __name__ == "__main__":
    run_service("dropzone", build)
