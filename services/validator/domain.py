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

from typing import Any

from services.validator.format.checks import dangling_references
from services.validator.format.clear import parse_time_label
from services.validator.format.container import decrypt_content, parse_software
from services.validator.format.context import AcceptedSoftware, Limits, ParseMeta, ParseResult
from services.validator.format.parse import parse_export
from services.validator.format.problems import MESSAGES, Problem, make_problem
from services.validator.format.split import split_by_establishment
from shared.messages import ImportStatus, StageCommand, StepStatus
from shared.stage import StageResult

__all__ = [
    "MESSAGES",
    "AcceptedSoftware",
    "Limits",
    "ParseMeta",
    "ParseResult",
    "Problem",
    "dangling_references",
    "decide",
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


def problem_view(p: Problem) -> dict[str, Any]:
    return {"code": p.code, "severity": p.severity.value, "effect": p.effect, "message": p.message_fr,
            "message_en": p.message_en,
            "detail": {k: (list(v) if isinstance(v, set | tuple) else v) for k, v in p.detail.items()}}


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
