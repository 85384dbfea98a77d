"""Site tokens that expire and can be revoked: dropzone.site_tokens gains expires_at and revoked_at; every
service keeps its own list of revoked tokens (<service>_revoked_tokens), filled from TokenRevoked events.

Revision ID: 0012c
Revises: 0012b
Create Date: 2026-12-02 00:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012c'
down_revision = '0012b'
branch_labels = None
depends_on = None

SERVICES = ('dropzone', 'validator', 'thresholds', 'reconciler', 'scheduler', 'notifier')


def _schema(name: str) -> str | None:
    # ALTER is not schema-translated like CREATE TABLE: SQLite has no schemas.
    return None if op.get_bind().dialect.name == "sqlite" else name


def upgrade() -> None:
    for column in ('expires_at', 'revoked_at'):
        op.add_column('site_tokens', sa.Column(column, sa.DateTime(timezone=True), nullable=True),
                      schema=_schema('dropzone'))
    for service in SERVICES:
        op.create_table(
            f'{service}_revoked_tokens',
            sa.Column('token_id', sa.String(length=32), nullable=False),
            sa.Column('site', sa.String(length=64), nullable=False),
            sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint('token_id'),
            schema=service,
        )


def downgrade() -> None:
    for service in reversed(SERVICES):
        op.drop_table(f'{service}_revoked_tokens', schema=service)
    for column in ('revoked_at', 'expires_at'):
        op.drop_column('site_tokens', column, schema=_schema('dropzone'))
