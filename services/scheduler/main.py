"""Composition root of the scheduler service (stage: sessions)."""

from __future__ import annotations

from services.scheduler import store
from services.scheduler.api import build_router
from services.scheduler.handlers import SchedulerStage
from shared.establishments import KnownEstablishments
from shared.outbox import Outbox
from shared.web import Runtime, Service, TokenRevocations, run_service
from shared.worker import PrivacyWorker, StageWorker


def build(rt: Runtime) -> Service:
    outbox = Outbox(rt.db, store.outbox, rt.bus)
    stage = SchedulerStage(rt.db, rt.blobs, rt.settings)
    worker = StageWorker(stage, outbox=outbox, bus=rt.bus, runs=store.runs, aborts=store.aborts,
                         lease_s=rt.settings.import_lease_s)
    privacy = PrivacyWorker("scheduler", stage.on_privacy, outbox=outbox, bus=rt.bus, blobs=rt.blobs)

    async def start() -> None:
        outbox.relay.start_in_background()
        await privacy.start()
        await worker.start()

    async def stop() -> None:
        await outbox.relay.stop()
        stage.close()

    return Service("scheduler", build_router(rt.db, rt.settings), start, stop,
                   revocations=TokenRevocations(rt.db, store.revoked_tokens, outbox, "scheduler"),
                   establishments=KnownEstablishments(rt.db, store.known_establishments, outbox, "scheduler"))


if __name__ == "__main__":
    run_service("scheduler", build)
