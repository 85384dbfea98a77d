"""thresholds, reconciler and scheduler each keep the sites' establishments (<service>_known_establishments,
filled from EstablishmentUpdated events) so that their routes under an establishment that is not the site's
answer 404; filled here with the establishments the dropzone already has.

Revision ID: 0021s
Revises: 0020
Create Date: 2026-12-02 03:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0021s'
down_revision = '0020'
branch_labels = None
depends_on = None

SERVICES = ('thresholds', 'reconciler', 'scheduler')


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    source = 'establishments' if sqlite else 'dropzone.establishments'
    for service in SERVICES:
        op.create_table(
            f'{service}_known_establishments',
            sa.Column('site', sa.String(length=64), nullable=False),
            sa.Column('id', sa.String(length=64), nullable=False),
            sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint('site', 'id'),
            schema=service,
        )
        target = f'{service}_known_establishments' if sqlite else f'{service}.{service}_known_establishments'
        op.execute(f"INSERT INTO {target} (site, id, updated_at) SELECT site, id, CURRENT_TIMESTAMP FROM {source}")


def downgrade() -> None:
    for service in reversed(SERVICES):
        op.drop_table(f'{service}_known_establishments', schema=service)
