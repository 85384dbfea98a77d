"""Notifier tables: the import history, its steps, and the event log behind the SSE streams."""

from __future__ import annotations

import sqlalchemy as sa

from shared.db import outbox_table, service_metadata

metadata = service_metadata("notifier")

imports = sa.Table(
    "imports",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("establishment", sa.String(64), nullable=True),  # null: site-wide ("Tous")
    sa.Column("scope", sa.String(140), nullable=False),  # site/establishment or site/* (admission key)
    sa.Column("establishments", sa.JSON, nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("account", sa.String(120), nullable=True),
    sa.Column("file_name", sa.String(512), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("no_change", sa.Boolean, nullable=False, default=False),
    sa.Column("superseded_by", sa.String(32), nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("message_en", sa.Text, nullable=True),
    sa.Column("counts", sa.JSON, nullable=False),
    sa.Column("alerts", sa.JSON, nullable=False),
    sa.Column("artifacts", sa.JSON, nullable=False),
    # The stage queue this import waits in and since when (ops: oldest message age per stage).
    sa.Column("queued_stage", sa.String(16), nullable=True),
    sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_notifier_imports_site_created", "site", "created_at"),
    sa.Index("ix_notifier_imports_status", "status"),
    sa.Index("ix_notifier_imports_scope_status", "scope", "status"),
)

steps = sa.Table(
    "import_steps",
    metadata,
    sa.Column("import_id", sa.String(32), sa.ForeignKey("notifier.imports.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("stage", sa.String(16), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("message_en", sa.Text, nullable=True),
    sa.Column("counts", sa.JSON, nullable=True),
)

event_log = sa.Table(
    "import_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("import_id", sa.String(32), nullable=False),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Index("ix_notifier_import_events_import", "import_id", "id"),
    sa.Index("ix_notifier_import_events_site", "site", "id"),
)

outbox = outbox_table(metadata)
