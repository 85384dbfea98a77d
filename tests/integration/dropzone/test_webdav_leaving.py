"""A deposited file leaves the WebDAV folder once it is safely in the blob store (docs/privacy.md): it stays
visible for a grace period (clients read back and list what they wrote), then the folder lists nothing
old; other files follow a longer stale rule. On the WebDAV layer with a clock the test moves, and on the
whole product with a one-second grace."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.dropzone.landings import Landings
from tests.harness import curl_put, sample_xml
from tests.integration.dropzone.test_webdav import EXPORT, FINAL, LOCK_BODY
from tests.integration.dropzone.webdav_fixtures import WebdavServer, start_real_webdav_server, start_webdav_server

GRACE, STALE = 300.0, 24 * 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def layer(tmp_path: Path, clock: Clock) -> Iterator[tuple[WebdavServer, Landings]]:
    landings = Landings(tmp_path / "webdav", grace_s=GRACE, stale_s=STALE, clock=clock)
    server, thread = start_webdav_server(tmp_path, landings=landings)
    try:
        yield server, landings
    finally:
        thread.stop()


def listed(dav: httpx.Client, url: str) -> list[str]:
    r = dav.request("PROPFIND", url, headers={"Depth": "1"})
    assert r.status_code == 207, r.text
    return sorted(h.rsplit("/", 1)[-1] for h in re.findall(r"<D:href>([^<]*)</D:href>", r.text) if not h.endswith("/"))


def test_a_deposit_stays_for_the_grace_period_then_the_folder_lists_nothing_old(
        layer: tuple[WebdavServer, Landings], clock: Clock) -> None:
    s, landings = layer
    folder = s.url(s.site, "1754", "")
    with httpx.Client(auth=s.auth, timeout=10) as dav:
        assert dav.put(s.url(s.site, "1754", FINAL), content=EXPORT).status_code == 201
        assert dav.put(s.url(s.site, "1754", "upload.tmp"), content=EXPORT).status_code == 201  # not a deposit
        clock.now += GRACE - 1
        landings.sweep()
        assert listed(dav, folder) == sorted([FINAL, "upload.tmp"])  # clients still see what they wrote
        assert dav.get(s.url(s.site, "1754", FINAL)).content == EXPORT
        clock.now += 2
        assert landings.sweep() == 1
        assert listed(dav, folder) == ["upload.tmp"]
        assert dav.get(s.url(s.site, "1754", FINAL)).status_code == 404
        clock.now += STALE
        landings.sweep()
        assert listed(dav, folder) == []
    assert [d.name for d in s.deposits] == [FINAL]  # the deposit itself is in the blob store, untouched


def test_a_locked_deposit_waits_for_its_unlock(layer: tuple[WebdavServer, Landings], clock: Clock) -> None:
    s, landings = layer
    final = s.url(s.site, "1754", FINAL)
    with httpx.Client(auth=s.auth, timeout=10) as dav:
        token = dav.request("LOCK", final, content=LOCK_BODY, headers={"Depth": "0"}).headers["Lock-Token"]
        assert dav.put(final, content=EXPORT, headers={"If": f"({token})"}).status_code in (201, 204)
        clock.now += GRACE + 1
        landings.sweep()
        assert dav.get(final).content == EXPORT  # the client (the Windows redirector) still holds it
        assert dav.request("UNLOCK", final, headers={"Lock-Token": token}).status_code == 204
        landings.sweep()
        assert dav.get(final).status_code == 404


def test_a_moved_or_copied_deposit_keeps_its_schedule_and_restarts_keep_it(
        tmp_path: Path, layer: tuple[WebdavServer, Landings], clock: Clock) -> None:
    s, landings = layer
    with httpx.Client(auth=s.auth, timeout=10) as dav:
        assert dav.put(s.url(s.site, "1754", "a.xml"), content=EXPORT).status_code == 201
        assert dav.request("MOVE", s.url(s.site, "1754", "a.xml"),
                           headers={"Destination": s.url(s.site, "1754", "a.bak")}).status_code == 201
        assert dav.request("COPY", s.url(s.site, "1754", "a.bak"),
                           headers={"Destination": s.url(s.site, "1754", "b.bak")}).status_code == 201
        assert sorted(landings.due()) == [f"{s.site}/1754/a.bak", f"{s.site}/1754/b.bak"]
        # a new process reads the schedule back
        reborn = Landings(tmp_path / "webdav", grace_s=GRACE, stale_s=STALE, clock=clock)
        assert reborn.due() == landings.due()
        clock.now += GRACE + 1
        assert reborn.sweep() == 2
        assert listed(dav, s.url(s.site, "1754", "")) == []


def test_after_a_real_import_the_webdav_folder_lists_nothing_and_never_held_it_in_clear(tmp_path: Path) -> None:
    """The whole product, EDT_WEBDAV_GRACE_S=1: a real-like export deposited with curl is imported, is never
    on disk in clear, then leaves the folder by itself while its source stays readable through the API."""
    servers = start_real_webdav_server(tmp_path, EDT_WEBDAV_GRACE_S="1")
    s = next(servers)
    try:
        export = tmp_path / "EDT_To_KOSMOS_0490856P.xml"
        data = sample_xml("0490856P")
        export.write_bytes(data)
        put = curl_put(s.url(s.site, "1754", ""), s.login, s.password, export)
        assert put.status == 201 and put.import_id
        name = re.search(rb'<Eleve Ident="\d+" Nom="([^"]+)"', data)
        assert name is not None
        for path in s.root_dir.rglob("*"):
            assert not path.is_file() or name.group(1) not in path.read_bytes(), path
        with httpx.Client(auth=s.auth, timeout=10) as dav:
            deadline = time.monotonic() + 15
            while listed(dav, s.url(s.site, "1754", "")):
                assert time.monotonic() < deadline, "the deposit never left the WebDAV folder"
                time.sleep(0.2)
        assert s.api.wait(put.import_id)["status"] == "done"
        source = s.api.call("GET", f"/imports/{put.import_id}/source", params={"raw": "true"})
        assert source.status_code == 200 and source.content == data
    finally:
        servers.close()
