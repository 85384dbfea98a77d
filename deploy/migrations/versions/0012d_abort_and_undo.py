"""Abort and undo: each pipeline stage's recorded aborts (<service>_stage_aborts), and the reconciler's
last writes of groups and memberships per establishment with what undoes each (reconciler_group_changes).

Revision ID: 0012d
Revises: 0012c
Create Date: 2026-12-02 01:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012d'
down_revision = '0012c'
branch_labels = None
depends_on = None

STAGES = ('validator', 'thresholds', 'reconciler', 'scheduler')


def _schema(name: str) -> str | None:
    # CREATE INDEX is not schema-translated like CREATE TABLE: SQLite has no schemas.
    return None if op.get_bind().dialect.name == "sqlite" else name


def upgrade() -> None:
    for service in STAGES:
        op.create_table(
            f'{service}_stage_aborts',
            sa.Column('import_id', sa.String(length=32), nullable=False),
            sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint('import_id'),
            schema=service,
        )
    op.create_table(
        'reconciler_group_changes',
        sa.Column('import_id', sa.String(length=32), nullable=False),
        sa.Column('establishment', sa.String(length=64), nullable=False),
        sa.Column('site', sa.String(length=64), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('inverse', sa.JSON(), nullable=False),
        sa.Column('kept', sa.JSON(), nullable=False),
        sa.Column('previous_kept', sa.JSON(), nullable=True),
        sa.Column('reverted_by', sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint('import_id', 'establishment'),
        schema='reconciler',
    )
    op.create_index('ix_reconciler_group_changes_est', 'reconciler_group_changes', ['site', 'establishment', 'at'],
                    unique=False, schema=_schema('reconciler'))


def downgrade() -> None:
    op.drop_index('ix_reconciler_group_changes_est', table_name='reconciler_group_changes',
                  schema=_schema('reconciler'))
    op.drop_table('reconciler_group_changes', schema='reconciler')
    for service in reversed(STAGES):
        op.drop_table(f'{service}_stage_aborts', schema=service)
