"""Tables owned by the validator service, and the report route's query."""

from __future__ import annotations

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
)


async def get_report(conn: AsyncConnection, import_id: str) -> Any:
    return (await conn.execute(sa.select(reports).where(reports.c.import_id == import_id))).first()
