"""History API (design.md §5): import history, import detail with queue position, source, report,
Server-Sent Events, and ops queue metrics."""

from __future__ import annotations

import asyncio
import io
import json
import re
import zipfile
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from services.notifier import domain, store
from services.notifier.handlers import (
    ACTIVE,
    DEPOSITS_QUEUE,
    IN_FLIGHT,
    STATUS_QUEUE,
    NotifierHandlers,
    PrivacyUnanswered,
    slot_of,
)
from services.notifier.schemas import (
    STATUS_LIST_PATTERN,
    AccessList,
    AccessRead,
    ActiveImportRead,
    DeadLetterQueueRead,
    DeadLetterRead,
    DeadLettersRead,
    ImportList,
    ImportRead,
    PersonErasureRead,
    PersonFileIdent,
    PersonRead,
    QueueRead,
    QueuesRead,
    ReplayRead,
    ReportAction,
    ReportRead,
    RetainedCopy,
    RetentionRunRead,
    UndoAccepted,
)
from services.notifier.views import RenderedView, ViewCache, import_view, render
from shared.blobs import BlobStore
from shared.bus import Bus, Delivery
from shared.db import Database, as_utc
from shared.deps import AdminPrincipal, CurrentPrincipal, EntId, SiteId, SitePrincipal
from shared.messages import (
    ID_PATTERN,
    RETENTION_OWNERS,
    STAGE_QUEUES,
    ImportStatus,
    Mode,
    Stage,
    iso,
    utcnow,
)
from shared.observability import (
    IMPORTS,
    QUEUE_CONSUMERS,
    QUEUE_DEAD_LETTERED,
    QUEUE_OLDEST_AGE,
    QUEUE_READY,
    QUEUE_UNACKED,
)
from shared.settings import Settings
from shared.web import (
    FastRead,
    Principal,
    Problem,
    access_event,
    cursor_query,
    decode_cursor,
    encode_cursor,
    media,
    not_found,
    problems,
)

Once = Annotated[bool, Query(description="Replay what is logged, then close")]
Live = Annotated[bool, Query(description="Skip what is logged already: only the events from now on (a page "
                                         "that has just read the current state)")]


class ZipResponse(Response):
    media_type = "application/zip"


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


class JSONBytes(Response):
    """JSON encoded already (a kept view): answered as it is, the route's response_model documents it."""

    media_type = "application/json"


# The rendered views a notifier process keeps (views.ViewCache): an M school's is ~14 KB, so about 4,000
# imports — every site of an académie and its last few imports.
VIEW_CACHE_BYTES = 64 * 1024 * 1024
# How long a history read waits for an event being applied in this process (NotifierHandlers.settled): one
# event takes a few milliseconds when nothing squeezes in.
READ_YIELD_S = 0.02
HISTORY_LIMIT, HISTORY_LIMIT_MAX = 50, 500  # a history page's items: by default, at most
HISTORY_PARAMS = frozenset({"establishment", "status", "mode", "limit", "cursor"})
SITE_IN_PATH = ID_PATTERN.strip("^$")


