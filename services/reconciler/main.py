"""Composition root of the reconciler service (stage: groups)."""

from __future__ import annotations

from services.reconciler import store
from services.reconciler.api import build_router
from services.reconciler.handlers import LIFECYCLE_KEYS, LIFECYCLE_QUEUE, Directories, Wizard, build_handlers
from shared.bus import Outbox, StageWorker
from shared.messages import STATUS_EXCHANGE, Stage
from shared.web import Runtime, Service, run_service


def build(rt: Runtime) -> Service:
    outbox = Outbox(rt.db, store.outbox, rt.bus)
    worker = StageWorker(stage=Stage.GROUPS, db=rt.db, bus=rt.bus, outbox=outbox, runs=store.runs,
                         **build_handlers(rt))
    directories = Directories(rt, outbox)
    wizard = Wizard(rt, outbox)

    async def start() -> None:
        outbox.start()
        await rt.bus.consume(LIFECYCLE_QUEUE, wizard.on_lifecycle,
                             bindings=tuple((STATUS_EXCHANGE, key) for key in LIFECYCLE_KEYS))
        await worker.start()

    return Service("reconciler", build_router(rt.db, rt.settings, directories, wizard), start, outbox.stop)


if __name__ == "__main__":
    run_service("reconciler", build)
