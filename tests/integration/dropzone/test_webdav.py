"""The WebDAV deposit space over real sockets: litmus, curl, rclone, cadaver, a Windows-style upload, raw HTTP."""

from __future__ import annotations

import base64
import os
import re
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.dropzone.webdav_fixtures import Deposit, RealWebdavServer, WebdavServer, unseal

pytestmark = [pytest.mark.long]

FINAL = "EDT_To_KOSMOS_0490856P.xml"
EXPORT = (b'<?xml version="1.0" encoding="UTF-8"?>\n<ExportEmploiDuTemps UAI="0490856P">' + b"x" * 2000
          + b"</ExportEmploiDuTemps>\n")
LOCK_BODY = (b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
             b"</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>windows</D:owner></D:lockinfo>")


def needs(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: the WebDAV client tests need it (.ci/run installs it)",
                    pytrace=False)


@pytest.fixture
def dav(webdav_server: WebdavServer) -> Iterator[httpx.Client]:
    with httpx.Client(auth=webdav_server.auth, timeout=10) as client:
        yield client


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


def on_disk(server: WebdavServer, *segments: str) -> Path:
    return server.root_dir.joinpath(*segments)


def kept(server: WebdavServer, *segments: str) -> bytes:
    """What a file of the deposit space holds: sealed on disk (its bytes are not the plaintext's)."""
    path = on_disk(server, *segments)
    plain = unseal(path, server.keyring)
    assert plain not in path.read_bytes() or not plain
    return plain


def uploads(server: WebdavServer) -> list[Path]:
    folder = server.root_dir / ".dav" / "uploads"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def wait_for(predicate: object, timeout: float = 5.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def raw_connect(server: WebdavServer) -> socket.socket:
    return socket.create_connection(server.host_port, timeout=10)


def head_block(server: WebdavServer, method: str, path: str, headers: dict[str, str]) -> bytes:
    host, port = server.host_port
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}",
             f"Authorization: {basic(server.login, server.password)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    match = re.match(rb"HTTP/1\.1 (\d{3})", data)
    assert match, data
    return int(match.group(1))


# --- conformance -----------------------------------------------------------------------------------


def test_litmus_five_suites_pass(webdav_server: WebdavServer, tmp_path: Path) -> None:
    needs("litmus")
    url = webdav_server.url(webdav_server.site, webdav_server.establishments[0], "")
    out = subprocess.run(["litmus", url, webdav_server.login, webdav_server.password], cwd=tmp_path,
                         env={**os.environ, "TESTS": "basic copymove props locks http"},
                         capture_output=True, text=True, timeout=60)
    summaries = re.findall(r"<- summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed", out.stdout)
    assert [s[0] for s in summaries] == ["basic", "copymove", "props", "locks", "http"], out.stdout[-3000:]
    assert all(failed == "0" and run == passed for _, run, passed, failed in summaries), out.stdout[-3000:]
    assert out.returncode == 0, out.stdout[-3000:]


# --- clients ----------------------------------------------------------------------------------------


def test_windows_style_upload_is_one_deposit_under_the_final_name(webdav_server: WebdavServer,
                                                                   dav: httpx.Client) -> None:
    s = webdav_server
    final = s.url(s.site, "1754", FINAL)
    temp = s.url(s.site, "1754", "~$" + FINAL.replace(".xml", ".tmp"))
    assert dav.put(final, content=b"").status_code == 201
    lock = dav.request("LOCK", final, content=LOCK_BODY,
                       headers={"Timeout": "Second-3600", "Depth": "0", "Content-Type": "text/xml"})
    assert lock.status_code == 200, lock.text
    token = lock.headers["Lock-Token"]
    assert dav.put(temp, content=EXPORT).status_code == 201
    move = dav.request("MOVE", temp, headers={"Destination": final, "Overwrite": "T", "If": f"<{final}> ({token})"})
    assert move.status_code == 204, move.text
    assert dav.request("UNLOCK", final, headers={"Lock-Token": token}).status_code == 204
    assert s.deposits == [Deposit(s.site, "1754", FINAL, EXPORT, s.login)]
    assert dav.get(final).content == EXPORT
    assert dav.get(temp).status_code == 404