class QueueBoard:
    """The queue positions and the average import duration, computed once per admission version: the
    history API is read far more often than admission changes (a front-end refreshing every waiting import
    while a herd deposits), and the replay of the whole queue is the costly part of a read. Every process
    reads the version from the database, so two notifier processes never show positions older than the
    statuses they return."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._version = -1
        self._positions: dict[str, int] = {}
        self._avg = 30.0
        self._lock = asyncio.Lock()

    async def read(self, conn: Any, waiting_ids: list[str], version: int | None = None) -> tuple[dict[str, int],
                                                                                                 float]:
        """`version`: the admission version read with the rows shown, if it was (else read here)."""
        if version is None:
            version = await store.admission_at(conn)
        if version != self._version or any(i not in self._positions for i in waiting_ids):
            async with self._lock:  # one computation for the requests that arrive together
                if version > self._version or any(i not in self._positions for i in waiting_ids):
                    await self._compute(conn, version)
        return self._positions, self._avg

    async def _compute(self, conn: Any, version: int) -> None:
        # The version is read before the rows: the rows are at least as new as the version they are kept under.
        in_flight, waiting = await NotifierHandlers.active(conn)
        self._positions = domain.queue_positions([slot_of(r) for r in in_flight], [slot_of(r) for r in waiting],
                                                 self.capacity)
        self._avg = domain.average_duration(await store.recent_durations(conn), default=30.0)
        self._version = max(version, self._version)


ACTIVE_LISTED = 100
IN_FLIGHT_VALUES = frozenset(s.value for s in IN_FLIGHT)


async def queue_figures(db: Database, bus: Bus) -> dict[Stage, dict[str, Any]]:
    """Per stage queue: the bus's figures (RabbitMQ's management API, or the in-process bus) and, from the
    notifier's table, the age of the oldest import queued for it and the steps ended per minute."""
    now = utcnow()
    out: dict[Stage, dict[str, Any]] = {}
    async with db.read() as conn:
        for stage, queue in STAGE_QUEUES.items():
            oldest = await store.oldest_queued_at(conn, stage.value)
            done_recent = await store.steps_ended_since(conn, stage.value, now - timedelta(minutes=5))
            stats = await bus.queue_stats(queue)
            figures: dict[str, Any] = {
                "queue": queue,
                "ready": stats.get("ready"),
                "unacked": stats.get("unacked"),
                "consumers": stats.get("consumers"),
                "dead_lettered": stats.get("dead_lettered"),
                "oldest_message_age_s": round((now - oldest).total_seconds(), 3) if oldest else 0.0,
                "rate_per_min": round(done_recent / 5, 2),
            }
            if stats:
                figures["broker"] = {k: v for k, v in stats.items()
                                     if k not in ("ready", "unacked", "consumers", "dead_lettered")}
            out[stage] = figures
    return out


async def refresh_metrics(db: Database, bus: Bus) -> None:
    """The gauges of shared state, before a scrape: per stage queue and imports by status and mode."""
    for stage, f in (await queue_figures(db, bus)).items():
        labels = (stage.value, f["queue"])
        for gauge, key in ((QUEUE_READY, "ready"), (QUEUE_UNACKED, "unacked"), (QUEUE_CONSUMERS, "consumers"),
                           (QUEUE_DEAD_LETTERED, "dead_lettered"), (QUEUE_OLDEST_AGE, "oldest_message_age_s")):
            if f.get(key) is not None:  # the management API unavailable: the gauge keeps its last value
                gauge.labels(*labels).set(f[key])
    async with db.read() as conn:
        counts = await store.count_by_status_mode(conn)
    for status in ImportStatus:
        for mode in Mode:
            IMPORTS.labels(status.value, mode.value).set(counts.get((status.value, mode.value), 0))


# The queues whose dead letters the ops routes list and replay: the stages' commands, the deposits and the
# status events.
DEAD_LETTER_QUEUES = (*STAGE_QUEUES.values(), DEPOSITS_QUEUE, STATUS_QUEUE)


def dead_letter_read(d: Delivery) -> DeadLetterRead:
    try:
        head = json.loads(d.body)
    except ValueError:
        head = {}
    head = head if isinstance(head, dict) else {}
    deaths = d.headers.get("x-death")
    reason = None
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        raw = deaths[0].get("reason")
        reason = raw.decode() if isinstance(raw, bytes) else str(raw) if raw is not None else None
    return DeadLetterRead(message_id=d.message_id, routing_key=d.routing_key, attempts=d.attempt + 1,
                          import_id=head.get("import_id"), site=head.get("site"),
                          reason=reason or ("rejected" if d.attempt else None), size=len(d.body))


