"""The real-export tier (`make test-real`): real files written by Index Education software, taken from public
repositories. They are third-party files and are not in the repository (tests/fixtures/real/README.md lists
them with their provenance and checksums); this tier fails — never skips — when they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factory.real import CORPUS, SCHEMAS, RealFile, corpus_dir, sha256_of


@pytest.fixture(scope="session")
def corpus() -> Path:
    root = corpus_dir()
    missing = [f.path for f in CORPUS if not (root / f.path).is_file()] + [
        p for p in SCHEMAS.values() if not (root / p).is_file()]
    if missing:
        pytest.fail(f"real exports missing under {root} (set EDT_REAL_CORPUS; tests/fixtures/real/README.md says "
                    f"where each comes from): {', '.join(missing)}", pytrace=False)
    return root


def check_provenance(root: Path, real: RealFile) -> Path:
    path = root / real.path
    assert sha256_of(path) == real.sha256, f"{real.path} is not the file the README lists"
    return path
