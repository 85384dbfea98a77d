"""Minimisation (docs/privacy.md): the canonical model holds only what a rule of the seeds reads; what an
export also carries about people is recognised (never reported as unknown) and never kept."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from services.validator.domain import parse_export
from shared.timetable import Person, Student, dumps
from tests.factory import make_school
from tests.unit.validator.conftest import PARTNER

# Each field a person keeps, and the rule that reads it.
READ_BY = {
    "ident": "every reference of a slot, group or membership",
    "last_name": "reconciliation by name (seeds 002, 003)",
    "first_name": "reconciliation by name (seeds 002, 003)",
    "birth_date": "reconciliation of students: « date de naissance pour les apprenants » (seed 003)",
    "pronote_id": "reconciliation rules 1-2: IdPN association, PRONOTE id (seed 004)",
    "cas_id": "reconciliation rule 3: CAS id (seed 003)",
    "classes": "memberships with their dates (seed 001 « rattachements »)",
    "parts": "memberships with their dates (seed 001 « rattachements »)",
}


def test_model_holds_only_what_a_rule_reads() -> None:
    assert {f.name for f in dataclasses.fields(Student)} <= set(READ_BY)
    assert {f.name for f in dataclasses.fields(Person)} <= set(READ_BY) - {"birth_date", "classes", "parts"}


def test_what_no_rule_reads_is_never_stored(tmp_path: Path) -> None:
    school = make_school("S", 3, newer=True)
    data = school.to_xml_bytes()
    path = tmp_path / "export.xml"
    path.write_bytes(data)
    result = parse_export(path, partner_name=PARTNER, private_key=None)
    assert result.ok and result.timetable is not None
    blob = dumps(result.timetable)
    # in the file: sex, national ids, teachers' birth dates and STS ids, parents with their addresses
    national = {str(v["NumeroNational"]) for (el, _), v in school.extras.items()
                if el == "Eleve" and v["NumeroNational"]}
    sts = {str(v["IDSTS"]) for (el, _), v in school.extras.items() if el == "Professeur" and v["IDSTS"]}
    births = {str(v["DateNaissance"]) for (el, _), v in school.extras.items()
              if el == "Professeur" and v["DateNaissance"]}
    assert national and sts and births
    assert b'Sexe="Feminin"' in data and b"<Responsable" in data and b'CodePostal="49000"' in data
    for value in [*national, *sts, *births, "Masculin", "Feminin", "12 rue des Écoles", "49000", "ANGERS", "M,Mme"]:
        assert value.encode() in data
        assert value.encode() not in blob, value
    # recognised: none of these is reported as an unknown element or attribute
    unknown = [w.detail.get("names", {}) for w in result.warnings if w.code == "unknown_elements"]
    named = {name for names in unknown for name in names}
    assert not {n for n in named if re.match(r"(Eleve|Professeur|Personnel)\b", n)}, named
