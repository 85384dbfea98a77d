"""reconciler: ENT directory (persons, classes/groups), IdPN associations, snapshots, matching results;
thresholds: latest directory snapshot per establishment and directory barriers. Merges the 0003 heads.

Revision ID: 0004
Revises: 0003, 0003t
Create Date: 2026-11-26 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = ('0003', '0003t')
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('directory_persons',
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('last_name', sa.String(length=255), nullable=False),
    sa.Column('first_name', sa.String(length=255), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('pronote_id', sa.String(length=128), nullable=True),
    sa.Column('cas_id', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('site', 'establishment', 'id'),
    schema='reconciler'
    )
    op.create_table('directory_units',
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('site', 'establishment', 'kind', 'id'),
    schema='reconciler'
    )
    op.create_table('directory_pronote_ids',
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('pronote_id', sa.String(length=128), nullable=False),
    sa.Column('ent_id', sa.String(length=128), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('site', 'establishment', 'pronote_id'),
    schema='reconciler'
    )
    op.create_table('directory_snapshots',
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('site', 'establishment'),
    schema='reconciler'
    )
    op.create_table('reconciliation_results',
    sa.Column('import_id', sa.String(length=32), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('snapshot_sha256', sa.String(length=64), nullable=True),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('unmatched', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('import_id', 'establishment'),
    schema='reconciler'
    )
    op.create_index(op.f('ix_reconciler_reconciliation_results_site'), 'reconciliation_results', ['site'], unique=False, schema='reconciler')
    op.create_table('threshold_directories',
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('site', 'establishment'),
    schema='thresholds'
    )
    op.create_table('threshold_directory_barriers',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    schema='thresholds'
    )


def downgrade() -> None:
    op.drop_table('threshold_directory_barriers', schema='thresholds')
    op.drop_table('threshold_directories', schema='thresholds')
    op.drop_index(op.f('ix_reconciler_reconciliation_results_site'), table_name='reconciliation_results', schema='reconciler')
    op.drop_table('reconciliation_results', schema='reconciler')
    op.drop_table('directory_snapshots', schema='reconciler')
    op.drop_table('directory_pronote_ids', schema='reconciler')
    op.drop_table('directory_units', schema='reconciler')
    op.drop_table('directory_persons', schema='reconciler')
