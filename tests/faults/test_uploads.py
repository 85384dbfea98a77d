"""Uploads that do not finish, on the distributed product behind nginx (rows of `make test-faults`): a WebDAV
PUT cut mid-body, and one whose client stalls mid-body while another deposit of the same site goes through.
Neither leaves an import, a file or a spooled part behind, and the product stays up."""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.faults.conftest import FaultStack, record
from tests.faults.test_faults import UAI, school, until
from tests.harness import curl_put, sample_xml


def spooled(data_dir: Path) -> list[Path]:
    """The dropzone's temporary files of PUT bodies being received."""
    return sorted(data_dir.rglob("put-*.part"))


def start_put(base_url: str, path: str, login: str, password: str, body: bytes, sent: int) -> socket.socket:
    """A PUT announcing all of `body` whose first `sent` bytes only are sent: the connection stays open."""
    url = urlsplit(base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    auth = base64.b64encode(f"{login}:{password}".encode()).decode()
    head = (f"PUT {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Length: {len(body)}\r\nContent-Type: application/xml\r\n\r\n").encode()
    sock.sendall(head + body[:sent])
    return sock


def test_an_upload_cut_or_stalled_mid_body_leaves_nothing(fault_stack: FaultStack, tmp_path: Path) -> None:
    stack, api = fault_stack, fault_stack.api
    started = time.monotonic()
    api.create_site("cut", {"e": UAI})
    assert api.wait(api.upload("cut", "e", sample_xml(UAI, marker="first")), timeout=120)["status"] == "done"
    account = api.create_account("cut")
    known = [h["id"] for h in api.history("cut")]
    body = school("L")  # ≈ 2.5 MB, a third of it sent
    login, password = account["login"], account["password"]

    cut = start_put(api.base_url, "/webdav/cut/e/EDT_coupe.xml", login, password, body, len(body) // 3)
    until(lambda: spooled(stack.data_dir), "the dropzone never received the cut body", 60)
    cut.close()  # the connection drops mid-body
    until(lambda: not spooled(stack.data_dir), "the cut body's part stayed on disk", 60)

    stalled = start_put(api.base_url, "/webdav/cut/e/EDT_bloque.xml", login, password, body, len(body) // 3)
    try:
        until(lambda: spooled(stack.data_dir), "the dropzone never received the stalled body", 60)
        other = tmp_path / "EDT_To_KOSMOS.xml"
        other.write_bytes(sample_xml(UAI, marker="meanwhile"))
        put = curl_put(f"{api.base_url}/webdav/cut/e/{other.name}", login, password, other)
        meanwhile = api.wait(str(put.import_id), timeout=120) if put.import_id else {"status": "none"}
    finally:
        stalled.close()  # the client gives up
    until(lambda: not spooled(stack.data_dir), "the stalled body's part stayed on disk", 60)

    history = [h["id"] for h in api.history("cut")]
    listing = httpx.request("PROPFIND", f"{api.base_url}/webdav/cut/e/", auth=(login, password),
                            headers={"Depth": "1"}, timeout=30)
    up = httpx.get(f"{api.base_url}/readyz", timeout=10)
    ok = (put.status in (201, 204) and meanwhile["status"] == "done" and history == [put.import_id, *known]
          and "EDT_coupe" not in listing.text and "EDT_bloque" not in listing.text and up.status_code == 200)
    record("upload cut / stalled mid-body (WebDAV)", runs=1, imports=1, lost=0, duplicated=0, ok=ok,
           seconds=time.monotonic() - started)
    assert put.status in (201, 204) and meanwhile["status"] == "done", (put, meanwhile)
    assert history == [put.import_id, *known], "a cut or stalled upload was recorded"
    assert listing.status_code == 207 and "EDT_coupe" not in listing.text and "EDT_bloque" not in listing.text
    assert up.status_code == 200
