"""Validator routes: the validation report of an import (extension of design.md §5)."""

from __future__ import annotations

from fastapi import APIRouter

from services.validator import store
from services.validator.schemas import ValidationReportRead
from shared.db import Database
from shared.deps import CurrentPrincipal
from shared.messages import iso
from shared.settings import Settings
from shared.web import not_found, problems


def build_router(db: Database, settings: Settings) -> APIRouter:
    router = APIRouter()

    @router.get("/imports/{import_id}/validation", response_model=ValidationReportRead,
                summary="What file validation found", responses=problems(401, 404, 422))
    async def validation_report(import_id: str, who: CurrentPrincipal) -> ValidationReportRead:
        """Software, format, encryption, counts, every problem (errors and warnings with their French and
        English messages), and the per-establishment parts of a cité scolaire file."""
        async with db.read() as conn:
            row = await store.get_report(conn, import_id)
        if row is None or not who.can_access(row.site):
            raise not_found("Validation report")
        return ValidationReportRead.model_validate({
            "import_id": row.import_id, "site": row.site, "ok": row.ok, "meta": row.meta, "counts": row.counts,
            "problems": row.problems, "timetables": row.timetables, "created_at": iso(row.created_at)})

    return router
