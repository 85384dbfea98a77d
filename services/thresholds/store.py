"""Tables owned by the thresholds service, the reads the stage and the API share, and the settings routes'
queries."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.thresholds import domain
from shared.db import (
    Database,
    as_utc,
    known_establishments_table,
    outbox_table,
    revoked_tokens_table,
    service_metadata,
    stage_aborts_table,
    stage_runs_table,
    upsert,
)
from shared.messages import ImportLifecycle, ImportStatus, Mode, utcnow

metadata = service_metadata("thresholds")
outbox = outbox_table(metadata)
revoked_tokens = revoked_tokens_table(metadata)
known_establishments = known_establishments_table(metadata)
runs = stage_runs_table(metadata)
aborts = stage_aborts_table(metadata)

# The 12+2 controls of a site (design.md §6): {control: {value, blocking, enabled}}; missing = defaults.
site_settings = sa.Table(
    "threshold_settings",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("controls", sa.JSON, nullable=False),
    sa.Column("notification_emails", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(128), nullable=False),
)

# Every change of a setting: who, when, old → new (one row per changed field).
audit = sa.Table(
    "threshold_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site", sa.String(64), nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("control", sa.String(64), nullable=False),
    sa.Column("field", sa.String(32), nullable=False),
    sa.Column("old", sa.JSON, nullable=True),
    sa.Column("new", sa.JSON, nullable=True),
)

# The canonical model (blob sha256) each import brought for each establishment; `integrated_at` is set
# when its `import.history.done` arrives: the baseline of an establishment is its latest integrated row.
models = sa.Table(
    "threshold_models",
    metadata,
    sa.Column("import_id", sa.String(32), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("mode", sa.String(8), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("integrated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_threshold_models_baseline", "establishment", "integrated_at"),
)

# Terminal lifecycle events seen (import.history.*): integrated manual imports for the automatic-import
# precondition, and "has the previous import's event arrived yet".
lifecycle = sa.Table(
    "threshold_lifecycle",
    metadata,
    sa.Column("import_id", sa.String(32), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False, index=True),
    sa.Column("establishment", sa.String(64), nullable=True),
    sa.Column("establishments", sa.JSON, nullable=False),
    sa.Column("mode", sa.String(8), nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("no_change", sa.Boolean, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# Imports of a site between their first stage event and their terminal lifecycle event: settings are
# locked (423) meanwhile (design.md §5).
active = sa.Table(
    "threshold_active_imports",
    metadata,
    sa.Column("import_id", sa.String(32), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False, index=True),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("establishment", sa.String(64), nullable=True),  # null: a site-wide import
)

# Closure periods an establishment sets through the API (design.md §5), beside the file's holiday weeks.
closures = sa.Table(
    "threshold_closures",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("periods", sa.JSON, nullable=False),  # [{"start": "YYYY-MM-DD", "end": …, "label": …}]
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.String(255), nullable=False),
)

# E-mails to send (an outbox for SMTP): written in the stage's transaction, sent after commit.
mails = sa.Table(
    "threshold_mails",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("import_id", sa.String(32), nullable=False, index=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("recipients", sa.JSON, nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
)

# The latest ENT directory snapshot of each establishment (DirectoryUpdated events from the reconciler,
# newest `at` wins): the unreconciled controls load it from the blob store. No row = "not computed".
directories = sa.Table(
    "threshold_directories",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# Barrier markers the stage sends through its directory queue: a row = every directory event queued
# before the marker has been applied. Deleted by the stage once seen.
directory_barriers = sa.Table(
    "threshold_directory_barriers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
)


# --- reads shared by the stage and the API ----------------------------------------------------------


async def load_settings(conn: AsyncConnection, site: str) -> tuple[dict[str, domain.Setting], list[str], Any]:
    row = (await conn.execute(sa.select(site_settings).where(site_settings.c.site == site))).first()
    if row is None:
        return domain.default_settings(), [], None
    return domain.settings_from_json(row.controls), list(row.notification_emails or []), row


async def site_is_locked(conn: AsyncConnection, site: str, ttl_s: int) -> bool:
    since = utcnow() - timedelta(seconds=ttl_s)
    row = (await conn.execute(sa.select(active.c.import_id).where(active.c.site == site, active.c.since > since)
                              .limit(1))).first()
    return row is not None


async def establishment_is_locked(conn: AsyncConnection, site: str, est: str, ttl_s: int) -> bool:
    """An import of this establishment (or a site-wide one) runs: only its settings are locked (§7)."""
    since = utcnow() - timedelta(seconds=ttl_s)
    row = (await conn.execute(sa.select(active.c.import_id).where(
        active.c.site == site, active.c.since > since,
        sa.or_(active.c.establishment == est, active.c.establishment.is_(None))).limit(1))).first()
    return row is not None


async def load_closures(conn: AsyncConnection, site: str, establishments: list[str]) -> dict[str, list[Any]]:
    rows = (await conn.execute(sa.select(closures).where(closures.c.site == site,
                                                         closures.c.establishment.in_(establishments)))).all()
    return {r.establishment: list(r.periods) for r in rows if r.periods}


async def baseline(conn: AsyncConnection, site: str, est: str) -> Any:
    """The establishment's latest integrated model (None before its first integrated import)."""
    return (await conn.execute(sa.select(models).where(
        models.c.site == site, models.c.establishment == est, models.c.integrated_at.is_not(None))
        .order_by(models.c.integrated_at.desc()).limit(1))).first()


