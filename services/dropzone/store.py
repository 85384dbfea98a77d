"""Dropzone tables: sites, establishments, deposit accounts, site tokens, deposits."""

from __future__ import annotations

import sqlalchemy as sa

from shared.db import outbox_table, service_metadata

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
