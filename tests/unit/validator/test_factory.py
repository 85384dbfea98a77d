"""The synthetic export factory: deterministic, controlled changes, command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.validator.domain import parse_export
from shared.timetable import Course, Timetable, derive_courses
from tests.factory import SIZES, make_school
from tests.unit.validator.conftest import PARTNER

ROOT = Path(__file__).resolve().parents[3]


def test_same_seed_same_file_other_seed_other_school() -> None:
    assert make_school("S", 9).to_xml_bytes() == make_school("S", 9).to_xml_bytes()
    assert make_school("S", 9).to_xml_bytes() != make_school("S", 10).to_xml_bytes()


@pytest.mark.parametrize(("size", "students", "establishments"), [("S", 400, 0), ("M", 800, 0), ("L", 2000, 0),
                                                                  ("XL", 3500, 2)])  # fmt: skip
def test_sizes(size: str, students: int, establishments: int) -> None:
    tt = make_school(size, 1).timetable
    assert len(tt.students) == students
    assert len(tt.establishments) == establishments
    assert size in SIZES


def _signature(tt: Timetable, course: Course) -> tuple[object, ...]:
    return tuple(tt.slots[i] for i in course.slots)


@pytest.mark.parametrize("percent", [5, 20])
def test_changes_touch_exactly_the_reported_courses(percent: int) -> None:
    base = make_school("S", 6).timetable
    follow = make_school("S", 6, changes=percent)
    before = {c.key: _signature(base, c) for c in derive_courses(base)}
    after = {c.key: _signature(follow.timetable, c) for c in derive_courses(follow.timetable)}
    assert set(before) == set(after)
    changed = sorted(k for k in before if before[k] != after[k])
    assert changed == follow.changed_courses
    assert len(changed) == round(len(before) * percent / 100)


def test_command_line_writes_files_that_parse(tmp_path: Path) -> None:
    env_python = sys.executable
    keys = tmp_path / "keys"
    run = lambda *args: subprocess.run(  # noqa: E731
        [env_python, "-m", "tests.factory", *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    run("keypair", "-o", str(keys))
    out = tmp_path / "EDT_2014_1730793612486.zip"
    summary = json.loads(run("school", "--size", "S", "--seed", "3", "--encrypt", "--public-key",
                             str(keys / "public.pem"), "--partner", PARTNER, "--zip", "--changes", "10",
                             "--uai", "0490856p", "-o", str(out)).stdout)  # fmt: skip
    assert summary["uai"] == "0490856P"
    changes = json.loads(out.with_name(out.name + ".changes.json").read_text())
    assert changes["changed_courses"] == make_school("S", 3, uai="0490856P", changes=10).changed_courses
    result = parse_export(out, partner_name=PARTNER, private_key=(keys / "private.pem").read_bytes(),
                          expected_uais=["0490856P"])  # fmt: skip
    assert result.ok, result.errors
    assert result.timetable == make_school("S", 3, uai="0490856P", changes=10).timetable
    bad = json.loads(run("bad-files", "-o", str(tmp_path / "bad")).stdout)
    assert bad["cases"] >= 20
