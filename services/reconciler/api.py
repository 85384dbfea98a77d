"""Routes of the reconciler service (design.md §5): the ENT directory and the IdPN associations of an
establishment, the unreconciled lists of an import, the manual wizard (preview, selection, confirm) and
the groups an establishment's imports created."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from services.reconciler import domain
from services.reconciler.handlers import ReconcilerStage
from services.reconciler.store import groups, memberships, persons, results, snapshots, units
from services.reconciler.wizard import WizardError
from shared.db import Database, as_utc
from shared.reconcile import KINDS
from shared.settings import Settings
from shared.web import Problem, authenticate, decode_cursor, encode_cursor, not_found, require_site

MAX_BODY = 50 * 1024 * 1024


def _media(request: Request) -> str:
    return (request.headers.get("content-type") or "application/json").split(";")[0].strip().lower()


def _invalid(errors: list[dict[str, Any]], what: str) -> Problem:
    first = errors[0]
    where = f"line {first['line']}, " if "line" in first else ""
    field = ".".join(str(x) for x in first["loc"])
    return Problem(422, "Unprocessable Content",
                   f"{what}: {len(errors)} error(s); first: {where}{field}: {first['msg']}",
                   code="validation_error", errors=errors)


def _iso(value: Any) -> str | None:
    v = as_utc(value)
    return v.isoformat().replace("+00:00", "Z") if v else None


async def body_of(request: Request) -> bytes:
    data = await request.body()
    if len(data) > MAX_BODY:
        raise Problem(413, "Content Too Large", f"Request body over {MAX_BODY} bytes", code="too_large")
    return data


async def parsed_upload(request: Request, from_csv: Callable[[bytes], Any], from_json: Callable[[bytes], Any],
                        rejected: str) -> Any:
    """An upload read by its media type: 415 for another type, 422 problem+json naming line and field."""
    data = await body_of(request)
    media = _media(request)
    try:
        if media in ("text/csv", "application/csv", "text/plain"):
            upload = from_csv(data)
        elif media in ("application/json", "text/json"):
            upload = from_json(data)
        else:
            raise Problem(415, "Unsupported Media Type", "Send application/json or text/csv",
                          code="unsupported_media_type")
    except domain.UploadError as exc:
        raise Problem(422, "Unprocessable Content", exc.detail, code="unreadable_body", errors=exc.errors) from exc
    if upload.errors:
        raise _invalid(upload.errors, rejected)
    return upload


def build_router(db: Database, settings: Settings, directories: ReconcilerStage, wizard: ReconcilerStage) -> APIRouter:
    router = APIRouter()

    @router.put("/sites/{site}/establishments/{est}/directory")
    async def put_directory(site: str, est: str, request: Request,
                            mode: str = Query("replace", pattern="^(replace|merge)$")) -> dict[str, Any]:
        """The ENT directory of the establishment. JSON `{"persons": [{"id", "kind" (teacher|staff|student),
        "last_name", "first_name", "birth_date"?, "pronote_id"?, "cas_id"?}], "classes": [{"id", "name"}],
        "groups": [{"id", "name"}]}`, or `text/csv` (one file, `type` column: teacher|staff|student|class|group;
        see services/reconciler/domain.py). `mode=replace` (default) replaces the whole directory, `merge`
        adds or updates the entries given by id. Validation errors: 422 problem+json naming line and field."""
        who = authenticate(settings, request)
        require_site(who, site)
        upload = await parsed_upload(request, domain.parse_directory_csv, domain.parse_directory_json,
                                     "Directory rejected")
        return await directories.put_directory(site, est, upload, mode)

    @router.get("/sites/{site}/establishments/{est}/directory")
    async def get_directory(site: str, est: str, request: Request,
                            section: str = Query("persons", pattern="^(persons|classes|groups)$"),
                            kind: str | None = Query(None, pattern="^(teacher|staff|student)$"),
                            limit: int = Query(100, ge=1, le=1000), cursor: str | None = None) -> dict[str, Any]:
        """Counts of the stored directory and one page of a section (persons by default, filter `kind`),
        ordered by id: `{…, "counts", "items", "next_cursor"}`. 404 when none was uploaded."""
        who = authenticate(settings, request)
        require_site(who, site)
        after = decode_cursor(cursor)
        async with db.read() as conn:
            snap = (await conn.execute(sa.select(snapshots).where(
                snapshots.c.site == site, snapshots.c.establishment == est))).first()
            if snap is None:
                raise not_found("Directory")
            if section == "persons":
                q = sa.select(persons).where(persons.c.site == site, persons.c.establishment == est)
                if kind:
                    q = q.where(persons.c.kind == kind)
                table = persons
            else:
                q = sa.select(units).where(units.c.site == site, units.c.establishment == est,
                                           units.c.kind == ("class" if section == "classes" else "group"))
                table = units
            if after:
                q = q.where(table.c.id > str(after[0]))
            rows = (await conn.execute(q.order_by(table.c.id).limit(limit + 1))).all()
        more = len(rows) > limit
        rows = rows[:limit]
        if section == "persons":
            items = [{"id": r.id, "kind": r.kind, "last_name": r.last_name, "first_name": r.first_name,
                      "birth_date": r.birth_date.isoformat() if r.birth_date else None, "pronote_id": r.pronote_id,
                      "cas_id": r.cas_id} for r in rows]
        else:
            items = [{"id": r.id, "name": r.name} for r in rows]
        return {"site": site, "establishment": est, "sha256": snap.sha256, "updated_at": _iso(snap.updated_at),
                "counts": snap.counts, "section": section, "items": items,
                "next_cursor": encode_cursor([rows[-1].id]) if more and rows else None}

    @router.post("/sites/{site}/establishments/{est}/pronote-ids")
    async def post_pronote_ids(site: str, est: str, request: Request,
                               mode: str = Query(..., pattern="^(complete|partial)$")) -> dict[str, Any]:
        """The IdPN export linking PRONOTE ids to ENT persons (seed 004): `mode=complete` at the start of
        the year replaces every association, `mode=partial` adds or updates (newcomers). JSON
        `[{"pronote_id", "ent_id"}]` or `text/csv` lines `pronote_id;ent_id` (optional header)."""
        who = authenticate(settings, request)
        require_site(who, site)
        upload = await parsed_upload(request, domain.parse_pronote_ids_csv, domain.parse_pronote_ids_json,
                                     "PRONOTE ids rejected")
        return await directories.post_pronote_ids(site, est, upload, mode)

    @router.get("/imports/{import_id}/unreconciled")
    async def unreconciled(import_id: str, request: Request,
                           kind: str = Query(..., pattern="^(teachers|students|classes|groups)$")) -> Response:
        """The people, classes or groups of the import's file not linked to the ENT directory, as
        `text/csv` (`;`, header): persons `ident;last_name;first_name;birth_date;class;reason`, classes and
        groups `ident;name;reason`; reason not_found | ambiguous | no_directory."""
        who = authenticate(settings, request)
        async with db.read() as conn:
            rows = (await conn.execute(sa.select(results).where(results.c.import_id == import_id)
                                       .order_by(results.c.establishment))).all()
        if not rows or not who.can_access(rows[0].site):
            raise not_found("Reconciliation")
        assert kind in KINDS
        listed = [r for row in rows for r in (row.unmatched or {}).get(kind, [])]
        return Response(domain.unreconciled_csv(kind, listed), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="unreconciled-{kind}-{import_id}.csv"'})

    def problem(exc: WizardError) -> Problem:
        titles = {404: "Not Found", 409: "Conflict", 422: "Unprocessable Content"}
        extra = {"errors": exc.errors} if exc.errors else {}
        return Problem(exc.status, titles.get(exc.status, "Error"), exc.detail, code=exc.code, **extra)

    async def preview_row(import_id: str, request: Request) -> Any:
        who = authenticate(settings, request)
        row = await wizard.row(import_id)
        if row is None or not who.can_access(row.site):
            raise not_found("Preview")
        return row

    @router.get("/imports/{import_id}/preview")
    async def preview(import_id: str, request: Request) -> dict[str, Any]:
        """A manual import sent with `review=true`, paused at awaiting_selection: per establishment its
        subjects, classes, groups and courses with their state (known / new / deactivated: vs. the last
        manual import's selection), every teacher and student with its match or its reason and candidates
        (directory persons with the same normalised last name), the threshold figures, and the selection
        as it stands (`selection`, per establishment). `status`: awaiting | confirmed | cancelled."""
        row = await preview_row(import_id, request)
        return {**row.preview, "import_id": row.import_id, "site": row.site, "status": row.status,
                "selection": row.selection, "updated_at": _iso(row.updated_at)}

    @router.put("/imports/{import_id}/selection")
    async def put_selection(import_id: str, request: Request) -> dict[str, Any]:
        """Partial update of the selection: `{"subjects"|"classes"|"groups"|"courses": {ident: true|false},
        "persons": {"teachers"|"students": {ident: {"decision": "accept"|"refuse"|"override"|"auto",
        "ent_id"?}}}}` (a site-wide import: `{"establishments": {est: {…}}}`). override = the ENT id the user
        chose; auto = forget a stored decision. 409 unless awaiting its selection; 422 naming each error."""
        row = await preview_row(import_id, request)
        try:
            body = json.loads(await body_of(request) or b"{}")
        except ValueError as exc:
            raise Problem(422, "Unprocessable Content", f"Body is not valid JSON: {exc}",
                          code="unreadable_body") from exc
        try:
            selection = await wizard.put_selection(row, body)
        except WizardError as exc:
            raise problem(exc) from exc
        return {"import_id": import_id, "status": "awaiting", "selection": selection}

    @router.post("/imports/{import_id}/confirm", status_code=202)
    async def confirm(import_id: str, request: Request) -> dict[str, Any]:
        """Apply the selection (groups and memberships), persist it and the decided matches for the
        establishment, and send the import on to session generation with the selected courses. 409 when the
        import is not awaiting its selection (already confirmed, cancelled, or not a wizard import)."""
        row = await preview_row(import_id, request)
        try:
            return await wizard.confirm(row)
        except WizardError as exc:
            raise problem(exc) from exc

    @router.get("/sites/{site}/establishments/{est}/groups")
    async def list_groups(site: str, est: str, request: Request,
                          kind: str | None = Query(None, pattern="^(class|part|group|course)$"),
                          include: str | None = Query(None, pattern="^members$"),
                          limit: int = Query(100, ge=1, le=1000), cursor: str | None = None) -> dict[str, Any]:
        """The groups the imports created for the establishment (classes, parts of class, groups, courses),
        ordered by key, with `members` (count); `include=members` lists them (`{kind, id, file_ident, start,
        end}`: ENT ids of matched people, the file's entry/exit dates)."""
        who = authenticate(settings, request)
        require_site(who, site)
        after = decode_cursor(cursor)
        where = (groups.c.site == site, groups.c.establishment == est)
        async with db.read() as conn:
            q = sa.select(groups).where(*where)
            if kind:
                q = q.where(groups.c.kind == kind)
            if after:
                q = q.where(groups.c.key > str(after[0]))
            rows = (await conn.execute(q.order_by(groups.c.key).limit(limit + 1))).all()
            more = len(rows) > limit
            rows = rows[:limit]
            keys = [r.key for r in rows]
            members: dict[str, list[Any]] = {k: [] for k in keys}
            for i in range(0, len(keys), 500):
                for m in (await conn.execute(sa.select(memberships).where(
                        memberships.c.site == site, memberships.c.establishment == est,
                        memberships.c.group_key.in_(keys[i:i + 500])))).all():
                    members[m.group_key].append(m)
        items = []
        for r in rows:
            item: dict[str, Any] = {"key": r.key, "kind": r.kind, "ident": r.ident, "name": r.name,
                                    "parent": r.parent, "ent_id": r.ent_id, "import_id": r.import_id,
                                    "updated_at": _iso(r.updated_at), "members": len(members[r.key])}
            if include == "members":
                item["member_list"] = sorted(
                    ({"kind": m.person_kind, "id": m.person_id, "file_ident": m.file_ident,
                      "start": m.start.isoformat() if m.start else None, "end": m.end.isoformat() if m.end else None}
                     for m in members[r.key]), key=lambda x: (x["kind"], x["id"], x["start"] or "", x["end"] or ""))
            items.append(item)
        return {"site": site, "establishment": est, "items": items,
                "next_cursor": encode_cursor([rows[-1].key]) if more and rows else None}

    return router
