"""Routes of the thresholds service (design.md §5, §6): a site's controls, their audit trail, and the
closure periods an establishment sets."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.thresholds import domain
from services.thresholds.store import (
    audit,
    closures,
    establishment_is_locked,
    load_settings,
    site_is_locked,
    site_settings,
)
from shared.db import Database, as_utc, upsert
from shared.messages import utcnow
from shared.settings import Settings
from shared.web import Principal, Problem, authenticate, decode_cursor, encode_cursor, require_site

EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
MAX_EMAILS = 20


class ControlIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: int | None = Field(default=None, ge=0, le=100)
    blocking: bool | None = None
    enabled: bool | None = None


class ThresholdsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    controls: dict[str, ControlIn] = Field(default_factory=dict)
    notification_emails: list[str] | None = None


def _iso(value: Any) -> str | None:
    v = as_utc(value)
    return v.isoformat().replace("+00:00", "Z") if v else None


def actor_of(principal: Principal, request: Request) -> str:
    who = "admin" if principal.admin else f"site-token:{principal.token_id}"
    user = (request.headers.get("x-edt-user") or "").strip()[:64]
    return f"{who}:{user}" if user else who


def view(site: str, settings: dict[str, domain.Setting], emails: list[str], row: Any, locked: bool) -> dict[str, Any]:
    return {
        "site": site,
        "controls": {c.name: {**settings[c.name].as_dict(), "label": c.label, "label_en": c.label_en, "kind": c.kind,
                              "default_value": c.default_value, "default_blocking": c.default_blocking}
                     for c in domain.CONTROLS},
        "notification_emails": emails,
        "updated_at": _iso(row.updated_at) if row else None,
        "updated_by": row.updated_by if row else None,
        "locked": locked,
    }


def merged(current: dict[str, domain.Setting], body: ThresholdsIn) -> dict[str, domain.Setting]:
    """The new settings, or a 422 problem listing every invalid field."""
    errors: list[dict[str, Any]] = []
    out = dict(current)
    for name, patch in body.controls.items():
        spec = domain.SPECS.get(name)
        if spec is None:
            errors.append({"loc": ["body", "controls", name], "msg": "unknown control", "type": "unknown_control"})
            continue
        if spec.kind == domain.CHECK and patch.value is not None:
            errors.append({"loc": ["body", "controls", name, "value"], "msg": "this control has no value (on/off)",
                           "type": "value_not_allowed"})
            continue
        if spec.kind == domain.PERCENT and patch.enabled is False:
            errors.append({"loc": ["body", "controls", name, "enabled"],
                           "msg": "percentage controls cannot be disabled; untick blocking instead",
                           "type": "not_allowed"})
            continue
        old = out[name]
        out[name] = domain.Setting(old.value if patch.value is None else patch.value,
                                   old.blocking if patch.blocking is None else patch.blocking,
                                   old.enabled if patch.enabled is None else patch.enabled)
    for i, email in enumerate(body.notification_emails or []):
        if not EMAIL.match(email):
            errors.append({"loc": ["body", "notification_emails", i], "msg": "not an e-mail address",
                           "type": "email"})
    if body.notification_emails is not None and len(body.notification_emails) > MAX_EMAILS:
        errors.append({"loc": ["body", "notification_emails"], "msg": f"at most {MAX_EMAILS} addresses",
                       "type": "too_long"})
    if errors:
        raise Problem(422, "Unprocessable Content", "Invalid thresholds", code="validation_error", errors=errors)
    return out


class ClosureIn(BaseModel):
    start: date
    end: date
    label: str = Field(default="", max_length=255)

    @model_validator(mode="after")
    def _ordered(self) -> ClosureIn:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


class ClosuresIn(BaseModel):
    items: list[ClosureIn] = Field(max_length=500)


def build_router(db: Database, settings: Settings) -> APIRouter:
    router = APIRouter()

    def principal(request: Request, site: str) -> Principal:
        p = authenticate(settings, request)
        require_site(p, site)
        return p

    @router.get("/sites/{site}/thresholds")
    async def get_thresholds(site: str, request: Request) -> dict[str, Any]:
        principal(request, site)
        async with db.read() as conn:
            current, emails, row = await load_settings(conn, site)
            locked = await site_is_locked(conn, site, settings.thresholds_lock_ttl_s)
        return view(site, current, emails, row, locked)

    @router.put("/sites/{site}/thresholds")
    async def put_thresholds(site: str, body: ThresholdsIn, request: Request) -> dict[str, Any]:
        who = actor_of(principal(request, site), request)
        async with db.transaction() as conn:
            if await site_is_locked(conn, site, settings.thresholds_lock_ttl_s):
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
            for control, field_name, old, value in changes:
                await conn.execute(audit.insert().values(site=site, at=now, actor=who, control=control,
                                                         field=field_name, old=old, new=value))
            await conn.execute(upsert(db, site_settings, {
                "site": site, "controls": {k: v.as_dict() for k, v in new.items()},
                "notification_emails": new_emails, "updated_at": now, "updated_by": who},
                ["site"], ["controls", "notification_emails", "updated_at", "updated_by"]))
            row = (await conn.execute(sa.select(site_settings).where(site_settings.c.site == site))).one()
        out = view(site, new, new_emails, row, False)
        out["warnings"] = []
        if domain.weakens_closure_coherence(current, new):
            fr, en = domain.CLOSURE_COHERENCE_WARNING
            out["warnings"].append({"code": "closure_coherence_not_blocking", "message": fr, "message_en": en})
        return out

    @router.get("/sites/{site}/establishments/{est}/closures")
    async def get_closures(site: str, est: str, request: Request) -> dict[str, Any]:
        """Closure periods set by the establishment (holidays and closures the file does not carry)."""
        principal(request, site)
        async with db.read() as conn:
            row = (await conn.execute(sa.select(closures).where(closures.c.site == site,
                                                                closures.c.establishment == est))).first()
            locked = await establishment_is_locked(conn, site, est, settings.thresholds_lock_ttl_s)
        return {"items": list(row.periods) if row else [], "next_cursor": None, "locked": locked,
                "updated_at": _iso(row.updated_at) if row else None, "updated_by": row.updated_by if row else None}

    @router.put("/sites/{site}/establishments/{est}/closures")
    async def put_closures(site: str, est: str, body: list[ClosureIn] | ClosuresIn,
                           request: Request) -> dict[str, Any]:
        """Replace the establishment's closure periods (`[{start, end, label}]`, or `{"items": [...]}`);
        423 while an import of the establishment runs (design.md §5, §7)."""
        who = actor_of(principal(request, site), request)
        periods = body.items if isinstance(body, ClosuresIn) else body
        stored = [{"start": p.start.isoformat(), "end": p.end.isoformat(), "label": p.label}
                  for p in sorted(periods, key=lambda p: (p.start, p.end))]
        async with db.transaction() as conn:
            if await establishment_is_locked(conn, site, est, settings.thresholds_lock_ttl_s):
                raise Problem(423, "Locked", "Un import de cet établissement est en cours : ses périodes de "
                              "fermeture sont verrouillées jusqu'à sa fin.", code="import_in_progress",
                              detail_en="An import of this establishment is running: its closure periods are "
                              "locked until it ends.")
            await conn.execute(upsert(db, closures, {"site": site, "establishment": est, "periods": stored,
                                                     "updated_at": utcnow(), "updated_by": who},
                                      ["site", "establishment"], ["periods", "updated_at", "updated_by"]))
        return {"items": stored, "next_cursor": None, "locked": False}

    @router.get("/sites/{site}/thresholds/audit")
    async def get_audit(site: str, request: Request, limit: int = Query(50, ge=1, le=500),
                        cursor: str | None = None) -> dict[str, Any]:
        principal(request, site)
        after = decode_cursor(cursor)
        query = sa.select(audit).where(audit.c.site == site)
        if after:
            query = query.where(audit.c.id < int(after[0]))
        async with db.read() as conn:
            rows = (await conn.execute(query.order_by(audit.c.id.desc()).limit(limit + 1))).all()
        items = [{"id": r.id, "at": _iso(r.at), "actor": r.actor, "control": r.control, "field": r.field,
                  "old": r.old, "new": r.new} for r in rows[:limit]]
        return {"items": items, "next_cursor": encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None}

    return router
