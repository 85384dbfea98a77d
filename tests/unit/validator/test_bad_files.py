"""Each bad file of the corpus is rejected with its own problem code, and never crashes the parser."""

from __future__ import annotations

import pytest

from services.validator.domain import MESSAGES, parse_export
from tests.factory.bad_files import CASES, BadCase, CorpusContext, parse_kwargs


def test_the_corpus_has_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20
    assert len({name for name, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize("name", [name for name, *_ in CASES])
def test_bad_file_is_rejected_with_its_code(name: str, corpus: dict[str, BadCase], corpus_ctx: CorpusContext) -> None:
    case = corpus[name]
    result = parse_export(case.path, **parse_kwargs(case, corpus_ctx))
    assert result.timetable is None
    assert result.errors, f"{name}: accepted"
    assert result.errors[0].code in case.codes, f"{name}: {[(e.code, e.message_en) for e in result.errors]}"
    for problem in result.errors:
        assert problem.code in MESSAGES
        assert problem.message_fr and problem.message_en
        assert "{" not in problem.message_fr + problem.message_en


def test_every_error_code_has_both_messages() -> None:
    for code, (fr, en) in MESSAGES.items():
        assert code == code.lower() and " " not in code
        assert fr and en and fr != en
