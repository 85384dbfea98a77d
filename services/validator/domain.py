"""Validator rules: parse an Index Education export into the canonical timetable, and check it.

Pure: a path and settings in, `ParseResult` (model, errors, warnings, meta) out; no database, no bus.
Design.md §7 (validation), §8 and §8a (format, encryption). The format lives in `services.validator.format`
(safe streaming, zip, encrypted container, the clear parser, the checks, the cité scolaire split); every
problem has its own stable code, severity and effect (`format.problems.POLICY`): errors reject the import,
warnings are what real files carry and the import goes on.

Safety: the file is never trusted. Sizes are capped before reading (input, zip members, ratio,
decompressed content, XML depth, element count); XML is streamed with lxml iterparse without DTD,
entity resolution or network, and elements are cleared as soon as they are read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.validator.format.checks import dangling_references
from services.validator.format.clear import parse_time_label
from services.validator.format.container import decrypt_content, parse_software
from services.validator.format.context import AcceptedSoftware, Limits, ParseMeta, ParseResult
from services.validator.format.parse import parse_export
from services.validator.format.problems import MESSAGES, Problem, make_problem, problem_view
from services.validator.format.split import split_by_establishment
from shared.messages import FileIdent, ImportStatus, StageCommand, StepStatus
from shared.stage import StageResult
from shared.timetable import Timetable

__all__ = [
    "MESSAGES",
    "AcceptedSoftware",
    "Limits",
    "ParseMeta",
    "ParseResult",
    "Problem",
    "dangling_references",
    "decide",
    "expired_models",
    "decrypt_content",
    "make_problem",
    "parse_export",
    "parse_software",
    "parse_time_label",
    "problem_view",
    "restoration",
    "split_by_establishment",
]


# ------------------------------------------------------------------------------- the stage's decision

MAX_LISTED = 3  # problems quoted in the step's message; all are in the alerts


def summary(problems: list[dict[str, Any]], lang: str) -> str:
    key = "message" if lang == "fr" else "message_en"
    listed = " ".join(p[key] for p in problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    if more > 0:
        listed += f" (+{more} autre(s))" if lang == "fr" else f" (+{more} more)"
    return listed


def restoration(cmd: StageCommand) -> StageResult:
    """An undo import brings no file: it restores canonical models validated when they were deposited
    (threshold control picks them), so there is nothing to check here."""
    return StageResult(StepStatus.OK, counts={"undo_of": cmd.artifacts.get("undo_of")})


def decide(cmd: StageCommand, found: dict[str, Any]) -> StageResult:
    """Rejected with every reason when anything is wrong; warnings ride along as alerts. `found` is what
    the worker process reported (`handlers.validate_file`)."""
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


# ----------------------------------------------------------------------------------------- retention


@dataclass(frozen=True)
class KeptModels:
    """One import's canonical models still in the blob store: the whole file's and each establishment's."""

    import_id: str
    site: str
    status: str | None  # how the import ended (None: not yet)
    ended_at: datetime | None
    full: str
    parts: Mapping[str, str] = field(default_factory=dict)  # establishment → sha256

    @property
    def shas(self) -> set[str]:
        return {self.full, *self.parts.values()}


def baselines(kept: Iterable[KeptModels]) -> set[str]:
    """The model each establishment's next import is compared with (threshold control's baseline): the part
    of its latest integrated import. Never purged while it is one."""
    latest: dict[tuple[str, str], tuple[datetime, str]] = {}
    for k in kept:
        if k.status != ImportStatus.DONE.value or k.ended_at is None:
            continue
        for est, sha in k.parts.items():
            if (k.site, est) not in latest or latest[(k.site, est)][0] < k.ended_at:
                latest[(k.site, est)] = (k.ended_at, sha)
    return {sha for _, sha in latest.values()}


def expired_models(kept: list[KeptModels], now: datetime, days: float) -> tuple[list[str], set[str], set[str]]:
    """Retention of canonical models (EDT_RETENTION_MODEL_DAYS after the end of their import, except a
    baseline): the imports whose models expire, the blobs to delete (no kept import refers to them), and
    the blobs kept."""
    cutoff = now - timedelta(days=days)
    base = baselines(kept)
    expired = [k for k in kept if k.ended_at is not None and k.ended_at < cutoff and not k.shas & base]
    gone_ids = {k.import_id for k in expired}
    keep = set().union(*(k.shas for k in kept if k.import_id not in gone_ids)) if kept else set()
    gone = set().union(*(k.shas for k in expired)) - keep if expired else set()
    return sorted(gone_ids), gone, keep


def person_in_model(tt: Timetable, person: FileIdent) -> dict[str, Any] | None:
    """What a model holds about one person of its file (None when its file has no such ident)."""
    if person.kind == "students":
        s = tt.students.get(person.ident)
        if s is None:
            return None
        return {"ident": s.ident, "last_name": s.last_name, "first_name": s.first_name,
                "birth_date": s.birth_date.isoformat() if s.birth_date else None, "pronote_id": s.pronote_id,
                "cas_id": s.cas_id, "classes": [[m.ident, m.start and m.start.isoformat(),
                                                 m.end and m.end.isoformat()] for m in s.classes],
                "parts": [[m.ident, m.start and m.start.isoformat(), m.end and m.end.isoformat()] for m in s.parts]}
    t = tt.teachers.get(person.ident)
    if t is None:
        return None
    return {"ident": t.ident, "last_name": t.last_name, "first_name": t.first_name, "pronote_id": t.pronote_id,
            "cas_id": t.cas_id}
