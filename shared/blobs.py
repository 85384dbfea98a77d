"""Content-addressed blob store: sha256 paths on a filesystem volume shared by the services."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

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
