"""The parser reads every construct the 1.1 schema allows (tests/factory/real.py `schema_constructs`; its
validity by Index Education's XSD is checked under `make test-real`, where the XSD is)."""

from __future__ import annotations

from pathlib import Path

from services.validator.domain import parse_export
from shared.timetable import derive_courses, sessions_for_course
from tests.factory.real import schema_constructs


def test_every_schema_construct_is_read(tmp_path: Path) -> None:
    path = tmp_path / "constructs.xml"
    path.write_bytes(schema_constructs())
    result = parse_export(path, partner_name="EDT-IMPORT", private_key=None, expected_uais=["0490856P"])
    assert result.ok, [(p.code, p.message_en) for p in result.errors]
    tt = result.timetable
    assert tt is not None
    assert [(p.number, p.start, p.end) for p in tt.grid.places] == [(0, 480, 535), (1, 540, 595), (2, 605, 660)]
    assert tt.grid.days == (1, 2, 3, 4, 5, 6, 7) and tt.grid.places_per_day == 3 and tt.grid.place_minutes == 55
    assert set(tt.subjects) == {"7", "8"} and set(tt.teachers) == {"2"}  # ' 2', '07': the idents 2 and 7
    assert tt.school_year.start.isoformat()[:4] == tt.school_year.week1.isoformat()[:4]  # zoned xs:date read
    teacher = tt.teachers["2"]
    assert (teacher.pronote_id, teacher.cas_id) == ("PN-1", "cas.1")
    assert not hasattr(teacher, "sts_id")  # IDSTS="A12" is read as a known attribute, never kept
    lea = tt.students["12"]
    assert [m.ident for m in lea.classes] == ["3"] and [m.ident for m in lea.parts] == ["30"]
    assert lea.classes[0].start == tt.school_year.start and lea.classes[0].end == tt.school_year.end
    assert {w.code for w in result.warnings} <= {"slot_parts_only"}
    courses = {c.key: c for c in derive_courses(tt)}
    assert set(courses) == {"7|class:3", "7|group:5"}
    # weeks 1..44 set (written with a sign, with spaces, plainly); week 1's Monday is before DateDebut: 43
    assert len(list(sessions_for_course(tt, courses["7|class:3"]))) == 43
