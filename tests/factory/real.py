"""Helpers for the real exports (tests/fixtures/real): where they are, what they hold, and moving one to the
next school year so that its sessions lie ahead of the import (a 2013 export makes no session today).

Also `schema_constructs()`: a small export that uses every construct of Index Education's published schema
(ExportEmploiDuTemps.xsd, format 1.1) a real file may carry — dates with a time zone, times with fractions and
a zone, numbers with a sign, leading zeros and spaces, every optional attribute, empty optional sections —
so that the parser's acceptance of them is tested (and, under `make test-real`, their validity by the XSD).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from tests.factory import current_school_year

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CORPUS = ROOT / "tests" / "fixtures" / "real"
_SHIFTED = re.compile(rb'\b(DateDebut|DateFin|DatePremierJourSemaine1|DateEntree|DateSortie)="(\d{4}-\d{2}-\d{2})')


def corpus_dir() -> Path:
    """$EDT_REAL_CORPUS, else tests/fixtures/real (the files are not in the repository: see its README)."""
    return Path(os.environ.get("EDT_REAL_CORPUS") or DEFAULT_CORPUS)


@dataclass(frozen=True)
class RealFile:
    """One real export of the corpus and what an independent reading of it found (lxml only, none of the
    product's code: tests/fixtures/real/README.md says how)."""

    path: str  # relative to the corpus directory
    sha256: str
    kind: str  # clear | encrypted
    uai: str
    students: int = 0
    sessions: int = 0  # distinct (course, day, first place) the file's week bitmaps make
    warnings: frozenset[str] = frozenset()
    partners: tuple[str, ...] = ()


CORPUS: tuple[RealFile, ...] = (
    RealFile("laclasse/Edt_To_LaclasseCom_0134567A_Enclair.1e061cb.xml",
             "f2d1eba4bc99ca3029cab851c48f8c45b0577d083acaf9791b5c4f50baafc823", "clear", "0134567A", 428, 16431,
             frozenset({"dangling_reference", "slot_without_resources", "birth_date_empty", "homonyms"})),
    RealFile("laclasse/Edt_To_LaclasseCom_0134567A_Enclair.492d7cd.xml",
             "118bf8d30a1e3ce217ac72ba8b76b77e1e3904a91f35b38a35f1195c4014b480", "clear", "0134567A", 426, 14226,
             frozenset({"dangling_reference", "slot_without_resources"})),
    RealFile("laclasse/Edt_To_LaclasseCom_0134567A_Enclair.ba4222b.xml",
             "3427eed503884e3b2efa78f2288e4391072c3e2c8f762378504944012c40992e", "clear", "0134567U", 426, 14226,
             frozenset({"dangling_reference", "slot_without_resources"})),
    RealFile("laclasse/Edt_To_LaclasseCom_0134567A.1e061cb.xml",
             "bd9c363a5ad54a79a55050fedb8548ffb7ac6f8ab88fb3b9cdd532d3a7a02d35", "encrypted", "0134567A",
             partners=("INDEXEDUCATION", "LaclasseCom")),
    RealFile("laclasse/Edt_To_LaclasseCom_0134567A.25f189c.xml",
             "43506a15ae0bbe16d91b3c3a93a2ba1d12b863fbb5452c38dc5aa13adfcf8de7", "encrypted", "0134567A",
             partners=("INDEXEDUCATION", "LaclasseCom")),
    RealFile("laclasse/Edt_To_LaclasseCom_0134567A.ba4222b.xml",
             "a5c06dca01455eb19e8ce6e52e18bda8571fd985a44732cba116ca84167012f1", "encrypted", "0134567U",
             partners=("INDEXEDUCATION", "LaclasseCom")),
    RealFile("laclasse/Edt_To_LaclasseCom_0134567A_indented.7ad24b6.xml",
             "0f7e9a880d1bf2780f4252c30aebd4d26957baf5376a8ff31cd86c8910e03f15", "encrypted", "0134567A",
             partners=("INDEXEDUCATION", "LaclasseCom")),
)
SCHEMAS = {"clear": "laclasse/ExportEmploiDuTemps.xsd", "encrypted": "laclasse/ConteneurExportChiffre.xsd"}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def first_monday_of_september(year: int) -> date:
    d = date(year, 9, 1)
    return d + timedelta(days=(7 - d.weekday()) % 7)


def shift_weeks(data: bytes, year: int) -> int:
    """Whole weeks that move the export's week 1 to the first Monday of September `year`."""
    m = re.search(rb'DatePremierJourSemaine1="(\d{4}-\d{2}-\d{2})', data)
    if m is None:
        raise ValueError("no DatePremierJourSemaine1")
    week1 = date.fromisoformat(m.group(1).decode())
    return round((first_monday_of_september(year) - week1).days / 7)


def to_school_year(data: bytes, year: int | None = None) -> bytes:
    """The same export moved by whole weeks (weekdays and week bitmaps unchanged) so that its school year is
    `year`'s (default: the next one, wholly ahead of today). The school year's dates and the students'
    class and part entry/exit dates move; birth dates do not."""
    weeks = shift_weeks(data, current_school_year() + 1 if year is None else year)
    delta = timedelta(weeks=weeks)
    return _SHIFTED.sub(lambda m: m.group(1) + b'="' + str(date.fromisoformat(m.group(2).decode()) + delta).encode(),
                        data)


def schema_constructs(uai: str = "0490856P") -> bytes:
    """An export using every construct of the 1.1 schema that real files may carry (see the module)."""
    year = current_school_year()
    week1 = first_monday_of_september(year)
    start, end = week1 + timedelta(days=1), date(year + 1, 8, 31)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ExportEmploiDuTemps xmlns="http://www.index-education.com/exportemploidutemps" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" Version="1.1" UAI="{uai}">
  <AnneeScolaire DateDebut="{start}+02:00" DateFin="{end}Z" DatePremierJourSemaine1="{week1}"/>
  <GrilleHoraire NombrePlacesParJour="+3" DureePlace=" 55 ">
    <JoursOuvres><Jour>1</Jour><Jour> 2 </Jour><Jour>3</Jour><Jour>4</Jour><Jour>5</Jour><Jour>6</Jour>\
<Jour>7</Jour></JoursOuvres>
    <PlacesParJour>
      <Place Numero="0" LibelleHeureDebut="08:00:00" LibelleHeureFin="08:55:00.000"/>
      <Place Numero="+1" LibelleHeureDebut="09:00:00+01:00" LibelleHeureFin="09:55:00Z"/>
      <Place Numero="02" LibelleHeureDebut="10:05:00.5" LibelleHeureFin="11:00:00"/>
    </PlacesParJour>
  </GrilleHoraire>
  <Matieres>
    <Matiere Ident="07" Code="MATHS" Libelle="MATHEMATIQUES"/>
    <Matiere Ident="8" Code="" Libelle=""/>
  </Matieres>
  <Professeurs>
    <Professeur Ident=" 2" Nom="DUPONT" Prenom="Marie" CodePostal="13013" DateNaissance="1975-04-03+01:00" \
IDSTS="A12" IDPN="PN-1" IDCAS="cas.1"/>
  </Professeurs>
  <Classes>
    <Classe Ident="3" Nom="3A"><PartieDeClasse Ident="30"/><PartieDeClasse Ident="31"/></Classe>
    <Classe Ident="4" Nom="3B"/>
  </Classes>
  <Groupes>
    <Groupe Ident="5" Nom="3AB LATIN"><Classe Ident="4"/><PartieDeClasse Ident="30"/></Groupe>
  </Groupes>
  <Salles>
    <Salle Ident="9" Nom="S101"/>
  </Salles>
  <Eleves>
    <Eleve Ident="12" Nom="MARTIN" Prenom="Léa" DateNaissance="2012-03-04" Sexe="Feminin" CodePostal="13013" \
NumeroNational="012345678AB" IDSconet="4567" IDPN="PN-12" IDCAS="cas.12" IDEtablissement="E12">
      <Responsable Ident="90" RespLegal="1" Nom="MARTIN" Prenom="Paul" Civilite="M" Adresse1="1 rue" Adresse2="b" \
Adresse3="c" Adresse4="d" CodePostal="13013" Ville="MARSEILLE" IDPN="PN-90" IDCAS="cas.90"/>
      <Responsable Ident="91" RespLegal="2" Nom="MARTIN" Prenom="Anne" Adresse1="1 rue"/>
      <Classe Ident="3" DateEntree="{start}" DateSortie="{end}+02:00"/>
      <PartieDeClasse Ident="30" DateEntree="{start}Z" DateSortie="{end}"/>
    </Eleve>
    <Eleve Ident="13" Nom="BERNARD" Prenom="Hugo" DateNaissance="2012-05-06Z" Sexe="Masculin">
      <Classe Ident="4" DateEntree="{start}" DateSortie="{end}"/>
    </Eleve>
  </Eleves>
  <Cours>
    <Cours Jour="1" NumeroPlaceDebut="0" NombrePlaces="2">
      <Matiere Ident="7"/>
      <Professeur Ident="2" Semaines="+{(1 << 45) - 2}"/>
      <Classe Ident="03" Semaines="{(1 << 45) - 2}"/>
      <Salle Ident="9" Semaines=" {(1 << 45) - 2} "/>
    </Cours>
    <Cours Jour="2" NumeroPlaceDebut="2" NombrePlaces="1">
      <Matiere Ident="7"/>
      <Groupe Ident="5" Semaines="6"/>
    </Cours>
    <Cours Jour="3" NumeroPlaceDebut="1" NombrePlaces="1">
      <Matiere Ident="8"/>
      <PartieDeClasse Ident="31" Semaines="2"/>
    </Cours>
  </Cours>
</ExportEmploiDuTemps>
""".encode()
