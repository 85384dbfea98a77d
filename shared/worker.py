"""The one consumer every pipeline stage runs (design.md §9 handlers): `StageWorker` drives a
`shared.stage.Stage` from its queue.

The stage contract it drives is `shared/stage.py`, kept apart because domains import `StageResult` from
it and must load no infrastructure, while the worker needs the database (its runs table), the outbox, the
bus and the metrics.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from shared.bus import Bus, Delivery
from shared.db import upsert
from shared.messages import STAGE_QUEUES, StageCommand, StatusEvent, StepStatus, next_stage, utcnow
from shared.messages import Stage as StageName
from shared.observability import (
    MESSAGES,
    STAGE_DEAD_LETTERED,
    STAGE_DURATION,
    STAGE_FAILURES,
    STAGE_IN,
    STAGE_OUT,
    STAGE_RETRIES,
    STAGE_SECONDS,
    log_context,
    span,
)
from shared.outbox import Outbox
from shared.stage import Stage, StageResult, UnitOfWork, internal_error

log = logging.getLogger("edt.stage")


def step_event(stage: StageName, cmd: StageCommand, step: StepStatus, result: StageResult | None = None) -> StatusEvent:
    return StatusEvent(import_id=cmd.import_id, site=cmd.site, establishment=cmd.establishment, stage=stage,
                       step_status=step,
                       message=result.message if result else None,
                       message_en=result.message_en if result else None,
                       counts=result.counts if result else None,
                       alerts=result.alerts if result else None,
                       outcome=result.outcome if result else None)


async def finish_step(uow: UnitOfWork, stage: StageName, cmd: StageCommand, result: StageResult) -> None:
    """The end of a step, inside its transaction: the step's status event, and the next stage's command
    (carrying this step's artifacts) when the result lets the import go on."""
    await uow.emit(step_event(stage, cmd, result.step_status, result))
    following = next_stage(stage)
    if result.forwards and following is not None:
        nxt = cmd.model_copy(update={"artifacts": {**cmd.artifacts, **result.artifacts}})
        await uow.emit(nxt.to(following))


class StageWorker:
    """command in → `running` event (its own small transaction) → `stage.prepare` outside any transaction
    → `stage.apply` inside ONE unit of work that also records the run, the step's event and the next
    command → commit → ack. A redelivered command whose run is finished is acknowledged and dropped."""

    def __init__(self, stage: Stage, *, outbox: Outbox, bus: Bus, runs: sa.Table) -> None:
        self.stage = stage
        self.name = stage.name
        self.outbox = outbox
        self.db = outbox.db
        self.bus = bus
        self.runs = runs

    @property
    def queue(self) -> str:
        return STAGE_QUEUES[self.name]

    async def start(self, consumers: int | None = None) -> None:
        await self.bus.consume(self.queue, self.handle, on_give_up=self.give_up, prefetch=consumers)

    async def handle(self, delivery: Delivery) -> None:
        cmd = StageCommand.from_bytes(delivery.body)
        stage = self.name.value
        STAGE_IN.labels(stage).inc()
        if delivery.attempt:
            STAGE_RETRIES.labels(stage).inc()
        # Every line logged for this step names its import; the span continues the import's trace.
        with log_context(import_id=cmd.import_id, site=cmd.site, establishment=cmd.establishment, stage=stage), \
                span(f"stage {stage}", delivery.headers, import_id=cmd.import_id, site=cmd.site,
                     establishment=cmd.establishment, stage=stage):
            started = time.perf_counter()
            try:
                with STAGE_SECONDS.labels(stage, stage).time():
                    result = await self._handle(cmd)
            except Exception as exc:
                STAGE_FAILURES.labels(stage).inc()
                log.warning("step failed (attempt %d): %r", delivery.attempt + 1, exc)
                raise
            if result is None:
                return
            elapsed = time.perf_counter() - started
            STAGE_DURATION.labels(stage).observe(elapsed)
            STAGE_OUT.labels(stage, result.step_status.value).inc()
            log.info("step %s in %.3f s%s", result.step_status.value, elapsed,
                     f" → {result.outcome.value}" if result.outcome else "")

    async def _handle(self, cmd: StageCommand) -> StageResult | None:
        """The step (None: a duplicate, already finished here or by another consumer)."""
        runs = self.runs
        async with self.outbox.unit_of_work() as uow:
            row = (await uow.conn.execute(sa.select(runs).where(runs.c.import_id == cmd.import_id))).first()
            if row is not None and row.finished_at is not None:
                MESSAGES.labels(self.name.value, self.queue, "duplicate").inc()
                log.info("duplicate command dropped: the step has finished")
                return None
            if row is None:
                await uow.conn.execute(runs.insert().values(
                    import_id=cmd.import_id, step_status=StepStatus.RUNNING.value, started_at=utcnow()))
                await uow.emit(step_event(self.name, cmd, StepStatus.RUNNING))
        log.info("step started")
        prepared = await self.stage.prepare(cmd)
        async with self.outbox.unit_of_work() as uow:
            query = sa.select(runs).where(runs.c.import_id == cmd.import_id)
            if self.db.is_postgres:
                query = query.with_for_update()
            row = (await uow.conn.execute(query)).first()
            if row is not None and row.finished_at is not None:  # another consumer finished it
                return None
            result = await self.stage.apply(uow, cmd, prepared)
            await uow.conn.execute(runs.update().where(runs.c.import_id == cmd.import_id).values(
                step_status=result.step_status.value, finished_at=utcnow()))
            await finish_step(uow, self.name, cmd, result)
        MESSAGES.labels(self.name.value, self.queue, "ok").inc()
        return result

    async def give_up(self, delivery: Delivery, exc: BaseException) -> None:
        """After the last retry: the import is `failed` with its reason, then the message is dead-lettered."""
        MESSAGES.labels(self.name.value, self.queue, "dead_lettered").inc()
        STAGE_DEAD_LETTERED.labels(self.name.value).inc()
        try:
            cmd = StageCommand.from_bytes(delivery.body)
        except Exception:  # noqa: BLE001 - an unreadable message has no import to fail
            return
        result = internal_error(self.name, exc)
        now = utcnow()
        with log_context(import_id=cmd.import_id, site=cmd.site, establishment=cmd.establishment,
                         stage=self.name.value), \
                span(f"stage {self.name.value} gave up", delivery.headers, import_id=cmd.import_id):
            log.error("gave up after %d attempts: %r", delivery.attempt + 1, exc)
            async with self.outbox.unit_of_work() as uow:
                await uow.conn.execute(upsert(self.db, self.runs, {
                    "import_id": cmd.import_id, "step_status": StepStatus.ERROR.value, "started_at": now,
                    "finished_at": now}, ["import_id"], ["step_status", "finished_at"]))
                await uow.emit(step_event(self.name, cmd, StepStatus.ERROR, result))
            STAGE_OUT.labels(self.name.value, StepStatus.ERROR.value).inc()
