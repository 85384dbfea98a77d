"""The REST API against its own OpenAPI: schemathesis' stateless checks (examples, coverage and fuzzing
phases; every check: no server error, every status and content type documented, responses valid against
their schema, valid requests accepted and invalid ones refused, auth enforced, `Allow` on 405…) over every
operation of the embedded app, with the admin token, bounded in examples and time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Stack

pytestmark = [pytest.mark.long]

MAX_EXAMPLES = int(os.environ.get("EDT_SCHEMATHESIS_EXAMPLES", "3"))
SEED = os.environ.get("EDT_SCHEMATHESIS_SEED", "20261201")  # fixed: the same cases on every run
TIMEOUT_S = 240


def schemathesis_run(stack: Stack, tmp_path: Path, phases: str, min_cases: int) -> None:
    """Schemathesis' `phases` over every operation; each phase runs in its own test (and xdist worker)."""
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.api.schemathesis_hooks", "NO_COLOR": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{stack.url}/openapi.json",
           "--header", f"Authorization: Bearer {stack.settings.admin_token}",
           "--checks", "all", "--phases", phases, "--max-examples", str(MAX_EXAMPLES),
           # One worker: the server shares the machine's two cores, and schemathesis' coverage phase is not
           # reliable in several threads on Python 3.11 (AST recursion errors).
           "--seed", SEED, "--workers", "1", "--request-timeout", "10", "--generation-database", "none",
           "--no-color"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=tmp_path)
    out = run.stdout + run.stderr
    summary = out[out.rfind("SUMMARY"):] if "SUMMARY" in out else out[-4000:]
    print(summary)  # the figures: operations, test cases, failures
    assert run.returncode == 0, out[-30000:]
    tested = re.search(r"Tested: (\d+)", summary)
    assert tested and int(tested.group(1)) >= 40, summary  # every operation of the API ran
    cases = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert cases and int(cases.group(1)) == int(cases.group(2)) > min_cases, summary


def test_every_operation_passes_schemathesis_coverage_phase(sqlite_stack: Stack, tmp_path: Path) -> None:
    """Boundary and invalid values of every parameter and body (the coverage phase)."""
    schemathesis_run(sqlite_stack, tmp_path, "coverage", 500)
