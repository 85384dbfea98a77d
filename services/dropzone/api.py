"""Dropzone routes (design.md §5): sites, establishments, site tokens, deposit accounts, REST upload."""

from __future__ import annotations

import asyncio
import os
import tempfile
from datetime import timedelta
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Response, UploadFile
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dropzone import store
from services.dropzone.davguard import lock_expires_in, lock_id_of
from services.dropzone.domain import DISK_FULL_EN, DISK_FULL_FR, DepositNotListed, is_disk_full
from services.dropzone.handlers import Dropzone
from services.dropzone.schemas import (
    AccountCreate,
    AccountCredentialsRead,
    AccountList,
    AccountRead,
    AccountUpdate,
    DepositMode,
    EstablishmentCreate,
    EstablishmentList,
    EstablishmentRead,
    ImportAccepted,
    SiteCreate,
    SiteRead,
    SiteUpdate,
    TokenCreate,
    TokenInfo,
    TokenList,
    TokenRead,
    WebdavLockList,
    WebdavLockRead,
    WebdavLocksReleased,
    WebdavUrl,
)
from shared.db import Database, as_utc
from shared.deps import AdminPrincipal, EstablishmentId, SiteId, SitePrincipal
from shared.messages import Mode, iso, utcnow
from shared.settings import Settings
from shared.web import Problem, issue_site_token, not_found, problems, token_hash, upload_too_large

UploadMode = Annotated[DepositMode, Form(description="`manual` (the default) or `auto`")]
DryRun = Annotated[bool, Form(description="Run every check and compute the bilan, write nothing")]
Review = Annotated[bool, Form(description="Manual import: pause at awaiting_selection for the wizard "
                                          "(GET …/preview, PUT …/selection, POST …/confirm); default false: "
                                          "the default selection is confirmed at once")]
DepositFile = Annotated[UploadFile, File(description="The export (XML, or a zip holding one)",
                                         json_schema_extra={"minLength": 1})]


def account_view(row: Any) -> AccountRead:
    return AccountRead(login=row.login, site=row.site, display_name=row.display_name, first_name=row.first_name,
                       last_name=row.last_name, notify=row.notify, created_at=iso(row.created_at),
                       password_changed_at=iso(row.password_changed_at),
                       locked=bool(row.locked_until and as_utc(row.locked_until) > utcnow()),
                       last_login_at=iso(row.last_login_at))


