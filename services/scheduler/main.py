"""Composition root of the scheduler service (stage: sessions)."""

from __future__ import annotations

from services.scheduler import store
from services.scheduler.api import build_router
from services.scheduler.handlers import build_handlers
from shared.bus import Outbox, StageWorker
from shared.messages import Stage
from shared.web import Runtime, Service, run_service


def build(rt: Runtime) -> Service:
    outbox = Outbox(rt.db, store.outbox, rt.bus)
    worker = StageWorker(stage=Stage.SESSIONS, db=rt.db, bus=rt.bus, outbox=outbox, runs=store.runs,
                         **build_handlers(rt, outbox))

    async def start() -> None:
        outbox.start()
        await worker.start()

    return Service("scheduler", build_router(rt.db, rt.settings), start, outbox.stop)


if __name__ == "__main__":
    run_service("scheduler", build)
