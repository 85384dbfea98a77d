"""Fixtures for the validator's pure parsing tests: a test key pair made at test time, never committed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factory import make_keypair
from tests.factory.bad_files import BadCase, CorpusContext, build_corpus

PARTNER = "EDT-IMPORT"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: large (L/XL) schools, a few seconds")


@pytest.fixture(scope="session")
def keypair() -> tuple[bytes, bytes]:
    return make_keypair()


@pytest.fixture(scope="session")
def corpus_ctx() -> CorpusContext:
    return CorpusContext.create()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, corpus_ctx: CorpusContext) -> dict[str, BadCase]:
    directory: Path = tmp_path_factory.mktemp("bad-files")
    return {c.name: c for c in build_corpus(directory, corpus_ctx)}
