"""Individual checks and format details of the validator's parser (design.md §7, §8, §8a)."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import pytest

from services.validator.domain import (
    AcceptedSoftware,
    Limits,
    ParseResult,
    dangling_references,
    parse_export,
    parse_software,
    parse_time_label,
    split_by_establishment,
)
from shared.reconcile import FilePerson
from shared.timetable import Person, derive_courses, dumps, sessions_for_course
from tests.factory import encrypt_export, make_school
from tests.unit.validator.conftest import PARTNER

# A file laid out like a real EDT export (tabs, "Domaine" comments, IdPN, empty birth date, a Cours with a
# subject only, a student changing class, parents, an unknown section).
REAL_LIKE = """<?xml version="1.0" encoding="UTF-8"?>
<ExportEmploiDuTemps xmlns="http://www.index-education.com/exportemploidutemps" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" Version="1.1" UAI="0134567a">
  <AnneeScolaire DateDebut="2012-09-04" DateFin="2013-08-31" DatePremierJourSemaine1="2012-09-03"/>
  <GrilleHoraire NombrePlacesParJour="4" DureePlace="30">
\t<JoursOuvres>
\t  <Jour>1</Jour>
\t  <Jour>2</Jour>
\t</JoursOuvres>
\t<PlacesParJour>
\t  <Place Numero="0" LibelleHeureDebut="08:00:00" LibelleHeureFin="08:30:00"/>
\t  <Place Numero="1" LibelleHeureDebut="08h30" LibelleHeureFin="09h00"/>
\t  <Place Numero="2" LibelleHeureDebut="09:00" LibelleHeureFin="09:30"/>
\t  <Place Numero="3" LibelleHeureDebut="09:30:00" LibelleHeureFin="10:00:00"/>
\t</PlacesParJour>
  </GrilleHoraire>
  <Matieres>
\t<Matiere Ident="79" Code="FRANC" Libelle="FRANCAIS"/>
\t<Matiere Ident="64" Code="EPS" Libelle="ED.PHYSIQUE &amp; SPORT."/>
  </Matieres>
  <Professeurs>
\t<Professeur Ident="2" Nom="ALBERT" Prenom="MARIE DESI" CodePostal="13013" IdPN="KVX8NTH4DPQ3SYU7"/>
\t<Professeur Ident="3" Nom="BACHELET" Prenom="HÉLÈNE" IDPN="VWZCNXMPYB9T34S5" DateNaissance="1970-02-03"/>
  </Professeurs>
  <Classes>
\t<Classe Ident="2" Nom="3A">
\t  <PartieDeClasse Ident="44"/>
\t</Classe>
\t<Classe Ident="3" Nom="3B">
\t  <PartieDeClasse Ident="22"/>
\t</Classe>
  </Classes>
  <Groupes>
\t<Groupe Ident="3" Nom="3AB WAL">
\t  <PartieDeClasse Ident="22"/>
\t  <PartieDeClasse Ident="44"/>
\t</Groupe>
  </Groupes>
  <Salles>
\t<Salle Ident="15521" Nom="S101"/>
  </Salles>
  <Eleves>
\t<Eleve Ident="738" Nom="ALUN" Prenom="Alain" DateNaissance="" Sexe="Masculin" IdPN="YQDSFXR89JWBUNGV">
\t  <Responsable Ident="14001" RespLegal="1" Nom="ALUN" Prenom="MOHAMMED" Adresse1="12 rue du moulin"/>
\t  <Classe Ident="2" DateEntree="2012-09-04" DateSortie="2012-12-03"/>
\t  <Classe Ident="3" DateEntree="2012-12-04" DateSortie="2013-08-31"/>
\t  <PartieDeClasse Ident="44" DateEntree="2012-09-04" DateSortie="2012-12-03"/>
\t  <PartieDeClasse Ident="22" DateEntree="2012-12-04" DateSortie="2013-08-31"/>
\t</Eleve>
  </Eleves>
  <Absences><Absence Ident="1"><Eleve Ident="738"/></Absence></Absences>
  <Cours>
