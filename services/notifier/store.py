"""Notifier tables (the import history, its steps, the event log behind the SSE streams) and the history
API's queries."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import Database, as_utc, outbox_table, revoked_tokens_table, service_metadata, upsert
from shared.messages import AccessRecorded, ImportStatus, Stage

metadata = service_metadata("notifier")

imports = sa.Table(
    "imports",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("establishment", sa.String(64), nullable=True),  # null: site-wide ("Tous")
    sa.Column("scope", sa.String(140), nullable=False),  # site/establishment or site/* (admission key)
    sa.Column("establishments", sa.JSON, nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("account", sa.String(120), nullable=True),
    sa.Column("file_name", sa.String(512), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("no_change", sa.Boolean, nullable=False, default=False),
    sa.Column("superseded_by", sa.String(32), nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("message_en", sa.Text, nullable=True),
    sa.Column("counts", sa.JSON, nullable=False),
    sa.Column("alerts", sa.JSON, nullable=False),
    sa.Column("artifacts", sa.JSON, nullable=False),
    # The stage queue this import waits in and since when (ops: oldest message age per stage).
    sa.Column("queued_stage", sa.String(16), nullable=True),
    sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
    # Bumped by every write of the row or of its steps: the history API's rendered views are kept per
    # revision (services/notifier/views.py), in every notifier process alike.
    sa.Column("revision", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_notifier_imports_site_created", "site", "created_at"),
    sa.Index("ix_notifier_imports_status", "status"),
    sa.Index("ix_notifier_imports_scope_status", "scope", "status"),
)

steps = sa.Table(
    "import_steps",
    metadata,
    sa.Column("import_id", sa.String(32), sa.ForeignKey("notifier.imports.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("stage", sa.String(16), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("message_en", sa.Text, nullable=True),
    sa.Column("counts", sa.JSON, nullable=True),
)

event_log = sa.Table(
    "import_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("import_id", sa.String(32), nullable=False),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Index("ix_notifier_import_events_import", "import_id", "id"),
    sa.Index("ix_notifier_import_events_site", "site", "id"),
)

# One row: bumped in the transaction of every status change (`bump_admission`), read before the queue
# positions are computed, so that a cached computation is reused only while nothing moved.
admission_version = sa.Table(
    "notifier_admission_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)

# Establishment names, learnt from the deposits (Deposit.establishment_names) and the dropzone's
# EstablishmentUpdated events: the history's `establishment_label`.
establishment_names = sa.Table(
    "notifier_establishments",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Change events of the sessions (edt.changes, published by the scheduler) kept for the SSE stream
# GET /sites/{site}/changes: the newest `changes_max_events` per site, none older than
# `changes_retention_h`. `body` is the event as published (JSON text).
changes = sa.Table(
    "notifier_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("establishment", sa.String(64), nullable=False),
    sa.Column("import_id", sa.String(32), nullable=False),
    sa.Column("message_id", sa.String(128), nullable=False, unique=True),  # a redelivery is stored once
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("ix_notifier_changes_site", "site", "id"),
)

# Per site, the id of the last change event dropped by retention: a client resuming from before it
# has missed events and is told so.
changes_horizon = sa.Table(
    "notifier_changes_horizon",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("dropped_through", sa.Integer, nullable=False),
)

# Reads of personal data (docs/privacy.md, accountability): who, when, what. Fed by every service
# (AccessRecorded events) and by the notifier's own reads; `message_id` makes a redelivered event a no-op.
access_log = sa.Table(
    "access_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(64), nullable=False, unique=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),  # a site token's id, "admin", or a deposit account
    sa.Column("actor_kind", sa.String(16), nullable=False),  # admin | site_token | account
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("resource", sa.String(512), nullable=False),
    sa.Column("site", sa.String(64), nullable=True),
    sa.Column("import_id", sa.String(32), nullable=True),
    sa.Column("service", sa.String(16), nullable=False),
    sa.Index("ix_notifier_access_log_site", "site", "id"),
)

# The sealed answers of person requests (blobs) until they are read: an answer that came after its request
# gave up is deleted by the purge, never left in the blob store.
reply_blobs = sa.Table(
    "privacy_reply_blobs",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("request_id", sa.String(32), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

outbox = outbox_table(metadata)
revoked_tokens = revoked_tokens_table(metadata)

# What admission and the queue positions need of an active import (no JSON columns to decode).
SLOT_COLUMNS = (imports.c.id, imports.c.site, imports.c.establishment, imports.c.status, imports.c.mode,
                imports.c.created_at, imports.c.started_at)


async def bump_admission(conn: AsyncConnection) -> None:
    """The statuses changed in this transaction (the row lock orders the bumps as their commits)."""
    bumped = await conn.execute(admission_version.update().where(admission_version.c.id == 1)
                                .values(version=admission_version.c.version + 1))
    if bumped.rowcount == 0:  # a database created without the migrations' first row
        await conn.execute(admission_version.insert().values(id=1, version=1))


ADMISSION_AT = sa.select(admission_version.c.version).where(admission_version.c.id == 1)


async def admission_at(conn: AsyncConnection) -> int:
    return int((await conn.execute(ADMISSION_AT)).scalar_one_or_none() or 0)


async def newest_waiting_at(conn: AsyncConnection) -> datetime | None:
    """When the last import still waiting was queued (None: nothing waits)."""
    at = (await conn.execute(sa.select(sa.func.max(imports.c.created_at))
                             .where(imports.c.status == ImportStatus.WAITING.value))).scalar()
    return as_utc(at) if at is not None else None


async def active_slots(conn: AsyncConnection, statuses: list[str]) -> list[Any]:
    return list((await conn.execute(sa.select(*SLOT_COLUMNS).where(imports.c.status.in_(statuses)))).all())


async def leased_imports(conn: AsyncConnection, statuses: list[str]) -> list[Any]:
    """The imports in flight with their latest signs of life in this table (started, queued, a step)."""
    last_step = (sa.select(sa.func.max(sa.func.coalesce(steps.c.ended_at, steps.c.started_at)))
                 .where(steps.c.import_id == imports.c.id).scalar_subquery())
    query = sa.select(imports.c.id, imports.c.site, imports.c.status, imports.c.queued_stage, imports.c.started_at,
                      imports.c.queued_at, last_step.label("last_step_at")).where(imports.c.status.in_(statuses))
    return list((await conn.execute(query)).all())


async def imports_by_id(conn: AsyncConnection, ids: list[str]) -> dict[str, Any]:
    if not ids:
        return {}
    return {r.id: r for r in (await conn.execute(sa.select(imports).where(imports.c.id.in_(ids)))).all()}


# --- the history the handlers write (each takes the caller's connection) ------------------------------


async def import_row(conn: AsyncConnection, import_id: str) -> Any:
    """An import's whole row (None when there is none)."""
    return (await conn.execute(sa.select(imports).where(imports.c.id == import_id))).first()


