"""The canonical model: serialisation, course rules (design.md §7), sessions and closures (§8a), sniffing."""

from __future__ import annotations

import json
import zipfile
from datetime import date, datetime
from pathlib import Path

import pytest

from shared.timetable import (
    MODEL_VERSION,
    ClosurePeriod,
    ModelVersionError,
    Place,
    Ref,
    SchoolClass,
    SchoolYear,
    Slot,
    Subject,
    TimeGrid,
    Timetable,
    derive_closure_weeks,
    derive_courses,
    dumps,
    iter_weeks,
    loads,
    sessions_for_course,
    sniff_export,
    to_jsonable,
    weeks_bitmap,
)
from shared.timetable import Group as TGroup
from tests.factory import encrypt_export, make_keypair, make_school, zip_export

YEAR = SchoolYear(date(2024, 9, 2), date(2025, 8, 31), date(2024, 9, 2))
GRID = TimeGrid(10, 55, (1, 2, 3, 4, 5), tuple(Place(i, (8 + i) * 60, (8 + i) * 60 + 55) for i in range(10)))
ALL = weeks_bitmap(range(1, 45))


def tt(*slots: Slot, **kwargs: object) -> Timetable:
    base: dict[str, object] = {
        "uai": "0490001K",
        "format_version": "1.1",
        "school_year": YEAR,
        "grid": GRID,
        "subjects": {"1": Subject("1", "FRANC", "FRANCAIS"), "2": Subject("2", "MATHS", "")},
        "classes": {
            "10": SchoolClass("10", "3F", ("100", "101")),
            "11": SchoolClass("11", "3G", ("110", "111")),
        },
        "groups": {"20": TGroup("20", "3FG LATIN", parts=("100", "110"))},
        "slots": slots,
    }
    base.update(kwargs)
    return Timetable(**base)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ courses


def test_subject_plus_class_makes_one_course_labelled_subject_dash_class() -> None:
    [course] = derive_courses(tt(Slot(1, 0, 1, "1", teachers=(Ref("7", ALL),), classes=(Ref("10", ALL),))))
    assert course.label == "FRANCAIS - 3F"
    assert course.key == "1|class:10"
    assert (course.kind, course.target, course.teachers) == ("class", "10", ("7",))


def test_label_uses_the_code_when_the_libelle_is_empty() -> None:
    [course] = derive_courses(tt(Slot(1, 0, 1, "2", classes=(Ref("10", ALL),))))
    assert course.label == "MATHS - 3F"


def test_slot_with_only_parts_of_class_makes_no_course() -> None:
    assert derive_courses(tt(Slot(1, 0, 1, "1", teachers=(Ref("7", ALL),), parts=(Ref("100", ALL),)))) == []


def test_slot_with_a_subject_only_makes_no_course() -> None:
    assert derive_courses(tt(Slot(1, 0, 1, "1"))) == []


def test_two_classes_on_one_slot_make_two_courses() -> None:
    courses = derive_courses(tt(Slot(1, 0, 1, "1", classes=(Ref("10", ALL), Ref("11", ALL)))))
    assert [c.key for c in courses] == ["1|class:10", "1|class:11"]
    assert [c.label for c in courses] == ["FRANCAIS - 3F", "FRANCAIS - 3G"]


def test_group_shared_by_two_classes_makes_one_course() -> None:
    courses = derive_courses(tt(Slot(1, 0, 1, "1", groups=(Ref("20", ALL),))))
    assert [(c.key, c.label) for c in courses] == [("1|group:20", "FRANCAIS - 3FG LATIN")]


def test_slot_naming_groups_and_classes_makes_courses_for_its_groups_only() -> None:
    slot = Slot(1, 0, 1, "1", classes=(Ref("10", ALL), Ref("11", ALL)), groups=(Ref("20", ALL),))
    assert [c.key for c in derive_courses(tt(slot))] == ["1|group:20"]


