"""What one parse carries: its caps, the accepted software, the problems found so far and the file's metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.validator.format.problems import POLICY, Problem, Severity, make_problem
from shared.timetable import Timetable

# ------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on what one deposit may cost; each breach is its own problem code."""

    max_input_bytes: int = 200 * 1024 * 1024  # the deposited file (zip or XML)
    max_xml_bytes: int = 512 * 1024 * 1024  # XML bytes streamed (zip member, decrypted and inflated content)
    max_zip_member_bytes: int = 512 * 1024 * 1024  # uncompressed size of one zip member
    max_zip_ratio: float = 200.0  # uncompressed / compressed; real exports deflate ~10–40×
    max_zip_members: int = 100
    max_depth: int = 32  # real files nest 4 deep
    max_elements: int = 5_000_000


@dataclass(frozen=True, slots=True)
class AcceptedSoftware:
    """Accepted formats and software (a setting, design.md §8a): EDT and PRONOTE 2013 and later, format 1.x."""

    products: frozenset[str] = frozenset({"EDT", "PRONOTE"})
    min_year: int = 2013
    format_majors: frozenset[int] = frozenset({1})


@dataclass(slots=True)
class ParseMeta:
    encrypted: bool = False
    zipped: bool = False
    zip_member: str | None = None
    zip_ignored: list[str] = field(default_factory=list)
    software: str | None = None  # LOGICIEL, e.g. "PRONOTE Monoposte-PRONOTE 2013 - 0.5.14"
    product: str | None = None  # "PRONOTE", "EDT"
    year: int | None = None  # 2013
    format_version: str | None = None  # root Version, e.g. "1.1"
    container_version: str | None = None  # VERSION, e.g. "1.0"
    uai: str | None = None
    container_uai: str | None = None
    establishment_name: str | None = None  # NOMETABLISSEMENT
    exported_at: str | None = None  # DATEHEURE
    compressed: bool | None = None  # CompresseAvantChiffrement
    xml_bytes: int = 0
    elements: int = 0
    ignored_sections: list[str] = field(default_factory=list)  # unknown sections, e.g. Absences, Etiquettes


@dataclass(slots=True)
class ParseResult:
    timetable: Timetable | None
    errors: list[Problem]
    warnings: list[Problem]
    meta: ParseMeta

    @property
    def ok(self) -> bool:
        return not self.errors and self.timetable is not None

    def codes(self) -> list[str]:
        return [p.code for p in self.errors]


class Reject(Exception):
    """Stops parsing after a fatal error has been recorded."""


class Ctx:
    def __init__(self, limits: Limits, accepted: AcceptedSoftware) -> None:
        self.limits, self.accepted = limits, accepted
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.meta = ParseMeta()

    def report(self, code: str, **detail: Any) -> None:
        """Record a problem; whether it rejects the file is the policy's call (problems.POLICY), not the caller's."""
        problem = make_problem(code, **detail)
        (self.errors if problem.severity is Severity.ERROR else self.warnings).append(problem)

    def fail(self, code: str, **detail: Any) -> Reject:
        """Record a rejection and stop parsing: for codes the policy makes errors only."""
        assert POLICY[code].severity is Severity.ERROR, code
        self.report(code, **detail)
        return Reject(code)
