"""Dropzone rules: pure functions, no I/O."""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import hmac
import posixpath
import re
import secrets
import string
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

# Names written by Windows' WebDAV redirector, Office and LibreOffice while a file is in progress:
# they are renamed to their final name when complete, and only that final name is a deposit.
TEMPORARY_NAME_PATTERNS: tuple[str, ...] = ("~$*", "*.tmp", ".~lock*", "*.part", "*.partial", "._*", ".DS_Store")


def is_deposit_candidate(name: str, size: int) -> bool:
    """A file landing under `name` with `size` bytes is a deposit (seed 001: "dépôt du fichier d'export").

    Empty files (a 0-byte PUT before the real write) and temporary names are not deposits.
    """
    base = posixpath.basename(name.rstrip("/"))
    if size <= 0 or not base:
        return False
    lowered = base.lower()
    return not any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in TEMPORARY_NAME_PATTERNS)


# --- deposit accounts (seed 001, « Comptes d'accès ») ---------------------------------------------


MAX_ACCOUNTS_PER_SITE = 5
PASSWORD_LENGTH = 10
PASSWORD_ALPHABET = string.ascii_letters + string.digits


def ascii_fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def login_part(name: str) -> str:
    """'Jean Philippe' → 'jean-philippe', 'Lévêque' → 'leveque' (the seed's logins are lower-case ASCII)."""
    folded = ascii_fold(name).lower().strip()
    folded = re.sub(r"[\s_'’]+", "-", folded)
    folded = re.sub(r"[^a-z0-9-]", "", folded)
    return re.sub(r"-{2,}", "-", folded).strip("-")


def login_base(first_name: str, last_name: str) -> str:
    """Seed 001: `emp.<prénom>.<nom>` (« emp.thibault.bourgeois »), before de-duplication."""
    first, last = login_part(first_name), login_part(last_name)
    if not first and not last:
        raise ValueError("a first or last name is needed")
    return "emp." + ".".join(p for p in (first, last) if p)


def make_login(first_name: str, last_name: str, taken: Collection[str]) -> str:
    """The login base, de-duplicated with a number (`taken`: the logins starting with that base)."""
    base = login_base(first_name, last_name)
    login, n = base, 1
    while login in taken:
        n += 1
        login = f"{base}{n}"
    return login


def generate_password() -> str:
    """10 characters, letters and digits, each class present (seed 001: « qAz8TOHpdf »)."""
    while True:
        pw = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))
        if any(c.islower() for c in pw) and any(c.isupper() for c in pw) and any(c.isdigit() for c in pw):
            return pw


def account_creation_refusal(existing: int, first_import_at: datetime | None) -> tuple[str, str] | None:
    """Why a new deposit account cannot be created, or None.

    Seed 001: accounts exist only once the first import is integrated, and at most 5 per site."""
    if first_import_at is None:
        return ("Les comptes d'accès ne peuvent être créés qu'après le premier import de l'emploi du temps "
                "dans l'ENT (import manuel via l'assistant).",
                "Deposit accounts can be created only after the site's first timetable import.")
    if existing >= MAX_ACCOUNTS_PER_SITE:
        return (f"Vous pouvez choisir jusqu'à {MAX_ACCOUNTS_PER_SITE} comptes d'accès : supprimez-en un avant "
                "d'en ajouter un autre.",
                f"At most {MAX_ACCOUNTS_PER_SITE} deposit accounts per site: delete one first.")
    return None


@dataclass(frozen=True)
class LoginState:
    failed: int
    locked_until: datetime | None


def is_locked(state: LoginState, now: datetime) -> bool:
    return state.locked_until is not None and state.locked_until > now


def failure_delay(failed: int) -> float:
    """Slow down password guessing: 0.25 s, 0.5 s, 1 s … capped at 3 s per failed attempt."""
    return float(min(3.0, 0.25 * 2 ** max(0, failed - 1)))


def should_lock(failed: int, max_failures: int) -> bool:
    """The `max_failures`-th failure in a row locks the account."""
    return failed >= max_failures


class CallerFailures:
    """Refused logins per caller (its client address) within `window_s` of the previous one: the slow-down
    grows with the caller's own failures, never with the state of the account it names — a wrong password,
    an unknown login and a locked account cost the same, so timing cannot tell which logins exist. `now` is
    a monotonic clock."""

    MAX_ENTRIES = 10_000

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._seen: dict[str, tuple[int, float]] = {}

    def add(self, caller: str, now: float) -> int:
        """Count one failure of `caller`; its failures in a row so far."""
        count, last = self._seen.get(caller, (0, now))
        count = 1 if now - last > self.window_s else count + 1
        if len(self._seen) >= self.MAX_ENTRIES:
            self._seen = {k: v for k, v in self._seen.items() if now - v[1] <= self.window_s}
        self._seen[caller] = (count, now)
        return count


# --- routing a deposit to its establishment ------------------------------------------------------

@dataclass(frozen=True)
class Route:
    establishment: str | None  # None: site-wide import (cité scolaire sharing one timetable)
    establishments: dict[str, str] = field(default_factory=dict)  # id → UAI covered by the import
    error: tuple[str, str] | None = None


ENCRYPTION_REQUIRED = ("Cet espace de dépôt exige un export chiffré (PRONOTE) : le fichier déposé est en clair.",
                       "This deposit space requires an encrypted export: the file deposited is in clear.")
