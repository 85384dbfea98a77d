"""What the public importers had to fix once real files came (their commit history, read for this project:
entcore's feeder and laclasse's cahier de textes): one test each, for those that apply to us.

- entcore 30abaad (2020): every course imported one week early (`generateCourse(i - 1)`); laclasse rotated
  the week mask onto ISO weeks, which misplaces weeks after New Year in a 53-week year and never matches a
  Sunday (`wday` 0).
- entcore 6bdc6f5 (2020): a re-import deleted the course in progress (`endDate >= now` instead of the start).
- entcore 5095742 (2021), 916043b (2020): duplicated courses for a group shared by classes; a course naming a
  group and classes keeps the groups only.
- entcore b752301 (2017): periods beginning during holidays closed at once.
- entcore 2f46e95 (2019): a line feed in the key (base64 wrapped at 76 columns), a BOM before the content.
- entcore a9e4d11 (2019): two people claiming one IDPN.
- laclasse 06eedeb (2015): a `Cours` with `SemainesAnnulation` dropped whole.
- laclasse aa69f7f (2015): comment nodes among an element's children broke the reading ("Grignard file").
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from services.scheduler.domain import Stored, diff_sessions, plan_establishment
from services.validator.domain import parse_export
from shared.reconcile import AMBIGUOUS, Directory, DirectoryPerson, FilePerson, match_persons
from shared.timetable import (
    Ref,
    Slot,
    derive_closure_weeks,
    derive_courses,
    iter_weeks,
    sessions_for_course,
    weeks_bitmap,
)
from tests.factory import encrypt_export, make_keypair, make_school
from tests.golden.scheduler import golden_timetable

PARIS = ZoneInfo("Europe/Paris")


def test_weeks_land_on_their_own_week_even_after_new_year_in_a_53_week_year_and_on_sundays() -> None:
    # Index Education's own comment on a real bitmap: Semaines="35132630760702" <!--Domaine : [1..7,...]-->
    assert list(iter_weeks(35132630760702)) == [*range(1, 8), *range(10, 17), *range(19, 26), *range(28, 34),
                                                 *range(36, 45)]
    tt = golden_timetable(2026)  # ISO year 2026 has 53 weeks: a rotation onto ISO weeks slips after New Year
    week1 = tt.school_year.week1
    sunday = Slot(7, 0, 1, "S1", teachers=(Ref("T1", weeks_bitmap([1, 17, 18])),),
                  classes=(Ref("C6B", weeks_bitmap([1, 17, 18])),))
    sunday_tt = replace(tt, slots=(sunday,), grid=replace(tt.grid, days=(1, 2, 3, 4, 5, 6, 7)))
    (course,) = derive_courses(sunday_tt)
    days = [s.start.date() for s in sessions_for_course(sunday_tt, course)]
    assert days == [week1 + timedelta(weeks=k - 1, days=6) for k in (1, 17, 18)]
    assert days[1] == date(2026, 12, 27) and days[2] == date(2027, 1, 3)  # either side of New Year, Sundays


def test_a_reimport_never_deletes_the_course_in_progress() -> None:
    tt = golden_timetable()
    stored = [Stored(s.id, s.key, s.fp, s.start) for s in plan_establishment(
        tt, site="4817", establishment="1754", cutoff=datetime(2026, 8, 1, tzinfo=UTC), tz=PARIS).sessions.values()]
    in_progress = datetime(2026, 9, 1, 7, 0, tzinfo=UTC)  # FRANCAIS 6A runs 06:00–08:00 UTC that Tuesday
    without_french = replace(tt, slots=tt.slots[1:])  # the course is gone from the new export
    d = diff_sessions(plan_establishment(without_french, site="4817", establishment="1754", cutoff=in_progress,
                                         tz=PARIS), stored)
    assert "S1|class:C6A|2026-09-01|0" not in {s.key for s in d.delete}  # started: never touched
    assert {s.key for s in d.delete} == {s.key for s in stored if s.key.startswith("S1|") and s.start > in_progress}


def test_a_group_shared_by_classes_is_one_course_and_its_classes_make_none() -> None:
    tt = golden_timetable()
    shared = Slot(4, 1, 1, "S2", teachers=(Ref("T3", 2),),
                  classes=(Ref("C6A", 2), Ref("C6B", 2)), groups=(Ref("G1", 2),))
    courses = derive_courses(replace(tt, slots=(shared,)))
    assert [c.key for c in courses] == ["S2|group:G1"]


def test_a_period_beginning_during_the_holidays_is_kept_whole() -> None:
    tt = golden_timetable()
    week1 = tt.school_year.week1
    # the year begins in a week without a single course (a holiday week), and so do weeks 6–7
    slots = tuple(replace(s, classes=tuple(Ref(r.ident, r.weeks & ~2) for r in s.classes),
                          groups=tuple(Ref(r.ident, r.weeks & ~2) for r in s.groups)) for s in tt.slots)
    periods = derive_closure_weeks(replace(tt, slots=slots))
    assert periods[0].start == tt.school_year.start and periods[0].end == week1 + timedelta(days=6)
    assert any(p.start == week1 + timedelta(weeks=5) and p.end == week1 + timedelta(weeks=6, days=6)
               for p in periods)


def test_a_line_feed_in_the_key_and_a_bom_before_the_content_are_read(tmp_path: Path) -> None:
    school = make_school("XS", 5)
    private, public = make_keypair()
    data = encrypt_export(school.to_xml_bytes(), public, "EDT-IMPORT", uai=school.timetable.uai, add_bom=True)
    text = data.decode()
    assert "\n" in text[text.index("<PARTENAIRE"):text.index("</CLES>")]  # base64 wrapped at 76 columns
    crlf = text.replace("\n", "\r\n").encode()  # and a file written on Windows
    for name, content in (("lf.xml", data), ("crlf.xml", crlf)):
        path = tmp_path / name
        path.write_bytes(content)
        assert parse_export(path, partner_name="EDT-IMPORT", private_key=private).ok, name
    clear = tmp_path / "bom.xml"
    clear.write_bytes(b"\xef\xbb\xbf" + school.to_xml_bytes().replace(b"\n", b"\r\n"))
    assert parse_export(clear, partner_name="EDT-IMPORT", private_key=None).ok


def test_two_people_claiming_one_idpn_never_share_an_ent_account() -> None:
    directory = Directory(persons=(DirectoryPerson("e1", "student", "MARTIN", "Léa", pronote_id="PN1"),),
                          associations={"PN1": "e1"})
    result = match_persons([FilePerson("1", "MARTIN", "Léa", pronote_id="PN1"),
                            FilePerson("2", "DURAND", "Hugo", pronote_id="PN1")], directory, "students")
    assert not result.matched  # never one ENT entry for two people: neither is guessed
    assert [(u.ident, u.reason, u.candidates) for u in result.unmatched] == [("1", AMBIGUOUS, ("e1",)),
                                                                              ("2", AMBIGUOUS, ("e1",))]


def test_a_slot_with_cancelled_weeks_keeps_its_other_weeks() -> None:
    tt = golden_timetable()
    (french,) = [c for c in derive_courses(tt) if c.key == "S1|class:C6A"]
    weeks = [s.week for s in sessions_for_course(tt, french)]
    assert weeks == [1, 3]  # weeks 1–3, week 2 cancelled: the slot is not dropped


def test_comments_among_an_elements_children_are_ignored(tmp_path: Path) -> None:
    school = make_school("XS", 6)
    text = school.to_xml_bytes().decode()
    text = re.sub(r"(\t<Classe Ident=\"\d+\" Nom=\"[^\"]+\">\n)", r"\1\t  <!-- commentaire -->\n", text)
    text = text.replace("\t  <Matiere Ident=", "\t  <!-- matière -->\n\t  <Matiere Ident=")
    path = tmp_path / "comments.xml"
    path.write_bytes(text.encode())
    result = parse_export(path, partner_name="EDT-IMPORT", private_key=None)
    assert result.ok and result.timetable == school.timetable
