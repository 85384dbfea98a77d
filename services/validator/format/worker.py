"""What runs in the validator's worker processes: parse and check one deposited file, store its canonical
model. Imports only the format package, the blob store and the timetable model, so that a new worker is
ready in a fraction of a second (the service's own modules load the web and database stacks)."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from services.validator.format.context import AcceptedSoftware
from services.validator.format.parse import parse_export
from services.validator.format.problems import problem_view
from services.validator.format.split import split_by_establishment
from shared.blobs import BlobStore, Keyring
from shared.timetable import derive_closure_weeks, derive_courses, dumps


def validate_file(sha256: str, blob_dir: str, keyring: Keyring, partner_name: str, private_key: bytes | None,
                  accepted: AcceptedSoftware, expected_uais: list[str]) -> dict[str, Any]:
    """Runs in a worker process: parse and check the deposited file (opened from its sealed blob, in memory
    only), store the canonical model (and one part per establishment of a cité scolaire file) sealed in the
    blob store, and return only small results."""
    blobs = BlobStore(Path(blob_dir), keyring)
    try:
        source: Path | BinaryIO = blobs.open(sha256)
    except OSError:
        source = blobs.path(sha256)  # reported as unreadable by the parser, like any file it cannot open
    result = parse_export(source, partner_name=partner_name, private_key=private_key,
                                 accepted=accepted, expected_uais=expected_uais)
    out: dict[str, Any] = {
        "errors": [problem_view(p) for p in result.errors],
        "warnings": [problem_view(p) for p in result.warnings],
        "meta": dataclasses.asdict(result.meta),
        "timetable_sha256": None, "parts": {}, "counts": {},
    }
    tt = result.timetable
    if not result.ok or tt is None:
        return out
    out["timetable_sha256"] = blobs.put_bytes(dumps(tt))[0]
    if len(tt.establishments) > 1:
        out["parts"] = {uai: blobs.put_bytes(dumps(part))[0]
                        for uai, part in split_by_establishment(tt).items()}
    out["counts"] = {"subjects": len(tt.subjects), "teachers": len(tt.teachers), "staff": len(tt.staff),
                     "classes": len(tt.classes), "groups": len(tt.groups), "students": len(tt.students),
                     "rooms": len(tt.rooms), "slots": len(tt.slots), "courses": len(derive_courses(tt)),
                     "closure_periods": len(derive_closure_weeks(tt))}
    return out


PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies
ORPHAN_CHECK_S = 1.0


def worker_init(parent: int) -> None:
    """Initializer of a worker process. Ctrl-C in a terminal reaches the whole process group, and the
    service (the parent) is the one that stops its workers, quietly. A worker dies with its parent, however
    that one ends (kill -9, out of memory): the kernel's parent-death signal where there is one, and a
    thread watching the parent's pid whatever the platform (the death signal follows the parent *thread*
    that spawned the worker, and can be missed when the parent died before it was set)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    threading.Thread(target=_die_with, args=(parent,), name="orphan-watchdog", daemon=True).start()


def _die_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_S)
    os._exit(1)  # orphaned: nothing of this process is worth finishing


def warm() -> None:
    """Runs in a new worker process: its first task, so that the process exists (and has loaded this module,
    the parser with it) before the first file comes."""
