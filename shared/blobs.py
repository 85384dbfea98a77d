"""Content-addressed blob store: sha256 paths on a filesystem volume shared by the services, every blob
sealed at rest.

A blob never changes once written, so what is decoded or derived from it (a canonical model, a directory
snapshot and its indexes, a model's threshold facts) is the same for every stage of every import: `load`
and `derive` keep the last few results in memory, so each is computed once per process, not once per stage.
What is cached is the decoded object, in memory only: the plaintext never lands on disk.

Sealing (encryption at rest, AES-256-GCM): the deposited files, canonical models and directory snapshots
hold the names and birth dates of minors, so every file this module writes is sealed with the current key
of a `Keyring` (settings EDT_BLOB_KEY, retired keys in EDT_BLOB_KEYS) — the WebDAV folder uses the same
format. A sealed file is

    header = b"EDTB1" ‖ len(key id) ‖ key id ‖ salt (16 random bytes)
    chunk i = AES-GCM(key = HKDF-SHA256(master key, salt), nonce = i (11 bytes) ‖ last (1 byte),
                      plaintext ≤ 1 MiB, associated data = header)

A key of its own per file (from the salt) keeps nonces unique whatever the number of files; the last-chunk
flag in the nonce makes a truncated file fail to open, the header as associated data makes a changed key
id or salt fail. Chunks are independent, so a sealed file is read as a stream and seeked (zip archives,
HTTP ranges) without decrypting the whole. The key id in each header is what lets keys rotate: a new
current key seals what is written from then on, retired keys still open what they sealed, and `reseal`
moves a blob to the current key. Content addressing stays on the plaintext sha256 (messages carry it).
A file without the header is a blob written before sealing existed: it is read as it is, and resealed by
the retention runs (`reseal`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gc
import hashlib
import io
import os
import re
import secrets
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CHUNK = 1024 * 1024
DECODED_ENTRIES = 24  # an L canonical model decodes to ~4 MB of objects, a 6,000-person directory to ~2 MB

T = TypeVar("T")

_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_resume = False


GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> None:
    """A service holds a large, long-lived heap (decoded models, session plans) and allocates by tens of
    thousands per import: with CPython's default thresholds (700, 10, 10) it ran a full collection, walking
    that whole heap, every few thousand allocations — an L school's session stage took 0.56 s instead of
    0.42 s. Young collections every 100,000 allocations keep cyclic garbage bounded (a few MB) and make full
    collections rare. Called once per process by the composition root."""
    gc.set_threshold(*GC_THRESHOLDS)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a block builds tens of thousands of objects that outlive it.

    Decoding an L model or planning its sessions allocates ~70k container objects that all survive: each
    batch promoted to the oldest generation counts towards a full collection, and CPython ran 2–3 of them
    (each walking the whole heap) during one import — decoding took 5× longer. Paused, the objects are
    promoted once, later. Nothing here makes cycles; other threads' cycles wait a few hundred ms. Nested and
    concurrent pauses are counted: the last one out restores collection, if it was enabled when the first
    came in."""
    global _gc_pauses, _gc_resume
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_resume = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_resume:
                gc.enable()


# ------------------------------------------------------------------------------------------ sealing

MAGIC = b"EDTB1"
SALT_BYTES = 16
TAG_BYTES = 16
KEY_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_HKDF_INFO = b"edt-import sealed file v1"


class KeySettingError(ValueError):
    """A key setting that cannot be used (missing, malformed, wrong length)."""


class SealError(ValueError):
    """A sealed file that does not open: unknown key id, wrong key, altered or truncated content."""


def _decode_key(text: str) -> bytes:
    value = text.strip()
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_" if ("-" in value or "_" in value)
                               else None, validate=True)
    except (binascii.Error, ValueError):
        raise KeySettingError("a blob key is base64 of 32 random bytes") from None
    if len(raw) != KEY_BYTES:
        raise KeySettingError(f"a blob key is 32 bytes (AES-256), this one is {len(raw)}")
    return raw


def parse_key(entry: str) -> tuple[str, bytes]:
    """`id:base64` (the id stored in each sealed file), or a bare base64 key whose id is the start of its
    own SHA-256."""
    kid, sep, key = entry.strip().rpartition(":")
    if not sep:
        raw = _decode_key(key)
        return hashlib.sha256(raw).hexdigest()[:8], raw
    if not _KEY_ID.match(kid):
        raise KeySettingError(f"key id {kid!r}: 1 to 32 letters, digits, '.', '_' or '-'")
    return kid, _decode_key(key)


def generate_key() -> str:
    """A new key as EDT_BLOB_KEY takes it (`id:base64`), its id naming when it was made unique enough."""
    return f"k{secrets.token_hex(4)}:{base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode().rstrip('=')}"


