"""Reconciliation ("rapprochement", design.md §7; seeds 002–004), pure: no I/O here.

Links the people, classes and groups of a canonical timetable (`shared.timetable`) to the entries of the
establishment's ENT directory. The reconciler owns the directory and publishes it as a JSON snapshot in the
blob store (`Directory.to_json`); the thresholds and reconciler stages both call `reconcile` on it, so the
unreconciled figures of threshold control and the reconciler's lists always agree.

Rules, in order, one function each (the first rule that yields a candidate decides):

1. `by_association` — the person's PRONOTE id (IDPN) → the ENT id stored from the IdPN export
   ("Exporter les ID Pronote", seed 004);
2. `by_pronote_id` — the directory person carrying the same PRONOTE id;
3. `by_cas_id` — the directory person carrying the same CAS id (seed 003 "l'association CAS est enregistrée");
4. `by_name` — last + first name normalised (`normalise`: case, accents, hyphens, apostrophes, spaces), plus
   the birth date for students (seed 003 "nom, prénom (date de naissance pour les apprenants)").

Never a guess: two candidates — or two people of the file claiming the same directory entry, by an id or by
name — leave the person unmatched as `ambiguous`; no candidate at all is `not_found`. An id rule pointing at
an entry that is absent from the directory (or of another kind) yields no candidate and the next rule is
tried.
Teachers match directory persons of kind teacher or staff, students kind student. Classes and groups match
by normalised name (`match_named`).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, Protocol

from shared.timetable import Timetable

SNAPSHOT_VERSION = 1
PERSON_KINDS = ("teacher", "staff", "student")
KINDS = ("teachers", "students", "classes", "groups")
NOT_FOUND = "not_found"
AMBIGUOUS = "ambiguous"
NO_DIRECTORY = "no_directory"  # not a matching outcome: used by callers when no directory exists

Kind = Literal["teachers", "students", "classes", "groups"]

# Directory kinds a file person of each kind may match.
ALLOWED_KINDS: dict[str, frozenset[str]] = {
    "teachers": frozenset({"teacher", "staff"}),
    "students": frozenset({"student"}),
}


# --------------------------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class DirectoryPerson:
    id: str  # the ENT's id of the person
    kind: str  # teacher | staff | student
    last_name: str
    first_name: str
    birth_date: date | None = None
    pronote_id: str | None = None
    cas_id: str | None = None


@dataclass(frozen=True, slots=True)
class DirectoryUnit:
    """A class or group of the ENT."""

    id: str
    name: str


@dataclass(frozen=True)
class Directory:
    """The ENT directory of one establishment and its stored PRONOTE associations (pronote_id → ENT id)."""

    persons: tuple[DirectoryPerson, ...] = ()
    classes: tuple[DirectoryUnit, ...] = ()
    groups: tuple[DirectoryUnit, ...] = ()
    associations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """The snapshot the reconciler stores in the blob store (stable: same directory, same bytes)."""
        return json.dumps({
            "v": SNAPSHOT_VERSION,
            "persons": [[p.id, p.kind, p.last_name, p.first_name, p.birth_date.isoformat() if p.birth_date else None,
                         p.pronote_id, p.cas_id] for p in sorted(self.persons, key=lambda p: p.id)],
            "classes": [[u.id, u.name] for u in sorted(self.classes, key=lambda u: u.id)],
            "groups": [[u.id, u.name] for u in sorted(self.groups, key=lambda u: u.id)],
            "associations": dict(sorted(self.associations.items())),
        }, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Directory:
        obj = json.loads(data)
        if obj.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"directory snapshot version {obj.get('v')!r} is not {SNAPSHOT_VERSION}")
        return cls(
            persons=tuple(DirectoryPerson(r[0], r[1], r[2], r[3], date.fromisoformat(r[4]) if r[4] else None,
                                          r[5], r[6]) for r in obj["persons"]),
            classes=tuple(DirectoryUnit(r[0], r[1]) for r in obj["classes"]),
            groups=tuple(DirectoryUnit(r[0], r[1]) for r in obj["groups"]),
            associations=dict(obj["associations"]),
        )


@dataclass(frozen=True, slots=True)
class FilePerson:
    """What the rules look at in a person of the timetable file."""

    ident: str
    last_name: str
    first_name: str
    birth_date: date | None = None
    pronote_id: str | None = None
    cas_id: str | None = None


@dataclass(frozen=True, slots=True)
class Unmatched:
    ident: str
    reason: str  # not_found | ambiguous
    candidates: tuple[str, ...] = ()  # the directory ids in competition when ambiguous


@dataclass(frozen=True)
class KindResult:
    """Per kind: file ident → ENT id, the rule that matched each, and the unmatched with their reason."""

    matched: dict[str, str] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)
    unmatched: list[Unmatched] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.matched) + len(self.unmatched)

    def counts(self) -> dict[str, int]:
        return {"matched": len(self.matched), "unmatched": len(self.unmatched)}


# ------------------------------------------------------------------------------------- normalisation

_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss"})


_ASCII_NOT_ALNUM = {c: None for c in range(128) if not chr(c).isalnum()}


def normalise(text: str | None) -> str:
    """Case-, accent-, hyphen-, apostrophe- and space-insensitive form of a name: NFKD, marks dropped,
    ligatures spelt out, casefolded, and every character that is not a letter or a digit removed
    ("Lefèvre-D'Almeida" == "LEFEVRE DALMEIDA")."""
    if not text:
        return ""
    if text.isascii():  # most names: nothing to decompose, the same result in one C-level pass
        return text.lower().translate(_ASCII_NOT_ALNUM)
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    folded = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return "".join(c for c in folded if c.isalnum())


def name_key(last_name: str, first_name: str) -> tuple[str, str]:
    return normalise(last_name), normalise(first_name)


# ------------------------------------------------------------------------------------------- index


@dataclass(frozen=True)
class PersonIndex:
    """The directory persons a file kind may match, indexed once per directory: each lookup of a rule is
    a dict access, so matching a school costs O(file + directory), not O(file × directory)."""

    by_id: dict[str, DirectoryPerson]
    by_pronote_id: dict[str, list[DirectoryPerson]]
    by_cas_id: dict[str, list[DirectoryPerson]]
    by_name: dict[tuple[str, str], list[DirectoryPerson]]

    @classmethod
    def build(cls, persons: Iterable[DirectoryPerson], kind: str) -> PersonIndex:
        allowed = ALLOWED_KINDS[kind]
        by_id: dict[str, DirectoryPerson] = {}
        by_pronote: dict[str, list[DirectoryPerson]] = {}
        by_cas: dict[str, list[DirectoryPerson]] = {}
        by_name: dict[tuple[str, str], list[DirectoryPerson]] = {}
        for p in persons:
            if p.kind not in allowed:
                continue
            by_id[p.id] = p
            if p.pronote_id:
                by_pronote.setdefault(p.pronote_id, []).append(p)
            if p.cas_id:
                by_cas.setdefault(p.cas_id, []).append(p)
            key = name_key(p.last_name, p.first_name)
            if key[0] or key[1]:
                by_name.setdefault(key, []).append(p)
        return cls(by_id, by_pronote, by_cas, by_name)


def person_index(directory: Directory, kind: str) -> PersonIndex:
    """The directory's index for `kind` (teachers | students), built on first use and kept with it."""
    cache: dict[str, PersonIndex] = directory.__dict__.setdefault("_person_indexes", {})
    index = cache.get(kind)
    if index is None:
        index = cache[kind] = PersonIndex.build(directory.persons, kind)
    return index


