"""Dropzone routes (design.md §5): sites, establishments, site tokens, deposit accounts, REST upload."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from pydantic import BaseModel, Field

from services.dropzone.handlers import Dropzone
from services.dropzone.store import accounts, establishments, sites, tokens
from shared.db import Database, as_utc
from shared.messages import Mode, utcnow
from shared.settings import Settings
from shared.web import (
    Principal,
    Problem,
    authenticate,
    issue_site_token,
    not_found,
    require_admin,
    require_site,
    token_hash,
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
UAI_PATTERN = r"^[0-9]{7}[A-Za-z]$"


class SiteIn(BaseModel):
    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=255)
    require_encryption: bool = False


class SitePatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    require_encryption: bool | None = None


class EstablishmentIn(BaseModel):
    uai: str = Field(pattern=UAI_PATTERN, description="UAI/RNE, e.g. 0490856P")
    name: str = Field(min_length=1, max_length=255)


class AccountIn(BaseModel):
    display_name: str | None = Field(default=None, max_length=255)
    first_name: str = Field(min_length=1, max_length=120)
    last_name: str = Field(min_length=1, max_length=120)
    notify: bool = True


class AccountPatch(BaseModel):
    notify: bool | None = None
    display_name: str | None = Field(default=None, max_length=255)


class TokenIn(BaseModel):
    label: str | None = Field(default=None, max_length=255)


def _iso(value: Any) -> str | None:
    v = as_utc(value)
    return v.isoformat().replace("+00:00", "Z") if v else None


def build_router(db: Database, dropzone: Dropzone, settings: Settings) -> APIRouter:
    router = APIRouter()

    def principal(request: Request) -> Principal:
        return authenticate(settings, request)

    def webdav_urls(site: str, ests: list[Any]) -> list[dict[str, str | None]]:
        base = settings.public_url.rstrip("/")
        urls: list[dict[str, str | None]] = [
            {"label": "Tous les établissements", "establishment": None, "url": f"{base}/webdav/{site}/"}]
        urls += [{"label": f"Etablissement {e.name}", "establishment": e.id, "url": f"{base}/webdav/{site}/{e.id}/"}
                 for e in ests]
        return urls

    async def site_view(site: str) -> dict[str, Any]:
        async with db.read() as conn:
            row = (await conn.execute(sa.select(sites).where(sites.c.id == site))).first()
            if row is None:
                raise not_found("Site")
            ests = (await conn.execute(sa.select(establishments).where(establishments.c.site == site)
                                       .order_by(establishments.c.id))).all()
            n_accounts = (await conn.execute(sa.select(sa.func.count()).select_from(accounts)
                                             .where(accounts.c.site == site))).scalar_one()
        return {"id": row.id, "name": row.name, "require_encryption": row.require_encryption,
                "created_at": _iso(row.created_at), "first_import_at": _iso(row.first_import_at),
                "automatic_import_available": row.first_import_at is not None,
                "establishments": [{"id": e.id, "uai": e.uai, "name": e.name} for e in ests],
                "accounts": n_accounts, "urls": webdav_urls(site, list(ests))}

    # --- sites ------------------------------------------------------------------------------------

    @router.post("/sites", status_code=201)
    async def create_site(body: SiteIn, request: Request) -> dict[str, Any]:
        require_admin(principal(request))
        async with db.transaction() as conn:
            if (await conn.execute(sa.select(sites.c.id).where(sites.c.id == body.id))).first():
                raise Problem(409, "Conflict", f"Site {body.id} already exists", code="site_exists")
            await conn.execute(sites.insert().values(id=body.id, name=body.name,
                                                     require_encryption=body.require_encryption,
                                                     created_at=utcnow()))
        return await site_view(body.id)

    @router.get("/sites/{site}")
    async def get_site(site: str, request: Request) -> dict[str, Any]:
        require_site(principal(request), site)
        return await site_view(site)

    @router.patch("/sites/{site}")
    async def patch_site(site: str, body: SitePatch, request: Request) -> dict[str, Any]:
        require_site(principal(request), site)
        values = body.model_dump(exclude_none=True)
        if values:
            async with db.transaction() as conn:
                result = await conn.execute(sites.update().where(sites.c.id == site).values(**values))
                if result.rowcount == 0:
                    raise not_found("Site")
        return await site_view(site)

    @router.put("/sites/{site}/establishments/{est}")
    async def put_establishment(site: str, est: str, body: EstablishmentIn, request: Request,
                                response: Response) -> dict[str, Any]:
        require_admin(principal(request))
        if not re.match(ID_PATTERN, est):
            raise Problem(422, "Unprocessable Content", "Invalid establishment id", code="invalid_id")
        uai = body.uai.upper()
        async with db.transaction() as conn:
            if (await conn.execute(sa.select(sites.c.id).where(sites.c.id == site))).first() is None:
                raise not_found("Site")
            clash = (await conn.execute(sa.select(establishments.c.id).where(
                establishments.c.site == site, establishments.c.uai == uai, establishments.c.id != est))).first()
            if clash:
                raise Problem(409, "Conflict", f"UAI {uai} already belongs to establishment {clash.id}",
                              code="uai_taken")
            key = (establishments.c.site == site) & (establishments.c.id == est)
            exists = (await conn.execute(sa.select(establishments.c.id).where(key))).first()
            if exists:
                await conn.execute(establishments.update().where(key).values(uai=uai, name=body.name))
            else:
                await conn.execute(establishments.insert().values(site=site, id=est, uai=uai, name=body.name))
                response.status_code = 201
        return {"id": est, "uai": uai, "name": body.name}

    @router.get("/sites/{site}/establishments")
    async def list_establishments(site: str, request: Request) -> dict[str, Any]:
        require_site(principal(request), site)
        view = await site_view(site)
        return {"items": view["establishments"], "next_cursor": None}

    @router.post("/sites/{site}/tokens", status_code=201)
    async def create_token(site: str, request: Request, body: TokenIn | None = None) -> dict[str, Any]:
        require_admin(principal(request))
        if await dropzone.site(site) is None:
            raise not_found("Site")
        token, token_id = issue_site_token(settings.effective_secret, site)
        async with db.transaction() as conn:
            await conn.execute(tokens.insert().values(id=token_id, site=site, token_hash=token_hash(token),
                                                      label=body.label if body else None, created_at=utcnow()))
        return {"id": token_id, "site": site, "token": token}

    # --- deposit accounts -------------------------------------------------------------------------

    def account_view(row: Any, site: str) -> dict[str, Any]:
        return {"login": row.login, "site": row.site, "display_name": row.display_name,
                "first_name": row.first_name, "last_name": row.last_name, "notify": row.notify,
                "created_at": _iso(row.created_at), "password_changed_at": _iso(row.password_changed_at),
                "locked": bool(row.locked_until and as_utc(row.locked_until) > utcnow()),
                "last_login_at": _iso(row.last_login_at)}

    async def with_urls(row: Any, site: str, password: str) -> dict[str, Any]:
        view = await site_view(site)
        return {**account_view(row, site), "password": password, "urls": view["urls"]}

    @router.post("/sites/{site}/accounts", status_code=201)
    async def create_account(site: str, body: AccountIn, request: Request) -> dict[str, Any]:
        require_site(principal(request), site)
        display = body.display_name or f"{body.last_name.upper()} {body.first_name}"
        row, password = await dropzone.create_account(site, display, body.first_name, body.last_name, body.notify)
        return await with_urls(row, site, password)

    @router.get("/sites/{site}/accounts")
    async def list_accounts(site: str, request: Request) -> dict[str, Any]:
        require_site(principal(request), site)
        if await dropzone.site(site) is None:
            raise not_found("Site")
        async with db.read() as conn:
            rows = (await conn.execute(sa.select(accounts).where(accounts.c.site == site)
                                       .order_by(accounts.c.created_at, accounts.c.login))).all()
        return {"items": [account_view(r, site) for r in rows], "next_cursor": None}

    @router.post("/sites/{site}/accounts/{login}/password")
    async def regenerate(site: str, login: str, request: Request) -> dict[str, Any]:
        require_site(principal(request), site)
        row, password = await dropzone.regenerate_password(site, login)
        return await with_urls(row, site, password)

    @router.patch("/sites/{site}/accounts/{login}")
    async def patch_account(site: str, login: str, body: AccountPatch, request: Request) -> dict[str, Any]:
        require_site(principal(request), site)
        values = body.model_dump(exclude_none=True)
        async with db.transaction() as conn:
            key = (accounts.c.site == site) & (accounts.c.login == login)
            if values:
                await conn.execute(accounts.update().where(key).values(**values))
            row = (await conn.execute(sa.select(accounts).where(key))).first()
        if row is None:
            raise not_found("Account")
        return account_view(row, site)

    @router.delete("/sites/{site}/accounts/{login}", status_code=204)
    async def delete_account(site: str, login: str, request: Request) -> Response:
        require_site(principal(request), site)
        async with db.transaction() as conn:
            result = await conn.execute(accounts.delete().where(accounts.c.site == site, accounts.c.login == login))
        if result.rowcount == 0:
            raise not_found("Account")
        return Response(status_code=204)

    # --- REST upload --------------------------------------------------------------------------------

    async def upload(site: str, target: str | None, request: Request, file: UploadFile, mode: str,
                     dry_run: bool, review: bool = False) -> dict[str, Any]:
        require_site(principal(request), site)
        if mode not in (Mode.AUTO.value, Mode.MANUAL.value):
            raise Problem(422, "Unprocessable Content", "mode is manual or auto", code="invalid_mode")
        name = Path(file.filename or "upload.xml").name
        tmp_dir = settings.data_dir / "uploads"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir)
        try:
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := await file.read(1024 * 1024):
                    size += len(chunk)
                    if size > settings.max_upload_bytes:
                        raise Problem(413, "Content Too Large",
                                      f"Fichier trop volumineux (plus de {settings.max_upload_mb} Mo).",
                                      code="too_large")
                    await asyncio.to_thread(out.write, chunk)
            if size == 0:
                raise Problem(422, "Unprocessable Content", "Le fichier déposé est vide.", code="empty_file")
            import_id = await dropzone.take_deposit(site, target, name, Path(tmp), source="rest", account=None,
                                                    mode=Mode(mode), dry_run=dry_run, review=review)
        finally:
            await asyncio.to_thread(Path(tmp).unlink, missing_ok=True)
        return {"import_id": import_id, "links": {"import": f"/api/v1/imports/{import_id}"}}

    @router.post("/sites/{site}/establishments/{est}/imports", status_code=202)
    async def upload_establishment(site: str, est: str, request: Request, file: UploadFile = File(...),
                                   mode: str = Form("manual"), dry_run: bool = Form(False),
                                   review: bool = Form(False)) -> dict[str, Any]:
        """`review=true` (manual imports): pause at awaiting_selection for the wizard (GET …/preview,
        PUT …/selection, POST …/confirm); default false: the default selection is confirmed at once."""
        return await upload(site, est, request, file, mode, dry_run, review)

    @router.post("/sites/{site}/deposits", status_code=202)
    async def upload_site(site: str, request: Request, file: UploadFile = File(...), mode: str = Form("manual"),
                          dry_run: bool = Form(False), review: bool = Form(False)) -> dict[str, Any]:
        """Extension: the REST twin of the « Tous les établissements » WebDAV URL (routed by UAI)."""
        return await upload(site, None, request, file, mode, dry_run, review)

    return router
