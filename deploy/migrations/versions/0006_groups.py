"""reconciler: groups and memberships per establishment, the persisted selection and person decisions of
the manual wizard, and the previews of manual imports awaiting their selection.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('groups',
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=400), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('ident', sa.String(length=300), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('parent', sa.String(length=400), nullable=True),
    sa.Column('ent_id', sa.String(length=128), nullable=True),
    sa.Column('import_id', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('site', 'establishment', 'key'),
    schema='reconciler'
    )
    op.create_table('group_memberships',
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=700), nullable=False),
    sa.Column('group_key', sa.String(length=400), nullable=False),
    sa.Column('person_kind', sa.String(length=8), nullable=False),
    sa.Column('person_id', sa.String(length=128), nullable=False),
    sa.Column('file_ident', sa.String(length=128), nullable=False),
    sa.Column('start', sa.Date(), nullable=True),
    sa.Column('end', sa.Date(), nullable=True),
    sa.Column('import_id', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('site', 'establishment', 'key'),
    schema='reconciler'
    )
    op.create_table('selections',
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('ident', sa.String(length=300), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('import_id', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('site', 'establishment', 'kind', 'ident'),
    schema='reconciler'
    )
    op.create_table('person_decisions',
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('ident', sa.String(length=128), nullable=False),
    sa.Column('decision', sa.String(length=8), nullable=False),
    sa.Column('ent_id', sa.String(length=128), nullable=True),
    sa.Column('import_id', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('site', 'establishment', 'kind', 'ident'),
    schema='reconciler'
    )
    op.create_table('previews',
    sa.Column('import_id', sa.String(length=32), nullable=False),
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('command', sa.JSON(), nullable=False),
    sa.Column('preview', sa.JSON(), nullable=False),
    sa.Column('selection', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('import_id'),
    schema='reconciler'
    )
    op.create_index(op.f('ix_reconciler_previews_site'), 'previews', ['site'], unique=False, schema='reconciler')


def downgrade() -> None:
    op.drop_index(op.f('ix_reconciler_previews_site'), table_name='previews', schema='reconciler')
    op.drop_table('previews', schema='reconciler')
    op.drop_table('person_decisions', schema='reconciler')
    op.drop_table('selections', schema='reconciler')
    op.drop_table('group_memberships', schema='reconciler')
    op.drop_table('groups', schema='reconciler')