async def import_exists(conn: AsyncConnection, import_id: str) -> bool:
    return (await conn.execute(sa.select(imports.c.id).where(imports.c.id == import_id))).first() is not None


async def import_status(conn: AsyncConnection, import_id: str) -> str:
    return str((await conn.execute(sa.select(imports.c.status).where(imports.c.id == import_id))).scalar_one())


async def insert_import(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(imports.insert().values(**values))


def _revise(import_id: str) -> Any:
    """The UPDATE of an import's row that every write goes through: it bumps the row's revision."""
    return imports.update().where(imports.c.id == import_id).values(revision=imports.c.revision + 1)


async def update_import(conn: AsyncConnection, import_id: str, values: dict[str, Any]) -> None:
    await conn.execute(_revise(import_id).values(**values))


async def mark_superseded(conn: AsyncConnection, older_id: str, new_id: str) -> None:
    await conn.execute(_revise(older_id).values(superseded_by=new_id))


async def mark_started(conn: AsyncConnection, import_id: str, at: datetime) -> None:
    """Admitted: received, and queued for its first stage (validation)."""
    await conn.execute(_revise(import_id).values(
        status=ImportStatus.RECEIVED.value, started_at=at, queued_stage=Stage.VALIDATION.value, queued_at=at))


async def end_import(conn: AsyncConnection, import_id: str, status: str, message: str | None,
                     message_en: str | None, no_change: bool, at: datetime) -> Any:
    """The import ends (out of every stage queue); its site, mode and started_at, for the event log and the
    metrics."""
    await conn.execute(_revise(import_id).values(
        status=status, ended_at=at, message=message, message_en=message_en, no_change=no_change,
        queued_stage=None, queued_at=None))
    return (await conn.execute(sa.select(imports.c.site, imports.c.mode, imports.c.started_at).where(
        imports.c.id == import_id))).one()


async def waiting_in_scope(conn: AsyncConnection, scope: str, other_than: str) -> list[Any]:
    """The imports of `scope` waiting for admission, but `other_than` (those a new deposit may supersede)."""
    return list((await conn.execute(sa.select(imports).where(
        imports.c.scope == scope, imports.c.status == ImportStatus.WAITING.value,
        imports.c.id != other_than))).all())


async def last_integrated(conn: AsyncConnection, scope: str) -> Any:
    """The last import of `scope` integrated (not a dry run), with changes or not."""
    return (await conn.execute(sa.select(imports).where(
        imports.c.scope == scope, imports.c.status == ImportStatus.DONE.value,
        imports.c.dry_run.is_(False)).order_by(imports.c.ended_at.desc()).limit(1))).first()


def _step_key(import_id: str, stage: str) -> Any:
    return (steps.c.import_id == import_id) & (steps.c.stage == stage)


async def get_step(conn: AsyncConnection, import_id: str, stage: str) -> Any:
    return (await conn.execute(sa.select(steps).where(_step_key(import_id, stage)))).first()


async def insert_step(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(steps.insert().values(**values))
    await conn.execute(_revise(values["import_id"]))  # a step is part of its import's view


async def update_step(conn: AsyncConnection, import_id: str, stage: str, values: dict[str, Any]) -> None:
    await conn.execute(steps.update().where(_step_key(import_id, stage)).values(**values))
    await conn.execute(_revise(import_id))


async def log_event(conn: AsyncConnection, import_id: str, site: str, at: datetime, payload: dict[str, Any]) -> None:
    """One line of the event log behind the SSE streams."""
    await conn.execute(event_log.insert().values(import_id=import_id, site=site, at=at, payload=payload))


# --- queries of the history API (each takes the caller's connection) ---------------------------------


# What the history API shows of an import, in one query: its columns but the artifacts (only two of their
# keys are shown, and a read decodes every JSON value it selects), with its establishment's name.
VIEW_COLUMNS = (*(c for c in imports.c if c.name != "artifacts"),
                imports.c.artifacts["undo_of"].as_string().label("undo_of"),
                imports.c.artifacts["abort_requested_at"].as_string().label("abort_requested_at"),
                establishment_names.c.name.label("establishment_name"))
VIEW_FROM = imports.outerjoin(establishment_names, sa.and_(establishment_names.c.site == imports.c.site,
                                                           establishment_names.c.id == imports.c.establishment))
STEP_COLUMNS = tuple(c for c in steps.c if c.name != "counts")  # a step's counts are in the import's


# What a read needs to know whether its cached view is current, and to place an import in the queue: no
# JSON column. `revision` and the establishment's name are what a view is kept under.
# The admission version comes with them: placing an active import in the queue needs it, one round trip fewer.
STAMP_COLUMNS = (imports.c.id, imports.c.site, imports.c.status, imports.c.created_at, imports.c.started_at,
                 imports.c.revision, establishment_names.c.name.label("establishment_name"),
                 ADMISSION_AT.scalar_subquery().label("admission"))

# Built once: the history API runs these on every read, and building a statement costs more than its cache
# lookup.
IMPORT_VIEW = sa.select(*VIEW_COLUMNS).select_from(VIEW_FROM).where(imports.c.id == sa.bindparam("id"))
IMPORT_VIEWS = sa.select(*VIEW_COLUMNS).select_from(VIEW_FROM).where(
    imports.c.id.in_(sa.bindparam("ids", expanding=True)))
IMPORT_STAMP = sa.select(*STAMP_COLUMNS).select_from(VIEW_FROM).where(imports.c.id == sa.bindparam("id"))
STEPS_OF = sa.select(*STEP_COLUMNS).where(steps.c.import_id.in_(sa.bindparam("ids", expanding=True)))


async def get_import(conn: AsyncConnection, import_id: str) -> Any:
    return (await conn.execute(IMPORT_VIEW, {"id": import_id})).first()


async def import_stamp(conn: AsyncConnection, import_id: str) -> Any:
    return (await conn.execute(IMPORT_STAMP, {"id": import_id})).first()


async def import_views(conn: AsyncConnection, import_ids: list[str]) -> list[Any]:
    return list((await conn.execute(IMPORT_VIEWS, {"ids": import_ids})).all()) if import_ids else []


async def steps_of(conn: AsyncConnection, import_ids: list[str]) -> dict[str, list[Any]]:
    """The recorded steps of each import (those not started yet have no row)."""
    out: dict[str, list[Any]] = {i: [] for i in import_ids}
    if import_ids:
        for row in (await conn.execute(STEPS_OF, {"ids": import_ids})).all():
            out[row.import_id].append(row)
    return out


@functools.cache
def _history_query(site_wide: bool | None, statuses: bool, mode: bool, after: bool) -> Any:
    """The history page's statement for one combination of filters, built once (its values are bound)."""
    query = sa.select(*STAMP_COLUMNS).select_from(VIEW_FROM).where(imports.c.site == sa.bindparam("site"))
    if site_wide is not None:
        query = query.where(imports.c.establishment.is_(None) if site_wide
                            else imports.c.establishment == sa.bindparam("establishment"))
    if statuses:
        query = query.where(imports.c.status.in_(sa.bindparam("statuses", expanding=True)))
    if mode:
        query = query.where(imports.c.mode == sa.bindparam("mode"))
    if after:
        at: Any = sa.bindparam("at", type_=imports.c.created_at.type)
        last_id: Any = sa.bindparam("last_id")
        query = query.where(sa.or_(imports.c.created_at < at, sa.and_(imports.c.created_at == at,
                                                                       imports.c.id < last_id)))
    return query.order_by(imports.c.created_at.desc(), imports.c.id.desc()).limit(sa.bindparam("limit"))


async def history_page(conn: AsyncConnection, site: str, *, establishment: str | None, statuses: list[str] | None,
                       mode: str | None, after: tuple[datetime, str] | None, limit: int) -> list[Any]:
    """The stamps (STAMP_COLUMNS) of up to `limit` imports of the site, newest first, after the (created_at,
    id) of a previous page. `establishment` None: all; `"*"` or `"Tous"`: the site-wide imports only."""
    site_wide = None if establishment is None else establishment in ("*", "Tous")
    query = _history_query(site_wide, bool(statuses), bool(mode), after is not None)
    values: dict[str, Any] = {"site": site, "establishment": establishment, "statuses": statuses, "mode": mode,
                              "limit": limit}
    if after is not None:
        values["at"], values["last_id"] = after
    return list((await conn.execute(query, {k: v for k, v in values.items() if v is not None})).all())


async def recent_durations(conn: AsyncConnection, n: int = 20) -> list[float]:
    """Seconds taken by the last `n` integrated imports that changed something (for the ETAs)."""
    rows = (await conn.execute(sa.select(imports.c.started_at, imports.c.ended_at).where(
        imports.c.status == ImportStatus.DONE.value, imports.c.started_at.is_not(None),
        imports.c.no_change.is_(False)).order_by(imports.c.ended_at.desc()).limit(n))).all()
    return [(as_utc(r.ended_at) - as_utc(r.started_at)).total_seconds() for r in rows if r.ended_at and r.started_at]


async def events_after(conn: AsyncConnection, last_id: int, *, import_id: str | None = None,
                       site: str | None = None, limit: int = 200) -> list[Any]:
    """The status events of one import (or of one site) logged after `last_id`, in order."""
    where = event_log.c.import_id == import_id if import_id is not None else event_log.c.site == site
    return list((await conn.execute(sa.select(event_log).where(where, event_log.c.id > last_id)
                                    .order_by(event_log.c.id).limit(limit))).all())


async def last_event_id(conn: AsyncConnection) -> int:
    return int((await conn.execute(sa.select(sa.func.max(event_log.c.id)))).scalar() or 0)


async def oldest_queued_at(conn: AsyncConnection, stage: str) -> datetime | None:
    value = (await conn.execute(sa.select(sa.func.min(imports.c.queued_at)).where(
        imports.c.queued_stage == stage))).scalar()
    return as_utc(value) if value else None


async def steps_ended_since(conn: AsyncConnection, stage: str, since: datetime) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).select_from(steps).where(
        steps.c.stage == stage, steps.c.ended_at >= since))).scalar() or 0)


