"""personal data: what retention decides on, for the rows written before it existed — when each import
ended and how (from the history, once, at deployment: at run time no service reads another's tables), and
the directory snapshots each establishment had.

Revision ID: 0015b
Revises: 0015a
Create Date: 2026-12-02 09:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015b'
down_revision = '0015a'
branch_labels = None
depends_on = None

TERMINAL = ('done', 'previewed', 'rejected', 'blocked', 'failed', 'superseded', 'cancelled')


def _table(name: str, schema: str, *columns: str) -> sa.TableClause:
    return sa.table(name, *(sa.column(c) for c in columns),
                    schema=None if op.get_bind().dialect.name == "sqlite" else schema)


def upgrade() -> None:
    imports = _table('imports', 'notifier', 'id', 'status', 'ended_at')
    deposits = _table('deposits', 'dropzone', 'import_id', 'ended_at')
    reports = _table('validation_reports', 'validator', 'import_id', 'status', 'ended_at')
    ended = imports.c.status.in_(TERMINAL)
    op.execute(deposits.update().where(deposits.c.ended_at.is_(None)).values(ended_at=sa.select(imports.c.ended_at)
               .where(imports.c.id == deposits.c.import_id, ended).scalar_subquery()))
    op.execute(reports.update().where(reports.c.ended_at.is_(None)).values(
        ended_at=sa.select(imports.c.ended_at).where(imports.c.id == reports.c.import_id, ended).scalar_subquery(),
        status=sa.select(imports.c.status).where(imports.c.id == reports.c.import_id, ended).scalar_subquery()))

    bind = op.get_bind()
    schema = None if bind.dialect.name == "sqlite" else 'reconciler'
    instant = sa.DateTime(timezone=True)  # typed: SQLite hands instants back as text otherwise
    current = sa.Table('directory_snapshots', sa.MetaData(), sa.Column('site', sa.String),
                       sa.Column('establishment', sa.String), sa.Column('sha256', sa.String),
                       sa.Column('updated_at', instant), schema=schema)
    results = sa.Table('reconciliation_results', sa.MetaData(), sa.Column('site', sa.String),
                       sa.Column('establishment', sa.String), sa.Column('snapshot_sha256', sa.String),
                       sa.Column('created_at', instant), schema=schema)
    rows: dict[tuple[str, str, str], dict[str, object]] = {}
    for r in bind.execute(sa.select(current)).all():
        rows[(r.site, r.establishment, r.sha256)] = {"created_at": r.updated_at, "superseded_at": None}
    used = sa.select(results.c.site, results.c.establishment, results.c.snapshot_sha256, results.c.created_at).where(
        results.c.snapshot_sha256.is_not(None))
    for r in bind.execute(used).all():
        key = (r.site, r.establishment, r.snapshot_sha256)
        if key not in rows:
            rows[key] = {"created_at": r.created_at, "superseded_at": r.created_at}
        elif rows[key]["superseded_at"] is not None:  # a superseded one: from its first use to its last
            first, last = rows[key]["created_at"], rows[key]["superseded_at"]
            rows[key] = {"created_at": min(first, r.created_at), "superseded_at": max(last, r.created_at)}
    if rows:
        history = sa.Table('directory_snapshot_history', sa.MetaData(), sa.Column('site', sa.String(64)),
                           sa.Column('establishment', sa.String(64)), sa.Column('sha256', sa.String(64)),
                           sa.Column('created_at', instant), sa.Column('superseded_at', instant), schema=schema)
        op.bulk_insert(history, [{"site": s, "establishment": e, "sha256": h, **v} for (s, e, h), v in rows.items()])


def downgrade() -> None:
    pass  # the columns and table go with 0015a
