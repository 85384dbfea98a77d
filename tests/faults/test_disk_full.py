"""A full disk under the deposit store, on the distributed product (a row of `make test-faults`): the data
directory and the blob store of a cluster of their own on a small tmpfs, filled up; a WebDAV PUT and a
REST upload each get 507 with the cause, nothing is recorded or left half-written, the product stays up,
and once room is made the same file is deposited and integrated."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.conftest import FaultStack, Infra, record, start_fault_stack, stop_fault_stack
from tests.faults.test_faults import UAI, school
from tests.harness import sample_xml

VOLUME_MB = 48


@pytest.fixture
def small_disk(infra: Infra) -> Iterator[Path]:
    mount = infra.root / "small-disk"
    mount.mkdir()
    # Root is needed to mount (the suite runs as root in CI); a failed mount fails the test, never skips it.
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={VOLUME_MB}m,mode=0755", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def full_stack(infra: Infra, small_disk: Path) -> Iterator[FaultStack]:
    stack = start_fault_stack(infra, EDT_DATA_DIR=str(small_disk / "data"), EDT_BLOB_DIR=str(small_disk / "blobs"),
                              EDT_MAX_UPLOAD_MB="20")
    try:
        yield stack
    finally:
        stop_fault_stack(stack)


def fill(volume: Path, leave: int) -> Path:
    """A file taking all the volume's room but `leave` bytes."""
    import os

    filler = volume / "filler"
    st = os.statvfs(volume)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as out:
        out.truncate(0)
        chunk = b"\0" * (1 << 20)
        remaining = free - leave
        while remaining > 0:
            remaining -= out.write(chunk[: min(len(chunk), remaining)])
    return filler


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and p.name != "filler"}


def test_a_full_disk_refuses_deposits_with_507_and_keeps_nothing(full_stack: FaultStack, small_disk: Path,
                                                                 tmp_path: Path) -> None:
    api = full_stack.api
    started = time.monotonic()
    api.create_site("disk", {"e": UAI})
    assert api.wait(api.upload("disk", "e", sample_xml(UAI, marker="first")), timeout=120)["status"] == "done"
    account = api.create_account("disk")
    known = [h["id"] for h in api.history("disk")]
    export = tmp_path / "EDT_To_KOSMOS.xml"
    export.write_bytes(school("L"))  # ≈ 2.5 MB: more than the room left
    before = files_under(small_disk)
    filler = fill(small_disk, leave=256 * 1024)

    url = f"{api.base_url}/webdav/disk/e/{export.name}"
    put = subprocess.run(["curl", "-sS", "-u", f"{account['login']}:{account['password']}", "-T", str(export),
                          "-w", "\n%{http_code}", url], capture_output=True, text=True, timeout=120, check=True)
    body, _, code = put.stdout.rpartition("\n")
    rest = api.call("POST", "/sites/disk/establishments/e/imports",
                    files={"file": (export.name, export.read_bytes(), "application/xml")})
    up = httpx.get(f"{api.base_url}/readyz", timeout=10)
    left = files_under(small_disk) - before
    history = [h["id"] for h in api.history("disk")]

    filler.unlink()
    # Room made, the same file goes through (by hand: an automatic L deposit after an XS first import
    # would rightly be blocked by threshold control).
    done = api.wait(api.upload("disk", "e", export.read_bytes(), name=export.name), timeout=300)

    ok = (code == "507" and "espace disque insuffisant" in body.lower() and rest.status_code == 507
          and rest.headers["content-type"].startswith("application/problem+json") and up.status_code == 200
          and not left and history == known and done["status"] == "done")
    record("disk full under the deposit store", runs=1, imports=1, lost=0 if done["status"] == "done" else 1,
           duplicated=0, ok=ok, seconds=time.monotonic() - started, note=f"PUT {code}, REST {rest.status_code}")
    assert code == "507", (code, body)
    assert "espace disque insuffisant" in body.lower() and "insufficient storage" in body.lower(), body
    assert rest.status_code == 507, rest.text
    assert rest.headers["content-type"].startswith("application/problem+json")
    assert "disque" in rest.json()["detail"], rest.json()
    assert up.status_code == 200, up.text
    assert not left, f"half-written files left behind: {sorted(map(str, left))}"
    assert history == known, "a refused deposit was recorded"
    assert done["status"] == "done", done
