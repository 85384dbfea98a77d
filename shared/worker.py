"""The one consumer every pipeline stage runs (design.md §9 handlers): `StageWorker` drives a
`shared.stage.Stage` from its queue. Beside it, the consumer every service holding personal data runs
(`PrivacyWorker`: retention, export, erasure on request) and its periodic purge (`PeriodicPurge`).

Aborts (POST /imports/{id}/abort): the worker records each ImportAbort in its service's table and checks it
inside the stage's transaction, just before committing — an aborted import's step rolls back and the
import ends `cancelled` at that boundary, with nothing of the step written. The check and the recording
take the same lock (an advisory lock on PostgreSQL; SQLite has one writer, so the recording also marks the
import in this process first, where a step in progress sees it), so an abort is either seen by the step
or recorded after its commit, and the acknowledgement says which (`finished`).

The stage contract it drives is `shared/stage.py`, kept apart because domains import `StageResult` from
it and must load no infrastructure, while the worker needs the database (its runs table), the outbox, the
bus and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.blobs import BlobStore
from shared.bus import Bus, Delivery
from shared.db import Database, upsert
from shared.messages import (
    STAGE_QUEUES,
    STATUS_EXCHANGE,
    AbortAck,
    FileIdent,
    ImportAbort,
    ImportHeartbeat,
    ImportStatus,
    PrivacyReply,
    PrivacyRequest,
    StageCommand,
    StatusEvent,
    StepStatus,
    next_stage,
    utcnow,
)
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
from shared.outbox import LoopService, Outbox
from shared.stage import Stage, StageResult, UnitOfWork, internal_error

log = logging.getLogger("edt.stage")

ABORTED_RUN = "aborted"  # the runs table's step_status of a step an abort rolled back
ABORTED = ("Import interrompu à la demande : rien de cette étape n'a été écrit.",
           "Import aborted on request: nothing of this step was written.")


class StageAborted(Exception):
    """Raised inside a stage's transaction when its import was aborted: the transaction rolls back."""


