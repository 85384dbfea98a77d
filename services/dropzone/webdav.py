"""WebDAV deposit space (design.md §2, §8b): timetable software PUTs its exports here.

Layout seen by clients, below the mount path (``/webdav``)::

    /                       the caller's own site only (read-only, cannot be locked)
    /{site}/                "all establishments" URL: the site's establishment folders (created on
                            demand), plus whatever the client puts there itself (files, folders)
    /{site}/{establishment}/  one establishment's URL: must be an establishment of the site, else 404

Files live on disk under ``root_dir/{site}/...``, sealed (AES-GCM, the blob store's format and keys:
`shared.blobs`) and served as their plaintext; WsgiDAV's own state (upload temporaries, sealed too, and
the removal schedule) under ``root_dir/.dav/`` — ``.dav`` can never be a site id, so clients cannot reach
it. A deposited file leaves the folder `grace_s` after it landed, any other file once untouched for
`stale_s` (`Landings`): the folder never lists old deposits (docs/privacy.md).

Access (HTTP Basic only, realm ``edt-import``): the deposit account authenticates through
``DepositGate.authenticate``; bad credentials → 401; valid credentials on another site's path
(request URI or ``Destination``) → 403 whether that site exists or not (no site enumeration);
the caller's own site unknown to the gate → 404; any other name than an establishment or an existing
client folder as second segment of a deeper path → 404. Path traversal is impossible: a path climbing
above the mount is refused (400) before WsgiDAV sees it, WsgiDAV normalises the rest, the site and
establishment segments must be plain ids, the resolved file must stay inside ``root_dir`` (realpath) and
symlinks are refused. A name over 255 bytes (a path over 1024) is refused (400, 414) before anything is
written or deposited. The site and establishment folders cannot be deleted, moved or locked (a lock there
would stop every other account's deposits). Errors are plain text, in French then English (`davguard`).

What counts as a deposit — a complete file *landing under a final name*:

- the end of a PUT (the body is written to a hidden temporary file under ``root_dir/.dav/uploads`` and
  renamed onto the final name only once complete; an interrupted, oversized or failed upload leaves
  nothing behind and the previous content, if any, untouched);
- a MOVE or COPY whose request URI is that file (Windows and Office write ``~$x.tmp`` / ``x.tmp`` and then
  rename it): moving or copying a deposited file to *another final name* is a new landing, hence a new
  deposit (the pipeline recognises an identical re-deposit by its sha256); moving it to a temporary name
  is not. Files carried along by a MOVE/COPY of a whole *folder* are not deposits (they landed already).
- DELETE, PROPPATCH, LOCK/UNLOCK never deposit; a LOCK on an unmapped URL creates an empty file, and
  empty files are not deposits.

``services.dropzone.domain.is_deposit_candidate(name, size)`` has the last word (empty files and
temporary names are not deposits). The establishment of a deposit is the establishment folder that
encloses the file, at any depth (``/{site}/1754/sub/x.xml`` → ``1754``); a file anywhere else in the site
(``/{site}/x.xml``, ``/{site}/client-folder/x.xml``) is a site-wide deposit (establishment ``None``). The
gate is called *before* the file takes its final name: when ``take_deposit`` raises (or times out) the
request fails with 500 (507 when the disk is full) and the file does not appear under the final name.

Threading: WsgiDAV runs in a2wsgi's worker threads; every gate call hops to the event loop with
``asyncio.run_coroutine_threadsafe(...).result(timeout)``, never blocking the loop itself. Every login is
the gate's to check: the dropzone remembers successful ones itself (`domain.LoginCache`), so a WebDAV
session of hundreds of requests does not hash the password each time.

Mounting: `webdav_factory` gives the ASGI app's factory that `shared.web.LazyMount` builds inside the
running loop at the first request — the dropzone's `Service.mounts` in production, the same in tests.

Size cap (`davguard.RequestGuard`): a ``Content-Length`` above ``max_upload_bytes`` is refused with 413
before anything is read; a chunked body is counted while it streams and refused with 413 as soon as it
goes past the cap. Locks (`davguard.DepositLocks`): in memory, each one 10 minutes at most (renewable).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import re
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar, cast
from urllib.parse import quote

from a2wsgi.wsgi_typing import WSGIApp
from wsgidav import util
from wsgidav.dav_error import (
    HTTP_BAD_REQUEST,
    HTTP_FORBIDDEN,
    HTTP_GATEWAY_TIMEOUT,
    HTTP_INTERNAL_ERROR,
    HTTP_NOT_FOUND,
    DAVError,
)
from wsgidav.dav_provider import DAVCollection, DAVNonCollection
from wsgidav.dc.base_dc import BaseDomainController
from wsgidav.fs_dav_provider import FileResource, FilesystemProvider, FolderResource
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from services.dropzone.davguard import (
    DepositLocks,
    PlainAuthenticator,
    PlainErrorPrinter,
    RequestGuard,
    check_path,
    refuse,
)
from services.dropzone.domain import (
    DISK_FULL_EN,
    DISK_FULL_FR,
    DepositNotListed,
    is_deposit_candidate,
    is_disk_full,
)
from services.dropzone.landings import STATE_DIR, Landings
from shared.blobs import Keyring, SealedWriter, plain_size
from shared.messages import ID_PATTERN
from shared.observability import WEBDAV_BYTES, WEBDAV_REQUESTS, method_label

log = logging.getLogger("edt.dropzone.webdav")

REALM = "edt-import"
ID_RE = re.compile(ID_PATTERN)  # site and establishment ids, as the API validates them
HTTP_CONTENT_TOO_LARGE = 413
HTTP_SERVICE_UNAVAILABLE = 503
HTTP_INSUFFICIENT_STORAGE = 507

QUOTA_PROPERTIES = frozenset({"{DAV:}quota-available-bytes", "{DAV:}quota-used-bytes"})

# environ keys set by this module
ENV_SITE = "edt.webdav.site"
ENV_LOGIN = "edt.webdav.login"
ENV_ESTABLISHMENTS = "edt.webdav.establishments"
ENV_IMPORT_ID = "edt.webdav.import_id"  # the import a PUT/MOVE/COPY made: answered as X-Import-Id

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
_WSGICallable = Callable[[Environ, StartResponse], Iterable[bytes]]
T = TypeVar("T")


class DepositGate(Protocol):
    """Async callbacks into the dropzone. Called from WsgiDAV worker threads through
    asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=...)."""

    async def authenticate(self, login: str, password: str, client_ip: str) -> str | None:
        """Site id the deposit account belongs to, or None (bad credentials or locked out; the gate itself
        slows/locks)."""
        ...

    async def establishment_ids(self, site: str) -> list[str] | None:
        """Establishment ids of the site, None when the site does not exist."""
        ...

    async def take_deposit(self, site: str, establishment: str | None, name: str, path: Path, login: str) -> str:
        """A complete file landed under its final `name` (establishment None = site URL). The gate copies
        `path` into its blob store and records the deposit durably before returning the import's id (readable
        at once in the history); it may raise."""
        ...

    async def file_read(self, site: str, path: str, login: str) -> None:
        """An account reads a file of the deposit space back (GET): recorded in the access log before the
        content is sent."""
        ...


# --- event-loop bridge ---------------------------------------------------------------------------


class _Bridge:
    """Runs the gate's coroutines on the event loop from WsgiDAV's worker threads."""

    def __init__(self, gate: DepositGate, loop: asyncio.AbstractEventLoop, *, gate_timeout_s: float,
                 deposit_timeout_s: float) -> None:
        self.gate = gate
        self.loop = loop
        self.gate_timeout_s = gate_timeout_s
        self.deposit_timeout_s = deposit_timeout_s

    def _run(self, make: Callable[[], Awaitable[T]], timeout: float) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise RuntimeError("WebDAV gate called from the event loop thread: it would deadlock")

        async def call() -> T:
            return await make()

        future = asyncio.run_coroutine_threadsafe(call(), self.loop)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def authenticate(self, login: str, password: str, client_ip: str) -> str | None:
        try:
            return self._run(lambda: self.gate.authenticate(login, password, client_ip), self.gate_timeout_s)
        except concurrent.futures.TimeoutError:
            raise refuse(HTTP_SERVICE_UNAVAILABLE, "Vérification du mot de passe trop longue, réessayez.",
                         "Authentication timed out, try again.") from None

    def establishment_ids(self, site: str) -> list[str] | None:
        try:
            return self._run(lambda: self.gate.establishment_ids(site), self.gate_timeout_s)
        except concurrent.futures.TimeoutError:
            raise refuse(HTTP_SERVICE_UNAVAILABLE, "Recherche du site trop longue, réessayez.",
                         "Site lookup timed out, try again.") from None

    def file_read(self, site: str, path: str, login: str) -> None:
        try:
            self._run(lambda: self.gate.file_read(site, path, login), self.gate_timeout_s)
        except concurrent.futures.TimeoutError:
            raise refuse(HTTP_SERVICE_UNAVAILABLE, "Journal des accès indisponible, réessayez.",
                         "Access log unavailable, try again.") from None

    def take_deposit(self, site: str, establishment: str | None, name: str, path: Path, login: str) -> str:
        try:
            return self._run(lambda: self.gate.take_deposit(site, establishment, name, path, login),
                             self.deposit_timeout_s)
        except DAVError:
            raise
        except DepositNotListed as e:  # kept and on its way, but its id is not readable yet: no X-Import-Id
            raise refuse(HTTP_GATEWAY_TIMEOUT, e.fr, e.en) from None
        except Exception as e:  # noqa: BLE001 - any gate failure fails the request, the file is not landed
            log.exception("deposit of %r for site %s / %s failed", name, site, establishment or "*")
            if is_disk_full(e):
                raise refuse(HTTP_INSUFFICIENT_STORAGE, DISK_FULL_FR, DISK_FULL_EN, src_exception=e) from None
            raise refuse(HTTP_INTERNAL_ERROR, "Dépôt non enregistré (erreur interne) : réessayez plus tard.",
                         "The deposit could not be recorded (internal error): try again later.",
                         src_exception=e) from None


# --- routing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Place:
    """Where a path falls: site (None for the root), enclosing establishment folder, depth."""

    site: str | None
    establishment: str | None
    segments: tuple[str, ...]

    @property
    def protected(self) -> bool:
        """The site folder and the establishment folders themselves cannot be deleted or moved."""
        return len(self.segments) == 1 or (len(self.segments) == 2 and self.establishment is not None)


def _segments(path: str) -> tuple[str, ...]:
    if path == "*":
        return ()
    return tuple(s for s in path.strip("/").split("/") if s)


def _protected(done_fr: str, done_en: str) -> DAVError:
    return refuse(HTTP_FORBIDDEN, f"Les dossiers du site et des établissements ne peuvent pas être {done_fr}.",
                  f"Site and establishment folders cannot be {done_en}.")


def _forbidden_site() -> DAVError:
    return refuse(HTTP_FORBIDDEN, "Ce compte de dépôt n'a pas accès à ce site.",
                  "This deposit account has no access to that site.")


class DepositDomainController(BaseDomainController):
    """HTTP Basic against `DepositGate.authenticate`; the account's site must be the path's site."""

    def __init__(self, wsgidav_app: Any, config: dict[str, Any]) -> None:
        super().__init__(wsgidav_app, config)
        provider = wsgidav_app.provider_map.get("/")
        if not isinstance(provider, DropzoneProvider):
            raise RuntimeError("DepositDomainController needs a DropzoneProvider mapped at '/'")
        self.provider = provider

    def __str__(self) -> str:
        return f"{self.__class__.__name__}({REALM!r})"

    def get_domain_realm(self, path_info: str, environ: Environ | None) -> str:
        return REALM

    def require_authentication(self, realm: str, environ: Environ | None) -> bool:
        return True

    def supports_http_digest_auth(self) -> bool:
        return False

    def basic_auth_user(self, realm: str, user_name: str, password: str, environ: Environ) -> bool:
        if not user_name or not password:
            return False
        site = self.provider.bridge.authenticate(user_name, password, str(environ.get("REMOTE_ADDR", "")))
        if site is None:
            return False
        environ[ENV_SITE] = site
        environ[ENV_LOGIN] = user_name
        segments = _segments(environ.get("PATH_INFO", ""))
        if segments and segments[0] != site:
            raise _forbidden_site()
        return True


# --- resources -----------------------------------------------------------------------------------


class _Root(DAVCollection):
    """The mount root: lists the caller's own site only; read-only, never locked (a depth-infinity lock
    here would cover every tenant's URLs)."""

    def get_member_names(self) -> list[str]:
        site = self.environ.get(ENV_SITE)
        if site is None or self.provider.establishments(site, self.environ) is None:
            return []
        return [site]

    def get_member(self, name: str) -> Any:
        return self.provider.get_resource_inst(util.join_uri(self.path, name), self.environ)

    def get_display_name(self) -> str:
        return self.provider.mount_path.strip("/") or "/"

    def prevent_locking(self) -> bool:
        return True

    def create_empty_resource(self, name: str) -> Any:
        raise refuse(HTTP_FORBIDDEN, "Déposez dans le dossier de votre site.", "Deposit into your site's folder.")

    def create_collection(self, name: str) -> None:
        raise refuse(HTTP_FORBIDDEN, "Déposez dans le dossier de votre site.", "Deposit into your site's folder.")

    def set_last_modified(self, dest_path: str, time_stamp: Any, *, dry_run: bool) -> bool:
        return False


