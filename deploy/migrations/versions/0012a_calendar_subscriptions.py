"""scheduler: iCal subscriptions (a feed URL carrying a secret, stored hashed).

Revision ID: 0012a
Revises: 0008
Create Date: 2026-12-02 00:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012a'
down_revision = '0008'
branch_labels = None
depends_on = None


def _schema() -> str | None:
    # CREATE INDEX is not schema-translated like CREATE TABLE: SQLite has no schemas.
    return None if op.get_bind().dialect.name == "sqlite" else 'scheduler'


def upgrade() -> None:
    op.create_table(
        'scheduler_subscriptions',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('site', sa.String(length=64), nullable=False),
        sa.Column('establishment', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('ident', sa.String(length=64), nullable=False),
        sa.Column('secret_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        schema='scheduler',
    )
    op.create_index('ix_scheduler_subscriptions_feed', 'scheduler_subscriptions',
                    ['site', 'establishment', 'kind', 'ident'], unique=False, schema=_schema())


def downgrade() -> None:
    op.drop_index('ix_scheduler_subscriptions_feed', table_name='scheduler_subscriptions', schema=_schema())
    op.drop_table('scheduler_subscriptions', schema='scheduler')
