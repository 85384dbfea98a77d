"""Composition root of the validator service (stage: validation)."""

from __future__ import annotations

from services.validator import store
from services.validator.api import build_router
from services.validator.handlers import build_handlers
from shared.bus import Outbox, StageWorker
from shared.messages import Stage
from shared.web import Runtime, Service, run_service


def build(rt: Runtime) -> Service:
    outbox = Outbox(rt.db, store.outbox, rt.bus)
    handlers = build_handlers(rt)
    worker = StageWorker(stage=Stage.VALIDATION, db=rt.db, bus=rt.bus, outbox=outbox, runs=store.runs,
                         prepare=handlers["prepare"], apply=handlers["apply"])

    async def start() -> None:
        outbox.start()
        await worker.start()

    async def stop() -> None:
        await outbox.stop()
        handlers["close"]()

    return Service("validator", build_router(rt.db, rt.settings), start, stop)


if __name__ == "__main__":
    run_service("validator", build)
