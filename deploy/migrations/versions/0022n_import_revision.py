"""notifier: each import's revision, bumped by every write of its row or of its steps, under which the
history API keeps the import's rendered view.

Revision ID: 0022n
Revises: 0021s
Create Date: 2026-12-04 02:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0022n'
down_revision = '0021s'
branch_labels = None
depends_on = None


def _schema() -> str | None:
    # ALTER is not schema-translated like CREATE TABLE: SQLite has no schemas.
    return None if op.get_bind().dialect.name == "sqlite" else 'notifier'


def upgrade() -> None:
    op.add_column('imports', sa.Column('revision', sa.BigInteger(), nullable=False, server_default='0'),
                  schema=_schema())


def downgrade() -> None:
    op.drop_column('imports', 'revision', schema=_schema())