class DropFolder(FolderResource):
    def __init__(self, path: str, environ: Environ, file_path: str, place: _Place) -> None:
        super().__init__(path, environ, file_path)
        self.place = place

    def get_member_names(self) -> list[str]:
        return sorted(super().get_member_names())

    def create_empty_resource(self, name: str) -> Any:
        path = util.join_uri(self.path, name)
        if self.environ.get("REQUEST_METHOD") == "PUT" and path.rstrip("/") == self.environ["PATH_INFO"].rstrip("/"):
            # The target of this PUT: nothing is created on disk until the body is complete.
            file_path = self.provider._loc_to_file_path(path, self.environ)
            return DropFile(path, self.environ, file_path, self.provider.place(path, self.environ), pending=True)
        return super().create_empty_resource(name)  # LOCK on an unmapped URL: a real empty file

    def handle_delete(self) -> bool:
        # Refused before WsgiDAV walks the tree: its file-by-file DELETE of the site folder would empty the
        # establishment folders whose own DELETE is refused.
        if self.place.protected:
            raise _protected("supprimés", "deleted")
        return False

    def prevent_locking(self) -> bool:
        """The site and establishment folders are every account's deposit targets: a lock there would stop
        the other accounts' deposits (a lock on a file or a client folder covers only that)."""
        return self.place.protected

    def get_used_bytes(self) -> int | None:
        return None  # RFC 4331 quotas would tell the host's disk usage

    def get_available_bytes(self) -> int | None:
        return None

    def get_property_value(self, name: str) -> Any:
        if name in QUOTA_PROPERTIES:
            raise DAVError(HTTP_NOT_FOUND)
        return super().get_property_value(name)

    def delete(self) -> None:
        if self.place.protected:
            raise _protected("supprimés", "deleted")
        super().delete()
        self.provider.landings.forget(self.path, tree=True)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        if is_move and self.place.protected:
            raise _protected("déplacés", "moved")
        super().copy_move_single(dest_path, is_move=is_move)

    def support_recursive_move(self, dest_path: str) -> bool:
        return not self.place.protected

    def move_recursive(self, dest_path: str) -> None:
        if self.place.protected:
            raise _protected("déplacés", "moved")
        super().move_recursive(dest_path)
        self.provider.landings.carried(self.path, dest_path, tree=True)


