"""Dropzone handlers: a complete file in (WebDAV or REST) → blob store → one transaction recording the
deposit and its status event (outbox) → published after commit. Also deposit accounts and their logins."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from services.dropzone import domain, store
from services.dropzone.store import accounts, deposits, establishments, notified, sites
from shared.bus import Delivery
from shared.db import Database, as_utc, upsert
from shared.messages import (
    DEPOSIT_ACKERS,
    NOTIFICATIONS_EXCHANGE,
    Deposit,
    DepositAck,
    Envelope,
    EstablishmentUpdated,
    FileRef,
    ImportLifecycle,
    ImportStatus,
    Mode,
    Stage,
    StatusEvent,
    StepStatus,
    utcnow,
)
from shared.observability import DEPOSITS
from shared.outbox import Outbox
from shared.settings import Settings
from shared.timetable import sniff_export
from shared.web import Problem, not_found

log = logging.getLogger("edt.dropzone")
AUTH_CACHE_S = 60.0


class Dropzone:
    def __init__(self, db: Database, blobs: Any, outbox: Outbox, settings: Settings) -> None:
        self.db = db
        self.blobs = blobs
        self.outbox = outbox
        self.settings = settings
        self.hasher = PasswordHasher()
        self.logins = domain.LoginCache(AUTH_CACHE_S)  # the one cache of WebDAV logins
        # import id → the services whose acknowledgement it still waits for, and the event set when none
        self._acks: dict[str, tuple[set[str], asyncio.Event]] = {}

    # --- sites ------------------------------------------------------------------------------------

    async def site(self, site: str) -> Any:
        async with self.db.read() as conn:
            return (await conn.execute(sa.select(sites).where(sites.c.id == site))).first()

    async def site_establishments(self, site: str) -> dict[str, str] | None:
        named = await self._establishments(site)
        return None if named is None else {est: uai for est, (uai, _) in named.items()}

    async def _establishments(self, site: str) -> dict[str, tuple[str, str]] | None:
        """Establishment id → (UAI, name) of the site; None when there is no such site."""
        async with self.db.read() as conn:
            if (await conn.execute(sa.select(sites.c.id).where(sites.c.id == site))).first() is None:
                return None
            rows = (await conn.execute(sa.select(establishments).where(establishments.c.site == site))).all()
        return {r.id: (r.uai, r.name) for r in rows}

    async def put_establishment(self, site: str, est: str, uai: str, name: str) -> bool:
        """Create or replace an establishment (True when new); the services that show its name hear of it
        (EstablishmentUpdated, in the same transaction)."""
        async with self.outbox.unit_of_work() as uow:
            if not await store.site_exists(uow.conn, site):
                raise not_found("Site")
            clash = await store.uai_owner(uow.conn, site, uai, other_than=est)
            if clash:
                raise Problem(409, "Conflict", f"UAI {uai} already belongs to establishment {clash}",
                              code="uai_taken")
            created = await store.put_establishment(uow.conn, site, est, uai, name)
            await uow.emit(EstablishmentUpdated(site=site, establishment=est, uai=uai, name=name))
        return created

    # --- deposits ---------------------------------------------------------------------------------

    async def take_deposit(self, site: str, target: str | None, name: str, path: Path, *, source: str,
                           account: str | None, mode: Mode, dry_run: bool = False, review: bool = False) -> str:
        """Record a complete file as a deposit: durable in the blob store and the deposits table before
        anything is published. Returns the import id."""
        site_row = await self.site(site)
        if site_row is None:
            raise not_found("Site")
        named = await self._establishments(site) or {}
        ests = {est: uai for est, (uai, _) in named.items()}
        if target is not None and target not in ests:
            raise not_found("Establishment")
        sniff = await asyncio.to_thread(sniff_export, path)
        sha, size = await asyncio.to_thread(self.blobs.put_file, path)
        route = domain.route_deposit(target, sniff.uai, sniff.establishment_uais, ests,
                                     encrypted=sniff.kind == "encrypted")
        error = route.error or domain.encryption_refusal(bool(site_row.require_encryption), sniff.kind)
        import_id = uuid.uuid4().hex
        now = utcnow()
        establishment = route.establishment if error is None else target
        event = StatusEvent(
            import_id=import_id, site=site, establishment=establishment, stage=Stage.DEPOSIT,
            step_status=StepStatus.ERROR if error else StepStatus.OK, at=now,
            message=error[0] if error else None, message_en=error[1] if error else None,
            outcome=ImportStatus.REJECTED if error else None,
            deposit=Deposit(file=FileRef(name=name, sha256=sha, size=size), mode=mode, dry_run=dry_run,
                            review=review and mode is Mode.MANUAL and not dry_run,
                            source="webdav" if source == "webdav" else "rest", account=account,
                            establishments=route.establishments,
                            target_uais=sorted(route.establishments.values()),
                            establishment_names={est: name for est, (_, name) in named.items()}))
        pending = self._acks[import_id] = (set(DEPOSIT_ACKERS), asyncio.Event())
        try:
            async with self.outbox.unit_of_work() as uow:
                await uow.conn.execute(deposits.insert().values(
                    import_id=import_id, site=site, target=target, establishment=establishment, name=name,
                    sha256=sha, size=size, source=source, account=account, mode=mode.value, dry_run=dry_run,
                    rejection=error[0] if error else None, created_at=now))
                await uow.emit(event, message_id=import_id)
            DEPOSITS.labels(source).inc()
            log.info("deposit %s site=%s target=%s name=%s sha=%s size=%d", import_id, site, target, name,
                     sha[:12], size)
            await self._acknowledged(import_id, pending[1])
        finally:
            self._acks.pop(import_id, None)
        return import_id

    async def _acknowledged(self, import_id: str, done: asyncio.Event) -> None:
        """Read-your-writes: wait until the import is recorded by the notifier (readable, listed) and the
        establishment's settings are locked by threshold control. The deposit is durable already: past the
        bound (a service down), the client is answered anyway and the import appears when it is back."""
        try:
            async with asyncio.timeout(self.settings.deposit_ack_timeout_s):
                await done.wait()
        except TimeoutError:
            log.warning("deposit %s: not acknowledged within %.0f s (%s); answering anyway", import_id,
                        self.settings.deposit_ack_timeout_s, ", ".join(sorted(self._acks[import_id][0])))

    async def on_ack(self, delivery: Delivery) -> None:
        """A service recorded a deposit (deposit.ack.<service>): the last one awaited wakes its request."""
        ack = DepositAck.from_bytes(delivery.body)
        waiting = self._acks.get(ack.import_id)
        if waiting is not None:
            waiting[0].discard(ack.by)
            if not waiting[0]:
                waiting[1].set()

    # --- lifecycle --------------------------------------------------------------------------------

    async def on_lifecycle(self, delivery: Delivery) -> None:
        """The first integrated import opens deposit accounts for the site (seed 001)."""
        event = ImportLifecycle.from_bytes(delivery.body)
        if event.status is not ImportStatus.DONE:
            return
        async with self.db.transaction() as conn:
            await conn.execute(sites.update().where(sites.c.id == event.site, sites.c.first_import_at.is_(None))
                               .values(first_import_at=event.at))

    async def on_notification(self, delivery: Delivery) -> None:
        """A blocked or refused import (thresholds, `threshold.*` on edt.notifications): every deposit account
        of the site with `notify` on gets its own message for the ENT messaging (seed 001: « Etre notifié
        lorsque l'import automatique rencontre un problème »), once."""
        event = json.loads(delivery.body)
        site = event.get("site")
        # The publisher's message id names the notification (a hash keeps it within the column's width).
        notification_id = hashlib.sha256((delivery.message_id or "").encode() or delivery.body).hexdigest()[:32]
        async with self.outbox.unit_of_work() as uow:
            rows = (await uow.conn.execute(sa.select(accounts).where(accounts.c.site == site,
                                                                     accounts.c.notify.is_(True)))).all()
            for account in rows:
                inserted = (await uow.conn.execute(upsert(self.db, notified, {
                    "notification_id": notification_id, "login": account.login,
                    "import_id": event.get("import_id", ""), "at": utcnow()}, ["notification_id", "login"])
                    .returning(notified.c.login))).first()
                if inserted is None:
                    continue  # already handed over
                message = {**event, "type": "account.notification", "cause": event.get("type"),
                           "recipient": {"login": account.login, "display_name": account.display_name,
                                         "first_name": account.first_name, "last_name": account.last_name}}
                message_id = hashlib.sha256(f"{notification_id}:{account.login}".encode()).hexdigest()[:32]
                await uow.emit(Envelope(NOTIFICATIONS_EXCHANGE, f"account.{site}.{account.login}",
                                        json.dumps(message).encode(), message_id))

    # --- deposit accounts -------------------------------------------------------------------------

    async def create_account(self, site: str, display_name: str, first_name: str, last_name: str,
                             notify: bool) -> tuple[Any, str]:
        password = domain.generate_password()
        hashed = await asyncio.to_thread(self.hasher.hash, password)
        async with self.db.transaction() as conn:
            site_row = (await conn.execute(sa.select(sites).where(sites.c.id == site))).first()
            if site_row is None:
                raise not_found("Site")
            count = (await conn.execute(sa.select(sa.func.count()).select_from(accounts)
                                        .where(accounts.c.site == site))).scalar_one()
            refusal = domain.account_creation_refusal(count, site_row.first_import_at)
            if refusal:
                raise Problem(409, "Conflict", refusal[0], code="account_refused", detail_en=refusal[1])
            taken = set((await conn.execute(sa.select(accounts.c.login))).scalars())
            try:
                login = domain.make_login(first_name, last_name, taken)
            except ValueError as exc:
                raise Problem(422, "Unprocessable Content", domain.NAME_REQUIRED, code="name_required") from exc
            now = utcnow()
            await conn.execute(accounts.insert().values(
                login=login, site=site, display_name=display_name, first_name=first_name, last_name=last_name,
                password_hash=hashed, notify=notify, created_at=now, password_changed_at=now, failed_logins=0))
            row = (await conn.execute(sa.select(accounts).where(accounts.c.login == login))).one()
        return row, password

    async def regenerate_password(self, site: str, login: str) -> tuple[Any, str]:
        password = domain.generate_password()
        hashed = await asyncio.to_thread(self.hasher.hash, password)
        async with self.db.transaction() as conn:
            result = await conn.execute(accounts.update().where(accounts.c.site == site, accounts.c.login == login)
                                        .values(password_hash=hashed, password_changed_at=utcnow(),
                                                failed_logins=0, locked_until=None))
            if result.rowcount == 0:
                raise not_found("Account")
            row = (await conn.execute(sa.select(accounts).where(accounts.c.login == login))).one()
        return row, password

    # --- WebDAV logins ----------------------------------------------------------------------------

    async def authenticate(self, login: str, password: str, client_ip: str = "") -> str | None:
        """The site of a deposit account whose password matches, else None. Failures are slowed down and
        lock the account after `login_max_failures` (it unlocks after `login_lockout_s`)."""
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(accounts).where(accounts.c.login == login))).first()
        now = utcnow()
        if row is None:
            await asyncio.sleep(domain.failure_delay(1))
            return None
        state = domain.LoginState(row.failed_logins, as_utc(row.locked_until))
        if domain.is_locked(state, now):
            log.warning("login refused: %s is locked until %s (from %s)", login, state.locked_until, client_ip)
            await asyncio.sleep(domain.failure_delay(1))
            return None
        key = self.logins.key(login, row.password_hash, password)
        if self.logins.hit(key, time.monotonic()):
            return str(row.site)
        try:
            await asyncio.to_thread(self.hasher.verify, row.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            new = domain.after_failed_login(state, now, self.settings.login_max_failures,
                                            timedelta(seconds=self.settings.login_lockout_s))
            async with self.db.transaction() as conn:
                await conn.execute(accounts.update().where(accounts.c.login == login).values(
                    failed_logins=new.failed, locked_until=new.locked_until))
            log.warning("failed login for %s from %s (%d)", login, client_ip, new.failed)
            await asyncio.sleep(domain.failure_delay(new.failed))
            return None
        self.logins.remember(key, time.monotonic())
        if row.failed_logins or row.last_login_at is None:
            async with self.db.transaction() as conn:
                await conn.execute(accounts.update().where(accounts.c.login == login).values(
                    failed_logins=0, locked_until=None, last_login_at=now))
        return str(row.site)
