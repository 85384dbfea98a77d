"""Validator routes: the validation report of an import (extension of design.md §5)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request

from services.validator.store import reports
from shared.db import Database, as_utc
from shared.settings import Settings
from shared.web import authenticate, not_found


def build_router(db: Database, settings: Settings) -> APIRouter:
    router = APIRouter()

    @router.get("/imports/{import_id}/validation")
    async def validation_report(import_id: str, request: Request) -> dict[str, Any]:
        """What file validation found: software, format, encryption, counts, every problem (errors and
        warnings with their French and English messages), and the per-establishment parts of a cité
        scolaire file."""
        who = authenticate(settings, request)
        async with db.read() as conn:
            row = (await conn.execute(sa.select(reports).where(reports.c.import_id == import_id))).first()
        if row is None or not who.can_access(row.site):
            raise not_found("Validation report")
        return {"import_id": row.import_id, "site": row.site, "ok": row.ok, "meta": row.meta,
                "counts": row.counts, "problems": row.problems, "timetables": row.timetables,
                "created_at": as_utc(row.created_at).isoformat().replace("+00:00", "Z")}

    return router
