"""How long files stay in the WebDAV deposit space (docs/privacy.md): `Landings` schedules each file's
removal, `sweep` carries it out (the dropzone runs it periodically, `WebdavSweeper`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from shared.outbox import LoopService

STATE_DIR = ".dav"  # WsgiDAV's and our state below the root: never a site id, so never served


def _key(path: str) -> str:
    return path.strip("/")


class Landings:
    """When each file of the deposit space leaves it (docs/privacy.md).

    A file that made a deposit is safely in the blob store once its request is answered; it stays
    `grace_s` more — WebDAV clients read back and list what they wrote: rclone checks the size, the Windows
    redirector PROPPATCHes its times and UNLOCKs, litmus GETs — and is then removed (later, if a lock still
    holds it). Any other file (a temporary, an empty placeholder, a file carried along by a folder MOVE),
    an upload a crash left and an empty client folder are removed once untouched for `stale_s`. Moved or
    copied, a deposited file keeps its schedule. The schedule survives a restart (``.dav/landed.json``).
    Keys are provider paths without their slashes (``4817/1754/x.xml``), which are also the files' paths
    below the root."""

    def __init__(self, root_dir: Path, *, grace_s: float, stale_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.root_dir = Path(root_dir)
        self.state = self.root_dir / STATE_DIR / "landed.json"
        self.grace_s, self.stale_s, self.clock = grace_s, stale_s, clock
        self._lock = threading.Lock()
        self._due: dict[str, float] = self._load()
        self._locked: Callable[[str], bool] = lambda path: False
        self._forget_properties: Callable[[str], None] = lambda path: None

    def bind(self, locked: Callable[[str], bool], forget_properties: Callable[[str], None]) -> None:
        """The provider's lock and property managers (they exist once the WebDAV app is built)."""
        self._locked, self._forget_properties = locked, forget_properties

    def _load(self) -> dict[str, float]:
        try:
            data = json.loads(self.state.read_text())
            return {str(k): float(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def _save(self) -> None:
        self.state.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._due))
        os.replace(tmp, self.state)

    def due(self) -> dict[str, float]:
        with self._lock:
            return dict(self._due)

    def arrived(self, path: str, deposited: bool) -> None:
        """A PUT wrote `path`: a deposit leaves after the grace period, anything else follows the stale rule."""
        with self._lock:
            if deposited:
                self._due[_key(path)] = self.clock() + self.grace_s
            elif self._due.pop(_key(path), None) is None:
                return
            self._save()

    def forget(self, path: str, *, tree: bool = False) -> None:
        key = _key(path)
        with self._lock:
            gone = [k for k in self._due if k == key or (tree and k.startswith(key + "/"))]
            for k in gone:
                del self._due[k]
            if gone:
                self._save()

    def carried(self, source: str, dest: str, *, deposited: bool = False, keep_source: bool = False,
                tree: bool = False) -> None:
        """`source` was moved (or copied: `keep_source`) to `dest`, a new deposit there if `deposited`."""
        src, dst = _key(source), _key(dest)
        with self._lock:
            carried = {k: v for k, v in self._due.items() if k == src or (tree and k.startswith(src + "/"))}
            if not keep_source:
                for k in carried:
                    del self._due[k]
            for k, v in carried.items():
                self._due[dst + k[len(src):]] = v
            if deposited:
                self._due[dst] = self.clock() + self.grace_s
            elif not carried:
                self._due.pop(dst, None)
            self._save()

    def sweep(self) -> int:
        """Remove what is due (see the class); the number of files and folders removed."""
        now = self.clock()
        removed = 0
        changed = False
        for key, deadline in self.due().items():
            if deadline > now or self._locked("/" + key):
                continue
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
                target = self.root_dir / key
                if not target.is_symlink() and target.is_file():
                    target.unlink()
                    removed += 1
            self._forget_properties("/" + key)
            with self._lock:
                if self._due.get(key) == deadline:
                    del self._due[key]
                    changed = True
        scheduled = self.due()
        limit = now - self.stale_s
        for folder, _dirs, files in os.walk(self.root_dir, topdown=False):
            rel = os.path.relpath(folder, self.root_dir)
            parts = () if rel == "." else tuple(rel.split(os.sep))
            if parts[:1] == (STATE_DIR,) and parts[1:2] != ("uploads",):
                continue
            for name in files:
                key = "/".join((*parts, name))
                if key in scheduled:
                    continue
                try:
                    st = os.lstat(os.path.join(folder, name))
                    if max(st.st_mtime, st.st_ctime) < limit and not self._locked("/" + key):
                        os.unlink(os.path.join(folder, name))
                        self._forget_properties("/" + key)
                        removed += 1
                except OSError:
                    continue
            if len(parts) >= 2 and parts[0] != STATE_DIR:  # client folders; establishment ones come back
                with contextlib.suppress(OSError):
                    if not os.listdir(folder) and os.lstat(folder).st_mtime < limit:
                        os.rmdir(folder)
                        removed += 1
        with self._lock:
            gone = [k for k in self._due if not (self.root_dir / k).exists()]
            for key in gone:
                del self._due[key]
            if changed or gone:
                self._save()
        return removed


class WebdavSweeper(LoopService):
    """Runs `Landings.sweep` (in a thread: it walks the folder) often enough for the grace period."""

    def __init__(self, landings: Landings) -> None:
        super().__init__(max(0.5, min(60.0, landings.grace_s / 2)))
        self.landings = landings

    async def run_once(self) -> None:
        await asyncio.to_thread(self.landings.sweep)
