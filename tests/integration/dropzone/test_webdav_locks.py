"""WebDAV locks cannot stop a school's deposits: capped and renewable, never on the folders every account
deposits into, dropped with the account's password, listed and cleared by an admin, gone after a restart."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from tests.harness import database, sample_xml
from tests.integration.conftest import start_stack
from tests.integration.dropzone.test_webdav import LOCK_BODY
from tests.integration.dropzone.webdav_fixtures import RealWebdavServer, WebdavServer, start_real_webdav_server

LOCK_CAP_S = 600  # EDT_WEBDAV_LOCK_TIMEOUT_S's default
GRANTED = (200, 201)  # 201: the lock made an empty file at an unmapped URL (RFC 4918 §7.3)
WRITTEN = (201, 204)


def lock(client: httpx.Client, url: str, timeout: str = "Second-604800", depth: str = "0") -> httpx.Response:
    return client.request("LOCK", url, content=LOCK_BODY, headers={"Timeout": timeout, "Depth": depth,
                                                                   "Content-Type": "text/xml"})


def granted_timeout(r: httpx.Response) -> int:
    """The timeout the server granted, from the lock's activelock element (RFC 4918 §9.10.1)."""
    in_body = re.search(r"<D:timeout>Second-(\d+)</D:timeout>", r.text)
    assert in_body, r.text
    return int(in_body.group(1))


def test_lock_timeouts_are_capped_and_renewable(webdav_server: WebdavServer) -> None:
    s = webdav_server
    dav = httpx.Client(auth=s.auth, timeout=30)
    for name, asked in (("week.xml", "Second-604800"), ("forever.xml", "Infinite"), ("short.xml", "Second-30")):
        url = s.url(s.site, "1754", name)
        assert dav.put(url, content=b"<x/>").status_code == 201
        r = lock(dav, url, asked)
        assert r.status_code == 200, r.text
        expected = 30 if asked == "Second-30" else LOCK_CAP_S
        assert expected - 5 <= granted_timeout(r) <= expected  # the time left, as the answer is written
    # a refresh (LOCK with the token, no body) renews it, capped again
    url = s.url(s.site, "1754", "week.xml")
    token = dav.request("PROPFIND", url, headers={"Depth": "0"}).text
    found = re.search(r"<D:locktoken><D:href>([^<]+)</D:href>", token)
    assert found
    r = dav.request("LOCK", url, headers={"Timeout": "Infinite", "If": f"(<{found.group(1)}>)"})
    assert r.status_code == 200, r.text
    assert LOCK_CAP_S - 5 <= granted_timeout(r) <= LOCK_CAP_S


def test_site_and_establishment_folders_cannot_be_locked(webdav_server: WebdavServer) -> None:
    s = webdav_server
    dav = httpx.Client(auth=s.auth, timeout=30)
    for url in (s.url(s.site, ""), s.url(s.site, "1754", ""), s.url(s.site, "4817", "")):
        for depth in ("0", "infinity"):
            r = lock(dav, url, depth=depth)
            assert r.status_code == 403, (url, depth, r.text)
            assert r.headers["content-type"].startswith("text/plain") and "verrou" in r.text.lower()
    # a client's own folder, and a file, can be locked
    assert dav.request("MKCOL", s.url(s.site, "1754", "mine")).status_code == 201
    assert lock(dav, s.url(s.site, "1754", "mine", ""), depth="infinity").status_code in GRANTED


# --- between accounts of one site (the whole product) ---------------------------------------------------


@pytest.fixture
def product(tmp_path: Path) -> Iterator[RealWebdavServer]:
    yield from start_real_webdav_server(tmp_path)


@pytest.fixture
def product_webdav_server(tmp_path: Path) -> Iterator[RealWebdavServer]:
    """Here a fresh product per test: the locks a test takes outlive it."""
    yield from start_real_webdav_server(tmp_path)


def second_account(s: RealWebdavServer) -> tuple[str, str]:
    other = s.api.create_account(s.site, "Paul", "Martin")
    return other["login"], other["password"]


def test_a_lock_never_blocks_other_accounts_deposits_of_other_names(product: RealWebdavServer) -> None:
    s = product
    mine, theirs = httpx.Client(auth=s.auth, timeout=30), httpx.Client(auth=second_account(s), timeout=30)
    locked = s.url(s.site, "1754", "EDT_To_KOSMOS_0490856P.xml")
    assert mine.put(locked, content=b"").status_code == 201
    assert lock(mine, locked).status_code in GRANTED
    assert lock(mine, s.url(s.site, "1754", ""), depth="infinity").status_code == 403
    for target in (s.url(s.site, "1754", "EDT_autre.xml"), s.url(s.site, "EDT_site.xml")):
        r = theirs.put(target, content=sample_xml("0490856P"))
        assert r.status_code == 201, r.text
        assert r.headers.get("x-import-id")
    refused = theirs.put(locked, content=sample_xml("0490856P"))  # the locked name itself
    assert refused.status_code == 423
    assert_lock_conflict_body(refused)


