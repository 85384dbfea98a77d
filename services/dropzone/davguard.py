"""Guards around WsgiDAV (design.md §8b): what reaches the deposit space, what its errors say, how long
its locks last.

- `RequestGuard` (outermost WSGI layer): the upload size cap (a ``Content-Length`` above the cap → 413
  before anything is read; a chunked body counted while it streams → 413 as soon as it passes the cap), a
  body cut short → 400, a malformed ``Authorization`` → a 401 challenge, a path climbing above the mount
  → 400; every answer carries one ``Date`` (the ASGI server's).
- `PlainErrorPrinter` and `PlainAuthenticator`: every error is ``text/plain``, its cause in French then in
  English (WsgiDAV's own pages are HTML); a precondition error (RFC 4918 §16, e.g. a lock conflict)
  keeps its XML body, which clients parse, with the cause in French and English as extra elements
  (`<edt:cause xml:lang="fr">`), which RFC 4918 §17 lets clients ignore.
- `DepositLocks`: WsgiDAV's in-memory lock storage with every timeout capped (``Timeout: Infinite``
  included) and renewable by a refresh; the dropzone lists and clears a site's locks through it, and a
  new password or a deleted account drops that account's locks. Locks live in the dropzone process: a
  restart clears them (docs/security.md).
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import hmac
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from lxml import etree
from wsgidav import util
from wsgidav.dav_error import DAVError, as_DAVError, get_http_status_string
from wsgidav.http_authenticator import HTTPAuthenticator
from wsgidav.lock_man.lock_storage import LockStorageDict
from wsgidav.mw.base_mw import BaseMiddleware

from services.dropzone.domain import DISK_FULL_EN, DISK_FULL_FR, is_disk_full

log = logging.getLogger("edt.dropzone.webdav")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGICallable = Callable[[Environ, StartResponse], Iterable[bytes]]

MAX_NAME_BYTES = 255  # one path segment, as the file systems the folder lives on allow
MAX_PATH_BYTES = 1024  # the whole path below the mount

# The cause of an error, per status, when the code raising it gave none (French, English).
DEFAULT_TEXTS: dict[int, tuple[str, str]] = {
    400: ("Requête invalide.", "Bad request."),
    401: ("Identifiant ou mot de passe incorrect.", "Wrong login or password (invalid credentials)."),
    403: ("Action interdite dans l'espace de dépôt.", "Forbidden in the deposit space."),
    404: ("Introuvable.", "Not found."),
    405: ("Méthode non autorisée ici.", "Method not allowed here."),
    409: ("Conflit : le dossier parent n'existe pas.", "Conflict: the parent folder does not exist."),
    412: ("Condition préalable non remplie.", "Precondition failed."),
    413: ("Fichier trop volumineux.", "File too large."),
    415: ("Type de contenu non pris en charge.", "Unsupported media type."),
    423: ("Ressource verrouillée par un autre client.", "Resource locked by another client."),
    500: ("Erreur interne : l'équipe ENT a été prévenue.", "Internal error: the ENT team has been told."),
    502: ("Destination sur un autre serveur.", "Destination on another server."),
    503: ("Service momentanément indisponible, réessayez.", "Service unavailable for a moment, try again."),
    507: ("Espace disque insuffisant sur le serveur.", "Insufficient storage on the server."),
}


class Refusal(DAVError):
    """A DAVError whose cause is said in French and in English."""

    def __init__(self, status: int, fr: str, en: str, **kwargs: Any) -> None:
        super().__init__(status, en, **kwargs)
        self.fr = fr
        self.en = en

    def get_response_page(self) -> tuple[str, bytes]:
        """The body WsgiDAV sends for this error wherever it answers it (also outside the error printer)."""
        if self.err_condition:
            return "application/xml; charset=utf-8", condition_xml(self)
        return "text/plain; charset=utf-8", error_text(get_http_status_string(self), self.fr, self.en)


def refuse(status: int, fr: str, en: str, **kwargs: Any) -> Refusal:
    return Refusal(status, fr, en, **kwargs)


def error_text(status: str, fr: str, en: str) -> bytes:
    return f"{status}\n\n{fr}\n{en}\n".encode()


# WsgiDAV's own causes, as it words them, in French and English.
KNOWN_CAUSES: dict[str, tuple[str, str]] = {
    "This resource does not support locking.": (
        "Ce dossier ne peut pas être verrouillé : tous les comptes du site y déposent.",
        "This folder cannot be locked: every account of the site deposits into it."),
}


def _texts(e: DAVError, path: str) -> tuple[str, str]:
    if isinstance(e, Refusal):
        return e.fr, e.en
    if isinstance(e.context_info, str) and e.context_info in KNOWN_CAUSES:
        return KNOWN_CAUSES[e.context_info]
    fr, en = DEFAULT_TEXTS.get(e.value, ("Erreur.", "Error."))
    if e.value == 404:
        return f"Introuvable : {path}", f"Not found: {path}"
    detail = e.context_info if isinstance(e.context_info, str) and e.context_info else ""
    return fr, f"{en} {detail}".strip() if detail and detail not in en else en


CAUSE_NS = "urn:edt-import:webdav"

# A precondition's cause (RFC 4918 §16 condition code → French, English).
LOCKED_BY_ANOTHER = (
    "Ressource verrouillée par un autre client WebDAV : réessayez après son déverrouillage (un verrou non "
    "renouvelé expire de lui-même ; un administrateur du site peut le lever).",
    "Resource locked by another WebDAV client: try again once it is unlocked (a lock not refreshed expires by "
    "itself; a site administrator can clear it).")
CONDITION_TEXTS: dict[str, tuple[str, str]] = {
    "{DAV:}lock-token-submitted": LOCKED_BY_ANOTHER,
    "{DAV:}no-conflicting-lock": LOCKED_BY_ANOTHER,
}


def condition_xml(e: DAVError) -> bytes:
    """WsgiDAV's `DAV:error` body with the cause in French and English beside the condition code."""
    error_el = e.err_condition.as_xml()
    fr, en = CONDITION_TEXTS.get(e.err_condition.condition_code, DEFAULT_TEXTS.get(e.value, ("Erreur.", "Error.")))
    for lang, text in (("fr", fr), ("en", en)):
        cause = etree.SubElement(error_el, f"{{{CAUSE_NS}}}cause", nsmap={"edt": CAUSE_NS})
        cause.set("{http://www.w3.org/XML/1998/namespace}lang", lang)
        cause.text = text
    return cast(bytes, etree.tostring(error_el, xml_declaration=True, encoding="utf-8"))


