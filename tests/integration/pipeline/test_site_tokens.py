"""Site tokens (design.md §5): issued with an optional expiry, listed without their secret, revoked at once in
every service — the request right after the DELETE's answer is refused by each service's own routes. On
SQLite and PostgreSQL with the in-process bus, and on RabbitMQ (the distributed twin is in tests/e2e)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from tests.harness import Api, sample_xml
from tests.integration.conftest import Stack

SITE, EST, UAI = "4817", "1754", "0490856P"


def one_route_per_service(site: str, import_id: str) -> dict[str, str]:
    """A GET served by each service (in distributed mode each goes to its own process)."""
    return {
        "dropzone": f"/sites/{site}",
        "notifier": f"/sites/{site}/imports",
        "validator": f"/imports/{import_id}/validation",
        "thresholds": f"/sites/{site}/thresholds",
        "reconciler": f"/sites/{site}/establishments/{EST}/groups",
        "scheduler": f"/sites/{site}/establishments/{EST}/courses",
    }


def check_revocation_reaches_every_service(api: Api, site: str = SITE) -> float:
    """Returns the time the DELETE took to answer (every service's acknowledgement)."""
    api.create_site(site, {EST: UAI})
    import_id = api.first_import(site, EST, sample_xml(UAI, marker="tokens"))["id"]
    issued = api.ok("POST", f"/sites/{site}/tokens", json={"label": "ENT"})
    other = api.site_token(site)
    token = issued["token"]
    assert set(issued) >= {"id", "token", "created_at", "expires_at"} and issued["expires_at"] is None
    routes = one_route_per_service(site, import_id)
    for service, path in routes.items():
        assert api.call("GET", path, token).status_code == 200, service

    listed = api.ok("GET", f"/sites/{site}/tokens", token)["items"]
    assert issued["id"] in {t["id"] for t in listed} and all("token" not in t for t in listed)

    started = time.perf_counter()
    r = api.call("DELETE", f"/sites/{site}/tokens/{issued['id']}", other)
    elapsed = time.perf_counter() - started
    assert r.status_code == 204 and "x-revocation-pending" not in r.headers, r.headers
    for service, path in routes.items():  # the very next requests, no wait
        refused = api.call("GET", path, token)
        assert refused.status_code == 401, (service, refused.status_code, refused.text)
        assert refused.json()["code"] == "token_revoked", service
        assert api.call("GET", path, other).status_code == 200, service
    print(f"\nrevocation answered in {elapsed * 1000:.0f} ms")
    assert issued["id"] not in {t["id"] for t in api.ok("GET", f"/sites/{site}/tokens")["items"]}
    assert api.call("DELETE", f"/sites/{site}/tokens/{issued['id']}").status_code == 404
    return elapsed


def test_a_revoked_token_is_refused_at_once_by_every_service(stack: Stack) -> None:
    check_revocation_reaches_every_service(stack.api)


def test_revocation_on_rabbitmq(rabbit_stack: Stack) -> None:
    check_revocation_reaches_every_service(rabbit_stack.api)


def test_tokens_expire_and_stay_within_their_site(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    api.create_site("9999", {"1": "0490857R"})
    r = api.call("POST", f"/sites/{SITE}/tokens", json={"expires_in_s": 0})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    short = api.ok("POST", f"/sites/{SITE}/tokens", json={"expires_in_s": 2})
    soon = datetime.fromisoformat(short["expires_at"].replace("Z", "+00:00"))
    assert timedelta(seconds=1) < soon - datetime.now(UTC) <= timedelta(seconds=2) and not short["expired"]
    assert api.call("GET", f"/sites/{SITE}", short["token"]).status_code == 200
    while datetime.now(UTC) < soon + timedelta(seconds=0.2):
        time.sleep(0.1)
    assert api.call("GET", f"/sites/{SITE}", short["token"]).status_code == 401
    assert next(t for t in api.ok("GET", f"/sites/{SITE}/tokens")["items"] if t["id"] == short["id"])["expired"]

    # a site token sees, and revokes, only its own site's tokens; issuing one is for the admin
    mine, theirs = api.site_token(SITE), api.site_token("9999")
    theirs_id = api.ok("GET", "/sites/9999/tokens")["items"][0]["id"]
    assert api.call("GET", "/sites/9999/tokens", mine).status_code == 404
    assert api.call("DELETE", f"/sites/9999/tokens/{theirs_id}", mine).status_code == 404
    assert api.call("DELETE", f"/sites/{SITE}/tokens/{theirs_id}", mine).status_code == 404
    assert api.call("GET", "/sites/9999", theirs).status_code == 200
    assert api.call("POST", f"/sites/{SITE}/tokens", mine).status_code == 403
