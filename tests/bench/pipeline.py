"""Deposit → done latency in both run modes, measured side by side in one run.

    python -m tests.bench.pipeline [--runs 10]

Each run deposits a distinct file with `curl -T` (WebDAV, Basic auth) and polls the history API until
the import is `done`; figures are wall-clock milliseconds per deposit (min / median / max). The embedded
mode is the all-in-one process on SQLite + the in-process bus; the distributed mode is six service
processes on PostgreSQL + RabbitMQ behind nginx (tests/e2e/conftest.py's cluster).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.harness import Api, database, sample_xml

SITE, EST, UAI = "4817", "1754", "0490856P"


@contextmanager
def embedded(tmp: Path) -> Iterator[Api]:
    from tests.integration.conftest import start_stack

    with database("sqlite", tmp) as url:
        stacks = start_stack(tmp, url)
        stack = next(stacks)
        yield stack.api
        stacks.close()


@contextmanager
def distributed(tmp: Path) -> Iterator[Api]:
    from tests.e2e.conftest import start_cluster

    with start_cluster(tmp) as e2e:
        yield Api(e2e.base_url, e2e.admin_token)


def measure(api: Api, tmp: Path, runs: int) -> list[float]:
    api.create_site(SITE, {EST: UAI})
    api.first_import(SITE, EST, sample_xml(UAI, marker="first"))
    account = api.create_account(SITE)
    times = []
    for i in range(runs + 1):  # the first is a warm-up
        path = tmp / f"EDT_{i}.xml"
        path.write_bytes(sample_xml(UAI, marker=f"bench-{i}"))
        known = {h["id"] for h in api.history(SITE)}
        start = time.perf_counter()
        subprocess.run(["curl", "-sf", "-o", "/dev/null", "-u", f"{account['login']}:{account['password']}",
                        "-T", str(path), f"{api.base_url}/webdav/{SITE}/{EST}/"], check=True)
        new = [h for h in api.history(SITE) if h["id"] not in known]
        while not new:
            new = [h for h in api.history(SITE) if h["id"] not in known]
        done = api.wait(new[0]["id"])
        elapsed = (time.perf_counter() - start) * 1000
        assert done["status"] == "done", done
        if i:
            times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    for name, mode in (("embedded", embedded), ("distributed", distributed)):
        with tempfile.TemporaryDirectory() as tmp, mode(Path(tmp)) as api:
            results[name] = measure(api, Path(tmp), args.runs)
    print(f"\ndeposit → done over WebDAV ({args.runs} runs each, ms)")
    print(f"{'mode':<12} {'min':>8} {'median':>8} {'max':>8}")
    for name, times in results.items():
        print(f"{name:<12} {min(times):8.0f} {statistics.median(times):8.0f} {max(times):8.0f}")
    ratio = statistics.median(results["distributed"]) / statistics.median(results["embedded"])
    print(f"distributed / embedded median ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
