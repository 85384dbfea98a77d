"""The validation severity policy, one test per row (services/validator/format/problems.py, docs/validation.md):
every code has a file that triggers it; an error rejects the file with that code, a warning lets it through
with its effect; and the docs table lists exactly the codes of the code's table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.validator.domain import parse_export
from services.validator.format.problems import POLICY, REJECTED, Severity
from shared.timetable import derive_courses
from tests.factory.bad_files import CASES, TOLERATED, BadCase, CorpusContext, build_corpus, parse_kwargs

ROOT = Path(__file__).resolve().parents[3]
BY_CODE: dict[str, str] = {}
for name, code, *_ in CASES + TOLERATED:
    BY_CODE.setdefault(code, name)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, corpus_ctx: CorpusContext) -> dict[str, BadCase]:
    directory = tmp_path_factory.mktemp("policy")
    built = build_corpus(directory / "bad", corpus_ctx) + build_corpus(directory / "ok", corpus_ctx, cases=TOLERATED)
    return {c.name: c for c in built}


def test_every_policy_row_has_a_file() -> None:
    assert sorted(set(POLICY) - set(BY_CODE)) == []


@pytest.mark.parametrize("code", sorted(POLICY))
def test_policy_row(code: str, cases: dict[str, BadCase], corpus_ctx: CorpusContext) -> None:
    rule = POLICY[code]
    case = cases[BY_CODE[code]]
    result = parse_export(case.path, **parse_kwargs(case, corpus_ctx))
    if rule.severity is Severity.ERROR:
        assert rule.effect == REJECTED
        assert result.timetable is None and code in {p.code for p in result.errors}, (code, result.codes())
    else:
        assert result.ok, (code, [(p.code, p.message_en) for p in result.errors])
        assert code in {p.code for p in result.warnings}, (code, [p.code for p in result.warnings])
        assert derive_courses(result.timetable), "a tolerated file still yields courses"
    for problem in result.errors + result.warnings:
        assert "{" not in problem.message_fr + problem.message_en, problem


def test_dangling_reference_drops_the_reference_and_keeps_the_rest(cases: dict[str, BadCase],
                                                                     corpus_ctx: CorpusContext) -> None:
    case = cases["dangling_part.xml"]
    tt = parse_export(case.path, **parse_kwargs(case, corpus_ctx)).timetable
    assert tt is not None
    known_parts = {p for c in tt.classes.values() for p in c.parts}
    assert all(m.ident in known_parts for s in tt.students.values() for m in s.parts)
    assert len(tt.students) == len(corpus_ctx.school.timetable.students)  # nobody lost


def test_duplicate_ident_keeps_the_first(cases: dict[str, BadCase], corpus_ctx: CorpusContext) -> None:
    case = cases["duplicate_ident.xml"]
    tt = parse_export(case.path, **parse_kwargs(case, corpus_ctx)).timetable
    assert tt is not None and not any(s.label.startswith("DOUBLON") for s in tt.subjects.values())


def test_slot_ignored_effects_remove_exactly_one_slot(cases: dict[str, BadCase], corpus_ctx: CorpusContext) -> None:
    total = len(corpus_ctx.school.timetable.slots)
    for name in ("subject_unknown.xml", "without_subject.xml", "slot_incomplete.xml", "out_of_grid.xml"):
        case = cases[name]
        tt = parse_export(case.path, **parse_kwargs(case, corpus_ctx)).timetable
        assert tt is not None and len(tt.slots) == total - 1, name


def test_impossible_date_is_ignored_not_guessed(cases: dict[str, BadCase], corpus_ctx: CorpusContext) -> None:
    case = cases["impossible_birth_date.xml"]
    tt = parse_export(case.path, **parse_kwargs(case, corpus_ctx)).timetable
    assert tt is not None
    first = next(iter(tt.students.values()))
    assert first.birth_date is None


def test_docs_table_lists_every_code_with_its_severity_and_effect() -> None:
    text = (ROOT / "docs" / "validation.md").read_text(encoding="utf-8")
    rows = dict((m.group(1), (m.group(2), m.group(3).strip()))
                for m in re.finditer(r"^\| `([a-z0-9_]+)` \| (error|warning) \| ([^|]+)\|", text, re.M))
    assert sorted(rows) == sorted(POLICY)
    for code, rule in POLICY.items():
        assert rows[code] == (rule.severity.value, rule.effect), code