def build_router(db: Database, dropzone: Dropzone, settings: Settings) -> APIRouter:
    router = APIRouter()

    def webdav_urls(site: str, ests: list[Any]) -> list[WebdavUrl]:
        base = settings.public_url.rstrip("/")
        return [WebdavUrl(label="Tous les établissements", establishment=None, url=f"{base}/webdav/{site}/"),
                *(WebdavUrl(label=f"Etablissement {e.name}", establishment=e.id, url=f"{base}/webdav/{site}/{e.id}/")
                  for e in ests)]

    async def site_view(conn: AsyncConnection, site: str) -> SiteRead:
        row = await store.get_site(conn, site)
        if row is None:
            raise not_found("Site")
        ests = await store.site_establishments(conn, site)
        return SiteRead(id=row.id, name=row.name, require_encryption=row.require_encryption,
                        created_at=iso(row.created_at), first_import_at=iso(row.first_import_at),
                        automatic_import_available=row.first_import_at is not None,
                        establishments=[EstablishmentRead(id=e.id, uai=e.uai, name=e.name) for e in ests],
                        accounts=await store.count_accounts(conn, site), urls=webdav_urls(site, ests))

    async def read_site(site: str) -> SiteRead:
        async with db.read() as conn:
            return await site_view(conn, site)

    # --- sites ------------------------------------------------------------------------------------

    @router.post("/sites", status_code=201, response_model=SiteRead, summary="Create a site",
                 responses=problems(400, 401, 403, 409, 413, 422))
    async def create_site(body: SiteCreate, _: AdminPrincipal) -> SiteRead:
        async with db.transaction() as conn:
            if await store.site_exists(conn, body.id):
                raise Problem(409, "Conflict", f"Site {body.id} already exists", code="site_exists")
            await store.insert_site(conn, body.id, body.name, body.require_encryption, utcnow())
        return await read_site(body.id)

    @router.get("/sites/{site}", response_model=SiteRead, summary="Read a site",
                responses=problems(401, 404, 422))
    async def get_site(site: SiteId, _: SitePrincipal) -> SiteRead:
        return await read_site(site)

    @router.patch("/sites/{site}", response_model=SiteRead, summary="Change a site's settings",
                  responses=problems(400, 401, 404, 413, 422))
    async def patch_site(site: SiteId, body: SiteUpdate, _: SitePrincipal) -> SiteRead:
        values = body.model_dump(exclude_none=True)
        if values:
            async with db.transaction() as conn:
                if not await store.update_site(conn, site, values):
                    raise not_found("Site")
        return await read_site(site)

    @router.put("/sites/{site}/establishments/{est}", response_model=EstablishmentRead,
                summary="Create or replace an establishment",
                responses={201: {"model": EstablishmentRead, "description": "Created"},
                           **problems(400, 401, 403, 404, 409, 413, 422)})
    async def put_establishment(site: SiteId, est: EstablishmentId, body: EstablishmentCreate, _: AdminPrincipal,
                                response: Response) -> EstablishmentRead:
        uai = body.uai.upper()
        if await dropzone.put_establishment(site, est, uai, body.name):
            response.status_code = 201
        return EstablishmentRead(id=est, uai=uai, name=body.name)

    @router.get("/sites/{site}/establishments", response_model=EstablishmentList,
                summary="The site's establishments", responses=problems(401, 404, 422))
    async def list_establishments(site: SiteId, _: SitePrincipal) -> EstablishmentList:
        return EstablishmentList(items=(await read_site(site)).establishments, next_cursor=None)

    def token_info(row: Any) -> dict[str, Any]:
        expires = as_utc(row.expires_at)
        return {"id": row.id, "site": row.site, "label": row.label, "created_at": iso(row.created_at),
                "expires_at": iso(expires) if expires else None, "expired": bool(expires and expires <= utcnow())}

    @router.post("/sites/{site}/tokens", status_code=201, response_model=TokenRead,
                 summary="Issue a site token for the ENT front-end", responses=problems(400, 401, 403, 404, 413, 422))
    async def create_token(site: SiteId, _: AdminPrincipal, body: TokenCreate | None = None) -> TokenRead:
        """The token is shown once (only its hash is stored); its expiry (`expires_in_s`) is signed into it."""
        now = utcnow()
        expires_at = now + timedelta(seconds=body.expires_in_s) if body and body.expires_in_s else None
        token, token_id = issue_site_token(settings.effective_secret, site, expires_at)
        async with db.transaction() as conn:
            if not await store.site_exists(conn, site):
                raise not_found("Site")
            row = await store.insert_token(conn, token_id, site, token_hash(token), body.label if body else None,
                                           now, expires_at)
        return TokenRead(**token_info(row), token=token)

    @router.get("/sites/{site}/tokens", response_model=TokenList, summary="The site's tokens (never their secret)",
                responses=problems(401, 404, 422))
    async def list_tokens(site: SiteId, _: SitePrincipal) -> TokenList:
        async with db.read() as conn:
            if not await store.site_exists(conn, site):
                raise not_found("Site")
            rows = await store.site_tokens(conn, site)
        return TokenList(items=[TokenInfo(**token_info(r)) for r in rows], next_cursor=None)

    @router.delete("/sites/{site}/tokens/{token_id}", status_code=204, response_class=Response,
                   summary="Revoke a site token, at once in every service", responses=problems(401, 404, 422))
    async def revoke_token(site: SiteId, token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")],
                           _: SitePrincipal) -> Response:
        """Answered once every service has recorded the revocation: the very next request with the token
        is refused (401) wherever it goes. A token may revoke itself."""
        missing = await dropzone.revoke_token(site, token_id)
        headers = {"X-Revocation-Pending": ", ".join(sorted(missing))} if missing else None
        return Response(status_code=204, headers=headers)

    # --- deposit accounts -------------------------------------------------------------------------

    async def with_credentials(row: Any, site: str, password: str) -> AccountCredentialsRead:
        view = await read_site(site)
        return AccountCredentialsRead(**account_view(row).model_dump(), password=password, urls=view.urls)

    @router.post("/sites/{site}/accounts", status_code=201, response_model=AccountCredentialsRead,
                 summary="Create a deposit account (its password is shown once)",
                 responses=problems(400, 401, 404, 409, 413, 422))
    async def create_account(site: SiteId, body: AccountCreate, _: SitePrincipal) -> AccountCredentialsRead:
        display = body.display_name or f"{body.last_name.upper()} {body.first_name}"
        row, password = await dropzone.create_account(site, display, body.first_name, body.last_name, body.notify)
        return await with_credentials(row, site, password)

    @router.get("/sites/{site}/accounts", response_model=AccountList, summary="The site's deposit accounts",
                responses=problems(401, 404, 422))
    async def list_accounts(site: SiteId, _: SitePrincipal) -> AccountList:
        async with db.read() as conn:
            if not await store.site_exists(conn, site):
                raise not_found("Site")
            rows = await store.site_accounts(conn, site)
        return AccountList(items=[account_view(r) for r in rows], next_cursor=None)

    @router.post("/sites/{site}/accounts/{login}/password", response_model=AccountCredentialsRead,
                 summary="Regenerate a deposit account's password (unlocks it)", responses=problems(401, 404, 422))
    async def regenerate(site: SiteId, login: str, _: SitePrincipal) -> AccountCredentialsRead:
        row, password = await dropzone.regenerate_password(site, login)
        return await with_credentials(row, site, password)

    @router.patch("/sites/{site}/accounts/{login}", response_model=AccountRead,
                  summary="Change a deposit account (notifications, display name)",
                  responses=problems(400, 401, 404, 413, 422))
    async def patch_account(site: SiteId, login: str, body: AccountUpdate, _: SitePrincipal) -> AccountRead:
        async with db.transaction() as conn:
            row = await store.update_account(conn, site, login, body.model_dump(exclude_none=True))
        if row is None:
            raise not_found("Account")
        return account_view(row)

    @router.delete("/sites/{site}/accounts/{login}", status_code=204, response_class=Response,
                   summary="Delete a deposit account", responses=problems(401, 404, 422))
    async def delete_account(site: SiteId, login: str, _: SitePrincipal) -> Response:
        """Its WebDAV locks are released with it."""
        if not await dropzone.delete_account(site, login):
            raise not_found("Account")
        return Response(status_code=204)

    # --- WebDAV locks -------------------------------------------------------------------------------

    async def existing_site(site: str) -> None:
        async with db.read() as conn:
            if not await store.site_exists(conn, site):
                raise not_found("Site")

    @router.get("/sites/{site}/webdav-locks", response_model=WebdavLockList,
                summary="The WebDAV locks held in the site's folder", responses=problems(401, 404, 422))
    async def list_webdav_locks(site: SiteId, _: SitePrincipal) -> WebdavLockList:
        """Locks last `EDT_WEBDAV_LOCK_TIMEOUT_S` at most (renewable by their client) and live in the
        dropzone's memory: a restart clears them."""
        await existing_site(site)
        now = utcnow()
        items = [WebdavLockRead(id=lock_id_of(lock), path=f"/webdav{lock['root']}", account=str(lock["principal"]),
                                scope=str(lock["scope"]), depth=str(lock["depth"]),
                                expires_at=iso(now + timedelta(seconds=lock_expires_in(lock))),
                                expires_in_s=int(lock_expires_in(lock)))
                 for lock in dropzone.locks.site_locks(site)]
        return WebdavLockList(items=items, next_cursor=None)

    @router.delete("/sites/{site}/webdav-locks", response_model=WebdavLocksReleased,
                   summary="Release every WebDAV lock of the site's folder", responses=problems(401, 404, 422))
    async def clear_webdav_locks(site: SiteId, _: SitePrincipal) -> WebdavLocksReleased:
        """For a client that crashed holding locks: its files can be deposited again at once."""
        await existing_site(site)
        return WebdavLocksReleased(released=dropzone.locks.release_site(site))

    @router.delete("/sites/{site}/webdav-locks/{lock_id}", status_code=204, response_class=Response,
                   summary="Release one WebDAV lock", responses=problems(401, 404, 422))
    async def release_webdav_lock(site: SiteId, lock_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")],
                                  _: SitePrincipal) -> Response:
        await existing_site(site)
        if not dropzone.locks.release_site(site, lock_id):
            raise not_found("Lock")
        return Response(status_code=204)

    # --- REST upload --------------------------------------------------------------------------------

    async def upload(site: str, target: str | None, file: UploadFile, mode: DepositMode, dry_run: bool, review: bool,
                     response: Response) -> ImportAccepted:
        name = FilePath(file.filename or "upload.xml").name
        tmp_dir = settings.data_dir / "uploads"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir)
        try:
            size = 0
            with os.fdopen(fd, "wb") as out, dropzone.blobs.keyring.writer(out) as sealed:  # never in clear on disk
                while chunk := await file.read(1024 * 1024):
                    size += len(chunk)
                    if size > settings.max_upload_bytes:
                        raise upload_too_large(settings.max_upload_bytes)
                    await asyncio.to_thread(sealed.write, chunk)
            if size == 0:
                raise Problem(422, "Unprocessable Content", "Le fichier déposé est vide.", code="empty_file")
            import_id = await dropzone.take_deposit(site, target, name, FilePath(tmp), source="rest", account=None,
                                                    mode=Mode(mode.value), dry_run=dry_run, review=review)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise Problem(507, "Insufficient Storage", DISK_FULL_FR, code="insufficient_storage",
                          detail_en=DISK_FULL_EN) from exc
        except DepositNotListed as exc:
            raise Problem(504, "Gateway Timeout", exc.fr, code="deposit_not_listed", detail_en=exc.en) from None
        finally:
            await asyncio.to_thread(FilePath(tmp).unlink, missing_ok=True)
        link = f"/api/v1/imports/{import_id}"
        response.headers["Location"] = link
        return ImportAccepted.model_validate({"import_id": import_id, "links": {"import": link}})

    accepted = {202: {"description": "Recorded: the import is readable at `Location` at once",
                      "headers": {"Location": {"description": "The import", "schema": {"type": "string"}}}},
                **problems(400, 401, 404, 413, 422, 504, 507)}

    @router.post("/sites/{site}/establishments/{est}/imports", status_code=202, response_model=ImportAccepted,
                 summary="Upload an export for an establishment", responses=accepted)
    async def upload_establishment(site: SiteId, est: EstablishmentId, _: SitePrincipal, file: DepositFile,
                                   response: Response, mode: UploadMode = DepositMode.MANUAL, dry_run: DryRun = False,
                                   review: Review = False) -> ImportAccepted:
        return await upload(site, est, file, mode, dry_run, review, response)

    @router.post("/sites/{site}/deposits", status_code=202, response_model=ImportAccepted,
                 summary="Upload an export for the whole site (routed by UAI)", responses=accepted)
    async def upload_site(site: SiteId, _: SitePrincipal, file: DepositFile, response: Response,
                          mode: UploadMode = DepositMode.MANUAL, dry_run: DryRun = False,
                          review: Review = False) -> ImportAccepted:
        """Extension: the REST twin of the « Tous les établissements » WebDAV URL."""
        return await upload(site, None, file, mode, dry_run, review, response)

    return router
