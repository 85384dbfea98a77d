"""every service's outbox: the message headers published with each row (the W3C trace context of the work
that emitted it), so that one import can be followed across services.

Revision ID: 0013a
Revises: 0008
Create Date: 2026-12-02 09:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013a'
down_revision = '0008'
branch_labels = None
depends_on = None

SERVICES = ('dropzone', 'validator', 'thresholds', 'reconciler', 'scheduler', 'notifier')


def _schema(service: str) -> str | None:
    # ALTER is not schema-translated like CREATE TABLE: SQLite has no schemas.
    return None if op.get_bind().dialect.name == "sqlite" else service


def upgrade() -> None:
    for service in SERVICES:
        op.add_column(f'{service}_outbox', sa.Column('headers', sa.JSON(), nullable=True), schema=_schema(service))


def downgrade() -> None:
    for service in SERVICES:
        op.drop_column(f'{service}_outbox', 'headers', schema=_schema(service))