def check_path(path: str) -> None:
    """Names the file system could not hold are refused before anything is written (a PUT whose rename
    fails after its deposit was recorded would import a file the folder never showed)."""
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise refuse(414, f"Chemin trop long (plus de {MAX_PATH_BYTES} octets).",
                     f"Path too long (over {MAX_PATH_BYTES} bytes).")
    for segment in path.split("/"):
        if len(segment.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise refuse(400, f"Nom trop long : {MAX_NAME_BYTES} octets au plus par nom de fichier ou de dossier.",
                         f"Name too long: at most {MAX_NAME_BYTES} bytes per file or folder name.")


def climbs_above_root(path: str) -> bool:
    depth = 0
    for segment in path.split("/"):
        if segment == "..":
            depth -= 1
            if depth < 0:
                return True
        elif segment not in ("", "."):
            depth += 1
    return False


# --- error pages ------------------------------------------------------------------------------------


class PlainErrorPrinter(BaseMiddleware):  # type: ignore[misc]
    """WsgiDAV's ErrorPrinter, answering text/plain in French and English instead of an HTML page."""

    def __init__(self, wsgidav_app: Any, next_app: Any, config: dict[str, Any]) -> None:
        super().__init__(wsgidav_app, next_app, config)

    def is_disabled(self) -> bool:
        return False

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        captured = util.SubAppStartResponse()
        try:
            try:
                started = False
                app_iter = self.next_app(environ, captured)
                for chunk in app_iter:
                    if not started:
                        start_response(captured.status, captured.response_headers, captured.exc_info)
                        started = True
                    yield chunk
                if hasattr(app_iter, "close"):
                    app_iter.close()
                if not started:
                    start_response(captured.status, captured.response_headers, captured.exc_info)
                return
            except DAVError:
                raise
            except OSError as e:
                if e.errno == errno.EACCES:
                    raise DAVError(403, e.strerror) from None
                raise as_DAVError(e) from None
            except Exception as e:  # noqa: BLE001 - any failure is answered, never a dropped connection
                log.error("WebDAV request failed: %s", traceback.format_exc(10))
                raise as_DAVError(e) from None
        except DAVError as e:
            if e.value == 500 and is_disk_full(e):  # the body spooled to a full disk: the deposit is refused
                e = refuse(507, DISK_FULL_FR, DISK_FULL_EN, src_exception=e.src_exception)
            status = get_http_status_string(e)
            if e.value >= 500:
                log.error("WebDAV %s %s: %s (%r)", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                          status, e.src_exception)
            if e.value in (204, 304):
                start_response(status, [("Content-Length", "0")])
                yield b""
                return
            if e.err_condition:  # RFC 4918 precondition: clients parse its XML
                content_type, body = "application/xml; charset=utf-8", condition_xml(e)
            else:
                fr, en = _texts(e, str(environ.get("PATH_INFO", "")))
                content_type, body = "text/plain; charset=utf-8", error_text(status, fr, en)
            start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                    *(e.add_headers or [])])
            yield body