def assert_lock_conflict_body(r: httpx.Response) -> None:
    """RFC 4918's DAV:error with its condition code (clients parse it), and the cause in French and English."""
    assert r.headers["content-type"].startswith("application/xml")
    root = etree.fromstring(r.content)
    assert root.tag == "{DAV:}error"
    assert root.find("{DAV:}no-conflicting-lock/{DAV:}href") is not None, r.text
    causes = {c.get("{http://www.w3.org/XML/1998/namespace}lang"): c.text for c in root.iter("{*}cause")}
    assert "verrouillée par un autre client" in causes["fr"], causes
    assert "locked by another WebDAV client" in causes["en"], causes


def test_a_new_password_or_a_deleted_account_drops_its_locks(product: RealWebdavServer) -> None:
    s = product
    theirs = httpx.Client(auth=second_account(s), timeout=30)
    mine = httpx.Client(auth=s.auth, timeout=30)
    first, second = s.url(s.site, "1754", "a.xml"), s.url(s.site, "1754", "b.xml")
    for url in (first, second):
        assert lock(mine, url).status_code in GRANTED
        assert theirs.put(url, content=b"<x/>").status_code == 423
    s.api.ok("POST", f"/sites/{s.site}/accounts/{s.login}/password")
    for url in (first, second):
        assert theirs.put(url, content=b"<x/>").status_code in WRITTEN
    # the same for a deleted account
    third_login, third_password = second_account(s)
    assert lock(httpx.Client(auth=(third_login, third_password), timeout=30), second).status_code in GRANTED
    assert theirs.put(second, content=b"<x/>").status_code == 423
    assert s.api.call("DELETE", f"/sites/{s.site}/accounts/{third_login}").status_code == 204
    assert theirs.put(second, content=b"<x/>").status_code in WRITTEN


def test_admins_list_and_clear_a_sites_locks(product: RealWebdavServer) -> None:
    s = product
    mine = httpx.Client(auth=s.auth, timeout=30)
    theirs = httpx.Client(auth=second_account(s), timeout=30)
    for name in ("a.xml", "b.xml"):
        assert lock(mine, s.url(s.site, "1754", name), "Infinite").status_code in GRANTED
    token = s.api.site_token(s.site)
    for who in (None, token):  # the admin, the site itself
        listed = s.api.ok("GET", f"/sites/{s.site}/webdav-locks", who)
        assert [(i["path"], i["account"], i["depth"], i["scope"]) for i in listed["items"]] == [
            (f"/webdav/{s.site}/1754/a.xml", s.login, "0", "exclusive"),
            (f"/webdav/{s.site}/1754/b.xml", s.login, "0", "exclusive")]
        assert all(0 < i["expires_in_s"] <= LOCK_CAP_S for i in listed["items"])
        assert "opaquelocktoken" not in str(listed)  # a lock's token is its owner's secret
    # another site sees none of them and cannot clear them
    other = s.api.site_token(s.other_site)
    assert s.api.call("GET", f"/sites/{s.site}/webdav-locks", other).status_code == 404
    assert s.api.ok("GET", f"/sites/{s.other_site}/webdav-locks")["items"] == []
    assert s.api.call("DELETE", f"/sites/{s.site}/webdav-locks", other).status_code == 404
    # one lock by its id, then all of them
    first = s.api.ok("GET", f"/sites/{s.site}/webdav-locks")["items"][0]
    assert s.api.call("DELETE", f"/sites/{s.site}/webdav-locks/{first['id']}", token).status_code == 204
    missing = s.api.call("DELETE", f"/sites/{s.site}/webdav-locks/{first['id']}", token)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    assert theirs.put(s.url(s.site, "1754", "a.xml"), content=b"<x/>").status_code in WRITTEN
    assert theirs.put(s.url(s.site, "1754", "b.xml"), content=b"<x/>").status_code == 423
    assert s.api.ok("DELETE", f"/sites/{s.site}/webdav-locks") == {"released": 1}
    assert theirs.put(s.url(s.site, "1754", "b.xml"), content=b"<x/>").status_code in WRITTEN
    assert s.api.ok("GET", f"/sites/{s.site}/webdav-locks")["items"] == []
    unknown = s.api.call("GET", "/sites/0000/webdav-locks")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"


def test_locks_do_not_survive_a_restart(tmp_path: Path) -> None:
    with database("sqlite", tmp_path) as url:
        stacks = start_stack(tmp_path, url)
        stack = next(stacks)
        stack.api.create_site("4817", {"1754": "0490856P"})
        stack.api.first_import("4817", "1754", sample_xml("0490856P"))
        a, b = stack.api.create_account("4817", "Jean", "Dupont"), stack.api.create_account("4817", "Paul", "Martin")
        target = f"{stack.url}/webdav/4817/1754/a.xml"
        assert lock(httpx.Client(auth=(a["login"], a["password"]), timeout=30), target).status_code in GRANTED
        assert httpx.put(target, auth=(b["login"], b["password"]), content=b"<x/>", timeout=30).status_code == 423
        stacks.close()
        stacks = start_stack(tmp_path, url)  # the same database and data folder
        stack = next(stacks)
        assert stack.api.ok("GET", "/sites/4817/webdav-locks")["items"] == []
        target = f"{stack.url}/webdav/4817/1754/a.xml"
        assert httpx.put(target, auth=(b["login"], b["password"]), content=b"<x/>", timeout=30).status_code in WRITTEN
        stacks.close()
