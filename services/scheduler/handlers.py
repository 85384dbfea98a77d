"""scheduler handlers: stage command in → plan every establishment's sessions in a worker thread
(`prepare`) → diff against the stored sessions and write them in ONE transaction (`apply`, inside
StageWorker's transaction, with the change events in the outbox) → the import is `done`.

Idempotent: a redelivered command whose run finished is dropped by StageWorker; a crash mid-apply rolls
the whole transaction back, and the redelivery diffs again against what is stored, read inside the
transaction (under an advisory lock per establishment on PostgreSQL).
"""

from __future__ import annotations

import asyncio
from typing import Any
from zoneinfo import ZoneInfo

from services.scheduler import domain, store
from services.scheduler.domain import Plan
from shared.blobs import BlobStore, gc_paused
from shared.db import Database
from shared.messages import CHANGES_EXCHANGE, Envelope, FileIdent, PrivacyRequest, StageCommand
from shared.messages import Stage as StageName
from shared.settings import Settings
from shared.stage import StageResult, UnitOfWork
from shared.timetable import loads


class SchedulerStage:
    """The session-generation stage: courses, sessions and their change events for each establishment."""

    name = StageName.SESSIONS

    def __init__(self, db: Database, blobs: BlobStore, settings: Settings) -> None:
        self.db = db
        self.blobs = blobs
        self.tz = ZoneInfo(settings.timezone)

    def _plan_one(self, cmd: StageCommand, est: str, sha: str, kept: list[str] | None,
                  closures: list[dict[str, Any]] | None) -> tuple[Plan, str]:
        if not sha:  # an undo back to no timetable: from its start on, no course and no session
            return domain.empty_plan(site=cmd.site, establishment=est, cutoff=cmd.started_at), sha
        tt = self.blobs.load(sha, loads)
        with gc_paused():
            plan = domain.plan_establishment(tt, site=cmd.site, establishment=est, cutoff=cmd.started_at, tz=self.tz,
                                             kept=kept, closures=domain.parse_closures(closures))
        return plan, sha

    async def prepare(self, cmd: StageCommand) -> list[tuple[Plan, str]]:
        """CPU work off the event loop: load each establishment's canonical timetable and plan it."""
        timetables: dict[str, str] = dict(cmd.artifacts.get("timetables") or {})
        if cmd.establishment is not None:
            sha = timetables.get(cmd.establishment)
            if sha is None:
                sha = cmd.artifacts.get("timetable_sha256")
            timetables = {cmd.establishment: sha} if sha is not None else {}
        kept = cmd.artifacts.get("courses_kept")
        closures = cmd.artifacts.get("closures") or {}
        plans = []
        for est, sha in sorted(timetables.items()):
            plans.append(await asyncio.to_thread(self._plan_one, cmd, est, sha, kept, closures.get(est)))
        return plans

    async def apply(self, uow: UnitOfWork, cmd: StageCommand, plans: list[tuple[Plan, str]]) -> StageResult:
        per_est: dict[str, dict[str, int]] = {}
        for plan, sha in plans:
            per_est[plan.establishment] = await self._apply_plan(uow, cmd, plan, sha)
        return domain.decide(per_est, dry_run=cmd.dry_run, cutoff=cmd.started_at)

    async def _apply_plan(self, uow: UnitOfWork, cmd: StageCommand, plan: Plan, sha: str) -> dict[str, int]:
        db, conn = self.db, uow.conn
        site, est = plan.site, plan.establishment
        await db.advisory_lock(conn, "sessions", site, est)
        stored, stored_courses = await store.stored_state(conn, site, est, plan.cutoff)
        sd, cd = await asyncio.to_thread(lambda: (domain.diff_sessions(plan, stored),
                                                  domain.diff_courses(plan, stored_courses)))
        counts = domain.est_counts(plan, sd, cd)
        if cmd.dry_run:
            return counts
        # CPU work in threads while the database works: the session records are built while the courses
        # are written, the change events while the sessions are.
        records_task = asyncio.create_task(asyncio.to_thread(
            store.session_records, sd.create, site, est, cmd.import_id, sqlite=not db.is_postgres))
        events_task: asyncio.Task[list[bytes]] | None = None
        try:
            await store.write_courses(db, conn, cmd.import_id, plan, cd)
            records = await records_task
            events_task = asyncio.create_task(asyncio.to_thread(domain.change_events, plan, sd, cmd.import_id))
            await store.write_sessions(db, conn, cmd.import_id, sd, records)
        finally:
            if not records_task.done():
                await asyncio.wait([records_task])
            events = await events_task if events_task is not None else []
        await store.write_establishment(db, conn, cmd.import_id, plan, sha)
        await store.refresh_statistics(db, conn, sd.changed + len(cd.create) + len(cd.update))
        # In the same transaction: published by the outbox relay after commit.
        await uow.emit_many([Envelope(CHANGES_EXCHANGE, f"sessions.{site}.{est}", body, f"{cmd.import_id}:{est}:{n}")
                             for n, body in enumerate(events, 1)])
        return counts

    async def on_privacy(self, uow: UnitOfWork, request: PrivacyRequest) -> tuple[dict[str, Any], list[FileIdent]]:
        """What the scheduler keeps about a person, by the idents the reconciler matched to their ENT id (export),
        or their removal from courses, classes, parts, sessions and display names (erase: "sessions keep their
        course, not the person"). Nothing of the scheduler's expires by retention."""
        if request.action == "retention" or request.site is None:
            return {}, []
        postgres = self.db.is_postgres
        found = []
        for person in request.file_idents:
            if request.action == "erase":
                await self.db.advisory_lock(uow.conn, "sessions", request.site, person.establishment)
                found.append({"establishment": person.establishment, "kind": person.kind, "ident": person.ident,
                              "erased": await store.erase_person(uow.conn, postgres, request.site,
                                                                 person.establishment, person.kind, person.ident)})
            else:
                found.append(await store.person_records(uow.conn, postgres, request.site, person.establishment,
                                                        person.kind, person.ident))
        return {"timetable_people": found}, []

    def close(self) -> None:
        return None