def test_windows_style_put_over_a_locked_placeholder(webdav_server: WebdavServer, dav: httpx.Client) -> None:
    s = webdav_server
    final = s.url(s.site, "4817", FINAL)
    assert dav.put(final, content=b"").status_code == 201
    token = dav.request("LOCK", final, content=LOCK_BODY, headers={"Depth": "0"}).headers["Lock-Token"]
    assert dav.put(final, content=EXPORT).status_code == 423  # locked: the token is needed
    assert dav.put(final, content=EXPORT, headers={"If": f"({token})"}).status_code == 204
    assert dav.request("UNLOCK", final, headers={"Lock-Token": token}).status_code == 204
    assert s.deposits == [Deposit(s.site, "4817", FINAL, EXPORT, s.login)]


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=30)


def test_curl_put_with_basic_auth(webdav_server: WebdavServer, tmp_path: Path) -> None:
    needs("curl")
    s = webdav_server
    export = tmp_path / FINAL
    export.write_bytes(EXPORT)
    out = curl("-o", "/dev/null", "-w", "%{http_code}", "-u", f"{s.login}:{s.password}", "-T", str(export),
               s.url(s.site, "1754", ""))
    assert out.stdout == "201", out.stderr
    assert s.deposits == [Deposit(s.site, "1754", FINAL, EXPORT, s.login)]


def test_curl_chunked_put_and_expect_100_continue(webdav_server: WebdavServer, tmp_path: Path) -> None:
    needs("curl")
    s = webdav_server
    export = tmp_path / "big.xml"
    export.write_bytes(EXPORT * 50)  # ~100 KB
    chunked = curl("-v", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"{s.login}:{s.password}", "-T", str(export),
                   "-H", "Transfer-Encoding: chunked", s.url(s.site, "1754", "chunked.xml"))
    assert chunked.stdout == "201", chunked.stderr
    assert "> Transfer-Encoding: chunked" in chunked.stderr
    expect = curl("-v", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"{s.login}:{s.password}", "-T", str(export),
                  "-H", "Expect: 100-continue", s.url(s.site, "1754", "expect.xml"))
    assert expect.stdout == "201", expect.stderr
    assert "< HTTP/1.1 100 Continue" in expect.stderr
    assert [(d.name, d.data) for d in s.deposits] == [("chunked.xml", EXPORT * 50), ("expect.xml", EXPORT * 50)]


