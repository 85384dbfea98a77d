"""A class feed of an L school (2,000 students, tests.factory), through the real path: an L export imported
by REST, then the feed fetched by its subscription URL as a calendar app does — complete, the same body from
the cache, and revalidated with 304. Its speed (first fetch, cached, 304) is measured by `make bench`
(tests/bench/api.py), side by side with the re-import, not here."""

from __future__ import annotations

import httpx
import pytest

from tests.factory import make_school
from tests.integration.conftest import Stack

SITE, EST, UAI = "4817", "1754", "0490856P"


@pytest.mark.parametrize("db_kind", ["sqlite", "postgres"], indirect=True)
def test_a_class_feed_of_an_l_school_is_whole_cached_and_revalidated(stack: Stack, db_kind: str) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    school = make_school("L", 1, uai=UAI)
    done = api.wait(api.upload(SITE, EST, school.to_xml_bytes()), {"done", "failed", "rejected"}, timeout=300)
    assert done["status"] == "done", done
    klass = sorted(school.timetable.classes)[0]
    sub = api.ok("POST", f"/sites/{SITE}/establishments/{EST}/calendar/class/{klass}/subscription")
    with httpx.Client(timeout=30, trust_env=False) as calendar_app:
        first = calendar_app.get(sub["url"])
        assert first.status_code == 200, first.text
        again = calendar_app.get(sub["url"])
        revalidated = calendar_app.get(sub["url"], headers={"If-None-Match": first.headers["etag"]})
    assert first.content.count(b"BEGIN:VEVENT") > 500
    assert again.status_code == 200 and again.content == first.content
    assert revalidated.status_code == 304 and revalidated.content == b""
