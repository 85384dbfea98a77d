"""The e-mails of blocked and refused imports: an SMTP outbox. The stage writes a row in its transaction
(`store.mails`); `MailRelay` sends the pending rows once that transaction committed (it is kicked then)
and every `loop_seconds` for those SMTP refused earlier (5 attempts)."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import sqlalchemy as sa

from services.thresholds.store import mails
from shared.db import Database
from shared.messages import utcnow
from shared.outbox import LoopService
from shared.settings import Settings

log = logging.getLogger("edt.thresholds.mail")

MAX_ATTEMPTS = 5


class MailRelay(LoopService):
    loop_seconds = 1.0
    BATCH = 20

    def __init__(self, db: Database, settings: Settings, *, loop_seconds: float | None = None) -> None:
        super().__init__(loop_seconds)
        self.db = db
        self.settings = settings

    async def run_once(self) -> None:
        await self.send_pending()

    async def send_pending(self) -> int:
        url = self.settings.smtp_url
        if not url:
            return 0
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(mails).where(mails.c.sent_at.is_(None),
                                                              mails.c.attempts < MAX_ATTEMPTS)
                                       .order_by(mails.c.id).limit(self.BATCH))).all()
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
