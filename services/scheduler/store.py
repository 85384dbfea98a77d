"""Tables owned by the scheduler service (session generation, stage 5).

Idents in the list columns are the timetable's own (`Ident` attributes, one space per kind); instants
are aware UTC. A session's `id` is derived from (site, establishment, key), so it is known before the
row is written (bulk COPY, change events) and stays the same across re-imports (iCal UID).
"""

from __future__ import annotations

import sqlalchemy as sa

from shared.db import outbox_table, service_metadata, stage_runs_table

metadata = service_metadata("scheduler")
outbox = outbox_table(metadata)
runs = stage_runs_table(metadata)

# One dated occurrence of a course. Written in bulk (COPY / multi-row insert); re-imports diff by `key`
# (course | date | first place) through `fp`, a digest of everything that can change.
sessions = sa.Table(
    "scheduler_sessions",
    metadata,
    sa.Column("id", sa.String(24), primary_key=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("establishment", sa.String(64), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("course", sa.String(128), nullable=False),
    sa.Column("start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("week", sa.Integer, nullable=False),
    sa.Column("rooms", sa.JSON, nullable=False),
    sa.Column("teachers", sa.JSON, nullable=False),
    sa.Column("classes", sa.JSON, nullable=False),
    sa.Column("groups", sa.JSON, nullable=False),
    sa.Column("students", sa.JSON, nullable=False),  # students named on the slot itself (`Eleve`), rare
    sa.Column("equipment", sa.JSON, nullable=False),
    sa.Column("staff", sa.JSON, nullable=False),
    sa.Column("fp", sa.String(16), nullable=False),
    sa.Column("import_id", sa.String(32), nullable=False),  # the import that created or last updated it
    sa.Index("ix_scheduler_sessions_est_start", "site", "establishment", "start"),
    sa.Index("ix_scheduler_sessions_course", "site", "establishment", "course", "start"),
)

# The courses derived from the timetable (design.md §7); a course that disappears stays (its past
# sessions refer to it) with active = false.
courses = sa.Table(
    "scheduler_courses",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("subject", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # class | group
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("label", sa.String(255), nullable=False),
    sa.Column("teachers", sa.JSON, nullable=False),
    sa.Column("classes", sa.JSON, nullable=False),
    sa.Column("students", sa.Integer, nullable=False),  # number of students
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("fp", sa.String(16), nullable=False),  # digest of label, teachers and members
    sa.Column("import_id", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Who and what each course concerns: the index behind the person / class / group filters and feeds.
course_members = sa.Table(
    "scheduler_course_members",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("establishment", sa.String(64), nullable=False),
    sa.Column("course", sa.String(128), nullable=False),
    # teacher | staff | student | class | group (what the course names, the class filter) | sclass | part
    # (classes and parts whose every student is in the course: see class_students)
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("ident", sa.String(64), nullable=False),
    sa.Column("start", sa.Date, nullable=True),  # a student's membership dates (class change mid-year)
    sa.Column("end", sa.Date, nullable=True),
    sa.Index("ix_scheduler_course_members_ident", "site", "establishment", "kind", "ident"),
    sa.Index("ix_scheduler_course_members_course", "site", "establishment", "course"),
)

# The students of each class ("sclass") and part of class ("part"), with their membership dates: a
# student's courses are those naming one of their classes or parts (kinds sclass / part) or them.
class_students = sa.Table(
    "scheduler_class_students",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("establishment", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("ident", sa.String(64), nullable=False),
    sa.Column("student", sa.String(64), nullable=False),
    sa.Column("start", sa.Date, nullable=True),
    sa.Column("end", sa.Date, nullable=True),
    sa.Index("ix_scheduler_class_students_student", "site", "establishment", "student"),
)

# Per establishment: the last integrated timetable and the display names feeds and views use.
establishments = sa.Table(
    "scheduler_establishments",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("establishment", sa.String(64), primary_key=True),
    sa.Column("import_id", sa.String(32), nullable=False),
    sa.Column("timetable_sha256", sa.String(64), nullable=False),
    sa.Column("names", sa.JSON, nullable=False),  # {"teachers": {ident: name}, "rooms": …, "classes": …}
    sa.Column("class_students_fp", sa.String(16), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
