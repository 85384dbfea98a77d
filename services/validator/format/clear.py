"""The clear `ExportEmploiDuTemps` document streamed into the canonical timetable.

It reads every construct Index Education's schema (ExportEmploiDuTemps.xsd, format 1.1) allows — `xs:date`
and `xs:time` with a time zone or fractional seconds, numbers with a sign, leading zeros or spaces, empty
sections — and the newer elements real exports add (Etablissements, Personnels, Materiels, SemainesAnnulation,
SemainesInclusion, Eleve under Cours or Groupe, the `IdPN` spelling). What a real file gets wrong is counted
and reported once per kind, with the policy's code (see `problems.POLICY`): an element without its Ident is
ignored, a missing name is left empty, an impossible date is ignored, an unknown element or attribute is
listed and skipped. Only a missing or unusable school year or time grid rejects the file here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

from services.validator.format.checks import (
    check_people,
    check_slots,
    check_usable,
    resolve_references,
    unknown_summary,
)
from services.validator.format.container import check_format_version
from services.validator.format.context import Ctx
from services.validator.format.stream import local, namespace
from shared.timetable import (
    CLEAR_NAMESPACE,
    CLEAR_ROOT,
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

# -------------------------------------------------------------------------------------------- values


def parse_date(value: str) -> date:
    """`xs:date` ('2013-09-03', with or without a time zone: '2013-09-03+02:00', '2013-09-03Z') or the
    French 'DD/MM/YYYY'."""
    text = value.strip()
    if len(text) >= 10 and text[2] == "/" and text[5] == "/":
        return date(int(text[6:10]), int(text[3:5]), int(text[0:2]))
    return date.fromisoformat(text[:10])


_TIME_RE = re.compile(r"\s*(\d{1,2})\s*[:hH]\s*(\d{2})(?:\s*:\s*(\d{2})(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}:\d{2})?\s*")


def parse_time_label(value: str) -> int:
    """'08:00:00', '08:00:00.000', '08:00:00+01:00' (`xs:time`), '08:00' or '08h00' → minutes after midnight.
    A time zone is dropped: the grid is in the establishment's local time."""
    m = _TIME_RE.fullmatch(value or "")
    if not m:
        raise ValueError(value)
    hours, minutes = int(m.group(1)), int(m.group(2))
    if hours > 24 or minutes > 59 or (hours == 24 and minutes):
        raise ValueError(value)
    return hours * 60 + minutes


def bitmap(value: str) -> int:
    n = int(value)
    if n < 0 or n >= 1 << 64:
        raise ValueError(value)
    return n


def canonical_ident(value: str) -> str:
    """Idents are `xs:unsignedInt` in the schema: ' 012 ' and '+12' are the ident 12. Non-numeric idents
    (the schema leaves PartieDeClasse's untyped under Cours) are kept as written, trimmed."""
    if value.isdigit() and value[:1] != "0" and value.isascii():  # the common case, already canonical
        return value
    text = value.strip()
    digits = text[1:] if text[:1] == "+" else text
    return str(int(digits)) if digits.isdigit() and digits.isascii() else text


# ------------------------------------------------------------------------------- known names (schema)
# Known is not kept: the parser recognises these names (so that they are not reported as unknown) but the
# model holds only what a rule reads (shared/timetable/model.py, docs/privacy.md).

_PERSON_ATTRS = frozenset({"Ident", "Nom", "Prenom", "CodePostal", "DateNaissance", "IDSTS", "IDPN", "IDCAS",
                           "IdPN", "IdCAS"})
