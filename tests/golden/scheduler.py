"""A small hand-built export for the session-generation golden tests (design.md §7, §8a).

Every shape the rules care about is one slot, so each test can name the exact sessions it expects:

    slot 0  FRANCAIS - 6A    Tue places 0–1 (two places), weeks 1–3, week 2 cancelled (SemainesAnnulation),
                             a substitute teacher (T9) in week 3, room R2 instead of R1 in week 3
    slot 1  EPS - 6A / 6B    Wed place 2, two classes on one slot: two courses (6A weeks 4–5, 6B week 5)
    slot 2  ESPAGNOL - LV2   Thu place 1, a group across 6A and 6B: one course, weeks 1–2
    slot 3  SVT (part P1)    Fri place 0, only a part of class: no course
    slot 4  SVT - 6B         Mon place 0, weeks 8–9 (year 2026: week 9 is the first after the end of DST)
    slot 5  MATHS - 6A       Mon place 3, weeks 8, 10, 11 (the establishment closes week 10 in the tests)

No slot has a bit in weeks 6–7: they are the file's holidays (a closure period, no session).
"""

from __future__ import annotations

from datetime import date, timedelta

from shared.timetable import (
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
    weeks_bitmap,
)

UAI = "0490856P"


def w(*weeks: int) -> int:
    return weeks_bitmap(weeks)


def golden_timetable(year: int = 2026) -> Timetable:
    sept1 = date(year, 9, 1)
    week1 = sept1 - timedelta(days=sept1.weekday())  # the Monday of the week holding 1 September
    places = (Place(0, 8 * 60, 9 * 60), Place(1, 9 * 60, 10 * 60), Place(2, 10 * 60 + 15, 11 * 60 + 15),
              Place(3, 11 * 60 + 15, 12 * 60 + 15))
    slots = (
        Slot(2, 0, 2, "S1", cancelled_weeks=w(2), teachers=(Ref("T1", w(1, 2)), Ref("T9", w(3))),
             classes=(Ref("C6A", w(1, 2, 3)),), rooms=(Ref("R1", w(1, 2)), Ref("R2", w(3)))),
        Slot(3, 2, 1, "S4", teachers=(Ref("T2", w(4, 5)),), classes=(Ref("C6A", w(4, 5)), Ref("C6B", w(5))),
             rooms=(Ref("GYM", w(4, 5)),)),
        Slot(4, 1, 1, "S2", teachers=(Ref("T3", w(1, 2)),), classes=(Ref("C6A", w(1, 2)),),
             groups=(Ref("G1", w(1, 2)),), rooms=(Ref("R1", w(1, 2)),)),
        Slot(5, 0, 1, "S3", teachers=(Ref("T1", w(1, 2, 3)),), parts=(Ref("P1", w(1, 2, 3)),)),
        Slot(1, 0, 1, "S3", teachers=(Ref("T1", w(8, 9)),), classes=(Ref("C6B", w(8, 9)),),
             rooms=(Ref("R2", w(8, 9)),)),
        Slot(1, 3, 1, "S5", teachers=(Ref("T2", w(8, 10, 11)),), classes=(Ref("C6A", w(8, 10, 11)),),
             rooms=(Ref("R1", w(8, 10, 11)),)),
    )
    return Timetable(
        uai=UAI,
        format_version="1.1",
        school_year=SchoolYear(week1, date(year + 1, 7, 3), week1),
        grid=TimeGrid(4, 60, (1, 2, 3, 4, 5), places),
        subjects={"S1": Subject("S1", "FRANC", "FRANCAIS"), "S2": Subject("S2", "ESP2", "ESPAGNOL"),
                  "S3": Subject("S3", "SVT", "SVT"), "S4": Subject("S4", "EPS", "EPS"),
                  "S5": Subject("S5", "MATHS", "MATHS")},
        teachers={"T1": Person("T1", "MARTIN", "Anne"), "T2": Person("T2", "DURAND", "Paul"),
                  "T3": Person("T3", "LOPEZ", "Inès"), "T9": Person("T9", "REMPLA", "Çanté")},
        classes={"C6A": SchoolClass("C6A", "6A", ("P1",)), "C6B": SchoolClass("C6B", "6B")},
        groups={"G1": Group("G1", "6AB ESP", classes=("C6A", "C6B"))},
        rooms={"R1": Room("R1", "101"), "R2": Room("R2", "Labo 2"), "GYM": Room("GYM", "Gymnase")},
        students={
            "E1": Student("E1", "ALBERT", "Léa", date(2015, 3, 1), classes=(Membership("C6A"),),
                          parts=(Membership("P1"),)),
            "E2": Student("E2", "BRUN", "Tom", date(2015, 5, 2), classes=(Membership("C6B"),)),
            # changes class on 1 October: 6A until then, 6B afterwards
            "E3": Student("E3", "CAMUS", "Zoé", date(2015, 7, 3),
                          classes=(Membership("C6A", None, date(year, 9, 30)),
                                   Membership("C6B", date(year, 10, 1), None))),
        },
        slots=slots,
    )
