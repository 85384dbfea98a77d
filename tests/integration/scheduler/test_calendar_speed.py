"""A class feed of an L school (2,000 students, tests.factory) answers in < 100 ms, through the real path:
an L export imported by REST, then the feed fetched by its subscription URL as a calendar app does. The
figures are printed (run with -s): the first fetch after the import (built from the database), the next
ones (cached until the next import) and a revalidation answered 304."""

from __future__ import annotations

import statistics
import time

import httpx
import pytest

from tests.factory import make_school
from tests.integration.conftest import Stack

SITE, EST, UAI = "4817", "1754", "0490856P"
BUDGET_S = 0.100


@pytest.mark.parametrize("db_kind", ["sqlite", "postgres"], indirect=True)
def test_a_class_feed_of_an_l_school_answers_within_100_ms(stack: Stack, db_kind: str) -> None:
    api = stack.api
    api.create_site(SITE, {EST: UAI})
    school = make_school("L", 1, uai=UAI)
    done = api.wait(api.upload(SITE, EST, school.to_xml_bytes()), {"done", "failed", "rejected"}, timeout=300)
    assert done["status"] == "done", done
    classes = sorted(school.timetable.classes)
    sub = api.ok("POST", f"/sites/{SITE}/establishments/{EST}/calendar/class/{classes[0]}/subscription")
    with httpx.Client(timeout=30, trust_env=False) as calendar_app:
        calendar_app.get(sub["url"].replace(classes[0], classes[1]))  # a first request warms the connection

        def fetch(url: str, **headers: str) -> tuple[float, httpx.Response]:
            started = time.perf_counter()
            r = calendar_app.get(url, headers=headers)
            return time.perf_counter() - started, r

        cold, first = fetch(sub["url"])
        assert first.status_code == 200, first.text
        events = first.content.count(b"BEGIN:VEVENT")
        warm = [fetch(sub["url"])[0] for _ in range(20)]
        revalidate = [fetch(sub["url"], **{"If-None-Match": first.headers["etag"]}) for _ in range(20)]
    assert all(r.status_code == 304 for _, r in revalidate)
    figures = {"first fetch": cold, "cached p50": statistics.median(warm), "cached max": max(warm),
               "304 p50": statistics.median(t for t, _ in revalidate)}
    print(f"\n[{db_kind}] L school, class feed of {events} sessions ({len(first.content) // 1024} KiB): "
          + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in figures.items()))
    assert events > 500
    assert cold < BUDGET_S and figures["cached p50"] < BUDGET_S and figures["304 p50"] < BUDGET_S, figures
