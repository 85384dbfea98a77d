"""Request and response models of the thresholds routes (design.md §5, §6): a site's controls, their audit
trail, and the closure periods an establishment sets."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from services.thresholds import domain
from shared.web import Instant, Page

# No space nor control character (spelt out: `\s` differs between Python and JSON Schema), nor , ; < >.
_ADDRESS_CHAR = r"[^@\x00-\x20\x7f-\x9f,;<>]"
EMAIL_PATTERN = rf"^{_ADDRESS_CHAR}+@{_ADDRESS_CHAR}+\.{_ADDRESS_CHAR}+$"
_EMAIL = re.compile(EMAIL_PATTERN)
MAX_EMAILS = 20


def _never_off(enabled: bool | None) -> bool | None:
    if enabled is False:
        raise PydanticCustomError("not_allowed", "percentage controls cannot be disabled; untick blocking instead")
    return enabled


def _no_value(value: int | None) -> None:
    if value is not None:
        raise PydanticCustomError("value_not_allowed", "this control has no value (on/off)")


def _integral(value: Any) -> Any:
    """JSON Schema's integer: 45 or 45.0, not "45" nor true."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Integer = Annotated[StrictInt, BeforeValidator(_integral)]
Percent = Annotated[StrictInt, Field(ge=0, le=100), BeforeValidator(_integral)]


def _email(text: str) -> str:
    if not _EMAIL.fullmatch(text):
        raise PydanticCustomError("email", "not an e-mail address")
    return text


class PercentControlUpdate(BaseModel):
    """A percentage control: its value (%, exceeded iff the computed % is strictly greater) and blocking."""

    model_config = ConfigDict(extra="forbid")
    value: Percent | None = None
    blocking: StrictBool | None = None
    enabled: Annotated[StrictBool | None, AfterValidator(_never_off),
                       WithJsonSchema({"enum": [True, None], "description": "cannot be disabled"})] = None


class CheckControlUpdate(BaseModel):
    """The on/off control (closure coherence): no value."""

    model_config = ConfigDict(extra="forbid")
    value: Annotated[Integer | None, AfterValidator(_no_value), WithJsonSchema({"type": "null"})] = None
    blocking: StrictBool | None = None
    enabled: StrictBool | None = None


# One optional field per control of design.md §6, so that the OpenAPI names them all.
ControlsUpdate: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "ControlsUpdate", __config__=ConfigDict(extra="forbid"),
    **{c.name: (PercentControlUpdate | None if c.kind == domain.PERCENT else CheckControlUpdate | None, None)
       for c in domain.CONTROLS})

Email = Annotated[str, AfterValidator(_email), WithJsonSchema({"type": "string", "pattern": EMAIL_PATTERN})]


class ThresholdsUpdate(BaseModel):
    """A partial update: the controls given change, the others keep their settings."""

    model_config = ConfigDict(extra="forbid")
    controls: ControlsUpdate = Field(default_factory=ControlsUpdate)  # type: ignore[valid-type]
    notification_emails: list[Email] | None = Field(default=None, max_length=MAX_EMAILS)

    def patches(self) -> dict[str, PercentControlUpdate | CheckControlUpdate]:
        controls: BaseModel = self.controls
        return {name: patch for name, patch in controls if patch is not None}


class ControlRead(BaseModel):
    value: int | None
    blocking: bool
    enabled: bool
    label: str = Field(description="The seed's wording")
    label_en: str
    kind: str = Field(description="percent | check")
    default_value: int | None
    default_blocking: bool


class ThresholdsWarning(BaseModel):
    code: str
    message: str
    message_en: str


class ThresholdsRead(BaseModel):
    site: str
    controls: dict[str, ControlRead]
    notification_emails: list[str]
    updated_at: Instant | None
    updated_by: str | None
    locked: bool = Field(description="An import of the site runs: PUT answers 423")


class ThresholdsUpdateRead(ThresholdsRead):
    warnings: list[ThresholdsWarning]


class AuditRead(BaseModel):
    id: int
    at: Instant
    actor: str
    control: str
    field: str
    old: Any
    new: Any


class AuditList(Page[AuditRead]):
    pass


def _iso_date(value: Any) -> date:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise PydanticCustomError("date_parsing", "a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("date_parsing", "a date YYYY-MM-DD") from None


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
IsoDate = Annotated[date, BeforeValidator(_iso_date), WithJsonSchema({"type": "string", "format": "date"})]


class ClosureCreate(BaseModel):
    start: IsoDate
    end: IsoDate = Field(description="On or after `start`")
    label: str = Field(default="", max_length=255)

    @model_validator(mode="after")
    def _ordered(self) -> ClosureCreate:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


class ClosureListCreate(BaseModel):
    items: list[ClosureCreate] = Field(max_length=500)


class ClosureRead(BaseModel):
    start: str = Field(json_schema_extra={"format": "date"})
    end: str = Field(json_schema_extra={"format": "date"})
    label: str


class ClosureList(Page[ClosureRead]):
    locked: bool


class StoredClosureList(ClosureList):
    updated_at: Instant | None
    updated_by: str | None
