"""thresholds handlers: stage command in → baseline + figures (outside the transaction) → one transaction
(StageWorker: the run, the outcome event, the next command, the notification and the e-mail to send)
→ events out. Lifecycle events (import.history.*) mark imports integrated: the baseline and the
automatic-import precondition come from them, never from another service's tables; directory events
(directory.updated.*) bring the ENT directory snapshots the unreconciled controls read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from services.thresholds import domain, store
from shared.blobs import BlobStore, gc_paused
from shared.bus import Bus, Delivery
from shared.db import Database
from shared.messages import (
    NOTIFICATIONS_EXCHANGE,
    DepositAck,
    DirectoryBarrier,
    DirectoryUpdated,
    Envelope,
    ImportLifecycle,
    ImportStatus,
    Mode,
    StageCommand,
    StatusEvent,
    utcnow,
)
from shared.messages import Stage as StageName
from shared.outbox import Outbox
from shared.reconcile import matching_figures, reconcile_snapshot
from shared.settings import Settings
from shared.stage import StageResult, UnitOfWork
from shared.timetable import loads

log = logging.getLogger("edt.thresholds")

LIFECYCLE_QUEUE = "edt.thresholds.lifecycle"
# Terminal lifecycle events (integrated imports, end of a site's lock) and the first stage event of an
# import (start of the lock).
LIFECYCLE_KEYS = ("import.history.#", "import.deposit.*", "import.validation.running")
# ENT directory snapshots announced by the reconciler (DirectoryUpdated), and the stage's barrier markers.
DIRECTORY_QUEUE = "edt.thresholds.directory"
DIRECTORY_KEYS = ("directory.updated.*",)


# --- the stage --------------------------------------------------------------------------------------


@dataclass
class Prepared:
    checks: list[domain.EstablishmentCheck]
    emails: list[str]
    models: dict[str, str]  # establishment → sha256 of its canonical model ("" for an undo to nothing)
    missing_model: bool = False
    restored_from: dict[str, str | None] | None = None  # an undo: establishment → import whose model it restores


class ThresholdsStage:
    """The threshold-control stage, and the consumers of the events it decides from (lifecycle, directory)."""

    name = StageName.THRESHOLDS

    def __init__(self, db: Database, bus: Bus, blobs: BlobStore, settings: Settings, outbox: Outbox, *,
                 mail_sent: Callable[[], None] | None = None) -> None:
        self.db = db
        self.bus = bus
        self.outbox = outbox
        self.blobs = blobs
        self.settings = settings
        self.mail_sent = mail_sent  # wakes the mail relay once an e-mail to send has been committed
        # What a stage waits for (a previous import's lifecycle event, a barrier marker), by key: set by this
        # process's consumers after their commit, so the wait ends at once; another process's consumer may
        # handle it instead, hence the slower look in the database too.
        self._arrived: dict[str, asyncio.Event] = {}

    def _arrival(self, key: str) -> None:
        event = self._arrived.get(key)
        if event is not None:
            event.set()

    async def _wait(self, key: str, seen: Callable[[], Awaitable[bool]], what: str) -> None:
        """Until `seen()` (bounded by thresholds_lifecycle_wait_s): woken by this process's consumer, else
        by looking in the database every 0.25 s."""
        event = self._arrived.setdefault(key, asyncio.Event())
        deadline = time.monotonic() + self.settings.thresholds_lifecycle_wait_s
        try:
            while not await seen():
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("%s not seen; deciding without it", what)
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=min(0.25, left))
        finally:
            self._arrived.pop(key, None)

    async def _wait_for_lifecycle(self, import_id: str) -> None:
        """The previous import's `import.history.done` is published when the next import is admitted: it
        may still be on its way. Wait (bounded) so that the baseline and the precondition see it."""
        async def seen() -> bool:
            async with self.db.read() as conn:
                return await store.lifecycle_seen(conn, import_id)

        await self._wait(f"lifecycle:{import_id}", seen, f"lifecycle of previous import {import_id}")

    async def _directory_barrier(self, import_id: str) -> None:
        """A directory uploaded just before this import must count. Its event was on the broker before the
        upload's answer (the reconciler flushes its outbox first), hence before this import's deposit, so it
        sits in our directory queue ahead of a marker sent now: once the marker has been consumed (FIFO,
        one message at a time), the event has been applied. Bounded like the lifecycle wait.

        The marker goes straight to the bus, not through the outbox: it is a probe sent from `prepare`,
        outside any transaction, and records no decision — losing it costs only the bounded wait, a
        redelivered command sends a fresh one — while through the outbox it would need a transaction of
        its own and a relay round before the stage could even start waiting."""
        marker = f"{import_id}:{uuid.uuid4().hex[:8]}"

        async def seen() -> bool:
            async with self.db.read() as conn:
                return await store.barrier_seen(conn, marker)

        key = f"barrier:{marker}"
        self._arrived[key] = asyncio.Event()  # before the marker can come back
        await self.bus.publish("", DIRECTORY_QUEUE, DirectoryBarrier(barrier=marker).to_bytes())
        await self._wait(key, seen, f"directory barrier {marker}")
        async with self.db.transaction() as conn:
            await store.drop_barrier(conn, marker)

    async def prepare(self, cmd: StageCommand) -> Prepared:
        if cmd.mode is Mode.UNDO:
            return await self._prepare_undo(cmd)
        previous = cmd.artifacts.get("previous_import")
        if previous:
            await self._wait_for_lifecycle(previous)
        await self._directory_barrier(cmd.import_id)
        parts: dict[str, str] = dict(cmd.artifacts.get("timetables") or {})
        if not parts and cmd.establishment and cmd.artifacts.get("timetable_sha256"):
            parts = {cmd.establishment: cmd.artifacts["timetable_sha256"]}
        tz = self.settings.timezone
        today = cmd.started_at.astimezone(ZoneInfo(tz)).date()
        year_start = domain.school_year_start(cmd.started_at, self.settings.school_year_start, tz)
        async with self.db.read() as conn:
            settings, emails, _ = await store.load_settings(conn, cmd.site)
            inputs = []
            for est, sha in sorted(parts.items()):
                base = await store.baseline(conn, cmd.site, est)
                done = await store.manual_done_dates(conn, cmd.site, est, ZoneInfo(tz))
                refusal = domain.automatic_import_refusal(cmd.mode, done, year_start)
                directory = await store.directory_of(conn, cmd.site, est)
                inputs.append((est, sha, base.sha256 if base else None, base.import_id if base else None, refusal,
                               directory))

        def compute() -> list[domain.EstablishmentCheck]:
            checks = []
            for est, sha, base_sha, base_id, refusal, directory in inputs:
                tt = self.blobs.load(sha, loads)
                new = self.facts(sha)
                old = self.facts(base_sha) if base_sha else None
                # No directory for the establishment: the unreconciled controls stay "not computed".
                matching = (matching_figures(reconcile_snapshot(self.blobs, sha, tt, directory))
                            if directory else None)
                found = domain.figures(old, new, today, matching)
                checks.append(domain.EstablishmentCheck(est, base_id, domain.evaluate(settings, found), refusal))
            return checks

        def compute_paused() -> list[domain.EstablishmentCheck]:
            with gc_paused():  # the facts and the matching build thousands of objects that all survive
                return compute()

        checks = await asyncio.to_thread(compute_paused)  # CPU work off the event loop
        return Prepared(checks, emails, parts, missing_model=not parts)

    async def _prepare_undo(self, cmd: StageCommand) -> Prepared:
        """An undo import restores, for each establishment of the undone import, the model integrated before
        it (none, "", when the undone import was the establishment's first): those are its timetables from
        here on. The controls compare them with the current baseline, as figures only (an undo never blocks)."""
        undone = str(cmd.artifacts["undo_of"])
        await self._wait_for_lifecycle(undone)
        ests = sorted(cmd.establishments) or ([cmd.establishment] if cmd.establishment else [])
        async with self.db.read() as conn:
            settings, emails, _ = await store.load_settings(conn, cmd.site)
            pairs = [(est, await store.baseline(conn, cmd.site, est), await store.model_before(conn, cmd.site, est,
                                                                                             undone))
                     for est in ests]
        today = cmd.started_at.astimezone(ZoneInfo(self.settings.timezone)).date()

        def compute() -> list[domain.EstablishmentCheck]:
            checks = []
            for est, base, restore in pairs:
                old = self.facts(base.sha256) if base is not None and base.sha256 else None
                new = self.facts(restore.sha256) if restore is not None and restore.sha256 else domain.EMPTY
                checks.append(domain.EstablishmentCheck(est, base.import_id if base else None,
                                                        domain.evaluate(settings, domain.figures(old, new, today))))
            return checks

        checks = await asyncio.to_thread(compute)
        restored = {est: restore.sha256 if restore is not None else "" for est, _, restore in pairs}
        return Prepared(checks, emails, restored, missing_model=not restored,
                        restored_from={est: restore.import_id if restore is not None else None
                                       for est, _, restore in pairs})

    def facts(self, sha: str) -> domain.Facts:
        """A model's facts, derived once per process (the baseline's were derived when it was the new one)."""
        blobs = self.blobs
        return blobs.derive(sha, "thresholds.facts", lambda: domain.facts_of(blobs.load(sha, loads)))

    async def apply(self, uow: UnitOfWork, cmd: StageCommand, prepared: Prepared) -> StageResult:
        if prepared.missing_model:
            raise RuntimeError("no canonical timetable in the command's artifacts")
        conn = uow.conn
        result = domain.decide(cmd.mode, cmd.dry_run, prepared.checks)
        # The establishment's own closure periods travel on: no session is generated on them.
        result.artifacts["closures"] = await store.load_closures(conn, cmd.site, sorted(prepared.models))
        if prepared.restored_from is not None:  # an undo: the models it restores are its timetables
            result.artifacts["timetables"] = dict(prepared.models)
            result.artifacts["restored_from"] = prepared.restored_from
        if cmd.dry_run:
            return result  # nothing written: a dry run is never a baseline and notifies nobody
        await store.record_models(self.db, conn, cmd.import_id, cmd.site, cmd.mode, prepared.models, utcnow())
        if result.outcome in (ImportStatus.BLOCKED, ImportStatus.REJECTED):
            await self._notify(uow, cmd, result, prepared.emails)
        return result

    async def _notify(self, uow: UnitOfWork, cmd: StageCommand, result: StageResult, emails: list[str]) -> None:
        """Every deposit account with notify on must hear of it: an outbound message on edt.notifications
        (the ENT messaging delivers it to them), and an e-mail to the site's notification addresses."""
        kind = "blocked" if result.outcome is ImportStatus.BLOCKED else "refused"
        body = domain.notification_body(cmd, result, kind, utcnow())
        await uow.emit(Envelope(NOTIFICATIONS_EXCHANGE, f"threshold.{kind}.{cmd.site}", json.dumps(body).encode(),
                                f"{cmd.import_id}:threshold.{kind}"))
        if self.settings.smtp_url and emails:
            subject, text = domain.mail_text(body)
            await store.queue_mail(uow.conn, cmd.import_id, cmd.site, emails, subject, text, utcnow())
            if self.mail_sent is not None:
                uow.after_commit(self.mail_sent)

    def close(self) -> None:
        return None

    # --- lifecycle ----------------------------------------------------------------------------------

    async def on_lifecycle(self, delivery: Delivery) -> None:
        if delivery.routing_key.startswith("import.history."):
            event = ImportLifecycle.from_bytes(delivery.body)
            async with self.db.transaction() as conn:
                await store.record_lifecycle(self.db, conn, event)
            self._arrival(f"lifecycle:{event.import_id}")
            return
        # A deposit (or, for imports deposited before deposits locked, the start of validation) locks the
        # establishment's settings until the import ends; a deposit is acknowledged to the dropzone, which
        # answers its client once the lock holds (design.md §5: settings locked from the 202 on).
        status = StatusEvent.from_bytes(delivery.body)
        async with self.outbox.unit_of_work() as uow:
            conn = uow.conn
            ended = await store.lifecycle_seen(conn, status.import_id)
            if not ended and status.outcome is not ImportStatus.REJECTED:
                await store.lock_establishment(self.db, conn, status.import_id, status.site, status.establishment,
                                               status.at)
            if status.stage is StageName.DEPOSIT:
                await uow.emit(DepositAck(import_id=status.import_id, by="thresholds"))

    async def on_directory(self, delivery: Delivery) -> None:
        """A DirectoryUpdated event: keep the newest snapshot per establishment (by the reconciler's commit
        time, so a late redelivery never rolls back); or one of our barrier markers: record it."""
        obj = json.loads(delivery.body)
        if "barrier" in obj:
            marker = DirectoryBarrier.model_validate(obj)
            now = utcnow()
            async with self.db.transaction() as conn:
                await store.record_barrier(self.db, conn, marker.barrier, now)
            self._arrival(f"barrier:{marker.barrier}")
            return
        event = DirectoryUpdated.model_validate(obj)
        async with self.db.transaction() as conn:
            await store.keep_newest_directory(self.db, conn, event.site, event.establishment, event.sha256, event.at)