_WEEKS_ATTRS = frozenset({"Ident", "Semaines", "SemainesInclusion"})
_MEMBER_ATTRS = frozenset({"Ident", "DateEntree", "DateSortie"})
_IDENT_ONLY = frozenset({"Ident"})
# element → its attributes and, for each child element, the child's attributes (schema 1.1 and newer exports)
KNOWN: dict[str, tuple[frozenset[str], dict[str, frozenset[str]]]] = {
    "Matiere": (frozenset({"Ident", "Code", "Libelle"}), {}),
    "Professeur": (_PERSON_ATTRS, {}),
    "Personnel": (_PERSON_ATTRS, {}),
    "Etablissement": (frozenset({"Ident", "Numero", "Nom"}), {}),
    "Classe": (frozenset({"Ident", "Nom"}), {"PartieDeClasse": frozenset({"Ident", "Nom"}),
                                              "Etablissement": _IDENT_ONLY}),
    "Groupe": (frozenset({"Ident", "Nom"}), {"Classe": _IDENT_ONLY, "PartieDeClasse": _IDENT_ONLY,
                                              "Eleve": _IDENT_ONLY}),
    "Salle": (frozenset({"Ident", "Nom"}), {}),
    "Materiel": (frozenset({"Ident", "Nom"}), {}),
    "Eleve": (frozenset({"Ident", "Nom", "Prenom", "DateNaissance", "Sexe", "CodePostal", "NumeroNational",
                         "IDSconet", "IDPN", "IDCAS", "IdPN", "IdCAS", "IDEtablissement"}),
              {"Classe": _MEMBER_ATTRS, "PartieDeClasse": _MEMBER_ATTRS,
               "Responsable": frozenset({"Ident", "RespLegal", "Nom", "Prenom", "Civilite", "Adresse1", "Adresse2",
                                         "Adresse3", "Adresse4", "CodePostal", "Ville", "IDPN", "IDCAS", "IdPN",
                                         "IdCAS"})}),
    # Annuel: laclasse's 2018 importer reads it (whole-year slot); the week bitmaps already say it
    "Cours": (frozenset({"Jour", "NumeroPlaceDebut", "NombrePlaces", "SemainesAnnulation", "Annuel"}),
              {"Matiere": _IDENT_ONLY, **{name: _WEEKS_ATTRS for name in (
                  "Professeur", "Classe", "PartieDeClasse", "Groupe", "Salle", "Materiel", "Eleve", "Personnel")}}),
}

# Cours child → index in the slot's reference lists
_REF_FIELDS = {"Professeur": 0, "Classe": 1, "PartieDeClasse": 2, "Groupe": 3, "Salle": 4, "Materiel": 5,
               "Eleve": 6, "Personnel": 7}


class _Tally:
    """Occurrences of one kind of oddity: how many, the first line, the first value."""

    __slots__ = ("count", "line", "value")

    def __init__(self, line: int | None, value: Any) -> None:
        self.count, self.line, self.value = 1, line, value


