"""Reading the directory and IdPN uploads (JSON and CSV), the stage's decision and the unreconciled CSV."""

from __future__ import annotations

import json
from datetime import date

import pytest

from services.reconciler import domain, schemas
from shared.messages import ImportStatus, StepStatus
from shared.reconcile import KindResult, Unmatched


def test_directory_json_valid() -> None:
    up = schemas.parse_directory_json(json.dumps({
        "persons": [{"id": "e1", "kind": "student", "last_name": "Martin", "first_name": "Léa",
                     "birth_date": "2012-03-04", "pronote_id": "PN1"},
                    {"id": "e2", "kind": "teacher", "last_name": "Durand", "first_name": "Paul"}],
        "classes": [{"id": "c1", "name": "3A"}], "groups": [{"id": "g1", "name": "LATIN"}]}).encode())
    assert not up.errors
    assert up.persons[0].birth_date == date(2012, 3, 4) and up.persons[0].pronote_id == "PN1"
    assert up.counts() == {"persons": 2, "teacher": 1, "staff": 0, "student": 1, "classes": 1, "groups": 1}


def test_directory_json_errors_name_each_field() -> None:
    up = schemas.parse_directory_json(json.dumps({
        "persons": [{"id": "e1", "kind": "parent", "last_name": "A", "first_name": "B"},
                    {"id": "e2", "kind": "student", "first_name": "B", "birth_date": "31/02/2012"},
                    {"id": "e1", "kind": "teacher", "last_name": "C", "first_name": "D"}],
        "classes": [{"id": "c1"}], "extra": 1}).encode())
    locs = {(tuple(e["loc"]), e["type"]) for e in up.errors}
    assert locs == {(("body", "extra"), "extra_forbidden"), (("body", "persons", 0, "kind"), "enum"),
                    (("body", "persons", 1, "last_name"), "missing"),
                    (("body", "persons", 1, "birth_date"), "date_parsing"),
                    (("body", "persons", 2, "id"), "duplicate"), (("body", "classes", 0, "name"), "missing")}


def test_directory_json_unreadable() -> None:
    with pytest.raises(domain.UploadError):
        schemas.parse_directory_json(b"{nope")


def test_directory_csv_one_file_with_a_type_column_and_french_dates() -> None:
    text = ("type;id;last_name;first_name;birth_date;pronote_id;cas_id;name\n"
            "student;e1;MARTIN;Léa;04/03/2012;PN1;;\n"
            "teacher;e2;DURAND;Paul;;;cas-2;\n"
            "class;c1;;;;;;3 A\n"
            "group;g1;;;;;;LATIN\n")
    up = domain.parse_directory_csv(text.encode("cp1252"))  # a French spreadsheet's encoding
    assert not up.errors
    assert [(p.id, p.kind, p.birth_date, p.cas_id) for p in up.persons] == [
        ("e1", "student", date(2012, 3, 4), None), ("e2", "teacher", None, "cas-2")]
    assert [u.name for u in up.classes] == ["3 A"] and [u.name for u in up.groups] == ["LATIN"]


def test_directory_csv_errors_name_the_line_and_column() -> None:
    text = "kind,id,nom,prenom,date_naissance\nstudent,e1,MARTIN,Léa,2012-13-01\nparent,e2,A,B,\n"
    up = domain.parse_directory_csv(text.encode())
    assert [(e["line"], e["loc"][-1], e["type"]) for e in up.errors] == [(2, "birth_date", "date_parsing"),
                                                                       (3, "type", "enum")]
    missing = domain.parse_directory_csv(b"id;last_name\ne1;A\n")
    assert [(e["line"], e["loc"]) for e in missing.errors] == [(1, ["header", "type"])]


def test_pronote_ids_json_and_csv() -> None:
    assert schemas.parse_pronote_ids_json(b'[{"pronote_id": "P1", "ent_id": "e1"}]').associations == {"P1": "e1"}
    up = domain.parse_pronote_ids_csv(b"ent_id;pronote_id\ne1;P1\ne2;P2\n\n")
    assert up.associations == {"P1": "e1", "P2": "e2"} and not up.errors
    bad = domain.parse_pronote_ids_csv(b"P1;e1\nP1;e9\nP3\n")
    assert [(e["line"], e["type"]) for e in bad.errors] == [(2, "duplicate"), (3, "columns")]


def test_stage_decision_counts_and_the_bilan_actions() -> None:
    from tests.factory import make_school

    tt = make_school("XS", 3, year=2026).timetable
    t = next(iter(tt.teachers))
    results = {"teachers": KindResult({}, {}, [Unmatched(t, "ambiguous", ("a", "b"))]),
               "students": KindResult({s: f"e{s}" for s in tt.students}),
               "classes": KindResult({c: c for c in tt.classes}), "groups": KindResult({g: g for g in tt.groups})}
    m = domain.establishment_matching("1754", tt, "f" * 64, results)
    actions = [{"action": "groups_created", "success": 3, "error": 0}]
    result = domain.decide([m], actions=actions, kept=2)
    assert result.step_status is StepStatus.WARNING and result.outcome is None
    assert result.counts is not None and result.counts["teachers"] == {"matched": 0, "unmatched": 1}
    assert result.counts["students"] == {"matched": len(tt.students), "unmatched": 0}
    assert result.counts["actions"] == actions and result.counts["groups_created"] == 3
    assert "Groups: 3 created" in (result.message_en or "") and result.counts["courses_kept"] == 2
    paused = domain.decide([m], paused=True)
    assert paused.outcome is ImportStatus.AWAITING_SELECTION and "awaiting your selection" in (paused.message_en or "")
    assert m.unmatched["teachers"] == [[t, "ambiguous"]]  # stored without names: the model has them
    csv_text = domain.unreconciled_csv("teachers", domain.unmatched_rows(tt, "teachers", m.unmatched["teachers"]))
    assert csv_text.splitlines()[0] == "ident;last_name;first_name;birth_date;class;reason"
    assert csv_text.splitlines()[1].startswith(f"{t};") and csv_text.splitlines()[1].endswith(";ambiguous")
    none = domain.decide([domain.establishment_matching("1754", tt, None, None)])
    assert none.step_status is StepStatus.WARNING and "No ENT directory" in (none.message_en or "")
    assert none.counts is not None and none.counts["students"]["unmatched"] == len(tt.students)


def test_directory_json_an_id_written_as_a_number_or_as_text_is_one_id() -> None:
    classes = [{"id": 7, "name": "a"}, {"id": " 7 ", "name": "b"}, {"id": 7.5, "name": "c"}, {"id": "7.5", "name": "d"}]
    up = schemas.parse_directory_json(json.dumps({"classes": classes}).encode())
    assert [(e["loc"], e["type"]) for e in up.errors] == [(["body", "classes", 1, "id"], "duplicate"),
                                                         (["body", "classes", 3, "id"], "duplicate")]
