"""`make bench`: every benchmark, each printing its figures beside its floor/twin measured in the same run,
with PASS/FAIL against its target; the exit status is non-zero when any target is missed."""

from __future__ import annotations

import subprocess
import sys

BENCHES = [
    [sys.executable, "-m", "tests.bench.pipeline", "--runs", "5", "--distributed"],
    [sys.executable, "-m", "tests.bench.reconcile"],
    [sys.executable, "-m", "tests.bench.parse"],
    [sys.executable, "-m", "tests.bench.sessions"],
    [sys.executable, "-m", "tests.bench.api"],
]

if __name__ == "__main__":
    failed = 0
    for cmd in BENCHES:
        print(f"\n=== {' '.join(cmd[1:])}", flush=True)
        failed |= subprocess.run(cmd).returncode
    sys.exit(failed)