async def model_before(conn: AsyncConnection, site: str, est: str, import_id: str) -> Any:
    """The establishment's model integrated just before `import_id`'s (None: nothing before it). A row
    whose sha256 is "" is an undo back to nothing."""
    own = (await conn.execute(sa.select(models.c.integrated_at).where(
        models.c.import_id == import_id, models.c.establishment == est))).scalar()
    query = sa.select(models).where(models.c.site == site, models.c.establishment == est,
                                    models.c.integrated_at.is_not(None), models.c.import_id != import_id)
    if own is not None:
        query = query.where(models.c.integrated_at < own)
    return (await conn.execute(query.order_by(models.c.integrated_at.desc()).limit(1))).first()


async def manual_done_dates(conn: AsyncConnection, site: str, est: str, tz: ZoneInfo) -> list[date]:
    """The local dates of the integrated manual imports covering the establishment (itself or site-wide)."""
    rows = (await conn.execute(sa.select(lifecycle).where(
        lifecycle.c.site == site, lifecycle.c.status == ImportStatus.DONE.value,
        lifecycle.c.mode == Mode.MANUAL.value, lifecycle.c.no_change.is_(False)))).all()
    out = []
    for row in rows:
        covers = row.establishment == est or (row.establishment is None and est in (row.establishments or {}))
        at = as_utc(row.at)
        if covers and at is not None:
            out.append(at.astimezone(tz).date())
    return out


async def directory_of(conn: AsyncConnection, site: str, est: str) -> str | None:
    return (await conn.execute(sa.select(directories.c.sha256).where(
        directories.c.site == site, directories.c.establishment == est))).scalar()


# --- queries of the settings routes (each takes the caller's connection) ------------------------------


async def get_site_settings(conn: AsyncConnection, site: str) -> Any:
    return (await conn.execute(sa.select(site_settings).where(site_settings.c.site == site))).first()


async def save_site_settings(db: Database, conn: AsyncConnection, site: str, controls: dict[str, Any],
                             emails: list[str], at: datetime, by: str) -> Any:
    """Write a site's settings; the stored row."""
    await conn.execute(upsert(db, site_settings, {
        "site": site, "controls": controls, "notification_emails": emails, "updated_at": at, "updated_by": by},
        ["site"], ["controls", "notification_emails", "updated_at", "updated_by"]))
    return (await conn.execute(sa.select(site_settings).where(site_settings.c.site == site))).one()


async def add_audit(conn: AsyncConnection, site: str, at: datetime, actor: str,
                    changes: list[tuple[str, str, Any, Any]]) -> None:
    """One audit row per (control, field, old, new) changed."""
    if changes:
        await conn.execute(audit.insert(), [{"site": site, "at": at, "actor": actor, "control": control,
                                             "field": field, "old": old, "new": new}
                                            for control, field, old, new in changes])


async def audit_page(conn: AsyncConnection, site: str, before_id: int | None, limit: int) -> list[Any]:
    """The site's audit rows, newest first, older than `before_id`."""
    query = sa.select(audit).where(audit.c.site == site)
    if before_id is not None:
        query = query.where(audit.c.id < before_id)
    return list((await conn.execute(query.order_by(audit.c.id.desc()).limit(limit))).all())


