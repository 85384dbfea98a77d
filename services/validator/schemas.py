"""Response model of the validation report route (extension of design.md §5)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.web import Instant


class ValidationProblemRead(BaseModel):
    """A rejection cause (`error`) or a warning the import went on with (design.md §7, validation policy)."""

    model_config = ConfigDict(extra="allow")
    code: str
    severity: Literal["error", "warning"]
    message: str = Field(description="French")
    message_en: str
    detail: dict[str, Any] = Field(description="Counts and samples")


class ValidationReportRead(BaseModel):
    import_id: str
    site: str
    ok: bool
    meta: dict[str, Any] = Field(description="Software, format, encryption, zip, UAI… as found in the file")
    counts: dict[str, int]
    problems: list[ValidationProblemRead]
    timetables: dict[str, str] = Field(description="Establishment id → sha256 of its part of the timetable")
    created_at: Instant
