"""Response models of the scheduler routes (design.md §5): courses and dated sessions."""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.web import Instant, Page

PERSON_PATTERN = r"^((teacher|staff|student):)?[^:]*$"
FEED_KINDS = {"class": "classes", "group": "groups", "teacher": "teachers", "student": "students"}


class CourseRead(BaseModel):
    """Subject + class, or subject + group (design.md §7)."""

    id: str
    key: str
    subject: str
    kind: str = Field(description="class | group")
    target: str = Field(description="The class or group")
    class_: str | None = Field(alias="class")
    group: str | None
    label: str = Field(examples=["FRANCAIS - 3F"])
    teachers: list[str]
    classes: list[str]
    students: int = Field(description="Number of students")
    active: bool = Field(description="false: no longer in the timetable (its past sessions stay)")
    import_id: str
    updated_at: Instant


class CourseList(Page[CourseRead]):
    pass


class SessionNames(BaseModel):
    """Display names of a session, each list in the same order as the session's ids."""

    course: str = Field(examples=["FRANCAIS - 3F"])
    subject: str = Field(examples=["FRANCAIS"])
    rooms: list[str]
    teachers: list[str]
    classes: list[str]
    groups: list[str]


class SessionRead(BaseModel):
    """One dated occurrence of a course; lists hold the timetable's idents, `names` their display names."""

    id: str
    course: str
    start: Instant
    end: Instant
    rooms: list[str]
    teachers: list[str]
    classes: list[str]
    groups: list[str]
    students: list[str]
    equipment: list[str]
    staff: list[str]
    week: int = Field(description="School week (1 = the week of DatePremierJourSemaine1)")
    key: str
    names: SessionNames


class SessionList(Page[SessionRead]):
    pass


class SubscriptionRead(BaseModel):
    """An iCal subscription: `url` (shown once, on creation) carries its secret and needs no header."""

    id: str
    kind: str
    ident: str
    created_at: Instant
    url: str | None = Field(default=None, description="The feed URL with its secret (only in the 201)")


class SubscriptionList(Page[SubscriptionRead]):
    pass
