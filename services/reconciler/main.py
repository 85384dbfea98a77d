"""Composition root of the reconciler service (stage: groups)."""

from __future__ import annotations

from services.reconciler import store
from services.reconciler.api import build_router
from services.reconciler.handlers import LIFECYCLE_KEYS, LIFECYCLE_QUEUE, ReconcilerStage
from shared.establishments import KnownEstablishments
from shared.messages import STATUS_EXCHANGE
from shared.outbox import Outbox
from shared.web import Runtime, Service, TokenRevocations, run_service
from shared.worker import PeriodicPurge, PrivacyWorker, StageWorker


def build(rt: Runtime) -> Service:
    outbox = Outbox(rt.db, store.outbox, rt.bus)
    stage = ReconcilerStage(rt.db, outbox, rt.blobs, rt.settings)
    worker = StageWorker(stage, outbox=outbox, bus=rt.bus, runs=store.runs, aborts=store.aborts,
                         lease_s=rt.settings.import_lease_s)
    privacy = PrivacyWorker("reconciler", stage.on_privacy, outbox=outbox, bus=rt.bus, blobs=rt.blobs)
    retention = PeriodicPurge("reconciler", stage.purge_now, rt.settings.retention_interval_s)

    async def start() -> None:
        outbox.relay.start_in_background()
        retention.start_in_background()
        await privacy.start()
        await rt.bus.consume(LIFECYCLE_QUEUE, stage.on_lifecycle,
                             bindings=tuple((STATUS_EXCHANGE, key) for key in LIFECYCLE_KEYS))
        await worker.start()

    async def stop() -> None:
        await retention.stop()
        await outbox.relay.stop()
        stage.close()

    return Service("reconciler", build_router(rt.db, rt.settings, stage, stage), start, stop,
                   revocations=TokenRevocations(rt.db, store.revoked_tokens, outbox, "reconciler"),
                   establishments=KnownEstablishments(rt.db, store.known_establishments, outbox, "reconciler"))


if __name__ == "__main__":
    run_service("reconciler", build)