class DropFile(FileResource):
    """A file of the deposit space, sealed on disk (`shared.blobs` format) and served as its plaintext.
    Writes are sealed into a hidden temporary file as they stream in, landed on completion."""

    file_stat: os.stat_result | None

    def __init__(self, path: str, environ: Environ, file_path: str, place: _Place, *, pending: bool = False) -> None:
        if pending:  # target of a PUT, not on disk yet
            DAVNonCollection.__init__(self, path, environ)
            self._file_path = file_path
            self.file_stat = None
            self.name = util.to_str(os.path.basename(file_path))
        else:
            super().__init__(path, environ, file_path)
        self.place = place
        self._upload: tuple[str, IO[bytes], SealedWriter] | None = None

    # -- content (plaintext out, sealed on disk) ----------------------------------------------------

    def get_content(self) -> IO[bytes]:
        if self.place.site is not None:  # a deposited file holds personal data: every read is logged
            self.provider.bridge.file_read(self.place.site, self.path, str(self.environ.get(ENV_LOGIN, "")))
        return self.provider.keyring.open(self._file_path)

    def get_content_length(self) -> int:
        return plain_size(self._file_path)

    # -- PUT --------------------------------------------------------------------------------------

    def begin_write(self, *, content_type: str | None = None) -> IO[bytes]:
        uploads = self.provider.uploads_dir
        uploads.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="put-", suffix=".part", dir=uploads)
        raw = os.fdopen(fd, "wb")
        sealed = self.provider.keyring.writer(raw)
        self._upload = (tmp, raw, sealed)
        return cast(IO[bytes], sealed)

    def end_write(self, *, with_errors: bool) -> None:
        if self._upload is None:
            return
        tmp, raw, sealed = self._upload
        self._upload = None
        try:
            sealed.close()
            raw.close()
            if with_errors:
                return
            deposited = self._land(tmp, self.path, sealed.size)
            os.replace(tmp, self._file_path)
            self.file_stat = os.stat(self._file_path)
            self.provider.landings.arrived(self.path, deposited)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    # -- MOVE / COPY ------------------------------------------------------------------------------

    def _is_request_target(self) -> bool:
        return self.path.rstrip("/") == self.environ.get("PATH_INFO", "").rstrip("/")

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        deposited = self._is_request_target() and self._land(self._file_path, dest_path,
                                                             plain_size(self._file_path))
        super().copy_move_single(dest_path, is_move=is_move)
        self.provider.landings.carried(self.path, dest_path, deposited=deposited, keep_source=not is_move)

    def move_recursive(self, dest_path: str) -> None:
        deposited = self._is_request_target() and self._land(self._file_path, dest_path,
                                                             plain_size(self._file_path))
        super().move_recursive(dest_path)
        self.provider.landings.carried(self.path, dest_path, deposited=deposited)

    def delete(self) -> None:
        os.unlink(self._file_path)
        self.provider.landings.forget(self.path)
        self.remove_all_properties(recursive=True)
        # Overwritten by a MOVE/COPY (Windows renames its temporary file onto the final name it locked):
        # the destination's lock stays (RFC 4918 §7.7: the moved resource joins the destination lock).
        method = self.environ.get("REQUEST_METHOD")
        source = self.environ.get("PATH_INFO", "")
        if method in ("MOVE", "COPY") and not util.is_equal_or_child_uri(source, self.path):
            return
        self.remove_all_locks(recursive=True)

    # -- deposits ---------------------------------------------------------------------------------

    def _land(self, source: str, dest_path: str, size: int) -> bool:
        """`source` (complete, sealed) is about to take its final place at `dest_path`: deposit it if it is
        one. True when it made a deposit."""
        name = util.get_uri_name(dest_path.rstrip("/"))
        place = self.provider.place(dest_path, self.environ)
        if place.site is None or len(place.segments) < 2 or not is_deposit_candidate(name, size):
            return False
        self.environ[ENV_IMPORT_ID] = self.provider.bridge.take_deposit(
            place.site, place.establishment, name, Path(source), str(self.environ.get(ENV_LOGIN, "")))
        return True