def test_same_subject_and_class_on_several_slots_is_one_course() -> None:
    courses = derive_courses(
        tt(
            Slot(1, 0, 1, "1", teachers=(Ref("7", ALL),), classes=(Ref("10", ALL),)),
            Slot(2, 3, 2, "1", teachers=(Ref("8", ALL),), classes=(Ref("10", ALL),)),
        )
    )
    assert len(courses) == 1
    assert courses[0].slots == (0, 1)
    assert courses[0].teachers == ("7", "8")


def test_course_keys_are_stable_across_exports() -> None:
    a = [c.key for c in derive_courses(make_school("XS", 4).timetable)]
    b = [c.key for c in derive_courses(make_school("XS", 4).timetable)]
    assert a == b and len(set(a)) == len(a)


# ----------------------------------------------------------------------------------------- sessions


def test_session_dates_follow_week1_day_and_places() -> None:
    slot = Slot(3, 2, 2, "1", classes=(Ref("10", weeks_bitmap([1, 3])),))
    t = tt(slot)
    sessions = list(sessions_for_course(t, derive_courses(t)[0]))
    assert [(s.week, s.start, s.end) for s in sessions] == [
        (1, datetime(2024, 9, 4, 10, 0), datetime(2024, 9, 4, 11, 55)),
        (3, datetime(2024, 9, 18, 10, 0), datetime(2024, 9, 18, 11, 55)),
    ]


def test_cancelled_week_has_no_session() -> None:
    slot = Slot(1, 0, 1, "1", cancelled_weeks=weeks_bitmap([2]), classes=(Ref("10", weeks_bitmap([1, 2, 3])),))
    t = tt(slot)
    assert [s.week for s in sessions_for_course(t, derive_courses(t)[0])] == [1, 3]


def test_alternating_weeks_give_each_class_its_own_weeks() -> None:
    slot = Slot(1, 0, 1, "1", classes=(Ref("10", weeks_bitmap([1, 3, 5])), Ref("11", weeks_bitmap([2, 4]))))
    t = tt(slot)
    a, b = derive_courses(t)
    assert [s.week for s in sessions_for_course(t, a)] == [1, 3, 5]
    assert [s.week for s in sessions_for_course(t, b)] == [2, 4]


def test_session_teachers_and_rooms_are_those_taking_part_that_week() -> None:
    slot = Slot(
        1, 0, 1, "1",
        teachers=(Ref("7", weeks_bitmap([1, 3])), Ref("8", weeks_bitmap([2]))),
        classes=(Ref("10", weeks_bitmap([1, 2, 3])),),
        rooms=(Ref("R1", weeks_bitmap([1, 2])), Ref("R2", weeks_bitmap([3]))),
    )  # fmt: skip
    t = tt(slot)
    got = [(s.week, s.teachers, s.rooms) for s in sessions_for_course(t, derive_courses(t)[0])]
    assert got == [(1, ("7",), ("R1",)), (2, ("8",), ("R1",)), (3, ("7",), ("R2",))]


def test_weeks_outside_the_school_year_make_no_session() -> None:
    year = SchoolYear(date(2024, 9, 3), date(2025, 7, 4), date(2024, 9, 2))
    slot = Slot(1, 0, 1, "1", classes=(Ref("10", weeks_bitmap([1, 2, 50, 60])),))  # Monday of week 1: before DateDebut
    t = tt(slot, school_year=year)
    assert [s.week for s in sessions_for_course(t, derive_courses(t)[0])] == [2]


def test_bitmaps_use_bit_i_for_week_i() -> None:
    # from a real export: Semaines="5791030531412" is "Domaine : [2,4,6,8,10,12,14,16,20,22,26,28,30,34,38,40,42]"
    assert list(iter_weeks(5791030531412)) == [2, 4, 6, 8, 10, 12, 14, 16, 20, 22, 26, 28, 30, 34, 38, 40, 42]
    assert list(iter_weeks(2)) == [1]
    assert list(iter_weeks(1)) == []  # bit 0 is not a week
    assert weeks_bitmap(iter_weeks(11719500409002)) == 11719500409002


