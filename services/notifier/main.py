"""Composition root of the notifier: history API, admission, status-event consumer."""

from __future__ import annotations

from services.notifier import store
from services.notifier.api import build_router
from services.notifier.handlers import STATUS_BINDINGS, NotifierHandlers
from shared.outbox import Outbox
from shared.web import Runtime, Service, run_service

STATUS_QUEUE = "edt.notifier"


def build(rt: Runtime) -> Service:
    outbox = Outbox(rt.db, store.outbox, rt.bus)
    handlers = NotifierHandlers(rt.db, outbox, rt.settings)

    async def start() -> None:
        outbox.relay.start_in_background()
        await rt.bus.consume(STATUS_QUEUE, handlers.on_status, bindings=STATUS_BINDINGS)
        await handlers.redispatch()

    return Service("notifier", build_router(rt.db, rt.bus, rt.blobs, rt.settings, handlers), start,
                   outbox.relay.stop)


if __name__ == "__main__":
    run_service("notifier", build)
