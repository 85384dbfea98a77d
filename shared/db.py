"""Database access shared by the services: async SQLAlchemy Core on SQLite or PostgreSQL.

Each service owns its tables, declared in its own `store.py` under a PostgreSQL schema named after the
service. SQLite has no schemas, so there the schema is translated away (table names are unique across
services for that reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SERVICE_SCHEMAS = ("dropzone", "validator", "thresholds", "reconciler", "scheduler", "notifier")
SQLITE_TRANSLATE = {schema: None for schema in SERVICE_SCHEMAS}


def service_metadata(schema: str) -> sa.MetaData:
    assert schema in SERVICE_SCHEMAS, schema
    return sa.MetaData(schema=schema)


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    """The transactional outbox of one service (see shared.bus.Outbox)."""
    return sa.Table(
        f"{metadata.schema}_outbox",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("exchange", sa.String(64), nullable=False),
        sa.Column("routing_key", sa.String(255), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP"),
                  nullable=False),
        # Message headers published with the body: the W3C trace context of the work that emitted it.
        sa.Column("headers", sa.JSON, nullable=True),
    )


def revoked_tokens_table(metadata: sa.MetaData) -> sa.Table:
    """The site tokens one service refuses (see shared.web.TokenRevocations): filled from TokenRevoked
    events, read on every request that carries a site token."""
    return sa.Table(
        f"{metadata.schema}_revoked_tokens",
        metadata,
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
    )


def known_establishments_table(metadata: sa.MetaData) -> sa.Table:
    """The establishments of each site, as one service knows them (see shared.establishments): filled from
    the dropzone's EstablishmentUpdated events, read by every route under an establishment."""
    return sa.Table(
        f"{metadata.schema}_known_establishments",
        metadata,
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if is_sqlite_url(url):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers (history API) run while a stage writes.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine.execution_options(schema_translate_map=SQLITE_TRANSLATE)
    engine = create_async_engine(url, **kwargs)
    ping_idle_connections(engine)
    return engine


PING_AFTER_IDLE_S = 2.0


def ping_idle_connections(engine: AsyncEngine) -> None:
    """Check a pooled connection before use only when it sat idle (a restarted PostgreSQL left it dead):
    a ping on every checkout is one more round trip per API read. A connection in constant use fails at
    most one statement after a restart, and that failure invalidates the whole pool."""
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the pool retries with a fresh connection
            raise sa.exc.DisconnectionError(str(exc)) from exc


class Database:
    def __init__(self, url: str, engine: AsyncEngine | None = None, **engine_options: Any) -> None:
        self.url = url
        self.engine = engine or make_engine(url, **engine_options)
        self.is_postgres = not is_sqlite_url(url)
        # SQLite has one writer: serialise write transactions in-process instead of failing with
        # "database is locked" under load.
        self._write_lock = asyncio.Lock() if not self.is_postgres else None
        self._read_engine = (self.engine.execution_options(isolation_level="AUTOCOMMIT") if self.is_postgres
                             else self.engine)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back on an exception."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads. On PostgreSQL in autocommit: no BEGIN/ROLLBACK around the reads (each
        statement of READ COMMITTED sees its own snapshot anyway), two round trips fewer per API read."""
        async with self._read_engine.connect() as conn:
            yield conn

    async def advisory_lock(self, conn: AsyncConnection, *scope: str) -> None:
        """Serialise the critical section named `scope` (e.g. "groups", site, establishment) across
        processes until the transaction ends (PostgreSQL); SQLite is already serialised."""
        if self.is_postgres:
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(*scope)})

    async def close(self) -> None:
        await self.engine.dispose()


def lock_key(*scope: str) -> int:
    """The advisory-lock key of a named critical section: the first 8 bytes of the SHA-256 of its parts,
    as the signed 64-bit integer PostgreSQL takes."""
    return int.from_bytes(hashlib.sha256(":".join(scope).encode()).digest()[:8], "big", signed=True)


def upsert(db: Database, table: sa.Table, values: dict[str, Any], keys: list[str],
           update: list[str] | None = None) -> Any:
    """INSERT … ON CONFLICT (keys) DO UPDATE/NOTHING on both databases."""
    if db.is_postgres:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(table).values(**values)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).values(**values)
    if update:
        return stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in update})
    return stmt.on_conflict_do_nothing(index_elements=keys)


def stage_runs_table(metadata: sa.MetaData) -> sa.Table:
    """One row per import a pipeline stage has seen: makes redelivered commands no-ops once finished."""
    return sa.Table(
        f"{metadata.schema}_stage_runs",
        metadata,
        sa.Column("import_id", sa.String(32), primary_key=True),
        sa.Column("step_status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )


def stage_aborts_table(metadata: sa.MetaData) -> sa.Table:
    """Imports a pipeline stage must not commit (ImportAbort events, see shared.worker.StageWorker)."""
    return sa.Table(
        f"{metadata.schema}_stage_aborts",
        metadata,
        sa.Column("import_id", sa.String(32), primary_key=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    )


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every instant we store is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
