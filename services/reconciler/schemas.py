"""Request and response models of the reconciler routes (design.md §5): the ENT directory and the IdPN
associations of an establishment (JSON read here, CSV by services/reconciler/domain.py), the manual
wizard (preview, selection, confirm) and the groups the imports created."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from services.reconciler import domain
from shared.reconcile import DirectoryUnit
from shared.web import Instant, Page

# --- uploads: the ENT directory and the IdPN associations ------------------------------------------

# The characters str.strip() removes: written out, since `\s` differs between Python and JSON Schema.
_SPACE = "\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_NON_BLANK = f"[^{_SPACE}]"
_BLANK = {"type": "string", "pattern": f"^[{_SPACE}]*$"}  # "not given"


def _text_or_none(value: Any) -> str | None:
    try:
        return domain.clean_text(value)
    except TypeError:
        raise PydanticCustomError("string_type", "must be a string") from None


def _required_text(value: Any) -> str:
    text = _text_or_none(value)
    if text is None:
        raise PydanticCustomError("missing", "field required")
    return text


def _birth_date(value: Any) -> date | None:
    text = _text_or_none(value)
    if text is None:
        return None
    try:
        return domain.parse_date(text)
    except ValueError:
        raise PydanticCustomError("date_parsing", "not a date (YYYY-MM-DD or DD/MM/YYYY)") from None


def _text_schema(max_length: int, *, required: bool) -> dict[str, Any]:
    # A number is taken as its text (ENT ids are often numbers); blank is "not given".
    text: dict[str, Any] = {"type": "string", "maxLength": max_length}
    if required:
        text.update(minLength=1, pattern=_NON_BLANK)
    return {"anyOf": [text, {"type": "number"}] + ([] if required else [_BLANK, {"type": "null"}])}


Id = Annotated[str, BeforeValidator(_required_text), Field(max_length=domain.MAX_ID),
               WithJsonSchema(_text_schema(domain.MAX_ID, required=True))]
OptionalId = Annotated[Annotated[str, Field(max_length=domain.MAX_ID)] | None, BeforeValidator(_text_or_none),
                       WithJsonSchema(_text_schema(domain.MAX_ID, required=False))]
Name = Annotated[str, BeforeValidator(_required_text), Field(max_length=domain.MAX_NAME),
                 WithJsonSchema(_text_schema(domain.MAX_NAME, required=True))]
BirthDate = Annotated[date | None, BeforeValidator(_birth_date), WithJsonSchema(
    {"anyOf": [{"type": "string", "format": "date"}, _BLANK, {"type": "null"}],
     "description": "YYYY-MM-DD (DD/MM/YYYY is accepted too)"})]


def _first_name(value: Any) -> str:
    return _text_or_none(value) or ""


class PersonKind(StrEnum):
    TEACHER = "teacher"
    STAFF = "staff"
    STUDENT = "student"


class DirectoryPersonCreate(BaseModel):
    id: Id
    kind: PersonKind
    last_name: Name
    first_name: Annotated[str, BeforeValidator(_first_name), Field(max_length=domain.MAX_NAME), WithJsonSchema(
        _text_schema(domain.MAX_NAME, required=False))] = Field(description="May be empty, not left out")
    birth_date: BirthDate = Field(default=None, description="Students: used to match homonyms")
    pronote_id: OptionalId = None
    cas_id: OptionalId = None


class DirectoryUnitCreate(BaseModel):
    id: Id
    name: Name


class DirectoryCreate(BaseModel):
    """The ENT directory of an establishment: every person, class and group, each id once per section."""

    model_config = ConfigDict(extra="forbid")
    persons: list[DirectoryPersonCreate] = Field(default_factory=list)
    classes: list[DirectoryUnitCreate] = Field(default_factory=list)
    groups: list[DirectoryUnitCreate] = Field(default_factory=list)


class PronoteIdCreate(BaseModel):
    pronote_id: Id
    ent_id: Id


class PronoteIdItems(BaseModel):
    items: list[PronoteIdCreate]


class PronoteIdsCreate(RootModel[list[PronoteIdCreate] | PronoteIdItems]):
    """`[{"pronote_id", "ent_id"}, …]` (or `{"items": [...]}`); a PRONOTE id is given one ENT id."""


_PRONOTE_ID_LIST = TypeAdapter(list[PronoteIdCreate])


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors in the upload's error format (loc from "body"), at most domain.MAX_ERRORS."""
    out: list[dict[str, Any]] = []
    for e in exc.errors():
        domain.add_error(out, ["body", *e["loc"]], e["msg"], e["type"])
    return out


def parse_directory_json(data: bytes) -> domain.DirectoryUpload:
    """A JSON directory (UTF-8 or Windows-1252) as an upload: every invalid field and duplicate id listed."""
    obj = domain.load_json(data)
    upload = domain.DirectoryUpload()
    try:
        body = DirectoryCreate.model_validate(obj)
    except ValidationError as exc:
        upload.errors = _errors(exc)
        body = None
    seen: dict[str, set[str]] = {}
    for section in ("persons", "classes", "groups"):
        items = obj.get(section) if isinstance(obj, dict) else None
        for i, raw in enumerate(items if isinstance(items, list) else []):
            if isinstance(raw, dict):
                domain.duplicate_id(upload.errors, seen, section, raw.get("id"), ["body", section, i])
    if body is None or upload.errors:
        return upload
    upload.persons = [domain.directory_person(p.id, p.kind.value, p.last_name, p.first_name, p.birth_date,
                                              p.pronote_id, p.cas_id) for p in body.persons]
    upload.classes = [DirectoryUnit(u.id, u.name) for u in body.classes]
    upload.groups = [DirectoryUnit(u.id, u.name) for u in body.groups]
    return upload


