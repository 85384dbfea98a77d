"""Tables owned by the reconciler service."""

from __future__ import annotations

import sqlalchemy as sa

from shared.db import outbox_table, service_metadata, stage_runs_table

metadata = service_metadata("reconciler")
outbox = outbox_table(metadata)
runs = stage_runs_table(metadata)

# The ENT directory of each establishment (PUT …/directory): persons, then classes and groups.
persons = sa.Table(
    "directory_persons",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),  # the ENT's id
    sa.Column("kind", sa.String(16), nullable=False),  # teacher | staff | student
    sa.Column("last_name", sa.String(255), nullable=False),
    sa.Column("first_name", sa.String(255), nullable=False),
    sa.Column("birth_date", sa.Date, nullable=True),
    sa.Column("pronote_id", sa.String(128), nullable=True),
    sa.Column("cas_id", sa.String(128), nullable=True),
)

units = sa.Table(
    "directory_units",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),  # class | group
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
)

# The IdPN export (POST …/pronote-ids): PRONOTE id → ENT person, the first reconciliation rule.
pronote_ids = sa.Table(
    "directory_pronote_ids",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("pronote_id", sa.String(128), primary_key=True),
    sa.Column("ent_id", sa.String(128), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# The latest snapshot (blob sha256 of shared.reconcile.Directory JSON) of each establishment that has a
# directory; rewritten by every directory or IdPN upload and announced by a DirectoryUpdated event.
snapshots = sa.Table(
    "directory_snapshots",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("counts", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# The matching result of each import, per establishment: counts and the unmatched rows (for the CSV).
results = sa.Table(
    "reconciliation_results",
    metadata,
    sa.Column("import_id", sa.String(32), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False, index=True),
    sa.Column("snapshot_sha256", sa.String(64), nullable=True),  # None: no directory for the establishment
    sa.Column("counts", sa.JSON, nullable=False),
    sa.Column("unmatched", sa.JSON, nullable=False),  # {kind: [row, …]}
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