async def count_waiting(conn: AsyncConnection) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).select_from(imports).where(
        imports.c.status == ImportStatus.WAITING.value))).scalar() or 0)


async def count_by_status_mode(conn: AsyncConnection) -> dict[tuple[str, str], int]:
    rows = (await conn.execute(sa.select(imports.c.status, imports.c.mode, sa.func.count()).group_by(
        imports.c.status, imports.c.mode))).all()
    return {(r[0], r[1]): int(r[2]) for r in rows}


async def oldest_active(conn: AsyncConnection, statuses: list[str], limit: int) -> list[Any]:
    """Imports waiting or in flight, all sites, oldest first."""
    return list((await conn.execute(sa.select(imports).where(imports.c.status.in_(statuses))
                                    .order_by(imports.c.created_at, imports.c.id).limit(limit))).all())


async def save_establishment_names(db: Database, conn: AsyncConnection, site: str, names: dict[str, str],
                                   at: datetime) -> None:
    """Keep the newest name of each establishment (by the time the dropzone said it)."""
    t = establishment_names
    for est, name in names.items():
        row = (await conn.execute(sa.select(t.c.updated_at).where(t.c.site == site, t.c.id == est))).first()
        if row is None:
            await conn.execute(upsert(db, t, {"site": site, "id": est, "name": name, "updated_at": at},
                                      ["site", "id"], ["name", "updated_at"]))
        elif as_utc(row.updated_at) <= at:
            await conn.execute(t.update().where(t.c.site == site, t.c.id == est).values(name=name, updated_at=at))