\t<Cours Jour="1" NumeroPlaceDebut="2" NombrePlaces="2">
\t  <Matiere Ident="64"/>
\t</Cours>
\t<Cours Jour="2" NumeroPlaceDebut="0" NombrePlaces="2" SemainesAnnulation="8">
\t  <Matiere Ident="79"/>
\t  <Professeur Ident="2" Semaines="14">
\t\t<!--Domaine : [1..3]-->
\t  </Professeur>
\t  <Classe Ident="2" Semaines="14">
\t\t<!--Domaine : [1..3]-->
\t  </Classe>
\t  <Salle Ident="15521" Semaines="2">
\t\t<!--Domaine : [1]-->
\t  </Salle>
\t  <Etiquette Ident="9"/>
\t</Cours>
  </Cours>
</ExportEmploiDuTemps>
"""


def parse_text(tmp_path: Path, text: str | bytes, **kwargs: object) -> ParseResult:
    path = tmp_path / "export.xml"
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    kwargs.setdefault("partner_name", PARTNER)
    kwargs.setdefault("private_key", None)
    return parse_export(path, **kwargs)  # type: ignore[arg-type]


def test_real_like_export_is_read_as_real_importers_read_it(tmp_path: Path) -> None:
    result = parse_text(tmp_path, REAL_LIKE, expected_uais=["0134567A"])
    assert result.errors == []
    tt = result.timetable
    assert tt is not None
    assert tt.uai == "0134567A"
    assert [p.start for p in tt.grid.places] == [480, 510, 540, 570]
    assert tt.teachers["2"].pronote_id == "KVX8NTH4DPQ3SYU7"  # IdPN spelling
    assert tt.teachers["3"].pronote_id == "VWZCNXMPYB9T34S5"
    assert not hasattr(tt.teachers["3"], "birth_date")  # DateNaissance="1970-02-03": no rule reads a teacher's
    student = tt.students["738"]
    assert student.birth_date is None
    assert not hasattr(student, "sex")  # Sexe="Masculin", the Responsable: read, recognised, never kept
    assert b"MOHAMMED" not in dumps(tt) and b"moulin" not in dumps(tt) and b"Masculin" not in dumps(tt)
    assert not [w for w in result.warnings if w.code == "unknown_elements"
                and any(n.startswith("Eleve") for n in w.detail.get("names", {}))]
    assert [m.ident for m in student.classes] == ["2", "3"]
    assert student.classes[0].end == date(2012, 12, 3)
    assert tt.groups["3"].parts == ("22", "44")
    [course] = derive_courses(tt)
    assert course.label == "FRANCAIS - 3A"
    sessions = list(sessions_for_course(tt, course))
    # weeks 1..3, week 3 cancelled (SemainesAnnulation=8); the room only in week 1
    assert [(s.start, s.end, s.rooms) for s in sessions] == [
        (datetime(2012, 9, 4, 8, 0), datetime(2012, 9, 4, 9, 0), ("15521",)),
        (datetime(2012, 9, 11, 8, 0), datetime(2012, 9, 11, 9, 0), ()),
    ]
    warnings = {w.code for w in result.warnings}
    assert {"birth_date_empty", "slot_without_resources"} <= warnings
    assert result.meta.ignored_sections == ["Absences"]


def test_file_without_namespace_is_read_with_a_warning(tmp_path: Path) -> None:
    text = REAL_LIKE.replace(' xmlns="http://www.index-education.com/exportemploidutemps"', "")
    result = parse_text(tmp_path, text)
    assert result.ok
    assert "namespace_unexpected" in {w.code for w in result.warnings}


@pytest.mark.parametrize(
    ("logiciel", "expected"),
    [
        ("PRONOTE Monoposte-PRONOTE 2013 - 0.5.14", ("PRONOTE", 2013)),
        ("EDT Réseau-EDT 2021 - 0.2.3", ("EDT", 2021)),
        ("EDT 2014", ("EDT", 2014)),
        ("UnDeuxTemps", ("UNDEUXTEMPS", None)),
        ("", (None, None)),
    ],
)
def test_parse_software(logiciel: str, expected: tuple[str | None, int | None]) -> None:
    assert parse_software(logiciel) == expected


@pytest.mark.parametrize(("label", "minutes"), [("08:00:00", 480), ("08h00", 480), ("8:05", 485), ("17H55", 1075)])
def test_time_labels(label: str, minutes: int) -> None:
    assert parse_time_label(label) == minutes


@pytest.mark.parametrize("label", ["", "8", "25:00", "08:75", "huit heures"])
def test_bad_time_labels(label: str) -> None:
    with pytest.raises(ValueError):
        parse_time_label(label)


def test_accepted_software_is_a_setting(tmp_path: Path, keypair: tuple[bytes, bytes]) -> None:
    school = make_school("XS", 1)
    data = school.encrypt(keypair[1], PARTNER, software="EDT Monoposte-EDT 2012 - 1.0")
    assert parse_text(tmp_path, data, private_key=keypair[0]).codes() == ["unsupported_software_year"]
    relaxed = AcceptedSoftware(min_year=2010)
    assert parse_text(tmp_path, data, private_key=keypair[0], accepted=relaxed).ok
    only_pronote = AcceptedSoftware(products=frozenset({"PRONOTE"}))
    assert parse_text(tmp_path, data, private_key=keypair[0], accepted=only_pronote).codes() == ["unknown_software"]


@pytest.mark.parametrize("attr", [None, "true", "false"])
def test_compresse_avant_chiffrement(tmp_path: Path, keypair: tuple[bytes, bytes], attr: str | None) -> None:
    school = make_school("XS", 2)
    data = school.encrypt(keypair[1], PARTNER, compress=attr != "false", compressed_attr=attr)
    result = parse_text(tmp_path, data, private_key=keypair[0])
    assert result.ok, result.errors
    assert result.meta.compressed is (attr != "false")
    assert result.timetable == school.timetable


def test_private_key_in_der_and_verification_of_inflated_bytes(tmp_path: Path, keypair: tuple[bytes, bytes]) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(keypair[0], password=None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    school = make_school("XS", 3)
    data = school.encrypt(keypair[1], PARTNER, hash_of_inflated=True)
    result = parse_text(tmp_path, data, private_key=der)
    assert result.ok, result.errors
    assert result.timetable == school.timetable


def test_two_partners_pick_ours(tmp_path: Path, keypair: tuple[bytes, bytes]) -> None:
    school = make_school("XS", 3)
    data = school.encrypt(keypair[1], PARTNER, other_partners=("INDEXEDUCATION",))
    assert parse_text(tmp_path, data, private_key=keypair[0]).ok
    assert parse_text(tmp_path, data, private_key=keypair[0], partner_name="AUTRE").codes() == ["key_absent"]


def test_container_uai_differing_from_the_export_is_a_warning(tmp_path: Path, keypair: tuple[bytes, bytes]) -> None:
    school = make_school("XS", 3)
    data = encrypt_export(school.to_xml_bytes(), keypair[1], PARTNER, uai="0000000A")
    result = parse_text(tmp_path, data, private_key=keypair[0])
    assert result.ok
    assert "container_uai_differs" in {w.code for w in result.warnings}


def test_encryption_required_accepts_encrypted_files(tmp_path: Path, keypair: tuple[bytes, bytes]) -> None:
    school = make_school("XS", 3)
    assert parse_text(tmp_path, school.encrypt(keypair[1], PARTNER), private_key=keypair[0],
                      require_encryption=True).ok  # fmt: skip


def test_dangling_references_are_counted_not_crashed(tmp_path: Path) -> None:
    text = REAL_LIKE.replace('<Professeur Ident="2" Semaines', '<Professeur Ident="99" Semaines')
    text = text.replace('<Classe Ident="2" Semaines', '<Classe Ident="98" Semaines')
    text = text.replace('<PartieDeClasse Ident="22"/>\n\t  <PartieDeClasse Ident="44"/>',
                        '<PartieDeClasse Ident="7"/>\n\t  <PartieDeClasse Ident="8"/>')  # fmt: skip
    # one sound course, so that the file stays usable once the dangling references are dropped
    text = text.replace("  </Cours>\n</Export", '\t<Cours Jour="1" NumeroPlaceDebut="0" NombrePlaces="1">\n'
                        '\t  <Matiere Ident="79"/>\n\t  <Classe Ident="3" Semaines="14"/>\n\t</Cours>\n'
                        "  </Cours>\n</Export")
    result = parse_text(tmp_path, text)
    assert result.ok  # a dangling reference is a warning: the reference is dropped, the import goes on
    dangling = {(p.detail["source"], p.detail["target"]): p.detail["count"] for p in result.warnings
                if p.code == "dangling_reference"}  # fmt: skip
    assert dangling == {("Cours", "professeurs"): 1, ("Cours", "classes"): 1, ("Groupe", "parties de classe"): 2}
    assert result.timetable is not None
    assert "99" not in {r.ident for s in result.timetable.slots for r in s.teachers}


def test_missing_attributes_say_which_element_and_line(tmp_path: Path) -> None:
    text = REAL_LIKE.replace('<Matiere Ident="79" Code="FRANC"', '<Matiere Code="FRANC"')
    text = text.replace('<Salle Ident="15521" Nom="S101"/>', '<Salle Ident="15521"/>')
    result = parse_text(tmp_path, text)
    found = {(p.code, p.detail["element"], p.detail["attribute"]): p.detail["line"] for p in result.warnings
             if p.code in ("element_incomplete", "attribute_missing")}  # fmt: skip
    lines = text.splitlines()
    matiere = next(i for i, line in enumerate(lines, 1) if '<Matiere Code="FRANC"' in line)
    salle = next(i for i, line in enumerate(lines, 1) if '<Salle Ident="15521"/>' in line)
    # a subject without its Ident cannot be referred to: ignored; a room without its name: kept, name empty
    assert found == {("element_incomplete", "Matiere", "Ident"): matiere, ("attribute_missing", "Salle", "Nom"): salle}
    assert f"ligne {matiere}" in next(p.message_fr for p in result.warnings if p.detail.get("element") == "Matiere")


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    text = REAL_LIKE.replace('NumeroPlaceDebut="0"', 'NumeroPlaceDebut="9"').replace(
        '<Professeur Ident="2" Semaines', '<Professeur Ident="99" Semaines'
    )
    result = parse_text(tmp_path, text)
    assert {"dangling_reference", "slot_out_of_grid"} <= {p.code for p in result.warnings}


@pytest.mark.parametrize(
    ("dates", "code"),
    [
        (('DateDebut="2012-09-04"', 'DateDebut="2013-09-04"'), "school_year_incoherent"),  # after DateFin
        (('DateFin="2013-08-31"', 'DateFin="2014-08-31"'), "school_year_incoherent"),  # two years
        (('DatePremierJourSemaine1="2012-09-03"', 'DatePremierJourSemaine1="2012-10-01"'), "school_year_incoherent"),
        (('DateDebut="2012-09-04"', 'DateDebut="4 septembre"'), "invalid_value"),
    ],
)
def test_incoherent_school_years(tmp_path: Path, dates: tuple[str, str], code: str) -> None:
    assert parse_text(tmp_path, REAL_LIKE.replace(*dates)).codes() == [code]


def test_week1_not_a_monday_is_a_warning(tmp_path: Path) -> None:
    result = parse_text(tmp_path, REAL_LIKE.replace('DatePremierJourSemaine1="2012-09-03"',
                                                    'DatePremierJourSemaine1="2012-09-04"'))  # fmt: skip
    assert result.ok
    assert "week1_not_monday" in {w.code for w in result.warnings}


def test_uai_check_names_both_and_ignores_case(tmp_path: Path) -> None:
    assert parse_text(tmp_path, REAL_LIKE, expected_uais=["0134567a"]).ok
    result = parse_text(tmp_path, REAL_LIKE, expected_uais=["0490856P"])
    [problem] = result.errors
    assert problem.code == "uai_mismatch"
    assert "0134567A" in problem.message_fr and "0490856P" in problem.message_fr


def test_input_size_cap(tmp_path: Path) -> None:
    assert parse_text(tmp_path, REAL_LIKE, limits=Limits(max_input_bytes=1000)).codes() == ["file_too_large"]


def test_lying_zip_header_is_caught_while_streaming(tmp_path: Path) -> None:
    import zipfile

    school = make_school("XS", 1)
    path = tmp_path / "lying.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("EDT.xml", school.to_xml_bytes())
    data = bytearray(path.read_bytes())
    # shrink the declared uncompressed size in the central directory: the header now lies
    central = data.index(b"PK\x01\x02")
    data[central + 24 : central + 28] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    result = parse_export(path, partner_name=PARTNER, private_key=None)
    assert result.codes() and result.codes()[0] in {"zip_corrupt", "zip_member_too_large"}


def test_homonym_warning_uses_the_reconcilers_name_key() -> None:
    """One normaliser: the validator warns of exactly the homonyms reconciliation will find ambiguous
    ("Cœur"/"Coeur", "Le Goff"/"Legoff", "N'Diaye"/"N DIAYE")."""
    from services.validator.format.checks import check_people
    from services.validator.format.context import Ctx
    from shared.reconcile import Directory, DirectoryPerson, match_persons
    from tests.factory import make_school

    base = make_school("XS", 1).timetable
    pairs = [("Cœur", "Anne"), ("COEUR", "anne"), ("Le Goff", "Yann"), ("LEGOFF", "Yann"), ("N'Diaye", "Awa"),
             ("N DIAYE", "AWA")]
    teachers = {str(i): Person(str(i), last, first) for i, (last, first) in enumerate(pairs)}
    ctx = Ctx(Limits(), AcceptedSoftware())
    check_people(replace(base, teachers=teachers), ctx)
    homonyms = [p for p in ctx.warnings if p.code == "homonyms" and p.detail["kind"] == "professeurs"]
    assert homonyms and homonyms[0].detail["count"] == 6
    directory = Directory(persons=tuple(DirectoryPerson(f"e{i}", "teacher", last, first)
                                        for i, (last, first) in enumerate(pairs[::2])))
    result = match_persons([FilePerson(t.ident, t.last_name, t.first_name) for t in teachers.values()], directory,
                           "teachers")
    assert not result.matched and len(result.unmatched) == 6  # each pair claims one entry: ambiguous


# -------------------------------------------------------------------------------- establishments


def test_cite_scolaire_needs_every_uai_in_the_site(tmp_path: Path) -> None:
    school = make_school("XL", 2)
    uais = [e.uai for e in school.timetable.establishments.values()]
    data = school.to_xml_bytes()
    assert parse_text(tmp_path, data, expected_uais=uais).ok
    result = parse_text(tmp_path, data, expected_uais=uais[:1])
    assert result.codes() == ["establishment_not_in_site"]
    assert uais[1] in result.errors[0].message_en


def test_split_by_establishment_attributes_everything_by_uai(tmp_path: Path) -> None:
    school = make_school("XL", 2)
    tt = school.timetable
    parts = split_by_establishment(tt)
    assert list(parts) == [e.uai for e in tt.establishments.values()]
    college, lycee = parts.values()
    # classes, students and groups: each in exactly one establishment
    assert set(college.classes) | set(lycee.classes) == set(tt.classes)
    assert not set(college.classes) & set(lycee.classes)
    assert all(c.name[0] in "6543" for c in college.classes.values())
    assert set(college.students) | set(lycee.students) == set(tt.students)
    assert not set(college.students) & set(lycee.students)
    assert not set(college.groups) & set(lycee.groups)
    # every course lands in one establishment, with the same sessions
    keys = [c.key for c in derive_courses(tt)]
    split_keys = [c.key for c in derive_courses(college)] + [c.key for c in derive_courses(lycee)]
    assert sorted(split_keys) == sorted(keys)
    for part in (college, lycee):
        assert dangling_references(part) == []  # each part stands alone
        assert len(part.establishments) == 1
        for slot in part.slots:
            assert all(r.ident in part.classes for r in slot.classes)
            assert all(r.ident in part.groups for r in slot.groups)
            assert all(r.ident in part.teachers for r in slot.teachers)
        course = derive_courses(part)[0]
        assert list(sessions_for_course(part, course))
    assert set(college.teachers) != set(lycee.teachers)


def test_split_of_a_single_establishment_is_itself() -> None:
    tt = make_school("XS", 1).timetable
    assert split_by_establishment(tt) == {tt.uai: tt}
    assert split_by_establishment(dataclasses.replace(tt, establishments={})) == {tt.uai: tt}
