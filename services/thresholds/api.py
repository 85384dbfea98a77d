"""Routes of the thresholds service (design.md §5, §6): a site's controls, their audit trail, and the
closure periods an establishment sets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from sqlalchemy.ext.asyncio import AsyncConnection

from services.thresholds import domain, store
from services.thresholds.schemas import (
    AuditList,
    AuditRead,
    ClosureCreate,
    ClosureList,
    ClosureListCreate,
    ControlRead,
    StoredClosureList,
    ThresholdsRead,
    ThresholdsUpdate,
    ThresholdsUpdateRead,
    ThresholdsWarning,
)
from services.thresholds.store import establishment_is_locked, load_settings, site_is_locked
from shared.db import Database
from shared.deps import KnownEstablishment, SiteId, SitePrincipal
from shared.messages import iso, utcnow
from shared.settings import Settings
from shared.web import Principal, Problem, cursor_query, decode_cursor, encode_cursor, problems

EdtUser = Annotated[str | None, Header(alias="x-edt-user", description="Who, in the ENT, made the change "
                                                                       "(kept in the audit trail)")]


def actor_of(principal: Principal, user: str | None) -> str:
    who = "admin" if principal.admin else f"site-token:{principal.token_id}"
    user = (user or "").strip()[:64]
    return f"{who}:{user}" if user else who


def view(site: str, settings: dict[str, domain.Setting], emails: list[str], row: Any, locked: bool) -> ThresholdsRead:
    return ThresholdsRead(
        site=site,
        controls={c.name: ControlRead(**settings[c.name].as_dict(), label=c.label, label_en=c.label_en, kind=c.kind,
                                      default_value=c.default_value, default_blocking=c.default_blocking)
                  for c in domain.CONTROLS},
        notification_emails=emails,
        updated_at=iso(row.updated_at) if row else None,
        updated_by=row.updated_by if row else None,
        locked=locked,
    )


def merged(current: dict[str, domain.Setting], body: ThresholdsUpdate) -> dict[str, domain.Setting]:
    """The site's settings with the body's changes (a field not given keeps its setting)."""
    out = dict(current)
    for name, patch in body.patches().items():
        old = out[name]
        out[name] = domain.Setting(old.value if patch.value is None else patch.value,
                                   old.blocking if patch.blocking is None else patch.blocking,
                                   old.enabled if patch.enabled is None else patch.enabled)
    return out


def build_router(db: Database, settings: Settings) -> APIRouter:
    router = APIRouter()
    lock_ttl = settings.thresholds_lock_ttl_s

    async def locked_after_grace(is_locked: Callable[[AsyncConnection], Awaitable[bool]]) -> bool:
        """Still locked once an import that has just ended had the time to release it: the history shows
        `done` as the notifier commits, and the end reaches this service a moment later, so a client that
        saw `done` and writes at once is not refused. A running import's lock is answered 423 after the wait
        (`EDT_IMPORT_END_WAIT_S`); the transaction that writes checks the lock again."""
        deadline = time.monotonic() + settings.import_end_wait_s
        while True:
            async with db.read() as conn:
                if not await is_locked(conn):
                    return False
            if time.monotonic() >= deadline:
                return True
            await asyncio.sleep(0.05)  # polls the lock table: another process may release it

    @router.get("/sites/{site}/thresholds", response_model=ThresholdsRead, summary="The site's controls",
                responses=problems(401, 404, 422))
    async def get_thresholds(site: SiteId, _: SitePrincipal) -> ThresholdsRead:
        async with db.read() as conn:
            current, emails, row = await load_settings(conn, site)
            locked = await site_is_locked(conn, site, lock_ttl)
        return view(site, current, emails, row, locked)

    @router.put("/sites/{site}/thresholds", response_model=ThresholdsUpdateRead, summary="Change the site's controls",
                responses=problems(400, 401, 404, 413, 422, 423))
    async def put_thresholds(site: SiteId, body: ThresholdsUpdate, principal: SitePrincipal,
                             x_edt_user: EdtUser = None) -> ThresholdsUpdateRead:
        who = actor_of(principal, x_edt_user)
        locked = await locked_after_grace(lambda conn: site_is_locked(conn, site, lock_ttl))
        async with db.transaction() as conn:
            if locked or await site_is_locked(conn, site, lock_ttl):
                raise Problem(423, "Locked", "Un import de ce site est en cours : les seuils sont verrouillés "
                              "jusqu'à sa fin.", code="import_in_progress",
                              detail_en="An import of this site is running: thresholds are locked until it ends.")
            current, emails, _ = await load_settings(conn, site)
            new = merged(current, body)
            new_emails = emails if body.notification_emails is None else list(body.notification_emails)
            now = utcnow()
            changes = domain.setting_changes(current, new)
            if new_emails != emails:
                changes.append(("notification_emails", "addresses", emails, new_emails))
            await store.add_audit(conn, site, now, who, changes)
            row = await store.save_site_settings(db, conn, site, {k: v.as_dict() for k, v in new.items()},
                                                 new_emails, now, who)
        warnings = []
        if domain.weakens_closure_coherence(current, new):
            fr, en = domain.CLOSURE_COHERENCE_WARNING
            warnings.append(ThresholdsWarning(code="closure_coherence_not_blocking", message=fr, message_en=en))
        return ThresholdsUpdateRead(**view(site, new, new_emails, row, False).model_dump(), warnings=warnings)

    @router.get("/sites/{site}/establishments/{est}/closures", response_model=StoredClosureList,
                summary="The establishment's closure periods", responses=problems(401, 404, 422))
    async def get_closures(site: SiteId, est: KnownEstablishment, _: SitePrincipal) -> StoredClosureList:
        """Closure periods set by the establishment (holidays and closures the file does not carry)."""
        async with db.read() as conn:
            row = await store.get_closures(conn, site, est)
            locked = await establishment_is_locked(conn, site, est, lock_ttl)
        return StoredClosureList.model_validate({
            "items": list(row.periods) if row else [], "next_cursor": None, "locked": locked,
            "updated_at": iso(row.updated_at) if row else None, "updated_by": row.updated_by if row else None})

    @router.put("/sites/{site}/establishments/{est}/closures", response_model=ClosureList,
                summary="Replace the establishment's closure periods",
                responses=problems(400, 401, 404, 413, 422, 423))
    async def put_closures(site: SiteId, est: KnownEstablishment, body: list[ClosureCreate] | ClosureListCreate,
                           principal: SitePrincipal, x_edt_user: EdtUser = None) -> ClosureList:
        """`[{start, end, label}]`, or `{"items": [...]}`; 423 while an import of the establishment runs
        (design.md §5, §7)."""
        who = actor_of(principal, x_edt_user)
        periods = body.items if isinstance(body, ClosureListCreate) else body
        stored = [{"start": p.start.isoformat(), "end": p.end.isoformat(), "label": p.label}
                  for p in sorted(periods, key=lambda p: (p.start, p.end))]
        locked = await locked_after_grace(lambda conn: establishment_is_locked(conn, site, est, lock_ttl))
        async with db.transaction() as conn:
            if locked or await establishment_is_locked(conn, site, est, lock_ttl):
                raise Problem(423, "Locked", "Un import de cet établissement est en cours : ses périodes de "
                              "fermeture sont verrouillées jusqu'à sa fin.", code="import_in_progress",
                              detail_en="An import of this establishment is running: its closure periods are "
                              "locked until it ends.")
            await store.put_closures(db, conn, site, est, stored, utcnow(), who)
        return ClosureList.model_validate({"items": stored, "next_cursor": None, "locked": False})

    @router.get("/sites/{site}/thresholds/audit", response_model=AuditList,
                summary="Who changed which control, when (newest first)", responses=problems(400, 401, 404, 422))
    async def get_audit(site: SiteId, _: SitePrincipal, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                        cursor: Annotated[str | None, cursor_query(int)] = None) -> AuditList:
        after = decode_cursor(cursor, int)
        async with db.read() as conn:
            rows = await store.audit_page(conn, site, int(after[0]) if after else None, limit + 1)
        items = [AuditRead(id=r.id, at=iso(r.at), actor=r.actor, control=r.control, field=r.field, old=r.old,
                           new=r.new) for r in rows[:limit]]
        return AuditList(items=items, next_cursor=encode_cursor(rows[limit - 1].id) if len(rows) > limit else None)

    return router
