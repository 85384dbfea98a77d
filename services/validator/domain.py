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

from services.validator.format.checks import dangling_references
from services.validator.format.clear import parse_time_label
from services.validator.format.container import decrypt_content, parse_software
from services.validator.format.context import AcceptedSoftware, Limits, ParseMeta, ParseResult
from services.validator.format.parse import parse_export
from services.validator.format.problems import MESSAGES, Problem, make_problem
from services.validator.format.split import split_by_establishment

__all__ = [
    "MESSAGES",
    "AcceptedSoftware",
    "Limits",
    "ParseMeta",
    "ParseResult",
    "Problem",
    "decrypt_content",
    "make_problem",
    "parse_export",
    "parse_software",
    "parse_time_label",
    "dangling_references",
    "split_by_establishment",
]
