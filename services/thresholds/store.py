"""Tables owned by the thresholds service, and the settings routes' queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import Database, outbox_table, service_metadata, stage_runs_table, upsert

metadata = service_metadata("thresholds")
outbox = outbox_table(metadata)
runs = stage_runs_table(metadata)

# The 12+2 controls of a site (design.md §6): {control: {value, blocking, enabled}}; missing = defaults.
site_settings = sa.Table(
    "threshold_settings",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("controls", sa.JSON, nullable=False),
    sa.Column("notification_emails", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(128), nullable=False),
)

# Every change of a setting: who, when, old → new (one row per changed field).
audit = sa.Table(
    "threshold_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site", sa.String(64), nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("control", sa.String(64), nullable=False),
    sa.Column("field", sa.String(32), nullable=False),
    sa.Column("old", sa.JSON, nullable=True),
    sa.Column("new", sa.JSON, nullable=True),
)

# The canonical model (blob sha256) each import brought for each establishment; `integrated_at` is set
# when its `import.history.done` arrives: the baseline of an establishment is its latest integrated row.
models = sa.Table(
    "threshold_models",
    metadata,
    sa.Column("import_id", sa.String(32), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("mode", sa.String(8), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("integrated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_threshold_models_baseline", "establishment", "integrated_at"),
)

# Terminal lifecycle events seen (import.history.*): integrated manual imports for the automatic-import
# precondition, and "has the previous import's event arrived yet".
lifecycle = sa.Table(
    "threshold_lifecycle",
    metadata,
    sa.Column("import_id", sa.String(32), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False, index=True),
    sa.Column("establishment", sa.String(64), nullable=True),
    sa.Column("establishments", sa.JSON, nullable=False),
    sa.Column("mode", sa.String(8), nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("no_change", sa.Boolean, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# Imports of a site between their first stage event and their terminal lifecycle event: settings are
# locked (423) meanwhile (design.md §5).
active = sa.Table(
    "threshold_active_imports",
    metadata,
    sa.Column("import_id", sa.String(32), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False, index=True),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("establishment", sa.String(64), nullable=True),  # null: a site-wide import
)

# Closure periods an establishment sets through the API (design.md §5), beside the file's holiday weeks.
closures = sa.Table(
    "threshold_closures",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("periods", sa.JSON, nullable=False),  # [{"start": "YYYY-MM-DD", "end": …, "label": …}]
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(255), nullable=False),
)

# E-mails to send (an outbox for SMTP): written in the stage's transaction, sent after commit.
mails = sa.Table(
    "threshold_mails",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("import_id", sa.String(32), nullable=False, index=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("recipients", sa.JSON, nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
)

# The latest ENT directory snapshot of each establishment (DirectoryUpdated events from the reconciler,
# newest `at` wins): the unreconciled controls load it from the blob store. No row = "not computed".
directories = sa.Table(
    "threshold_directories",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# Barrier markers the stage sends through its directory queue: a row = every directory event queued
# before the marker has been applied. Deleted by the stage once seen.
directory_barriers = sa.Table(
    "threshold_directory_barriers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
)


# --- queries of the settings routes (each takes the caller's connection) ------------------------------


async def get_site_settings(conn: AsyncConnection, site: str) -> Any:
    return (await conn.execute(sa.select(site_settings).where(site_settings.c.site == site))).first()


async def save_site_settings(db: Database, conn: AsyncConnection, site: str, controls: dict[str, Any],
                             emails: list[str], at: datetime, by: str) -> Any:
    """Write a site's settings; the stored row."""
    await conn.execute(upsert(db, site_settings, {
        "site": site, "controls": controls, "notification_emails": emails, "updated_at": at, "updated_by": by},
        ["site"], ["controls", "notification_emails", "updated_at", "updated_by"]))
    return (await conn.execute(sa.select(site_settings).where(site_settings.c.site == site))).one()


async def add_audit(conn: AsyncConnection, site: str, at: datetime, actor: str,
                    changes: list[tuple[str, str, Any, Any]]) -> None:
    """One audit row per (control, field, old, new) changed."""
    if changes:
        await conn.execute(audit.insert(), [{"site": site, "at": at, "actor": actor, "control": control,
                                             "field": field, "old": old, "new": new}
                                            for control, field, old, new in changes])


async def audit_page(conn: AsyncConnection, site: str, before_id: int | None, limit: int) -> list[Any]:
    """The site's audit rows, newest first, older than `before_id`."""
    query = sa.select(audit).where(audit.c.site == site)
    if before_id is not None:
        query = query.where(audit.c.id < before_id)
    return list((await conn.execute(query.order_by(audit.c.id.desc()).limit(limit))).all())


async def get_closures(conn: AsyncConnection, site: str, est: str) -> Any:
    return (await conn.execute(sa.select(closures).where(closures.c.site == site,
                                                         closures.c.establishment == est))).first()


async def put_closures(db: Database, conn: AsyncConnection, site: str, est: str, periods: list[dict[str, str]],
                       at: datetime, by: str) -> None:
    await conn.execute(upsert(db, closures, {"site": site, "establishment": est, "periods": periods,
                                             "updated_at": at, "updated_by": by},
                              ["site", "establishment"], ["periods", "updated_at", "updated_by"]))