NAME_REQUIRED = "Prénom ou nom requis."


def encryption_refusal(require_encryption: bool, kind: str) -> tuple[str, str] | None:
    """A site that requires encryption refuses a clear file (design.md §8a `require_encryption`)."""
    return ENCRYPTION_REQUIRED if require_encryption and kind == "clear" else None


def route_deposit(target: str | None, file_uai: str | None, file_establishment_uais: Collection[str],
                  site_establishments: Mapping[str, str], *, encrypted: bool = False) -> Route:
    """Where a deposit goes (seed 001: « Tous les établissements » URL vs one establishment's URL).

    On an establishment URL the deposit is that establishment's (the validator checks the file's UAI).
    On the site URL the file's UAI picks the establishment; a file listing several establishments of the
    site is one site-wide import. An encrypted file hides its establishment list until the validator
    decrypts it: on the URL of a site with several establishments it is a site-wide import, and the
    validator attributes its content by UAI."""
    if target is not None:
        return Route(target, {target: site_establishments[target]})
    by_uai = {uai.upper(): est for est, uai in site_establishments.items()}
    if encrypted and len(site_establishments) > 1:
        return Route(None, {est: uai.upper() for est, uai in site_establishments.items()})
    listed = sorted({u.upper() for u in file_establishment_uais if u})
    if len(listed) > 1:
        unknown = [u for u in listed if u not in by_uai]
        if unknown:
            return Route(None, error=(
                f"Le fichier contient des établissements inconnus de cet espace de dépôt : {', '.join(unknown)}.",
                f"The file lists establishments unknown to this deposit space: {', '.join(unknown)}."))
        return Route(None, {by_uai[u]: u for u in listed})
    uai = (file_uai or (listed[0] if listed else "")).upper()
    if uai:
        if uai in by_uai:
            return Route(by_uai[uai], {by_uai[uai]: uai})
        known = ", ".join(sorted(by_uai)) or "aucun"
        return Route(None, error=(
            f"L'UAI {uai} trouvé dans le fichier ne correspond à aucun établissement de cet espace de dépôt "
            f"({known}).",
            f"UAI {uai} found in the file matches no establishment of this deposit space ({known})."))
    if len(site_establishments) == 1:
        (only,) = site_establishments
        return Route(only, {only: site_establishments[only]})
    return Route(None, error=(
        "Aucun UAI trouvé dans le fichier : déposez-le dans le dossier de l'établissement concerné.",
        "No UAI found in the file: deposit it in the establishment's own folder."))


class LoginCache:
    """Successful WebDAV logins, remembered `ttl_s` seconds: clients authenticate on every request and
    argon2 is deliberately slow. Keyed on (login, stored hash), so a new password or a deleted account is
    seen at once, holding the sha256 of the password that worked, compared in constant time; failures are
    never remembered. `now` is a monotonic clock."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[tuple[str, str], tuple[bytes, float]] = {}

    @staticmethod
    def key(login: str, stored_hash: str, password: str) -> tuple[str, str, bytes]:
        return login, stored_hash, hashlib.sha256(password.encode()).digest()

    def hit(self, key: tuple[str, str, bytes], now: float) -> bool:
        login, stored_hash, digest = key
        remembered, until = self._entries.get((login, stored_hash), (b"", 0.0))
        return hmac.compare_digest(remembered, digest) and until > now

    def remember(self, key: tuple[str, str, bytes], now: float) -> None:
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
        login, stored_hash, digest = key
        self._entries[(login, stored_hash)] = (digest, now + self.ttl_s)


DISK_FULL_FR = "Dépôt non enregistré : espace disque insuffisant sur le serveur de l'ENT."
DISK_FULL_EN = "The deposit could not be recorded: insufficient storage on the ENT's server."


def is_disk_full(exc: BaseException | None) -> bool:
    """A write refused for want of room (a full volume or a quota), wherever it was raised or wrapped: the
    deposit is refused with 507, never a 500, and the client may deposit again once room is made."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "src_exception", None)
    return False


# --- read-your-writes ----------------------------------------------------------------------------

HISTORY = "notifier"  # the service whose record makes an import readable and listed


def history_missed(missing: Collection[str]) -> bool:
    """An import id is handed out only once the history has recorded the import (design.md: an id the API
    hands out is readable at once). `missing`: the services that did not acknowledge the deposit within
    EDT_DEPOSIT_ACK_TIMEOUT_S; threshold control's settings lock alone does not make the id unreadable."""
    return HISTORY in missing


class DepositNotListed(Exception):
    """The deposit is durable (blob store, deposits table, its event in the outbox) and goes through the
    pipeline, but the history has not recorded it in time: its id would answer 404 yet, so none is given."""

    fr = ("Dépôt reçu et conservé, mais l'historique des imports ne l'a pas encore enregistré (service "
          "surchargé ou arrêté) : il y apparaîtra dès son retour, inutile de le déposer à nouveau.")
    en = ("Deposit received and kept, but the import history has not recorded it yet (service overloaded or "
          "down): it will appear there as soon as it is back; there is no need to deposit it again.")

    def __init__(self, import_id: str) -> None:
        super().__init__(self.en)
        self.import_id = import_id
