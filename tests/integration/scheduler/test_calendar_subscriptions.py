"""iCal subscriptions through the real path (SQLite and PostgreSQL): REST upload → every stage → a
subscription URL that calendar apps fetch with no Authorization header, revocable, with ETag / 304, and a
feed that follows the next import of the establishment."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import urllib.parse

import httpx
import sqlalchemy as sa
from icalendar import Calendar

from shared.db import Database
from tests.factory import make_school, to_xml
from tests.golden.scheduler import UAI, golden_timetable
from tests.integration.conftest import Stack

SITE, EST = "4817", "1754"
BASE = f"/sites/{SITE}/establishments/{EST}"
GOLDEN_YEAR = 2027


def anonymous(url: str, **headers: str) -> httpx.Response:
    """What a calendar app sends: the URL, no Authorization header."""
    return httpx.get(url, headers=headers, timeout=30, trust_env=False)


def uids(body: bytes) -> set[str]:
    return {str(e["uid"]).split("@")[0] for e in Calendar.from_ical(body).walk("VEVENT")}


def class_sessions(stack: Stack, klass: str) -> set[str]:
    out, cursor = set(), None
    while True:
        page = stack.api.ok("GET", f"{BASE}/sessions", params={"class": klass, "limit": 1000,
                                                               **({"cursor": cursor} if cursor else {})})
        out |= {s["id"] for s in page["items"]}
        if not (cursor := page["next_cursor"]):
            return out


def stored_subscriptions(stack: Stack) -> list[tuple[str, ...]]:
    async def read() -> list[tuple[str, ...]]:
        db = Database(stack.settings.database_url)
        try:
            async with db.read() as conn:
                table = sa.table("scheduler_subscriptions", sa.column("id"), sa.column("secret_hash"),
                                 schema=None if not db.is_postgres else "scheduler")
                return [tuple(r) for r in (await conn.execute(sa.select(table))).all()]
        finally:
            await db.close()

    return asyncio.run(read())


def test_a_subscription_url_works_without_a_header_until_revoked(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    api.create_site("9999", {"1": "0490857R"})
    api.wait(api.upload(SITE, EST, to_xml(golden_timetable(GOLDEN_YEAR))), {"done"})
    token = api.site_token(SITE)

    r = api.call("POST", f"{BASE}/calendar/class/C6A/subscription", token)
    assert r.status_code == 201, r.text
    sub = r.json()
    url = sub["url"]
    assert url.startswith(f"{stack.settings.public_url}/api/v1{BASE}/calendar/class/C6A.ics?key={sub['id']}.")
    feed = anonymous(url)
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
    assert len(Calendar.from_ical(feed.content).walk("VEVENT")) == 9
    # the same feed as with a bearer token
    assert feed.content == api.call("GET", f"{BASE}/calendar/class/C6A.ics", token).content

    # ETag / If-None-Match
    etag = feed.headers["etag"]
    again = anonymous(url, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert anonymous(url, **{"If-None-Match": '"other"'}).status_code == 200

    # a wrong secret, another feed's key, no key and no header
    key = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["key"][0]
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert anonymous(url.replace(key, wrong)).status_code == 404
    other = api.ok("POST", f"{BASE}/calendar/class/C6B/subscription", token)["url"]
    other_key = urllib.parse.parse_qs(urllib.parse.urlsplit(other).query)["key"][0]
    assert anonymous(url.replace(key, other_key)).status_code == 404
    assert anonymous(url.split("?")[0]).status_code == 401
    # the secret is stored hashed: the table holds no copy of it
    listed = api.ok("GET", f"{BASE}/calendar/class/C6A/subscription", token)["items"]
    assert [s["id"] for s in listed] == [sub["id"]] and "url" not in listed[0]
    secret = key.split(".", 1)[1]
    stored = dict(stored_subscriptions(stack))
    assert stored[sub["id"]] == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in value for row in stored.items() for value in row)

    # another site's token cannot subscribe, list or revoke; an unknown feed cannot be subscribed to
    foreign = api.site_token("9999")
    assert api.call("POST", f"{BASE}/calendar/class/C6A/subscription", foreign).status_code == 404
    assert api.call("DELETE", f"{BASE}/calendar/class/C6A/subscription", foreign).status_code == 404
    assert api.call("POST", f"{BASE}/calendar/class/NOPE/subscription", token).status_code == 404
    assert api.call("POST", f"{BASE}/calendar/room/R1/subscription", token).status_code == 404

    # revoked: the URL answers 404 at once, the other feed's still works
    assert api.call("DELETE", f"{BASE}/calendar/class/C6A/subscription", token).status_code == 204
    gone = anonymous(url)
    assert gone.status_code == 404 and gone.headers["content-type"].startswith("application/problem+json")
    assert anonymous(other).status_code == 200
    assert api.call("DELETE", f"{BASE}/calendar/class/C6A/subscription", token).status_code == 404


def test_a_feed_follows_the_next_import_of_its_establishment(stack: Stack) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    school = make_school("XS", 3, uai=UAI)
    api.wait(api.upload(SITE, EST, school.to_xml_bytes()), {"done"})
    klass = next(iter(sorted(school.timetable.classes)))
    url = api.ok("POST", f"{BASE}/calendar/class/{urllib.parse.quote(klass)}/subscription")["url"]
    first = anonymous(url)
    assert first.status_code == 200
    assert uids(first.content) == class_sessions(stack, klass)
    assert anonymous(url, **{"If-None-Match": first.headers["etag"]}).status_code == 304  # served from cache

    follow = make_school("XS", 3, uai=UAI, changes=30)
    api.wait(api.upload(SITE, EST, follow.to_xml_bytes(), mode="manual"), {"done"})
    second = anonymous(url, **{"If-None-Match": first.headers["etag"]})
    assert second.status_code == 200 and second.headers["etag"] != first.headers["etag"]
    assert uids(second.content) == class_sessions(stack, klass) and second.content != first.content


def test_feed_lines_follow_rfc_5545(stack: Stack) -> None:
    """CRLF line ends, no line over 75 octets, DTSTAMP the import's time (the same bytes twice)."""
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    api.wait(api.upload(SITE, EST, to_xml(golden_timetable(GOLDEN_YEAR))), {"done"})
    body = api.call("GET", f"{BASE}/calendar/teacher/T9.ics").content
    lines = body.split(b"\r\n")
    assert lines[-1] == b"" and all(b"\n" not in line for line in lines)
    assert all(len(line) <= 75 for line in lines)
    time.sleep(1.1)
    assert api.call("GET", f"{BASE}/calendar/teacher/T9.ics").content == body
    stamps = set(re.findall(rb"DTSTAMP:(\d{8}T\d{6}Z)", body))
    assert len(stamps) == 1