# --- provider ------------------------------------------------------------------------------------


class DropzoneProvider(FilesystemProvider):
    """One provider at '/': routes /{site}/{establishment}/ inside itself (design.md §8b)."""

    def __init__(self, root_dir: Path, bridge: _Bridge, keyring: Keyring, landings: Landings) -> None:
        root_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(str(root_dir), readonly=False, fs_opts={"follow_symlinks": False, "shadow_map": {}})
        self.bridge = bridge
        self.keyring = keyring
        self.landings = landings
        self.root_dir = Path(self.root_folder_path)
        self.uploads_dir = self.root_dir / STATE_DIR / "uploads"
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        landings.bind(self._locked, self._forget_properties)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.root_folder_path!r})"

    def _locked(self, path: str) -> bool:
        return bool(self.lock_manager and self.lock_manager.is_url_locked(quote(path)))

    def _forget_properties(self, path: str) -> None:
        if self.prop_manager:
            self.prop_manager.remove_properties(quote(path))

    def establishments(self, site: str, environ: Environ) -> list[str] | None:
        """The site's establishment ids (once per request), creating their folders on first sight."""
        cache: dict[str, list[str] | None] = environ.setdefault(ENV_ESTABLISHMENTS, {})
        if site not in cache:
            ids = self.bridge.establishment_ids(site)
            if ids is not None:
                ids = [e for e in ids if ID_RE.match(e)]
                for folder in [self.root_dir / site, *(self.root_dir / site / e for e in ids)]:
                    try:
                        folder.mkdir(exist_ok=True)
                    except OSError as e:  # e.g. a file named like a new establishment
                        log.warning("cannot create WebDAV folder %s: %s", folder, e)
            cache[site] = ids
        return cache[site]

    def place(self, path: str, environ: Environ) -> _Place:
        """Check access to `path` and say where it falls; raises DAVError 400/403/404."""
        check_path(path)
        segments = _segments(path)
        if not segments:
            return _Place(None, None, ())
        if any("\x00" in s or "\\" in s for s in segments):
            raise refuse(HTTP_BAD_REQUEST, "Caractère interdit dans le chemin.", "Invalid character in path.")
        site = segments[0]
        caller = environ.get(ENV_SITE)
        if caller is None or site != caller:
            raise _forbidden_site()
        if not ID_RE.match(site):  # unreachable for a real site; kept so '.dav' can never be served
            raise DAVError(HTTP_NOT_FOUND)
        ests = self.establishments(site, environ)
        if ests is None:
            raise refuse(HTTP_NOT_FOUND, "Site inconnu.", "Unknown site.")
        establishment = segments[1] if len(segments) > 1 and segments[1] in ests else None
        if len(segments) > 2 and establishment is None and not (self.root_dir / site / segments[1]).is_dir():
            raise refuse(HTTP_NOT_FOUND, "Établissement inconnu de ce site.", "Unknown establishment.")
        return _Place(site, establishment, segments)

    def _loc_to_file_path(self, path: str, environ: Environ | None = None) -> str:
        if environ is None:
            raise DAVError(HTTP_FORBIDDEN)
        self.place(path, environ)
        return str(super()._loc_to_file_path(path, environ))

    def get_resource_inst(self, path: str, environ: Environ) -> Any:
        self._count_get_resource_inst += 1
        place = self.place(path, environ)
        if place.site is None:
            return _Root("/", environ)
        file_path = super()._loc_to_file_path(path, environ)
        if not os.path.lexists(file_path):
            return None
        if os.path.islink(file_path):
            raise refuse(HTTP_FORBIDDEN, "Les liens symboliques ne sont pas servis.", "Symbolic links are not served.")
        if os.path.isdir(file_path):
            return DropFolder(path, environ, file_path, place)
        return DropFile(path, environ, file_path, place)


