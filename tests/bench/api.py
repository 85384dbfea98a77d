"""The API a front-end can trust, in figures (embedded mode, SQLite and PostgreSQL, real server):

- 202 → readable: each REST upload is answered once its import is recorded; the time of that answer, and of
  the first `GET /imports/{id}` after it (which must be a 200, never a 404);
- an L school's class feed through its subscription URL: first fetch after the import, cached, 304;
- undo of an L school's last import: POST → `done`, beside a plain L re-import measured in the same run.

    python -m tests.bench.api [--databases sqlite,postgres] [--uploads 10]

Targets: 202 → readable 0 misses; a class feed of an L school < 100 ms (first fetch and cached); an undo
of an L school no slower than 2 × the re-import it undoes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.factory import make_school
from tests.harness import Api, database, sample_xml
from tests.integration.conftest import Stack, start_stack

SITE, EST, UAI = "4817", "1754", "0490856P"


@contextmanager
def embedded(kind: str) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory() as tmp, database(kind, Path(tmp)) as url:
        stacks = start_stack(Path(tmp), url, EDT_MAX_UPLOAD_MB="100")
        try:
            yield next(stacks)
        finally:
            stacks.close()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def read_your_writes(api: Api, uploads: int) -> tuple[list[float], list[float], int]:
    answered, readable, misses = [], [], 0
    with httpx.Client(base_url=api.base_url, timeout=60, trust_env=False,
                      headers={"Authorization": f"Bearer {api.admin_token}"}) as client:
        for n in range(uploads):
            started = time.perf_counter()
            r = client.post(f"/api/v1/sites/{SITE}/establishments/{EST}/imports",
                            files={"file": ("EDT.xml", sample_xml(UAI, marker=f"ryw-{n}"), "application/xml")},
                            data={"mode": "manual"})
            got = time.perf_counter()
            assert r.status_code == 202, r.text
            first = client.get(r.headers["location"])
            misses += first.status_code != 200
            answered.append(got - started)
            readable.append(time.perf_counter() - got)
            api.wait(r.json()["import_id"], timeout=120)
    return answered, readable, misses


def feed(api: Api, classes: list[str]) -> dict[str, float]:
    sub = api.ok("POST", f"/sites/{SITE}/establishments/{EST}/calendar/class/{classes[0]}/subscription")
    with httpx.Client(timeout=60, trust_env=False) as app:
        app.get(sub["url"].replace(f"/class/{classes[0]}.", f"/class/{classes[1]}."))  # warms the connection
        t = time.perf_counter()
        first = app.get(sub["url"])
        cold = time.perf_counter() - t
        warm = []
        for _ in range(20):
            t = time.perf_counter()
            app.get(sub["url"])
            warm.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert app.get(sub["url"], headers={"If-None-Match": first.headers["etag"]}).status_code == 304
        revalidated = time.perf_counter() - t
    return {"first": cold, "cached": statistics.median(warm), "304": revalidated,
            "events": float(first.content.count(b"BEGIN:VEVENT"))}


def run(kind: str, uploads: int) -> bool:
    ok = True
    with embedded(kind) as stack:
        api = stack.api
        api.create_site(SITE, {EST: UAI})
        answered, readable, misses = read_your_writes(api, uploads)
        print(f"[{kind}] 202 → readable over {uploads} uploads: answered p50 {ms(statistics.median(answered))} "
              f"(max {ms(max(answered))}), first GET after the 202 p50 {ms(statistics.median(readable))}, "
              f"{misses} not readable — {'PASS' if misses == 0 else 'FAIL'}", flush=True)
        ok &= misses == 0

        school = make_school("L", 1, uai=UAI)
        t = time.perf_counter()
        first = api.wait(api.upload(SITE, EST, school.to_xml_bytes()), {"done"}, timeout=600)
        first_s = time.perf_counter() - t
        figures = feed(api, sorted(school.timetable.classes))
        passed = figures["first"] < 0.1 and figures["cached"] < 0.1
        print(f"[{kind}] L school class feed ({int(figures['events'])} sessions): first fetch {ms(figures['first'])}, "
              f"cached p50 {ms(figures['cached'])}, 304 {ms(figures['304'])} (target < 100 ms) — "
              f"{'PASS' if passed else 'FAIL'}", flush=True)
        ok &= passed

        follow = make_school("L", 1, uai=UAI, changes=10)
        t = time.perf_counter()
        second = api.wait(api.upload(SITE, EST, follow.to_xml_bytes()), {"done"}, timeout=600)
        reimport_s = time.perf_counter() - t
        t = time.perf_counter()
        undo_id = api.ok("POST", f"/imports/{second['id']}/undo")["import_id"]
        undone = api.wait(undo_id, {"done", "failed"}, timeout=600)
        undo_s = time.perf_counter() - t
        assert undone["status"] == "done", undone
        stages = {s["stage"]: s for s in undone["steps"]}
        del first
        passed = undo_s <= 2 * reimport_s
        print(f"[{kind}] L school: first import {first_s:.2f} s, 10 % re-import {reimport_s:.2f} s, its undo "
              f"{undo_s:.2f} s (POST → done; " + ", ".join(
                  f"{name} {stage['started_at'][11:23]}→{stage['ended_at'][11:23]}" for name, stage in stages.items()
                  if stage["started_at"] and stage["ended_at"] and name != "deposit")
              + f") — {'PASS' if passed else 'FAIL'} (≤ 2 × the re-import)", flush=True)
        ok &= passed
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.api")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--uploads", type=int, default=10)
    args = parser.parse_args()
    ok = True
    for kind in args.databases.split(","):
        ok &= run(kind.strip(), args.uploads)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
