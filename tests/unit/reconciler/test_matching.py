"""shared.reconcile: one test per matching rule (design.md §7; seeds 003 and 004)."""

from __future__ import annotations

from datetime import date

from shared.reconcile import (
    AMBIGUOUS,
    NOT_FOUND,
    Directory,
    DirectoryPerson,
    DirectoryUnit,
    FilePerson,
    match_named,
    match_persons,
    matching_figures,
    normalise,
    reconcile,
)
from tests.factory import make_school

BIRTH = date(2012, 3, 4)


def teacher(ident: str, last: str, first: str, **kw: object) -> FilePerson:
    return FilePerson(ident, last, first, **kw)  # type: ignore[arg-type]


def ent(id_: str, last: str, first: str, kind: str = "teacher", **kw: object) -> DirectoryPerson:
    return DirectoryPerson(id_, kind, last, first, **kw)  # type: ignore[arg-type]


def test_rule_stored_association_links_the_pronote_id_to_the_ent_person() -> None:
    """Rule 1 (IdPN): whatever the names say, the stored association decides."""
    directory = Directory(persons=(ent("e1", "AUTRE", "Nom"), ent("e2", "MARTIN", "Paul")),
                          associations={"PN1": "e1"})
    r = match_persons([teacher("7", "MARTIN", "Paul", pronote_id="PN1")], directory, "teachers")
    assert r.matched == {"7": "e1"} and r.rules == {"7": "association"}


def test_rule_stored_association_to_an_absent_ent_person_falls_through() -> None:
    directory = Directory(persons=(ent("e2", "MARTIN", "Paul"),), associations={"PN1": "gone"})
    r = match_persons([teacher("7", "MARTIN", "Paul", pronote_id="PN1")], directory, "teachers")
    assert r.matched == {"7": "e2"} and r.rules == {"7": "name"}


def test_rule_pronote_id_equality_with_the_directory() -> None:
    directory = Directory(persons=(ent("e1", "DURAND", "Lise", pronote_id="PN9"), ent("e2", "MARTIN", "Paul")))
    r = match_persons([teacher("7", "MARTIN", "Paul", pronote_id="PN9")], directory, "teachers")
    assert r.matched == {"7": "e1"} and r.rules == {"7": "pronote_id"}


def test_rule_cas_id_equality_with_the_directory() -> None:
    directory = Directory(persons=(ent("e1", "DURAND", "Lise", cas_id="cas-7"),))
    r = match_persons([teacher("7", "MARTIN", "Paul", cas_id="cas-7", pronote_id="unknown")], directory, "teachers")
    assert r.matched == {"7": "e1"} and r.rules == {"7": "cas_id"}


def test_rule_id_shared_by_two_directory_persons_is_ambiguous() -> None:
    directory = Directory(persons=(ent("e1", "A", "B", pronote_id="PN9"), ent("e2", "C", "D", pronote_id="PN9")))
    r = match_persons([teacher("7", "A", "B", pronote_id="PN9")], directory, "teachers")
    assert not r.matched and [(u.reason, u.candidates) for u in r.unmatched] == [(AMBIGUOUS, ("e1", "e2"))]


def test_rule_name_normalisation_ignores_case_accents_hyphens_apostrophes_and_spaces() -> None:
    assert normalise("Lefèvre-D'Almeida") == normalise("LEFEVRE DALMEIDA") == "lefevredalmeida"
    assert normalise("Jean-Baptiste") == normalise("jean baptiste") == normalise("JEAN’BAPTISTE")
    assert normalise("Œdipe") == normalise("OEDIPE") and normalise("Maëlle") == normalise("MAELLE")
    directory = Directory(persons=(ent("e1", "LE GALL-HÉBERT", "Anne-Sophie"),))
    r = match_persons([teacher("7", "Le Gall Hebert", "ANNE SOPHIE")], directory, "teachers")
    assert r.matched == {"7": "e1"} and r.rules == {"7": "name"}


def test_rule_teachers_match_teacher_or_staff_never_students() -> None:
    directory = Directory(persons=(ent("s1", "MARTIN", "Paul", kind="student"), ent("p1", "DURAND", "Lise", "staff")))
    r = match_persons([teacher("7", "MARTIN", "Paul"), teacher("8", "DURAND", "Lise")], directory, "teachers")
    assert r.matched == {"8": "p1"} and [(u.ident, u.reason) for u in r.unmatched] == [("7", NOT_FOUND)]