# --- assembly ------------------------------------------------------------------------------------


def build_webdav_app(root_dir: Path, gate: DepositGate, loop: asyncio.AbstractEventLoop, keyring: Keyring,
                     landings: Landings, *, mount_path: str = "/webdav", max_upload_bytes: int,
                     locks: DepositLocks | None = None, gate_timeout_s: float = 30.0,
                     deposit_timeout_s: float = 300.0) -> WSGIApp:
    """The WebDAV deposit space as a WSGI app, to run in a2wsgi's thread pool under `mount_path`.

    `loop` is the event loop the gate's coroutines run on (the server's loop); `keyring` seals the files
    on disk; `landings` says when each leaves (its `sweep` runs elsewhere, periodically); `locks` holds the
    WebDAV locks (the dropzone's, to list and clear them; by default a private one, 10 minutes at most)."""
    locks = locks if locks is not None else DepositLocks(600)
    bridge = _Bridge(gate, loop, gate_timeout_s=gate_timeout_s, deposit_timeout_s=deposit_timeout_s)
    provider = DropzoneProvider(Path(root_dir), bridge, keyring, landings)
    mount = "/" + mount_path.strip("/") if mount_path.strip("/") else None
    config: dict[str, Any] = {
        "mount_path": mount,
        "provider_mapping": {"/": provider},
        "http_authenticator": {
            "domain_controller": DepositDomainController,
            "accept_basic": True,
            "accept_digest": False,
            "default_to_digest": False,
        },
        "middleware_stack": [PlainErrorPrinter, PlainAuthenticator, RequestResolver],
        "lock_storage": locks,  # in memory, timeouts capped
        "property_manager": True,  # in-memory dead properties
        "hotfixes": {"emulate_win32_lastmod": True, "re_encode_path_info": True, "unquote_path_info": False},
        "block_size": 64 * 1024,
        "suppress_version_info": True,
        "add_header_MS_Author_Via": True,
        "logging": {"enable": False},
        "verbose": 1,
    }
    return cast(WSGIApp, RequestGuard(WsgiDAVApp(config), max_upload_bytes, ENV_IMPORT_ID))


