"""Tables owned by the validator service, and the report route's query."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import outbox_table, revoked_tokens_table, service_metadata, stage_aborts_table, stage_runs_table

metadata = service_metadata("validator")
outbox = outbox_table(metadata)
revoked_tokens = revoked_tokens_table(metadata)
runs = stage_runs_table(metadata)
aborts = stage_aborts_table(metadata)

# One validation report per import: what was found, what was wrong, where the canonical model is.
reports = sa.Table(
    "validation_reports",
    metadata,
    sa.Column("import_id", sa.String(32), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("problems", sa.JSON, nullable=False),
    sa.Column("meta", sa.JSON, nullable=False),
    sa.Column("counts", sa.JSON, nullable=False),
    sa.Column("timetable_sha256", sa.String(64), nullable=True),
    sa.Column("timetables", sa.JSON, nullable=False),  # establishment id → sha256 of its part
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Retention (docs/privacy.md): how the import ended (lifecycle event) and when its models were let go.
    sa.Column("status", sa.String(24), nullable=True),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
)


async def get_report(conn: AsyncConnection, import_id: str) -> Any:
    return (await conn.execute(sa.select(reports).where(reports.c.import_id == import_id))).first()


# --- retention ----------------------------------------------------------------------------------------


async def end_report(conn: AsyncConnection, import_id: str, status: str, at: datetime) -> None:
    await conn.execute(reports.update().where(reports.c.import_id == import_id, reports.c.ended_at.is_(None))
                       .values(status=status, ended_at=at))


async def kept_reports(conn: AsyncConnection) -> list[Any]:
    """Every report whose models are still kept: what retention decides on."""
    return list((await conn.execute(sa.select(
        reports.c.import_id, reports.c.site, reports.c.status, reports.c.ended_at, reports.c.timetable_sha256,
        reports.c.timetables).where(reports.c.purged_at.is_(None), reports.c.timetable_sha256.is_not(None)))).all())


async def mark_purged(conn: AsyncConnection, import_ids: list[str], at: datetime) -> None:
    for i in range(0, len(import_ids), 500):
        await conn.execute(reports.update().where(reports.c.import_id.in_(import_ids[i:i + 500]))
                           .values(purged_at=at))


async def record_report(conn: AsyncConnection, import_id: str, site: str, found: dict[str, Any],
                        timetables: dict[str, str], at: datetime) -> None:
    """The validation report of an import (`GET /imports/{id}/validation`) and the models it produced."""
    await conn.execute(reports.insert().values(
        import_id=import_id, site=site, ok=not found["errors"], problems=found["errors"] + found["warnings"],
        meta=found["meta"], counts=found["counts"], timetable_sha256=found["timetable_sha256"],
        timetables=timetables, created_at=at))
