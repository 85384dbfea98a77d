"""Tables owned by the scheduler service (session generation, stage 5), and the results routes' queries.

Idents in the list columns are the timetable's own (`Ident` attributes, one space per kind); instants
are aware UTC. A session's `id` is derived from (site, establishment, key), so it is known before the
row is written (bulk COPY, change events) and stays the same across re-imports (iCal UID).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import outbox_table, service_metadata, stage_runs_table

metadata = service_metadata("scheduler")
outbox = outbox_table(metadata)
runs = stage_runs_table(metadata)

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


async def all_sessions(conn: AsyncConnection, site: str, est: str, f: SessionFilter) -> list[Any]:
    s = sessions
    return list((await conn.execute(_session_query(conn, site, est, f).order_by(s.c.start, s.c.id))).all())


async def courses_page(conn: AsyncConnection, site: str, est: str, active: bool | None, after_key: str | None,
                       limit: int) -> list[Any]:
    c = courses
    q = sa.select(c).where(c.c.site == site, c.c.establishment == est)
    if active is not None:
        q = q.where(c.c.active.is_(active))
    if after_key is not None:
        q = q.where(c.c.key > after_key)
    return list((await conn.execute(q.order_by(c.c.key).limit(limit))).all())


async def course_labels(conn: AsyncConnection, site: str, est: str) -> dict[str, str]:
    c = courses
    rows = await conn.execute(sa.select(c.c.key, c.c.label).where(c.c.site == site, c.c.establishment == est))
    return {r.key: r.label for r in rows}


async def display_names(conn: AsyncConnection, site: str, est: str) -> dict[str, dict[str, str]] | None:
    """{"teachers": {ident: name}, "classes": …} of the establishment's integrated timetable, or None."""
    e = establishments
    row = (await conn.execute(sa.select(e.c.names).where(e.c.site == site, e.c.establishment == est))).first()
    return dict(row.names) if row is not None else None
