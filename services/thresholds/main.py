"""Composition root of the thresholds service (stage: thresholds)."""

from __future__ import annotations

import asyncio
import contextlib

from services.thresholds import store
from services.thresholds.api import build_router
from services.thresholds.handlers import (
    DIRECTORY_KEYS,
    DIRECTORY_QUEUE,
    LIFECYCLE_KEYS,
    LIFECYCLE_QUEUE,
    build_handlers,
)
from shared.bus import Outbox, StageWorker
from shared.messages import STATUS_EXCHANGE, Stage
from shared.web import Runtime, Service, run_service


def build(rt: Runtime) -> Service:
    outbox = Outbox(rt.db, store.outbox, rt.bus)
    stage = build_handlers(rt, outbox)
    worker = StageWorker(stage=Stage.THRESHOLDS, db=rt.db, bus=rt.bus, outbox=outbox, runs=store.runs,
                         prepare=stage.prepare, apply=stage.apply)
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        outbox.start()
        await rt.bus.consume(LIFECYCLE_QUEUE, stage.on_lifecycle,
                             bindings=tuple((STATUS_EXCHANGE, key) for key in LIFECYCLE_KEYS))
        # One message at a time: the stage's barrier marker is handled only after the events before it.
        await rt.bus.consume(DIRECTORY_QUEUE, stage.on_directory,
                             bindings=tuple((STATUS_EXCHANGE, key) for key in DIRECTORY_KEYS), prefetch=1)
        await worker.start()
        if rt.settings.smtp_url:
            tasks.append(asyncio.create_task(stage.mail_loop(), name="thresholds:mail"))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await outbox.stop()

    return Service("thresholds", build_router(rt.db, rt.settings), start, stop)


if __name__ == "__main__":
    run_service("thresholds", build)
