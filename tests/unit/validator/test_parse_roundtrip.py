"""Generated schools parse back to exactly the model the generator meant: clear, zipped, encrypted."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.validator.domain import ParseResult, parse_export
from shared.timetable import derive_closure_weeks, derive_courses, sessions_for_course
from tests.factory import GeneratedSchool, make_school
from tests.unit.validator.conftest import PARTNER


def _parse(path: Path, data: bytes, key: bytes | None, school: GeneratedSchool) -> ParseResult:
    path.write_bytes(data)
    uais = [school.timetable.uai, *(e.uai for e in school.timetable.establishments.values())]
    return parse_export(path, partner_name=PARTNER, private_key=key, expected_uais=uais)


def _variants(school: GeneratedSchool, public: bytes) -> dict[str, bytes]:
    encrypted = school.encrypt(public, PARTNER)
    return {
        "clear": school.to_xml_bytes(),
        "zip": school.zip(),
        "encrypted": encrypted,
        "encrypted-zip": school.zip(encrypted, name="EDT_2014_1730793612486.xml"),
    }


def _assert_same_meaning(result: ParseResult, school: GeneratedSchool) -> None:
    assert result.errors == []
    assert result.timetable is not None
    got, want = result.timetable, school.timetable
    assert got == want  # every entity, every slot, every week bitmap
    courses = derive_courses(got)
    assert [c.key for c in courses] == [c.key for c in derive_courses(want)]
    for course in courses[:: max(1, len(courses) // 25)]:
        assert list(sessions_for_course(got, course)) == list(sessions_for_course(want, course))
    assert derive_closure_weeks(got) == school.holidays


@pytest.mark.parametrize("newer", [False, True], ids=["schema-1.1", "newer"])
@pytest.mark.parametrize("size", ["S", "M"])
@pytest.mark.parametrize("variant", ["clear", "zip", "encrypted", "encrypted-zip"])
def test_generated_file_parses_back_to_its_model(
    tmp_path: Path, keypair: tuple[bytes, bytes], size: str, variant: str, newer: bool
) -> None:
    school = make_school(size, 42, newer=newer)
    data = _variants(school, keypair[1])[variant]
    result = _parse(tmp_path / f"export-{variant}", data, keypair[0], school)
    _assert_same_meaning(result, school)
    assert result.meta.encrypted == variant.startswith("encrypted")
    assert result.meta.zipped == variant.endswith("zip")
    assert result.meta.format_version == "1.1"
    if result.meta.encrypted:
        assert (result.meta.product, result.meta.year) == ("PRONOTE", 2024)
        assert result.meta.container_uai == school.timetable.uai
    # unknown sections (newer exports) are read, dropped and listed
    assert ("Etiquettes" in result.meta.ignored_sections) is newer


@pytest.mark.slow
@pytest.mark.parametrize("size", ["L", "XL"])
def test_large_schools_parse_back_to_their_model(tmp_path: Path, keypair: tuple[bytes, bytes], size: str) -> None:
    school = make_school(size, 42)
    for variant, data in _variants(school, keypair[1]).items():
        _assert_same_meaning(_parse(tmp_path / f"export-{variant}", data, keypair[0], school), school)


def test_real_oddities_are_warnings_not_errors(tmp_path: Path) -> None:
    school = make_school("S", 3)
    result = _parse(tmp_path / "s.xml", school.to_xml_bytes(), None, school)
    assert result.ok
    codes = {w.code for w in result.warnings}
    assert {"slot_without_resources", "slot_parts_only", "slot_groups_and_classes", "homonyms"} <= codes
    for w in result.warnings:
        assert w.message_fr and w.message_en and "{" not in w.message_fr + w.message_en


def test_zip_members_beside_the_export_are_ignored_and_reported(tmp_path: Path) -> None:
    school = make_school("XS", 1)
    data = school.zip(extra={"lisezmoi.txt": b"bonjour", "logo.png": b"\x89PNG\r\n"})
    result = _parse(tmp_path / "e.zip", data, None, school)
    assert result.ok
    assert result.meta.zip_ignored == ["lisezmoi.txt", "logo.png"]
    assert "zip_members_ignored" in {w.code for w in result.warnings}
