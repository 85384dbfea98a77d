"""History API (design.md §5): import history, import detail with queue position, source, report,
Server-Sent Events, and ops queue metrics."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from services.notifier import domain
from services.notifier.handlers import IN_FLIGHT, NotifierHandlers, slot_of
from services.notifier.store import event_log, imports, steps
from shared.blobs import BlobStore
from shared.bus import Bus
from shared.db import Database, as_utc
from shared.messages import PIPELINE, STAGE_QUEUES, ImportStatus, Stage, StepStatus, utcnow
from shared.settings import Settings
from shared.web import Principal, Problem, authenticate, decode_cursor, encode_cursor, not_found, require_site

STAGE_ORDER = [Stage.DEPOSIT, *PIPELINE]


def import_view(row: Any, step_rows: list[Any], position: int | None, eta: int | None) -> dict[str, Any]:
    status = ImportStatus(row.status)
    short, long = domain.label_for(status)
    by_stage = {s.stage: s for s in step_rows}
    step_list = []
    for stage in STAGE_ORDER:
        s = by_stage.get(stage.value)
        step_list.append({
            "stage": stage.value,
            "status": s.status if s else StepStatus.PENDING.value,
            "started_at": _iso(s.started_at) if s else None,
            "ended_at": _iso(s.ended_at) if s else None,
            "message": s.message if s else None,
            "message_en": s.message_en if s else None,
        })
    ended = sum(1 for s in step_list if s["status"] not in ("pending", "running"))
    return {
        "id": row.id,
        "site": row.site,
        "establishment": row.establishment,
        "establishment_label": row.establishment or "Tous",
        "establishments": row.establishments,
        "mode": row.mode,
        "auto": row.mode == "auto",
        "dry_run": row.dry_run,
        "status": status.value,
        "label": short,
        "label_detail": long,
        "created_at": _iso(row.created_at),
        "started_at": _iso(row.started_at),
        "ended_at": _iso(row.ended_at),
        "queue_position": position,
        "eta_s": eta,
        "progress": 100 if domain.is_terminal(status) else round(100 * ended / len(step_list)),
        "file": {"name": row.file_name, "sha256": row.sha256, "size": row.size},
        "source": row.source,
        "account": row.account,
        "message": row.message,
        "message_en": row.message_en,
        "no_change": row.no_change,
        "superseded_by": row.superseded_by,
        "steps": step_list,
        "counts": row.counts or {},
        "alerts": row.alerts or [],
        "links": {"self": f"/api/v1/imports/{row.id}", "report": f"/api/v1/imports/{row.id}/report",
                  "source": f"/api/v1/imports/{row.id}/source"},
    }


def _iso(value: datetime | None) -> str | None:
    v = as_utc(value)
    return v.isoformat().replace("+00:00", "Z") if v else None


def build_router(db: Database, bus: Bus, blobs: BlobStore, settings: Settings,
                 handlers: NotifierHandlers) -> APIRouter:
    router = APIRouter()

    def principal(request: Request) -> Principal:
        return authenticate(settings, request)

    async def positions_and_etas(conn: Any) -> tuple[dict[str, int], float]:
        in_flight, waiting = await handlers.active(conn)
        positions = domain.queue_positions([slot_of(r) for r in in_flight], [slot_of(r) for r in waiting],
                                           settings.max_in_flight)
        recent = (await conn.execute(sa.select(imports.c.started_at, imports.c.ended_at).where(
            imports.c.status == ImportStatus.DONE.value, imports.c.started_at.is_not(None),
            imports.c.no_change.is_(False)).order_by(imports.c.ended_at.desc()).limit(20))).all()
        avg = domain.average_duration(
            ((as_utc(r.ended_at) - as_utc(r.started_at)).total_seconds() for r in recent
             if r.ended_at and r.started_at), default=30.0)
        return positions, avg

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
        row = (await conn.execute(sa.select(imports).where(imports.c.id == import_id))).first()
        if row is None or not who.can_access(row.site):
            raise not_found("Import")
        return row

    @router.get("/sites/{site}/imports")
    async def history(site: str, request: Request, establishment: str | None = None, status: str | None = None,
                      mode: str | None = None, limit: int = Query(50, ge=1, le=500),
                      cursor: str | None = None) -> dict[str, Any]:
        who = principal(request)
        require_site(who, site)
        query = sa.select(imports).where(imports.c.site == site)
        if establishment is not None:
            query = query.where(imports.c.establishment.is_(None) if establishment in ("*", "Tous")
                                else imports.c.establishment == establishment)
        if status:
            wanted = status.split(",")
            unknown = [s for s in wanted if s not in ImportStatus._value2member_map_]
            if unknown:
                raise Problem(400, "Bad Request", f"Unknown status: {', '.join(unknown)}", code="invalid_status")
            query = query.where(imports.c.status.in_(wanted))
        if mode:
            if mode not in ("auto", "manual"):
                raise Problem(400, "Bad Request", "mode is auto or manual", code="invalid_mode")
            query = query.where(imports.c.mode == mode)
        after = decode_cursor(cursor)
        if after:
            at = datetime.fromisoformat(after[0])
            query = query.where(sa.or_(imports.c.created_at < at,
                                       sa.and_(imports.c.created_at == at, imports.c.id < after[1])))
        query = query.order_by(imports.c.created_at.desc(), imports.c.id.desc()).limit(limit + 1)
        async with db.read() as conn:
            rows = (await conn.execute(query)).all()
            page = rows[:limit]
            ids = [r.id for r in page]
            step_rows = (await conn.execute(sa.select(steps).where(steps.c.import_id.in_(ids)))).all() if ids else []
            positions, avg = await positions_and_etas(conn)
        grouped: dict[str, list[Any]] = {}
        for s in step_rows:
            grouped.setdefault(s.import_id, []).append(s)
        items = [import_view(r, grouped.get(r.id, []), *eta_for(r, positions, avg)) for r in page]
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            next_cursor = encode_cursor([as_utc(last.created_at).isoformat(), last.id])
        return {"items": items, "next_cursor": next_cursor}

    @router.get("/imports/{import_id}")
    async def detail(import_id: str, request: Request) -> dict[str, Any]:
        who = principal(request)
        async with db.read() as conn:
            row = await load(conn, import_id, who)
            step_rows = (await conn.execute(sa.select(steps).where(steps.c.import_id == import_id))).all()
            positions, avg = await positions_and_etas(conn)
        return import_view(row, list(step_rows), *eta_for(row, positions, avg))

    @router.get("/imports/{import_id}/source")
    async def source(import_id: str, request: Request, raw: bool = False) -> Response:
        """The deposited file as received; a plain XML is handed out zipped (seed 001: « format compressé »)
        unless `raw=true`."""
        who = principal(request)
        async with db.read() as conn:
            row = await load(conn, import_id, who)
        if not blobs.exists(row.sha256):
            raise Problem(410, "Gone", "The deposited file is no longer stored", code="source_gone")
        data = await asyncio.to_thread(blobs.read_bytes, row.sha256)
        name = row.file_name.replace('"', "")
        if raw or data[:4] == b"PK\x03\x04":
            media = "application/zip" if data[:4] == b"PK\x03\x04" else "application/octet-stream"
            return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(name, data)
        return Response(buf.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}.zip"'})

    @router.get("/imports/{import_id}/report")
    async def report(import_id: str, request: Request) -> dict[str, Any]:
        """Bilan (seed 001): per action, success and error counts, and the total of tasks."""
        who = principal(request)
        async with db.read() as conn:
            row = await load(conn, import_id, who)
            step_rows = (await conn.execute(sa.select(steps).where(steps.c.import_id == import_id))).all()
        actions: list[dict[str, Any]] = []
        for stage_counts in (row.counts or {}).values():
            for action in (stage_counts or {}).get("actions", []):
                actions.append(action)
        total = sum(int(a.get("success", 0)) + int(a.get("error", 0)) for a in actions)
        view = import_view(row, list(step_rows), None, None)
        return {"import_id": row.id, "status": view["status"], "label": view["label"],
                "label_detail": view["label_detail"], "establishment_label": view["establishment_label"],
                "file": view["file"], "steps": view["steps"], "actions": actions, "total_tasks": total,
                "alerts": view["alerts"], "message": row.message, "message_en": row.message_en}

    @router.post("/imports/{import_id}/cancel")
    async def cancel(import_id: str, request: Request) -> dict[str, Any]:
        who = principal(request)
        async with db.read() as conn:
            await load(conn, import_id, who)
        result = await handlers.cancel(import_id)
        if result is not ImportStatus.CANCELLED:
            raise Problem(409, "Conflict", f"Import is {result.value if result else 'unknown'}: only a waiting "
                          "import or a manual import awaiting its selection can be cancelled", code="not_cancellable")
        return await detail(import_id, request)

    async def stream(where: Any, last_id: int, request: Request, once: bool) -> AsyncIterator[bytes]:
        yield b": edt-import event stream\n\n"
        while True:
            growth = handlers.log_growth()
            async with db.read() as conn:
                rows = (await conn.execute(sa.select(event_log).where(where, event_log.c.id > last_id)
                                           .order_by(event_log.c.id).limit(200))).all()
            for r in rows:
                last_id = r.id
                yield f"id: {r.id}\nevent: status\ndata: {json.dumps(r.payload)}\n\n".encode()
            if once or await request.is_disconnected():
                return
            if not rows:
                await handlers.wait_streams(growth)

    def sse(where: Any, request: Request, once: bool) -> StreamingResponse:
        header = request.headers.get("last-event-id", "0")
        last_id = int(header) if header.isdigit() else 0
        return StreamingResponse(stream(where, last_id, request, once), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.get("/imports/{import_id}/events")
    async def import_events(import_id: str, request: Request, once: bool = False) -> StreamingResponse:
        who = principal(request)
        async with db.read() as conn:
            await load(conn, import_id, who)
        return sse(event_log.c.import_id == import_id, request, once)

    @router.get("/sites/{site}/events")
    async def site_events(site: str, request: Request, once: bool = False) -> StreamingResponse:
        who = principal(request)
        require_site(who, site)
        return sse(event_log.c.site == site, request, once)

    @router.get("/ops/queues")
    async def ops_queues(request: Request) -> dict[str, Any]:
        who = principal(request)
        if not who.admin:
            raise Problem(403, "Forbidden", "Admin token required", code="forbidden")
        now = utcnow()
        out: dict[str, Any] = {}
        async with db.read() as conn:
            for stage, queue in STAGE_QUEUES.items():
                oldest = (await conn.execute(sa.select(sa.func.min(imports.c.queued_at)).where(
                    imports.c.queued_stage == stage.value))).scalar()
                done_recent = (await conn.execute(sa.select(sa.func.count()).select_from(steps).where(
                    steps.c.stage == stage.value, steps.c.ended_at >= now - timedelta(minutes=5)))).scalar()
                stats = await bus.queue_stats(queue)
                out[stage.value] = {
                    "queue": queue,
                    "ready": stats.get("ready"),
                    "unacked": stats.get("unacked"),
                    "consumers": stats.get("consumers"),
                    "dead_lettered": stats.get("dead_lettered"),
                    "oldest_message_age_s": round((now - as_utc(oldest)).total_seconds(), 3) if oldest else 0.0,
                    "rate_per_min": round((done_recent or 0) / 5, 2),
                    **({"broker": {k: v for k, v in stats.items()
                                   if k not in ("ready", "unacked", "consumers", "dead_lettered")}}
                       if stats else {}),
                }
            waiting = (await conn.execute(sa.select(sa.func.count()).select_from(imports).where(
                imports.c.status == ImportStatus.WAITING.value))).scalar()
        return {"stages": out, "waiting_imports": waiting, "max_in_flight": settings.max_in_flight}

    return router
