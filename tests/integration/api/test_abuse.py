"""The REST API against careless and hostile clients: oversized chunked uploads, writes and reads under an
establishment that is not the site's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.harness import sample_xml
from tests.integration.conftest import Stack

PROBLEM = "application/problem+json"


def chunked_multipart(size: int) -> tuple[str, Iterator[bytes]]:
    """A multipart upload of `size` bytes sent without Content-Length (Transfer-Encoding: chunked)."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.xml\"\r\n"
            "Content-Type: application/xml\r\n\r\n").encode()

    def body() -> Iterator[bytes]:
        yield head
        sent = 0
        while sent < size:
            yield b"x" * 65536
            sent += 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    return f"multipart/form-data; boundary={boundary}", body()


@pytest.mark.parametrize("route", ["/sites/4817/establishments/1754/imports", "/sites/4817/deposits"])
def test_a_chunked_upload_over_the_cap_is_413_problem_json(sqlite_stack: Stack, route: str) -> None:
    s = sqlite_stack
    s.api.create_site("4817", {"1754": "0490856P"})
    cap = s.settings.max_upload_bytes
    for size in (cap + 64 * 1024, 3 * cap):  # just over the file cap, and far over the request cap
        content_type, body = chunked_multipart(size)
        r = httpx.post(f"{s.url}/api/v1{route}", content=body, timeout=60,
                       headers={"Authorization": f"Bearer {s.settings.admin_token}", "Content-Type": content_type})
        assert r.status_code == 413, (size, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
        problem = r.json()
        assert problem["code"] == "too_large" and problem["status"] == 413
        assert "Mo" in problem["detail"] and "MB" in problem["detail_en"]
    assert s.api.history("4817") == []
    # a file under the cap still goes through
    assert s.api.upload("4817", "1754", sample_xml("0490856P"))
