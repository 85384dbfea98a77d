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
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Response

from services.scheduler import domain, store
from services.scheduler.schemas import FEED_KINDS, PERSON_PATTERN, CourseList, CourseRead, SessionList, SessionRead
from shared.db import Database, as_utc
from shared.deps import EstablishmentId, SiteId, SitePrincipal
from shared.messages import iso
from shared.settings import Settings
from shared.web import Problem, cursor_query, decode_cursor, encode_cursor, media, not_found, problems

MAX_LIMIT = 1000
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
# `from`/`to` and `person` are checked by parse_bound / parse_person (400 otherwise); the schema says what
# they accept.
DATE_OR_INSTANT: dict[str, Any] = {"anyOf": [{"type": "string", "format": "date"},
                                             {"type": "string", "format": "date-time"},
                                             {"type": "string", "maxLength": 0, "description": "no bound"}]}
From = Annotated[str | None, Query(alias="from", description="A date (a local day) or an instant: sessions "
                                   "starting then or later",
                                   json_schema_extra=DATE_OR_INSTANT)]
To = Annotated[str | None, Query(description="A date (inclusive) or an instant (exclusive)",
                                 json_schema_extra=DATE_OR_INSTANT)]


class CalendarResponse(Response):
    media_type = "text/calendar"


def _bad(detail: str) -> Problem:
    return Problem(400, "Bad Request", detail, code="invalid_parameter")


def parse_bound(value: str | None, tz: ZoneInfo, *, upper: bool) -> datetime | None:
    """A date is a whole local day (`to` includes it); an instant is taken as is (naive = UTC). A bound
    beyond what a datetime holds is the earliest or latest instant: nothing lies past it."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            try:
                return datetime.combine(day + (timedelta(days=1) if upper else timedelta()), time(), tz).astimezone(UTC)
            except OverflowError:
                return datetime.max.replace(tzinfo=UTC) if upper else datetime.min.replace(tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise _bad(f"not a date or an ISO 8601 instant: {value!r}") from exc
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC) if moment.year > 1 else datetime.min.replace(tzinfo=UTC)


def parse_person(person: str | None) -> tuple[tuple[str, ...], str] | None:
    if not person:
        return None
    kind, _, ident = person.rpartition(":")
    if kind and kind not in store.PERSON_KINDS:
        raise _bad(f"person kind must be one of {', '.join(store.PERSON_KINDS)}: {person!r}")
    return ((kind,) if kind else store.PERSON_KINDS), ident


def course_view(row: Any) -> CourseRead:
    return CourseRead.model_validate({
        "id": row.key, "key": row.key, "subject": row.subject, "kind": row.kind, "target": row.target,
        "class": row.target if row.kind == "class" else None, "group": row.target if row.kind == "group" else None,
        "label": row.label, "teachers": row.teachers, "classes": row.classes, "students": row.students,
        "active": row.active, "import_id": row.import_id, "updated_at": iso(as_utc(row.updated_at))})


def build_router(db: Database, settings: Settings) -> APIRouter:
    router = APIRouter()
    tz = ZoneInfo(settings.timezone)

    @router.get("/sites/{site}/establishments/{est}/courses", response_model=CourseList,
                summary="The establishment's courses", responses=problems(400, 401, 404, 422))
    async def list_courses(site: SiteId, est: EstablishmentId, _: SitePrincipal, active: bool | None = None,
                           limit: Limit = 100,
                           cursor: Annotated[str | None, cursor_query(str)] = None) -> CourseList:
        """The courses of the establishment's integrated timetable: subject + class or group (design.md §7)."""
        after = decode_cursor(cursor, str)
        async with db.read() as conn:
            rows = await store.courses_page(conn, site, est, active, after[0] if after else None, limit + 1)
        return CourseList(items=[course_view(r) for r in rows[:limit]],
                          next_cursor=encode_cursor(rows[limit - 1].key) if len(rows) > limit else None)

    @router.get("/sites/{site}/establishments/{est}/sessions", response_model=SessionList,
                summary="Dated sessions, by start then id; filters combine (AND)",
                responses=problems(400, 401, 404, 422))
    async def list_sessions(site: SiteId, est: EstablishmentId, _: SitePrincipal, from_: From = None, to: To = None,
                            course: str | None = None,
                            person: Annotated[str | None, Query(
                                description="`teacher:<id>`, `staff:<id>`, `student:<id>` or a bare id",
                                json_schema_extra={"pattern": PERSON_PATTERN})] = None,
                            klass: Annotated[str | None, Query(alias="class")] = None, group: str | None = None,
                            limit: Limit = 100,
                            cursor: Annotated[str | None, cursor_query(datetime, str)] = None) -> SessionList:
        f = store.SessionFilter(start=parse_bound(from_, tz, upper=False), end=parse_bound(to, tz, upper=True),
                                course=course, klass=klass, group=group, person=parse_person(person))
        after = decode_cursor(cursor, datetime, str)
        page_after = (after[0], after[1]) if after else None
        async with db.read() as conn:
            rows = await store.sessions_page(conn, site, est, f, page_after, limit + 1)
        items = [SessionRead.model_validate(domain.session_view(r)) for r in rows[:limit]]
        nxt = encode_cursor(rows[limit - 1].start, rows[limit - 1].id) if len(rows) > limit else None
        return SessionList(items=items, next_cursor=nxt)

    @router.get("/sites/{site}/establishments/{est}/calendar/{kind}/{ident}.ics", response_class=CalendarResponse,
                summary="iCal feed of a class, group, teacher or student",
                responses={200: media("RFC 5545 calendar", "text/calendar"), **problems(400, 401, 404, 422)})
    async def calendar(site: SiteId, est: EstablishmentId, _: SitePrincipal,
                       kind: Annotated[str, Path(json_schema_extra={"enum": list(FEED_KINDS)})], ident: str,
                       from_: From = None, to: To = None) -> CalendarResponse:
        """Every stored session (or those `from`–`to`)."""
        if kind not in FEED_KINDS:
            raise not_found("Calendar")
        f = store.SessionFilter(start=parse_bound(from_, tz, upper=False), end=parse_bound(to, tz, upper=True),
                                klass=ident if kind == "class" else None, group=ident if kind == "group" else None,
                                person=((kind,), ident) if kind in store.PERSON_KINDS else None)
        async with db.read() as conn:
            names = await store.display_names(conn, site, est)
            if names is None or ident not in names.get(FEED_KINDS[kind], {}):
                raise not_found("Calendar")
            rows = await store.all_sessions(conn, site, est, f)
            labels = await store.course_labels(conn, site, est) if rows else {}
        body = domain.ical_feed(name=names[FEED_KINDS[kind]][ident], sessions=rows, labels=labels, names=names,
                                now=datetime.now(UTC))
        return CalendarResponse(body, headers={"Content-Disposition": f'inline; filename="{kind}-{ident}.ics"'})

    return router
