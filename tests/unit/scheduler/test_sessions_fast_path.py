"""The hot paths of session generation give exactly what the plain rules give:
`sessions_for_course` / `course_slot_weeks` against a per-week reference, the planner's streamed hashes
against `session_id` and the documented fingerprint, the merge of two sessions with one key, the JSON fast
path against `session_view`, and the GC pause's bookkeeping."""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from services.scheduler import domain
from services.scheduler.store import session_records
from shared.blobs import gc_paused
from shared.timetable import (
    Course,
    Ref,
    Session,
    Slot,
    Timetable,
    course_classes,
    course_slot_weeks,
    derive_courses,
    iter_weeks,
    sessions_for_course,
)
from tests.factory import make_school
from tests.golden.scheduler import golden_timetable, w

PARIS = ZoneInfo("Europe/Paris")
BEFORE_YEAR = datetime(2026, 8, 1, tzinfo=UTC)


def reference_sessions(tt: Timetable, course: Course) -> Iterator[Session]:
    """design.md §8a week by week, the straightforward way (the implementation before the fast path)."""
    places = {p.number: p for p in tt.grid.places}
    year = tt.school_year
    for index in course.slots:
        slot = tt.slots[index]
        weeks = 0
        for r in slot.groups if course.kind == "group" else slot.classes:
            if r.ident == course.target:
                weeks |= r.weeks
        weeks &= ~slot.cancelled_weeks
        first = places.get(slot.first_place)
        last = places.get(slot.first_place + slot.place_count - 1)
        if not weeks or first is None or last is None:
            continue
        base = datetime(year.week1.year, year.week1.month, year.week1.day)
        for week in iter_weeks(weeks):
            monday = base + timedelta(weeks=week - 1)
            start = monday + timedelta(days=slot.day - 1, minutes=first.start)
            if not year.start <= start.date() <= year.end:
                continue
            bit = 1 << week

            def part(refs: tuple[Ref, ...], bit: int = bit) -> tuple[str, ...]:
                return tuple(r.ident for r in refs if r.weeks & bit)

            yield Session(week, start, monday + timedelta(days=slot.day - 1, minutes=last.end), index,
                          part(slot.teachers), part(slot.rooms), part(slot.equipment), part(slot.staff))


def with_mixed_weeks(tt: Timetable) -> Timetable:
    """Slots whose resources change from week to week (substitutes, room swaps, staff some weeks), a slot
    straddling the end of the school year and one on the same day and first place as another (merged)."""
    s0 = tt.slots[0]
    extra = (
        Slot(2, 0, 3, "S1", teachers=(Ref("T7", w(1, 3)), Ref("T1", w(3))), classes=(Ref("C6A", w(1, 3)),),
             rooms=(Ref("R9", w(1, 3)), Ref("R1", w(1))), students=(Ref("E1", w(3)),), staff=(Ref("X", w(1)),),
             equipment=(Ref("M1", w(3)),)),
        Slot(5, 1, 1, "S5", teachers=(Ref("T2", w(*range(40, 64))),), classes=(Ref("C6B", w(*range(40, 64))),)),
    )
    return replace(tt, slots=(replace(s0, staff=(Ref("X", w(1)), Ref("Y", w(1, 2, 3)))), *tt.slots[1:], *extra))


def timetables() -> list[Timetable]:
    return [golden_timetable(), with_mixed_weeks(golden_timetable()), make_school("XS", 2, year=2026).timetable]


def test_sessions_for_course_matches_the_week_by_week_rules() -> None:
    for tt in timetables():
        for course in derive_courses(tt):
            assert list(sessions_for_course(tt, course)) == list(reference_sessions(tt, course))
            runs = course_slot_weeks(tt, course)
            assert [s for r in runs for s in r.weeks] == [s.week for s in sessions_for_course(tt, course)]


def test_plan_rows_match_the_documented_id_and_fingerprint() -> None:
    for tt in timetables():
        p = domain.plan_establishment(tt, site="4817", establishment="1754", cutoff=BEFORE_YEAR, tz=PARIS)
        assert p.sessions
        for key, row in p.sessions.items():
            course = p.courses[row.course]
            fixed = "\x1f".join((row.course, *course.classes, "\x1e", *row.groups))
            fp = hashlib.blake2b("\x1f".join((fixed, domain.iso(row.start), domain.iso(row.end), *row.rooms, "\x1e",
                                              *row.teachers, "\x1e", *row.students, "\x1e", *row.equipment, "\x1e",
                                              *row.staff)).encode(), digest_size=8).hexdigest()
            assert (row.key, row.id, row.fp) == (key, domain.session_id("4817", "1754", key), fp)
            assert row.classes == course_classes(tt, next(c for c in derive_courses(tt) if c.key == row.course))


def test_two_slots_with_one_key_are_one_session_with_both_resources() -> None:
    p = domain.plan_establishment(with_mixed_weeks(golden_timetable()), site="4817", establishment="1754",
                                  cutoff=BEFORE_YEAR, tz=PARIS)
    first = p.sessions["S1|class:C6A|2026-09-01|0"]
    assert first.rooms == ("R1", "R9") and first.teachers == ("T1", "T7") and first.staff == ("X", "Y")
    assert first.end == datetime(2026, 9, 1, 9, 15, tzinfo=UTC)  # the longer of the two (three places)
    third = p.sessions["S1|class:C6A|2026-09-15|0"]
    assert third.teachers == ("T9", "T7", "T1") and third.students == ("E1",) and third.equipment == ("M1",)


def test_event_json_fast_path_and_escaping_agree_with_the_view() -> None:
    tt = golden_timetable()
    odd = replace(tt, slots=(*tt.slots, Slot(4, 3, 1, 'S"é', teachers=(Ref("T\\1", w(1)),),
                                            classes=(Ref("C6A", w(1)),), rooms=(Ref("R1", w(1)),))))
    p = domain.plan_establishment(odd, site="4817", establishment="1754", cutoff=BEFORE_YEAR, tz=PARIS)
    rows = list(p.sessions.values())
    assert any('"' in r.course for r in rows)
    assert [json.loads(t) for t in domain.sessions_json(rows)] == [domain.session_view(r) for r in rows]
    (event,) = [json.loads(e) for e in domain.change_events(p, domain.diff_sessions(p, []), "imp")]
    assert event["created"] == [domain.session_view(r) for r in rows]
    for sqlite in (True, False):
        records = session_records(rows, "4817", "1754", "imp", sqlite=sqlite)
        assert [json.loads(r[8]) for r in records] == [list(r.rooms) for r in rows]
        assert [r[0] for r in records] == [r.id for r in rows]


def test_gc_pause_nests_and_restores_collection() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: left off
    finally:
        gc.enable()
