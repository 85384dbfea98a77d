"""personal data (docs/privacy.md): retention marks (dropzone deposits, validator reports, reconciler results
and previews), the directory snapshot history, ident-only unreconciled entries with their model, the access log,
the sealed answers of person requests not read yet.

Revision ID: 0015a
Revises: 0008
Create Date: 2026-12-02 09:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015a'
down_revision = '0008'
branch_labels = None
depends_on = None


def _schema(name: str) -> str | None:
    # ALTER and CREATE INDEX are not schema-translated like CREATE TABLE: SQLite has no schemas.
    return None if op.get_bind().dialect.name == "sqlite" else name


def _instant(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def upgrade() -> None:
    op.add_column('deposits', _instant('ended_at'), schema=_schema('dropzone'))
    op.add_column('deposits', _instant('purged_at'), schema=_schema('dropzone'))
    op.add_column('validation_reports', sa.Column('status', sa.String(length=24), nullable=True),
                  schema=_schema('validator'))
    op.add_column('validation_reports', _instant('ended_at'), schema=_schema('validator'))
    op.add_column('validation_reports', _instant('purged_at'), schema=_schema('validator'))
    op.add_column('reconciliation_results', sa.Column('model_sha256', sa.String(length=64), nullable=True),
                  schema=_schema('reconciler'))
    op.add_column('reconciliation_results', _instant('purged_at'), schema=_schema('reconciler'))
    op.add_column('previews', _instant('purged_at'), schema=_schema('reconciler'))
    op.create_table('directory_snapshot_history',
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('superseded_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('site', 'establishment', 'sha256'),
    schema='reconciler'
    )
    op.create_table('access_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('actor_kind', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('resource', sa.String(length=512), nullable=False),
    sa.Column('site', sa.String(length=64), nullable=True),
    sa.Column('import_id', sa.String(length=32), nullable=True),
    sa.Column('service', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_id'),
    schema='notifier'
    )
    op.create_index('ix_notifier_access_log_site', 'access_log', ['site', 'id'], unique=False,
                    schema=_schema('notifier'))
    op.create_table('privacy_reply_blobs',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('request_id', sa.String(length=32), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sha256'),
    schema='notifier'
    )


def downgrade() -> None:
    op.drop_table('privacy_reply_blobs', schema='notifier')
    op.drop_index('ix_notifier_access_log_site', table_name='access_log', schema=_schema('notifier'))
    op.drop_table('access_log', schema='notifier')
    op.drop_table('directory_snapshot_history', schema='reconciler')
    op.drop_column('previews', 'purged_at', schema=_schema('reconciler'))
    op.drop_column('reconciliation_results', 'purged_at', schema=_schema('reconciler'))
    op.drop_column('reconciliation_results', 'model_sha256', schema=_schema('reconciler'))
    op.drop_column('validation_reports', 'purged_at', schema=_schema('validator'))
    op.drop_column('validation_reports', 'ended_at', schema=_schema('validator'))
    op.drop_column('validation_reports', 'status', schema=_schema('validator'))
    op.drop_column('deposits', 'purged_at', schema=_schema('dropzone'))
    op.drop_column('deposits', 'ended_at', schema=_schema('dropzone'))
