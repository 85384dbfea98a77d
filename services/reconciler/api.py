"""Routes of the reconciler service (design.md §5): the ENT directory and the IdPN associations of an
establishment, the unreconciled lists of an import, the manual wizard (preview, selection, confirm) and
the groups an establishment's imports created."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from services.reconciler import domain, schemas, store
from services.reconciler.handlers import ReconcilerStage
from services.reconciler.schemas import (
    ConfirmRead,
    DirectoryCreate,
    DirectoryPersonRead,
    DirectoryRead,
    DirectoryUnitRead,
    DirectoryUploadRead,
    GroupList,
    GroupRead,
    MemberRead,
    PreviewRead,
    PronoteIdsCreate,
    PronoteIdsUploadRead,
    SelectionRead,
    SelectionUpdate,
)
from services.reconciler.wizard import WizardError
from shared.db import Database
from shared.deps import CurrentPrincipal, KnownEstablishment, SiteId, SitePrincipal
from shared.messages import iso
from shared.reconcile import KINDS
from shared.settings import Settings
from shared.web import (
    Principal,
    Problem,
    access_event,
    cursor_query,
    decode_cursor,
    encode_cursor,
    media,
    not_found,
    problems,
    request_body,
)

MAX_BODY = 50 * 1024 * 1024
CSV_MEDIA = ("text/csv", "application/csv", "text/plain")
JSON_MEDIA = ("application/json", "text/json")
Limit = Annotated[int, Query(ge=1, le=1000)]
KeyCursor = Annotated[str | None, cursor_query(str)]


class CsvResponse(Response):
    media_type = "text/csv"


def _media(request: Request) -> str:
    return (request.headers.get("content-type") or "application/json").split(";")[0].strip().lower()


def _invalid(errors: list[dict[str, Any]], what: str) -> Problem:
    first = errors[0]
    where = f"line {first['line']}, " if "line" in first else ""
    field = ".".join(str(x) for x in first["loc"])
    return Problem(422, "Unprocessable Content",
                   f"{what}: {len(errors)} error(s); first: {where}{field}: {first['msg']}",
                   code="validation_error", errors=errors)


async def body_of(request: Request) -> bytes:
    data = await request.body()
    if len(data) > MAX_BODY:
        raise Problem(413, "Content Too Large", f"Request body over {MAX_BODY} bytes", code="too_large")
    return data


async def parsed_upload(request: Request, from_csv: Callable[[bytes], Any], from_json: Callable[[bytes], Any],
                        rejected: str) -> Any:
    """An upload read by its media type (JSON through its pydantic model, CSV by the domain's reader):
    415 for another type, 422 problem+json naming line and field."""
    data = await body_of(request)
    media_type = _media(request)
    try:
        if media_type in CSV_MEDIA:
            upload = from_csv(data)
        elif media_type in JSON_MEDIA:
            upload = from_json(data)
        else:
            raise Problem(415, "Unsupported Media Type", "Send application/json or text/csv",
                          code="unsupported_media_type")
    except domain.UploadError as exc:
        raise Problem(422, "Unprocessable Content", exc.detail, code="unreadable_body", errors=exc.errors) from exc
    if upload.errors:
        raise _invalid(upload.errors, rejected)
    return upload


DIRECTORY_BODY = request_body(DirectoryCreate, (
    "The ENT directory as JSON, or as one CSV file (`Content-Type: text/csv`, `;` or `,`, UTF-8 or "
    "Windows-1252, a header line naming the columns in any order: `type` (teacher, staff, student, class, "
    "group), `id`, `last_name`, `first_name`, `birth_date` (YYYY-MM-DD or DD/MM/YYYY), `pronote_id`, "
    "`cas_id`, `name`; French aliases nom, prenom, date_naissance, idpn, idcas, libelle). Errors name the "
    "line and the column."))
PRONOTE_IDS_BODY = request_body(PronoteIdsCreate, (
    "The IdPN export as JSON, or as CSV (`Content-Type: text/csv`): one `pronote_id;ent_id` per line "
    "(`;` or `,`), a first line naming those columns being a header."))
UPLOAD_ERRORS = problems(400, 401, 404, 413, 415, 422)


def build_router(db: Database, settings: Settings, directories: ReconcilerStage,
                 wizard: ReconcilerStage) -> APIRouter:
    router = APIRouter()

    @router.put("/sites/{site}/establishments/{est}/directory", response_model=DirectoryUploadRead,
                summary="Upload the establishment's ENT directory", openapi_extra=DIRECTORY_BODY,
                responses=UPLOAD_ERRORS)
    async def put_directory(site: SiteId, est: KnownEstablishment, request: Request, _: SitePrincipal,
                            mode: Literal["replace", "merge"] = "replace") -> DirectoryUploadRead:
        """JSON `{"persons": [{"id", "kind" (teacher|staff|student), "last_name", "first_name",
        "birth_date"?, "pronote_id"?, "cas_id"?}], "classes": [{"id", "name"}], "groups": [{"id", "name"}]}`,
        or `text/csv` (one file, `type` column: teacher|staff|student|class|group; see
        services/reconciler/domain.py). `mode=replace` (default) replaces the whole directory, `merge` adds
        or updates the entries given by id. Validation errors: 422 problem+json naming line and field."""
        upload = await parsed_upload(request, domain.parse_directory_csv, schemas.parse_directory_json,
                                     "Directory rejected")
        return DirectoryUploadRead.model_validate(await directories.put_directory(site, est, upload, mode))

    @router.get("/sites/{site}/establishments/{est}/directory", response_model=DirectoryRead,
                summary="The stored ENT directory: counts and one page of a section",
                responses=problems(400, 401, 404, 422))
    async def get_directory(site: SiteId, est: KnownEstablishment, _: SitePrincipal,
                            section: Literal["persons", "classes", "groups"] = "persons",
                            kind: Literal["teacher", "staff", "student"] | None = None,
                            limit: Limit = 100, cursor: KeyCursor = None) -> DirectoryRead:
        """Persons by default (filter `kind`), ordered by id. 404 when none was uploaded."""
        after = decode_cursor(cursor, str)
        async with db.read() as conn:
            snap = await store.get_snapshot(conn, site, est)
            if snap is None:
                raise not_found("Directory")
            rows = await store.directory_page(conn, site, est, section, kind, after[0] if after else None, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        items: list[DirectoryPersonRead | DirectoryUnitRead]
        if section == "persons":
            items = [DirectoryPersonRead.model_validate({
                "id": r.id, "kind": r.kind, "last_name": r.last_name, "first_name": r.first_name,
                "birth_date": r.birth_date.isoformat() if r.birth_date else None, "pronote_id": r.pronote_id,
                "cas_id": r.cas_id}) for r in rows]
        else:
            items = [DirectoryUnitRead(id=r.id, name=r.name) for r in rows]
        return DirectoryRead.model_validate({
            "site": site, "establishment": est, "sha256": snap.sha256, "updated_at": iso(snap.updated_at),
            "counts": snap.counts, "section": section, "items": items,
            "next_cursor": encode_cursor(rows[-1].id) if more and rows else None})

    @router.post("/sites/{site}/establishments/{est}/pronote-ids", response_model=PronoteIdsUploadRead,
                 summary="Upload the IdPN export (PRONOTE ids ↔ ENT persons)", openapi_extra=PRONOTE_IDS_BODY,
                 responses=UPLOAD_ERRORS)
    async def post_pronote_ids(site: SiteId, est: KnownEstablishment, request: Request, _: SitePrincipal,
                               mode: Literal["complete", "partial"]) -> PronoteIdsUploadRead:
        """Seed 004: `mode=complete` at the start of the year replaces every association, `mode=partial`
        adds or updates (newcomers). JSON `[{"pronote_id", "ent_id"}]` or `text/csv` lines
        `pronote_id;ent_id` (optional header)."""
        upload = await parsed_upload(request, domain.parse_pronote_ids_csv, schemas.parse_pronote_ids_json,
                                     "PRONOTE ids rejected")
        return PronoteIdsUploadRead.model_validate(await directories.post_pronote_ids(site, est, upload, mode))

    @router.get("/imports/{import_id}/unreconciled", response_class=CsvResponse,
                summary="The people, classes or groups of the import not linked to the ENT directory",
                responses={200: media("`;`-separated, with a header", "text/csv"), **problems(401, 404, 410, 422)})
    async def unreconciled(import_id: str, who: CurrentPrincipal,
                           kind: Literal["teachers", "students", "classes", "groups"]) -> CsvResponse:
        """Persons `ident;last_name;first_name;birth_date;class;reason`, classes and groups
        `ident;name;reason`; reason not_found | ambiguous | no_directory."""
        async with db.read() as conn:
            rows = await store.results_of(conn, import_id)
        if not rows or not who.can_access(rows[0].site):
            raise not_found("Reconciliation")
        assert kind in KINDS
        await directories.record_access(access_event(who, "unreconciled.read", f"/imports/{import_id}/unreconciled"
                                                     f"?kind={kind}", service="reconciler", site=rows[0].site,
                                                     import_id=import_id))
        listed = await directories.unreconciled_rows(rows, kind)
        if listed is None:
            raise Problem(410, "Gone", domain.LIST_GONE[0].format(days=f"{settings.retention_lists_days:g}"),
                          code="list_gone", detail_en=domain.LIST_GONE[1].format(
                              days=f"{settings.retention_lists_days:g}"))
        name = f"unreconciled-{kind}-{import_id}.csv"
        return CsvResponse(domain.unreconciled_csv(kind, listed),
                           headers={"Content-Disposition": f'attachment; filename="{name}"'})

    def problem(exc: WizardError) -> Problem:
        titles = {404: "Not Found", 409: "Conflict", 422: "Unprocessable Content"}
        extra = {"errors": exc.errors} if exc.errors else {}
        return Problem(exc.status, titles.get(exc.status, "Error"), exc.detail, code=exc.code, **extra)

    async def preview_row(import_id: str, who: Principal) -> Any:
        row = await wizard.row(import_id)
        if row is None or not who.can_access(row.site):
            raise not_found("Preview")
        return row

    @router.get("/imports/{import_id}/preview", response_model=PreviewRead, response_model_exclude_unset=True,
                summary="The wizard's preview of a manual import", responses=problems(401, 404, 410, 422))
    async def preview(import_id: str, who: CurrentPrincipal) -> PreviewRead:
        """A manual import sent with `review=true`, paused at awaiting_selection: per establishment its
        subjects, classes, groups and courses with their state (known / new / deactivated: vs. the last
        manual import's selection), every teacher and student with its match or its reason and candidates
        (directory persons with the same normalised last name), the threshold figures, and the selection
        as it stands (`selection`, per establishment). `status`: awaiting | confirmed | cancelled."""
        row = await preview_row(import_id, who)
        if row.purged_at is not None:
            raise Problem(410, "Gone", domain.PREVIEW_GONE[0].format(days=f"{settings.retention_lists_days:g}"),
                          code="preview_gone",
                          detail_en=domain.PREVIEW_GONE[1].format(days=f"{settings.retention_lists_days:g}"))
        await wizard.record_access(access_event(who, "preview.read", f"/imports/{import_id}/preview",
                                                service="reconciler", site=row.site, import_id=import_id))
        return PreviewRead.model_validate({**row.preview, "import_id": row.import_id, "site": row.site,
                                           "status": row.status, "selection": row.selection,
                                           "updated_at": iso(row.updated_at)})

    @router.put("/imports/{import_id}/selection", response_model=SelectionRead,
                summary="Change the wizard's selection", responses=problems(400, 401, 404, 409, 413, 422))
    async def put_selection(import_id: str, who: CurrentPrincipal,
                            body: SelectionUpdate | None = None) -> SelectionRead:
        """Partial update: `{"subjects"|"classes"|"groups"|"courses": {ident: true|false}, "persons":
        {"teachers"|"students": {ident: {"decision": "accept"|"refuse"|"override"|"auto", "ent_id"?}}}}` (a
        site-wide import: `{"establishments": {est: {…}}}`). override = the ENT id the user chose; auto =
        forget a stored decision. 409 unless awaiting its selection; 422 naming each error."""
        row = await preview_row(import_id, who)
        patch = body.model_dump(exclude_none=True) if body is not None else {}
        try:
            selection = await wizard.put_selection(row, patch)
        except WizardError as exc:
            raise problem(exc) from exc
        return SelectionRead(import_id=import_id, status="awaiting", selection=selection)

    @router.post("/imports/{import_id}/confirm", status_code=202, response_model=ConfirmRead,
                 summary="Apply the wizard's selection and go on", responses=problems(401, 404, 409, 422))
    async def confirm(import_id: str, who: CurrentPrincipal) -> ConfirmRead:
        """Apply the selection (groups and memberships), persist it and the decided matches for the
        establishment, and send the import on to session generation with the selected courses. 409 when the
        import is not awaiting its selection (already confirmed, cancelled, or not a wizard import)."""
        row = await preview_row(import_id, who)
        try:
            return ConfirmRead.model_validate(await wizard.confirm(row))
        except WizardError as exc:
            raise problem(exc) from exc

    @router.get("/sites/{site}/establishments/{est}/groups", response_model=GroupList,
                response_model_exclude_unset=True, summary="The groups the imports created",
                responses=problems(400, 401, 404, 422))
    async def list_groups(site: SiteId, est: KnownEstablishment, _: SitePrincipal,
                          kind: Literal["class", "part", "group", "course"] | None = None,
                          include: Literal["members"] | None = None,
                          limit: Limit = 100, cursor: KeyCursor = None) -> GroupList:
        """Classes, parts of class, groups and courses, ordered by key, with `members` (count);
        `include=members` lists them (`{kind, id, file_ident, start, end}`: ENT ids of matched people, the
        file's entry/exit dates)."""
        after = decode_cursor(cursor, str)
        async with db.read() as conn:
            rows = await store.groups_page(conn, site, est, kind, after[0] if after else None, limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
            members = await store.members_of(conn, site, est, [r.key for r in rows])
        items = []
        for r in rows:
            item = GroupRead(key=r.key, kind=r.kind, ident=r.ident, name=r.name, parent=r.parent, ent_id=r.ent_id,
                             import_id=r.import_id, updated_at=iso(r.updated_at), members=len(members[r.key]))
            if include == "members":
                item.member_list = sorted(
                    (MemberRead(kind=m.person_kind, id=m.person_id, file_ident=m.file_ident,
                                start=m.start.isoformat() if m.start else None,
                                end=m.end.isoformat() if m.end else None) for m in members[r.key]),
                    key=lambda x: (x.kind, x.id, x.start or "", x.end or ""))
            items.append(item)
        return GroupList(site=site, establishment=est, items=items,
                         next_cursor=encode_cursor(rows[-1].key) if more and rows else None)

    return router
