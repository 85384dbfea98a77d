"""WebDAV logins against the real deposit accounts: lockout, password regeneration, deletion."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import sample_xml
from tests.integration.dropzone.webdav_fixtures import RealWebdavServer, start_real_webdav_server


@pytest.fixture
def product(tmp_path: Path) -> Iterator[RealWebdavServer]:
    yield from start_real_webdav_server(tmp_path)


def propfind(s: RealWebdavServer, auth: tuple[str, str]) -> int:
    r = httpx.request("PROPFIND", s.url(s.site, "1754", ""), auth=auth, headers={"Depth": "0"}, timeout=30)
    return r.status_code


def test_failed_logins_are_slowed_then_lock_the_account(product: RealWebdavServer) -> None:
    s = product
    assert propfind(s, s.auth) == 207
    started = time.monotonic()
    for _ in range(5):
        assert propfind(s, (s.login, "wrong-password")) == 401
    assert time.monotonic() - started >= 0.25 + 0.5 + 1 + 2 + 3 - 0.5, "failures are slowed down"
    assert propfind(s, s.auth) == 401, "locked out even with the right password"
    account = next(a for a in s.api.ok("GET", f"/sites/{s.site}/accounts")["items"] if a["login"] == s.login)
    assert account["locked"] is True
    # Regenerating the password (the ENT admin's remedy) unlocks it.
    new = s.api.ok("POST", f"/sites/{s.site}/accounts/{s.login}/password")["password"]
    assert propfind(s, (s.login, new)) == 207


def test_new_password_and_deleted_account_take_effect_at_once(product: RealWebdavServer) -> None:
    s = product
    assert propfind(s, s.auth) == 207
    new = s.api.ok("POST", f"/sites/{s.site}/accounts/{s.login}/password")["password"]
    assert propfind(s, s.auth) == 401
    assert propfind(s, (s.login, new)) == 207
    assert s.api.call("DELETE", f"/sites/{s.site}/accounts/{s.login}").status_code == 204
    assert propfind(s, (s.login, new)) == 401


def test_windows_style_upload_makes_exactly_one_import(product: RealWebdavServer) -> None:
    """Windows' redirector: 0-byte PUT of the final name, LOCK, PUT to a temporary name, MOVE onto the
    final name, UNLOCK — one deposit, one import in the history, with the final name."""
    s = product
    final, temp = s.url(s.site, "1754", "EDT_To_KOSMOS_0490856P.xml"), s.url(s.site, "1754", "~$EDT_To_KOS.tmp")
    data = sample_xml("0490856P", marker="windows")
    before = len(s.api.history(s.site))
    with httpx.Client(auth=s.auth, timeout=30) as dav:
        assert dav.put(final, content=b"").status_code == 201
        lock = dav.request("LOCK", final, headers={"Timeout": "Second-300", "Content-Type": "text/xml"},
                           content=b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
                                   b'</D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>')
        assert lock.status_code == 200
        token = lock.headers["Lock-Token"]
        assert dav.put(temp, content=data).status_code == 201
        moved = dav.request("MOVE", temp, headers={"Destination": final, "Overwrite": "T",
                                                   "If": f"<{final}> ({token})"})
        assert moved.status_code in (201, 204)
        assert dav.request("UNLOCK", final, headers={"Lock-Token": token}).status_code == 204
    deposits = [d for d in s.deposits if d.name == "EDT_To_KOSMOS_0490856P.xml"]
    assert len(deposits) == 1 and deposits[0].data == data
    history = s.api.history(s.site)
    assert len(history) == before + 1
    assert s.api.wait(history[0]["id"])["status"] == "done"
