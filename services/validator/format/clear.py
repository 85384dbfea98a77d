"""The clear `ExportEmploiDuTemps` document streamed into the canonical timetable."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

from services.validator.format.checks import check_people, check_references, check_slots
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

# -------------------------------------------------------------------------------------- clear file


def _parse_date(value: str) -> date:
    return date.fromisoformat(value.strip()[:10])


_TIME_RE = re.compile(r"\s*(\d{1,2})\s*[:hH]\s*(\d{2})(?:\s*:\s*(\d{2}))?\s*")


def parse_time_label(value: str) -> int:
    """'08:00:00', '08:00' or '08h00' → minutes after midnight."""
    m = _TIME_RE.fullmatch(value or "")
    if not m:
        raise ValueError(value)
    hours, minutes = int(m.group(1)), int(m.group(2))
    if hours > 24 or minutes > 59:
        raise ValueError(value)
    return hours * 60 + minutes


def _bitmap(value: str) -> int:
    n = int(value)
    if n < 0 or n >= 1 << 64:
        raise ValueError(value)
    return n


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
        # (element, attribute) → [count, first line]; (element, attribute) → [count, line, value]
        self.missing: dict[tuple[str, str], list[Any]] = {}
        self.invalid: dict[tuple[str, str], list[Any]] = {}
        self.duplicates: dict[str, list[str]] = {}
        self.counters: dict[str, list[Any]] = {}

    # ---------------------------------------------------------------- helpers
    def _missing(self, element: str, attribute: str, el: Any) -> None:
        entry = self.missing.get((element, attribute))
        if entry is None:
            self.missing[(element, attribute)] = [1, el.sourceline]
        else:
            entry[0] += 1

    def _invalid(self, element: str, attribute: str, value: Any, el: Any) -> None:
        entry = self.invalid.get((element, attribute))
        if entry is None:
            self.invalid[(element, attribute)] = [1, el.sourceline, value]
        else:
            entry[0] += 1

    def _count(self, code: str, sample: Any = None) -> None:
        entry = self.counters.get(code)
        if entry is None:
            self.counters[code] = [1, sample]
        else:
            entry[0] += 1

    def _required(self, el: Any, element: str, *names: str) -> list[str] | None:
        get = el.get
        values = [get(n) for n in names]
        if None in values:
            for n, v in zip(names, values, strict=True):
                if v is None:
                    self._missing(element, n, el)
            return None
        return values  # type: ignore[return-value]

    def _put(self, store: dict[str, Any], element: str, ident: str, value: Any) -> None:
        if ident in store:
            self.duplicates.setdefault(element, []).append(ident)
            return
        store[ident] = value

    def _opt_date(self, el: Any, element: str, attribute: str) -> date | None:
        value = el.get(attribute)
        if not value:
            return None
        try:
            return _parse_date(value)
        except ValueError:
            self._invalid(element, attribute, value, el)
            return None

    @staticmethod
    def _idpn(el: Any) -> str | None:
        return el.get("IDPN") or el.get("IdPN") or None  # real files spell it both ways

    @staticmethod
    def _idcas(el: Any) -> str | None:
        return el.get("IDCAS") or el.get("IdCAS") or None

    # ---------------------------------------------------------------- sections
    def _school_year(self, el: Any) -> None:
        values = self._required(el, "AnneeScolaire", "DateDebut", "DateFin", "DatePremierJourSemaine1")
        if values is None:
            return
        try:
            start, end, week1 = (_parse_date(v) for v in values)
        except ValueError:
            for n, v in zip(("DateDebut", "DateFin", "DatePremierJourSemaine1"), values, strict=True):
                try:
                    _parse_date(v)
                except ValueError:
                    self._invalid("AnneeScolaire", n, v, el)
            return
        self.year = SchoolYear(start, end, week1)

    def _time_grid(self, el: Any) -> None:
        values = self._required(el, "GrilleHoraire", "NombrePlacesParJour", "DureePlace")
        if values is None:
            return
        try:
            per_day, minutes = int(values[0]), int(values[1])
        except ValueError:
            self._invalid("GrilleHoraire", "NombrePlacesParJour/DureePlace", values, el)
            return
        days: list[int] = []
        places: dict[int, Place] = {}
        for child in el.iter():
            name = local(child.tag)
            if name == "Jour":
                try:
                    days.append(int((child.text or "").strip()))
                except ValueError:
                    self._invalid("Jour", "(texte)", child.text, child)
            elif name == "Place":
                pv = self._required(child, "Place", "Numero", "LibelleHeureDebut", "LibelleHeureFin")
                if pv is None:
                    continue
                try:
                    number = int(pv[0])
                except ValueError:
                    self._invalid("Place", "Numero", pv[0], child)
                    continue
                try:
                    start = parse_time_label(pv[1])
                except ValueError:
                    self._invalid("Place", "LibelleHeureDebut", pv[1], child)
                    continue
                try:
                    end = parse_time_label(pv[2])
                except ValueError:
                    self._invalid("Place", "LibelleHeureFin", pv[2], child)
                    continue
                if number in places:
                    self.duplicates.setdefault("Place", []).append(str(number))
                    continue
                places[number] = Place(number, start, end)
        self.grid = TimeGrid(per_day, minutes, tuple(days), tuple(sorted(places.values())))

    def _subject(self, el: Any) -> None:
        v = self._required(el, "Matiere", "Ident", "Code", "Libelle")
        if v is not None:
            self._put(self.subjects, "Matiere", v[0], Subject(v[0], v[1], v[2]))

    def _person(self, el: Any, element: str, store: dict[str, Person]) -> None:
        v = self._required(el, element, "Ident", "Nom", "Prenom")
        if v is None:
            return
        person = Person(
            v[0],
            v[1],
            v[2],
            self._opt_date(el, element, "DateNaissance"),
            self._idpn(el),
            self._idcas(el),
            el.get("IDSTS") or None,
        )
        self._put(store, element, v[0], person)

    def _teacher(self, el: Any) -> None:
        self._person(el, "Professeur", self.teachers)

    def _staff(self, el: Any) -> None:
        self._person(el, "Personnel", self.staff)

    def _establishment(self, el: Any) -> None:
        v = self._required(el, "Etablissement", "Ident", "Numero")
        if v is not None:
            self._put(
                self.establishments,
                "Etablissement",
                v[0],
                Establishment(v[0], v[1].strip().upper(), el.get("Nom") or ""),
            )

    def _child_idents(self, el: Any, element: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for child in el:
            ident = child.get("Ident")
            name = local(child.tag)
            if ident is None:
                if name in ("PartieDeClasse", "Classe", "Eleve", "Etablissement"):
                    self._missing(f"{element}/{name}", "Ident", child)
                continue
            out.setdefault(name, []).append(ident)
        return out

    def _class(self, el: Any) -> None:
        v = self._required(el, "Classe", "Ident", "Nom")
        if v is None:
            return
        kids = self._child_idents(el, "Classe")
        self._put(
            self.classes,
            "Classe",
            v[0],
            SchoolClass(v[0], v[1], tuple(kids.get("PartieDeClasse", ())), tuple(kids.get("Etablissement", ()))),
        )

    def _group(self, el: Any) -> None:
        v = self._required(el, "Groupe", "Ident", "Nom")
        if v is None:
            return
        kids = self._child_idents(el, "Groupe")
        group = Group(
            v[0],
            v[1],
            tuple(kids.get("Classe", ())),
            tuple(kids.get("PartieDeClasse", ())),
            tuple(kids.get("Eleve", ())),
        )
        self._put(self.groups, "Groupe", v[0], group)

    def _room(self, el: Any) -> None:
        v = self._required(el, "Salle", "Ident", "Nom")
        if v is not None:
            self._put(self.rooms, "Salle", v[0], Room(v[0], v[1]))

    def _equipment(self, el: Any) -> None:
        v = self._required(el, "Materiel", "Ident", "Nom")
        if v is not None:
            self._put(self.equipment, "Materiel", v[0], Room(v[0], v[1]))

    def _student(self, el: Any) -> None:
        v = self._required(el, "Eleve", "Ident", "Nom", "Prenom")
        if v is None:
            return
        birth_raw = el.get("DateNaissance")
        if birth_raw is None:
            self._missing("Eleve", "DateNaissance", el)
        elif not birth_raw.strip():
            self._count("birth_date_empty")  # real files carry DateNaissance=""
        birth = self._opt_date(el, "Eleve", "DateNaissance")
        classes: list[Membership] = []
        parts: list[Membership] = []
        for child in el:
            name = local(child.tag)
            if name == "Classe":
                target = classes
            elif name == "PartieDeClasse":
                target = parts
            else:
                continue  # Responsable and newer children
            ident = child.get("Ident")
            if ident is None:
                self._missing(f"Eleve/{name}", "Ident", child)
                continue
            target.append(
                Membership(
                    ident,
                    self._opt_date(child, f"Eleve/{name}", "DateEntree"),
                    self._opt_date(child, f"Eleve/{name}", "DateSortie"),
                )
            )
        student = Student(
            v[0],
            v[1],
            v[2],
            birth,
            el.get("Sexe") or None,
            self._idpn(el),
            self._idcas(el),
            el.get("NumeroNational") or None,
            tuple(classes),
            tuple(parts),
        )
        self._put(self.students, "Eleve", v[0], student)

    _REF_FIELDS = {
        "Professeur": 0,
        "Classe": 1,
        "PartieDeClasse": 2,
        "Groupe": 3,
        "Salle": 4,
        "Materiel": 5,
        "Eleve": 6,
        "Personnel": 7,
    }

    def _slot(self, el: Any) -> None:
        get = el.get
        jour, debut, nombre = get("Jour"), get("NumeroPlaceDebut"), get("NombrePlaces")
        if jour is None or debut is None or nombre is None:
            self._required(el, "Cours", "Jour", "NumeroPlaceDebut", "NombrePlaces")
            return
        try:
            day, first, count = int(jour), int(debut), int(nombre)
        except ValueError:
            self._invalid("Cours", "Jour/NumeroPlaceDebut/NombrePlaces", f"{jour}/{debut}/{nombre}", el)
            return
        cancelled_raw = get("SemainesAnnulation")
        cancelled = 0
        if cancelled_raw:
            try:
                cancelled = _bitmap(cancelled_raw)
            except ValueError:
                self._invalid("Cours", "SemainesAnnulation", cancelled_raw, el)
        subject: str | None = None
        refs: list[list[Ref]] = [[], [], [], [], [], [], [], []]
        fields = self._REF_FIELDS
        for child in el:
            name = child.tag[child.tag.rfind("}") + 1 :] if isinstance(child.tag, str) else ""
            if name == "Matiere":
                ident = child.get("Ident")
                if ident is None:
                    self._missing("Cours/Matiere", "Ident", child)
                elif subject is None:
                    subject = ident
                else:
                    self._count("slot_several_subjects")
                continue
            index = fields.get(name)
            if index is None:
                continue
            cget = child.get
            ident, weeks = cget("Ident"), cget("Semaines")
            if weeks is None:
                weeks = cget("SemainesInclusion")
            if ident is None or weeks is None:
                if ident is None:
                    self._missing(f"Cours/{name}", "Ident", child)
                if weeks is None:
                    self._missing(f"Cours/{name}", "Semaines", child)
                continue
            try:
                refs[index].append(Ref(ident, _bitmap(weeks)))
            except ValueError:
                self._invalid(f"Cours/{name}", "Semaines", weeks, child)
        if subject is None:
            self._missing("Cours", "Matiere", el)
            return
        self.slots.append(
            Slot(
                day,
                first,
                count,
                subject,
                cancelled,
                tuple(refs[0]),
                tuple(refs[1]),
                tuple(refs[2]),
                tuple(refs[3]),
                tuple(refs[4]),
                tuple(refs[5]),
                tuple(refs[6]),
                tuple(refs[7]),
            )
        )
        self.slot_lines.append(el.sourceline or 0)

    # ---------------------------------------------------------------- the loop
    def run(self, it: Any, root: Any) -> Timetable | None:
        ctx, limits = self.ctx, self.ctx.limits
        ns = namespace(root.tag)
        if ns != CLEAR_NAMESPACE:
            ctx.warn("namespace_unexpected", found=ns)
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
                el.clear()
                if el.getprevious() is not None:
                    del el.getparent()[0]
                handler = None
            depth -= 1
        ctx.meta.elements = count
        if uai is None:
            ctx.error("missing_attribute", element=CLEAR_ROOT, attribute="UAI", line=root.sourceline, count=1)
        ctx.meta.uai = uai
        return self._finish(uai or "", version)

    # ---------------------------------------------------------------- checks
    def _finish(self, uai: str, version: str) -> Timetable | None:
        ctx = self.ctx
        for required in ("AnneeScolaire", "GrilleHoraire", "Matieres", "Cours"):
            if required not in self.sections:
                ctx.error("missing_element", element=required, parent=CLEAR_ROOT, line=None)
        for optional in ("Professeurs", "Classes", "Groupes", "Salles", "Eleves"):
            if optional not in self.sections:
                ctx.warn("section_missing", element=optional)
        for (element, attribute), (count, line) in self.missing.items():
            if attribute in ("Matiere",):
                ctx.error("missing_element", element="Matiere", parent=element, line=line, count=count)
            else:
                ctx.error("missing_attribute", element=element, attribute=attribute, line=line, count=count)
        for (element, attribute), (count, line, value) in self.invalid.items():
            ctx.error("invalid_value", element=element, attribute=attribute, line=line, count=count, value=value)
        for element, idents in self.duplicates.items():
            ctx.error("duplicate_ident", element=element, count=len(idents), samples=idents[:5])
        if "birth_date_empty" in self.counters:
            ctx.warn("birth_date_empty", count=self.counters["birth_date_empty"][0])
        if "slot_several_subjects" in self.counters:
            ctx.warn("slot_several_subjects", count=self.counters["slot_several_subjects"][0])
        if self.year is not None:
            self._check_year(self.year)
        if self.grid is not None:
            self._check_grid(self.grid)
        if self.year is None or self.grid is None or ctx.errors:
            return None
        tt = Timetable(
            uai=uai.strip().upper(),
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
        check_references(tt, ctx)
        check_slots(tt, self.slot_lines, ctx)
        check_people(tt, ctx)
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
            ctx.error(
                "school_year_incoherent",
                reason="; ".join(reasons),
                start=str(y.start),
                end=str(y.end),
                week1=str(y.week1),
            )
        elif y.week1.weekday() != 0:
            ctx.warn("week1_not_monday", date=str(y.week1))

    def _check_grid(self, g: TimeGrid) -> None:
        ctx = self.ctx
        if not g.places:
            ctx.error("grid_invalid", reason="aucune place / no place")
            return
        bad = [p.number for p in g.places if p.end <= p.start]
        if bad:
            ctx.error("grid_invalid", reason=f"places {bad[:5]}: fin ≤ début / end ≤ start")
        bad_days = [d for d in g.days if not 1 <= d <= 7]
        if bad_days:
            ctx.error("grid_invalid", reason=f"jours {bad_days} hors de 1..7 / days out of 1..7")
        if g.places_per_day != len(g.places):
            ctx.warn("grid_place_count_mismatch", declared=g.places_per_day, found=len(g.places))
