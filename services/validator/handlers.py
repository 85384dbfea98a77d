"""validator handlers: stage command in → parse the deposited file in a worker process → one transaction
(the report, via StageWorker) → the canonical timetable's hash travels on to the next stage."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from services.validator import domain
from services.validator.store import reports
from shared.blobs import BlobStore
from shared.messages import Mode, StageCommand, utcnow
from shared.messages import Stage as StageName
from shared.settings import Settings
from shared.stage import StageResult, UnitOfWork
from shared.timetable import derive_closure_weeks, derive_courses, dumps


def validate_file(path: str, blob_dir: str, partner_name: str, private_key: bytes | None,
                  accepted: domain.AcceptedSoftware, expected_uais: list[str]) -> dict[str, Any]:
    """Runs in a worker process: parse and check the file, store the canonical model (and one part per
    establishment of a cité scolaire file) in the blob store, and return only small results."""
    result = domain.parse_export(Path(path), partner_name=partner_name, private_key=private_key,
                                 accepted=accepted, expected_uais=expected_uais)
    out: dict[str, Any] = {
        "errors": [domain.problem_view(p) for p in result.errors],
        "warnings": [domain.problem_view(p) for p in result.warnings],
        "meta": dataclasses.asdict(result.meta),
        "timetable_sha256": None, "parts": {}, "counts": {},
    }
    tt = result.timetable
    if not result.ok or tt is None:
        return out
    blobs = BlobStore(Path(blob_dir))
    out["timetable_sha256"] = blobs.put_bytes(dumps(tt))[0]
    if len(tt.establishments) > 1:
        out["parts"] = {uai: blobs.put_bytes(dumps(part))[0]
                        for uai, part in domain.split_by_establishment(tt).items()}
    out["counts"] = {"subjects": len(tt.subjects), "teachers": len(tt.teachers), "staff": len(tt.staff),
                     "classes": len(tt.classes), "groups": len(tt.groups), "students": len(tt.students),
                     "rooms": len(tt.rooms), "slots": len(tt.slots), "courses": len(derive_courses(tt)),
                     "closure_periods": len(derive_closure_weeks(tt))}
    return out


def ignore_interrupts() -> None:
    """Initializer of a worker process: Ctrl-C in a terminal reaches the whole process group, and the
    service (the parent) is the one that stops its workers, quietly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def warm() -> None:
    """Runs in a new worker process: load the parser and its libraries before the first file comes."""
    from services.validator.format import parse  # noqa: F401 - the import is the work


def accepted_software(settings: Settings) -> domain.AcceptedSoftware:
    products = frozenset(p.strip().upper() for p in settings.accepted_products.split(",") if p.strip())
    return domain.AcceptedSoftware(products=products, min_year=settings.accepted_min_year)


class ValidatorStage:
    """The validation stage: parse and check the deposited file in a worker process, record the report."""

    name = StageName.VALIDATION

    def __init__(self, blobs: BlobStore, settings: Settings) -> None:
        self.blobs = blobs
        self.settings = settings
        key_file = settings.private_key_file
        self.private_key = key_file.read_bytes() if key_file and key_file.exists() else None
        self.accepted = accepted_software(settings)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        # A separate process: parsing an XL export is CPU work that must not stall this service's loop.
        # "spawn", not fork: this process runs threads (WebDAV, aiosqlite) that fork would copy mid-state.
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.settings.parse_workers,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=ignore_interrupts)
        return self._pool

    async def warm_up(self) -> None:
        """Start the worker process now: spawning it and importing the parser costs ~0.4 s, which the
        first import would otherwise pay."""
        await asyncio.get_running_loop().run_in_executor(self._executor(), warm)

    async def prepare(self, cmd: StageCommand) -> dict[str, Any] | None:
        if cmd.mode is Mode.UNDO:
            return None  # no file: see domain.restoration
        path = self.blobs.path(cmd.file.sha256)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor(), validate_file, str(path), str(self.blobs.root),
                                              self.settings.partner_name, self.private_key, self.accepted,
                                              sorted(cmd.establishments.values()))
        except BrokenProcessPool:
            # The worker died (killed, out of memory): a new one serves the retry and later imports.
            self.close()
            raise

    async def apply(self, uow: UnitOfWork, cmd: StageCommand, found: dict[str, Any] | None) -> StageResult:
        if found is None:
            return domain.restoration(cmd)
        result = domain.decide(cmd, found)
        await uow.conn.execute(reports.insert().values(
            import_id=cmd.import_id, site=cmd.site, ok=not found["errors"],
            problems=found["errors"] + found["warnings"],
            meta=found["meta"], counts=found["counts"], timetable_sha256=found["timetable_sha256"],
            timetables=result.artifacts.get("timetables", {}), created_at=utcnow()))
        return result

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
