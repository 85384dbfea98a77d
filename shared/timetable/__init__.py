"""The canonical timetable model and its pure derivations (design.md §7, §8, §8a, §9).

Validator, thresholds, reconciler and scheduler all read this model, never the export file: the validator
turns an Index Education export into a `Timetable`, stores `dumps(tt)` as a blob, and the later stages
`loads` it. Everything here is pure (no I/O) except `sniff_export`, the cheap detector the dropzone runs
at deposit time.

One module per responsibility — `model` (the dataclasses), `codec` (`dumps`/`loads`), `derive` (courses,
sessions, closures, members), `sniff` (the deposit-time look at a file) — and every name re-exported here:
`from shared.timetable import X` is the way to import any of them.

Conventions:
- Idents are the export's `Ident` attributes kept as strings; each kind has its own ident space
  (a subject and a teacher may both be "2").
- Week bitmaps are the export's integers untouched: bit *i* is school week *i* (1-based, bit 0 unused),
  week 1 starting on `SchoolYear.week1`.
- Times of day are minutes after midnight; session datetimes are naive local time (the establishment's
  timezone is a setting, applied by the scheduler).
"""

from shared.timetable.codec import (
    ModelVersionError,
    dumps,
    from_jsonable,
    loads,
    person_row_prefix,
    to_jsonable,
)
from shared.timetable.derive import (
    ClosurePeriod,
    Course,
    CourseKind,
    Member,
    Session,
    SlotWeeks,
    active_weeks_bitmap,
    count_sessions,
    course_classes,
    course_key,
    course_label,
    course_members,
    course_slot_weeks,
    derive_closure_weeks,
    derive_courses,
    derive_sessions,
    iter_weeks,
    member_index,
    school_weeks_bitmap,
    session_key,
    sessions_for_course,
    slot_targets,
    week_dates,
    weeks_bitmap,
    weeks_taking_part,
)
from shared.timetable.model import (
    CLEAR_NAMESPACE,
    CLEAR_ROOT,
    CONTAINER_NAMESPACE,
    CONTAINER_ROOT,
    MAX_WEEK,
    MODEL_VERSION,
    Establishment,
    Group,
    Membership,
    Person,
    Place,
    Ref,
    Room,
    SchoolClass,
    SchoolYear,
    Slot,
    Student,
    Subject,
    TimeGrid,
    Timetable,
)
from shared.timetable.sniff import (
    SNIFF_MAX_BYTES,
    SNIFF_MAX_MEMBERS,
    SNIFF_MAX_ZIP_RATIO,
    ZIP_MAGIC,
    Sniff,
    SniffKind,
    safe_iterparse,
    sniff_export,
)

__all__ = [
    "CLEAR_NAMESPACE",
    "CLEAR_ROOT",
    "CONTAINER_NAMESPACE",
    "CONTAINER_ROOT",
    "ClosurePeriod",
    "Course",
    "CourseKind",
    "Establishment",
    "Group",
    "MAX_WEEK",
    "MODEL_VERSION",
    "Member",
    "Membership",
    "ModelVersionError",
    "Person",
    "Place",
    "Ref",
    "Room",
    "SNIFF_MAX_BYTES",
    "SNIFF_MAX_MEMBERS",
    "SNIFF_MAX_ZIP_RATIO",
    "SchoolClass",
    "SchoolYear",
    "Session",
    "Slot",
    "SlotWeeks",
    "Sniff",
    "SniffKind",
    "Student",
    "Subject",
    "TimeGrid",
    "Timetable",
    "ZIP_MAGIC",
    "active_weeks_bitmap",
    "course_classes",
    "course_key",
    "course_label",
    "course_members",
    "course_slot_weeks",
    "derive_closure_weeks",
    "derive_courses",
    "derive_sessions",
    "dumps",
    "from_jsonable",
    "iter_weeks",
    "loads",
    "member_index",
    "person_row_prefix",
    "safe_iterparse",
    "school_weeks_bitmap",
    "session_key",
    "count_sessions",
    "sessions_for_course",
    "slot_targets",
    "sniff_export",
    "to_jsonable",
    "week_dates",
    "weeks_bitmap",
    "weeks_taking_part",
]
