"""validator handlers: stage command in → parse the deposited file in a worker process → one transaction
(report + events, via StageWorker) → the canonical timetable's hash travels on to the next stage."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.validator import domain
from services.validator.store import reports
from shared.blobs import BlobStore
from shared.bus import StageResult
from shared.messages import ImportStatus, StageCommand, StepStatus, utcnow
from shared.settings import Settings
from shared.timetable import derive_closure_weeks, derive_courses, dumps
from shared.web import Runtime

MAX_LISTED = 3  # problems quoted in the step's message; all are in the alerts


def problem_view(p: domain.Problem, severity: str) -> dict[str, Any]:
    return {"code": p.code, "severity": severity, "message": p.message_fr, "message_en": p.message_en,
            "detail": {k: (list(v) if isinstance(v, set | tuple) else v) for k, v in p.detail.items()}}


def validate_file(path: str, blob_dir: str, partner_name: str, private_key: bytes | None,
                  accepted: domain.AcceptedSoftware, expected_uais: list[str]) -> dict[str, Any]:
    """Runs in a worker process: parse and check the file, store the canonical model (and one part per
    establishment of a cité scolaire file) in the blob store, and return only small results."""
    result = domain.parse_export(Path(path), partner_name=partner_name, private_key=private_key,
                                 accepted=accepted, expected_uais=expected_uais)
    out: dict[str, Any] = {
        "errors": [problem_view(p, "error") for p in result.errors],
        "warnings": [problem_view(p, "warning") for p in result.warnings],
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


def summary(problems: list[dict[str, Any]], lang: str) -> str:
    key = "message" if lang == "fr" else "message_en"
    listed = " ".join(p[key] for p in problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    if more > 0:
        listed += f" (+{more} autre(s))" if lang == "fr" else f" (+{more} more)"
    return listed


def decide(cmd: StageCommand, found: dict[str, Any]) -> StageResult:
    """Rejected with every reason when anything is wrong; warnings ride along as alerts."""
    errors, warnings = found["errors"], found["warnings"]
    alerts = errors + warnings
    if errors:
        return StageResult(StepStatus.ERROR, outcome=ImportStatus.REJECTED,
                           message="Fichier refusé : " + summary(errors, "fr"),
                           message_en="File rejected: " + summary(errors, "en"), alerts=alerts,
                           counts={"errors": len(errors), "warnings": len(warnings)})
    by_uai = {uai.upper(): est for est, uai in cmd.establishments.items()}
    parts = {by_uai[uai]: sha for uai, sha in found["parts"].items() if uai in by_uai}
    meta = found["meta"]
    if not parts:  # a one-establishment file (maybe deposited on the site URL, encrypted)
        owner = cmd.establishment or by_uai.get((meta.get("uai") or "").upper())
        parts = {owner: found["timetable_sha256"]} if owner else {}
    return StageResult(
        StepStatus.WARNING if warnings else StepStatus.OK,
        message=(f"{len(warnings)} avertissement(s) : " + summary(warnings, "fr")) if warnings else None,
        message_en=(f"{len(warnings)} warning(s): " + summary(warnings, "en")) if warnings else None,
        alerts=alerts, counts={**found["counts"], "warnings": len(warnings)},
        artifacts={"timetable_sha256": found["timetable_sha256"], "timetables": parts,
                   "software": meta.get("software"), "encrypted": meta.get("encrypted")})


def accepted_software(settings: Settings) -> domain.AcceptedSoftware:
    products = frozenset(p.strip().upper() for p in settings.accepted_products.split(",") if p.strip())
    return domain.AcceptedSoftware(products=products, min_year=settings.accepted_min_year)


def build_handlers(rt: Runtime) -> dict[str, Any]:
    settings = rt.settings
    key_file = settings.private_key_file
    private_key = key_file.read_bytes() if key_file and key_file.exists() else None
    accepted = accepted_software(settings)
    pool: list[ProcessPoolExecutor] = []

    def executor() -> ProcessPoolExecutor:
        # A separate process: parsing an XL export is CPU work that must not stall this service's loop.
        # "spawn", not fork: this process runs threads (WebDAV, aiosqlite) that fork would copy mid-state.
        if not pool:
            pool.append(ProcessPoolExecutor(settings.parse_workers, mp_context=multiprocessing.get_context("spawn")))
        return pool[0]

    async def prepare(cmd: StageCommand) -> dict[str, Any]:
        path = rt.blobs.path(cmd.file.sha256)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor(), validate_file, str(path), str(rt.blobs.root),
                                              settings.partner_name, private_key, accepted,
                                              sorted(cmd.establishments.values()))
        except BrokenProcessPool:
            # The worker died (killed, out of memory): a new one serves the retry and later imports.
            pool.pop().shutdown(wait=False, cancel_futures=True)
            raise

    async def apply(conn: AsyncConnection, cmd: StageCommand, found: dict[str, Any]) -> StageResult:
        result = decide(cmd, found)
        await conn.execute(reports.insert().values(
            import_id=cmd.import_id, site=cmd.site, ok=not found["errors"],
            problems=found["errors"] + found["warnings"],
            meta=found["meta"], counts=found["counts"], timetable_sha256=found["timetable_sha256"],
            timetables=result.artifacts.get("timetables", {}), created_at=utcnow()))
        return result

    def close() -> None:
        for p in pool:
            p.shutdown(wait=False, cancel_futures=True)

    return {"prepare": prepare, "apply": apply, "close": close}