async def is_aborted(db: Database, conn: AsyncConnection, aborts: sa.Table, import_id: str) -> bool:
    """Inside a transaction about to commit: has this import been aborted? Holds the abort lock of the
    import until the transaction ends, so that an abort being recorded waits for this commit."""
    await db.advisory_lock(conn, "abort", import_id)
    found = await conn.execute(sa.select(aborts.c.import_id).where(aborts.c.import_id == import_id))
    return found.first() is not None


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

    def __init__(self, stage: Stage, *, outbox: Outbox, bus: Bus, runs: sa.Table, aborts: sa.Table,
                 lease_s: float = 60.0) -> None:
        self.stage = stage
        self.name = stage.name
        self.outbox = outbox
        self.db = outbox.db
        self.bus = bus
        self.runs = runs
        self.aborts = aborts
        # Aborts being recorded by this process: seen by a step in progress here before the row can be
        # written (SQLite's one writer is the step's transaction itself).
        self._aborting: set[str] = set()
        # Heartbeats: one every quarter of the notifier's lease (EDT_IMPORT_LEASE_S) per import in hand.
        self.beat_every_s = lease_s / 4
        self._last_beat: dict[str, float] = {}

    @property
    def queue(self) -> str:
        return STAGE_QUEUES[self.name]

    async def start(self, consumers: int | None = None) -> None:
        await self.bus.consume(f"{self.queue}.aborts", self.on_abort,
                               bindings=((STATUS_EXCHANGE, "abort.requested.*"),))
        await self.bus.consume(self.queue, self.handle, on_give_up=self.give_up, prefetch=consumers)

    async def _aborted(self, conn: AsyncConnection, import_id: str) -> bool:
        return import_id in self._aborting or await is_aborted(self.db, conn, self.aborts, import_id)

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
            beating = asyncio.create_task(self._heartbeat(cmd.import_id), name=f"heartbeat:{cmd.import_id}")
            try:
                with STAGE_SECONDS.labels(stage, stage).time():
                    result = await self._handle(cmd)
            except Exception as exc:
                STAGE_FAILURES.labels(stage).inc()
                log.warning("step failed (attempt %d): %r", delivery.attempt + 1, exc)
                raise
            finally:
                beating.cancel()
            if result is None:
                return
            elapsed = time.perf_counter() - started
            STAGE_DURATION.labels(stage).observe(elapsed)
            STAGE_OUT.labels(stage, result.step_status.value).inc()
            log.info("step %s in %.3f s%s", result.step_status.value, elapsed,
                     f" → {result.outcome.value}" if result.outcome else "")

    async def _heartbeat(self, import_id: str) -> None:
        """While the step runs: an ImportHeartbeat now (unless one left less than a period ago — the bus
        calls `handle` again and again while it waits out an outage), then one every period."""
        while True:
            now = time.monotonic()
            last = self._last_beat.get(import_id)
            if last is None or now - last >= self.beat_every_s:
                self._last_beat[import_id] = now
                for key in [k for k, at in self._last_beat.items() if now - at > 4 * self.beat_every_s]:
                    del self._last_beat[key]
                beat = ImportHeartbeat(import_id=import_id, stage=self.name)
                # Shielded: the step ending mid-publish cancels this task, never the publish under way.
                with contextlib.suppress(Exception):  # the broker down: the outage is waited out elsewhere
                    await asyncio.shield(self.bus.publish(beat.exchange, beat.routing_key, beat.to_bytes()))
                last = now
            await asyncio.sleep(max(0.05, last + self.beat_every_s - time.monotonic()))

    async def _handle(self, cmd: StageCommand) -> StageResult | None:
        """The step (None: a duplicate, already finished here or by another consumer, or an aborted import)."""
        runs = self.runs
        async with self.outbox.unit_of_work() as uow:
            row = (await uow.conn.execute(sa.select(runs).where(runs.c.import_id == cmd.import_id))).first()
            if row is not None and row.finished_at is not None:
                MESSAGES.labels(self.name.value, self.queue, "duplicate").inc()
                log.info("duplicate command dropped: the step has finished")
                return None
            if await self._aborted(uow.conn, cmd.import_id):  # aborted while it waited in the queue
                await self._end_aborted(uow, cmd)
                return None
            if row is None:
                # ON CONFLICT DO NOTHING: the same command delivered twice at once (a redelivery racing the
                # first delivery) inserts one run; the other finds it taken and is a duplicate, not a failure.
                taken = await uow.conn.execute(upsert(self.db, runs, {
                    "import_id": cmd.import_id, "step_status": StepStatus.RUNNING.value, "started_at": utcnow()},
                    ["import_id"]))
                if taken.rowcount == 0:
                    MESSAGES.labels(self.name.value, self.queue, "duplicate").inc()
                    log.info("duplicate command dropped: another consumer has just started the step")
                    return None
                await uow.emit(step_event(self.name, cmd, StepStatus.RUNNING))
        log.info("step started")
        prepared = await self.stage.prepare(cmd)
        try:
            async with self.outbox.unit_of_work() as uow:
                row = (await uow.conn.execute(self._run_row(cmd.import_id))).first()
                if row is not None and row.finished_at is not None:  # another consumer finished it
                    return None
                result = await self.stage.apply(uow, cmd, prepared)
                if await self._aborted(uow.conn, cmd.import_id):
                    raise StageAborted(cmd.import_id)  # everything the step wrote rolls back
                await uow.conn.execute(runs.update().where(runs.c.import_id == cmd.import_id).values(
                    step_status=result.step_status.value, finished_at=utcnow()))
                await finish_step(uow, self.name, cmd, result)
        except StageAborted:
            async with self.outbox.unit_of_work() as uow:
                row = (await uow.conn.execute(self._run_row(cmd.import_id))).first()
                if row is None or row.finished_at is None:
                    await self._end_aborted(uow, cmd)
            MESSAGES.labels(self.name.value, self.queue, "aborted").inc()
            log.info("step rolled back: the import was aborted")
            return None
        MESSAGES.labels(self.name.value, self.queue, "ok").inc()
        return result

    def _run_row(self, import_id: str) -> sa.Select[tuple[object, ...]]:
        query = sa.select(self.runs).where(self.runs.c.import_id == import_id)
        return query.with_for_update() if self.db.is_postgres else query

    async def _end_aborted(self, uow: UnitOfWork, cmd: StageCommand) -> None:
        """The step ends in error, the import `cancelled` ("Interrompu"), nothing sent on."""
        now = utcnow()
        await uow.conn.execute(upsert(self.db, self.runs, {
            "import_id": cmd.import_id, "step_status": ABORTED_RUN, "started_at": now, "finished_at": now},
            ["import_id"], ["step_status", "finished_at"]))
        fr, en = ABORTED
        await uow.emit(step_event(self.name, cmd, StepStatus.ERROR, StageResult(
            StepStatus.ERROR, outcome=ImportStatus.CANCELLED, message=fr, message_en=en)))

    async def on_abort(self, delivery: Delivery) -> None:
        """Record an abort (ImportAbort) and acknowledge it, saying whether this stage's step of the import
        had already committed (`finished`)."""
        event = ImportAbort.from_bytes(delivery.body)
        self._aborting.add(event.import_id)
        try:
            async with self.outbox.unit_of_work() as uow:
                await self.db.advisory_lock(uow.conn, "abort", event.import_id)
                run = (await uow.conn.execute(sa.select(self.runs).where(
                    self.runs.c.import_id == event.import_id))).first()
                finished = run is not None and run.finished_at is not None and run.step_status != ABORTED_RUN
                await uow.conn.execute(upsert(self.db, self.aborts, {
                    "import_id": event.import_id, "requested_at": event.at}, ["import_id"]))
                await uow.emit(AbortAck(import_id=event.import_id, by=self.name.value, finished=finished))
        finally:
            self._aborting.discard(event.import_id)

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