def build_router(db: Database, bus: Bus, blobs: BlobStore, settings: Settings,
                 handlers: NotifierHandlers) -> tuple[APIRouter, list[FastRead]]:
    """The notifier's routes, and the history reads also answered before routing (shared.web.FastRead)."""
    router = APIRouter()
    fast_reads: list[FastRead] = []

    board = QueueBoard(settings.max_in_flight)

    async def positions_and_etas(conn: Any, rows: list[Any]) -> tuple[dict[str, int], float]:
        if not any(ImportStatus(r.status) in ACTIVE for r in rows):
            return {}, 0.0  # nothing waiting or running in view: no position, no ETA to compute
        versions = [v for r in rows if (v := getattr(r, "admission", None)) is not None]
        return await board.read(conn, [r.id for r in rows if r.status == ImportStatus.WAITING.value],
                                min(versions) if len(versions) == len(rows) else None)

    def eta_for(row: Any, positions: dict[str, int], avg: float) -> tuple[int | None, int | None]:
        status = ImportStatus(row.status)
        if status is ImportStatus.WAITING:
            pos = positions.get(row.id)
            return pos, domain.eta_seconds(pos, None, avg)
        if status in IN_FLIGHT and status is not ImportStatus.AWAITING_SELECTION and row.started_at:
            elapsed = (utcnow() - as_utc(row.started_at)).total_seconds()
            return None, domain.eta_seconds(None, elapsed, avg)
        return None, None

    async def load(conn: Any, import_id: str, who: Principal) -> Any:
        row = await store.get_import(conn, import_id)
        if row is None or not who.can_access(row.site):
            raise not_found("Import")
        return row

    views = ViewCache(VIEW_CACHE_BYTES)

    async def rendered(conn: Any, stamps: list[Any]) -> dict[str, bytes]:
        """Each import's JSON as a read answers it, by id, from its stamp (store.STAMP_COLUMNS): the view kept
        for that revision, else rendered from the row read now (whose status then places it in the queue)."""
        found: dict[str, tuple[Any, RenderedView]] = {
            s.id: (s, view) for s in stamps if (view := views.current(s)) is not None}
        missing = [s.id for s in stamps if s.id not in found]
        if missing:
            grouped = await store.steps_of(conn, missing)
            for row in await store.import_views(conn, missing):
                view = render(row, grouped[row.id])
                views.keep(row.id, view)
                found[row.id] = (row, view)
        rows = [row for row, _ in found.values()]
        positions, avg = await positions_and_etas(conn, rows)
        return {i: view.body(*eta_for(row, positions, avg)) for i, (row, view) in found.items()}

    async def read_import(import_id: str, who: Principal) -> ImportRead:
        async with db.read() as conn:
            row = await load(conn, import_id, who)
            step_rows = (await store.steps_of(conn, [import_id]))[import_id]
            positions, avg = await positions_and_etas(conn, [row])
        return import_view(row, step_rows, *eta_for(row, positions, avg))

    async def history_body(site: str, establishment: str | None, status: str | None, mode: str | None,
                           limit: int, cursor: str | None) -> bytes:
        """A page of the site's history as the route answers it (also a FastRead)."""
        wanted = None
        if status:
            wanted = status.split(",")
            unknown = [s for s in wanted if s not in ImportStatus._value2member_map_]
            if unknown:
                raise Problem(400, "Bad Request", f"Unknown status: {', '.join(unknown)}", code="invalid_status")
        if mode and mode not in ("auto", "manual", "undo"):
            raise Problem(400, "Bad Request", "mode is auto, manual or undo", code="invalid_mode")
        after = decode_cursor(cursor, datetime, str)
        page_after = (after[0], after[1]) if after else None
        await handlers.settled(READ_YIELD_S)
        async with db.read() as conn:
            stamps = await store.history_page(conn, site, establishment=establishment, statuses=wanted,
                                              mode=mode or None, after=page_after, limit=limit + 1)
            page = stamps[:limit]
            bodies = await rendered(conn, page)
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(stamps) > limit else None
        items = b",".join(bodies[s.id] for s in page if s.id in bodies)
        return b'{"items":[%b],"next_cursor":%b}' % (items, json.dumps(next_cursor).encode())

    async def detail_body(import_id: str, who: Principal) -> bytes:
        """An import as the route answers it (also a FastRead)."""
        await handlers.settled(READ_YIELD_S)
        async with db.read() as conn:
            stamp = await store.import_stamp(conn, import_id)
            if stamp is None or not who.can_access(stamp.site):
                raise not_found("Import")
            body = (await rendered(conn, [stamp])).get(import_id)
        if body is None:
            raise not_found("Import")
        return body

    @router.get("/sites/{site}/imports", response_model=ImportList, summary="The site's import history",
                responses=problems(400, 401, 404, 422))
    async def history(site: SiteId, _: SitePrincipal,
                      establishment: Annotated[str | None, Query(
                          description="An establishment id, or `*` (or `Tous`) for the site-wide imports")] = None,
                      status: Annotated[str | None, Query(
                          description="One status or several, comma-separated",
                          json_schema_extra={"pattern": STATUS_LIST_PATTERN})] = None,
                      mode: Annotated[str | None, Query(description="auto, manual or undo (empty: all)",
                                                        json_schema_extra={"enum": ["auto", "manual", "undo",
                                                                                    ""]})] = None,
                      limit: Annotated[int, Query(ge=1, le=HISTORY_LIMIT_MAX)] = HISTORY_LIMIT,
                      cursor: Annotated[str | None, cursor_query(datetime, str)] = None) -> Response:
        return JSONBytes(await history_body(site, establishment, status, mode, limit, cursor))

    @router.get("/imports/{import_id}", response_model=ImportRead,
                summary="An import: status, queue position, ETA, steps, counts, alerts",
                responses=problems(401, 404, 422))
    async def detail(import_id: str, who: CurrentPrincipal) -> Response:
        return JSONBytes(await detail_body(import_id, who))

    async def fast_history(who: Principal, match: re.Match[str], query: dict[str, str]) -> bytes | None:
        site = match[1]
        limit = query.get("limit", str(HISTORY_LIMIT))
        if (not who.can_access(site) or not set(query) <= HISTORY_PARAMS or "" in query.values()
                or not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= HISTORY_LIMIT_MAX):
            return None
        return await history_body(site, query.get("establishment"), query.get("status"), query.get("mode"),
                                  int(limit), query.get("cursor"))

    async def fast_detail(who: Principal, match: re.Match[str], _: dict[str, str]) -> bytes | None:
        return await detail_body(match[1], who)

    fast_reads.extend([FastRead(re.compile(rf"/api/v1/sites/({SITE_IN_PATH})/imports"), fast_history),
                       FastRead(re.compile(r"/api/v1/imports/([^/]+)"), fast_detail)])

    @router.get("/imports/{import_id}/source", response_class=ZipResponse,
                summary="The deposited file as received",
                responses={200: media("The file: a zip, or with `raw=true` the bytes as deposited",
                                      "application/zip", "application/octet-stream"),
                           **problems(401, 404, 410, 422)})
    async def source(import_id: str, who: CurrentPrincipal, raw: bool = False) -> Response:
        """A plain XML is handed out zipped (seed 001: « format compressé ») unless `raw=true`. 410 once
        retention let it go (EDT_RETENTION_SOURCE_DAYS after the end of its import). Each download is in
        the access log."""
        async with db.read() as conn:
            row = await load(conn, import_id, who)
        days = settings.retention_source_days
        if domain.source_expired(as_utc(row.ended_at), utcnow(), days) or not blobs.exists(row.sha256):
            fr, en = domain.SOURCE_GONE
            raise Problem(410, "Gone", fr.format(days=f"{days:g}"), code="source_gone",
                          detail_en=en.format(days=f"{days:g}"))
        await handlers.record_access(access_event(who, "source.download", f"/imports/{import_id}/source",
                                                  service="notifier", site=row.site, import_id=import_id))
        data = await asyncio.to_thread(blobs.read_bytes, row.sha256)
        name = row.file_name.replace('"', "")
        if raw or data[:4] == b"PK\x03\x04":
            media_type = "application/zip" if data[:4] == b"PK\x03\x04" else "application/octet-stream"
            return Response(data, media_type=media_type,
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(name, data)
        return ZipResponse(buf.getvalue(), headers={"Content-Disposition": f'attachment; filename="{name}.zip"'})

    @router.get("/imports/{import_id}/report", response_model=ReportRead, summary="The bilan of an import",
                responses=problems(401, 404, 422))
    async def report(import_id: str, who: CurrentPrincipal) -> ReportRead:
        """Per action, success and error counts, and the total of tasks (seed 001)."""
        async with db.read() as conn:
            row = await load(conn, import_id, who)
            step_rows = (await store.steps_of(conn, [import_id]))[import_id]
        actions = [ReportAction.model_validate({**action, "label": domain.action_label(action["action"])})
                   for stage_counts in (row.counts or {}).values()
                   for action in (stage_counts or {}).get("actions", [])]
        view = import_view(row, step_rows, None, None)
        return ReportRead(import_id=row.id, status=view.status, label=view.label, label_detail=view.label_detail,
                          establishment_label=view.establishment_label, file=view.file, steps=view.steps,
                          actions=actions, total_tasks=sum(a.success + a.error for a in actions), alerts=view.alerts,
                          message=row.message, message_en=row.message_en)

    @router.post("/imports/{import_id}/cancel", response_model=ImportRead,
                 summary="Cancel a waiting import, or a manual import awaiting its selection",
                 responses=problems(401, 404, 409, 422))
    async def cancel(import_id: str, who: CurrentPrincipal) -> ImportRead:
        async with db.read() as conn:
            await load(conn, import_id, who)
        result = await handlers.cancel(import_id)
        if result is not ImportStatus.CANCELLED:
            raise Problem(409, "Conflict", f"Import is {result.value if result else 'unknown'}: only a waiting "
                          "import or a manual import awaiting its selection can be cancelled", code="not_cancellable")
        return await read_import(import_id, who)

    async def stream(last_id: int, request: Request, once: bool, import_id: str | None,
                     site: str | None) -> AsyncIterator[bytes]:
        yield b": edt-import event stream\n\n"
        while True:
            growth = handlers.log_growth()
            async with db.read() as conn:
                rows = await store.events_after(conn, last_id, import_id=import_id, site=site)
            for r in rows:
                last_id = r.id
                yield f"id: {r.id}\nevent: status\ndata: {json.dumps(r.payload)}\n\n".encode()
            if once or await request.is_disconnected():
                return
            if not rows:
                await handlers.wait_streams(growth)

    async def sse(request: Request, once: bool, live: bool = False, *, import_id: str | None = None,
                  site: str | None = None) -> EventStream:
        header = request.headers.get("last-event-id", "")
        if header.isdigit():
            last_id = int(header)
        elif live:
            async with db.read() as conn:
                last_id = await store.last_event_id(conn)
        else:
            last_id = 0
        return EventStream(stream(last_id, request, once, import_id, site),
                           headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    events = media("`event: status` per status change, `data` the status (import_id, site, status, label, "
                   "label_detail, stage, step_status, message, at); `Last-Event-ID` resumes", "text/event-stream")

    @router.get("/imports/{import_id}/events", response_class=EventStream, summary="Status events of an import",
                responses={200: events, **problems(401, 404, 422)})
    async def import_events(import_id: str, request: Request, who: CurrentPrincipal, once: Once = False,
                            live: Live = False) -> EventStream:
        async with db.read() as conn:
            await load(conn, import_id, who)
        return await sse(request, once, live, import_id=import_id)

    @router.get("/sites/{site}/events", response_class=EventStream, summary="Status events of a site's imports",
                responses={200: events, **problems(401, 404, 422)})
    async def site_events(site: SiteId, request: Request, _: SitePrincipal, once: Once = False,
                          live: Live = False) -> EventStream:
        return await sse(request, once, live, site=site)

    @router.post("/imports/{import_id}/abort", response_model=ImportRead, status_code=202,
                 summary="Stop a waiting or running import (nothing of it is written)",
                 responses={200: {"model": ImportRead, "description": "It had not started: cancelled at once"},
                            **problems(401, 404, 409, 422)})
    async def abort(import_id: str, who: CurrentPrincipal, response: Response) -> ImportRead:
        """A waiting import (or one paused for its selection) ends `cancelled` at once (200). A running one
        ends `cancelled` (« Interrompu ») at its next stage boundary (202; 200 when it has ended so by the time
        of the answer): every stage service records the abort before the answer, the step in progress rolls back,
        and what earlier steps wrote (groups and memberships) is restored. 409 with the reason for an import
        that has ended, or that was integrated before the abort reached it (undo it instead)."""
        async with db.read() as conn:
            await load(conn, import_id, who)
        status, refusal = await handlers.abort(import_id)
        if refusal is not None:
            raise Problem(409, "Conflict", refusal[0], code="not_abortable", detail_en=refusal[1],
                          status_value=status.value if status else None)
        if status is ImportStatus.CANCELLED:
            response.status_code = 200
        return await read_import(import_id, who)

    @router.post("/imports/{import_id}/undo", response_model=UndoAccepted, status_code=202,
                 summary="Undo the establishment's last integrated import",
                 responses={202: {"description": "The undo import, readable at once at `Location`",
                                  "headers": {"Location": {"description": "The undo import",
                                                           "schema": {"type": "string"}}}},
                            **problems(401, 404, 409, 422)})
    async def undo(import_id: str, who: CurrentPrincipal, response: Response) -> UndoAccepted:
        """A new import of mode `undo` (in the history, queued and locking the establishment's settings like
        any import) restores, from its start on, the sessions, groups and memberships as they were before
        `import_id` — with its bilan and change events; sessions before its start are untouched. 409 with
        the reason when `import_id` is not the establishment's last integrated import, was not integrated,
        changed nothing, or another import of the establishment waits or runs."""
        async with db.read() as conn:
            await load(conn, import_id, who)
        new_id, refusal = await handlers.undo(import_id)
        if refusal is not None or new_id is None:
            fr, en = refusal or ("", "")
            raise Problem(409, "Conflict", fr, code="not_undoable", detail_en=en)
        link = f"/api/v1/imports/{new_id}"
        response.headers["Location"] = link
        return UndoAccepted(import_id=new_id, links={"import": link})

    async def change_stream(site: str, last_id: int, request: Request, once: bool,
                            establishment: str | None) -> AsyncIterator[bytes]:
        yield b": edt-import change events\n\n"
        async with db.read() as conn:
            dropped = await store.changes_dropped_through(conn, site)
        if 0 < last_id < dropped:  # resumed from an event retention has dropped since: say what was lost
            lost = {"reason": "retention", "dropped_through": dropped, "last_event_id": last_id,
                    "detail": "Events after Last-Event-ID were dropped by retention: read the sessions again "
                              "(GET …/sessions), then follow this stream"}
            yield f"id: {dropped}\nevent: reset\ndata: {json.dumps(lost)}\n\n".encode()
        last_id = max(last_id, dropped)
        while True:
            growth = handlers.log_growth()
            async with db.read() as conn:
                rows = await store.changes_after(conn, site, last_id, establishment=establishment)
            for r in rows:
                last_id = r.id
                yield f"id: {r.id}\nevent: sessions.changed\ndata: {r.body}\n\n".encode()
            if once and not rows:
                return
            if await request.is_disconnected():
                return
            if not rows:
                await handlers.wait_streams(growth)

    change_events = media(
        "`event: sessions.changed` per change event of the scheduler (as published on `edt.changes`: `v`, "
        "`type`, `import_id`, `site`, `establishment`, `batch`, `batches`, `created`, `updated` (sessions), "
        "`deleted` (`id`, `key`, `start`), `names`); `id` increases; `Last-Event-ID` resumes; `event: reset` "
        "when events after it were dropped by retention", "text/event-stream")

    @router.get("/sites/{site}/changes", response_class=EventStream,
                summary="Change events of the site's sessions (Server-Sent Events, resumable)",
                responses={200: change_events, **problems(401, 404, 422)})
    async def site_changes(site: SiteId, request: Request, _: SitePrincipal, once: Once = False,
                           establishment: Annotated[str | None, Query(
                               description="Only this establishment's events")] = None) -> EventStream:
        """What the scheduler publishes on `edt.changes`, kept per site (the newest EDT_CHANGES_MAX_EVENTS
        events, none older than EDT_CHANGES_RETENTION_H hours) so that an ENT without a RabbitMQ consumer
        follows them too, in both run modes."""
        header = request.headers.get("last-event-id", "0")
        last_id = int(header) if header.isdigit() else 0
        return EventStream(change_stream(site, last_id, request, once, establishment),
                           headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.get("/ops/queues", response_model=QueuesRead, response_model_exclude_unset=True,
                summary="Per stage: ready, unacked, consumers, oldest message age, rate",
                responses=problems(401, 403))
    async def ops_queues(_: AdminPrincipal) -> QueuesRead:
        stages = {stage.value: QueueRead.model_validate(figures)
                  for stage, figures in (await queue_figures(db, bus)).items()}
        async with db.read() as conn:
            active = await store.oldest_active(conn, [s.value for s in ACTIVE], ACTIVE_LISTED)
            counts = await store.count_by_status_mode(conn)
            positions, _avg = await positions_and_etas(conn, active)
        waiting = sum(n for (status, _), n in counts.items() if status == ImportStatus.WAITING.value)
        in_flight = sum(n for (status, _), n in counts.items() if status in IN_FLIGHT_VALUES)
        listed = [ActiveImportRead(id=r.id, site=r.site, establishment=r.establishment,
                                   establishment_label=r.establishment or "Tous", mode=r.mode, status=r.status,
                                   label=domain.label_for(ImportStatus(r.status))[0], created_at=iso(r.created_at),
                                   started_at=iso(r.started_at), queue_position=positions.get(r.id),
                                   queued_stage=r.queued_stage) for r in active]
        return QueuesRead(stages=stages, waiting_imports=waiting, in_flight_imports=in_flight,
                          max_in_flight=settings.max_in_flight, active=listed)

    # --- dead letters (docs/reliability.md) ---------------------------------------------------------------

    @router.get("/ops/dead-letters", response_model=DeadLettersRead,
                summary="The messages every stage and the notifier gave up on (their dead-letter queues)",
                responses=problems(401, 403, 422))
    async def dead_letters(_: AdminPrincipal, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> DeadLettersRead:
        """Per queue, its oldest dead letters (at most `limit`), left in place. A stage's dead letter is a
        command whose import ended `failed` with the reason; replay it once its cause is fixed."""
        return DeadLettersRead(queues=[DeadLetterQueueRead(queue=q, count=len(found), messages=[
            dead_letter_read(d) for d in found]) for q in DEAD_LETTER_QUEUES
            for found in [await bus.dead_letters_of(q, limit)]])

    @router.post("/ops/dead-letters/{queue}/replay", response_model=ReplayRead,
                 summary="Send a dead-letter queue's messages back to their queue",
                 responses=problems(401, 403, 404, 422))
    async def replay_dead_letters(queue: str, _: AdminPrincipal,
                                  limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> ReplayRead:
        """Oldest first, each with a whole retry budget again. A stage's consumer drops a command whose step
        has finished meanwhile (its import failed when it was given up): replaying is always safe."""
        if queue not in DEAD_LETTER_QUEUES:
            raise Problem(404, "Not Found", f"File inconnue : {queue} (connues : {', '.join(DEAD_LETTER_QUEUES)}).",
                          code="unknown_queue", detail_en=f"Unknown queue {queue}.")
        return ReplayRead(queue=queue, replayed=await bus.replay_dead_letters(queue, limit))

    # --- personal data (docs/privacy.md) ------------------------------------------------------------

    def unanswered(exc: PrivacyUnanswered) -> Problem:
        who = ", ".join(exc.missing + sorted(exc.errors))
        if exc.errors:
            return Problem(502, "Bad Gateway", f"Demande non aboutie : erreur de {who}. Relancez-la (elle est "
                           "idempotente).", code="privacy_failed", errors_by_service=exc.errors, missing=exc.missing)
        return Problem(504, "Gateway Timeout", f"Sans réponse de {who} dans le délai : sa part de la demande "
                       "reste en file et sera faite à son retour ; relancez la demande pour obtenir la "
                       "confirmation.", code="privacy_unanswered", missing=exc.missing)

    async def retained(models: list[dict[str, Any]]) -> list[RetainedCopy]:
        listed = [m for m in models if "import_id" in m]
        async with db.read() as conn:
            until = await store.source_kept_until(conn, sorted({m["import_id"] for m in listed}),
                                                  settings.retention_source_days)
        return [RetainedCopy(import_id=m["import_id"], establishment=m["establishment"],
                             model_kept_until=m.get("kept_until"), baseline=bool(m.get("baseline")),
                             source_kept_until=iso(until.get(m["import_id"]))) for m in listed]

    person_path = "/sites/{site}/persons/{ent_id}"

    @router.get(person_path, response_model=PersonRead, summary="Everything held about an ENT person (access)",
                responses=problems(401, 403, 404, 422, 502, 504))
    async def export_person(site: SiteId, ent_id: EntId, who: AdminPrincipal) -> PersonRead:
        """Gathered from every service holding data (reconciler: directory entries, IdPN associations,
        matches, memberships; scheduler: courses and class memberships by the person's idents in the files;
        validator: the person as the kept files name them), in both run modes. 404 when no service holds
        anything about them. In the access log."""
        await handlers.record_access(access_event(who, "person.export", f"/sites/{site}/persons/{ent_id}",
                                                  service="notifier", site=site))
        try:
            held, idents = await handlers.person("export", site, ent_id, by="admin")
        except PrivacyUnanswered as exc:
            raise unanswered(exc) from exc
        if not domain.holds_anything(held):
            raise not_found("Person")
        return PersonRead(site=site, ent_id=ent_id, found=True, held=held,
                          file_idents=[PersonFileIdent(**i.model_dump()) for i in idents],
                          retained=await retained(held.get("validator", {}).get("models", [])))

    @router.delete(person_path, response_model=PersonErasureRead,
                   summary="Erase an ENT person everywhere (erasure), once every service confirmed",
                   responses=problems(401, 403, 404, 422, 502, 504))
    async def erase_person(site: SiteId, ent_id: EntId, who: AdminPrincipal) -> PersonErasureRead:
        """The directory entry, IdPN associations, stored matches and memberships (reconciler), the person in
        courses, classes, parts and sessions — which keep their course — (scheduler); answered once each
        service erased in one transaction and acknowledged. The sealed copies of the school's files naming
        the person are listed in `retained`: they leave by retention. Idempotent: 404 once nothing is held
        about them any more. In the access log."""
        try:
            held, _ = await handlers.person("erase", site, ent_id, by="admin")
        except PrivacyUnanswered as exc:
            raise unanswered(exc) from exc
        if not domain.erased_anything(held):
            raise not_found("Person")
        await handlers.record_access(access_event(who, "person.erase", f"/sites/{site}/persons/{ent_id}",
                                                  service="notifier", site=site))
        erased = {name: data for name, data in held.items() if name != "validator"}
        return PersonErasureRead(site=site, ent_id=ent_id, confirmed_by=sorted(held), erased=erased,
                                 retained=await retained(held.get("validator", {}).get("models", [])))

    @router.post("/ops/retention/run", response_model=RetentionRunRead,
                 summary="Run every service's retention purge now", responses=problems(401, 403, 502, 504))
    async def retention_run(_: AdminPrincipal) -> RetentionRunRead:
        """Each service purges what it owns (dropzone: deposited files; validator: canonical models, never a
        baseline; reconciler: unreconciled lists, previews, superseded directory snapshots; notifier: the
        access log's old entries) and answers what it removed. The same purges run by themselves every
        EDT_RETENTION_INTERVAL_S."""
        started = utcnow()
        own = await handlers.purge()
        try:
            replies = await handlers.ask("retention", RETENTION_OWNERS, by="admin")
        except PrivacyUnanswered as exc:
            raise unanswered(exc) from exc
        return RetentionRunRead(ran_at=iso(started),
                                services={"notifier": own, **{name: r.data for name, r in replies.items()}})

    @router.get("/ops/access-log", response_model=AccessList, summary="Reads of personal data: who, when, what",
                responses=problems(400, 401, 403, 422))
    async def access_log(_: AdminPrincipal, site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
                         action: Annotated[str | None, Query(max_length=32)] = None,
                         limit: Annotated[int, Query(ge=1, le=500)] = 100,
                         cursor: Annotated[str | None, cursor_query(int)] = None) -> AccessList:
        """Newest first: source downloads, WebDAV reads of deposited files, unreconciled lists, previews,
        person exports and erasures."""
        after = decode_cursor(cursor, int)
        async with db.read() as conn:
            rows = await store.access_page(conn, site=site, action=action, before_id=after[0] if after else None,
                                           limit=limit + 1)
        items = [AccessRead(id=r.id, at=iso(r.at), actor=r.actor, actor_kind=r.actor_kind, action=r.action,
                            resource=r.resource, site=r.site, import_id=r.import_id, service=r.service)
                 for r in rows[:limit]]
        return AccessList(items=items, next_cursor=encode_cursor(rows[limit - 1].id) if len(rows) > limit else None)

    return router, fast_reads