class PlainAuthenticator(HTTPAuthenticator):  # type: ignore[misc]
    """HTTP Basic as WsgiDAV does it; the 401 challenge's body in plain French and English."""

    def send_basic_auth_response(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        realm = self.domain_controller.get_domain_realm(environ["PATH_INFO"], environ)
        body = error_text("401 Unauthorized", *DEFAULT_TEXTS[401])
        start_response("401 Not Authorized", [("WWW-Authenticate", f'Basic realm="{realm}"'),
                                              ("Content-Type", "text/plain; charset=utf-8"),
                                              ("Content-Length", str(len(body)))])
        return [body]


# --- locks -----------------------------------------------------------------------------------------


class DepositLocks(LockStorageDict):  # type: ignore[misc]
    """WsgiDAV's in-memory lock storage, every timeout capped at `max_timeout_s` (a client asking for
    days, or ``Infinite``, gets the cap; a refresh renews it), with the admin's views: a site's locks,
    clearing them, dropping an account's."""

    _dict: dict[str, Any] | None

    def __init__(self, max_timeout_s: float) -> None:
        super().__init__()
        self.max_timeout_s = float(max_timeout_s)
        self.open()

    def open(self) -> None:
        if self._dict is None:  # opened at construction (the API may ask before the first WebDAV request)
            self._dict = {}

    def close(self) -> None:
        """Kept across WsgiDAV's shutdown of its lock manager: the dropzone owns this storage."""

    def _capped(self, timeout: Any) -> float:
        value = float(timeout) if timeout is not None else self.max_timeout_s
        return self.max_timeout_s if value < 0 or value > self.max_timeout_s else value

    def create(self, path: str, lock: dict[str, Any]) -> Any:
        lock["timeout"] = self._capped(lock.get("timeout"))
        return super().create(path, lock)

    def refresh(self, token: str, *, timeout: Any) -> Any:
        return super().refresh(token, timeout=self._capped(timeout))

    def _live(self) -> list[dict[str, Any]]:
        self._lock.acquire_read()
        try:
            tokens = [k for k in self._dict or {} if not k.startswith("URL2TOKEN:")]
        finally:
            self._lock.release()
        return [lock for lock in (self.get(t) for t in tokens) if lock]

    def site_locks(self, site: str) -> list[dict[str, Any]]:
        """The live locks under /{site}/, oldest expiry first."""
        prefix = f"/{site}/"
        found = [dict(lock) for lock in self._live() if f"{lock['root']}/".startswith(prefix)]
        return sorted(found, key=lambda lock: float(lock["expire"]))

    def release_site(self, site: str, lock_id: str | None = None) -> int:
        """Release the site's locks (only the one whose `lock_id` is given); how many were released."""
        gone = [lock["token"] for lock in self.site_locks(site) if lock_id is None or
                hmac.compare_digest(lock_id_of(lock), lock_id)]
        return sum(bool(self.delete(t)) for t in gone)

    def release_principal(self, login: str) -> int:
        """Release every lock taken by the account `login` (its password changed, or it was deleted)."""
        gone = [lock["token"] for lock in self._live() if lock.get("principal") == login]
        return sum(bool(self.delete(t)) for t in gone)


def lock_expires_in(lock: dict[str, Any]) -> float:
    return max(0.0, float(lock["expire"]) - time.time())


def lock_id_of(lock: dict[str, Any]) -> str:
    """A lock's public id: its token is a capability of its owner's, never shown."""
    return hashlib.sha256(str(lock["token"]).encode()).hexdigest()[:16]


# --- request guard (size cap, disconnects, malformed Authorization, climbing paths) ---------------------


def _watch_disconnect(body: Any) -> Callable[[], bool]:
    """Tell when the client went away. a2wsgi's body reader turns an ASGI ``http.disconnect`` into a plain
    end of body, which would land a truncated chunked upload: intercept its ``receive`` to notice."""
    receive = getattr(body, "receive", None)
    if receive is None or not callable(receive):
        return lambda: False
    gone = threading.Event()

    async def watching() -> Any:
        message = await receive()
        if message.get("type") == "http.disconnect":
            gone.set()
        return message

    try:
        body.receive = watching
    except AttributeError:
        return lambda: False
    return gone.is_set


def _too_large(max_bytes: int) -> tuple[str, str]:
    mb = max_bytes / (1024 * 1024)
    return (f"Fichier trop volumineux : plus de {mb:g} Mo ({max_bytes} octets).",
            f"File too large: over {mb:g} MB ({max_bytes} bytes).")


class _GuardedInput:
    """wsgi.input that enforces the upload cap and turns a body cut short into an error."""

    def __init__(self, raw: Any, length: int | None, max_bytes: int, disconnected: Callable[[], bool]) -> None:
        self.raw = raw
        self.length = length
        self.max_bytes = max_bytes
        self.disconnected = disconnected
        self.seen = 0

    def _account(self, data: bytes, eof: bool) -> bytes:
        self.seen += len(data)
        if self.seen > self.max_bytes:
            raise refuse(413, *_too_large(self.max_bytes), add_headers=[("Connection", "close")])
        if eof and ((self.length is not None and self.seen < self.length) or self.disconnected()):
            raise refuse(400, "Envoi interrompu : le fichier n'est pas arrivé en entier.",
                         "Request body cut short (client disconnected).", add_headers=[("Connection", "close")])
        return data

    def read(self, size: int = -1) -> bytes:
        if size is None:
            size = -1
        data = self.raw.read(size)
        return self._account(data, eof=size < 0 or (size > 0 and not data))

    def readline(self, limit: int = -1) -> bytes:
        data = self.raw.readline(limit)
        return self._account(data, eof=not data)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = []
        while line := self.readline():
            lines.append(line)
        return lines

    def __iter__(self) -> Any:
        while line := self.readline():
            yield line


def _simple_response(start_response: StartResponse, status: str, fr: str, en: str,
                     extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = error_text(status, fr, en)
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            *(extra or [])])
    return [body]