async def get_closures(conn: AsyncConnection, site: str, est: str) -> Any:
    return (await conn.execute(sa.select(closures).where(closures.c.site == site,
                                                         closures.c.establishment == est))).first()


async def put_closures(db: Database, conn: AsyncConnection, site: str, est: str, periods: list[dict[str, str]],
                       at: datetime, by: str) -> None:
    await conn.execute(upsert(db, closures, {"site": site, "establishment": est, "periods": periods,
                                             "updated_at": at, "updated_by": by},
                              ["site", "establishment"], ["periods", "updated_at", "updated_by"]))


# --- what the stage and its event consumers record ---------------------------------------------------


async def lifecycle_seen(conn: AsyncConnection, import_id: str) -> bool:
    """The import's end (`import.history.*`) has been recorded."""
    return (await conn.execute(sa.select(lifecycle.c.import_id)
                               .where(lifecycle.c.import_id == import_id))).first() is not None


async def record_lifecycle(db: Database, conn: AsyncConnection, event: ImportLifecycle) -> None:
    """An import ended: remembered, its lock released; integrated, its models become candidates for the
    baseline."""
    await conn.execute(upsert(db, lifecycle, {
        "import_id": event.import_id, "site": event.site, "establishment": event.establishment,
        "establishments": event.establishments, "mode": event.mode.value, "status": event.status.value,
        "no_change": event.no_change, "at": event.at}, ["import_id"]))
    await conn.execute(active.delete().where(active.c.import_id == event.import_id))
    if event.status is ImportStatus.DONE and not event.no_change:
        await conn.execute(models.update().where(models.c.import_id == event.import_id,
                                                 models.c.integrated_at.is_(None)).values(integrated_at=event.at))


async def lock_establishment(db: Database, conn: AsyncConnection, import_id: str, site: str, est: str | None,
                             since: datetime) -> None:
    """The import holds its establishment's settings (all the site's for a site-wide one) until it ends."""
    await conn.execute(upsert(db, active, {"import_id": import_id, "site": site, "establishment": est,
                                           "since": since}, ["import_id"]))


async def record_models(db: Database, conn: AsyncConnection, import_id: str, site: str, mode: Mode,
                        by_establishment: dict[str, str], at: datetime) -> None:
    for est, sha in by_establishment.items():
        await conn.execute(upsert(db, models, {
            "import_id": import_id, "establishment": est, "site": site, "mode": mode.value, "sha256": sha,
            "recorded_at": at}, ["import_id", "establishment"]))


async def queue_mail(conn: AsyncConnection, import_id: str, site: str, recipients: list[str], subject: str,
                     body: str, at: datetime) -> None:
    await conn.execute(mails.insert().values(import_id=import_id, site=site, recipients=recipients,
                                             subject=subject, body=body, created_at=at))


async def barrier_seen(conn: AsyncConnection, marker: str) -> bool:
    return (await conn.execute(sa.select(directory_barriers.c.id)
                               .where(directory_barriers.c.id == marker))).first() is not None


async def record_barrier(db: Database, conn: AsyncConnection, marker: str, now: datetime) -> None:
    # Markers whose stage gave up waiting are never deleted by it: dropped after an hour.
    await conn.execute(directory_barriers.delete().where(directory_barriers.c.seen_at < now - timedelta(hours=1)))
    await conn.execute(upsert(db, directory_barriers, {"id": marker, "seen_at": now}, ["id"]))


async def drop_barrier(conn: AsyncConnection, marker: str) -> None:
    await conn.execute(directory_barriers.delete().where(directory_barriers.c.id == marker))


async def keep_newest_directory(db: Database, conn: AsyncConnection, site: str, est: str, sha256: str,
                                at: datetime) -> None:
    """The newest snapshot per establishment, by the reconciler's commit time: a late redelivery never
    rolls it back."""
    query = sa.select(directories).where(directories.c.site == site, directories.c.establishment == est)
    if db.is_postgres:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        await conn.execute(upsert(db, directories, {"site": site, "establishment": est, "sha256": sha256, "at": at},
                                  ["site", "establishment"], ["sha256", "at"]))
    elif as_utc(row.at) <= at:
        await conn.execute(directories.update().where(directories.c.site == site, directories.c.establishment == est)
                           .values(sha256=sha256, at=at))
