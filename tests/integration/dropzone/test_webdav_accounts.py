"""WebDAV logins against the real deposit accounts: lockout, password regeneration, deletion."""

from __future__ import annotations

import contextlib
import sqlite3
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

from services.dropzone.handlers import password_hasher
from tests.harness import sample_xml
from tests.integration.dropzone.webdav_fixtures import RealWebdavServer, start_real_webdav_server

pytestmark = [pytest.mark.long]


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


def test_a_password_hashed_with_older_parameters_is_hashed_again_at_its_next_login(
        product: RealWebdavServer) -> None:
    """An account from before the hash parameters changed (argon2-cffi's default, 165 ms a login) logs in
    as before; its next successful login stores the same password under the current parameters."""
    s = product
    path = s.database_url.split("///", 1)[1]

    def stored_hash() -> str:
        with sqlite3.connect(path) as db:
            return str(db.execute("SELECT password_hash FROM accounts WHERE login = ?", (s.login,)).fetchone()[0])

    older = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4).hash(s.password)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE accounts SET password_hash = ? WHERE login = ?", (older, s.login))
    assert password_hasher().check_needs_rehash(stored_hash())
    assert propfind(s, s.auth) == 207
    now = stored_hash()
    assert now != older and not password_hasher().check_needs_rehash(now)
    assert password_hasher().verify(now, s.password)
    assert propfind(s, s.auth) == 207 and propfind(s, (s.login, "wrong-password")) == 401


def timed_failure(s: RealWebdavServer, auth: tuple[str, str], source_ip: str) -> float:
    """One refused WebDAV login from `source_ip` (a loopback address of its own), its cost in seconds."""
    transport = httpx.HTTPTransport(local_address=source_ip)
    with httpx.Client(transport=transport, timeout=30) as client:
        started = time.perf_counter()
        r = client.request("PROPFIND", s.url(s.site, "1754", ""), auth=auth, headers={"Depth": "0"})
        cost = time.perf_counter() - started
    assert r.status_code == 401
    return cost


MAX_FAILURES = 10


@pytest.fixture
def lockout_at_10(tmp_path: Path) -> Iterator[RealWebdavServer]:
    yield from start_real_webdav_server(tmp_path, EDT_LOGIN_MAX_FAILURES=str(MAX_FAILURES))


def test_login_failures_cost_the_same_whether_the_account_exists_or_is_locked(
        lockout_at_10: RealWebdavServer) -> None:
    """No timing oracle: a wrong password on an existing login, an unknown login and a locked account take
    the same path (a hash verification — a dummy one for an unknown login —, the same slow-down), so their
    costs cannot tell which logins exist. Each attempt comes from its own address: the slow-down grows with
    the failures of the caller, never with the state of the account."""
    s = lockout_at_10
    locked = s.other_login
    with ThreadPoolExecutor(MAX_FAILURES) as pool:  # locked by failures from as many addresses, side by side
        list(pool.map(lambda n: timed_failure(s, (locked, f"wrong-{n}"), f"127.0.9.{n + 1}"), range(MAX_FAILURES)))
    account = next(a for a in s.api.ok("GET", f"/sites/{s.other_site}/accounts")["items"] if a["login"] == locked)
    assert account["locked"] is True
    kinds = {"wrong password": lambda i: (s.login, f"wrong-{i}"),
             "unknown login": lambda i: (f"emp.nobody{i}.here", "whatever-pw"),
             "locked account": lambda i: (locked, s.other_password)}
    # Paired rounds: the three kinds back to back, then one argon2 verification as the product does it,
    # timed in the same moment. The machine's load (other test workers) varies between rounds more than
    # within one: each cost is taken relative to its round's mean, and each kind's median of those compared.
    hasher = password_hasher()
    stored = hasher.hash("a-reference-password")
    costs: dict[str, list[float]] = {k: [] for k in kinds}
    offsets: dict[str, list[float]] = {k: [] for k in kinds}
    hashes: list[float] = []
    for i in range(9):
        cost = {kind: timed_failure(s, credentials(i), f"127.0.{10 + i}.{10 + n}")
                for n, (kind, credentials) in enumerate(kinds.items())}
        started = time.perf_counter()
        with contextlib.suppress(VerificationError):
            hasher.verify(stored, "not-the-password")
        hashes.append(time.perf_counter() - started)
        mean = statistics.fmean(cost.values())
        for kind, value in cost.items():
            costs[kind].append(value)
            offsets[kind].append(value - mean)
    medians = {kind: statistics.median(values) for kind, values in costs.items()}
    offset = {kind: statistics.median(values) for kind, values in offsets.items()}
    gap, hash_cost = max(offset.values()) - min(offset.values()), statistics.median(hashes)
    print("login failure cost (median of 9, s):", {k: round(v, 3) for k, v in medians.items()},
          f"gap {gap:.3f} s, one hash verification {hash_cost:.3f} s")
    assert min(medians.values()) >= 0.25, medians  # every one is slowed down
    # An oracle would show as one hash verification's cost between the kinds: the gap stays well under it.
    assert gap <= max(0.1, hash_cost / 2), (medians, offset, hashes)
    # nine wrong passwords (under the lockout threshold of ten) left the account usable
    assert propfind(s, s.auth) == 207
