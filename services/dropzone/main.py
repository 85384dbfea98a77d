"""Composition root of the dropzone: WebDAV deposit space, REST upload, sites and deposit accounts."""

from __future__ import annotations

import asyncio
from typing import Any

from services.dropzone import store
from services.dropzone.api import build_router
from services.dropzone.handlers import Dropzone, WebdavGate
from shared.bus import Outbox
from shared.messages import NOTIFICATIONS_EXCHANGE, STATUS_EXCHANGE
from shared.web import Runtime, Service, run_service

LIFECYCLE_QUEUE = "edt.dropzone.lifecycle"
NOTIFICATIONS_QUEUE = "edt.dropzone.notifications"


def build(rt: Runtime) -> Service:
    outbox = Outbox(rt.db, store.outbox, rt.bus)
    dropzone = Dropzone(rt.db, rt.blobs, outbox, rt.settings)

    def webdav(loop: asyncio.AbstractEventLoop) -> Any:
        from a2wsgi import WSGIMiddleware

        from services.dropzone.webdav import build_webdav_app

        wsgi = build_webdav_app(rt.settings.data_dir / "webdav", WebdavGate(dropzone), loop,
                                mount_path="/webdav", max_upload_bytes=rt.settings.max_upload_bytes,
                                auth_cache_ttl_s=0)  # the dropzone's own cache sees a new password at once
        # Slow uploads and the failed-login slowdown each hold a worker thread.
        return WSGIMiddleware(wsgi, workers=32)

    async def start() -> None:
        outbox.start()
        await rt.bus.consume(LIFECYCLE_QUEUE, dropzone.on_lifecycle,
                             bindings=((STATUS_EXCHANGE, "import.history.done"),))
        await rt.bus.consume(NOTIFICATIONS_QUEUE, dropzone.on_notification,
                             bindings=((NOTIFICATIONS_EXCHANGE, "threshold.#"),))

    service = Service("dropzone", build_router(rt.db, dropzone, rt.settings), start, outbox.stop,
                      mounts=[("/webdav", webdav)])
    return service


if __name__ == "__main__":
    run_service("dropzone", build)