@dataclass(frozen=True)
class Keyring:
    """The key that seals what is written (`current`) and every key that may open what was (by id).
    Plain bytes only, so that it crosses to a worker process."""

    current: str
    keys: Mapping[str, bytes]

    @classmethod
    def parse(cls, current: str, retired: str = "") -> Keyring:
        """From the settings: EDT_BLOB_KEY (the current key) and EDT_BLOB_KEYS (retired keys, comma-separated)."""
        if not current.strip():
            raise KeySettingError("EDT_BLOB_KEY is not set: blobs and WebDAV deposits are encrypted at rest with it "
                            "(`make run` generates one; else `python -m deploy.blobkey`)")
        kid, key = parse_key(current)
        keys = {kid: key}
        for entry in filter(None, (e.strip() for e in retired.split(","))):
            rid, rkey = parse_key(entry)
            if rid in keys and keys[rid] != rkey:
                raise KeySettingError(f"key id {rid!r} given twice with different keys")
            keys[rid] = rkey
        return cls(kid, keys)

    @classmethod
    def generate(cls) -> Keyring:
        return cls.parse(generate_key())

    def _cipher(self, kid: str, salt: bytes) -> AESGCM:
        key = self.keys.get(kid)
        if key is None:
            raise SealError(f"sealed with key {kid!r}, which is neither EDT_BLOB_KEY nor in EDT_BLOB_KEYS")
        return AESGCM(HKDF(hashes.SHA256(), KEY_BYTES, salt, _HKDF_INFO).derive(key))

    def writer(self, raw: BinaryIO) -> SealedWriter:
        """A writable stream sealing into `raw` with the current key; `close()` writes the last chunk."""
        return SealedWriter(self, raw)

    def open(self, path: Path | str) -> BinaryIO:
        """`path` for reading, as plaintext: a seekable stream (a file without the header is read as it is)."""
        raw = open(path, "rb")  # noqa: SIM115 - owned by the returned stream
        try:
            head = raw.read(len(MAGIC))
            raw.seek(0)
            if head != MAGIC:
                return raw
            return io.BufferedReader(SealedReader(self, raw), buffer_size=CHUNK)
        except BaseException:
            raw.close()
            raise

    def key_id_of(self, path: Path | str) -> str | None:
        """The id of the key a file is sealed with (None: not sealed)."""
        with open(path, "rb") as raw:
            head = raw.read(len(MAGIC) + 1)
            if head[:len(MAGIC)] != MAGIC or len(head) <= len(MAGIC):
                return None
            return raw.read(head[-1]).decode("ascii", "replace")


