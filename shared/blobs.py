"""Content-addressed blob store: sha256 paths on a filesystem volume shared by the services.

A blob never changes once written, so what is decoded or derived from it (a canonical model, a directory
snapshot and its indexes, a model's threshold facts) is the same for every stage of every import: `load`
and `derive` keep the last few results in memory, so each is computed once per process, not once per stage.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

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


class BlobStore:
    def __init__(self, root: Path, decoded_entries: int = DECODED_ENTRIES) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
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

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def put_stream(self, stream: BinaryIO) -> tuple[str, int]:
        """Copy, hash and fsync into a temporary file, then rename it to its content address.

        A crash leaves at worst a stray temporary file, never a blob whose content differs from its name.
        """
        digest = hashlib.sha256()
        size = 0
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            final = self.path(sha)
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                os.unlink(tmp_name)
            else:
                os.replace(tmp_name, final)
            return sha, size
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

    def put_file(self, path: Path) -> tuple[str, int]:
        with open(path, "rb") as f:
            return self.put_stream(f)

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        import io

        return self.put_stream(io.BytesIO(data))

    def read_bytes(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def iter_chunks(self, sha256: str) -> Iterator[bytes]:
        with open(self.path(sha256), "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def copy_to(self, sha256: str, dest: Path) -> None:
        shutil.copyfile(self.path(sha256), dest)
