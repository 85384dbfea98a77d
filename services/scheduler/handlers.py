"""scheduler handlers: stage command in → plan every establishment's sessions in a worker thread
(`prepare`) → diff against the stored sessions and write them in ONE transaction (`apply`, inside
StageWorker's transaction, with the change events in the outbox) → the import is `done`.

Idempotent: a redelivered command whose run finished is dropped by StageWorker; a crash mid-apply rolls
the whole transaction back, and the redelivery diffs again against what is stored, read inside the
transaction (under an advisory lock per establishment on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scheduler import domain, store
from services.scheduler.domain import Memo, Plan, SessionRow, Stored, json_lists
from shared.blobs import gc_paused
from shared.bus import Outbox, StageResult
from shared.db import Database, as_utc, upsert
from shared.messages import CHANGES_EXCHANGE, StageCommand, utcnow
from shared.timetable import loads
from shared.web import Runtime

WRITE_CHUNK = 5000  # rows per multi-row statement on SQLite / per executemany batch
SESSION_COLUMNS = ("id", "site", "establishment", "key", "course", "start", "end", "week", "rooms", "teachers",
                   "classes", "groups", "students", "equipment", "staff", "fp", "import_id")
MEMBER_COLUMNS = ("site", "establishment", "course", "kind", "ident", "start", "end")
CLASS_STUDENT_COLUMNS = ("site", "establishment", "kind", "ident", "student", "start", "end")
_LIST_FIELDS = ("rooms", "teachers", "classes", "groups", "students", "equipment", "staff")


def lock_key(site: str, establishment: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"scheduler:{site}/{establishment}".encode(), digest_size=8).digest(),
                          "big", signed=True)


def _sqlite_ts_text(value: Any) -> str:
    return str(value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds"))


_sqlite_ts_memo = Memo(_sqlite_ts_text, 200_000)


def _sqlite_ts(value: Any) -> str:
    """SQLAlchemy's SQLite DATETIME storage format (naive UTC, microseconds), so raw writes read back
    like ORM ones."""
    return str(_sqlite_ts_memo[value])


# A date for a raw write on SQLite: ISO text, as SQLAlchemy stores it (None stays None); PostgreSQL takes dates.
_sqlite_days = Memo(lambda d: d.isoformat() if d is not None else None, 100_000)


def session_records(rows: Iterable[SessionRow], site: str, establishment: str, import_id: str,
                    *, sqlite: bool) -> list[tuple[Any, ...]]:
    """Rows ready for a bulk write, in SESSION_COLUMNS order (JSON columns as text). One memo lookup per
    column, no call per row: tens of thousands of rows on a first import."""
    J = json_lists  # noqa: N806
    if sqlite:
        T = _sqlite_ts_memo  # noqa: N806
        return [(i, site, establishment, k, c, T[s], T[e], w, J[ro], J[te], J[cl], J[gr], J[st], J[eq], J[sf], fp,
                 import_id) for i, k, c, s, e, w, ro, te, cl, gr, st, eq, sf, fp in rows]
    return [(i, site, establishment, k, c, s, e, w, J[ro], J[te], J[cl], J[gr], J[st], J[eq], J[sf], fp, import_id)
            for i, k, c, s, e, w, ro, te, cl, gr, st, eq, sf, fp in rows]


async def bulk_insert(db: Database, conn: AsyncConnection, table: sa.Table, columns: Sequence[str],
                      records: Sequence[tuple[Any, ...]]) -> None:
    """PostgreSQL: binary COPY on the transaction's own connection; SQLite: executemany of one prepared
    INSERT (sqlite3 runs it in C) in chunks. Records are tuples in `columns` order, ready for the driver."""
    if not records:
        return
    if db.is_postgres:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            table.name, schema_name=table.schema, columns=list(columns), records=records)
        return
    cols = ", ".join(f'"{c}"' for c in columns)
    sql = f'INSERT INTO {table.name} ({cols}) VALUES ({", ".join("?" * len(columns))})'
    for i in range(0, len(records), WRITE_CHUNK):
        await conn.exec_driver_sql(sql, list(records[i:i + WRITE_CHUNK]))


async def bulk_insert_sessions(db: Database, conn: AsyncConnection, records: Sequence[tuple[Any, ...]]) -> None:
    await bulk_insert(db, conn, store.sessions, SESSION_COLUMNS, records)


def build_handlers(rt: Runtime, outbox: Outbox) -> dict[str, Any]:
    settings = rt.settings
    tz = ZoneInfo(settings.timezone)
    db = rt.db

    def plan_one(cmd: StageCommand, est: str, sha: str, kept: list[str] | None,
                 closures: list[dict[str, Any]] | None) -> tuple[Plan, str]:
        tt = rt.blobs.load(sha, loads)
        with gc_paused():
            plan = domain.plan_establishment(tt, site=cmd.site, establishment=est, cutoff=cmd.started_at, tz=tz,
                                             kept=kept, closures=domain.parse_closures(closures))
        return plan, sha

    async def prepare(cmd: StageCommand) -> list[tuple[Plan, str]]:
        """CPU work off the event loop: load each establishment's canonical timetable and plan it."""
        timetables: dict[str, str] = dict(cmd.artifacts.get("timetables") or {})
        if cmd.establishment is not None:
            sha = timetables.get(cmd.establishment) or cmd.artifacts.get("timetable_sha256")
            timetables = {cmd.establishment: sha} if sha else {}
        kept = cmd.artifacts.get("courses_kept")
        closures = cmd.artifacts.get("closures") or {}
        plans = []
        for est, sha in sorted(timetables.items()):
            plans.append(await asyncio.to_thread(plan_one, cmd, est, sha, kept, closures.get(est)))
        return plans

    async def apply(conn: AsyncConnection, cmd: StageCommand, plans: list[tuple[Plan, str]]) -> StageResult:
        per_est: dict[str, dict[str, int]] = {}
        for plan, sha in plans:
            per_est[plan.establishment] = await apply_plan(conn, cmd, plan, sha)
        return domain.decide(per_est, dry_run=cmd.dry_run, cutoff=cmd.started_at)

    async def apply_plan(conn: AsyncConnection, cmd: StageCommand, plan: Plan, sha: str) -> dict[str, int]:
        site, est = plan.site, plan.establishment
        await db.advisory_lock(conn, lock_key(site, est))
        s = store.sessions
        # Same-day keys may sit just before the cutoff (frozen): read a day more than the window.
        result = await conn.execute(sa.select(s.c.id, s.c.key, s.c.fp, s.c.start).where(
            s.c.site == site, s.c.establishment == est, s.c.start > plan.cutoff - timedelta(days=1)))
        stored = [Stored(r.id, r.key, r.fp, as_utc(r.start)) for r in result]
        c = store.courses
        stored_courses = {r.key: (r.fp, r.active) for r in await conn.execute(
            sa.select(c.c.key, c.c.fp, c.c.active).where(c.c.site == site, c.c.establishment == est))}
        sd, cd = await asyncio.to_thread(lambda: (domain.diff_sessions(plan, stored),
                                                  domain.diff_courses(plan, stored_courses)))
        counts = domain.est_counts(plan, sd, cd)
        if cmd.dry_run:
            return counts
        # CPU work in threads while the database works: the session records are built while the courses
        # are written, the change events while the sessions are.
        records_task = asyncio.create_task(asyncio.to_thread(
            session_records, sd.create, site, est, cmd.import_id, sqlite=not db.is_postgres))
        events_task: asyncio.Task[list[bytes]] | None = None
        try:
            await write_courses(conn, cmd, plan, cd)
            records = await records_task
            events_task = asyncio.create_task(asyncio.to_thread(domain.change_events, plan, sd, cmd.import_id))
            await write_sessions(conn, cmd, sd, records)
        finally:
            if not records_task.done():
                await asyncio.wait([records_task])
            events = await events_task if events_task is not None else []
        now = utcnow()
        e, cs = store.establishments, store.class_students
        old_fp = (await conn.execute(sa.select(e.c.class_students_fp).where(
            e.c.site == site, e.c.establishment == est))).scalar()
        if old_fp != plan.class_students_fp:  # who is in which class or part changed: rewrite that list
            await conn.execute(cs.delete().where(cs.c.site == site, cs.c.establishment == est))
            if db.is_postgres:
                rows = [(site, est, *r) for r in plan.class_students]
            else:
                d = _sqlite_days
                rows = [(site, est, k, i, st, d[a], d[b]) for k, i, st, a, b in plan.class_students]
            await bulk_insert(db, conn, cs, CLASS_STUDENT_COLUMNS, rows)
        await conn.execute(upsert(db, e, {
            "site": site, "establishment": est, "import_id": cmd.import_id, "timetable_sha256": sha,
            "names": plan.names, "class_students_fp": plan.class_students_fp, "updated_at": now},
            ["site", "establishment"], ["import_id", "timetable_sha256", "names", "class_students_fp", "updated_at"]))
        if events:  # in the same transaction: published by the outbox relay after commit
            lz4 = await toast_lz4(conn)
            if lz4:  # a first import's events are megabytes: lz4 compresses them 4× faster than pglz
                await conn.execute(sa.text("SET LOCAL default_toast_compression = 'lz4'"))
            await conn.execute(store.outbox.insert(), [
                {"exchange": CHANGES_EXCHANGE, "routing_key": f"sessions.{site}.{est}", "body": body,
                "message_id": f"{cmd.import_id}:{est}:{n}"} for n, body in enumerate(events, 1)])
            if lz4:
                await conn.execute(sa.text("SET LOCAL default_toast_compression TO DEFAULT"))
        return counts

    lz4_known: list[bool] = []

    async def toast_lz4(conn: AsyncConnection) -> bool:
        """PostgreSQL ≥ 14 built with lz4 can compress TOASTed values with it (asked once per process)."""
        if not db.is_postgres:
            return False
        if not lz4_known:
            lz4_known.append(bool((await conn.execute(sa.text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"))).scalar()))
        return lz4_known[0]

    async def write_sessions(conn: AsyncConnection, cmd: StageCommand, sd: domain.SessionDiff,
                             records: Sequence[tuple[Any, ...]]) -> None:
        """`records`: `session_records(sd.create)`."""
        s = store.sessions
        await bulk_insert_sessions(db, conn, records)
        if sd.update:
            stmt = s.update().where(s.c.id == sa.bindparam("_id")).values(
                {name: sa.bindparam(name) for name in ("start", "end", "week", *_LIST_FIELDS, "fp", "import_id")})
            params = [{"_id": r.id, "start": r.start, "end": r.end, "week": r.week,
                       **{f: list(getattr(r, f)) for f in _LIST_FIELDS}, "fp": r.fp, "import_id": cmd.import_id}
                      for r in sd.update]
            for i in range(0, len(params), WRITE_CHUNK):
                await conn.execute(stmt, params[i:i + WRITE_CHUNK])
        ids = [r.id for r in sd.delete]
        for i in range(0, len(ids), 500):
            await conn.execute(s.delete().where(s.c.id.in_(ids[i:i + 500])))

    async def write_courses(conn: AsyncConnection, cmd: StageCommand, plan: Plan, cd: domain.CourseDiff) -> None:
        c, m = store.courses, store.course_members
        site, est, now = plan.site, plan.establishment, utcnow()

        def values(row: domain.CourseRow) -> dict[str, Any]:
            return {"subject": row.subject, "kind": row.kind, "target": row.target, "label": row.label,
                    "teachers": list(row.teachers), "classes": list(row.classes), "students": row.student_count,
                    "active": True, "fp": row.fp, "import_id": cmd.import_id, "updated_at": now}

        if cd.create:
            await conn.execute(c.insert(), [{"site": site, "establishment": est, "key": r.key, **values(r)}
                                            for r in cd.create])
        changed = cd.update + cd.reactivate
        if changed:
            stmt = c.update().where(c.c.site == site, c.c.establishment == est, c.c.key == sa.bindparam("_key"))
            await conn.execute(stmt, [{"_key": r.key, **values(r)} for r in changed])
        if cd.deactivate:
            for i in range(0, len(cd.deactivate), 500):
                await conn.execute(c.update().where(c.c.site == site, c.c.establishment == est,
                                                    c.c.key.in_(cd.deactivate[i:i + 500]))
                                   .values(active=False, import_id=cmd.import_id, updated_at=now))
        # Members follow their course: rewritten only for courses whose members (or label) changed; a
        # deactivated course keeps its members, so its past sessions stay in everyone's feeds.
        rewrite = [r.key for r in changed]
        for i in range(0, len(rewrite), 500):
            await conn.execute(m.delete().where(m.c.site == site, m.c.establishment == est,
                                                m.c.course.in_(rewrite[i:i + 500])))
        if db.is_postgres:
            rows = [(site, est, r.key, *mem) for r in cd.create + changed for mem in r.members]
        else:
            d = _sqlite_days
            rows = [(site, est, r.key, kind, ident, d[a], d[b])
                    for r in cd.create + changed for kind, ident, a, b in r.members]
        await bulk_insert(db, conn, m, MEMBER_COLUMNS, rows)

    return {"prepare": prepare, "apply": apply}