class ClearParser:
    """Streams an `ExportEmploiDuTemps` document into a Timetable, collecting problems by kind."""

    KEEP_SUBTREE = frozenset(["GrilleHoraire", "AnneeScolaire"])

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.subjects: dict[str, Subject] = {}
        self.teachers: dict[str, Person] = {}
        self.staff: dict[str, Person] = {}
        self.establishments: dict[str, Establishment] = {}
        self.classes: dict[str, SchoolClass] = {}
        self.groups: dict[str, Group] = {}
        self.rooms: dict[str, Room] = {}
        self.equipment: dict[str, Room] = {}
        self.students: dict[str, Student] = {}
        self.slots: list[Slot] = []
        self.slot_lines: list[int] = []
        self.year: SchoolYear | None = None
        self.grid: TimeGrid | None = None
        self.sections: set[str] = set()
        self.tallies: dict[tuple[str, str, str], _Tally] = {}  # (code, element, attribute) → tally
        self.duplicates: dict[str, list[str]] = {}
        self.unknown: dict[str, int] = {}  # 'Section', 'Element@attribute', 'Element/child' → count
        self.counters: dict[str, int] = {}
        self.dates: dict[str, date] = {}
        self.names_checked: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}

    # ---------------------------------------------------------------- helpers
    def _tally(self, code: str, element: str, attribute: str, el: Any, value: Any = None) -> None:
        key = (code, element, attribute)
        entry = self.tallies.get(key)
        if entry is None:
            self.tallies[key] = _Tally(el.sourceline, value)
        else:
            entry.count += 1

    def _count(self, code: str) -> None:
        self.counters[code] = self.counters.get(code, 0) + 1

    def _check_names(self, el: Any, element: str) -> None:
        """Unknown attributes of an entity and unknown children (with theirs): listed, never fatal."""
        attrs, children = KNOWN[element]
        names = tuple(el.keys())
        unknown_here = self.names_checked.get((element, names))
        if unknown_here is None:  # the same attributes over and over: looked up once per set
            unknown_here = self.names_checked[(element, names)] = tuple(
                f"{element}@{name}" for name in names if name not in attrs and name[0] != "{")  # xsi:… is XML's
        for key in unknown_here:
            self.unknown[key] = self.unknown.get(key, 0) + 1
        for child in el:
            tag = child.tag
            if not isinstance(tag, str):
                continue
            cname = tag[tag.rfind("}") + 1:]
            known = children.get(cname)
            if known is None:
                key = f"{element}/{cname}"
                self.unknown[key] = self.unknown.get(key, 0) + 1
                continue
            for name in child.keys():
                if name not in known and name[0] != "{":
                    key = f"{element}/{cname}@{name}"
                    self.unknown[key] = self.unknown.get(key, 0) + 1

    def _ident(self, el: Any, element: str) -> str | None:
        raw = el.get("Ident")
        ident = canonical_ident(raw) if raw is not None else ""
        if not ident:
            self._tally("element_incomplete", element, "Ident", el, raw)
            return None
        return ident

    def _text(self, el: Any, element: str, attribute: str) -> str:
        value = el.get(attribute)
        if value is None:
            self._tally("attribute_missing", element, attribute, el)
            return ""
        return value

    def _put(self, store: dict[str, Any], element: str, ident: str, value: Any) -> None:
        if ident in store:  # first wins, as in the public importers
            self.duplicates.setdefault(element, []).append(ident)
            return
        store[ident] = value

    def _opt_date(self, el: Any, element: str, attribute: str) -> date | None:
        value = el.get(attribute)
        if not value:
            return None
        known = self.dates.get(value)  # a school has a few hundred distinct dates in ~20,000 attributes
        if known is not None:
            return known
        if not value.strip():
            return None
        try:
            parsed = self.dates[value] = parse_date(value)
            return parsed
        except ValueError:
            self._tally("date_invalid", element, attribute, el, value)
            return None

    def _birth_date(self, el: Any, element: str) -> date | None:
        born = self._opt_date(el, element, "DateNaissance")
        # An impossible birth date (after the school year, or before 1900) is as good as none.
        if born is not None and (born.year < 1900 or (self.year is not None and born > self.year.end)):
            self._tally("date_invalid", element, "DateNaissance", el, el.get("DateNaissance"))
            return None
        return born

    @staticmethod
    def _idpn(el: Any) -> str | None:
        return (el.get("IDPN") or el.get("IdPN") or "").strip() or None  # real files spell it both ways

    @staticmethod
    def _idcas(el: Any) -> str | None:
        return (el.get("IDCAS") or el.get("IdCAS") or "").strip() or None

    # ---------------------------------------------------------------- sections
    def _school_year(self, el: Any) -> None:
        names = ("DateDebut", "DateFin", "DatePremierJourSemaine1")
        values = [el.get(n) for n in names]
        dates: list[date] = []
        for name, value in zip(names, values, strict=True):
            if value is None:
                self.ctx.report("missing_attribute", element="AnneeScolaire", attribute=name, line=el.sourceline,
                                count=1)
                continue
            try:
                dates.append(parse_date(value))
            except ValueError:
                self.ctx.report("invalid_value", element="AnneeScolaire", attribute=name, value=value,
                                line=el.sourceline, count=1)
        if len(dates) == 3:
            self.year = SchoolYear(*dates)

    def _time_grid(self, el: Any) -> None:
        days: list[int] = []
        places: dict[int, Place] = {}
        for child in el.iter():
            name = local(child.tag)
            if name == "Jour":
                try:
                    days.append(int((child.text or "").strip()))
                except ValueError:
                    self._tally("element_incomplete", "Jour", "(texte)", child, child.text)
            elif name == "Place":
                self._place(child, places)
        minutes: int | None = None
        per_day = len(places)
        for attribute in ("NombrePlacesParJour", "DureePlace"):
            raw = el.get(attribute)
            try:
                value = int(raw) if raw is not None else None
            except ValueError:
                self._tally("value_ignored", "GrilleHoraire", attribute, el, raw)
                value = None
            if raw is None:
                self._tally("attribute_missing", "GrilleHoraire", attribute, el)
            if attribute == "NombrePlacesParJour" and value is not None:
                per_day = value
            elif value is not None:
                minutes = value
        ordered = tuple(sorted(places.values()))
        if minutes is None:  # only informative: each place has its own times
            minutes = ordered[0].end - ordered[0].start if ordered else 0
        self.grid = TimeGrid(per_day, minutes, tuple(days), ordered)

    def _place(self, el: Any, places: dict[int, Place]) -> None:
        values: list[int] = []
        parse: Callable[[str], int]
        for attribute, parse in (("Numero", int), ("LibelleHeureDebut", parse_time_label),
                                 ("LibelleHeureFin", parse_time_label)):
            raw = el.get(attribute)
            try:
                values.append(parse(raw))
            except (TypeError, ValueError):
                self._tally("element_incomplete", "Place", attribute, el, raw)
                return
        number, start, end = values
        if number in places:
            self.duplicates.setdefault("Place", []).append(str(number))
            return
        places[number] = Place(number, start, end)

    def _subject(self, el: Any) -> None:
        self._check_names(el, "Matiere")
        ident = self._ident(el, "Matiere")
        if ident is not None:
            self._put(self.subjects, "Matiere", ident,
                      Subject(ident, self._text(el, "Matiere", "Code"), self._text(el, "Matiere", "Libelle")))

    def _person(self, el: Any, element: str, store: dict[str, Person]) -> None:
        self._check_names(el, element)
        ident = self._ident(el, element)
        if ident is None:
            return
        # DateNaissance, IDSTS, CodePostal: known attributes no rule reads for a teacher, never kept
        person = Person(ident, self._text(el, element, "Nom"), self._text(el, element, "Prenom"), self._idpn(el),
                        self._idcas(el))
        self._put(store, element, ident, person)

    def _teacher(self, el: Any) -> None:
        self._person(el, "Professeur", self.teachers)

    def _staff(self, el: Any) -> None:
        self._person(el, "Personnel", self.staff)

    def _establishment(self, el: Any) -> None:
        self._check_names(el, "Etablissement")
        ident = self._ident(el, "Etablissement")
        if ident is None:
            return
        uai = (el.get("Numero") or "").strip().upper()
        if not uai:  # an establishment without its UAI cannot be told apart: ignored
            self._tally("element_incomplete", "Etablissement", "Numero", el, el.get("Numero"))
            return
        self._put(self.establishments, "Etablissement", ident, Establishment(ident, uai, el.get("Nom") or ""))

    def _child_idents(self, el: Any, element: str) -> dict[str, list[str]]:
        """The Idents of an entity's known children (unknown ones were listed by `_check_names`)."""
        known = KNOWN[element][1]
        out: dict[str, list[str]] = {}
        for child in el:
            if not isinstance(child.tag, str):
                continue
            name = local(child.tag)
            if name not in known:
                continue
            ident = self._ident(child, f"{element}/{name}")
            if ident is not None:
                out.setdefault(name, []).append(ident)
        return out

    def _class(self, el: Any) -> None:
        self._check_names(el, "Classe")
        ident = self._ident(el, "Classe")
        if ident is None:
            return
        kids = self._child_idents(el, "Classe")
        self._put(self.classes, "Classe", ident,
                  SchoolClass(ident, self._text(el, "Classe", "Nom"), tuple(kids.get("PartieDeClasse", ())),
                              tuple(kids.get("Etablissement", ()))))

    def _group(self, el: Any) -> None:
        self._check_names(el, "Groupe")
        ident = self._ident(el, "Groupe")
        if ident is None:
            return
        kids = self._child_idents(el, "Groupe")
        self._put(self.groups, "Groupe", ident,
                  Group(ident, self._text(el, "Groupe", "Nom"), tuple(kids.get("Classe", ())),
                        tuple(kids.get("PartieDeClasse", ())), tuple(kids.get("Eleve", ()))))

    def _room(self, el: Any) -> None:
        self._check_names(el, "Salle")
        ident = self._ident(el, "Salle")
        if ident is not None:
            self._put(self.rooms, "Salle", ident, Room(ident, self._text(el, "Salle", "Nom")))

    def _equipment(self, el: Any) -> None:
        self._check_names(el, "Materiel")
        ident = self._ident(el, "Materiel")
        if ident is not None:
            self._put(self.equipment, "Materiel", ident, Room(ident, self._text(el, "Materiel", "Nom")))

    def _membership(self, child: Any, element: str) -> Membership | None:
        ident = self._ident(child, element)
        if ident is None:
            return None
        start = self._opt_date(child, element, "DateEntree")
        end = self._opt_date(child, element, "DateSortie")
        if start is not None and end is not None and end < start:
            # An exit before the entry says nothing usable: the membership holds for the whole year.
            self._tally("date_invalid", element, "DateEntree/DateSortie", child,
                        f"{child.get('DateEntree')}/{child.get('DateSortie')}")
            start = end = None
        return Membership(ident, start, end)

    def _student(self, el: Any) -> None:
        self._check_names(el, "Eleve")
        ident = self._ident(el, "Eleve")
        if ident is None:
            return
        raw_birth = el.get("DateNaissance")
        if raw_birth is None or not raw_birth.strip():
            self._count("birth_date_empty")  # real files carry DateNaissance="" (and some omit it)
        classes: list[Membership] = []
        parts: list[Membership] = []
        for child in el:
            tag = child.tag
            name = tag[tag.rfind("}") + 1:] if isinstance(tag, str) else ""
            if name == "Classe":
                target = classes
            elif name == "PartieDeClasse":
                target = parts
            else:
                continue  # Responsable (parents) and newer children: not the timetable's business, never kept
            membership = self._membership(child, f"Eleve/{name}")
            if membership is not None:
                target.append(membership)
        # Sexe, NumeroNational, CodePostal, IDSconet: known attributes no rule reads, never kept
        student = Student(ident, self._text(el, "Eleve", "Nom"), self._text(el, "Eleve", "Prenom"),
                          self._birth_date(el, "Eleve"), self._idpn(el), self._idcas(el), tuple(classes), tuple(parts))
        self._put(self.students, "Eleve", ident, student)

    def _slot(self, el: Any) -> None:
        self._check_names(el, "Cours")
        get = el.get
        values = []
        for attribute in ("Jour", "NumeroPlaceDebut", "NombrePlaces"):
            raw = get(attribute)
            try:
                values.append(int(raw))
            except (TypeError, ValueError):
                self._tally("slot_incomplete", "Cours", attribute, el, raw)
                return
        day, first, count = values
        cancelled = 0
        cancelled_raw = get("SemainesAnnulation")
        if cancelled_raw and cancelled_raw.strip():
            try:
                cancelled = bitmap(cancelled_raw)
            except ValueError:
                self._tally("value_ignored", "Cours", "SemainesAnnulation", el, cancelled_raw)
        subject: str | None = None
        refs: list[list[Ref]] = [[], [], [], [], [], [], [], []]
        fields = _REF_FIELDS
        for child in el:
            tag = child.tag
            name = tag[tag.rfind("}") + 1:] if isinstance(tag, str) else ""
            if name == "Matiere":
                ident = self._ident(child, "Cours/Matiere")
                if ident is None:
                    continue
                if subject is None:
                    subject = ident
                else:
                    self._count("slot_several_subjects")
                continue
            index = fields.get(name)
            if index is None:
                continue
            ident = self._ident(child, f"Cours/{name}")
            if ident is None:
                continue
            weeks = child.get("Semaines")
            if weeks is None:
                weeks = child.get("SemainesInclusion")
            try:
                refs[index].append(Ref(ident, bitmap(weeks)))
            except (TypeError, ValueError):
                self._tally("element_incomplete", f"Cours/{name}", "Semaines", child, weeks)
        if subject is None:
            self._tally("slot_without_subject", "Cours", "Matiere", el)
            return
        self.slots.append(Slot(day, first, count, subject, cancelled, tuple(refs[0]), tuple(refs[1]),
                               tuple(refs[2]), tuple(refs[3]), tuple(refs[4]), tuple(refs[5]), tuple(refs[6]),
                               tuple(refs[7])))
        self.slot_lines.append(el.sourceline or 0)

    # ---------------------------------------------------------------- the loop
    def run(self, it: Any, root: Any) -> Timetable | None:
        ctx, limits = self.ctx, self.ctx.limits
        ns = namespace(root.tag)
        if ns != CLEAR_NAMESPACE:
            ctx.report("namespace_unexpected", found=ns)
        prefix = "{" + ns + "}" if ns else ""
        version, uai = root.get("Version"), root.get("UAI")
        ctx.meta.format_version = version
        if version is None:
            raise ctx.fail("missing_attribute", element=CLEAR_ROOT, attribute="Version", line=root.sourceline, count=1)
        check_format_version(version, ctx, CLEAR_ROOT)
        entity_handlers: dict[str, Callable[[Any], None]] = {
            prefix + "Matieres": self._subject,
            prefix + "Professeurs": self._teacher,
            prefix + "Personnels": self._staff,
            prefix + "Etablissements": self._establishment,
            prefix + "Classes": self._class,
            prefix + "Groupes": self._group,
            prefix + "Salles": self._room,
            prefix + "Materiels": self._equipment,
            prefix + "Eleves": self._student,
            prefix + "Cours": self._slot,
        }
        keep = {prefix + n for n in self.KEEP_SUBTREE}
        noop: Callable[[Any], None] = lambda el: None  # noqa: E731 - unknown sections are read and dropped
        max_depth, max_elements = limits.max_depth, limits.max_elements
        handler: Callable[[Any], None] | None = None
        depth, count = 1, 1
        for event, el in it:
            if event == "start":
                depth += 1
                count += 1
                if depth > max_depth:
                    raise ctx.fail("xml_too_deep", depth=depth, line=el.sourceline, limit=max_depth)
                if count > max_elements:
                    raise ctx.fail("xml_too_many_elements", limit=max_elements)
                if depth == 2:
                    tag = el.tag
                    handler = entity_handlers.get(tag)
                    if handler is None and tag not in keep:
                        handler = noop
                continue
            if depth == 3:
                if handler is not None:
                    handler(el)
                    el.clear()
                    if el.getprevious() is not None:
                        del el.getparent()[0]
            elif depth == 2:
                name = local(el.tag)
                self.sections.add(name)
                if name == "AnneeScolaire":
                    self._school_year(el)
                elif name == "GrilleHoraire":
                    self._time_grid(el)
                elif handler is noop:
                    ctx.meta.ignored_sections.append(name)
                    self.unknown[name] = self.unknown.get(name, 0) + 1
                el.clear()
                if el.getprevious() is not None:
                    del el.getparent()[0]
                handler = None
            depth -= 1
        ctx.meta.elements = count
        if uai is None or not uai.strip():
            ctx.report("missing_attribute", element=CLEAR_ROOT, attribute="UAI", line=root.sourceline, count=1)
        ctx.meta.uai = uai
        return self._finish((uai or "").strip().upper(), version)

    # ---------------------------------------------------------------- checks
    def _finish(self, uai: str, version: str) -> Timetable | None:
        ctx = self.ctx
        for required in ("AnneeScolaire", "GrilleHoraire"):
            if required not in self.sections:
                ctx.report("missing_element", element=required, parent=CLEAR_ROOT, line=None)
        for optional in ("Matieres", "Cours", "Professeurs", "Classes", "Groupes", "Salles", "Eleves"):
            if optional not in self.sections:
                ctx.report("section_missing", element=optional)
        for (code, element, attribute), tally in self.tallies.items():
            ctx.report(code, element=element, attribute=attribute, line=tally.line, count=tally.count,
                       value=tally.value)
        for element, idents in self.duplicates.items():
            ctx.report("duplicate_ident", element=element, count=len(idents), samples=idents[:5])
        for code, n in self.counters.items():
            ctx.report(code, count=n)
        if self.unknown:
            ctx.report("unknown_elements", samples=unknown_summary(self.unknown), names=dict(self.unknown))
        if self.year is not None:
            self._check_year(self.year)
        if self.grid is not None:
            self._check_grid(self.grid)
        if self.year is None or self.grid is None or ctx.errors:
            return None
        tt = Timetable(
            uai=uai,
            format_version=version,
            school_year=self.year,
            grid=self.grid,
            subjects=self.subjects,
            teachers=self.teachers,
            staff=self.staff,
            establishments=self.establishments,
            classes=self.classes,
            groups=self.groups,
            rooms=self.rooms,
            equipment=self.equipment,
            students=self.students,
            slots=tuple(self.slots),
        )
        tt, lines = resolve_references(tt, self.slot_lines, ctx)
        tt = check_slots(tt, lines, ctx)
        check_people(tt, ctx)
        check_usable(tt, ctx)
        return None if ctx.errors else tt

    def _check_year(self, y: SchoolYear) -> None:
        ctx = self.ctx
        reasons = []
        if y.end <= y.start:
            reasons.append(f"DateFin {y.end} ≤ DateDebut {y.start}")
        elif (y.end - y.start).days > 400:
            reasons.append(f"{(y.end - y.start).days} jours entre DateDebut {y.start} et DateFin {y.end}")
        if abs((y.start - y.week1).days) > 7:
            reasons.append(f"DatePremierJourSemaine1 {y.week1} loin de DateDebut {y.start}")
        if reasons:
            ctx.report("school_year_incoherent", reason="; ".join(reasons), start=str(y.start), end=str(y.end),
                       week1=str(y.week1))
        elif y.week1.weekday() != 0:
            ctx.report("week1_not_monday", date=str(y.week1))

    def _check_grid(self, g: TimeGrid) -> None:
        ctx = self.ctx
        if not g.places:
            ctx.report("grid_invalid", reason="aucune place / no place")
            return
        bad = [p.number for p in g.places if p.end <= p.start]
        if bad:
            ctx.report("grid_invalid", reason=f"places {bad[:5]}: fin ≤ début / end ≤ start")
        bad_days = [d for d in g.days if not 1 <= d <= 7]
        if bad_days:
            ctx.report("grid_invalid", reason=f"jours {bad_days} hors de 1..7 / days out of 1..7")
        if g.places_per_day != len(g.places):
            ctx.report("grid_place_count_mismatch", declared=g.places_per_day, found=len(g.places))
