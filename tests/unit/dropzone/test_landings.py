"""How long files stay in the WebDAV folder (services/dropzone/landings.py), on a folder and a clock the
test moves: deposits for the grace period, anything else until it has been untouched for the stale period."""

from __future__ import annotations

import os
import time
from pathlib import Path

from services.dropzone.landings import STATE_DIR, Landings

GRACE, STALE = 60.0, 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"sealed")
    return path


def test_stale_files_uploads_and_empty_client_folders_leave(tmp_path: Path) -> None:
    clock = Clock()
    landings = Landings(tmp_path, grace_s=GRACE, stale_s=STALE, clock=clock)
    left = touch(tmp_path / "4817" / "1754" / "upload.tmp")
    part = touch(tmp_path / STATE_DIR / "uploads" / "put-x.part")
    folder = tmp_path / "4817" / "1754" / "client"
    folder.mkdir()
    deposit = touch(tmp_path / "4817" / "1754" / "a.xml")
    landings.arrived("/4817/1754/a.xml", True)
    clock.now += STALE / 2  # a setting back of mtime (PROPPATCH) does not count: ctime says when it changed
    os.utime(left, (0, 0))
    assert landings.sweep() == 1 and not deposit.exists()  # only the deposit, past its grace period
    assert left.exists() and part.exists() and folder.exists()
    clock.now += STALE
    landings.sweep()
    assert not left.exists() and not part.exists() and not folder.exists()
    assert (tmp_path / "4817").is_dir()  # the site's folder stays (establishment folders come back on demand)


def test_a_deposit_leaves_after_the_grace_period_and_a_locked_one_waits(tmp_path: Path) -> None:
    clock = Clock()
    landings = Landings(tmp_path, grace_s=GRACE, stale_s=STALE, clock=clock)
    locked: set[str] = set()
    forgotten: list[str] = []
    landings.bind(lambda path: path in locked, forgotten.append)
    a = touch(tmp_path / "4817" / "1754" / "a.xml")
    b = touch(tmp_path / "4817" / "1754" / "b.xml")
    landings.arrived("/4817/1754/a.xml", True)
    landings.arrived("/4817/1754/b.xml", True)
    locked.add("/4817/1754/b.xml")
    clock.now += GRACE + 1
    assert landings.sweep() == 1
    assert not a.exists() and b.exists() and forgotten == ["/4817/1754/a.xml"]
    locked.clear()
    landings.sweep()
    assert not b.exists() and landings.due() == {}


def test_a_file_replaced_by_a_non_deposit_follows_the_stale_rule(tmp_path: Path) -> None:
    clock = Clock()
    landings = Landings(tmp_path, grace_s=GRACE, stale_s=STALE, clock=clock)
    landings.arrived("/4817/1754/a.xml", True)
    landings.arrived("/4817/1754/a.xml", False)  # an empty placeholder PUT over it
    assert landings.due() == {}
    landings.arrived("/4817/1754/d/x.xml", True)
    landings.carried("/4817/1754/d", "/4817/1754/e", tree=True)
    assert list(landings.due()) == ["4817/1754/e/x.xml"]
    landings.forget("/4817/1754/e", tree=True)
    assert landings.due() == {}
