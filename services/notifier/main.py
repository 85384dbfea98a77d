"""Composition root of the notifier: history API, admission, status-event consumer."""

from __future__ import annotations

from collections.abc import Callable

from services.notifier import store
from services.notifier.api import build_router, refresh_metrics
from services.notifier.console import CONSOLE_STATIC, build_console
from services.notifier.handlers import STATUS_BINDINGS, NotifierHandlers
from shared.observability import add_refresher
from shared.outbox import Outbox
from shared.web import Runtime, Service, run_service

STATUS_QUEUE = "edt.notifier"


def build(rt: Runtime) -> Service:
    outbox = Outbox(rt.db, store.outbox, rt.bus)
    handlers = NotifierHandlers(rt.db, outbox, rt.settings)
    unregister: list[Callable[[], None]] = []

    async def start() -> None:
        outbox.relay.start_in_background()
        await rt.bus.consume(STATUS_QUEUE, handlers.on_status, bindings=STATUS_BINDINGS)
        await handlers.redispatch()
        # The notifier reads the queues and the imports table: it keeps their gauges fresh for each scrape.
        unregister.append(add_refresher(lambda: refresh_metrics(rt.db, rt.bus)))

    async def stop() -> None:
        for remove in unregister:
            remove()
        await outbox.relay.stop()

    return Service("notifier", build_router(rt.db, rt.bus, rt.blobs, rt.settings, handlers), start, stop,
                   pages=build_console(rt.settings), mounts=[CONSOLE_STATIC])


if __name__ == "__main__":
    run_service("notifier", build)