# --- personal data ------------------------------------------------------------------------------------

# (unit of work, request) → (the reply's data, the person's idents in the files: the reconciler's answer)
PrivacyHandler = Callable[[UnitOfWork, PrivacyRequest], Awaitable[tuple[dict[str, Any], list[FileIdent]]]]


class PrivacyWorker:
    """Answers the PrivacyRequests addressed to one service (queue edt.<service>.privacy): `handler` runs in
    ONE unit of work with the reply, so a reply means the work is committed (an erasure acknowledged is an
    erasure done). What a service says about a person never rides the broker: it is sealed into a blob
    whose hash the reply carries (`data = {"blob": sha256}`; the asker reads it, then deletes it). A request
    that keeps failing is answered with its error."""

    def __init__(self, service: str, handler: PrivacyHandler, *, outbox: Outbox, bus: Bus, blobs: BlobStore) -> None:
        self.service = service
        self.handler = handler
        self.outbox = outbox
        self.bus = bus
        self.blobs = blobs

    @property
    def queue(self) -> str:
        return f"edt.{self.service}.privacy"

    async def start(self) -> None:
        await self.bus.consume(self.queue, self.handle, on_give_up=self.give_up,
                               bindings=((STATUS_EXCHANGE, f"privacy.request.*.{self.service}"),))

    async def handle(self, delivery: Delivery) -> None:
        request = PrivacyRequest.from_bytes(delivery.body)
        async with self.outbox.unit_of_work() as uow:
            data, idents = await self.handler(uow, request)
            if request.action != "retention":
                sha, _ = await asyncio.to_thread(self.blobs.put_bytes, json.dumps(data, default=str).encode())
                data = {"blob": sha}
            await uow.emit(PrivacyReply(request_id=request.request_id, action=request.action, by=self.service,
                                        data=data, file_idents=idents))

    async def give_up(self, delivery: Delivery, exc: BaseException) -> None:
        request = PrivacyRequest.from_bytes(delivery.body)
        async with self.outbox.unit_of_work() as uow:
            await uow.emit(PrivacyReply(request_id=request.request_id, action=request.action, by=self.service,
                                        error=f"{exc.__class__.__name__}: {exc}"))


class PeriodicPurge(LoopService):
    """A service's retention purge, by itself every `loop_seconds` (EDT_RETENTION_INTERVAL_S)."""

    def __init__(self, service: str, purge: Callable[[], Awaitable[dict[str, Any]]], loop_seconds: float) -> None:
        super().__init__(loop_seconds)
        self.service = service
        self.purge = purge
        self.last: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return f"retention:{self.service}"

    async def run_once(self) -> None:
        self.last = await self.purge()
        if any(v for v in self.last.values() if isinstance(v, int)):
            log.info("retention %s: %s", self.service, self.last)  # counts only, never what was purged