# ------------------------------------------------------------------------------------------- rules

Candidates = list[DirectoryPerson]


def by_association(person: FilePerson, index: PersonIndex, associations: Mapping[str, str]) -> Candidates:
    """Rule 1: the stored IdPN association of the person's PRONOTE id, when its ENT id is in the pool."""
    if not person.pronote_id:
        return []
    ent_id = associations.get(person.pronote_id)
    found = index.by_id.get(ent_id) if ent_id else None
    return [found] if found is not None else []


def by_pronote_id(person: FilePerson, index: PersonIndex) -> Candidates:
    """Rule 2: directory persons carrying the same PRONOTE id."""
    return index.by_pronote_id.get(person.pronote_id, []) if person.pronote_id else []


def by_cas_id(person: FilePerson, index: PersonIndex) -> Candidates:
    """Rule 3: directory persons carrying the same CAS id."""
    return index.by_cas_id.get(person.cas_id, []) if person.cas_id else []


def birth_dates_agree(a: date | None, b: date | None) -> bool:
    """Students: the birth date must be equal when both sides give one; a missing one does not disqualify
    (real files carry empty birth dates) — uniqueness then decides."""
    return a is None or b is None or a == b


def by_name(person: FilePerson, index: PersonIndex, *, with_birth_date: bool,
            taken: Collection[str] = ()) -> Candidates:
    """Rule 4: normalised last + first name, plus the birth date for students, among the entries not
    already `taken` by an id rule."""
    key = name_key(person.last_name, person.first_name)
    if not key[0] and not key[1]:
        return []
    return [p for p in index.by_name.get(key, ()) if p.id not in taken
            and (not with_birth_date or birth_dates_agree(person.birth_date, p.birth_date))]