# --- change events ------------------------------------------------------------------------------------


async def add_change(db: Database, conn: AsyncConnection, *, site: str, establishment: str, import_id: str,
                     message_id: str, at: datetime, body: str) -> bool:
    """Store a change event once (False when this message was stored already)."""
    row = (await conn.execute(upsert(db, changes, {
        "site": site, "establishment": establishment, "import_id": import_id, "message_id": message_id,
        "at": at, "body": body}, ["message_id"]).returning(changes.c.id))).first()
    return row is not None


async def prune_changes(conn: AsyncConnection, site: str, *, older_than: datetime, keep: int) -> None:
    """Drop the site's change events older than `older_than` or beyond the newest `keep`, and remember
    the last one dropped."""
    c = changes
    nth = (await conn.execute(sa.select(c.c.id).where(c.c.site == site).order_by(c.c.id.desc())
                              .offset(keep).limit(1))).scalar()
    aged = (await conn.execute(sa.select(sa.func.max(c.c.id)).where(c.c.site == site, c.c.at < older_than))).scalar()
    through = max(int(nth or 0), int(aged or 0))
    if not through:
        return
    await conn.execute(c.delete().where(c.c.site == site, c.c.id <= through))
    h = changes_horizon
    known = (await conn.execute(sa.select(h.c.dropped_through).where(h.c.site == site))).scalar()
    if known is None:
        await conn.execute(h.insert().values(site=site, dropped_through=through))
    elif known < through:
        await conn.execute(h.update().where(h.c.site == site).values(dropped_through=through))


