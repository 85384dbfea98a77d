"""Composition root of the validator service (stage: validation)."""

from __future__ import annotations

import asyncio

from services.validator import store
from services.validator.api import build_router
from services.validator.handlers import ValidatorStage
from shared.messages import STATUS_EXCHANGE
from shared.outbox import Outbox
from shared.web import Runtime, Service, TokenRevocations, run_service
from shared.worker import PeriodicPurge, PrivacyWorker, StageWorker

LIFECYCLE_QUEUE = "edt.validator.lifecycle"


def build(rt: Runtime) -> Service:
    outbox = Outbox(rt.db, store.outbox, rt.bus)
    stage = ValidatorStage(rt.blobs, rt.settings, outbox)
    worker = StageWorker(stage, outbox=outbox, bus=rt.bus, runs=store.runs, aborts=store.aborts,
                         lease_s=rt.settings.import_lease_s)
    privacy = PrivacyWorker("validator", stage.on_privacy, outbox=outbox, bus=rt.bus, blobs=rt.blobs)
    retention = PeriodicPurge("validator", stage.purge_now, rt.settings.retention_interval_s)
    warming: list[asyncio.Task[None]] = []

    async def start() -> None:
        outbox.relay.start_in_background()
        retention.start_in_background()
        await rt.bus.consume(LIFECYCLE_QUEUE, stage.on_lifecycle, bindings=((STATUS_EXCHANGE, "import.history.#"),))
        await privacy.start()
        await worker.start()
        warming.append(asyncio.create_task(stage.warm_up(), name="validator:warm-up"))

    async def stop() -> None:
        await retention.stop()
        await outbox.relay.stop()
        for task in warming:
            task.cancel()
        stage.close()

    return Service("validator", build_router(rt.db, rt.settings), start, stop,
                   revocations=TokenRevocations(rt.db, store.revoked_tokens, outbox, "validator"))


if __name__ == "__main__":
    run_service("validator", build)