def webdav_factory(root_dir: Path, gate: DepositGate, keyring: Keyring, landings: Landings, *, max_upload_bytes: int,
                   mount_path: str = "/webdav", workers: int = 32,
                   locks: DepositLocks | None = None) -> Callable[[asyncio.AbstractEventLoop], Any]:
    """The factory of the deposit space's ASGI app for `shared.web.LazyMount`: WsgiDAV behind a2wsgi
    (`workers` threads: a slow upload or a failed-login slowdown holds one for its whole duration), its
    gate calls run on the loop it is built in."""

    def build(loop: asyncio.AbstractEventLoop) -> Any:
        from a2wsgi import WSGIMiddleware

        wsgi = build_webdav_app(root_dir, gate, loop, keyring, landings, mount_path=mount_path,
                                max_upload_bytes=max_upload_bytes, locks=locks)
        return WebdavMetrics(WSGIMiddleware(wsgi, workers=workers))

    return build


class WebdavMetrics:
    """edt_webdav_requests_total (method, status) and edt_webdav_bytes_total (body bytes received, sent)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        received = sent = 0

        async def counting_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def counting_send(message: Any) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            WEBDAV_REQUESTS.labels(method_label(scope["method"]), str(status)).inc()
            WEBDAV_BYTES.labels("received").inc(received)
            WEBDAV_BYTES.labels("sent").inc(sent)


__all__ = ["REALM", "DepositDomainController", "DepositGate", "DropzoneProvider", "build_webdav_app",
           "webdav_factory"]
