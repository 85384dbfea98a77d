"""Notifier handlers: status events in → history rows, admission decisions → commands out (via outbox)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier import domain, store
from shared.blobs import BlobStore
from shared.bus import AckWaiter, Bus, Delivery
from shared.db import Database, as_utc
from shared.messages import (
    ABORT_ACKERS,
    CHANGES_EXCHANGE,
    PERSON_FIRST,
    PERSON_THEN,
    STAGE_QUEUES,
    STATUS_EXCHANGE,
    AbortAck,
    AccessRecorded,
    Deposit,
    DepositAck,
    EstablishmentUpdated,
    FileIdent,
    FileRef,
    ImportAbort,
    ImportHeartbeat,
    ImportLifecycle,
    ImportStatus,
    Mode,
    PrivacyAction,
    PrivacyReply,
    PrivacyRequest,
    Stage,
    StageCommand,
    StatusEvent,
    StepStatus,
    iso,
    next_stage,
    utcnow,
)
from shared.observability import IMPORT_DURATION, IMPORT_QUEUE_WAIT, IMPORTS_FINISHED, log_context, span, trace_headers
from shared.outbox import Outbox
from shared.settings import Settings
from shared.stage import UnitOfWork

log = logging.getLogger("edt.notifier")

IN_FLIGHT = (ImportStatus.RECEIVED, ImportStatus.VALIDATING, ImportStatus.CHECKING_THRESHOLDS,
             ImportStatus.CREATING_GROUPS, ImportStatus.GENERATING_SESSIONS, ImportStatus.AWAITING_SELECTION)
ACTIVE = (ImportStatus.WAITING, *IN_FLIGHT)
# In flight and owned by a stage (an import paused for its selection waits for a person: no lease).
LEASED = tuple(s for s in IN_FLIGHT if s is not ImportStatus.AWAITING_SELECTION)
# This process's own queue: every stage's heartbeats (each notifier process sees them all).
LEASE_BINDINGS = ((STATUS_EXCHANGE, "lease.*"),)
ADMISSION_LOCK = "admission"  # advisory lock: admission decisions are serialised across processes
# The notifier listens to the stages' events, not to its own lifecycle events (import.history.*). The
# deposits have a queue of their own: the dropzone answers its client once the deposit is recorded here, and
# a herd's deposits must not wait behind the stage events of the imports already running.
STATUS_QUEUE = "edt.notifier"
DEPOSITS_QUEUE = "edt.notifier.deposits"
DEPOSIT_BINDINGS = ((STATUS_EXCHANGE, f"import.{Stage.DEPOSIT.value}.#"),)
STATUS_BINDINGS = tuple((STATUS_EXCHANGE, f"import.{stage.value}.#") for stage in Stage if stage is not Stage.DEPOSIT)
ESTABLISHMENTS_QUEUE = "edt.notifier.establishments"
# This process's own queue: the acknowledgements of the aborts and undo imports it is answering.
ACK_BINDINGS = ((STATUS_EXCHANGE, "abort.ack.*"), (STATUS_EXCHANGE, "deposit.ack.thresholds"))
ESTABLISHMENT_BINDINGS = ((STATUS_EXCHANGE, "establishment.updated.*"),)
# The notifier keeps the sessions' change events for its SSE stream, beside the exchange ENTs bind to.
CHANGES_QUEUE = "edt.notifier.changes"
CHANGES_BINDINGS = ((CHANGES_EXCHANGE, "sessions.#"),)


def scope_of(site: str, establishment: str | None) -> str:
    return f"{site}/{establishment or '*'}"


def integrated(row: Any) -> domain.Integrated:
    return domain.Integrated(row.id, row.site, row.establishment, ImportStatus(row.status), bool(row.dry_run),
                             bool(row.no_change))


def slot_of(row: Any) -> domain.Slot:
    status = ImportStatus(row.status)
    at = as_utc(row.created_at if status is ImportStatus.WAITING else (row.started_at or row.created_at))
    assert at is not None
    return domain.Slot(id=row.id, site=row.site, establishment=row.establishment, at=at, mode=Mode(row.mode),
                       counts_for_capacity=status is not ImportStatus.AWAITING_SELECTION)


def queue_wait_observer(mode: str, waited: float) -> Callable[[], None]:
    return lambda: IMPORT_QUEUE_WAIT.labels(mode).observe(waited)


class PrivacyUnanswered(Exception):
    """Services that did not answer a privacy request in time, or answered with an error."""

    def __init__(self, missing: list[str], errors: dict[str, str]) -> None:
        super().__init__(", ".join(missing + list(errors)))
        self.missing = missing
        self.errors = errors


class NotifierHandlers:
    def __init__(self, db: Database, outbox: Outbox, settings: Settings, blobs: BlobStore,
                 bus: Bus | None = None) -> None:
        self.db = db
        self.bus = bus
        # Leases: the last heartbeat of each import in flight, and since when this process has been able to
        # see them (its start, or the end of an outage): nothing it could not see counts against an import.
        self._beats: dict[str, datetime] = {}
        self._watching_since: datetime | None = None
        self.outbox = outbox
        self.settings = settings
        self.acks = AckWaiter()  # aborts and undo locks this process answers once acknowledged
        self.blobs = blobs
        self._log_grew = asyncio.Event()
        # Events being applied under the admission lock (on_status), for the reads that hold back meanwhile.
        self._applying = 0
        self._settled = asyncio.Event()
        self._settled.set()
        # request id → the services whose answer it still waits for, the answers, and the event set when done
        self._privacy: dict[str, tuple[set[str], dict[str, PrivacyReply], asyncio.Event]] = {}

    def notify_streams(self) -> None:
        """The event log grew (committed): wake every SSE stream of this process."""
        event, self._log_grew = self._log_grew, asyncio.Event()
        event.set()

    def log_growth(self) -> asyncio.Event:
        """Set the next time the event log grows: take it before reading the log, wait on it after."""
        return self._log_grew

    @staticmethod
    async def wait_streams(growth: asyncio.Event) -> None:
        """Until the event log grows here, or a second has passed (another notifier process may have written:
        the stream looks in the database again)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await growth.wait()

    async def on_status(self, delivery: Delivery) -> None:
        event = StatusEvent.from_bytes(delivery.body)
        with log_context(import_id=event.import_id, site=event.site, establishment=event.establishment,
                         stage=event.stage.value), \
                span(f"notifier {event.stage.value} {event.step_status.value}", delivery.headers,
                     import_id=event.import_id, site=event.site, establishment=event.establishment,
                     stage=event.stage.value):
            with contextlib.ExitStack() as held:  # exited after the commit: the reads wait for it too
                async with self.outbox.unit_of_work() as uow:
                    await self.db.advisory_lock(uow.conn, ADMISSION_LOCK)
                    held.enter_context(self._reads_held())
                    if event.stage is Stage.DEPOSIT:
                        await self._on_deposit(uow, event)
                    else:
                        await self._on_stage_event(uow, event)

    # The events are applied one at a time, under the admission lock, and each step of one waits its turn
    # on this process's event loop: the history reads of a herd's front-ends (hundreds a second), taking
    # their turns in between, stretched every hold of the lock, and the events fell behind (deposits
    # recorded late, admissions late). A read that arrives while an event is applied waits for it a
    # moment (api.py, READ_YIELD_S) instead.

    @contextlib.contextmanager
    def _reads_held(self) -> Iterator[None]:
        self._applying += 1
        self._settled.clear()
        try:
            yield
        finally:
            self._applying -= 1
            if not self._applying:
                self._settled.set()

    async def settled(self, at_most: float) -> None:
        """Until no event is being applied in this process, `at_most` seconds at most."""
        if self._applying:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(at_most):
                    await self._settled.wait()

    async def on_establishment(self, delivery: Delivery) -> None:
        """An establishment was created or renamed (EstablishmentUpdated): the history shows its name."""
        event = EstablishmentUpdated.from_bytes(delivery.body)
        async with self.db.transaction() as conn:
            await store.save_establishment_names(self.db, conn, event.site, {event.establishment: event.name},
                                                 event.at)

    # --- change events ------------------------------------------------------------------------------

    async def on_changes(self, delivery: Delivery) -> None:
        """A change event of the sessions (edt.changes): kept for GET /sites/{site}/changes (bounded per
        site by EDT_CHANGES_MAX_EVENTS and EDT_CHANGES_RETENTION_H); the streams of this process wake."""
        body = delivery.body.decode()
        head = json.loads(body)
        now = utcnow()
        async with self.db.transaction() as conn:
            await store.add_change(self.db, conn, site=head["site"], establishment=head["establishment"],
                                   import_id=head.get("import_id", ""),
                                   message_id=delivery.message_id or hashlib.sha256(delivery.body).hexdigest(),
                                   at=now, body=body)
            await store.prune_changes(conn, head["site"], keep=self.settings.changes_max_events,
                                      older_than=now - timedelta(hours=self.settings.changes_retention_h))
        self.notify_streams()

    async def prune_changes(self) -> None:
        """Retention of the change events of every site (those no new event pruned lately)."""
        older_than = utcnow() - timedelta(hours=self.settings.changes_retention_h)
        async with self.db.read() as conn:
            sites = await store.sites_with_changes_before(conn, older_than)
        for site in sites:
            async with self.db.transaction() as conn:
                await store.prune_changes(conn, site, older_than=older_than, keep=self.settings.changes_max_events)

    # --- deposit ----------------------------------------------------------------------------------

    async def _on_deposit(self, uow: UnitOfWork, event: StatusEvent) -> None:
        conn = uow.conn
        if event.deposit is None:
            log.warning("deposit event without deposit for %s", event.import_id)
            return
        # The dropzone answers its client once the import is readable here (read-your-writes).
        await uow.emit(DepositAck(import_id=event.import_id, by="notifier"))
        if await store.import_exists(conn, event.import_id):
            return  # redelivered: recorded already, acknowledged again
        dep = event.deposit
        if dep.establishment_names:
            await store.save_establishment_names(self.db, conn, event.site, dep.establishment_names, event.at)
        scope = scope_of(event.site, event.establishment)
        # The queue's order is the order deposits are recorded here, not their deposit times: deposits
        # made at once reach the notifier in any order, and an import placed behind a later one would
        # see its queue position rise. Recording is serialised (admission lock), so this time only grows.
        newest = await store.newest_waiting_at(conn)
        queued_at = max(utcnow(), newest + timedelta(microseconds=1)) if newest else utcnow()
        rejected = event.step_status is StepStatus.ERROR
        status = ImportStatus.REJECTED if rejected else ImportStatus.WAITING
        # The import's own trace: its stages run in it, whichever event later wakes its admission.
        artifacts: dict[str, Any] = {"trace": trace_headers()}
        if dep.review and dep.mode is Mode.MANUAL:
            artifacts["review"] = True
        await store.insert_import(
            conn, id=event.import_id, site=event.site, establishment=event.establishment, scope=scope,
            establishments=dep.establishments, mode=dep.mode.value, dry_run=dep.dry_run, status=status.value,
            source=dep.source, account=dep.account, file_name=dep.file.name, sha256=dep.file.sha256,
            size=dep.file.size, created_at=queued_at, ended_at=event.at if rejected else None, no_change=False,
            message=event.message, message_en=event.message_en, counts={}, alerts=[], artifacts=artifacts)
        await store.insert_step(
            conn, import_id=event.import_id, stage=Stage.DEPOSIT.value, status=event.step_status.value,
            started_at=event.at, ended_at=event.at, message=event.message, message_en=event.message_en)
        await self._log(uow, event.import_id, event.site, status, stage=Stage.DEPOSIT, step=event.step_status,
                        message=event.message)
        if rejected:
            await self._lifecycle(uow, event.import_id)
            return

        last = await store.last_integrated(conn, scope)
        if last is not None and last.sha256 == dep.file.sha256 and not dep.dry_run:
            fr, en = domain.NO_CHANGE_MESSAGE
            await self._finish(uow, event.import_id, ImportStatus.DONE, fr, en, no_change=True)
            return

        new = domain.Slot(event.import_id, event.site, event.establishment, queued_at, dep.mode)
        for older in await store.waiting_in_scope(conn, scope, other_than=event.import_id):
            if domain.supersedes(new, slot_of(older)):
                await store.mark_superseded(conn, older.id, new.id)
                await self._finish(uow, older.id, ImportStatus.SUPERSEDED, *domain.superseded_message(dep.file.name))
        await self.dispatch(uow)

    # --- admission --------------------------------------------------------------------------------

    @staticmethod
    async def active(conn: AsyncConnection) -> tuple[list[Any], list[Any]]:
        """The imports in flight and those waiting, with the columns of their slots only."""
        rows = await store.active_slots(conn, [s.value for s in ACTIVE])
        in_flight = [r for r in rows if r.status != ImportStatus.WAITING.value]
        waiting = [r for r in rows if r.status == ImportStatus.WAITING.value]
        return in_flight, waiting

    async def dispatch(self, uow: UnitOfWork) -> list[str]:
        """Start every waiting import that admission allows now (caller holds the admission lock)."""
        conn = uow.conn
        in_flight, waiting = await self.active(conn)
        started = domain.plan_dispatch([slot_of(r) for r in in_flight], [slot_of(r) for r in waiting],
                                       self.settings.max_in_flight)
        by_id = await store.imports_by_id(conn, [s.id for s in started])
        now = utcnow()
        for slot in started:
            row = by_id[slot.id]
            last = await store.last_integrated(conn, row.scope)
            extra = {"undo_of": row.artifacts["undo_of"]} if (row.artifacts or {}).get("undo_of") else {}
            command = StageCommand(
                import_id=row.id, site=row.site, establishment=row.establishment,
                establishments=row.establishments, mode=Mode(row.mode), dry_run=row.dry_run,
                review=bool((row.artifacts or {}).get("review")),
                file=FileRef(name=row.file_name, sha256=row.sha256, size=row.size),
                received_at=row.created_at, started_at=now,
                artifacts={"previous_import": last.id if last is not None else None, **extra})
            await store.mark_started(conn, row.id, now)
            await uow.emit(command.to(Stage.VALIDATION), headers=(row.artifacts or {}).get("trace") or None)
            uow.after_commit(queue_wait_observer(row.mode, max(0.0, (now - as_utc(row.created_at)).total_seconds())))
            await self._log(uow, row.id, row.site, ImportStatus.RECEIVED)
        return [s.id for s in started]

    async def redispatch(self) -> None:
        """Admission after a restart: a crash between a terminal event and the next start loses nothing."""
        async with self.outbox.unit_of_work() as uow:
            await self.db.advisory_lock(uow.conn, ADMISSION_LOCK)
            await self.dispatch(uow)

    # --- leases: nothing in flight without an owner ----------------------------------------------------

    async def on_heartbeat(self, delivery: Delivery) -> None:
        """A stage is at work on an import (ImportHeartbeat): its lease runs again from then."""
        beat = ImportHeartbeat.from_bytes(delivery.body)
        at = as_utc(beat.at)
        if at is not None and (self._beats.get(beat.import_id) is None or at > self._beats[beat.import_id]):
            self._beats[beat.import_id] = at

    async def sweep_leases(self) -> list[str]:
        """Fail, with its reason, every import in flight that nobody owns any more — no event nor heartbeat
        for EDT_IMPORT_LEASE_S and nothing left in its stage's queue (or for 5 leases whatever the queue
        holds): its stage died with the command, or the command was dead-lettered unreported. The slot is
        freed and the next import admitted; an abort tells the stages to drop the command if it shows up.
        Returns the imports failed."""
        try:
            return await self._sweep_leases()
        except Exception:
            self._watching_since = None  # the database or broker is down: the clock starts again after
            raise

    async def _sweep_leases(self) -> list[str]:
        now = utcnow()
        lease = self.settings.import_lease_s
        if self._watching_since is None or (self.bus is not None and not self.bus.is_ready()):
            self._watching_since = now
        async with self.db.read() as conn:
            rows = await store.leased_imports(conn, [s.value for s in LEASED])
        for gone in set(self._beats) - {r.id for r in rows}:
            del self._beats[gone]
        expired: list[str] = []
        for row in rows:
            stage = domain.stage_in_hand(ImportStatus(row.status), row.queued_stage)
            if stage is None:
                continue
            signs = [as_utc(row.started_at), as_utc(row.queued_at), as_utc(row.last_step_at),
                     self._beats.get(row.id), self._watching_since]
            idle = (now - max(t for t in signs if t is not None)).total_seconds()
            if idle <= lease:
                continue
            busy = await self._queue_busy(stage) if idle <= domain.LEASE_GRACE_LEASES * lease else None
            if domain.lease_expired(idle, lease, busy) and await self._expire(row.id, stage, idle):
                expired.append(row.id)
        return expired

    async def _queue_busy(self, stage: Stage) -> bool | None:
        """Does the stage's queue hold messages (ready or being worked on)? None: cannot tell."""
        if self.bus is None:
            return None
        stats = await self.bus.queue_stats(STAGE_QUEUES[stage])
        if not stats or "error" in stats:
            return None
        return int(stats.get("ready", 0)) + int(stats.get("unacked", 0)) > 0

    async def _expire(self, import_id: str, stage: Stage, idle: float) -> bool:
        fr, en = domain.lease_expired_message(stage, idle)
        async with self.outbox.unit_of_work() as uow:
            await self.db.advisory_lock(uow.conn, ADMISSION_LOCK)
            row = await store.import_row(uow.conn, import_id)
            if row is None or ImportStatus(row.status) not in LEASED:
                return False  # it moved on meanwhile
            with log_context(import_id=import_id, site=row.site, establishment=row.establishment, stage=stage.value):
                log.error("no sign of life from %s for %.0f s: import failed, its slot freed", stage.value, idle)
                await self._record_step(uow.conn, StatusEvent(
                    import_id=import_id, site=row.site, establishment=row.establishment, stage=stage,
                    step_status=StepStatus.ERROR, message=fr, message_en=en))
                await self._finish(uow, import_id, ImportStatus.FAILED, fr, en)
                await uow.emit(ImportAbort(import_id=import_id, site=row.site))
                await self.dispatch(uow)
        self._beats.pop(import_id, None)
        return True

    # --- stage events -----------------------------------------------------------------------------

    async def _on_stage_event(self, uow: UnitOfWork, event: StatusEvent) -> None:
        conn = uow.conn
        row = await store.import_row(conn, event.import_id)
        if row is None:
            log.warning("status event for unknown import %s", event.import_id)
            return
        await self._record_step(conn, event)
        current = ImportStatus(row.status)
        status = domain.next_import_status(current, event.stage, event.step_status, event.outcome)
        values: dict[str, Any] = {}
        if event.counts is not None:
            values["counts"] = {**(row.counts or {}), event.stage.value: event.counts}
        if event.alerts is not None:
            kept = [a for a in (row.alerts or []) if a.get("stage") != event.stage.value]
            values["alerts"] = kept + [{**a, "stage": event.stage.value} for a in event.alerts]
        if event.step_status is StepStatus.RUNNING:
            values.update(queued_stage=None, queued_at=None)
        elif not domain.is_terminal(status) and status is not ImportStatus.AWAITING_SELECTION:
            following = next_stage(event.stage)
            if following is not None and row.queued_stage is None:
                values.update(queued_stage=following.value, queued_at=event.at)
        if status is not current and not domain.is_terminal(status):
            values["status"] = status.value
        if values:
            await store.update_import(conn, row.id, values)
        if domain.is_terminal(status) and not domain.is_terminal(current):
            await self._finish(uow, row.id, status, event.message, event.message_en)
            await self.dispatch(uow)
        elif status is not current or event.step_status is not StepStatus.RUNNING:
            await self._log(uow, row.id, row.site, status, stage=event.stage, step=event.step_status,
                            message=event.message)

    async def _record_step(self, conn: AsyncConnection, event: StatusEvent) -> None:
        existing = await store.get_step(conn, event.import_id, event.stage.value)
        ended = event.step_status not in (StepStatus.PENDING, StepStatus.RUNNING)
        if existing is None:
            await store.insert_step(
                conn, import_id=event.import_id, stage=event.stage.value, status=event.step_status.value,
                started_at=event.at, ended_at=event.at if ended else None, message=event.message,
                message_en=event.message_en, counts=event.counts)
            return
        merged = domain.merge_step(StepStatus(existing.status), event.step_status)
        if merged is StepStatus(existing.status) and existing.ended_at is not None and (
                not ended or (event.counts == existing.counts and event.message == existing.message)):
            return  # duplicate or late event (an ended step with new figures — a confirmed selection — updates)
        await store.update_step(conn, event.import_id, event.stage.value, {
            "status": merged.value,
            "started_at": min(as_utc(existing.started_at) or event.at, event.at),
            "ended_at": event.at if ended else existing.ended_at,
            "message": event.message or existing.message, "message_en": event.message_en or existing.message_en,
            "counts": event.counts if event.counts is not None else existing.counts})

    # --- endings ----------------------------------------------------------------------------------

    async def _finish(self, uow: UnitOfWork, import_id: str, status: ImportStatus, message: str | None,
                      message_en: str | None, *, no_change: bool = False) -> None:
        now = utcnow()
        row = await store.end_import(uow.conn, import_id, status.value, message, message_en, no_change, now)
        await self._log(uow, import_id, row.site, status, message=message)
        await self._lifecycle(uow, import_id)
        started = as_utc(row.started_at)

        def count() -> None:  # once committed: a rolled-back ending never happened
            IMPORTS_FINISHED.labels(status.value, row.mode).inc()
            if status is ImportStatus.DONE and started is not None:
                IMPORT_DURATION.labels(row.mode).observe(max(0.0, (now - started).total_seconds()))

        uow.after_commit(count)
        log.info("import %s: %s", import_id, status.value)

    async def _lifecycle(self, uow: UnitOfWork, import_id: str) -> None:
        row = await store.import_row(uow.conn, import_id)
        event = ImportLifecycle(import_id=row.id, site=row.site, establishment=row.establishment,
                                establishments=row.establishments, status=ImportStatus(row.status),
                                mode=Mode(row.mode), file=FileRef(name=row.file_name, sha256=row.sha256,
                                                                  size=row.size),
                                no_change=row.no_change)
        await uow.emit(event)

    async def _log(self, uow: UnitOfWork, import_id: str, site: str, status: ImportStatus, *,
                   stage: Stage | None = None, step: StepStatus | None = None, message: str | None = None) -> None:
        """One line of the event log behind the SSE streams; the streams of this process wake after commit."""
        now = utcnow()
        short, long = domain.label_for(status)
        payload = {"import_id": import_id, "site": site, "status": status.value, "label": short,
                   "label_detail": long, "stage": stage.value if stage else None,
                   "step_status": step.value if step else None, "message": message, "at": now.isoformat()}
        await store.log_event(uow.conn, import_id, site, now, payload)
        await store.bump_admission(uow.conn)
        uow.after_commit(self.notify_streams)

    # --- user actions -----------------------------------------------------------------------------

    async def on_ack(self, delivery: Delivery) -> None:
        """Acknowledgements this process waits for: aborts recorded by the stages (abort.ack.<stage>) and the
        settings lock of an undo import (deposit.ack.thresholds)."""
        if delivery.routing_key.startswith("abort.ack."):
            ack = AbortAck.from_bytes(delivery.body)
            self.acks.ack(f"abort:{ack.import_id}", ack.by, ack.finished)
        else:
            deposit = DepositAck.from_bytes(delivery.body)
            self.acks.ack(f"deposit:{deposit.import_id}", deposit.by)

    async def abort(self, import_id: str) -> tuple[ImportStatus | None, tuple[str, str] | None]:
        """Stop an import: a waiting one at once (`cancelled`); a running one at its next stage boundary —
        every stage service records the abort (acknowledged before this returns) and the step in progress
        rolls back. Returns the status the import has (None: unknown) and why it could not be aborted."""
        async with self.db.read() as conn:
            row = await store.import_row(conn, import_id)
        if row is None:
            return None, None
        current = ImportStatus(row.status)
        if refusal := domain.abort_refusal(current):
            return current, refusal
        if current is ImportStatus.WAITING:
            cancelled = await self.cancel(import_id)
            if cancelled is ImportStatus.CANCELLED:
                return cancelled, None  # it had not started: nothing of it exists anywhere
        key = f"abort:{import_id}"
        self.acks.expect(key, ABORT_ACKERS)
        try:
            async with self.outbox.unit_of_work() as uow:
                await self.db.advisory_lock(uow.conn, ADMISSION_LOCK)
                row = await store.import_row(uow.conn, import_id)
                if refusal := domain.abort_refusal(ImportStatus(row.status)):
                    return ImportStatus(row.status), refusal
                await store.update_import(uow.conn, import_id, {
                    "artifacts": {**(row.artifacts or {}), "abort_requested_at": iso(utcnow())}})
                await uow.emit(ImportAbort(import_id=import_id, site=row.site))
            missing, finished = await self.acks.wait(key, self.settings.deposit_ack_timeout_s)
        finally:
            self.acks.forget(key)
        if missing:
            log.warning("abort of %s: not acknowledged by %s within %.0f s", import_id, ", ".join(sorted(missing)),
                        self.settings.deposit_ack_timeout_s)
        if finished.get(Stage.SESSIONS.value):  # the last stage had committed: the import is integrated
            return ImportStatus.DONE, domain.ABORT_TOO_LATE
        status = await self.cancel(import_id)  # paused for its selection: ends now (the stages dropped it)
        async with self.db.read() as conn:
            now = ImportStatus(await store.import_status(conn, import_id))
        if domain.is_terminal(now) and now is not ImportStatus.CANCELLED:
            return now, domain.abort_refusal(now)
        return status if status is ImportStatus.CANCELLED else now, None

    async def undo(self, import_id: str) -> tuple[str | None, tuple[str, str] | None]:
        """A new import of mode `undo` restoring what `import_id` changed (queued, locked and admitted like any
        import); its settings lock acknowledged before this returns. Returns (new id, None) or (None, why)."""
        new_id = uuid.uuid4().hex
        key = f"deposit:{new_id}"
        self.acks.expect(key, ("thresholds",))
        try:
            async with self.outbox.unit_of_work() as uow:
                conn = uow.conn
                await self.db.advisory_lock(conn, ADMISSION_LOCK)
                target = await store.import_row(conn, import_id)
                later = await store.integrated_after(conn, target.site, as_utc(target.ended_at) or utcnow())
                active = await store.active_imports(conn, target.site, [s.value for s in ACTIVE])
                newer = [integrated(r) for r in later if r.id != target.id]
                if refusal := domain.undo_refusal(integrated(target), newer, [integrated(r) for r in active]):
                    return None, refusal
                await self._record_undo(uow, new_id, target)
            missing, _ = await self.acks.wait(key, self.settings.deposit_ack_timeout_s)
            if missing:
                log.warning("undo %s: settings lock not acknowledged within %.0f s", new_id,
                            self.settings.deposit_ack_timeout_s)
        finally:
            self.acks.forget(key)
        return new_id, None

    async def _record_undo(self, uow: UnitOfWork, new_id: str, target: Any) -> None:
        """The undo import, as a deposit of the file it restores (that of the import integrated before the
        undone one — an identical re-deposit of it then changes nothing, one of the undone file does)."""
        conn = uow.conn
        restored = await store.integrated_before(conn, target.scope, as_utc(target.ended_at) or utcnow())
        file = (FileRef(name=restored.file_name, sha256=restored.sha256, size=restored.size) if restored is not None
                else FileRef(name="(aucun emploi du temps)", sha256="", size=0))
        fr, en = domain.undo_message(target.file_name, as_utc(target.ended_at))
        now = utcnow()
        event = StatusEvent(import_id=new_id, site=target.site, establishment=target.establishment,
                            stage=Stage.DEPOSIT, step_status=StepStatus.OK, at=now,
                            deposit=Deposit(file=file, mode=Mode.UNDO, source="rest",
                                            establishments=target.establishments,
                                            target_uais=sorted(target.establishments.values())))
        await store.insert_import(
            conn, id=new_id, site=target.site, establishment=target.establishment, scope=target.scope,
            establishments=target.establishments, mode=Mode.UNDO.value, dry_run=False,
            status=ImportStatus.WAITING.value, source="rest", account=None, file_name=file.name,
            sha256=file.sha256, size=file.size, created_at=now, ended_at=None, no_change=False, message=fr,
            message_en=en, counts={}, alerts=[], artifacts={"undo_of": target.id})
        await store.insert_step(
            conn, import_id=new_id, stage=Stage.DEPOSIT.value, status=StepStatus.OK.value, started_at=now,
            ended_at=now, message=fr, message_en=en)
        await self._log(uow, new_id, target.site, ImportStatus.WAITING, stage=Stage.DEPOSIT, step=StepStatus.OK,
                        message=fr)
        # The deposit event locks the establishment's settings in threshold control (acknowledged), like a
        # deposit's; this service's own consumer finds the import recorded already.
        await uow.emit(event, message_id=new_id)
        await self.dispatch(uow)

    async def cancel(self, import_id: str) -> ImportStatus | None:
        """Cancel a waiting import or a manual import paused for its selection ("Interrompu")."""
        async with self.outbox.unit_of_work() as uow:
            await self.db.advisory_lock(uow.conn, ADMISSION_LOCK)
            row = await store.import_row(uow.conn, import_id)
            if row is None:
                return None
            current = ImportStatus(row.status)
            if current not in (ImportStatus.WAITING, ImportStatus.AWAITING_SELECTION):
                return current
            await self._finish(uow, import_id, ImportStatus.CANCELLED, *domain.CANCELLED_MESSAGE)
            await self.dispatch(uow)
        return ImportStatus.CANCELLED

    # --- personal data: access log and requests to the services (docs/privacy.md) ---------------------

    async def on_access(self, delivery: Delivery) -> None:
        """A read of personal data a service recorded (AccessRecorded): into the access log, once."""
        event = AccessRecorded.from_bytes(delivery.body)
        async with self.db.transaction() as conn:
            await store.record_access(self.db, conn, delivery.message_id or uuid.uuid4().hex, event)

    async def record_access(self, event: AccessRecorded) -> None:
        """A read of personal data the notifier itself serves: logged before the data is handed out."""
        async with self.db.transaction() as conn:
            await store.record_access(self.db, conn, uuid.uuid4().hex, event)

    async def purge(self) -> dict[str, int]:
        """The access log's own retention (EDT_RETENTION_ACCESS_LOG_DAYS): older entries are deleted; so are
        the sealed answers of person requests nobody read (they came after their request gave up)."""
        now = utcnow()
        async with self.db.transaction() as conn:
            deleted = await store.purge_access_log(conn, now - timedelta(days=self.settings.retention_access_log_days))
            unread = await store.unread_reply_blobs(conn, now - timedelta(seconds=2 * self.settings.privacy_timeout_s))
            await asyncio.to_thread(lambda: [self.blobs.delete(sha) for sha in unread])
            await store.forget_reply_blobs(conn, unread)
        return {"access_log_deleted": deleted, "unread_answers_deleted": len(unread)}

    async def on_privacy_reply(self, delivery: Delivery) -> None:
        """A service answered a privacy request (privacy.reply.<service>): the last answer awaited wakes it."""
        reply = PrivacyReply.from_bytes(delivery.body)
        sha = reply.data.get("blob")
        if sha:  # every notifier process notes it: whoever waits reads it, the purge deletes it if nobody does
            async with self.db.transaction() as conn:
                await store.note_reply_blob(self.db, conn, sha, reply.request_id, utcnow())
        waiting = self._privacy.get(reply.request_id)
        if waiting is not None and reply.by in waiting[0]:
            waiting[0].discard(reply.by)
            waiting[1][reply.by] = reply
            if not waiting[0]:
                waiting[2].set()

    async def ask(self, action: PrivacyAction, services: tuple[str, ...], *, site: str | None = None,
                  person: str | None = None, file_idents: list[FileIdent] | None = None,
                  by: str = "") -> dict[str, PrivacyReply]:
        """Send one request to each service and wait (EDT_PRIVACY_TIMEOUT_S) for every answer, like deposits
        wait for their acknowledgements. Raises PrivacyUnanswered naming who did not answer or failed; the
        requests stay queued for a service that is down, and are carried out when it is back."""
        request_id = uuid.uuid4().hex
        pending, replies, done = self._privacy[request_id] = (set(services), {}, asyncio.Event())
        try:
            async with self.outbox.unit_of_work() as uow:
                for service in services:
                    await uow.emit(PrivacyRequest(request_id=request_id, action=action, service=service, site=site,
                                                  person=person, file_idents=file_idents or [], by=by),
                                   message_id=f"{request_id}:{service}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.privacy_timeout_s):
                    await done.wait()
        finally:
            self._privacy.pop(request_id, None)
        errors = {name: reply.error for name, reply in replies.items() if reply.error}
        if pending or errors:
            raise PrivacyUnanswered(sorted(pending), errors)
        return replies

    async def unseal_reply(self, reply: PrivacyReply) -> dict[str, Any]:
        """What a service said about a person: the sealed blob its reply names, read once and deleted."""
        sha = reply.data.get("blob")
        if not sha:
            return dict(reply.data)
        try:
            data: dict[str, Any] = json.loads(await asyncio.to_thread(self.blobs.read_bytes, sha))
        finally:
            await asyncio.to_thread(self.blobs.delete, sha)
            async with self.db.transaction() as conn:
                await store.forget_reply_blobs(conn, [sha])
        return data

    async def person(self, action: PrivacyAction, site: str, ent_id: str, by: str) -> tuple[
            dict[str, dict[str, Any]], list[FileIdent]]:
        """Export or erase an ENT person everywhere: the reconciler first says what it keeps and who the
        person is in the timetable files (their idents), then every holder gets the request with those
        idents (the reconciler too, for an erasure). Per service, what it answered."""
        first = await self.ask("export", PERSON_FIRST, site=site, person=ent_id, by=by)
        idents = [i for reply in first.values() for i in reply.file_idents]
        if action == "export":
            replies = {**first, **await self.ask("export", PERSON_THEN, site=site, person=ent_id,
                                                 file_idents=idents, by=by)}
        else:
            replies = await self.ask("erase", (*PERSON_FIRST, *PERSON_THEN), site=site, person=ent_id,
                                     file_idents=idents, by=by)
            for reply in first.values():
                await self.unseal_reply(reply)  # what it said before erasing: not kept
        return {name: await self.unseal_reply(reply) for name, reply in replies.items()}, idents
