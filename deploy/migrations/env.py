"""Alembic environment: one migration history for every service's tables, on SQLite and PostgreSQL.

On PostgreSQL each service's tables live in a schema named after it; SQLite has no schemas, so the
schema is translated away there (see shared.db)."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection

from deploy.schema import all_metadata
from shared.db import SERVICE_SCHEMAS, SQLITE_TRANSLATE, make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or ""
target_metadata = all_metadata()
VERSION_TABLE = "edt_alembic_version"


def run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        connection = connection.execution_options(schema_translate_map=SQLITE_TRANSLATE)
    else:
        for schema in SERVICE_SCHEMAS:
            connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(connection=connection, target_metadata=target_metadata, include_schemas=not sqlite,
                      version_table=VERSION_TABLE, render_as_batch=sqlite, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def main() -> None:
    engine = make_engine(url)
    async with engine.connect() as conn:
        await conn.run_sync(run)
        await conn.commit()
    await engine.dispose()


asyncio.run(main())
