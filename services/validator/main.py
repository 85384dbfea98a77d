"""Composition root of the validator service (stage: validation)."""

from __future__ import annotations

import asyncio

from services.validator import store
from services.validator.api import build_router
from services.validator.handlers import ValidatorStage
from shared.outbox import Outbox
from shared.web import Runtime, Service, TokenRevocations, run_service
from shared.worker import StageWorker


def build(rt: Runtime) -> Service:
    outbox = Outbox(rt.db, store.outbox, rt.bus)
    stage = ValidatorStage(rt.blobs, rt.settings)
    worker = StageWorker(stage, outbox=outbox, bus=rt.bus, runs=store.runs, aborts=store.aborts)
    warming: list[asyncio.Task[None]] = []

    async def start() -> None:
        outbox.relay.start_in_background()
        await worker.start()
        warming.append(asyncio.create_task(stage.warm_up(), name="validator:warm-up"))

    async def stop() -> None:
        await outbox.relay.stop()
        for task in warming:
            task.cancel()
        stage.close()

    return Service("validator", build_router(rt.db, rt.settings), start, stop,
                   revocations=TokenRevocations(rt.db, store.revoked_tokens, outbox, "validator"))


if __name__ == "__main__":
    run_service("validator", build)
