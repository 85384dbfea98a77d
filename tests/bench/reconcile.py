"""Reconciliation at real size: a school's people against its ENT directory, beside the cost of reading it.

    python -m tests.bench.reconcile [--repeat 5]

For the L school (2,000 students) and the XL cité scolaire (3,500), the ENT directory holds the school's own
students, teachers and staff (2 % missing) plus unrelated persons up to 6,000 entries, with IdPN
associations for half of the people present. `reconcile` = decoding the stored snapshot (JSON) + building
its indexes + matching every teacher, student, class and group of the file — what the threshold and
group-creation stages do for a new directory; `floor` = decoding the same snapshot alone (json.loads).
Targets: L < 0.2 s, XL < 0.4 s (best of --repeat, each on freshly decoded objects).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from datetime import date

from shared.reconcile import Directory, DirectoryPerson, DirectoryUnit, reconcile
from tests.factory import make_school
from tests.factory.directory import make_directory

TARGETS = {"L": 0.2, "XL": 0.4}
DIRECTORY_SIZE = 6000


def snapshot_of(tt: object) -> tuple[bytes, int]:
    people = len(tt.students) + len(tt.teachers) + len(tt.staff)  # type: ignore[attr-defined]
    d = make_directory(tt, unrelated=max(3000, DIRECTORY_SIZE - people))  # type: ignore[arg-type]
    directory = Directory(
        tuple(DirectoryPerson(p["id"], p["kind"], p["last_name"], p["first_name"],
                              date.fromisoformat(p["birth_date"]) if p.get("birth_date") else None)
              for p in d.body["persons"]),
        tuple(DirectoryUnit(c["id"], c["name"]) for c in d.body["classes"]),
        tuple(DirectoryUnit(g["id"], g["name"]) for g in d.body["groups"]),
        {a["pronote_id"]: a["ent_id"] for a in d.associations})
    return directory.to_json(), d.size


def best(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print("\nreconciliation: the school's people against its ENT directory (seconds, best of "
          f"{args.repeat})")
    print(f"{'size':<5} {'people':>6} {'directory':>9} {'floor':>7} {'reconcile':>9} {'matched':>8}  verdict")
    ok = True
    for size, target in TARGETS.items():
        tt = make_school(size, 1).timetable
        data, entries = snapshot_of(tt)
        floor = best(lambda data=data: json.loads(data), args.repeat)
        result = reconcile(tt, Directory.from_json(data))
        seconds = best(lambda data=data, tt=tt: reconcile(tt, Directory.from_json(data)), args.repeat)
        matched = sum(len(r.matched) for r in result.values())
        people = len(tt.students) + len(tt.teachers)
        passed = seconds < target
        ok &= passed
        print(f"{size:<5} {people:>6} {entries:>9} {floor:>7.3f} {seconds:>9.3f} {matched:>8}  "
              f"{'PASS' if passed else 'FAIL'} (< {target} s)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