def plain_size(path: Path | str) -> int:
    """The plaintext size of a file as `Keyring.open` reads it, from its size alone (no key needed)."""
    with open(path, "rb") as raw:
        total = os.fstat(raw.fileno()).st_size
        head = raw.read(len(MAGIC) + 1)
    if head[:len(MAGIC)] != MAGIC or len(head) <= len(MAGIC):
        return total
    body = total - (len(MAGIC) + 1 + head[-1] + SALT_BYTES)
    chunks = max(1, -(-body // (CHUNK + TAG_BYTES)))
    return max(0, body - chunks * TAG_BYTES)


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class SealedWriter(io.RawIOBase):
    """Seals what is written, chunk by chunk; `close()` seals the last (possibly empty) chunk. The
    plaintext's SHA-256 and size are known once closed (`sha256`, `size`)."""

    def __init__(self, keyring: Keyring, raw: BinaryIO) -> None:
        super().__init__()
        self.raw = raw
        salt = os.urandom(SALT_BYTES)
        kid = keyring.current.encode("ascii")
        self.header = MAGIC + bytes([len(kid)]) + kid + salt
        self.aead = keyring._cipher(keyring.current, salt)
        self.raw.write(self.header)
        self.pending = bytearray()
        self.index = 0
        self.digest = hashlib.sha256()
        self.size = 0
        self.sha256 = ""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.digest.update(view)
        self.size += len(view)
        self.pending += view
        while len(self.pending) > CHUNK:  # keep one chunk back: only close() knows which is the last
            self._seal(bytes(self.pending[:CHUNK]), last=False)
            del self.pending[:CHUNK]
        return len(view)

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        self.raw.write(self.aead.encrypt(_nonce(self.index, last), chunk, self.header))
        self.index += 1

    def close(self) -> None:
        if not self.closed:
            try:
                self._seal(bytes(self.pending), last=True)
                self.pending.clear()
                self.sha256 = self.digest.hexdigest()
                self.raw.flush()
            finally:
                super().close()


class SealedReader(io.RawIOBase):
    """The plaintext of a sealed file, seekable; each chunk is authenticated before any of it is read."""

    def __init__(self, keyring: Keyring, raw: BinaryIO) -> None:
        super().__init__()
        self.raw = raw
        fixed = raw.read(len(MAGIC) + 1)
        if len(fixed) <= len(MAGIC) or fixed[:len(MAGIC)] != MAGIC:
            raise SealError("not a sealed file")
        kid = raw.read(fixed[-1])
        salt = raw.read(SALT_BYTES)
        if len(kid) != fixed[-1] or len(salt) != SALT_BYTES:
            raise SealError("sealed file truncated in its header")
        self.header = fixed + kid + salt
        self.aead = keyring._cipher(kid.decode("ascii", "replace"), salt)
        total = os.fstat(raw.fileno()).st_size
        body = total - len(self.header)
        self.chunks = max(1, -(-body // (CHUNK + TAG_BYTES)))
        self.length = max(0, body - self.chunks * TAG_BYTES)
        self.pos = 0
        self._cached: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _chunk(self, index: int) -> bytes:
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        self.raw.seek(len(self.header) + index * (CHUNK + TAG_BYTES))
        sealed = self.raw.read(CHUNK + TAG_BYTES)
        try:
            plain = self.aead.decrypt(_nonce(index, index == self.chunks - 1), sealed, self.header)
        except InvalidTag:
            raise SealError("sealed file altered, truncated or opened with the wrong key") from None
        self._cached = (index, plain)
        return plain

    def readinto(self, buffer: Any) -> int:
        if self.pos >= self.length:
            if self.length == 0:
                self._chunk(0)  # an empty file is still authenticated
            return 0
        index, offset = divmod(self.pos, CHUNK)
        plain = self._chunk(index)
        n = min(len(buffer), len(plain) - offset)
        buffer[:n] = plain[offset:offset + n]
        self.pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.length}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
            self._cached = None
        super().close()


def seal_into(keyring: Keyring, source: BinaryIO, directory: Path) -> tuple[Path, str, int]:
    """Copy `source` (plaintext) sealed into a new temporary file of `directory`, fsynced; the file, the
    plaintext's sha256 and size. The caller renames it into place (or removes it)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            sealed = keyring.writer(out)
            while chunk := source.read(CHUNK):
                sealed.write(chunk)
            sealed.close()
            os.fsync(out.fileno())
        return Path(tmp_name), sealed.sha256, sealed.size
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


# ------------------------------------------------------------------------------------------- store


class BlobStore:
    def __init__(self, root: Path, keyring: Keyring, decoded_entries: int = DECODED_ENTRIES) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keyring = keyring
        self._decoded: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._decoded_cap = decoded_entries
        self._decoded_lock = threading.Lock()

    def derive(self, sha256: str, name: str, compute: Callable[[], T]) -> T:
        """What `compute` derives from blob `sha256` — a pure function of its content, named `name` —
        computed once and kept among the last few (LRU). The result is shared: never mutate it."""
        key = (sha256, name)
        with self._decoded_lock:
            if key in self._decoded:
                self._decoded.move_to_end(key)
                return self._decoded[key]  # type: ignore[no-any-return]
        with gc_paused():
            value = compute()
        with self._decoded_lock:
            self._decoded[key] = value
            while len(self._decoded) > self._decoded_cap:
                self._decoded.popitem(last=False)
        return value

    def load(self, sha256: str, decode: Callable[[bytes], T]) -> T:
        """Blob `sha256` decoded by `decode` (a pure function, e.g. the timetable codec's `loads`), cached."""
        name = f"{decode.__module__}.{decode.__qualname__}"
        return self.derive(sha256, name, lambda: decode(self.read_bytes(sha256)))

    def forget(self, sha256: str) -> None:
        """Drop what is cached of a blob (it was purged)."""
        with self._decoded_lock:
            for key in [k for k in self._decoded if k[0] == sha256]:
                del self._decoded[key]

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def put_stream(self, stream: BinaryIO) -> tuple[str, int]:
        """Seal, hash and fsync into a temporary file, then rename it to its content address (the plaintext's
        sha256). A crash leaves at worst a stray temporary file, never a blob whose content differs from its
        name."""
        tmp, sha, size = seal_into(self.keyring, stream, self.root / "tmp")
        try:
            final = self.path(sha)
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                os.unlink(tmp)
            else:
                os.replace(tmp, final)
            return sha, size
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put_file(self, path: Path) -> tuple[str, int]:
        """A plaintext file, or a file sealed with this store's keyring (the WebDAV folder's), as a blob."""
        with self.keyring.open(path) as f:
            return self.put_stream(f)

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        return self.put_stream(io.BytesIO(data))

    def open(self, sha256: str) -> BinaryIO:
        """The blob's plaintext as a seekable stream."""
        return self.keyring.open(self.path(sha256))

    def size(self, sha256: str) -> int:
        return plain_size(self.path(sha256))

    def read_bytes(self, sha256: str) -> bytes:
        with self.open(sha256) as f:
            return f.read()

    def iter_chunks(self, sha256: str) -> Iterator[bytes]:
        with self.open(sha256) as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def delete(self, sha256: str) -> bool:
        """Remove a blob (retention); False when it was not there."""
        self.forget(sha256)
        try:
            os.unlink(self.path(sha256))
        except FileNotFoundError:
            return False
        return True

    def reseal(self, sha256: str) -> bool:
        """Seal a blob again with the current key when it is not (a retired key, or written before sealing
        existed); True when it was. Readers holding the old file keep reading it."""
        path = self.path(sha256)
        try:
            if self.keyring.key_id_of(path) == self.keyring.current:
                return False
            with self.keyring.open(path) as f:
                tmp, sha, _ = seal_into(self.keyring, f, self.root / "tmp")
        except FileNotFoundError:
            return False
        if sha != sha256:  # never replace a blob by content other than its name says
            os.unlink(tmp)
            raise SealError(f"blob {sha256} does not hold what its name says (found {sha})")
        os.replace(tmp, path)
        return True
