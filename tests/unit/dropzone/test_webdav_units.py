"""WebDAV layer pieces without a server: request guard, path routing helpers, the event-loop bridge."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from wsgidav.dav_error import DAVError

from services.dropzone.davguard import RequestGuard, _basic_credentials_ok, _GuardedInput, _watch_disconnect
from services.dropzone.webdav import _Bridge, _Place, _segments


def guarded(body: bytes, length: int | None, cap: int = 100, gone: bool = False) -> _GuardedInput:
    return _GuardedInput(io.BytesIO(body), length, cap, lambda: gone)


def drain(stream: _GuardedInput) -> bytes:
    out = b""
    while chunk := stream.read(8):
        out += chunk
    return out


def test_guarded_input_passes_a_complete_body() -> None:
    assert drain(guarded(b"x" * 50, 50)) == b"x" * 50
    assert drain(guarded(b"x" * 50, None)) == b"x" * 50


def test_guarded_input_refuses_a_body_over_the_cap() -> None:
    with pytest.raises(DAVError) as e:
        drain(guarded(b"x" * 101, None))
    assert e.value.value == 413


def test_guarded_input_refuses_a_body_cut_short() -> None:
    with pytest.raises(DAVError) as e:
        drain(guarded(b"x" * 10, 100))
    assert e.value.value == 400
    with pytest.raises(DAVError):
        drain(guarded(b"x" * 10, None, gone=True))  # chunked, client went away


def test_basic_credentials_check() -> None:
    def b64(text: bytes) -> str:
        return base64.b64encode(text).decode()

    assert _basic_credentials_ok("Basic " + b64(b"emp.a.b:pw"))
    assert _basic_credentials_ok("Digest username=x")  # answered with a Basic challenge by WsgiDAV
    assert not _basic_credentials_ok("Basic !!!")
    assert not _basic_credentials_ok("Basic " + b64(b"no-colon"))
    assert not _basic_credentials_ok("Basic " + b64(b"\xff\xfe:x"))


def test_segments_and_protected_folders() -> None:
    assert _segments("/") == () and _segments("*") == ()
    assert _segments("/4817/1754/x.xml") == ("4817", "1754", "x.xml")
    assert _Place("4817", None, ("4817",)).protected
    assert _Place("4817", "1754", ("4817", "1754")).protected
    assert not _Place("4817", None, ("4817", "extra")).protected
    assert not _Place("4817", "1754", ("4817", "1754", "sub")).protected


def test_request_guard_refuses_a_declared_oversized_body_without_reading() -> None:
    calls: list[str] = []

    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        calls.append("app")
        return [b""]

    statuses: list[str] = []
    body = io.BytesIO(b"never read")
    out = RequestGuard(app, 10, "import")({"CONTENT_LENGTH": "11", "wsgi.input": body},
                                 lambda status, headers: statuses.append(status))
    assert statuses == ["413 Content Too Large"] and calls == [] and body.tell() == 0
    assert b"10 bytes" in b"".join(out)


def test_watch_disconnect_sees_http_disconnect() -> None:
    class Body:
        async def receive(self) -> dict[str, object]:
            return {"type": "http.disconnect"}

    body = Body()
    gone = _watch_disconnect(body)
    assert not gone()
    asyncio.run(body.receive())
    assert gone()
    assert not _watch_disconnect(io.BytesIO())()


class Gate:
    def __init__(self) -> None:
        self.auth_calls = 0
        self.slow = False

    async def authenticate(self, login: str, password: str, client_ip: str) -> str | None:
        self.auth_calls += 1
        return "4817" if password == "good" else None

    async def establishment_ids(self, site: str) -> list[str] | None:
        if self.slow:
            await asyncio.sleep(5)
        return ["1754"]

    async def take_deposit(self, site: str, establishment: str | None, name: str, path: Path, login: str) -> str:
        raise OSError(28, "No space left on device")

    async def file_read(self, site: str, path: str, login: str) -> None:
        return None


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_bridge_leaves_every_login_to_the_gate(loop: asyncio.AbstractEventLoop) -> None:
    # The gate (the dropzone) owns the one login cache, which sees a new password at once.
    gate = Gate()
    bridge = _Bridge(gate, loop, gate_timeout_s=5, deposit_timeout_s=5)
    assert [bridge.authenticate("emp.a.b", "good", "127.0.0.1") for _ in range(3)] == ["4817"] * 3
    assert [bridge.authenticate("emp.a.b", "bad", "127.0.0.1") for _ in range(3)] == [None] * 3
    assert gate.auth_calls == 6


def test_bridge_maps_gate_failures_to_http_errors(loop: asyncio.AbstractEventLoop) -> None:
    gate = Gate()
    bridge = _Bridge(gate, loop, gate_timeout_s=0.1, deposit_timeout_s=5)
    with pytest.raises(DAVError) as e:
        bridge.take_deposit("4817", "1754", "x.xml", Path("/nonexistent"), "emp.a.b")
    assert e.value.value == 507  # disk full
    gate.slow = True
    with pytest.raises(DAVError) as e:
        bridge.establishment_ids("4817")
    assert e.value.value == 503


def test_bridge_refuses_to_block_its_own_loop(loop: asyncio.AbstractEventLoop) -> None:
    bridge = _Bridge(Gate(), loop, gate_timeout_s=1, deposit_timeout_s=1)

    async def from_the_loop() -> None:
        bridge.establishment_ids("4817")

    with pytest.raises(RuntimeError, match="deadlock"):
        asyncio.run_coroutine_threadsafe(from_the_loop(), loop).result(5)
