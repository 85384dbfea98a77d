"""Routes of the scheduler service (design.md §5): courses, sessions, iCal feeds.

- `GET /sites/{site}/establishments/{est}/courses?active=&limit=&cursor=`
- `GET /sites/{site}/establishments/{est}/sessions?from=&to=&course=&person=&class=&group=&limit=&cursor=`
  `from`/`to`: a date (a day in EDT_TIMEZONE; `to` inclusive) or an ISO instant (naive = UTC; `to`
  exclusive); sessions are selected by their start. `person` is `teacher:<id>`, `staff:<id>`,
  `student:<id>` or a bare id (any kind of person: ident spaces are per kind in the export).
- `GET /sites/{site}/establishments/{est}/calendar/{kind}/{id}.ics` (kind class | group | teacher | student)
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response

from services.scheduler import domain, store
from shared.db import Database, as_utc
from shared.settings import Settings
from shared.web import Problem, authenticate, decode_cursor, encode_cursor, not_found, require_site

MAX_LIMIT = 1000
PERSON_KINDS = ("teacher", "staff", "student")
FEED_KINDS = {"class": "classes", "group": "groups", "teacher": "teachers", "student": "students"}


def _bad(detail: str) -> Problem:
    return Problem(400, "Bad Request", detail, code="invalid_parameter")


def parse_bound(value: str | None, tz: ZoneInfo, *, upper: bool) -> datetime | None:
    """A date is a whole local day (`to` includes it); an instant is taken as is (naive = UTC)."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value) + (timedelta(days=1) if upper else timedelta())
            return datetime.combine(day, time(), tz).astimezone(UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad(f"not a date or an ISO 8601 instant: {value!r}") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def build_router(db: Database, settings: Settings) -> APIRouter:
    router = APIRouter()
    tz = ZoneInfo(settings.timezone)
    s, c, m, cs = store.sessions, store.courses, store.course_members, store.class_students

    def members_of(site: str, est: str, kind: str, ident: str) -> Any:
        return sa.select(m.c.course).where(m.c.site == site, m.c.establishment == est, m.c.kind == kind,
                                           m.c.ident == ident)

    def json_has(column: sa.Column[Any], value: str) -> Any:
        """`value` is one of the JSON list column's items (exact per-session check, e.g. a substitute)."""
        name = f"jv_{column.name}"
        if db.is_postgres:
            return sa.text(f"EXISTS (SELECT 1 FROM json_array_elements_text(scheduler.scheduler_sessions.{column.name})"
                           f" AS j(v) WHERE j.v = :{name})").bindparams(sa.bindparam(name, value))
        return sa.text(f"EXISTS (SELECT 1 FROM json_each(scheduler_sessions.{column.name}) "
                       f"WHERE json_each.value = :{name})").bindparams(sa.bindparam(name, value))

    def person_filter(site: str, est: str, person: str) -> Any:
        kind, _, ident = person.rpartition(":")
        if kind and kind not in PERSON_KINDS:
            raise _bad(f"person kind must be one of {', '.join(PERSON_KINDS)}: {person!r}")
        kinds = (kind,) if kind else PERSON_KINDS
        clauses: list[Any] = []
        for k in kinds:
            if k == "student":  # named one by one, or through a class or part they belong to that day
                start_day = sa.func.date(s.c.start) if not db.is_postgres else sa.cast(s.c.start, sa.Date)
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
                clauses.append(sa.and_(s.c.course.in_(members_of(site, est, k, ident)), json_has(column, ident)))
        return sa.or_(*clauses)

    def session_query(site: str, est: str, *, start: datetime | None, end: datetime | None, course: str | None,
                      person: str | None, klass: str | None, group: str | None) -> Any:
        q = sa.select(s).where(s.c.site == site, s.c.establishment == est)
        if start is not None:
            q = q.where(s.c.start >= start)
        if end is not None:
            q = q.where(s.c.start < end)
        if course:
            q = q.where(s.c.course == course)
        if klass:
            q = q.where(s.c.course.in_(members_of(site, est, "class", klass)))
        if group:
            q = q.where(s.c.course.in_(members_of(site, est, "group", group)))
        if person:
            q = q.where(person_filter(site, est, person))
        return q

    @router.get("/sites/{site}/establishments/{est}/courses")
    async def list_courses(site: str, est: str, request: Request, active: bool | None = None,
                           limit: int = Query(100, ge=1, le=MAX_LIMIT), cursor: str | None = None) -> dict[str, Any]:
        """The courses of the establishment's integrated timetable: subject + class or group (design.md §7)."""
        require_site(authenticate(settings, request), site)
        q = sa.select(c).where(c.c.site == site, c.c.establishment == est)
        if active is not None:
            q = q.where(c.c.active.is_(active))
        after = decode_cursor(cursor)
        if after:
            q = q.where(c.c.key > str(after[0]))
        async with db.read() as conn:
            rows = (await conn.execute(q.order_by(c.c.key).limit(limit + 1))).all()
        items = [{"id": r.key, "key": r.key, "subject": r.subject, "kind": r.kind, "target": r.target,
                  "class": r.target if r.kind == "class" else None, "group": r.target if r.kind == "group" else None,
                  "label": r.label, "teachers": r.teachers, "classes": r.classes, "students": r.students,
                  "active": r.active, "import_id": r.import_id, "updated_at": domain.iso(as_utc(r.updated_at))}
                 for r in rows[:limit]]
        return {"items": items, "next_cursor": encode_cursor([rows[limit - 1].key]) if len(rows) > limit else None}

    @router.get("/sites/{site}/establishments/{est}/sessions")
    async def list_sessions(site: str, est: str, request: Request,
                            from_: str | None = Query(None, alias="from"), to: str | None = None,
                            course: str | None = None, person: str | None = None,
                            klass: str | None = Query(None, alias="class"), group: str | None = None,
                            limit: int = Query(100, ge=1, le=MAX_LIMIT), cursor: str | None = None) -> dict[str, Any]:
        """Dated sessions, by start then id; filters combine (AND)."""
        require_site(authenticate(settings, request), site)
        q = session_query(site, est, start=parse_bound(from_, tz, upper=False), end=parse_bound(to, tz, upper=True),
                          course=course, person=person, klass=klass, group=group)
        after = decode_cursor(cursor)
        if after:
            try:
                at = datetime.fromisoformat(str(after[0]).replace("Z", "+00:00")).astimezone(UTC)
                last_id = str(after[1])
            except (ValueError, IndexError) as exc:
                raise Problem(400, "Bad Request", "Invalid cursor", code="invalid_cursor") from exc
            q = q.where(sa.or_(s.c.start > at, sa.and_(s.c.start == at, s.c.id > last_id)))
        async with db.read() as conn:
            rows = (await conn.execute(q.order_by(s.c.start, s.c.id).limit(limit + 1))).all()
        items = [domain.session_view(r) for r in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            nxt = encode_cursor([items[-1]["start"], items[-1]["id"]])
        return {"items": items, "next_cursor": nxt}

    @router.get("/sites/{site}/establishments/{est}/calendar/{kind}/{ident}.ics")
    async def calendar(site: str, est: str, kind: str, ident: str, request: Request,
                       from_: str | None = Query(None, alias="from"), to: str | None = None) -> Response:
        """RFC 5545 feed of a class, group, teacher or student: every stored session (or `from`–`to`)."""
        require_site(authenticate(settings, request), site)
        if kind not in FEED_KINDS:
            raise not_found("Calendar")
        e = store.establishments
        async with db.read() as conn:
            info = (await conn.execute(sa.select(e.c.names).where(e.c.site == site, e.c.establishment == est))).first()
            names: dict[str, dict[str, str]] = info.names if info is not None else {}
            if info is None or ident not in names.get(FEED_KINDS[kind], {}):
                raise not_found("Calendar")
            args: dict[str, Any] = {"klass": None, "group": None, "person": None}
            args[{"class": "klass", "group": "group"}.get(kind, "person")] = (
                ident if kind in ("class", "group") else f"{kind}:{ident}")
            q = session_query(site, est, start=parse_bound(from_, tz, upper=False),
                              end=parse_bound(to, tz, upper=True), course=None, **args)
            rows = (await conn.execute(q.order_by(s.c.start, s.c.id))).all()
            course_keys = {r.course for r in rows}
            labels = {r.key: r.label for r in await conn.execute(sa.select(c.c.key, c.c.label).where(
                c.c.site == site, c.c.establishment == est))} if course_keys else {}
        body = domain.ical_feed(name=names[FEED_KINDS[kind]][ident], sessions=rows, labels=labels, names=names,
                                now=datetime.now(UTC))
        return Response(body, media_type="text/calendar; charset=utf-8",
                        headers={"Content-Disposition": f'inline; filename="{kind}-{ident}.ics"'})

    return router