def test_rule_birth_date_for_students() -> None:
    directory = Directory(persons=(ent("s1", "MARTIN", "Léa", "student", birth_date=BIRTH),
                                   ent("s2", "MARTIN", "Léa", "student", birth_date=date(2013, 1, 1))))
    r = match_persons([FilePerson("1", "MARTIN", "Lea", BIRTH), FilePerson("2", "MARTIN", "Lea", date(2011, 1, 1))],
                      directory, "students")
    assert r.matched == {"1": "s1"}  # the homonym with another birth date is told apart
    assert [(u.ident, u.reason) for u in r.unmatched] == [("2", NOT_FOUND)]  # a changed birth date: not found


def test_rule_birth_date_is_not_used_for_teachers() -> None:
    directory = Directory(persons=(ent("e1", "MARTIN", "Paul", birth_date=date(1970, 1, 1)),))
    r = match_persons([teacher("7", "MARTIN", "Paul", birth_date=date(1980, 2, 2))], directory, "teachers")
    assert r.matched == {"7": "e1"}


def test_rule_homonyms_are_ambiguous_never_a_guess() -> None:
    two_in_directory = Directory(persons=(ent("e1", "MARTIN", "Paul"), ent("e2", "Martin", "Paul")))
    r = match_persons([teacher("7", "MARTIN", "Paul")], two_in_directory, "teachers")
    assert not r.matched and [(u.reason, u.candidates) for u in r.unmatched] == [(AMBIGUOUS, ("e1", "e2"))]
    # Two people of the file for one directory entry: neither gets it.
    one = Directory(persons=(ent("s1", "MARTIN", "Léa", "student"),))
    r = match_persons([FilePerson("1", "MARTIN", "Léa", BIRTH), FilePerson("2", "MARTIN", "Léa", date(2012, 9, 9))],
                      one, "students")
    assert not r.matched and {u.reason for u in r.unmatched} == {AMBIGUOUS}


def test_rule_an_entry_taken_by_an_id_is_not_offered_to_a_homonym() -> None:
    directory = Directory(persons=(ent("e1", "MARTIN", "Paul", pronote_id="PN1"), ent("e2", "MARTIN", "Paul")))
    r = match_persons([teacher("7", "MARTIN", "Paul", pronote_id="PN1"), teacher("8", "MARTIN", "Paul")],
                      directory, "teachers")
    assert r.matched == {"7": "e1", "8": "e2"}


def test_rule_missing_person_is_not_found() -> None:
    r = match_persons([teacher("7", "MARTIN", "Paul")], Directory(persons=(ent("e1", "MARTINN", "Paul"),)), "teachers")
    assert not r.matched and [(u.ident, u.reason) for u in r.unmatched] == [("7", NOT_FOUND)]


def test_rule_classes_and_groups_by_normalised_name() -> None:
    r = match_named([("1", "3 A"), ("2", "4ème-B"), ("3", "5C"), ("4", "6D")],
                    [DirectoryUnit("c1", "3a"), DirectoryUnit("c2", "4EME B"), DirectoryUnit("c4", "6D"),
                     DirectoryUnit("c5", "6 d")])
    assert r.matched == {"1": "c1", "2": "c2"}
    assert [(u.ident, u.reason) for u in r.unmatched] == [("3", NOT_FOUND), ("4", AMBIGUOUS)]


def test_snapshot_round_trip_and_figures_on_a_generated_school() -> None:
    tt = make_school("XS", 3, year=2026).timetable
    directory = Directory(
        persons=tuple(ent(f"t{t.ident}", t.last_name, t.first_name) for t in tt.teachers.values())
        + tuple(ent(f"s{s.ident}", s.last_name, s.first_name, "student", birth_date=s.birth_date)
                for s in tt.students.values()),
        classes=tuple(DirectoryUnit(f"c{c.ident}", c.name) for c in tt.classes.values()),
        groups=())
    again = Directory.from_json(directory.to_json())
    assert again == Directory(tuple(sorted(directory.persons, key=lambda p: p.id)),
                              tuple(sorted(directory.classes, key=lambda u: u.id)), ())
    figures = matching_figures(reconcile(tt, again))
    assert figures["classes"] == (0, len(tt.classes)) and figures["groups"] == (len(tt.groups), len(tt.groups))
    assert figures["teachers"][1] == len(tt.teachers) and figures["students"][1] == len(tt.students)


def test_rule_birth_date_missing_on_one_side_lets_a_unique_name_match() -> None:
    directory = Directory(persons=(ent("s1", "MARTIN", "Léa", "student", birth_date=BIRTH),))
    r = match_persons([FilePerson("1", "MARTIN", "Léa", None)], directory, "students")
    assert r.matched == {"1": "s1"}
