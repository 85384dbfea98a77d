"""Display names beside idents, the 422 hints of the session filters (services/scheduler/views.py), the
feed cache, and the RFC 5545 writer (services/scheduler/ical.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

from icalendar import Calendar

from services.scheduler.ical import fold, ical_feed
from services.scheduler.views import FeedCache, unknown_course, unknown_value, view_of

VIEW = view_of("imp1", datetime(2026, 9, 1, 6, tzinfo=UTC),
               {"classes": {"C6A": "6A", "C6B": "6B"}, "groups": {"G1": "6AB ESP"}, "rooms": {"R1": "101"},
                "teachers": {"T1": "MARTIN Anne"}, "staff": {}, "students": {"E1": "DURAND Léa"},
                "subjects": {"S1": "FRANÇAIS"}},
               [("S1|class:C6A", "FRANÇAIS - 6A", "S1")])


class Row(NamedTuple):
    id: str
    course: str
    start: datetime
    end: datetime
    rooms: list[str]
    teachers: list[str]
    classes: list[str]
    groups: list[str]


ROW = Row("abc", "S1|class:C6A", datetime(2026, 9, 1, 6, tzinfo=UTC), datetime(2026, 9, 1, 7, tzinfo=UTC),
          ["R1", "R9"], ["T1"], ["C6A"], [])


def test_a_sessions_names_follow_the_order_of_its_ids() -> None:
    assert VIEW.session_names(ROW) == {"course": "FRANÇAIS - 6A", "subject": "FRANÇAIS", "rooms": ["101", "R9"],
                                       "teachers": ["MARTIN Anne"], "classes": ["6A"], "groups": []}


def test_a_filter_given_a_name_says_which_ident_it_is() -> None:
    assert unknown_value(VIEW, "class", "class", "C6A", "C6A") is None
    found = unknown_value(VIEW, "class", "class", "6a", "6a")
    assert found and found.matches == [{"id": "C6A", "name": "6A"}] and "C6A" in found.detail
    person = unknown_value(VIEW, "person", "person", "durand lea", "durand lea")
    assert person and person.matches == [{"id": "student:E1", "name": "DURAND Léa"}]
    none = unknown_value(VIEW, "group", "group", "nope", "nope")
    assert none and none.matches == [] and none.known == [{"id": "G1", "name": "6AB ESP"}] and none.known_total == 1
    course = unknown_course(VIEW, "français - 6a")
    assert course and course.matches == [{"id": "S1|class:C6A", "name": "FRANÇAIS - 6A"}]
    assert unknown_value(None, "class", "class", "C6A", "C6A") is not None  # no timetable yet: nothing known


def test_the_feed_cache_serves_only_the_import_it_was_built_from_and_stays_within_its_bytes() -> None:
    cache = FeedCache(max_bytes=10)
    cache.put(("a",), "imp1", b"12345")
    assert cache.get(("a",), "imp1") == b"12345" and cache.get(("a",), "imp2") is None
    assert cache.get(("a",), "imp1") is None  # dropped once outdated
    cache.put(("a",), "imp1", b"123456")
    cache.put(("b",), "imp1", b"123456")  # over 10 bytes: the least recently used goes
    assert cache.get(("a",), "imp1") is None and cache.get(("b",), "imp1") == b"123456" and len(cache) == 1


def test_feed_lines_are_escaped_and_folded_as_rfc_5545_says() -> None:
    long = "SUMMARY:" + "é" * 60
    folded = fold(long)
    assert all(len(part) <= 75 for part in folded.rstrip(b"\r\n").split(b"\r\n"))
    assert folded.replace(b"\r\n ", b"").rstrip(b"\r\n").decode() == long  # never inside a UTF-8 sequence
    view = view_of(VIEW.import_id, VIEW.updated_at, VIEW.names, [("S1|class:C6A", "FR; LV1, a\\b", "S1")])
    body = ical_feed(name="6A; a, b\\c", sessions=[ROW], view=view)
    assert b"X-WR-CALNAME:6A\\; a\\, b\\\\c\r\n" in body
    cal = Calendar.from_ical(body)
    (event,) = cal.walk("VEVENT")
    assert str(event["location"]) == "101, R9" and str(event["summary"]) == "FR; LV1, a\\b"
    assert event.decoded("dtstamp") == VIEW.updated_at and event.decoded("dtstart") == ROW.start