def test_rclone_copy_makes_one_deposit_per_file(webdav_server: WebdavServer, tmp_path: Path) -> None:
    needs("rclone")
    s = webdav_server
    src = tmp_path / "exports"
    src.mkdir()
    files = {f"EDT_{i}.xml": EXPORT + str(i).encode() for i in range(3)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    obscured = subprocess.run(["rclone", "obscure", s.password], capture_output=True, text=True, check=True)
    env = {**os.environ, "RCLONE_CONFIG": str(tmp_path / "rclone.conf"), "RCLONE_CONFIG_DZ_TYPE": "webdav",
           "RCLONE_CONFIG_DZ_URL": s.url(s.site, "1754", ""), "RCLONE_CONFIG_DZ_VENDOR": "other",
           "RCLONE_CONFIG_DZ_USER": s.login, "RCLONE_CONFIG_DZ_PASS": obscured.stdout.strip()}
    out = subprocess.run(["rclone", "copy", str(src), "dz:", "--retries", "1", "--low-level-retries", "1"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert sorted((d.establishment, d.name, d.data) for d in s.deposits) == sorted(
        ("1754", name, data) for name, data in files.items())
    listed = subprocess.run(["rclone", "lsf", "dz:"], env=env, capture_output=True, text=True, timeout=30)
    assert sorted(listed.stdout.split()) == sorted(files)


def test_cadaver_put(webdav_server: WebdavServer, tmp_path: Path) -> None:
    needs("cadaver")
    s = webdav_server
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(f"machine {s.host_port[0]}\nlogin {s.login}\npassword {s.password}\n")
    netrc.chmod(0o600)
    export = tmp_path / FINAL
    export.write_bytes(EXPORT)
    out = subprocess.run(["cadaver", s.url(s.site, "1754", "")], input=f"put {export}\nquit\n", text=True,
                         env={**os.environ, "HOME": str(home)}, capture_output=True, timeout=30)
    assert "succeeded" in out.stdout, out.stdout + out.stderr
    assert s.deposits == [Deposit(s.site, "1754", FINAL, EXPORT, s.login)]


# --- access ------------------------------------------------------------------------------------------


def test_bad_credentials_are_401_with_a_basic_challenge(webdav_server: WebdavServer) -> None:
    s = webdav_server
    url = s.url(s.site, "1754", "")
    with httpx.Client(timeout=10) as anonymous:
        for headers in ({}, {"Authorization": basic(s.login, "wrong-password")},
                        {"Authorization": basic("nobody", s.password)}, {"Authorization": "Basic !!!not-base64"},
                        {"Authorization": 'Digest username="x", realm="edt-import"'}):
            r = anonymous.request("PROPFIND", url, headers={"Depth": "0", **headers})
            assert r.status_code == 401, headers
            assert r.headers["WWW-Authenticate"] == 'Basic realm="edt-import"'
        put = anonymous.put(s.url(s.site, "1754", FINAL), content=EXPORT,
                            headers={"Authorization": basic(s.login, "wrong-password")})
        assert put.status_code == 401
    assert s.deposits == []
    assert not on_disk(s, s.site, "1754", FINAL).exists()


def test_another_sites_account_gets_403(webdav_server: WebdavServer) -> None:
    s = webdav_server
    with httpx.Client(auth=(s.other_login, s.other_password), timeout=10) as other:
        assert other.request("PROPFIND", s.url(s.site, "1754", ""), headers={"Depth": "1"}).status_code == 403
        assert other.request("PROPFIND", s.url(s.site, ""), headers={"Depth": "0"}).status_code == 403
        assert other.put(s.url(s.site, "1754", FINAL), content=EXPORT).status_code == 403
        assert other.request("PROPFIND", s.url("5555", ""), headers={"Depth": "0"}).status_code == 403
        # its own space works, and the root lists only its own site
        assert other.put(s.url(s.other_site, s.other_site, FINAL), content=EXPORT).status_code == 201
        root = other.request("PROPFIND", s.url(""), headers={"Depth": "1"})
        assert root.status_code == 207
        assert sorted(re.findall(r"<D:href>([^<]*)</D:href>", root.text)) == [
            s.path(""), s.path(s.other_site, "")]
        # nor can it move or copy a file into another site
        for method in ("MOVE", "COPY"):
            r = other.request(method, s.url(s.other_site, s.other_site, FINAL),
                              headers={"Destination": s.url(s.site, "1754", FINAL)})
            assert r.status_code == 403
    assert [(d.site, d.establishment) for d in s.deposits] == [(s.other_site, s.other_site)]
    assert not on_disk(s, s.site, "1754", FINAL).exists()


def test_unknown_establishment_and_unknown_site_are_404(fake_webdav_server: WebdavServer) -> None:
    s = fake_webdav_server
    dav = httpx.Client(auth=s.auth, timeout=10)
    assert dav.request("PROPFIND", s.url(s.site, "0000", ""), headers={"Depth": "0"}).status_code == 404
    assert dav.put(s.url(s.site, "0000", FINAL), content=EXPORT).status_code == 404
    s.gate.accounts["emp.ghost"] = ("ghost-pass1", "5555")  # an account whose site is gone
    with httpx.Client(auth=("emp.ghost", "ghost-pass1"), timeout=10) as ghost:
        assert ghost.request("PROPFIND", s.url("5555", ""), headers={"Depth": "0"}).status_code == 404
        assert ghost.put(s.url("5555", FINAL), content=EXPORT).status_code == 404
    assert s.deposits == []


def test_site_url_lists_its_establishment_folders(webdav_server: WebdavServer, dav: httpx.Client) -> None:
    s = webdav_server
    r = dav.request("PROPFIND", s.url(s.site, ""), headers={"Depth": "1"})
    assert r.status_code == 207
    assert sorted(re.findall(r"<D:href>([^<]*)</D:href>", r.text)) == sorted(
        [s.path(s.site, "")] + [s.path(s.site, e, "") for e in s.establishments])
    # the site and establishment folders themselves stay put
    assert dav.delete(s.url(s.site, "1754", "")).status_code == 403
    assert dav.request("MOVE", s.url(s.site, "1754", ""),
                       headers={"Destination": s.url(s.site, "moved", "")}).status_code == 403
    assert dav.request("LOCK", s.url(""), content=LOCK_BODY, headers={"Depth": "infinity"}).status_code == 403


def test_path_traversal_is_impossible(webdav_server: WebdavServer) -> None:
    s = webdav_server
    base = s.path("")
    cases = {
        f"{base}{s.site}/1754/../../{s.other_site}/{FINAL}": 403,
        f"{base}{s.site}/1754/..%2F..%2F{s.other_site}%2F{FINAL}": 403,
        f"{base}{s.site}/1754/%2e%2e/%2e%2e/%2e%2e/escape.xml": 400,  # above the root: refused by WsgiDAV
        f"{base}.dav/uploads/x.xml": 403,
    }
    for path, status in cases.items():
        with raw_connect(s) as sock:
            sock.sendall(head_block(s, "PUT", path, {"Content-Length": str(len(EXPORT))}) + EXPORT)
            assert read_status(sock) == status, path
    assert s.deposits == []
    assert not (s.root_dir.parent / "escape.xml").exists()
    assert not on_disk(s, s.other_site, s.other_site, FINAL).exists()


# --- what is a deposit --------------------------------------------------------------------------------


def test_deposit_location_decides_the_establishment(webdav_server: WebdavServer, dav: httpx.Client) -> None:
    s = webdav_server
    assert dav.put(s.url(s.site, "all.xml"), content=EXPORT).status_code == 201
    assert dav.request("MKCOL", s.url(s.site, "1754", "sub", "")).status_code == 201
    assert dav.put(s.url(s.site, "1754", "sub", "deep.xml"), content=EXPORT).status_code == 201
    assert dav.request("MKCOL", s.url(s.site, "extra", "")).status_code == 201
    assert dav.put(s.url(s.site, "extra", "client.xml"), content=EXPORT).status_code == 201
    # The WebDAV layer hands site-level files over without an establishment; the product then routes
    # them by the UAI the file carries (EXPORT's is 1754's).
    site_level = "1754" if isinstance(s, RealWebdavServer) else None
    assert [(d.establishment, d.name) for d in s.deposits] == [(site_level, "all.xml"), ("1754", "deep.xml"),
                                                               (site_level, "client.xml")]
    assert kept(s, s.site, "1754", "sub", "deep.xml") == EXPORT


def test_empty_and_temporary_files_are_not_deposits(webdav_server: WebdavServer, dav: httpx.Client) -> None:
    s = webdav_server
    for name, content in ((FINAL, b""), ("EDT.tmp", EXPORT), ("~$EDT.xml", EXPORT), (".~lock.EDT.xml#", EXPORT)):
        assert dav.put(s.url(s.site, "1754", name), content=content).status_code in (201, 204), name
    assert s.deposits == []


def test_moves_copies_and_deletes_after_a_deposit(webdav_server: WebdavServer, dav: httpx.Client) -> None:
    """Landing under a new final name (MOVE or COPY) is a new deposit; a temporary name or DELETE is not."""
    s = webdav_server

    def url(*segments: str) -> str:
        return s.url(s.site, *segments)

    def transfer(method: str, source: tuple[str, ...], dest: tuple[str, ...]) -> int:
        return dav.request(method, url(*source), headers={"Destination": url(*dest)}).status_code

    assert dav.put(url("1754", "a.xml"), content=EXPORT).status_code == 201
    assert len(s.deposits) == 1
    assert transfer("MOVE", ("1754", "a.xml"), ("1754", "a.tmp")) == 201
    assert len(s.deposits) == 1
    assert transfer("MOVE", ("1754", "a.tmp"), ("1754", "b.xml")) == 201
    assert transfer("COPY", ("1754", "b.xml"), ("1754", "c.xml")) == 201
    assert transfer("MOVE", ("1754", "c.xml"), ("4817", "c.xml")) == 201
    assert [(d.establishment, d.name) for d in s.deposits] == [("1754", "a.xml"), ("1754", "b.xml"),
                                                               ("1754", "c.xml"), ("4817", "c.xml")]
    assert dav.delete(url("4817", "c.xml")).status_code == 204
    # a whole folder moved or copied carries files that already landed: no deposit
    assert dav.request("MKCOL", url("1754", "dir", "")).status_code == 201
    assert transfer("MOVE", ("1754", "b.xml"), ("1754", "dir", "b.tmp")) == 201
    assert transfer("MOVE", ("1754", "dir", "b.tmp"), ("1754", "dir", "b.xml")) == 201  # a landing: deposit
    assert transfer("COPY", ("1754", "dir", ""), ("4817", "dir", "")) == 201
    assert transfer("MOVE", ("1754", "dir", ""), ("1754", "dir2", "")) == 201
    assert [(d.establishment, d.name) for d in s.deposits][4:] == [("1754", "b.xml")]
    assert kept(s, s.site, "4817", "dir", "b.xml") == EXPORT
    assert all(d.data == EXPORT for d in s.deposits)


def test_failed_deposit_fails_the_request_and_lands_nothing(fake_webdav_server: WebdavServer) -> None:
    s = fake_webdav_server
    dav = httpx.Client(auth=s.auth, timeout=10)
    final = s.url(s.site, "1754", FINAL)
    s.gate.fail_deposits = True
    assert dav.put(final, content=EXPORT).status_code == 500
    assert dav.get(final).status_code == 404
    assert uploads(s) == []
    s.gate.fail_deposits = False
    temp = s.url(s.site, "1754", "upload.tmp")
    assert dav.put(temp, content=EXPORT).status_code == 201
    s.gate.fail_deposits = True
    assert dav.request("MOVE", temp, headers={"Destination": final}).status_code == 500
    assert dav.get(final).status_code == 404
    assert dav.get(temp).content == EXPORT
    # an existing file keeps its content when its replacement cannot be deposited
    s.gate.fail_deposits = False
    assert dav.put(final, content=EXPORT).status_code == 201
    s.gate.fail_deposits = True
    assert dav.put(final, content=b"<new/>").status_code == 500
    assert dav.get(final).content == EXPORT
    assert len(s.deposits) == 1


# --- size cap and broken uploads -----------------------------------------------------------------------


def test_content_length_over_the_cap_is_413_before_reading(webdav_server: WebdavServer) -> None:
    s = webdav_server
    with raw_connect(s) as sock:
        sock.sendall(head_block(s, "PUT", s.path(s.site, "1754", FINAL),
                                {"Content-Length": str(s.max_upload_bytes + 1), "Expect": "100-continue"}))
        assert read_status(sock) == 413  # no "100 Continue" first: the body is never asked for
    assert s.deposits == []
    assert not on_disk(s, s.site, "1754", FINAL).exists()


def test_chunked_body_over_the_cap_is_413_and_leaves_nothing(webdav_server: WebdavServer) -> None:
    s = webdav_server
    chunk = b"x" * 65536
    with raw_connect(s) as sock:
        sock.sendall(head_block(s, "PUT", s.path(s.site, "1754", FINAL), {"Transfer-Encoding": "chunked"}))
        sent = 0
        while sent < 4 * s.max_upload_bytes:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break
            sent += len(chunk)
        assert read_status(sock) == 413
    wait_for(lambda: uploads(s) == [])
    assert s.deposits == []
    assert not on_disk(s, s.site, "1754", FINAL).exists()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_interrupted_upload_leaves_nothing(webdav_server: WebdavServer, framing: str) -> None:
    s = webdav_server
    headers = {"Content-Length": "100000"} if framing == "content-length" else {"Transfer-Encoding": "chunked"}
    body = b"0123456789" if framing == "content-length" else b"a\r\n0123456789\r\n"
    sock = raw_connect(s)
    sock.sendall(head_block(s, "PUT", s.path(s.site, "1754", FINAL), headers) + body)
    wait_for(lambda: len(uploads(s)) == 1)  # the server is receiving the body into its temporary file
    sock.close()
    wait_for(lambda: uploads(s) == [])  # the request is over: a deposit would have been taken before this
    assert s.deposits == []
    assert not on_disk(s, s.site, "1754", FINAL).exists()
    # the space still works afterwards
    with httpx.Client(auth=s.auth, timeout=10) as dav:
        assert dav.put(s.url(s.site, "1754", FINAL), content=EXPORT).status_code == 201
    assert [d.name for d in s.deposits] == [FINAL]


def test_a_stalled_upload_holds_nobody_back_and_leaves_nothing(webdav_server: WebdavServer) -> None:
    """A client that stops sending mid-body (a timetable program hung, a network gone quiet) keeps one
    worker waiting, never the others: another deposit goes through meanwhile; once it gives up, nothing of
    its file remains."""
    s = webdav_server
    sock = raw_connect(s)
    sock.sendall(head_block(s, "PUT", s.path(s.site, "1754", "stalled.xml"), {"Content-Length": "100000"})
                 + b"0123456789")
    wait_for(lambda: len(uploads(s)) == 1)  # receiving its body, then nothing more
    try:
        with httpx.Client(auth=s.auth, timeout=10) as dav:
            assert dav.put(s.url(s.site, "1754", FINAL), content=EXPORT).status_code == 201
            assert dav.request("PROPFIND", s.url(s.site, "1754", ""), headers={"Depth": "1"}).status_code == 207
        assert [d.name for d in s.deposits] == [FINAL]
    finally:
        sock.close()
    wait_for(lambda: uploads(s) == [])
    assert [d.name for d in s.deposits] == [FINAL]
    assert not on_disk(s, s.site, "1754", "stalled.xml").exists()
