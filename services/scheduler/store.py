"""Tables owned by the scheduler service (session generation, stage 5), the stage's bulk writes and the
results routes' queries.

Idents in the list columns are the timetable's own (`Ident` attributes, one space per kind); instants
are aware UTC. A session's `id` is derived from (site, establishment, key), so it is known before the
row is written (bulk COPY, change events) and stays the same across re-imports (iCal UID).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scheduler import domain
from services.scheduler.domain import Memo, Plan, SessionRow, Stored, json_lists
from shared.blobs import gc_paused
from shared.db import (
    Database,
    as_utc,
    known_establishments_table,
    outbox_table,
    revoked_tokens_table,
    service_metadata,
    stage_aborts_table,
    stage_runs_table,
    upsert,
)
from shared.messages import utcnow

metadata = service_metadata("scheduler")
outbox = outbox_table(metadata)
revoked_tokens = revoked_tokens_table(metadata)
known_establishments = known_establishments_table(metadata)
runs = stage_runs_table(metadata)
aborts = stage_aborts_table(metadata)

# One dated occurrence of a course. Written in bulk (COPY / multi-row insert); re-imports diff by `key`
# (course | date | first place) through `fp`, a digest of everything that can change.
sessions = sa.Table(
    "scheduler_sessions",
    metadata,
    sa.Column("id", sa.String(24), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("establishment", sa.String(64), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("course", sa.String(128), nullable=False),
    sa.Column("start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("week", sa.Integer, nullable=False),
    sa.Column("rooms", sa.JSON, nullable=False),
    sa.Column("teachers", sa.JSON, nullable=False),
    sa.Column("classes", sa.JSON, nullable=False),
    sa.Column("groups", sa.JSON, nullable=False),
    sa.Column("students", sa.JSON, nullable=False),  # students named on the slot itself (`Eleve`), rare
    sa.Column("equipment", sa.JSON, nullable=False),
    sa.Column("staff", sa.JSON, nullable=False),
    sa.Column("fp", sa.String(16), nullable=False),
    sa.Column("import_id", sa.String(32), nullable=False),  # the import that created or last updated it
    sa.Index("ix_scheduler_sessions_est_start", "site", "establishment", "start"),
    sa.Index("ix_scheduler_sessions_course", "site", "establishment", "course", "start"),
)

# The courses derived from the timetable (design.md §7); a course that disappears stays (its past
# sessions refer to it) with active = false.
courses = sa.Table(
    "scheduler_courses",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("subject", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # class | group
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("label", sa.String(255), nullable=False),
    sa.Column("teachers", sa.JSON, nullable=False),
    sa.Column("classes", sa.JSON, nullable=False),
    sa.Column("students", sa.Integer, nullable=False),  # number of students
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("fp", sa.String(16), nullable=False),  # digest of label, teachers and members
    sa.Column("import_id", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Who and what each course concerns: the index behind the person / class / group filters and feeds.
course_members = sa.Table(
    "scheduler_course_members",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("establishment", sa.String(64), nullable=False),
    sa.Column("course", sa.String(128), nullable=False),
    # teacher | staff | student | class | group (what the course names, the class filter) | sclass | part
    # (classes and parts whose every student is in the course: see class_students)
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("ident", sa.String(64), nullable=False),
    sa.Column("start", sa.Date, nullable=True),  # a student's membership dates (class change mid-year)
    sa.Column("end", sa.Date, nullable=True),
    sa.Index("ix_scheduler_course_members_ident", "site", "establishment", "kind", "ident"),
    sa.Index("ix_scheduler_course_members_course", "site", "establishment", "course"),
)

# The students of each class ("sclass") and part of class ("part"), with their membership dates: a
# student's courses are those naming one of their classes or parts (kinds sclass / part) or them.
class_students = sa.Table(
    "scheduler_class_students",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("establishment", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("ident", sa.String(64), nullable=False),
    sa.Column("student", sa.String(64), nullable=False),
    sa.Column("start", sa.Date, nullable=True),
    sa.Column("end", sa.Date, nullable=True),
    sa.Index("ix_scheduler_class_students_student", "site", "establishment", "student"),
)

# Per establishment: the last integrated timetable and the display names feeds and views use.
establishments = sa.Table(
    "scheduler_establishments",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("import_id", sa.String(32), nullable=False),
    sa.Column("timetable_sha256", sa.String(64), nullable=False),
    sa.Column("names", sa.JSON, nullable=False),  # {"teachers": {ident: name}, "rooms": …, "classes": …}
    sa.Column("class_students_fp", sa.String(16), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


# iCal subscriptions (design.md §5): a feed URL carrying a secret, usable with no header. Only the
# secret's sha256 is stored; the URL names the row by `id`, so a lookup never depends on the secret.
subscriptions = sa.Table(
    "scheduler_subscriptions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("establishment", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # class | group | teacher | student
    sa.Column("ident", sa.String(64), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_scheduler_subscriptions_feed", "site", "establishment", "kind", "ident"),
)


# --- bulk writes of the stage -----------------------------------------------------------------------
# A first import writes tens of thousands of rows: raw driver calls with rows prepared as tuples.

WRITE_CHUNK = 5000  # rows per multi-row statement on SQLite / per executemany batch
SESSION_COLUMNS = ("id", "site", "establishment", "key", "course", "start", "end", "week", "rooms", "teachers",
                   "classes", "groups", "students", "equipment", "staff", "fp", "import_id")
MEMBER_COLUMNS = ("site", "establishment", "course", "kind", "ident", "start", "end")
CLASS_STUDENT_COLUMNS = ("site", "establishment", "kind", "ident", "student", "start", "end")
_LIST_FIELDS = ("rooms", "teachers", "classes", "groups", "students", "equipment", "staff")


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
    await bulk_insert(db, conn, sessions, SESSION_COLUMNS, records)


async def stored_state(conn: AsyncConnection, site: str, est: str, cutoff: datetime) -> tuple[
        list[Stored], dict[str, tuple[str, bool]]]:
    """What the establishment has now: its sessions from the day before `cutoff` on (same-day keys may sit
    just before the cutoff, frozen) and every course's (fp, active)."""
    since = cutoff - timedelta(days=1)
    # Raw rows: tens of thousands on an L school, whose type processing (SQLAlchemy's, then as_utc) cost
    # more than the rest of the stage. SQLite stores naive UTC text in one fixed width, PostgreSQL hands
    # aware datetimes.
    sqlite = conn.dialect.name == "sqlite"
    table = sessions.name if sqlite else f"{sessions.schema}.{sessions.name}"
    query = sa.text(f"SELECT id, key, fp, start FROM {table} "  # noqa: S608 - names are ours, values bound
                    "WHERE site = :site AND establishment = :est AND start > :since")
    rows = (await conn.execute(query, {"site": site, "est": est,
                                       "since": _sqlite_ts(since) if sqlite else since})).all()
    with gc_paused():  # tens of thousands of tuples that all live on: collections here only walk them
        if sqlite:
            stored = [Stored(i, k, f, datetime.fromisoformat(t + "+00:00")) for i, k, f, t in rows]
        else:
            stored = [Stored(i, k, f, t) for i, k, f, t in rows]
    c = courses
    stored_courses = {r.key: (r.fp, r.active) for r in await conn.execute(
        sa.select(c.c.key, c.c.fp, c.c.active).where(c.c.site == site, c.c.establishment == est))}
    return stored, stored_courses