def test_generated_school_sessions_skip_holidays_and_cancellations() -> None:
    school = make_school("XS", 2)
    t = school.timetable
    holiday_days = [(p.start, p.end) for p in school.holidays]
    count = 0
    for course in derive_courses(t):
        for s in sessions_for_course(t, course):
            count += 1
            assert not any(a <= s.start.date() <= b for a, b in holiday_days)
            assert not t.slots[s.slot].cancelled_weeks & (1 << s.week)
    assert count > 500


# ----------------------------------------------------------------------------------------- closures


def test_closure_periods_are_weeks_without_any_bit() -> None:
    weeks = weeks_bitmap([w for w in range(1, 45) if w not in (8, 9, 17)])
    t = tt(Slot(1, 0, 1, "1", cancelled_weeks=weeks_bitmap([20]), classes=(Ref("10", weeks),)))
    assert derive_closure_weeks(t) == [
        ClosurePeriod(date(2024, 10, 21), date(2024, 11, 3)),
        ClosurePeriod(date(2024, 12, 23), date(2024, 12, 29)),
        ClosurePeriod(date(2025, 7, 7), date(2025, 8, 31)),  # summer, clipped to DateFin
    ]


def test_generated_school_closures_are_its_holidays() -> None:
    school = make_school("S", 1)
    assert derive_closure_weeks(school.timetable) == school.holidays
    assert len(school.holidays) == 5


# ------------------------------------------------------------------------------------ serialisation


@pytest.mark.parametrize("size", ["XS", "S", "M"])
def test_dumps_loads_round_trip(size: str) -> None:
    model = make_school(size, 11).timetable
    data = dumps(model)
    assert isinstance(data, bytes)
    assert loads(data) == model
    assert b'"model_version":%d' % MODEL_VERSION in data


def test_loads_refuses_another_model_version() -> None:
    data = dumps(make_school("XS", 1).timetable).replace(b'"model_version":2', b'"model_version":999')
    with pytest.raises(ModelVersionError):
        loads(data)


def test_round_trip_of_a_large_school() -> None:
    # its speed is make bench's to measure (the codec runs in every stage of every import there)
    model = make_school("L", 1).timetable
    assert loads(dumps(model)) == model


# -------------------------------------------------------------------------------------------- sniff


@pytest.fixture(scope="module")
def school_xml() -> bytes:
    return make_school("XS", 5).to_xml_bytes()


def test_sniff_clear_file(tmp_path: Path, school_xml: bytes) -> None:
    path = tmp_path / "export.bin"  # detection by content, not by name
    path.write_bytes(school_xml)
    s = sniff_export(path)
    assert (s.kind, s.uai, s.establishment_uais, s.is_zip, s.version) == (
        "clear", make_school("XS", 5).timetable.uai, [], False, "1.1",
    )  # fmt: skip


def test_sniff_lists_the_establishments_of_a_cite_scolaire(tmp_path: Path) -> None:
    school = make_school("XL", 1)
    path = tmp_path / "cite.xml"
    path.write_bytes(school.to_xml_bytes())
    s = sniff_export(path)
    assert s.kind == "clear"
    assert s.establishment_uais == [e.uai for e in school.timetable.establishments.values()]
    assert len(s.establishment_uais) == 2


def test_sniff_stops_before_the_courses(tmp_path: Path, school_xml: bytes) -> None:
    head = school_xml.split(b"  <Classes>")[0]
    path = tmp_path / "cut.xml"
    path.write_bytes(head + b"  <Classes>\x00\x01 garbage <<<")
    assert sniff_export(path).kind == "clear"