def match_persons(people: Iterable[FilePerson], directory: Directory, kind: Kind) -> KindResult:
    """Teachers or students of the file against the directory, rules 1–4 in order (see the module)."""
    index = person_index(directory, kind)
    result = KindResult()
    pending: list[FilePerson] = []
    id_rules: tuple[tuple[str, Callable[[FilePerson], Candidates]], ...] = (
        ("association", lambda fp: by_association(fp, index, directory.associations)),
        ("pronote_id", lambda fp: by_pronote_id(fp, index)),
        ("cas_id", lambda fp: by_cas_id(fp, index)),
    )
    for person in people:
        for rule, find in id_rules:
            found = _distinct(find(person))
            if len(found) == 1:
                result.matched[person.ident] = found[0]
                result.rules[person.ident] = rule
                break
            if len(found) > 1:
                result.unmatched.append(Unmatched(person.ident, AMBIGUOUS, tuple(sorted(found))))
                break
        else:
            pending.append(person)
    # Two people of the file claiming one entry by an id (a PRONOTE id reused in the file): neither gets it.
    claimed: dict[str, list[str]] = {}
    for ident, ent_id in result.matched.items():
        claimed.setdefault(ent_id, []).append(ident)
    for ent_id, idents in claimed.items():
        if len(idents) > 1:
            for ident in idents:
                del result.matched[ident]
                del result.rules[ident]
                result.unmatched.append(Unmatched(ident, AMBIGUOUS, (ent_id,)))
    # Names: among directory entries not already taken by an id, and never two file people for one entry.
    taken = set(claimed)
    with_birth = kind == "students"
    found_by: dict[str, list[str]] = {
        fp.ident: _distinct(by_name(fp, index, with_birth_date=with_birth, taken=taken)) for fp in pending}
    claims: dict[str, int] = {}
    for ids in found_by.values():
        for ent_id in ids:
            claims[ent_id] = claims.get(ent_id, 0) + 1
    for fp in pending:
        ids = found_by[fp.ident]
        if not ids:
            result.unmatched.append(Unmatched(fp.ident, NOT_FOUND))
        elif len(ids) > 1 or claims[ids[0]] > 1:
            result.unmatched.append(Unmatched(fp.ident, AMBIGUOUS, tuple(sorted(ids))))
        else:
            result.matched[fp.ident] = ids[0]
            result.rules[fp.ident] = "name"
    result.unmatched.sort(key=lambda u: u.ident)
    return result


def _distinct(found: Iterable[DirectoryPerson]) -> list[str]:
    return sorted({p.id for p in found})


def match_named(items: Iterable[tuple[str, str]], units: Iterable[DirectoryUnit]) -> KindResult:
    """Classes or groups (file ident, name) by normalised name; two directory entries with that name, or
    two file entries with it, are ambiguous."""
    by_key: dict[str, list[str]] = {}
    for u in units:
        by_key.setdefault(normalise(u.name), []).append(u.id)
    pairs = list(items)
    file_keys: dict[str, int] = {}
    for _, name in pairs:
        file_keys[normalise(name)] = file_keys.get(normalise(name), 0) + 1
    result = KindResult()
    for ident, name in pairs:
        key = normalise(name)
        ids = sorted(set(by_key.get(key, []))) if key else []
        if not ids:
            result.unmatched.append(Unmatched(ident, NOT_FOUND))
        elif len(ids) > 1 or file_keys[key] > 1:
            result.unmatched.append(Unmatched(ident, AMBIGUOUS, tuple(ids)))
        else:
            result.matched[ident] = ids[0]
            result.rules[ident] = "name"
    result.unmatched.sort(key=lambda u: u.ident)
    return result


# ------------------------------------------------------------------------------------- whole model


def file_teachers(tt: Timetable) -> list[FilePerson]:
    return [FilePerson(t.ident, t.last_name, t.first_name, None, t.pronote_id, t.cas_id)
            for t in tt.teachers.values()]


def file_students(tt: Timetable) -> list[FilePerson]:
    return [FilePerson(s.ident, s.last_name, s.first_name, s.birth_date, s.pronote_id, s.cas_id)
            for s in tt.students.values()]


def reconcile(tt: Timetable, directory: Directory) -> dict[str, KindResult]:
    """Every kind of one establishment's timetable against its directory."""
    return {
        "teachers": match_persons(file_teachers(tt), directory, "teachers"),
        "students": match_persons(file_students(tt), directory, "students"),
        "classes": match_named(((c.ident, c.name) for c in tt.classes.values()), directory.classes),
        "groups": match_named(((g.ident, g.name) for g in tt.groups.values()), directory.groups),
    }


class BlobCache(Protocol):
    """What `reconcile_snapshot` needs of the blob store (shared.blobs.BlobStore): cached decode and derive."""

    def load(self, sha256: str, decode: Callable[[bytes], Any]) -> Any: ...
    def derive(self, sha256: str, name: str, compute: Callable[[], Any]) -> Any: ...


def reconcile_snapshot(blobs: BlobCache, model_sha: str, tt: Timetable, directory_sha: str) -> dict[str, KindResult]:
    """`reconcile` of a stored model against a stored directory snapshot, computed once per pair and process:
    threshold control and group creation ask for the same pair (the result is shared: never mutate it)."""
    return blobs.derive(model_sha, f"reconcile:{directory_sha}",
                        lambda: reconcile(tt, blobs.load(directory_sha, Directory.from_json)))


def matching_figures(results: Mapping[str, KindResult]) -> dict[str, tuple[int, int]]:
    """What threshold control needs: per kind (unmatched, total in the file)."""
    return {kind: (len(r.unmatched), r.total) for kind, r in results.items()}


def summary(results: Mapping[str, KindResult]) -> dict[str, Any]:
    return {kind: r.counts() for kind, r in results.items()}