async def sites_with_changes_before(conn: AsyncConnection, moment: datetime) -> list[str]:
    return [r.site for r in (await conn.execute(sa.select(changes.c.site).where(changes.c.at < moment)
                                                .distinct())).all()]


async def changes_after(conn: AsyncConnection, site: str, last_id: int, *, establishment: str | None = None,
                        limit: int = 20) -> list[Any]:
    c = changes
    query = sa.select(c.c.id, c.c.body).where(c.c.site == site, c.c.id > last_id)
    if establishment is not None:
        query = query.where(c.c.establishment == establishment)
    return list((await conn.execute(query.order_by(c.c.id).limit(limit))).all())


async def changes_dropped_through(conn: AsyncConnection, site: str) -> int:
    h = changes_horizon
    return int((await conn.execute(sa.select(h.c.dropped_through).where(h.c.site == site))).scalar() or 0)



# --- undo ---------------------------------------------------------------------------------------------


def _changed_something() -> Any:
    return sa.and_(imports.c.status == ImportStatus.DONE.value, imports.c.dry_run.is_(False),
                   imports.c.no_change.is_(False))


async def integrated_after(conn: AsyncConnection, site: str, moment: datetime) -> list[Any]:
    """The site's imports integrated (with changes) after `moment`."""
    return list((await conn.execute(sa.select(imports).where(
        imports.c.site == site, _changed_something(), imports.c.ended_at > moment))).all())