def parse_pronote_ids_json(data: bytes) -> domain.PronoteIdsUpload:
    """A JSON IdPN upload: every invalid field and every PRONOTE id given two ENT ids listed."""
    upload = domain.PronoteIdsUpload()
    obj = domain.load_json(data)
    try:
        items = PronoteIdItems.model_validate(obj).items if isinstance(obj, dict) else \
            _PRONOTE_ID_LIST.validate_python(obj)
    except ValidationError as exc:
        upload.errors = _errors(exc)
        return upload
    for i, item in enumerate(items):
        domain.add_association(upload, item.pronote_id, item.ent_id, ["body", i], None)
    return upload


class DirectoryCounts(BaseModel):
    model_config = ConfigDict(extra="allow")
    persons: int
    teacher: int
    staff: int
    student: int
    classes: int
    groups: int


class StoredDirectoryCounts(DirectoryCounts):
    pronote_ids: int


class DirectoryUploadRead(BaseModel):
    site: str
    establishment: str
    sha256: str = Field(description="The directory snapshot the next imports match against")
    counts: StoredDirectoryCounts
    updated_at: Instant
    mode: Literal["replace", "merge"]
    received: DirectoryCounts


class PronoteIdsUploadRead(BaseModel):
    site: str
    establishment: str
    mode: Literal["complete", "partial"]
    received: int
    pronote_ids: int = Field(description="Associations stored for the establishment")
    sha256: str | None = Field(description="The new directory snapshot; null while no directory is uploaded")


class DirectoryPersonRead(BaseModel):
    id: str
    kind: PersonKind
    last_name: str
    first_name: str
    birth_date: str | None = Field(json_schema_extra={"format": "date"})
    pronote_id: str | None
    cas_id: str | None


class DirectoryUnitRead(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    name: str


class DirectoryRead(Page[DirectoryPersonRead | DirectoryUnitRead]):
    """The stored directory's counts and one page of one section."""

    site: str
    establishment: str
    sha256: str
    updated_at: Instant
    counts: StoredDirectoryCounts
    section: Literal["persons", "classes", "groups"]


# --- the manual wizard ---------------------------------------------------------------------------------

Switches = dict[str, StrictBool]
Decision = Literal["accept", "refuse", "override", "auto"]


class PersonDecision(BaseModel):
    decision: Decision
    ent_id: str | None = Field(default=None, description="override: the ENT person chosen")


class PersonsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    teachers: dict[str, PersonDecision | Decision] | None = None
    students: dict[str, PersonDecision | Decision] | None = None


class SelectionPatch(BaseModel):
    """On/off per subject, class, group and course (by ident or key), and the person matches decided."""

    model_config = ConfigDict(extra="forbid")
    subjects: Switches | None = None
    classes: Switches | None = None
    groups: Switches | None = None
    courses: Switches | None = None
    persons: PersonsPatch | None = None


class SelectionUpdate(SelectionPatch):
    """A partial update of the selection; a site-wide import takes `{"establishments": {est: {…}}}`."""

    establishments: dict[str, SelectionPatch] | None = None


class SelectionRead(BaseModel):
    import_id: str
    status: Literal["awaiting"]
    selection: dict[str, Any] = Field(description="Per establishment, the selection as it stands")


class ConfirmRead(BaseModel):
    """202: the selection is applied and the import goes on to session generation."""

    import_id: str
    status: str
    courses_kept: int
    actions: list[dict[str, Any]]


class PreviewEstablishment(BaseModel):
    model_config = ConfigDict(extra="allow")
    establishment: str
    directory: str | None = Field(description="The directory snapshot matched against; null: none")
    counts: dict[str, Any]
    subjects: list[dict[str, Any]] = Field(description="ident, code, label, state (known | new | deactivated)")
    classes: list[dict[str, Any]] = Field(description="ident, name, ent_id, reason, state")
    groups: list[dict[str, Any]] = Field(description="ident, name, ent_id, reason, state")
    courses: list[dict[str, Any]] = Field(description="key, label, subject, kind, target, teachers, state")
    persons: dict[str, list[dict[str, Any]]] = Field(
        description="teachers and students: each with its match, or its reason and candidates, and the decision")


class PreviewRead(BaseModel):
    """A manual import paused at awaiting_selection (`review=true`)."""

    model_config = ConfigDict(extra="allow")
    import_id: str
    site: str
    status: Literal["awaiting", "confirmed", "cancelled"]
    selection: dict[str, Any]
    updated_at: Instant
    establishment: str | None = None
    thresholds: dict[str, Any] | None = Field(default=None, description="The threshold figures")
    establishments: list[PreviewEstablishment] = Field(default_factory=list)


# --- the groups the imports created --------------------------------------------------------------------


class MemberRead(BaseModel):
    kind: str = Field(description="teacher | student")
    id: str = Field(description="ENT id")
    file_ident: str
    start: str | None = Field(json_schema_extra={"format": "date"})
    end: str | None = Field(json_schema_extra={"format": "date"})


class GroupRead(BaseModel):
    key: str
    kind: str = Field(description="class | part | group | course")
    ident: str
    name: str
    parent: str | None
    ent_id: str | None = Field(description="The ENT class or group it is linked to")
    import_id: str
    updated_at: Instant
    members: int
    member_list: list[MemberRead] = Field(default_factory=list, description="With `include=members`")


class GroupList(Page[GroupRead]):
    site: str
    establishment: str
