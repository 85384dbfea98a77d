"""Composition root of the thresholds service (stage: thresholds)."""

from __future__ import annotations

from services.thresholds import store
from services.thresholds.api import build_router
from services.thresholds.handlers import (
    DIRECTORY_KEYS,
    DIRECTORY_QUEUE,
    LIFECYCLE_KEYS,
    LIFECYCLE_QUEUE,
    ThresholdsStage,
)
from services.thresholds.mail import MailRelay
from shared.establishments import KnownEstablishments
from shared.messages import STATUS_EXCHANGE
from shared.outbox import Outbox
from shared.web import Runtime, Service, TokenRevocations, run_service
from shared.worker import StageWorker


def build(rt: Runtime) -> Service:
    outbox = Outbox(rt.db, store.outbox, rt.bus)
    mail = MailRelay(rt.db, rt.settings) if rt.settings.smtp_url else None
    stage = ThresholdsStage(rt.db, rt.bus, rt.blobs, rt.settings, outbox, mail_sent=mail.kick if mail else None)
    worker = StageWorker(stage, outbox=outbox, bus=rt.bus, runs=store.runs, aborts=store.aborts,
                         lease_s=rt.settings.import_lease_s)

    async def start() -> None:
        outbox.relay.start_in_background()
        await rt.bus.consume(LIFECYCLE_QUEUE, stage.on_lifecycle,
                             bindings=tuple((STATUS_EXCHANGE, key) for key in LIFECYCLE_KEYS))
        # One message at a time: the stage's barrier marker is handled only after the events before it.
        await rt.bus.consume(DIRECTORY_QUEUE, stage.on_directory,
                             bindings=tuple((STATUS_EXCHANGE, key) for key in DIRECTORY_KEYS), prefetch=1)
        await worker.start()
        if mail is not None:
            mail.start_in_background()

    async def stop() -> None:
        if mail is not None:
            await mail.stop()
        await outbox.relay.stop()
        stage.close()

    return Service("thresholds", build_router(rt.db, rt.settings), start, stop,
                   revocations=TokenRevocations(rt.db, store.revoked_tokens, outbox, "thresholds"),
                   establishments=KnownEstablishments(rt.db, store.known_establishments, outbox, "thresholds"))


if __name__ == "__main__":
    run_service("thresholds", build)