async def write_sessions(db: Database, conn: AsyncConnection, import_id: str, sd: domain.SessionDiff,
                         records: Sequence[tuple[Any, ...]]) -> None:
    """`records`: `session_records(sd.create)`."""
    s = sessions
    await bulk_insert_sessions(db, conn, records)
    if sd.update:
        stmt = s.update().where(s.c.id == sa.bindparam("_id")).values(
            {name: sa.bindparam(name) for name in ("start", "end", "week", *_LIST_FIELDS, "fp", "import_id")})
        params = [{"_id": r.id, "start": r.start, "end": r.end, "week": r.week,
                   **{f: list(getattr(r, f)) for f in _LIST_FIELDS}, "fp": r.fp, "import_id": import_id}
                  for r in sd.update]
        for i in range(0, len(params), WRITE_CHUNK):
            await conn.execute(stmt, params[i:i + WRITE_CHUNK])
    ids = [r.id for r in sd.delete]
    for i in range(0, len(ids), 500):
        await conn.execute(s.delete().where(s.c.id.in_(ids[i:i + 500])))


async def write_courses(db: Database, conn: AsyncConnection, import_id: str, plan: Plan,
                        cd: domain.CourseDiff) -> None:
    c, m = courses, course_members
    site, est, now = plan.site, plan.establishment, utcnow()

    def values(row: domain.CourseRow) -> dict[str, Any]:
        return {"subject": row.subject, "kind": row.kind, "target": row.target, "label": row.label,
                "teachers": list(row.teachers), "classes": list(row.classes), "students": row.student_count,
                "active": True, "fp": row.fp, "import_id": import_id, "updated_at": now}

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
                               .values(active=False, import_id=import_id, updated_at=now))
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


