"""Dropzone tables (sites, establishments, deposit accounts, site tokens, deposits) and their queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import Database, outbox_table, revoked_tokens_table, service_metadata, upsert

metadata = service_metadata("dropzone")

sites = sa.Table(
    "sites",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("require_encryption", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Set when the site's first import is integrated: deposit accounts exist only after it (seed 001).
    sa.Column("first_import_at", sa.DateTime(timezone=True), nullable=True),
)

establishments = sa.Table(
    "establishments",
    metadata,
    sa.Column("site", sa.String(64), sa.ForeignKey("dropzone.sites.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("uai", sa.String(16), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.UniqueConstraint("site", "uai", name="uq_dropzone_establishments_site_uai"),
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("login", sa.String(120), primary_key=True),
    sa.Column("site", sa.String(64), sa.ForeignKey("dropzone.sites.id", ondelete="CASCADE"), nullable=False),
    sa.Column("display_name", sa.String(255), nullable=False),
    sa.Column("first_name", sa.String(120), nullable=False),
    sa.Column("last_name", sa.String(120), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("notify", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("failed_logins", sa.Integer, nullable=False, default=0),
    sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_dropzone_accounts_site", "site"),
)

tokens = sa.Table(
    "site_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("site", sa.String(64), sa.ForeignKey("dropzone.sites.id", ondelete="CASCADE"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("label", sa.String(255), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),  # also signed into the token itself
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

deposits = sa.Table(
    "deposits",
    metadata,
    sa.Column("import_id", sa.String(32), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("target", sa.String(64), nullable=True),  # establishment of the URL; null = site URL
    sa.Column("establishment", sa.String(64), nullable=True),  # after routing by UAI; null = site-wide
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("account", sa.String(120), nullable=True),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
    sa.Column("rejection", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Retention (docs/privacy.md): when its import ended (lifecycle event), and when its file was let go.
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_dropzone_deposits_site", "site", "created_at"),
)

# Each (notification, account) handed to the ENT messaging once, however often the event is delivered.
notified = sa.Table(
    "account_notifications",
    metadata,
    sa.Column("notification_id", sa.String(64), primary_key=True),
    sa.Column("login", sa.String(120), primary_key=True),
    sa.Column("import_id", sa.String(32), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

outbox = outbox_table(metadata)
revoked_tokens = revoked_tokens_table(metadata)


# --- queries (the routes' and the handlers'; each takes the caller's connection) ---------------------


async def get_site(conn: AsyncConnection, site: str) -> Any:
    return (await conn.execute(sa.select(sites).where(sites.c.id == site))).first()


async def site_exists(conn: AsyncConnection, site: str) -> bool:
    return (await conn.execute(sa.select(sites.c.id).where(sites.c.id == site))).first() is not None


async def insert_site(conn: AsyncConnection, site: str, name: str, require_encryption: bool, at: datetime) -> None:
    await conn.execute(sites.insert().values(id=site, name=name, require_encryption=require_encryption,
                                             created_at=at))


async def update_site(conn: AsyncConnection, site: str, values: dict[str, Any]) -> bool:
    """False when there is no such site."""
    result = await conn.execute(sites.update().where(sites.c.id == site).values(**values))
    return bool(result.rowcount)


async def mark_first_import(conn: AsyncConnection, site: str, at: datetime) -> None:
    """The site's first integrated import (deposit accounts can be created from then on); later ones
    leave it."""
    await conn.execute(sites.update().where(sites.c.id == site, sites.c.first_import_at.is_(None))
                       .values(first_import_at=at))


async def site_establishments(conn: AsyncConnection, site: str) -> list[Any]:
    return list((await conn.execute(sa.select(establishments).where(establishments.c.site == site)
                                    .order_by(establishments.c.id))).all())


async def uai_owner(conn: AsyncConnection, site: str, uai: str, other_than: str) -> str | None:
    """The establishment of the site, other than `other_than`, that has this UAI."""
    row = (await conn.execute(sa.select(establishments.c.id).where(
        establishments.c.site == site, establishments.c.uai == uai, establishments.c.id != other_than))).first()
    return str(row.id) if row else None


async def put_establishment(conn: AsyncConnection, site: str, est: str, uai: str, name: str) -> bool:
    """Create or replace an establishment; True when it is new."""
    key = (establishments.c.site == site) & (establishments.c.id == est)
    if (await conn.execute(sa.select(establishments.c.id).where(key))).first():
        await conn.execute(establishments.update().where(key).values(uai=uai, name=name))
        return False
    await conn.execute(establishments.insert().values(site=site, id=est, uai=uai, name=name))
    return True


async def insert_token(conn: AsyncConnection, token_id: str, site: str, hashed: str, label: str | None,
                       at: datetime, expires_at: datetime | None = None) -> Any:
    await conn.execute(tokens.insert().values(id=token_id, site=site, token_hash=hashed, label=label,
                                              created_at=at, expires_at=expires_at))
    return (await conn.execute(sa.select(tokens).where(tokens.c.id == token_id))).one()


async def site_tokens(conn: AsyncConnection, site: str) -> list[Any]:
    """The site's tokens that are not revoked, oldest first."""
    return list((await conn.execute(sa.select(tokens).where(tokens.c.site == site, tokens.c.revoked_at.is_(None))
                                    .order_by(tokens.c.created_at, tokens.c.id))).all())


