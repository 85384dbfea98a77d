"""notifier: the admission version, one counter bumped by every change of the import history's statuses, so
that the history API recomputes queue positions only when they may have changed.

Revision ID: 0014a
Revises: 0008
Create Date: 2026-12-02 00:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014a'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        'notifier_admission_version',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        schema='notifier',
    )
    op.bulk_insert(table, [{'id': 1, 'version': 0}])


def downgrade() -> None:
    op.drop_table('notifier_admission_version', schema='notifier')
