"""personal data: the history written before homonym warnings named idents named the homonyms themselves
(« ex. ALUN Alain »); their names leave the validation reports, the import history, its steps and its event
log, the counts and the warning stay.

Revision ID: 0015c
Revises: 0015b
Create Date: 2026-12-02 09:20:00
"""
from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0015c'
down_revision = '0015b'
branch_labels = None
depends_on = None

# The two sentences of the homonyms warning as they were written, samples included.
FRENCH = re.compile(r" \(ex\. [^()]*\) : le rapprochement par nom sera ambigu")
ENGLISH = re.compile(r" \(e\.g\. [^()]*\): matching by name will be ambiguous")


def scrub_text(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    return ENGLISH.sub(": matching by name will be ambiguous", FRENCH.sub(" : le rapprochement par nom sera ambigu",
                                                                          text))


def scrub_problem(problem: Any) -> Any:
    if not isinstance(problem, dict) or problem.get("code") != "homonyms":
        return problem
    detail = {**(problem.get("detail") or {}), "samples": []}
    return {**problem, "message": scrub_text(problem.get("message")),
            "message_en": scrub_text(problem.get("message_en")), "detail": detail}


def _table(name: str, schema: str, key: list[str], columns: dict[str, Any]) -> sa.Table:
    """The few columns this migration reads and writes, typed (JSON values in and out on both databases)."""
    return sa.Table(name, sa.MetaData(), *(sa.Column(k, sa.String, primary_key=True) for k in key),
                    *(sa.Column(c, t) for c, t in columns.items()),
                    schema=None if op.get_bind().dialect.name == "sqlite" else schema)


def _rewrite(table: sa.Table, key: list[str], scrubs: dict[str, Any], where: Any) -> None:
    """Each row matching `where`: its columns through their scrubbing function."""
    bind = op.get_bind()
    for row in bind.execute(sa.select(table).where(where)).mappings().all():
        values = {c: scrub(row[c]) for c, scrub in scrubs.items() if scrub(row[c]) != row[c]}
        if values:
            bind.execute(table.update().where(*(table.c[k] == row[k] for k in key)).values(**values))


def _problems(value: Any) -> Any:
    return [scrub_problem(p) for p in value] if isinstance(value, list) else value


def _payload(value: Any) -> Any:
    return {**value, "message": scrub_text(value.get("message"))} if isinstance(value, dict) else value


def upgrade() -> None:
    like = "%homonym%"
    reports = _table('validation_reports', 'validator', ['import_id'], {'problems': sa.JSON})
    _rewrite(reports, ['import_id'], {'problems': _problems}, sa.cast(reports.c.problems, sa.Text).like(like))
    imports = _table('imports', 'notifier', ['id'], {'alerts': sa.JSON, 'message': sa.Text, 'message_en': sa.Text})
    _rewrite(imports, ['id'], {'alerts': _problems, 'message': scrub_text, 'message_en': scrub_text},
             sa.or_(sa.cast(imports.c.alerts, sa.Text).like(like), imports.c.message.like(like),
                    imports.c.message_en.like(like)))
    events = sa.Table('import_events', sa.MetaData(), sa.Column('id', sa.Integer, primary_key=True),
                      sa.Column('payload', sa.JSON),
                      schema=None if op.get_bind().dialect.name == "sqlite" else 'notifier')
    _rewrite(events, ['id'], {'payload': _payload}, sa.cast(events.c.payload, sa.Text).like(like))
    steps = _table('import_steps', 'notifier', ['import_id', 'stage'], {'message': sa.Text, 'message_en': sa.Text})
    _rewrite(steps, ['import_id', 'stage'], {'message': scrub_text, 'message_en': scrub_text},
             sa.or_(steps.c.message.like(like), steps.c.message_en.like(like)))


def downgrade() -> None:
    pass  # names are not brought back