async def revoke_token(conn: AsyncConnection, site: str, token_id: str, at: datetime) -> bool:
    """False when the site has no such token, or it is revoked already."""
    result = await conn.execute(tokens.update().where(tokens.c.site == site, tokens.c.id == token_id,
                                                      tokens.c.revoked_at.is_(None)).values(revoked_at=at))
    return bool(result.rowcount)


async def record_revoked_token(db: Database, conn: AsyncConnection, token_id: str, site: str, at: datetime) -> None:
    """The dropzone's own copy of the revocation list (the other services fill theirs from TokenRevoked)."""
    await conn.execute(upsert(db, revoked_tokens, {"token_id": token_id, "site": site, "revoked_at": at},
                              ["token_id"]))


async def count_accounts(conn: AsyncConnection, site: str) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).select_from(accounts)
                                   .where(accounts.c.site == site))).scalar_one())


async def logins_starting(conn: AsyncConnection, prefix: str) -> set[str]:
    """The logins beginning with `prefix` (the candidates a new login must not collide with)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return set((await conn.execute(sa.select(accounts.c.login)
                                   .where(accounts.c.login.like(escaped + "%", escape="\\")))).scalars())


async def site_accounts(conn: AsyncConnection, site: str) -> list[Any]:
    return list((await conn.execute(sa.select(accounts).where(accounts.c.site == site)
                                    .order_by(accounts.c.created_at, accounts.c.login))).all())


async def get_account(conn: AsyncConnection, login: str) -> Any:
    return (await conn.execute(sa.select(accounts).where(accounts.c.login == login))).first()


async def insert_account(conn: AsyncConnection, **values: Any) -> Any:
    """The new account's row."""
    await conn.execute(accounts.insert().values(**values))
    return await get_account(conn, values["login"])


async def update_account(conn: AsyncConnection, site: str, login: str, values: dict[str, Any]) -> Any:
    """The account after the update (None when the site has no such account)."""
    key = (accounts.c.site == site) & (accounts.c.login == login)
    if values:
        await conn.execute(accounts.update().where(key).values(**values))
    return (await conn.execute(sa.select(accounts).where(key))).first()


async def delete_account(conn: AsyncConnection, site: str, login: str) -> bool:
    result = await conn.execute(accounts.delete().where(accounts.c.site == site, accounts.c.login == login))
    return bool(result.rowcount)


# --- WebDAV logins ------------------------------------------------------------------------------------


async def note_login(conn: AsyncConnection, login: str, at: datetime) -> None:
    """A successful login: the failures in a row and any lock are over."""
    await conn.execute(accounts.update().where(accounts.c.login == login).values(
        failed_logins=0, locked_until=None, last_login_at=at))


async def rehash_password(conn: AsyncConnection, login: str, old_hash: str, new_hash: str) -> None:
    """The same password under the current hash parameters, unless it changed meanwhile."""
    await conn.execute(accounts.update().where(accounts.c.login == login, accounts.c.password_hash == old_hash)
                       .values(password_hash=new_hash))


async def count_login_failure(conn: AsyncConnection, login: str) -> int | None:
    """One more failure in a row, counted in the database (guesses sent side by side all count); the
    count after it, None when there is no such account."""
    return (await conn.execute(accounts.update().where(accounts.c.login == login)
                               .values(failed_logins=accounts.c.failed_logins + 1)
                               .returning(accounts.c.failed_logins))).scalar_one_or_none()


async def lock_account(conn: AsyncConnection, login: str, until: datetime) -> None:
    await conn.execute(accounts.update().where(accounts.c.login == login).values(locked_until=until))


# --- deposits and their notifications -----------------------------------------------------------------


async def insert_deposit(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(deposits.insert().values(**values))


async def notified_accounts(conn: AsyncConnection, site: str) -> list[Any]:
    """The site's deposit accounts with `notify` on."""
    return list((await conn.execute(sa.select(accounts).where(accounts.c.site == site,
                                                              accounts.c.notify.is_(True)))).all())


async def note_notification(db: Database, conn: AsyncConnection, notification_id: str, login: str, import_id: str,
                            at: datetime) -> bool:
    """Record that a notification goes to an account; False when it went already (a redelivery)."""
    inserted = (await conn.execute(upsert(db, notified, {
        "notification_id": notification_id, "login": login, "import_id": import_id, "at": at},
        ["notification_id", "login"]).returning(notified.c.login))).first()
    return inserted is not None


# --- retention ----------------------------------------------------------------------------------------


async def end_deposit(conn: AsyncConnection, import_id: str, at: datetime) -> None:
    await conn.execute(deposits.update().where(deposits.c.import_id == import_id, deposits.c.ended_at.is_(None))
                       .values(ended_at=at))


async def expired_deposits(conn: AsyncConnection, ended_before: datetime) -> list[Any]:
    """Deposits whose import ended before `ended_before` and whose file is still kept."""
    return list((await conn.execute(sa.select(deposits.c.import_id, deposits.c.sha256).where(
        deposits.c.purged_at.is_(None), deposits.c.ended_at < ended_before))).all())


async def kept_files(conn: AsyncConnection) -> set[str]:
    """The sha256 of every deposited file still kept (another deposit of the same bytes keeps it)."""
    return set((await conn.execute(sa.select(deposits.c.sha256).where(deposits.c.purged_at.is_(None))
                                   .distinct())).scalars())


async def mark_purged(conn: AsyncConnection, import_ids: list[str], at: datetime) -> None:
    for i in range(0, len(import_ids), 500):
        await conn.execute(deposits.update().where(deposits.c.import_id.in_(import_ids[i:i + 500]))
                           .values(purged_at=at))
