"""The reconciler's personal-data rules (docs/privacy.md): what a directory entry keeps, the unreconciled
lists stored without names, a person's idents in the files, and an awaiting preview forgetting a person."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

from services.reconciler import domain, wizard
from shared.reconcile import KindResult, Unmatched
from tests.factory import make_school


def test_a_directory_entry_keeps_a_birth_date_only_for_a_student() -> None:
    born = date(2012, 3, 4)
    assert domain.directory_person("e1", "student", "MARTIN", "Léa", born, None, None).birth_date == born
    assert domain.directory_person("e2", "teacher", "DURAND", "Paul", born, "PN", None).birth_date is None
    assert domain.directory_person("e3", "staff", "LOPEZ", "Inès", born, None, "cas").birth_date is None


def test_unreconciled_lists_are_stored_by_ident_and_read_with_the_model() -> None:
    tt = make_school("XS", 3).timetable
    student = next(s for s in tt.students.values() if s.classes)
    result = KindResult(unmatched=[Unmatched(student.ident, "not_found")])
    entries = domain.unmatched_entries(tt, "students", result)
    assert entries == [[student.ident, "not_found"]]  # no name in what the database keeps
    [row] = domain.unmatched_rows(tt, "students", entries)
    assert (row["last_name"], row["first_name"], row["reason"]) == (student.last_name, student.first_name,
                                                                    "not_found")
    assert row["birth_date"] == (student.birth_date.isoformat() if student.birth_date else "")
    assert len(domain.unmatched_entries(tt, "teachers", None)) == len(tt.teachers)  # no directory: everyone


def test_a_persons_idents_come_from_their_memberships_and_matches() -> None:
    memberships = [SimpleNamespace(establishment="1754", person_kind="student", file_ident="12"),
                   SimpleNamespace(establishment="1754", person_kind="student", file_ident="12")]
    decisions = [SimpleNamespace(establishment="1755", kind="students", ident="40")]
    idents = domain.person_file_idents(memberships, decisions)
    assert [(i.establishment, i.kind, i.ident) for i in idents] == [("1754", "students", "12"),
                                                                   ("1755", "students", "40")]


def test_an_awaiting_preview_forgets_an_erased_person() -> None:
    preview = {"establishments": [{"establishment": "1754", "directory": "old", "persons": {"students": [
        {"ident": "1", "status": "matched", "ent_id": "e1", "ent": {"id": "e1", "last_name": "MARTIN"},
         "candidates": []},
        {"ident": "2", "status": "unmatched", "ent_id": None, "reason": "ambiguous",
         "candidates": [{"id": "e1"}, {"id": "e9"}]}]}}]}
    selection = {"1754": {"persons": {"students": {"3": {"decision": "override", "ent_id": "e1"},
                                                   "4": {"decision": "refuse", "ent_id": None}}}}}
    out, chosen, changed = wizard.forget_person(preview, selection, "e1", {"1754": "new"})
    assert changed
    est = out["establishments"][0]
    assert est["directory"] == "new"
    first, second = est["persons"]["students"]
    assert (first["status"], first["ent_id"], first["ent"]) == ("unmatched", None, None)
    assert second["candidates"] == [{"id": "e9"}]
    assert chosen["1754"]["persons"]["students"] == {"4": {"decision": "refuse", "ent_id": None}}
    assert preview["establishments"][0]["directory"] == "old"  # the stored one is not changed in place
    assert wizard.forget_person(out, chosen, "e1", {"1754": "new"})[2] is False
