"""Dropzone handlers: a complete file in (WebDAV or REST) → blob store → one transaction recording the
deposit and its status event (outbox) → published after commit. Also deposit accounts and their logins."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from services.dropzone import domain, store
from services.dropzone.davguard import DepositLocks
from shared.bus import AckWaiter, Delivery
from shared.db import Database, as_utc
from shared.messages import (
    DEPOSIT_ACKERS,
    ESTABLISHMENT_ACKERS,
    NOTIFICATIONS_EXCHANGE,
    REVOCATION_ACKERS,
    AccessRecorded,
    Deposit,
    DepositAck,
    Envelope,
    EstablishmentAck,
    EstablishmentUpdated,
    FileIdent,
    FileRef,
    ImportLifecycle,
    ImportStatus,
    Mode,
    PrivacyRequest,
    Stage,
    StatusEvent,
    StepStatus,
    TokenRevocationAck,
    TokenRevoked,
    utcnow,
)
from shared.observability import DEPOSITS, log_context, span
from shared.outbox import Outbox
from shared.settings import Settings
from shared.stage import UnitOfWork
from shared.timetable import sniff_export
from shared.web import Problem, not_found

log = logging.getLogger("edt.dropzone")
AUTH_CACHE_S = 60.0
T = TypeVar("T")
KDF_THREADS = max(1, min(2, os.cpu_count() or 1))  # argon2 computations at once


def password_hasher() -> PasswordHasher:
    """argon2id at OWASP's first recommended setting (19 MiB, 2 passes, 1 lane): 17 ms of one core per
    login, where argon2-cffi's default (64 MiB, 3 passes, 4 lanes) took 165 ms — a sixth of the machine in
    a 300-site herd of logins. The passwords are the product's own (10 random letters and digits, about
    60 bits): finding one from a stolen table at this setting takes some 10^8 core-years. Hashes made with
    other parameters still verify, and are made again with these at their next successful login."""
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class Dropzone:
    def __init__(self, db: Database, blobs: Any, outbox: Outbox, settings: Settings,
                 locks: DepositLocks | None = None) -> None:
        self.db = db
        # The WebDAV folder's locks (shared with the WebDAV app): an account's go with its password.
        self.locks = locks if locks is not None else DepositLocks(settings.webdav_lock_timeout_s)
        self.blobs = blobs
        self.outbox = outbox
        self.settings = settings
        self.hasher = password_hasher()
        # An argon2 hash holds its memory while it runs (64 MB for an older account's): a herd of first logins
        # at once must not hold one per thread of the default pool (six), so they queue for as many as there
        # are cores.
        self._kdf = concurrent.futures.ThreadPoolExecutor(KDF_THREADS, thread_name_prefix="argon2")
        self.logins = domain.LoginCache(AUTH_CACHE_S)  # the one cache of WebDAV logins
        self.failures = domain.CallerFailures(settings.login_lockout_s)
        # Verified for an unknown login, so that it costs what a known one does.
        self._dummy_hash = self.hasher.hash(domain.generate_password())
        # deposits and revocations this process answers once the other services have recorded them
        self.acks = AckWaiter()

    # --- sites ------------------------------------------------------------------------------------

    async def site(self, site: str) -> Any:
        async with self.db.read() as conn:
            return await store.get_site(conn, site)

    async def site_establishments(self, site: str) -> dict[str, str] | None:
        named = await self._establishments(site)
        return None if named is None else {est: uai for est, (uai, _) in named.items()}

    async def _establishments(self, site: str) -> dict[str, tuple[str, str]] | None:
        """Establishment id → (UAI, name) of the site; None when there is no such site."""
        async with self.db.read() as conn:
            if not await store.site_exists(conn, site):
                return None
            rows = await store.site_establishments(conn, site)
        return {r.id: (r.uai, r.name) for r in rows}

    async def put_establishment(self, site: str, est: str, uai: str, name: str) -> bool:
        """Create or replace an establishment (True when new); the services that show its name hear of it
        (EstablishmentUpdated, in the same transaction). Answered once the services that serve routes under
        the establishment have recorded it (bounded like deposits): the next request there finds it."""
        key = f"establishment:{site}:{est}"
        self.acks.expect(key, ESTABLISHMENT_ACKERS)
        try:
            async with self.outbox.unit_of_work() as uow:
                if not await store.site_exists(uow.conn, site):
                    raise not_found("Site")
                clash = await store.uai_owner(uow.conn, site, uai, other_than=est)
                if clash:
                    raise Problem(409, "Conflict", f"UAI {uai} already belongs to establishment {clash}",
                                  code="uai_taken")
                created = await store.put_establishment(uow.conn, site, est, uai, name)
                await uow.emit(EstablishmentUpdated(site=site, establishment=est, uai=uai, name=name))
            missing, _ = await self.acks.wait(key, self.settings.deposit_ack_timeout_s)
        finally:
            self.acks.forget(key)
        if missing:
            log.warning("establishment %s/%s: not acknowledged by %s within %.0f s", site, est,
                        ", ".join(sorted(missing)), self.settings.deposit_ack_timeout_s)
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
        sniff = await asyncio.to_thread(self._sniff, path)
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
        self.acks.expect(f"deposit:{import_id}", DEPOSIT_ACKERS)
        # The import's trace starts here: its status event carries it to the notifier, then every stage.
        with log_context(import_id=import_id, site=site, establishment=establishment, stage=Stage.DEPOSIT.value), \
                span("deposit", import_id=import_id, site=site, establishment=establishment, stage="deposit",
                     source=source):
            try:
                async with self.outbox.unit_of_work() as uow:
                    await store.insert_deposit(
                        uow.conn, import_id=import_id, site=site, target=target, establishment=establishment,
                        name=name, sha256=sha, size=size, source=source, account=account, mode=mode.value,
                        dry_run=dry_run, rejection=error[0] if error else None, created_at=now)
                    await uow.emit(event, message_id=import_id)
                DEPOSITS.labels(source).inc()
                log.info("deposit target=%s name=%s sha=%s size=%d source=%s", target, name, sha[:12], size, source)
                # Read-your-writes: answer once the import is recorded by the notifier (readable, listed) and
                # the establishment's settings are locked by threshold control. The deposit is durable already:
                # past the bound, it goes on and appears when the service is back; without the history's
                # record its id would answer 404, so the client is told that instead of given the id.
                missing, _ = await self.acks.wait(f"deposit:{import_id}", self.settings.deposit_ack_timeout_s)
                if missing:
                    log.warning("deposit %s: not acknowledged within %.0f s (%s)", import_id,
                                self.settings.deposit_ack_timeout_s, ", ".join(sorted(missing)))
                if domain.history_missed(missing):
                    raise domain.DepositNotListed(import_id)
            finally:
                self.acks.forget(f"deposit:{import_id}")
        return import_id

    def _sniff(self, path: Path) -> Any:
        """The deposit-time look at a file, plaintext or sealed (the WebDAV folder seals what it holds)."""
        with self.blobs.keyring.open(path) as f:
            return sniff_export(f)

    async def on_ack(self, delivery: Delivery) -> None:
        """A service recorded a deposit (deposit.ack.<service>) or a revocation (token.ack.<service>): the
        last one awaited wakes its request."""
        if delivery.routing_key.startswith("establishment."):
            known = EstablishmentAck.from_bytes(delivery.body)
            self.acks.ack(f"establishment:{known.site}:{known.establishment}", known.by)
            return
        if delivery.routing_key.startswith("token."):
            revoked = TokenRevocationAck.from_bytes(delivery.body)
            self.acks.ack(f"token:{revoked.token_id}", revoked.by)
            return
        ack = DepositAck.from_bytes(delivery.body)
        self.acks.ack(f"deposit:{ack.import_id}", ack.by)

    # --- site tokens ------------------------------------------------------------------------------

    async def revoke_token(self, site: str, token_id: str) -> set[str]:
        """Revoke a site token in every service at once: the dropzone's own list in this transaction, the
        others' from the TokenRevoked event, each acknowledged before this returns (bounded like deposits).
        Returns the services that did not acknowledge in time (empty normally). 404 for an unknown token or
        one already revoked."""
        key = f"token:{token_id}"
        self.acks.expect(key, REVOCATION_ACKERS)
        try:
            async with self.outbox.unit_of_work() as uow:
                now = utcnow()
                if not await store.revoke_token(uow.conn, site, token_id, now):
                    raise not_found("Token")
                await store.record_revoked_token(self.db, uow.conn, token_id, site, now)
                await uow.emit(TokenRevoked(token_id=token_id, site=site, at=now))
            missing, _ = await self.acks.wait(key, self.settings.deposit_ack_timeout_s)
        finally:
            self.acks.forget(key)
        if missing:
            log.warning("revocation of token %s: not acknowledged by %s within %.0f s", token_id,
                        ", ".join(sorted(missing)), self.settings.deposit_ack_timeout_s)
        return missing

    # --- lifecycle --------------------------------------------------------------------------------

    async def on_lifecycle(self, delivery: Delivery) -> None:
        """An import ended: its file's retention starts (docs/privacy.md); the first integrated import opens
        deposit accounts for the site (seed 001)."""
        event = ImportLifecycle.from_bytes(delivery.body)
        async with self.db.transaction() as conn:
            await store.end_deposit(conn, event.import_id, event.at)
            if event.status is ImportStatus.DONE:
                await store.mark_first_import(conn, event.site, event.at)

    async def file_read(self, site: str, path: str, login: str) -> None:
        """A deposit account reads a file of the WebDAV folder back: into the access log (outbox) first."""
        async with self.outbox.unit_of_work() as uow:
            await uow.emit(AccessRecorded(actor=login, actor_kind="account", action="webdav.read",
                                          resource=f"/webdav{path}", site=site, service="dropzone"))

    # --- retention --------------------------------------------------------------------------------

    async def purge(self, uow: UnitOfWork, now: datetime | None = None) -> dict[str, int]:
        """The deposited files whose import ended more than EDT_RETENTION_SOURCE_DAYS ago leave the blob
        store (unless a later deposit of the same bytes still keeps them); the deposit rows stay, marked.
        Kept files under a retired key are sealed again with the current one."""
        now = now or utcnow()
        expired = await store.expired_deposits(uow.conn, now - timedelta(days=self.settings.retention_source_days))
        await store.mark_purged(uow.conn, [r.import_id for r in expired], now)
        kept = await store.kept_files(uow.conn)
        gone = sorted({r.sha256 for r in expired} - kept)

        def files() -> tuple[int, int]:
            return sum(self.blobs.delete(sha) for sha in gone), sum(self.blobs.reseal(sha) for sha in kept
                                                                       if self.blobs.exists(sha))

        deleted, resealed = await asyncio.to_thread(files)
        return {"deposits_expired": len(expired), "source_files_deleted": deleted, "resealed": resealed}

    async def on_privacy(self, uow: UnitOfWork, request: PrivacyRequest) -> tuple[dict[str, Any], list[FileIdent]]:
        """Retention on demand (the dropzone holds nothing by person: its files expire with retention)."""
        return (await self.purge(uow) if request.action == "retention" else {}), []

    async def purge_now(self) -> dict[str, int]:
        async with self.outbox.unit_of_work() as uow:
            return await self.purge(uow)

    async def on_notification(self, delivery: Delivery) -> None:
        """A blocked or refused import (thresholds, `threshold.*` on edt.notifications): every deposit account
        of the site with `notify` on gets its own message for the ENT messaging (seed 001: « Etre notifié
        lorsque l'import automatique rencontre un problème »), once."""
        event = json.loads(delivery.body)
        site = event.get("site")
        # The publisher's message id names the notification (a hash keeps it within the column's width).
        notification_id = hashlib.sha256((delivery.message_id or "").encode() or delivery.body).hexdigest()[:32]
        async with self.outbox.unit_of_work() as uow:
            for account in await store.notified_accounts(uow.conn, site):
                if not await store.note_notification(self.db, uow.conn, notification_id, account.login,
                                                     event.get("import_id", ""), utcnow()):
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
        hashed = await self._slow_hash(self.hasher.hash, password)
        await self._first_import_seen(site)
        async with self.db.transaction() as conn:
            site_row = await store.get_site(conn, site)
            if site_row is None:
                raise not_found("Site")
            count = await store.count_accounts(conn, site)
            refusal = domain.account_creation_refusal(count, site_row.first_import_at)
            if refusal:
                raise Problem(409, "Conflict", refusal[0], code="account_refused", detail_en=refusal[1])
            try:
                base = domain.login_base(first_name, last_name)
            except ValueError as exc:
                raise Problem(422, "Unprocessable Content", domain.NAME_REQUIRED, code="name_required") from exc
            # Logins are unique across sites: two creations of the same name, anywhere, take turns.
            await self.db.advisory_lock(conn, "account-login", base)
            login = domain.make_login(first_name, last_name, await store.logins_starting(conn, base))
            now = utcnow()
            row = await store.insert_account(
                conn, login=login, site=site, display_name=display_name, first_name=first_name, last_name=last_name,
                password_hash=hashed, notify=notify, created_at=now, password_changed_at=now, failed_logins=0)
        return row, password

    async def regenerate_password(self, site: str, login: str) -> tuple[Any, str]:
        password = domain.generate_password()
        hashed = await self._slow_hash(self.hasher.hash, password)
        await self._first_import_seen(site)
        async with self.db.transaction() as conn:
            row = await store.update_account(conn, site, login, {
                "password_hash": hashed, "password_changed_at": utcnow(), "failed_logins": 0, "locked_until": None})
            if row is None:
                raise not_found("Account")
        self.drop_locks(login)
        return row, password

    async def delete_account(self, site: str, login: str) -> bool:
        async with self.db.transaction() as conn:
            deleted = await store.delete_account(conn, site, login)
        if deleted:
            self.drop_locks(login)
        return bool(deleted)

    def drop_locks(self, login: str) -> None:
        """An account whose password changed or that is gone holds no WebDAV lock any more (a crashed client
        of its would otherwise keep its files locked)."""
        released = self.locks.release_principal(login)
        if released:
            log.info("released %d WebDAV lock(s) of %s", released, login)

    # --- WebDAV logins ----------------------------------------------------------------------------

    async def authenticate(self, login: str, password: str, client_ip: str = "") -> str | None:
        """The site of a deposit account whose password matches, else None. The `login_max_failures`-th
        failure in a row locks the account for `login_lockout_s` (counted atomically: guesses sent side by
        side all count).

        Every refusal takes one path, whether the login is unknown, the account locked or the password
        wrong: a hash verification (against a dummy hash for an unknown login), then the slow-down of the
        caller's own failures (`domain.CallerFailures`), counted from the request's start: the refusal comes
        when the slow-down ends, however long the verification took (an older account's hash costs more)."""
        started = time.monotonic()
        async with self.db.read() as conn:
            row = await store.get_account(conn, login)
        now = utcnow()
        locked = row is not None and domain.is_locked(domain.LoginState(row.failed_logins,
                                                                        as_utc(row.locked_until)), now)
        if row is not None and not locked:
            key = self.logins.key(login, row.password_hash, password)
            if self.logins.hit(key, time.monotonic()):
                return str(row.site)
        matches = await self._slow_hash(self._verify, row.password_hash if row is not None else self._dummy_hash,
                                          password)
        if row is not None and matches and not locked:
            rehashed = (await self._slow_hash(self.hasher.hash, password)
                        if self.hasher.check_needs_rehash(row.password_hash) else None)
            self.logins.remember(self.logins.key(login, rehashed, password) if rehashed else key, time.monotonic())
            if row.failed_logins or row.last_login_at is None or rehashed:
                async with self.db.transaction() as conn:
                    await store.note_login(conn, login, now)
                    if rehashed:
                        await store.rehash_password(conn, login, row.password_hash, rehashed)
            return str(row.site)
        if row is not None:
            await self._count_failure(login, now, locked)
        log.warning("login refused for %s from %s%s", login, client_ip, " (locked)" if locked else "")
        delay = domain.failure_delay(self.failures.add(client_ip, time.monotonic()))
        await asyncio.sleep(max(0.0, started + delay - time.monotonic()))
        return None

    async def _first_import_seen(self, site: str) -> None:
        """The site's first import reaches this service (import.history.done) a moment after the history shows
        it `done`: an account asked for in that moment waits for it (EDT_IMPORT_END_WAIT_S) instead of being
        refused. Returns at once when the site has it; a site that has none is refused after the wait."""
        deadline = time.monotonic() + self.settings.import_end_wait_s
        while time.monotonic() < deadline:
            async with self.db.read() as conn:
                row = await store.get_site(conn, site)
            if row is None or row.first_import_at is not None:
                return
            await asyncio.sleep(0.05)  # polls the site's row: the event may be handled by another process

    async def _slow_hash(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._kdf, fn, *args)

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return bool(self.hasher.verify(stored_hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def _count_failure(self, login: str, now: datetime, locked: bool) -> None:
        """One more failure in a row (an atomic increment); the threshold locks the account. A locked
        account's lock is not extended: its owner's client retrying meanwhile would never get back in."""
        async with self.db.transaction() as conn:
            failed = await store.count_login_failure(conn, login)
            if failed is not None and not locked and domain.should_lock(failed, self.settings.login_max_failures):
                until = now + timedelta(seconds=self.settings.login_lockout_s)
                await store.lock_account(conn, login, until)
                log.warning("deposit account %s locked until %s after %d failed logins", login, until, failed)
