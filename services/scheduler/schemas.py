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


class SessionRead(BaseModel):
    """One dated occurrence of a course; lists hold the timetable's idents."""

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


class SessionList(Page[SessionRead]):
    pass