def test_sniff_zipped_clear_file(tmp_path: Path, school_xml: bytes) -> None:
    path = tmp_path / "EDT_2014_1730793612486.zip"
    path.write_bytes(zip_export(school_xml, "EDT_To_KOSMOS.xml", {"lisezmoi.txt": b"hello"}))
    s = sniff_export(path)
    assert (s.kind, s.is_zip, s.member) == ("clear", True, "EDT_To_KOSMOS.xml")


def test_sniff_encrypted_file_plain_and_zipped(tmp_path: Path, school_xml: bytes) -> None:
    _, public = make_keypair()
    data = encrypt_export(school_xml, public, "EDT-IMPORT", uai="0491234X")
    path = tmp_path / "Edt_To_ENT_0491234X.xml"
    path.write_bytes(data)
    s = sniff_export(path)
    assert (s.kind, s.uai, s.version) == ("encrypted", "0491234X", "1.0")
    assert s.software and s.software.startswith("PRONOTE")
    zipped = tmp_path / "enc.zip"
    zipped.write_bytes(zip_export(data, "x.xml"))
    assert (sniff_export(zipped).kind, sniff_export(zipped).uai, sniff_export(zipped).is_zip) == (
        "encrypted", "0491234X", True,
    )  # fmt: skip


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not xml at all",
        b"PK\x03\x04 broken zip",
        b'<?xml version="1.0"?><html><body/></html>',
        b'<!DOCTYPE ExportEmploiDuTemps SYSTEM "http://127.0.0.1:9/x.dtd"><ExportEmploiDuTemps UAI="1"/>',
        b'<!DOCTYPE a [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><ExportEmploiDuTemps UAI="&b;"/>',
        b"<EXPORT_INDEX_EDUCATION><VERSION>1.0</VERSION><CONTENU>trunc",
    ],
    ids=["empty", "text", "bad-zip", "html", "dtd", "entities", "truncated-container"],
)
def test_sniff_never_raises_on_garbage(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "f"
    path.write_bytes(content)
    assert sniff_export(path).kind == "unknown"


def test_sniff_refuses_zip_with_two_xml_and_zip_bombs(tmp_path: Path, school_xml: bytes) -> None:
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.xml", school_xml)
        zf.writestr("b.xml", school_xml)
    assert sniff_export(two).kind == "unknown"
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("a.xml", "w") as member:
        member.write(b"<ExportEmploiDuTemps>" + b" " * (8 * 1024 * 1024))
    assert sniff_export(bomb).kind == "unknown"


def test_sniff_missing_file_is_unknown(tmp_path: Path) -> None:
    assert sniff_export(tmp_path / "nope.xml").kind == "unknown"


def test_count_sessions_equals_the_sessions_derived() -> None:
    """The threshold facts count sessions without building them: the same rule, the same number."""
    from shared.timetable import count_sessions
    from tests.factory import make_school

    school = make_school("S", 4, newer=True)  # with cancellations
    for course in derive_courses(school.timetable):
        assert count_sessions(school.timetable, course) == sum(1 for _ in sessions_for_course(school.timetable, course))


def test_loads_reads_version_1_blobs_without_what_version_2_no_longer_keeps() -> None:
    """A baseline stored before minimisation stays usable: its sex, national ids, teachers' birth dates and
    STS ids are dropped as it is read."""
    tt = make_school("XS", 1).timetable
    v2 = to_jsonable(tt)
    v1 = {**v2, "model_version": 1,
          "teachers": [[t[0], t[1], t[2], "1970-01-01", t[3], t[4], "STS-1"] for t in v2["teachers"]],
          "staff": [[t[0], t[1], t[2], None, t[3], t[4], None] for t in v2["staff"]],
          "students": [[s[0], s[1], s[2], s[3], "Feminin", s[4], s[5], "012345678AB", s[6], s[7]]
                       for s in v2["students"]]}
    old = loads(json.dumps(v1).encode())
    assert old == tt
    assert b"Feminin" not in dumps(old) and b"012345678AB" not in dumps(old) and b"STS-1" not in dumps(old)
