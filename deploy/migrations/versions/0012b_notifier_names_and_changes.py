"""notifier: establishment names learnt from deposits and EstablishmentUpdated events (the history's
establishment_label); the sessions' change events kept for GET /sites/{site}/changes, and per site the
last one retention dropped.

Revision ID: 0012b
Revises: 0012a
Create Date: 2026-12-02 00:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012b'
down_revision = '0012a'
branch_labels = None
depends_on = None


def _schema() -> str | None:
    # CREATE INDEX is not schema-translated like CREATE TABLE: SQLite has no schemas.
    return None if op.get_bind().dialect.name == "sqlite" else 'notifier'


def upgrade() -> None:
    op.create_table(
        'notifier_establishments',
        sa.Column('site', sa.String(length=64), nullable=False),
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('site', 'id'),
        schema='notifier',
    )
    op.create_table(
        'notifier_changes',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('site', sa.String(length=64), nullable=False),
        sa.Column('establishment', sa.String(length=64), nullable=False),
        sa.Column('import_id', sa.String(length=32), nullable=False),
        sa.Column('message_id', sa.String(length=128), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('message_id'),
        schema='notifier',
    )
    op.create_index('ix_notifier_changes_site', 'notifier_changes', ['site', 'id'], unique=False, schema=_schema())
    op.create_table(
        'notifier_changes_horizon',
        sa.Column('site', sa.String(length=64), nullable=False),
        sa.Column('dropped_through', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('site'),
        schema='notifier',
    )


def downgrade() -> None:
    op.drop_table('notifier_changes_horizon', schema='notifier')
    op.drop_index('ix_notifier_changes_site', table_name='notifier_changes', schema=_schema())
    op.drop_table('notifier_changes', schema='notifier')
    op.drop_table('notifier_establishments', schema='notifier')
