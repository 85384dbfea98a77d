"""Schemathesis' examples and fuzzing phases over every operation (tests/integration/api/test_schemathesis.py
runs the coverage phase; apart, so that xdist runs them side by side)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.api.test_schemathesis import schemathesis_run
from tests.integration.conftest import Stack

pytestmark = [pytest.mark.long]


def test_every_operation_passes_schemathesis_examples_and_fuzzing(sqlite_stack: Stack, tmp_path: Path) -> None:
    schemathesis_run(sqlite_stack, tmp_path, "examples,fuzzing", 100)
