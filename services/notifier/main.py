"""Composition root of the notifier: history API, admission, status-event consumer, change events, access
log, privacy requests, console."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from services.notifier import store
from services.notifier.api import build_router, refresh_metrics
from services.notifier.console import CONSOLE_STATIC, build_console
from services.notifier.handlers import (
    ACK_BINDINGS,
    CHANGES_BINDINGS,
    CHANGES_QUEUE,
    DEPOSIT_BINDINGS,
    DEPOSITS_QUEUE,
    ESTABLISHMENT_BINDINGS,
    ESTABLISHMENTS_QUEUE,
    LEASE_BINDINGS,
    STATUS_BINDINGS,
    STATUS_QUEUE,
    NotifierHandlers,
)
from shared.messages import STATUS_EXCHANGE
from shared.observability import add_refresher
from shared.outbox import Outbox, Periodic
from shared.web import Runtime, Service, TokenRevocations, run_service
from shared.worker import PeriodicPurge

EVENTS_PREFETCH = 2
ACCESS_QUEUE = "edt.notifier.access"


def build(rt: Runtime) -> Service:
    outbox = Outbox(rt.db, store.outbox, rt.bus)
    handlers = NotifierHandlers(rt.db, outbox, rt.settings, rt.blobs, bus=rt.bus)

    async def sweep_leases() -> None:
        await handlers.sweep_leases()

    leases = Periodic(sweep_leases, max(0.2, rt.settings.import_lease_s / 4), "import-leases")
    changes_retention = Periodic(handlers.prune_changes, 600.0, "changes-retention")
    retention = PeriodicPurge("notifier", handlers.purge, rt.settings.retention_interval_s)
    unregister: list[Callable[[], None]] = []

    async def start() -> None:
        outbox.relay.start_in_background()
        changes_retention.start_in_background()
        retention.start_in_background()
        await rt.bus.consume(f"edt.notifier.leases.{uuid.uuid4().hex[:12]}", handlers.on_heartbeat,
                             bindings=LEASE_BINDINGS, transient=True, prefetch=16)
        # Two at a time each: the events are applied one by one under the admission lock, and every further
        # one taken would only hold a connection of the pool — the history reads' — waiting for that lock.
        await rt.bus.consume(DEPOSITS_QUEUE, handlers.on_status, bindings=DEPOSIT_BINDINGS, prefetch=EVENTS_PREFETCH)
        await rt.bus.consume(STATUS_QUEUE, handlers.on_status, bindings=STATUS_BINDINGS, prefetch=EVENTS_PREFETCH)
        for exchange, pattern in DEPOSIT_BINDINGS:  # the status queue had them before the deposits had a queue
            await rt.bus.unbind(STATUS_QUEUE, exchange, pattern)
        await rt.bus.consume(ESTABLISHMENTS_QUEUE, handlers.on_establishment, bindings=ESTABLISHMENT_BINDINGS)
        # One at a time: the stream's ids follow the order the scheduler published them in.
        await rt.bus.consume(CHANGES_QUEUE, handlers.on_changes, bindings=CHANGES_BINDINGS, prefetch=1)
        await rt.bus.consume(f"edt.notifier.acks.{uuid.uuid4().hex[:12]}", handlers.on_ack, bindings=ACK_BINDINGS,
                             transient=True)
        await rt.bus.consume(ACCESS_QUEUE, handlers.on_access, bindings=((STATUS_EXCHANGE, "access.*"),))
        # This process's own queue: the answers to the privacy requests it is waiting for.
        await rt.bus.consume(f"edt.notifier.privacy.{uuid.uuid4().hex[:12]}", handlers.on_privacy_reply,
                             bindings=((STATUS_EXCHANGE, "privacy.reply.*"),), transient=True)
        await handlers.redispatch()
        leases.start_in_background()
        # The notifier reads the queues and the imports table: it keeps their gauges fresh for each scrape.
        unregister.append(add_refresher(lambda: refresh_metrics(rt.db, rt.bus)))

    async def stop() -> None:
        for remove in unregister:
            remove()
        await leases.stop()
        await retention.stop()
        await changes_retention.stop()
        await outbox.relay.stop()

    router, fast_reads = build_router(rt.db, rt.bus, rt.blobs, rt.settings, handlers)
    return Service("notifier", router, start, stop, pages=build_console(rt.settings), mounts=[CONSOLE_STATIC],
                   fast_reads=fast_reads,
                   revocations=TokenRevocations(rt.db, store.revoked_tokens, outbox, "notifier"))


if __name__ == "__main__":
    run_service("notifier", build)
