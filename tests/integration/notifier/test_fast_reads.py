"""The history reads answered before routing (shared.web.FastRead): every answer is the documented route's,
byte for byte — the 200s from the fast path, every error, unknown parameter or odd query from the route itself.
Each request is sent twice to the running product, once as it runs and once with the fast path switched off in
its middleware, and the two answers compared."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from shared.web import FastReads
from tests.harness import sample_xml
from tests.integration.conftest import BOTH_BACKENDS, Stack

SITE, EST, UAI = "4817", "1754", "0490856P"
OTHER, OTHER_EST, OTHER_UAI = "5120", "2210", "0351234W"


def fast_reads_of(stack: Stack) -> FastReads:
    node: Any = stack.server.app.middleware_stack
    while not isinstance(node, FastReads):
        node = node.app
    return node


@contextmanager
def routed(reads: FastReads) -> Iterator[list[str]]:
    """The paths that reached the routes (the fast path did not answer them) while the block runs."""
    seen: list[str] = []
    inner = reads.app

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await inner(scope, receive, send)

    reads.app = app
    try:
        yield seen
    finally:
        reads.app = inner


@contextmanager
def without_fast_path(reads: FastReads) -> Iterator[None]:
    saved, reads.reads = reads.reads, []
    try:
        yield
    finally:
        reads.reads = saved


def get(stack: Stack, path: str, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization else {}
    return httpx.get(stack.url + "/api/v1" + path, headers=headers, timeout=30)


@BOTH_BACKENDS
def test_fast_reads_answer_what_the_routes_answer(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    api.create_site(OTHER, {OTHER_EST: OTHER_UAI})
    first = api.first_import(SITE, EST, sample_xml(UAI, marker="fast-1"))["id"]
    again = api.wait(api.upload(SITE, EST, sample_xml(UAI, marker="fast-1")))["id"]  # « Aucun changement »
    api.wait(api.upload(SITE, EST, sample_xml(UAI, marker="fast-2")))
    api.first_import(OTHER, OTHER_EST, sample_xml(OTHER_UAI, marker="fast-3"))
    mine, theirs = api.site_token(SITE), api.site_token(OTHER)
    revoked = api.ok("POST", f"/sites/{SITE}/tokens", json={"label": "old"})
    api.call("DELETE", f"/sites/{SITE}/tokens/{revoked['id']}")
    cursor = api.ok("GET", f"/sites/{SITE}/imports?limit=1")["next_cursor"]
    assert cursor

    admin = f"Bearer {api.admin_token}"
    fast = [  # answered 200 before routing
        (f"/imports/{first}", f"Bearer {mine}"), (f"/imports/{again}", admin), (f"/imports/{first}?x=1", admin),
        (f"/sites/{SITE}/imports", f"Bearer {mine}"), (f"/sites/{SITE}/imports", f"bearer {mine}"),
        (f"/sites/{SITE}/imports?limit=1", admin), (f"/sites/{SITE}/imports?limit=1&cursor={cursor}", admin),
        (f"/sites/{SITE}/imports?status=done,rejected&mode=auto&establishment={EST}", admin),
        (f"/sites/{SITE}/imports?establishment=*", admin), (f"/sites/{OTHER}/imports?limit=500", admin),
    ]
    routed_on = [  # the route answers (its errors, and what the fast path leaves to it)
        (f"/imports/{first}", f"Bearer {theirs}"), (f"/imports/{first}", f"Bearer {revoked['token']}"),
        (f"/imports/{first}", None), (f"/imports/{first}", "Basic dXNlcjpwYXNz"), (f"/imports/{first}", "Bearer nope"),
        ("/imports/unknown", admin), (f"/sites/{OTHER}/imports", f"Bearer {mine}"),
        (f"/sites/{SITE}/imports?limit=0", admin), (f"/sites/{SITE}/imports?limit=501", admin),
        (f"/sites/{SITE}/imports?limit=abc", admin),
        (f"/sites/{SITE}/imports?limit=%D9%A3", admin), (f"/sites/{SITE}/imports?limit=1&limit=2", admin),
        (f"/sites/{SITE}/imports?status=bogus", admin), (f"/sites/{SITE}/imports?mode=", admin),
        (f"/sites/{SITE}/imports?mode=later", admin), (f"/sites/{SITE}/imports?cursor=garbage", admin),
        (f"/sites/{SITE}/imports?page=2", admin), ("/sites/-bad/imports", admin), (f"/sites/{SITE}/imports/", admin),
    ]
    reads = fast_reads_of(stack)
    for path, authorization in fast + routed_on:
        with routed(reads) as seen:
            answer = get(stack, path, authorization)
        with without_fast_path(reads):
            expected = get(stack, path, authorization)
        case = (path, authorization)
        assert answer.status_code == expected.status_code, (case, answer.text, expected.text)
        assert answer.headers.get("content-type") == expected.headers.get("content-type"), case
        assert answer.content == expected.content, case
        assert bool(seen) == ((path, authorization) in routed_on), (case, seen)
        if (path, authorization) in fast:
            assert answer.status_code == 200, case


def test_the_id_a_deposit_answers_is_read_at_once_on_the_fast_path(sqlite_stack: Stack) -> None:
    """Read-your-writes holds on the fast path: the import a deposit's answer names is in its detail and the
    history at once, neither read left to the routes."""
    api = sqlite_stack.api
    api.create_site(SITE, {EST: UAI})
    api.first_import(SITE, EST, sample_xml(UAI, marker="fast-4"))
    with routed(fast_reads_of(sqlite_stack)) as seen:
        import_id = api.upload(SITE, EST, sample_xml(UAI, marker="fast-5"))
        assert api.get_import(import_id)["id"] == import_id
        assert import_id in [i["id"] for i in api.history(SITE)]
    assert f"/api/v1/imports/{import_id}" not in seen and f"/api/v1/sites/{SITE}/imports" not in seen, seen
