"""reconciler: a fingerprint of each group's memberships, so that a re-import reads and diffs only the
memberships of the groups whose members changed; memberships indexed by group.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def _schema() -> str | None:
    # ALTER and CREATE INDEX are not schema-translated like CREATE TABLE: SQLite has no schemas.
    return None if op.get_bind().dialect.name == "sqlite" else 'reconciler'


def upgrade() -> None:
    op.add_column('groups', sa.Column('members_fp', sa.String(length=32), nullable=True), schema=_schema())
    op.create_index('ix_reconciler_memberships_group', 'group_memberships', ['site', 'establishment', 'group_key'],
                    unique=False, schema=_schema())


def downgrade() -> None:
    op.drop_index('ix_reconciler_memberships_group', table_name='group_memberships', schema=_schema())
    op.drop_column('groups', 'members_fp', schema=_schema())
