"""Routes of the scheduler service (design.md §5): courses, sessions, iCal feeds.

- `GET /sites/{site}/establishments/{est}/courses?active=&limit=&cursor=`
- `GET /sites/{site}/establishments/{est}/sessions?from=&to=&course=&person=&class=&group=&limit=&cursor=`
  `from`/`to`: a date (a day in EDT_TIMEZONE; `to` inclusive) or an ISO instant (naive = UTC; `to`
  exclusive); sessions are selected by their start. `person` is `teacher:<id>`, `staff:<id>`,
  `student:<id>` or a bare id (any kind of person: ident spaces are per kind in the export).
  Every filter takes an ident (as the sessions list them); a value no timetable of the establishment knows
  is a 422 that says which ident a name belongs to, or lists known values.
- `GET /sites/{site}/establishments/{est}/calendar/{kind}/{id}.ics` (kind class | group | teacher | student),
  with a bearer token or with `?key=` (the secret of a subscription); `ETag` / `If-None-Match`.
- `POST|GET|DELETE /sites/{site}/establishments/{est}/calendar/{kind}/{id}/subscription`: issue a
  subscription URL (its secret is stored hashed), list them, revoke them.

Views (display names, course labels) and feeds are cached per process, keyed by the establishment's last
import: the next import makes new ones.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import urllib.parse
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Header, Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scheduler import domain, store
from services.scheduler.ical import ical_feed
from services.scheduler.schemas import (
    FEED_KINDS,
    PERSON_PATTERN,
    CourseList,
    CourseRead,
    SessionList,
    SessionRead,
    SubscriptionList,
    SubscriptionRead,
)
from services.scheduler.views import EstablishmentView, FeedCache, UnknownValue, unknown_course, unknown_value, view_of
from shared.db import Database, as_utc
from shared.deps import EstablishmentId, KnownEstablishment, OptionalPrincipal, SiteId, SitePrincipal
from shared.messages import iso, utcnow
from shared.settings import Settings
from shared.web import (
    Problem,
    cursor_query,
    decode_cursor,
    encode_cursor,
    media,
    not_found,
    problems,
    require_site,
    token_hash,
)

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


def unknown_problem(found: UnknownValue) -> Problem:
    """422 problem+json: the filter value, the idents its name belongs to, and known values."""
    return Problem(422, "Unprocessable Content", found.detail, code="unknown_filter_value",
                   errors=[{"loc": ["query", found.parameter], "msg": found.detail, "type": "unknown_value"}],
                   parameter=found.parameter, value=found.value, matches=found.matches, known=found.known,
                   known_total=found.known_total)


FeedKind = Annotated[str, Path(json_schema_extra={"enum": list(FEED_KINDS)})]
FeedKey = Annotated[str | None, Query(description="The secret of a subscription (`POST …/subscription`): the "
                                                  "feed then needs no Authorization header",
                                      json_schema_extra={"pattern": r"^[0-9a-f]{16}\.[A-Za-z0-9_-]{1,64}$"})]


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
    views: dict[tuple[str, str], EstablishmentView] = {}
    feeds = FeedCache()

    async def view_for(conn: AsyncConnection, site: str, est: str) -> EstablishmentView | None:
        """The establishment's display names and course labels, built once per integrated import."""
        version = await store.establishment_version(conn, site, est)
        if version is None:
            return None
        cached = views.get((site, est))
        if cached is not None and (cached.import_id, cached.updated_at) == version:
            return cached
        parts = await store.establishment_view_parts(conn, site, est)
        if parts is None:
            return None
        row, course_rows = parts
        view = view_of(str(row.import_id), as_utc(row.updated_at), row.names,
                       ((c.key, c.label, c.subject) for c in course_rows))
        views[(site, est)] = view
        return view

    def check_filters(view: EstablishmentView | None, course: str | None, klass: str | None, group: str | None,
                      person: tuple[tuple[str, ...], str] | None, person_raw: str | None) -> None:
        found = None
        if course:
            found = unknown_course(view, course)
        if found is None and klass:
            found = unknown_value(view, "class", "class", klass, klass)
        if found is None and group:
            found = unknown_value(view, "group", "group", group, group)
        if found is None and person is not None and person_raw:
            kinds, ident = person
            found = unknown_value(view, "person", kinds[0] if len(kinds) == 1 else "person", ident, person_raw)
        if found is not None:
            raise unknown_problem(found)

    @router.get("/sites/{site}/establishments/{est}/courses", response_model=CourseList,
                summary="The establishment's courses", responses=problems(400, 401, 404, 422))
    async def list_courses(site: SiteId, est: KnownEstablishment, _: SitePrincipal, active: bool | None = None,
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
    async def list_sessions(site: SiteId, est: KnownEstablishment, _: SitePrincipal, from_: From = None, to: To = None,
                            course: Annotated[str | None, Query(
                                description="A course key (`GET …/courses`)")] = None,
                            person: Annotated[str | None, Query(
                                description="`teacher:<id>`, `staff:<id>`, `student:<id>` or a bare id",
                                json_schema_extra={"pattern": PERSON_PATTERN})] = None,
                            klass: Annotated[str | None, Query(alias="class", description="A class ident")] = None,
                            group: Annotated[str | None, Query(description="A group ident")] = None,
                            limit: Limit = 100,
                            cursor: Annotated[str | None, cursor_query(datetime, str)] = None) -> SessionList:
        """Each session with its idents and, in `names`, their display names (same order). A filter value
        the establishment's integrated timetable does not know is a 422 naming known values (a name given
        instead of an ident says which ident it is); before its first integrated import the list is empty."""
        who = parse_person(person)
        f = store.SessionFilter(start=parse_bound(from_, tz, upper=False), end=parse_bound(to, tz, upper=True),
                                course=course, klass=klass, group=group, person=who)
        after = decode_cursor(cursor, datetime, str)
        page_after = (after[0], after[1]) if after else None
        async with db.read() as conn:
            view = await view_for(conn, site, est)
            if view is not None:  # before a first integrated import, nothing to list and no value to check
                check_filters(view, course, klass, group, who, person)
            rows = await store.sessions_page(conn, site, est, f, page_after, limit + 1) if view else []
        items = [SessionRead.model_validate({**domain.session_view(r), "names": view.session_names(r)})
                 for r in rows[:limit] if view is not None]
        nxt = encode_cursor(rows[limit - 1].start, rows[limit - 1].id) if len(rows) > limit else None
        return SessionList(items=items, next_cursor=nxt)

    # --- iCal feeds and their subscriptions ---------------------------------------------------------

    async def feed_name(conn: AsyncConnection, site: str, est: str, kind: str, ident: str) -> str:
        view = await view_for(conn, site, est)
        if kind not in FEED_KINDS or view is None or not view.knows(FEED_KINDS[kind], ident):
            raise not_found("Calendar")
        return domain.feed_name(kind, ident, view.names, FEED_KINDS)

    async def subscription_ok(conn: AsyncConnection, key: str, site: str, est: str, kind: str, ident: str) -> bool:
        """The key names a subscription of this very feed and carries its secret (constant-time check)."""
        sub_id, _, secret = key.partition(".")
        row = await store.get_subscription(conn, sub_id)
        expected = row.secret_hash if row is not None else "0" * 64
        matches = hmac.compare_digest(token_hash(secret).encode(), expected.encode())
        return bool(row is not None and matches and (row.site, row.establishment, row.kind, row.ident)
                    == (site, est, kind, ident))

    def feed_etag(version: str, kind: str, ident: str, from_: str | None, to: str | None) -> str:
        digest = hashlib.blake2b(repr((kind, ident, from_ or "", to or "")).encode(), digest_size=8).hexdigest()
        return f'"{version}.{digest}"'

    @router.get("/sites/{site}/establishments/{est}/calendar/{kind}/{ident}.ics", response_class=CalendarResponse,
                summary="iCal feed of a class, group, teacher or student",
                responses={200: media("RFC 5545 calendar", "text/calendar"),
                           304: {"description": "Not modified since the `ETag` given in `If-None-Match`"},
                           **problems(400, 401, 404, 422)})
    async def calendar(site: SiteId, est: EstablishmentId, who: OptionalPrincipal, kind: FeedKind, ident: str,
                       from_: From = None, to: To = None, key: FeedKey = None,
                       if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None) -> Response:
        """Every stored session (or those `from`–`to`). With `key` (a subscription's secret) no
        Authorization header is needed; a revoked or wrong key is a 404."""
        f = store.SessionFilter(start=parse_bound(from_, tz, upper=False), end=parse_bound(to, tz, upper=True),
                                klass=ident if kind == "class" else None, group=ident if kind == "group" else None,
                                person=((kind,), ident) if kind in store.PERSON_KINDS else None)
        async with db.read() as conn:
            if key is not None:
                if not await subscription_ok(conn, key, site, est, kind, ident):
                    raise not_found("Calendar")
            elif who is None:
                raise Problem(401, "Unauthorized", "Bearer token (or a subscription's key) required",
                              code="unauthorized")
            else:
                require_site(who, site)
            name = await feed_name(conn, site, est, kind, ident)
            view = views[(site, est)]
            etag = feed_etag(view.version, kind, ident, from_, to)
            headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
            if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
                return Response(status_code=304, headers=headers)
            cache_key = (site, est, kind, ident, from_ or "", to or "")
            body = feeds.get(cache_key, view.version)
            if body is None:
                rows = await store.feed_sessions(conn, site, est, f)
                body = ical_feed(name=name, sessions=rows, view=view)
                feeds.put(cache_key, view.version, body)
        return CalendarResponse(body, headers={**headers,
                                               "Content-Disposition": f'inline; filename="{kind}-{ident}.ics"'})

    def feed_url(site: str, est: str, kind: str, ident: str, key: str) -> str:
        base = settings.public_url.rstrip("/")
        site_q, est_q, kind_q, ident_q = (urllib.parse.quote(p, safe="") for p in (site, est, kind, ident))
        return f"{base}/api/v1/sites/{site_q}/establishments/{est_q}/calendar/{kind_q}/{ident_q}.ics?key={key}"

    def subscription_view(row: Any, url: str | None = None) -> SubscriptionRead:
        return SubscriptionRead(id=row.id, kind=row.kind, ident=row.ident, created_at=iso(as_utc(row.created_at)),
                                url=url)

    subscription_path = "/sites/{site}/establishments/{est}/calendar/{kind}/{ident}/subscription"

    @router.post(subscription_path, status_code=201, response_model=SubscriptionRead,
                 response_model_exclude_none=True, summary="Subscribe to an iCal feed: a URL usable with no header",
                 responses=problems(401, 404, 422))
    async def subscribe(site: SiteId, est: KnownEstablishment, _: SitePrincipal, kind: FeedKind,
                        ident: str) -> SubscriptionRead:
        """Each call issues a new URL (calendar apps send no Authorization header: the URL carries a secret,
        stored hashed). `DELETE` on this path revokes them."""
        async with db.read() as conn:
            await feed_name(conn, site, est, kind, ident)
        sub_id, secret = secrets.token_hex(8), secrets.token_urlsafe(24)
        now = utcnow()
        async with db.transaction() as conn:
            await store.add_subscription(conn, sub_id, site, est, kind, ident, token_hash(secret), now)
            row = await store.get_subscription(conn, sub_id)
        return subscription_view(row, feed_url(site, est, kind, ident, f"{sub_id}.{secret}"))

    @router.get(subscription_path, response_model=SubscriptionList, response_model_exclude_none=True,
                summary="The subscriptions of an iCal feed (never their secret)", responses=problems(401, 404, 422))
    async def subscriptions(site: SiteId, est: KnownEstablishment, _: SitePrincipal, kind: FeedKind,
                            ident: str) -> SubscriptionList:
        if kind not in FEED_KINDS:
            raise not_found("Calendar")
        async with db.read() as conn:
            rows = await store.feed_subscriptions(conn, site, est, kind, ident)
        return SubscriptionList(items=[subscription_view(r) for r in rows], next_cursor=None)

    @router.delete(subscription_path, status_code=204, response_class=Response,
                   summary="Revoke the subscriptions of an iCal feed (their URLs then answer 404)",
                   responses=problems(401, 404, 422))
    async def unsubscribe(site: SiteId, est: KnownEstablishment, _: SitePrincipal, kind: FeedKind,
                          ident: str) -> Response:
        if kind not in FEED_KINDS:
            raise not_found("Calendar")
        async with db.transaction() as conn:
            if not await store.delete_subscriptions(conn, site, est, kind, ident):
                raise not_found("Subscription")
        return Response(status_code=204)

    return router