async def integrated_before(conn: AsyncConnection, scope: str, moment: datetime) -> Any:
    """The last import of `scope` integrated (with changes) before `moment`."""
    return (await conn.execute(sa.select(imports).where(
        imports.c.scope == scope, _changed_something(), imports.c.ended_at < moment)
        .order_by(imports.c.ended_at.desc()).limit(1))).first()


async def active_imports(conn: AsyncConnection, site: str, statuses: list[str]) -> list[Any]:
    return list((await conn.execute(sa.select(imports).where(
        imports.c.site == site, imports.c.status.in_(statuses)))).all())


# --- the access log ---------------------------------------------------------------------------------


async def record_access(db: Database, conn: AsyncConnection, message_id: str, event: AccessRecorded) -> None:
    await conn.execute(upsert(db, access_log, {
        "message_id": message_id, "at": event.at, "actor": event.actor, "actor_kind": event.actor_kind,
        "action": event.action, "resource": event.resource, "site": event.site, "import_id": event.import_id,
        "service": event.service}, ["message_id"]))


async def access_page(conn: AsyncConnection, *, site: str | None, action: str | None, before_id: int | None,
                      limit: int) -> list[Any]:
    """Access log rows, newest first."""
    query = sa.select(access_log)
    if site is not None:
        query = query.where(access_log.c.site == site)
    if action is not None:
        query = query.where(access_log.c.action == action)
    if before_id is not None:
        query = query.where(access_log.c.id < before_id)
    return list((await conn.execute(query.order_by(access_log.c.id.desc()).limit(limit))).all())


async def source_kept_until(conn: AsyncConnection, import_ids: list[str], days: float) -> dict[str, datetime | None]:
    """When each import's deposited file leaves by retention (None: its import has not ended)."""
    rows = (await conn.execute(sa.select(imports.c.id, imports.c.ended_at).where(imports.c.id.in_(import_ids)))).all()
    return {r.id: as_utc(r.ended_at) + timedelta(days=days) if r.ended_at else None for r in rows}


async def purge_access_log(conn: AsyncConnection, before: datetime) -> int:
    done = await conn.execute(access_log.delete().where(access_log.c.at < before))
    return int(done.rowcount or 0)


async def note_reply_blob(db: Database, conn: AsyncConnection, sha: str, request_id: str, at: datetime) -> None:
    await conn.execute(upsert(db, reply_blobs, {"sha256": sha, "request_id": request_id, "received_at": at},
                              ["sha256"]))


async def forget_reply_blobs(conn: AsyncConnection, shas: list[str]) -> None:
    if shas:
        await conn.execute(reply_blobs.delete().where(reply_blobs.c.sha256.in_(shas)))


async def unread_reply_blobs(conn: AsyncConnection, before: datetime) -> list[str]:
    return list((await conn.execute(sa.select(reply_blobs.c.sha256).where(reply_blobs.c.received_at < before)))
                .scalars())