# The planner's statistics on the sessions tables are refreshed in the writing transaction when what it wrote
# is a good part of what they were believed to hold (ANALYZE_AFTER_ROWS, and a tenth of the rows the last
# statistics counted). Without them, right after a first import, PostgreSQL believes the tables empty
# (autovacuum analyses a minute later at best) and picks nested loops, and SQLite (which has none until
# ANALYZE) walks every session of the establishment by start: a class feed of an L school took seconds, or
# 100+ ms. Past that, the next import of one school among hundreds changes little of what the statistics say,
# and an ANALYZE of a table of millions of rows on every import cost each scheduler transaction a sample of
# 30,000 pages and a lock every other import's ANALYZE waited for (PostgreSQL skips a locked table instead).
ANALYZE_AFTER_ROWS = 2000
STALE_FRACTION = 0.1


def statistics_stale(rows_written: int, rows_counted: float | None) -> bool:
    """Whether a write of `rows_written` rows calls for fresh statistics on a table whose last ones counted
    `rows_counted` rows (None: never analysed)."""
    if rows_written < ANALYZE_AFTER_ROWS:
        return False
    return rows_counted is None or rows_written > STALE_FRACTION * rows_counted


async def rows_counted(db: Database, conn: AsyncConnection, table: sa.Table) -> float | None:
    """The rows the table's last statistics counted, None if it has none."""
    if db.is_postgres:
        found = await conn.scalar(sa.text("SELECT reltuples FROM pg_class WHERE oid = CAST(:name AS regclass)"),
                                  {"name": f"{table.schema}.{table.name}"})
        return float(found) if found is not None and found >= 0 else None
    has_stats = await conn.scalar(sa.text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"))
    stat = await conn.scalar(sa.text("SELECT stat FROM sqlite_stat1 WHERE tbl = :name LIMIT 1"),
                             {"name": table.name}) if has_stats else None
    return float(stat.split()[0]) if stat else None


async def refresh_statistics(db: Database, conn: AsyncConnection, rows_written: int) -> None:
    if rows_written < ANALYZE_AFTER_ROWS:
        return  # never stale whatever the statistics counted: not asked (most imports, every re-deposit)
    for table in (sessions, course_members, class_students):
        if not statistics_stale(rows_written, await rows_counted(db, conn, table)):
            continue
        if db.is_postgres:
            await conn.execute(sa.text(f"ANALYZE (SKIP_LOCKED) {table.schema}.{table.name}"))
        else:
            await conn.execute(sa.text(f"ANALYZE {table.name}"))


async def write_establishment(db: Database, conn: AsyncConnection, import_id: str, plan: Plan, sha: str) -> None:
    """Who is in which class or part (rewritten only when it changed) and the establishment's row. An undo
    back to no timetable (`sha` "") keeps the display names and class lists its past sessions still use."""
    site, est = plan.site, plan.establishment
    e, cs = establishments, class_students
    old = (await conn.execute(sa.select(e.c.class_students_fp, e.c.names).where(
        e.c.site == site, e.c.establishment == est))).first()
    emptied = not sha and old is not None
    if not emptied and (old is None or old.class_students_fp != plan.class_students_fp):
        await conn.execute(cs.delete().where(cs.c.site == site, cs.c.establishment == est))
        if db.is_postgres:
            rows = [(site, est, *r) for r in plan.class_students]
        else:
            d = _sqlite_days
            rows = [(site, est, k, i, st, d[a], d[b]) for k, i, st, a, b in plan.class_students]
        await bulk_insert(db, conn, cs, CLASS_STUDENT_COLUMNS, rows)
    names, fp = (old.names, old.class_students_fp) if emptied and old is not None else (
        plan.names, plan.class_students_fp)
    await conn.execute(upsert(db, e, {
        "site": site, "establishment": est, "import_id": import_id, "timetable_sha256": sha,
        "names": names, "class_students_fp": fp, "updated_at": utcnow()},
        ["site", "establishment"], ["import_id", "timetable_sha256", "names", "class_students_fp", "updated_at"]))
# --- queries of the results routes (each takes the caller's connection) -------------------------------

PERSON_KINDS = ("teacher", "staff", "student")


@dataclass(frozen=True)
class SessionFilter:
    """What GET …/sessions and the iCal feeds select; every filter given must hold (AND)."""

    start: datetime | None = None  # sessions starting at or after
    end: datetime | None = None  # sessions starting before
    course: str | None = None
    klass: str | None = None
    group: str | None = None
    person: tuple[tuple[str, ...], str] | None = None  # (kinds it may be, ident)


def _named_by(site: str, est: str, kind: str, ident: str) -> Any:
    m = course_members
    return sa.select(m.c.course).where(m.c.site == site, m.c.establishment == est, m.c.kind == kind,
                                       m.c.ident == ident)


def _json_has(postgres: bool, column: sa.Column[Any], value: str) -> Any:
    """`value` is one of the JSON list column's items (exact per-session check, e.g. a substitute)."""
    name = f"jv_{column.name}"
    if postgres:
        return sa.text(f"EXISTS (SELECT 1 FROM json_array_elements_text(scheduler.scheduler_sessions.{column.name})"
                       f" AS j(v) WHERE j.v = :{name})").bindparams(sa.bindparam(name, value))
    return sa.text(f"EXISTS (SELECT 1 FROM json_each(scheduler_sessions.{column.name}) "
                   f"WHERE json_each.value = :{name})").bindparams(sa.bindparam(name, value))


def _person_clause(postgres: bool, site: str, est: str, kinds: tuple[str, ...], ident: str) -> Any:
    s, m, cs = sessions, course_members, class_students
    clauses: list[Any] = []
    for k in kinds:
        if k == "student":  # named one by one, or through a class or part they belong to that day
            start_day = sa.cast(s.c.start, sa.Date) if postgres else sa.func.date(s.c.start)
            clauses.append(sa.exists().where(
                m.c.site == site, m.c.establishment == est, m.c.course == s.c.course, m.c.kind == "student",
                m.c.ident == ident))
            clauses.append(sa.exists().where(
                m.c.site == site, m.c.establishment == est, m.c.course == s.c.course,
                m.c.kind.in_(("sclass", "part")), cs.c.site == site, cs.c.establishment == est,
                cs.c.kind == m.c.kind, cs.c.ident == m.c.ident, cs.c.student == ident,
                sa.or_(cs.c.start.is_(None), cs.c.start <= start_day),
                sa.or_(cs.c.end.is_(None), cs.c.end >= start_day)))
        else:  # the course names them, and they take part in that very session
            column = s.c.teachers if k == "teacher" else s.c.staff
            clauses.append(sa.and_(s.c.course.in_(_named_by(site, est, k, ident)), _json_has(postgres, column, ident)))
    return sa.or_(*clauses)


def _session_query(conn: AsyncConnection, site: str, est: str, f: SessionFilter) -> Any:
    s = sessions
    q = sa.select(s).where(s.c.site == site, s.c.establishment == est)
    if f.start is not None:
        q = q.where(s.c.start >= f.start)
    if f.end is not None:
        q = q.where(s.c.start < f.end)
    if f.course:
        q = q.where(s.c.course == f.course)
    if f.klass:
        q = q.where(s.c.course.in_(_named_by(site, est, "class", f.klass)))
    if f.group:
        q = q.where(s.c.course.in_(_named_by(site, est, "group", f.group)))
    if f.person:
        q = q.where(_person_clause(conn.dialect.name == "postgresql", site, est, *f.person))
    return q


async def sessions_page(conn: AsyncConnection, site: str, est: str, f: SessionFilter,
                        after: tuple[datetime, str] | None, limit: int) -> list[Any]:
    """Up to `limit` sessions by start then id, after the (start, id) of a previous page."""
    s = sessions
    q = _session_query(conn, site, est, f)
    if after:
        at, last_id = after
        q = q.where(sa.or_(s.c.start > at, sa.and_(s.c.start == at, s.c.id > last_id)))
    return list((await conn.execute(q.order_by(s.c.start, s.c.id).limit(limit))).all())


async def courses_page(conn: AsyncConnection, site: str, est: str, active: bool | None, after_key: str | None,
                       limit: int) -> list[Any]:
    c = courses
    q = sa.select(c).where(c.c.site == site, c.c.establishment == est)
    if active is not None:
        q = q.where(c.c.active.is_(active))
    if after_key is not None:
        q = q.where(c.c.key > after_key)
    return list((await conn.execute(q.order_by(c.c.key).limit(limit))).all())


async def establishment_version(conn: AsyncConnection, site: str, est: str) -> tuple[str, datetime] | None:
    """(import id, time) of the establishment's last integrated import, or None: what every view of its
    sessions depends on (a cheap read, the cache key of the routes)."""
    e = establishments
    row = (await conn.execute(sa.select(e.c.import_id, e.c.updated_at).where(
        e.c.site == site, e.c.establishment == est))).first()
    return (str(row.import_id), as_utc(row.updated_at)) if row is not None else None


async def establishment_view_parts(conn: AsyncConnection, site: str, est: str) -> tuple[Any, list[Any]] | None:
    """The establishment's row (import_id, updated_at, names) and its courses' (key, label, subject)."""
    e, c = establishments, courses
    row = (await conn.execute(sa.select(e.c.import_id, e.c.updated_at, e.c.names).where(
        e.c.site == site, e.c.establishment == est))).first()
    if row is None:
        return None
    rows = (await conn.execute(sa.select(c.c.key, c.c.label, c.c.subject).where(
        c.c.site == site, c.c.establishment == est))).all()
    return row, list(rows)


async def feed_sessions(conn: AsyncConnection, site: str, est: str, f: SessionFilter) -> list[Any]:
    """The columns an iCal feed shows, by start then id."""
    s = sessions
    query = _session_query(conn, site, est, f).with_only_columns(
        s.c.id, s.c.course, s.c.start, s.c.end, s.c.rooms, s.c.teachers)
    return list((await conn.execute(query.order_by(s.c.start, s.c.id))).all())


async def add_subscription(conn: AsyncConnection, sub_id: str, site: str, est: str, kind: str, ident: str,
                           secret_hash: str, at: datetime) -> None:
    await conn.execute(subscriptions.insert().values(id=sub_id, site=site, establishment=est, kind=kind,
                                                     ident=ident, secret_hash=secret_hash, created_at=at))


async def get_subscription(conn: AsyncConnection, sub_id: str) -> Any:
    return (await conn.execute(sa.select(subscriptions).where(subscriptions.c.id == sub_id))).first()


def _feed(site: str, est: str, kind: str, ident: str) -> Any:
    u = subscriptions.c
    return sa.and_(u.site == site, u.establishment == est, u.kind == kind, u.ident == ident)


async def feed_subscriptions(conn: AsyncConnection, site: str, est: str, kind: str, ident: str) -> list[Any]:
    return list((await conn.execute(sa.select(subscriptions).where(_feed(site, est, kind, ident))
                                    .order_by(subscriptions.c.created_at, subscriptions.c.id))).all())


async def delete_subscriptions(conn: AsyncConnection, site: str, est: str, kind: str, ident: str) -> int:
    return int((await conn.execute(subscriptions.delete().where(_feed(site, est, kind, ident)))).rowcount or 0)


async def display_names(conn: AsyncConnection, site: str, est: str) -> dict[str, Any] | None:
    """The establishment's display names by kind and ident, or None when it has none integrated."""
    e = establishments
    row = (await conn.execute(sa.select(e.c.names).where(e.c.site == site, e.c.establishment == est))).first()
    return dict(row.names) if row is not None else None


# --- a person, by their idents in the timetable (docs/privacy.md: export and erasure) -------------------

PERSON_TABLE_KINDS = {"teachers": "teacher", "students": "student"}


async def person_records(conn: AsyncConnection, postgres: bool, site: str, est: str, kind: str,
                         ident: str) -> dict[str, Any]:
    """What the scheduler keeps about one person of an establishment's timetable: the courses naming them,
    their class and part memberships with dates, their display name, and how many sessions list them."""
    member_kind = PERSON_TABLE_KINDS[kind]
    m, cs, s = course_members, class_students, sessions
    courses_of = (await conn.execute(sa.select(m.c.course, m.c.start, m.c.end).where(
        m.c.site == site, m.c.establishment == est, m.c.kind == member_kind, m.c.ident == ident))).all()
    classes_of = (await conn.execute(sa.select(cs.c.kind, cs.c.ident, cs.c.start, cs.c.end).where(
        cs.c.site == site, cs.c.establishment == est, cs.c.student == ident))).all() if kind == "students" else []
    column = s.c.teachers if kind == "teachers" else s.c.students
    listed = (await conn.execute(sa.select(sa.func.count()).select_from(s).where(
        s.c.site == site, s.c.establishment == est, _json_has(postgres, column, ident)))).scalar_one()
    names = await display_names(conn, site, est) or {}
    return {"establishment": est, "kind": kind, "ident": ident,
            "display_name": names.get(kind, {}).get(ident) or None,
            "courses": [{"course": r.course, "start": r.start, "end": r.end} for r in courses_of],
            "memberships": [{"kind": r.kind, "ident": r.ident, "start": r.start, "end": r.end} for r in classes_of],
            "sessions_listing": int(listed)}


async def erase_person(conn: AsyncConnection, postgres: bool, site: str, est: str, kind: str, ident: str) -> dict[
        str, int]:
    """The person leaves the courses, classes, parts, sessions and display names that held them; the
    courses and sessions themselves stay."""
    member_kind = PERSON_TABLE_KINDS[kind]
    m, cs, s, c = course_members, class_students, sessions, courses
    counts = {"course_members": int((await conn.execute(m.delete().where(
        m.c.site == site, m.c.establishment == est, m.c.kind == member_kind, m.c.ident == ident))).rowcount or 0)}
    counts["class_members"] = int((await conn.execute(cs.delete().where(
        cs.c.site == site, cs.c.establishment == est, cs.c.student == ident))).rowcount or 0) \
        if kind == "students" else 0
    column = s.c.teachers if kind == "teachers" else s.c.students
    rows = (await conn.execute(sa.select(s.c.id, column).where(s.c.site == site, s.c.establishment == est,
                                                               _json_has(postgres, column, ident)))).all()
    for row in rows:
        await conn.execute(s.update().where(s.c.id == row.id).values(
            {column.name: [i for i in row[1] if i != ident]}))
    counts["sessions"] = len(rows)
    if kind == "teachers":
        for row in (await conn.execute(sa.select(c.c.key, c.c.teachers).where(
                c.c.site == site, c.c.establishment == est))).all():
            if ident in (row.teachers or []):
                await conn.execute(c.update().where(c.c.site == site, c.c.establishment == est, c.c.key == row.key)
                                   .values(teachers=[i for i in row.teachers if i != ident]))
    e = establishments
    names = await display_names(conn, site, est)
    values: dict[str, Any] = {}
    if names is not None and ident in names.get(kind, {}):
        values["names"] = {**names, kind: {k: v for k, v in names[kind].items() if k != ident}}
    if values or any(counts.values()):
        # A new version of the establishment: the views and feeds cached from the old one (names, iCal
        # bodies and their ETags) are not served again.
        await conn.execute(e.update().where(e.c.site == site, e.c.establishment == est).values(
            **values, updated_at=datetime.now(UTC)))
    return counts