def _basic_credentials_ok(header: str) -> bool:
    method, _, value = header.strip().partition(" ")
    if method.lower() != "basic":
        return True  # other schemes are answered by WsgiDAV with a Basic challenge
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    return ":" in decoded


class RequestGuard:
    """The outermost layer of the WebDAV app; `import_id_key` names the environ key whose value (the
    deposit's import) is answered as ``X-Import-Id``."""

    def __init__(self, app: WSGICallable, max_upload_bytes: int, import_id_key: str) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.import_id_key = import_id_key

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        close = [("Connection", "close")]
        path = str(environ.get("PATH_INFO", ""))
        if climbs_above_root(path) or climbs_above_root(path.replace("\\", "/")):
            return _simple_response(start_response, "400 Bad Request", "Chemin invalide : il sort de l'espace "
                                    "de dépôt.", "Invalid path: it climbs above the deposit space.", close)
        raw_length = str(environ.get("CONTENT_LENGTH") or "").strip()
        length: int | None = None
        if raw_length:
            if not raw_length.isdigit():
                return _simple_response(start_response, "400 Bad Request", "En-tête Content-Length invalide.",
                                        "Invalid Content-Length.", close)
            length = int(raw_length)
            if length > self.max_upload_bytes:
                return _simple_response(start_response, "413 Content Too Large", *_too_large(self.max_upload_bytes),
                                        close)
        body = environ.get("wsgi.input")
        environ["wsgi.input"] = _GuardedInput(body, length, self.max_upload_bytes, _watch_disconnect(body))
        auth = environ.get("HTTP_AUTHORIZATION")
        if auth is not None and not _basic_credentials_ok(auth):
            del environ["HTTP_AUTHORIZATION"]  # malformed: answered with a 401 challenge, not a 500

        def answer(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            # The ASGI server dates every answer itself: WsgiDAV's own Date would make two.
            headers = [(k, v) for k, v in headers if k.lower() != "date"]
            import_id = environ.get(self.import_id_key)
            if import_id:  # the deposit's import, readable at once (design.md §5 read-your-writes)
                headers.append(("X-Import-Id", str(import_id)))
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return self.app(environ, answer)


__all__ = ["MAX_NAME_BYTES", "DepositLocks", "PlainAuthenticator", "PlainErrorPrinter", "Refusal", "RequestGuard",
           "check_path", "lock_expires_in", "lock_id_of", "refuse"]
