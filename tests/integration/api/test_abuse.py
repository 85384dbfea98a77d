"""The REST API against careless and hostile clients: oversized chunked uploads, writes and reads under an
establishment that is not the site's, secrets at rest."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

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


# --- establishment-scoped routes: only the site's own establishments ----------------------------------


def establishment_routes(est: str) -> list[tuple[str, str, dict[str, object]]]:
    """Every establishment-scoped route of every service, with a body it would accept."""
    base = f"/sites/4817/establishments/{est}"
    directory = {"json": {"people": [{"id": "ent-1", "kind": "student", "last_name": "Martin",
                                       "first_name": "Léa", "class": "6A"}]}}
    return [
        ("GET", f"{base}/closures", {}),                                                       # thresholds
        ("PUT", f"{base}/closures", {"json": [{"start": "2027-02-01", "end": "2027-02-05", "label": "x"}]}),
        ("PUT", f"{base}/directory", directory),                                               # reconciler
        ("GET", f"{base}/directory", {}),
        ("POST", f"{base}/pronote-ids", {"json": {"items": [{"ent_id": "ent-1", "pronote_id": "P1"}]}}),
        ("GET", f"{base}/groups", {}),
        ("GET", f"{base}/courses", {}),                                                        # scheduler
        ("GET", f"{base}/sessions", {}),
        ("GET", f"{base}/calendar/class/6A.ics", {}),
        ("POST", f"{base}/calendar/class/6A/subscription", {}),
        ("GET", f"{base}/calendar/class/6A/subscription", {}),
        ("DELETE", f"{base}/calendar/class/6A/subscription", {}),
        ("POST", f"{base}/imports", {"files": {"file": ("x.xml", sample_xml("0490856P"), "application/xml")}}),
    ]


def test_routes_under_an_establishment_that_is_not_the_sites_are_404(sqlite_stack: Stack) -> None:
    s = sqlite_stack
    s.api.create_site("4817", {"1754": "0490856P"})
    s.api.create_site("9999", {"9999": "0490858S"})
    token = s.api.site_token("4817")
    for est in ("9999", "0000"):  # another site's establishment, an unknown one
        for method, path, kwargs in establishment_routes(est):
            for who in (token, s.settings.admin_token):
                r = s.api.call(method, path, who, **kwargs)
                assert r.status_code == 404, (method, path, r.status_code, r.text[:300])
                assert r.headers["content-type"].startswith(PROBLEM)
                assert r.json()["code"] == "not_found" and r.json()["detail"].endswith("not found")
    # nothing was stored under them
    assert s.api.ok("GET", "/sites/9999/establishments/9999/closures")["items"] == []
    # the site's own establishment answers, and one created just now is known at once in every service
    s.api.ok("PUT", "/sites/4817/establishments/2000", json={"uai": "0490999Z", "name": "Nouveau"})
    for est in ("1754", "2000"):
        for method, path, kwargs in establishment_routes(est)[:8]:
            r = s.api.call(method, path, token, **kwargs)
            assert r.status_code < 500 and "Establishment not found" not in r.text, (method, path, r.text[:300])


# --- secrets at rest -----------------------------------------------------------------------------------


def test_passwords_and_tokens_are_stored_only_as_hashes(sqlite_stack: Stack) -> None:
    """What the API shows once (a deposit account's password, a site token) is nowhere in the database:
    argon2 for passwords, SHA-256 for tokens."""
    s = sqlite_stack
    s.api.create_site("4817", {"1754": "0490856P"})
    s.api.first_import("4817", "1754", sample_xml("0490856P"))
    token = s.api.site_token("4817")
    account = s.api.create_account("4817", token=token)
    regenerated = s.api.ok("POST", f"/sites/4817/accounts/{account['login']}/password", token)["password"]
    s.drain()
    database = Path(s.settings.database_url.split("///", 1)[1])
    stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))  # with its WAL
    assert b"$argon2id$" in stored
    for secret in (account["password"], regenerated, token, token.rsplit(".", 1)[-1]):
        assert secret.encode() not in stored, "a secret is stored in clear"
