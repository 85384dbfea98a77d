"""thresholds handlers: stage command in → baseline + figures (outside the transaction) → one transaction
(StageWorker: the run, the outcome event, the next command, the notification and the e-mail to send)
→ events out. Lifecycle events (import.history.*) mark imports integrated: the baseline and the
automatic-import precondition come from them, never from another service's tables."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import smtplib
import time
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.thresholds import domain
from services.thresholds.store import (
    active,
    closures,
    directories,
    directory_barriers,
    lifecycle,
    mails,
    models,
    site_settings,
)
from shared.bus import Delivery, Outbox, StageResult
from shared.db import Database, as_utc, upsert
from shared.messages import (
    NOTIFICATIONS_EXCHANGE,
    DirectoryBarrier,
    DirectoryUpdated,
    ImportLifecycle,
    ImportStatus,
    Mode,
    StageCommand,
    StatusEvent,
    utcnow,
)
from shared.reconcile import matching_figures, reconcile_snapshot
from shared.settings import Settings
from shared.timetable import loads
from shared.web import Runtime

log = logging.getLogger("edt.thresholds")

LIFECYCLE_QUEUE = "edt.thresholds.lifecycle"
# Terminal lifecycle events (integrated imports, end of a site's lock) and the first stage event of an
# import (start of the lock).
LIFECYCLE_KEYS = ("import.history.#", "import.validation.running")
# ENT directory snapshots announced by the reconciler (DirectoryUpdated), and the stage's barrier markers.
DIRECTORY_QUEUE = "edt.thresholds.directory"
DIRECTORY_KEYS = ("directory.updated.*",)


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


# --- the stage --------------------------------------------------------------------------------------


@dataclass
class Prepared:
    checks: list[domain.EstablishmentCheck]
    emails: list[str]
    models: dict[str, str]  # establishment → sha256 of its canonical model
    missing_model: bool = False


class ThresholdsStage:
    def __init__(self, rt: Runtime, outbox: Outbox) -> None:
        self.rt = rt
        self.db: Database = rt.db
        self.settings: Settings = rt.settings
        self.outbox = outbox
        self.mail_wake = asyncio.Event()

    async def _wait_for_lifecycle(self, import_id: str) -> None:
        """The previous import's `import.history.done` is published when the next import is admitted: it
        may still be on its way. Wait (bounded) so that the baseline and the precondition see it."""
        deadline = time.monotonic() + self.settings.thresholds_lifecycle_wait_s
        while True:
            async with self.db.read() as conn:
                seen = (await conn.execute(sa.select(lifecycle.c.import_id)
                                           .where(lifecycle.c.import_id == import_id))).first()
            if seen is not None:
                return
            if time.monotonic() > deadline:
                log.warning("lifecycle of previous import %s not seen; deciding without it", import_id)
                return
            await asyncio.sleep(0.05)

    async def _baseline(self, conn: AsyncConnection, site: str, est: str) -> Any:
        return (await conn.execute(sa.select(models).where(
            models.c.site == site, models.c.establishment == est, models.c.integrated_at.is_not(None))
            .order_by(models.c.integrated_at.desc()).limit(1))).first()

    async def _manual_done_dates(self, conn: AsyncConnection, site: str, est: str) -> list[date]:
        rows = (await conn.execute(sa.select(lifecycle).where(
            lifecycle.c.site == site, lifecycle.c.status == ImportStatus.DONE.value,
            lifecycle.c.mode == Mode.MANUAL.value, lifecycle.c.no_change.is_(False)))).all()
        tz = ZoneInfo(self.settings.timezone)
        out = []
        for row in rows:
            covers = row.establishment == est or (row.establishment is None and est in (row.establishments or {}))
            at = as_utc(row.at)
            if covers and at is not None:
                out.append(at.astimezone(tz).date())
        return out

    async def _directory_barrier(self, import_id: str) -> None:
        """A directory uploaded just before this import must count. Its event was on the broker before the
        upload's answer (the reconciler flushes its outbox first), hence before this import's deposit, so it
        sits in our directory queue ahead of a marker sent now: once the marker has been consumed (FIFO,
        one message at a time), the event has been applied. Bounded like the lifecycle wait."""
        marker = f"{import_id}:{uuid.uuid4().hex[:8]}"
        await self.rt.bus.publish("", DIRECTORY_QUEUE, DirectoryBarrier(barrier=marker).to_bytes())
        deadline = time.monotonic() + self.settings.thresholds_lifecycle_wait_s
        while True:
            async with self.db.read() as conn:
                seen = (await conn.execute(sa.select(directory_barriers.c.id)
                                           .where(directory_barriers.c.id == marker))).first()
            if seen is not None:
                async with self.db.transaction() as conn:
                    await conn.execute(directory_barriers.delete().where(directory_barriers.c.id == marker))
                return
            if time.monotonic() > deadline:
                log.warning("directory barrier %s not seen; deciding with the directories known", marker)
                return
            await asyncio.sleep(0.02)

    async def prepare(self, cmd: StageCommand) -> Prepared:
        previous = cmd.artifacts.get("previous_import")
        if previous:
            await self._wait_for_lifecycle(previous)
        await self._directory_barrier(cmd.import_id)
        parts: dict[str, str] = dict(cmd.artifacts.get("timetables") or {})
        if not parts and cmd.establishment and cmd.artifacts.get("timetable_sha256"):
            parts = {cmd.establishment: cmd.artifacts["timetable_sha256"]}
        tz = self.settings.timezone
        today = cmd.started_at.astimezone(ZoneInfo(tz)).date()
        year_start = domain.school_year_start(cmd.started_at, self.settings.school_year_start, tz)
        async with self.db.read() as conn:
            settings, emails, _ = await load_settings(conn, cmd.site)
            inputs = []
            for est, sha in sorted(parts.items()):
                base = await self._baseline(conn, cmd.site, est)
                refusal = domain.automatic_import_refusal(cmd.mode, await self._manual_done_dates(conn, cmd.site, est),
                                                          year_start)
                directory = (await conn.execute(sa.select(directories.c.sha256).where(
                    directories.c.site == cmd.site, directories.c.establishment == est))).scalar()
                inputs.append((est, sha, base.sha256 if base else None, base.import_id if base else None, refusal,
                               directory))

        def compute() -> list[domain.EstablishmentCheck]:
            checks = []
            for est, sha, base_sha, base_id, refusal, directory in inputs:
                tt = self.rt.blobs.load(sha, loads)
                new = self.facts(sha)
                old = self.facts(base_sha) if base_sha else None
                # No directory for the establishment: the unreconciled controls stay "not computed".
                matching = (matching_figures(reconcile_snapshot(self.rt.blobs, sha, tt, directory))
                            if directory else None)
                found = domain.figures(old, new, today, matching)
                checks.append(domain.EstablishmentCheck(est, base_id, domain.evaluate(settings, found), refusal))
            return checks

        checks = await asyncio.to_thread(compute)  # CPU work off the event loop
        return Prepared(checks, emails, parts, missing_model=not parts)

    def facts(self, sha: str) -> domain.Facts:
        """A model's facts, derived once per process (the baseline's were derived when it was the new one)."""
        blobs = self.rt.blobs
        return blobs.derive(sha, "thresholds.facts", lambda: domain.facts_of(blobs.load(sha, loads)))

    async def apply(self, conn: AsyncConnection, cmd: StageCommand, prepared: Prepared) -> StageResult:
        if prepared.missing_model:
            raise RuntimeError("no canonical timetable in the command's artifacts")
        result = domain.decide(cmd.mode, cmd.dry_run, prepared.checks)
        # The establishment's own closure periods travel on: no session is generated on them.
        result.artifacts["closures"] = await load_closures(conn, cmd.site, sorted(prepared.models))
        if cmd.dry_run:
            return result  # nothing written: a dry run is never a baseline and notifies nobody
        now = utcnow()
        for est, sha in prepared.models.items():
            await conn.execute(upsert(self.db, models, {
                "import_id": cmd.import_id, "establishment": est, "site": cmd.site, "mode": cmd.mode.value,
                "sha256": sha, "recorded_at": now}, ["import_id", "establishment"]))
        if result.outcome in (ImportStatus.BLOCKED, ImportStatus.REJECTED):
            await self._notify(conn, cmd, result, prepared.emails)
        return result

    async def _notify(self, conn: AsyncConnection, cmd: StageCommand, result: StageResult, emails: list[str]) -> None:
        """Every deposit account with notify on must hear of it: an outbound message on edt.notifications
        (the ENT messaging delivers it to them), and an e-mail to the site's notification addresses."""
        kind = "blocked" if result.outcome is ImportStatus.BLOCKED else "refused"
        body = notification_body(cmd, result, kind)
        await self.outbox.add(conn, NOTIFICATIONS_EXCHANGE, f"threshold.{kind}.{cmd.site}",
                              json.dumps(body).encode(), message_id=f"{cmd.import_id}:threshold.{kind}")
        if self.settings.smtp_url and emails:
            subject, text = mail_text(body)
            await conn.execute(mails.insert().values(import_id=cmd.import_id, site=cmd.site, recipients=emails,
                                                     subject=subject, body=text, created_at=utcnow()))
            self.mail_wake.set()

    # --- lifecycle ----------------------------------------------------------------------------------

    async def on_lifecycle(self, delivery: Delivery) -> None:
        if delivery.routing_key.startswith("import.history."):
            event = ImportLifecycle.from_bytes(delivery.body)
            async with self.db.transaction() as conn:
                await conn.execute(upsert(self.db, lifecycle, {
                    "import_id": event.import_id, "site": event.site, "establishment": event.establishment,
                    "establishments": event.establishments, "mode": event.mode.value, "status": event.status.value,
                    "no_change": event.no_change, "at": event.at}, ["import_id"]))
                await conn.execute(active.delete().where(active.c.import_id == event.import_id))
                if event.status is ImportStatus.DONE and not event.no_change:
                    await conn.execute(models.update().where(models.c.import_id == event.import_id,
                                                             models.c.integrated_at.is_(None))
                                       .values(integrated_at=event.at))
            return
        status = StatusEvent.from_bytes(delivery.body)
        async with self.db.transaction() as conn:
            ended = (await conn.execute(sa.select(lifecycle.c.import_id)
                                        .where(lifecycle.c.import_id == status.import_id))).first()
            if ended is None:
                await conn.execute(upsert(self.db, active, {"import_id": status.import_id, "site": status.site,
                                                            "establishment": status.establishment,
                                                            "since": status.at}, ["import_id"]))

    async def on_directory(self, delivery: Delivery) -> None:
        """A DirectoryUpdated event: keep the newest snapshot per establishment (by the reconciler's commit
        time, so a late redelivery never rolls back); or one of our barrier markers: record it."""
        obj = json.loads(delivery.body)
        if "barrier" in obj:
            marker = DirectoryBarrier.model_validate(obj)
            now = utcnow()
            async with self.db.transaction() as conn:
                # Markers whose stage gave up waiting are never deleted by it: drop them after an hour.
                await conn.execute(directory_barriers.delete().where(
                    directory_barriers.c.seen_at < now - timedelta(hours=1)))
                await conn.execute(upsert(self.db, directory_barriers, {"id": marker.barrier, "seen_at": now},
                                          ["id"]))
            return
        event = DirectoryUpdated.model_validate(obj)
        async with self.db.transaction() as conn:
            query = sa.select(directories).where(directories.c.site == event.site,
                                                 directories.c.establishment == event.establishment)
            if self.db.is_postgres:
                query = query.with_for_update()
            row = (await conn.execute(query)).first()
            if row is None:
                await conn.execute(upsert(self.db, directories, {
                    "site": event.site, "establishment": event.establishment, "sha256": event.sha256, "at": event.at},
                    ["site", "establishment"], ["sha256", "at"]))
            elif as_utc(row.at) <= event.at:
                await conn.execute(directories.update().where(
                    directories.c.site == event.site, directories.c.establishment == event.establishment)
                    .values(sha256=event.sha256, at=event.at))

    # --- e-mail outbox ------------------------------------------------------------------------------

    async def send_pending_mails(self) -> int:
        url = self.settings.smtp_url
        if not url:
            return 0
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(mails).where(mails.c.sent_at.is_(None), mails.c.attempts < 5)
                                       .order_by(mails.c.id).limit(20))).all()
        sent = 0
        for row in rows:
            try:
                await asyncio.to_thread(send_mail, url, self.settings.smtp_from, list(row.recipients), row.subject,
                                        row.body)
                values: dict[str, Any] = {"sent_at": utcnow(), "attempts": row.attempts + 1, "last_error": None}
                sent += 1
            except Exception as exc:  # noqa: BLE001 - SMTP down: the row stays, tried again later
                log.warning("threshold e-mail %s not sent: %s", row.id, exc)
                values = {"attempts": row.attempts + 1, "last_error": f"{exc.__class__.__name__}: {exc}"}
            async with self.db.transaction() as conn:
                await conn.execute(mails.update().where(mails.c.id == row.id).values(**values))
        return sent

    async def mail_loop(self) -> None:
        while True:
            try:
                await self.send_pending_mails()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep the loop alive
                log.exception("threshold mail loop failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.mail_wake.wait(), timeout=1.0)
            self.mail_wake.clear()
            await asyncio.sleep(0.05)  # let the stage's transaction commit before reading


# --- notification contents --------------------------------------------------------------------------


def notification_body(cmd: StageCommand, result: StageResult, kind: str) -> dict[str, Any]:
    """The outbound message: who (site, establishment), which import and file, and each control named with
    its value, the computed figure and what to do."""
    return {
        "type": f"threshold.{kind}", "v": 1, "import_id": cmd.import_id, "site": cmd.site,
        "establishment": cmd.establishment, "establishments": cmd.establishments, "mode": cmd.mode.value,
        "file": cmd.file.model_dump(), "at": utcnow().isoformat(), "recipients": "deposit_accounts_with_notify",
        "message": result.message, "message_en": result.message_en,
        "controls": [{k: a.get(k) for k in ("control", "label", "establishment", "value", "computed", "blocking",
                                            "message", "message_en")}
                     for a in (result.alerts or []) if a.get("blocking") or kind == "refused"],
    }


def mail_text(body: dict[str, Any]) -> tuple[str, str]:
    where = body["establishment"] or "Tous"
    verb = "bloqué" if body["type"] == "threshold.blocked" else "refusé"
    subject = f"[EDT] Import automatique {verb} — site {body['site']}, établissement {where}"
    lines = ["Bonjour,", "",
             f"L'import automatique du fichier « {body['file']['name']} » (site {body['site']}, établissement "
             f"{where}, import {body['import_id']}) a été {verb}.", "", body["message"] or "", ""]
    for c in body["controls"]:
        lines.append(f"- {c['label']} : seuil {c['value']} %, calculé {c['computed']} %"
                     + (f" (établissement {c['establishment']})" if c.get("establishment") else ""))
        lines.append(f"  {c['message']}")
    lines += ["", "Consultez l'historique des imports pour le détail."]
    return subject, "\n".join(lines)


def send_mail(url: str, sender: str, recipients: list[str], subject: str, text: str) -> None:
    """Blocking SMTP send (run in a thread). URL: smtp://[user:pass@]host[:port][?starttls=1] or smtps://."""
    parts = urlsplit(url)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, ", ".join(recipients), subject
    msg.set_content(text)
    host = parts.hostname or "127.0.0.1"
    if parts.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(host, parts.port or 465, timeout=10)
    else:
        client = smtplib.SMTP(host, parts.port or 25, timeout=10)
    with client:
        if parse_qs(parts.query).get("starttls", ["0"])[0] in ("1", "true"):
            client.starttls()
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        client.send_message(msg)


def build_handlers(rt: Runtime, outbox: Outbox) -> ThresholdsStage:
    return ThresholdsStage(rt, outbox)
