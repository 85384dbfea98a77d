"""Validator rules: parse an Index Education export into the canonical timetable, and check it.

Pure: a path and settings in, `ParseResult` (model, errors, warnings, meta) out; no database, no bus.
Design.md §7 (validation), §8 and §8a (format, encryption). Every problem has its own stable `code`
and a French and an English message; errors reject the import, warnings are oddities real files carry.

Safety: the file is never trusted. Sizes are capped before reading (input, zip members, ratio,
decompressed content, XML depth, element count); XML is streamed with lxml iterparse without DTD,
entity resolution or network, and elements are cleared as soon as they are read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path, PurePosixPath
from typing import IO, Any

from lxml import etree

from shared.messages import ImportStatus, StageCommand, StepStatus
from shared.stage import StageResult
from shared.timetable import (
    CLEAR_NAMESPACE,
    CLEAR_ROOT,
    CONTAINER_NAMESPACE,
    CONTAINER_ROOT,
    MAX_WEEK,
    ZIP_MAGIC,
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
    safe_iterparse,
    school_weeks_bitmap,
)

# ------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on what one deposit may cost; each breach is its own problem code."""

    max_input_bytes: int = 200 * 1024 * 1024  # the deposited file (zip or XML)
    max_xml_bytes: int = 512 * 1024 * 1024  # XML bytes streamed (zip member, decrypted and inflated content)
    max_zip_member_bytes: int = 512 * 1024 * 1024  # uncompressed size of one zip member
    max_zip_ratio: float = 200.0  # uncompressed / compressed; real exports deflate ~10–40×
    max_zip_members: int = 100
    max_depth: int = 32  # real files nest 4 deep
    max_elements: int = 5_000_000


@dataclass(frozen=True, slots=True)
class AcceptedSoftware:
    """Accepted formats and software (a setting, design.md §8a): EDT and PRONOTE 2013 and later, format 1.x."""

    products: frozenset[str] = frozenset({"EDT", "PRONOTE"})
    min_year: int = 2013
    format_majors: frozenset[int] = frozenset({1})


# ---------------------------------------------------------------------------------------- problems

# code → (French, English); placeholders are filled from the problem's detail.
MESSAGES: dict[str, tuple[str, str]] = {
    # the file itself
    "file_empty": ("Le fichier est vide.", "The file is empty."),
    "file_too_large": (
        "Le fichier est trop volumineux ({size} octets, maximum {limit}).",
        "The file is too large ({size} bytes, limit {limit}).",
    ),
    "file_unreadable": ("Le fichier ne peut pas être lu ({reason}).", "The file cannot be read ({reason})."),
    "not_xml": (
        "Le fichier n'est ni un fichier XML ni une archive zip contenant un XML.",
        "The file is neither XML nor a zip archive holding one XML file.",
    ),
    "xml_malformed": (
        "Le fichier XML est mal formé (ligne {line}) : {reason}.",
        "The XML file is malformed (line {line}): {reason}.",
    ),
    "xml_truncated": (
        "Le fichier XML est tronqué (ligne {line}) : l'envoi a probablement été interrompu.",
        "The XML file is truncated (line {line}): the upload was probably interrupted.",
    ),
    "xml_dtd_forbidden": (
        "Le fichier XML déclare une DTD ({doctype}), ce que ne fait aucun export EDT/PRONOTE : refusé.",
        "The XML file declares a DTD ({doctype}), which no EDT/PRONOTE export does: refused.",
    ),
    "xml_entities_forbidden": (
        "Le fichier XML déclare des entités ({entities}) : refusé par sécurité.",
        "The XML file declares entities ({entities}): refused for safety.",
    ),
    "xml_too_deep": (
        "Le fichier XML est trop imbriqué (profondeur {depth} à la ligne {line}, maximum {limit}).",
        "The XML file is nested too deep (depth {depth} at line {line}, limit {limit}).",
    ),
    "xml_too_many_elements": (
        "Le fichier XML contient trop d'éléments (plus de {limit}).",
        "The XML file has too many elements (more than {limit}).",
    ),
    "xml_too_large": (
        "Le contenu XML est trop volumineux (plus de {limit} octets).",
        "The XML content is too large (more than {limit} bytes).",
    ),
    "unknown_document": (
        "Ce fichier XML n'est pas un export EDT/PRONOTE (élément racine « {root} »).",
        "This XML file is not an EDT/PRONOTE export (root element '{root}').",
    ),
    # zip
    "zip_corrupt": ("L'archive zip est illisible ({reason}).", "The zip archive is unreadable ({reason})."),
    "zip_empty": ("L'archive zip est vide.", "The zip archive is empty."),
    "zip_no_xml": (
        "L'archive zip ne contient aucun fichier XML (fichiers : {members}).",
        "The zip archive holds no XML file (members: {members}).",
    ),
    "zip_several_xml": (
        "L'archive zip contient plusieurs fichiers XML ({members}) : un seul est attendu.",
        "The zip archive holds several XML files ({members}): exactly one is expected.",
    ),
    "zip_too_many_members": (
        "L'archive zip contient trop de fichiers ({count}, maximum {limit}).",
        "The zip archive has too many members ({count}, limit {limit}).",
    ),
    "zip_unsafe_member": (
        "L'archive zip contient un nom de fichier dangereux (« {member} ») : refusée.",
        "The zip archive has an unsafe member name ('{member}'): refused.",
    ),
    "zip_encrypted_member": (
        "L'archive zip est protégée par mot de passe (« {member} »).",
        "The zip archive is password-protected ('{member}').",
    ),
    "zip_member_too_large": (
        "Le fichier « {member} » de l'archive est trop volumineux une fois décompressé (maximum {limit} octets).",
        "Member '{member}' of the archive is too large once uncompressed (limit {limit} bytes).",
    ),
    "zip_ratio_exceeded": (
        "Le fichier « {member} » de l'archive a un taux de compression anormal ({ratio}:1, maximum {limit}:1) : "
        "refusé (bombe zip).",
        "Member '{member}' of the archive has an abnormal compression ratio ({ratio}:1, limit {limit}:1): "
        "refused (zip bomb).",
    ),
    # versions and software
    "unknown_format_version": (
        "Version de format inconnue : « {found} » (versions acceptées : {accepted}).",
        "Unknown format version: '{found}' (accepted: {accepted}).",
    ),
    "unknown_software": (
        "Logiciel non reconnu : « {found} » (acceptés : {accepted}).",
        "Unknown software: '{found}' (accepted: {accepted}).",
    ),
    "unsupported_software_year": (
        "Version du logiciel non prise en charge : « {found} » (acceptées : {min_year} et suivantes).",
        "Unsupported software version: '{found}' (accepted: {min_year} and later).",
    ),
    # establishment
    "uai_mismatch": (
        "Le fichier concerne l'établissement {found}, pas l'établissement attendu ({expected}).",
        "The file is for establishment {found}, not the expected one ({expected}).",
    ),
    "establishment_not_in_site": (
        "Le fichier contient des établissements qui ne font pas partie de cet espace : {uais}.",
        "The file covers establishments that are not part of this site: {uais}.",
    ),
    "encryption_required": (
        "Cet espace n'accepte que des exports chiffrés : le fichier déposé est en clair.",
        "This site only accepts encrypted exports: the deposited file is in clear.",
    ),
    # encryption
    "container_malformed": (
        "Le conteneur chiffré est invalide : {reason}.",
        "The encrypted container is invalid: {reason}.",
    ),
    "key_absent": (
        "Clé absente : le fichier n'est pas chiffré pour le partenaire « {partner} » (partenaires : {found}).",
        "Key absent: the file is not encrypted for partner '{partner}' (partners: {found}).",
    ),
    "private_key_missing": (
        "Clé absente : aucune clé privée n'est configurée pour déchiffrer les exports PRONOTE.",
        "Key absent: no private key is configured to decrypt PRONOTE exports.",
    ),
    "private_key_invalid": (
        "La clé privée configurée est illisible ({reason}).",
        "The configured private key cannot be read ({reason}).",
    ),
    "key_decrypt_failed": (
        "La clé de chiffrement du fichier ne peut pas être déchiffrée : le fichier a été chiffré pour une autre clé.",
        "The file's encryption key cannot be decrypted: the file was encrypted for another key.",
    ),
    "key_check_failed": (
        "Le contrôle de la clé de chiffrement (MD5) a échoué.",
        "The encryption key check (MD5) failed.",
    ),
    "content_decrypt_failed": (
        "Le contenu chiffré ne peut pas être déchiffré ({reason}).",
        "The encrypted content cannot be decrypted ({reason}).",
    ),
    "content_hash_mismatch": (
        "Le contenu déchiffré ne correspond pas à son empreinte SHA-256 : fichier altéré.",
        "The decrypted content does not match its SHA-256 hash: the file was altered.",
    ),
    "content_zlib_failed": (
        "Le contenu déchiffré ne peut pas être décompressé ({reason}).",
        "The decrypted content cannot be decompressed ({reason}).",
    ),
    # structure
    "missing_element": (
        "Élément obligatoire absent : {element} (dans {parent}, ligne {line}).",
        "Required element missing: {element} (in {parent}, line {line}).",
    ),
    "missing_attribute": (
        "Attribut obligatoire absent : {attribute} de {element} (ligne {line}, {count} occurrence(s)).",
        "Required attribute missing: {attribute} of {element} (line {line}, {count} occurrence(s)).",
    ),
    "invalid_value": (
        "Valeur invalide pour {attribute} de {element} : « {value} » (ligne {line}, {count} occurrence(s)).",
        "Invalid value for {attribute} of {element}: '{value}' (line {line}, {count} occurrence(s)).",
    ),
    "duplicate_ident": (
        "Identifiant en double : {count} {element} partagent un Ident déjà utilisé (ex. {samples}).",
        "Duplicate ident: {count} {element} reuse an Ident already used (e.g. {samples}).",
    ),
    "dangling_reference": (
        "{count} référence(s) de {source} vers des {target} inconnu(e)s (ex. Ident {samples}).",
        "{count} reference(s) from {source} to unknown {target} (e.g. Ident {samples}).",
    ),
    "school_year_incoherent": (
        "Dates de l'année scolaire incohérentes : {reason}.",
        "Incoherent school year dates: {reason}.",
    ),
    "grid_invalid": ("Grille horaire invalide : {reason}.", "Invalid time grid: {reason}."),
    "slot_out_of_grid": (
        "{count} cours hors de la grille horaire (ex. jour {day}, place {place}, ligne {line}).",
        "{count} slot(s) outside the time grid (e.g. day {day}, place {place}, line {line}).",
    ),
    # warnings
    "section_missing": ("Section absente du fichier : {element}.", "Section missing from the file: {element}."),
    "namespace_unexpected": (
        "Espace de noms XML inattendu : « {found} ».",
        "Unexpected XML namespace: '{found}'.",
    ),
    "zip_members_ignored": (
        "Fichiers de l'archive ignorés : {members}.",
        "Archive members ignored: {members}.",
    ),
    "container_uai_differs": (
        "L'UAI du conteneur ({container}) diffère de celui de l'export ({inner}).",
        "The container's UAI ({container}) differs from the export's ({inner}).",
    ),
    "week1_not_monday": (
        "Le premier jour de la semaine 1 ({date}) n'est pas un lundi.",
        "The first day of week 1 ({date}) is not a Monday.",
    ),
    "grid_place_count_mismatch": (
        "La grille annonce {declared} places par jour mais en décrit {found}.",
        "The grid declares {declared} places per day but describes {found}.",
    ),
    "slot_on_non_working_day": (
        "{count} cours placé(s) sur un jour non ouvré (ex. jour {day}).",
        "{count} slot(s) on a non-working day (e.g. day {day}).",
    ),
    "slot_without_resources": (
        "{count} cours sans aucune ressource (seulement une matière) : ignorés.",
        "{count} slot(s) with no resource (a subject only): ignored.",
    ),
    "slot_parts_only": (
        "{count} cours ne concernent que des parties de classe : aucun service d'enseignement n'en est créé.",
        "{count} slot(s) name only parts of classes: no course is made from them.",
    ),
    "slot_groups_and_classes": (
        "{count} cours citent à la fois des groupes et des classes : seuls les groupes sont retenus.",
        "{count} slot(s) name both groups and classes: only the groups are kept.",
    ),
    "slot_several_subjects": (
        "{count} cours citent plusieurs matières : seule la première est retenue.",
        "{count} slot(s) name several subjects: only the first is kept.",
    ),
    "weeks_outside_school_year": (
        "{count} ressource(s) de cours ont des semaines hors de l'année scolaire : ces semaines sont ignorées.",
        "{count} slot resource(s) have weeks outside the school year: those weeks are ignored.",
    ),
    "birth_date_empty": (
        "{count} élève(s) sans date de naissance.",
        "{count} student(s) without a birth date.",
    ),
    "student_without_class": ("{count} élève(s) sans classe.", "{count} student(s) without a class."),
    "class_without_establishment": (
        "{count} classe(s) sans établissement dans un fichier multi-établissements (ex. {samples}).",
        "{count} class(es) without an establishment in a multi-establishment file (e.g. {samples}).",
    ),
    "homonyms": (
        "{count} homonyme(s) parmi les {kind} (ex. {samples}) : le rapprochement par nom sera ambigu.",
        "{count} homonym(s) among {kind} (e.g. {samples}): matching by name will be ambiguous.",
    ),
}


class _Fmt(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    message_fr: str
    message_en: str
    detail: dict[str, Any] = field(default_factory=dict)


def make_problem(code: str, **detail: Any) -> Problem:
    fr, en = MESSAGES[code]
    values = _Fmt({k: (", ".join(map(str, v)) if isinstance(v, list | tuple) else v) for k, v in detail.items()})
    return Problem(code, fr.format_map(values), en.format_map(values), detail)


@dataclass(slots=True)
class ParseMeta:
    encrypted: bool = False
    zipped: bool = False
    zip_member: str | None = None
    zip_ignored: list[str] = field(default_factory=list)
    software: str | None = None  # LOGICIEL, e.g. "PRONOTE Monoposte-PRONOTE 2013 - 0.5.14"
    product: str | None = None  # "PRONOTE", "EDT"
    year: int | None = None  # 2013
    format_version: str | None = None  # root Version, e.g. "1.1"
    container_version: str | None = None  # VERSION, e.g. "1.0"
    uai: str | None = None
    container_uai: str | None = None
    establishment_name: str | None = None  # NOMETABLISSEMENT
    exported_at: str | None = None  # DATEHEURE
    compressed: bool | None = None  # CompresseAvantChiffrement
    xml_bytes: int = 0
    elements: int = 0
    ignored_sections: list[str] = field(default_factory=list)  # unknown sections, e.g. Absences, Etiquettes


@dataclass(slots=True)
class ParseResult:
    timetable: Timetable | None
    errors: list[Problem]
    warnings: list[Problem]
    meta: ParseMeta

    @property
    def ok(self) -> bool:
        return not self.errors and self.timetable is not None

    def codes(self) -> list[str]:
        return [p.code for p in self.errors]


class _Reject(Exception):
    """Stops parsing after a fatal error has been recorded."""


class _Ctx:
    def __init__(self, limits: Limits, accepted: AcceptedSoftware) -> None:
        self.limits, self.accepted = limits, accepted
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.meta = ParseMeta()

    def error(self, code: str, **detail: Any) -> None:
        self.errors.append(make_problem(code, **detail))

    def warn(self, code: str, **detail: Any) -> None:
        self.warnings.append(make_problem(code, **detail))

    def fail(self, code: str, **detail: Any) -> _Reject:
        self.error(code, **detail)
        return _Reject(code)


# --------------------------------------------------------------------------------------- streaming

_HEAD = 64 * 1024
_DOCTYPE_RE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_ENTITY_RE = re.compile(rb"<!ENTITY\s+%?\s*([\w.-]+)")


class _Guard:
    """File-like wrapper for lxml: counts bytes and lines, enforces a size cap and (zip) a ratio cap.

    On a breach it records why and returns EOF, so lxml stops with a syntax error that we then
    replace by the breach's own problem."""

    def __init__(
        self,
        raw: IO[bytes],
        cap: int,
        cap_code: str,
        *,
        compressed_size: int | None = None,
        max_ratio: float | None = None,
        member: str | None = None,
    ) -> None:
        self.raw, self.cap, self.cap_code = raw, cap, cap_code
        self.compressed_size, self.max_ratio, self.member = compressed_size, max_ratio, member
        self.total = 0
        self.lines = 1
        self.eof = False
        self.breach: tuple[str, dict[str, Any]] | None = None
        self.prefix = b""

    def peek_head(self) -> bytes:
        self.prefix = self._read(_HEAD)
        return self.prefix

    def _read(self, size: int) -> bytes:
        if self.breach is not None:
            return b""
        try:
            data = self.raw.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            self.breach = ("zip_corrupt" if self.member is not None else "file_unreadable", {"reason": str(exc)})
            return b""
        if not data:
            self.eof = True
            return b""
        self.total += len(data)
        self.lines += data.count(b"\n")
        if self.total > self.cap:
            self.breach = (self.cap_code, {"limit": self.cap, "member": self.member})
            return b""
        if self.max_ratio is not None and self.compressed_size is not None:
            ratio = self.total / max(self.compressed_size, 1)
            if ratio > self.max_ratio and self.total > 1024 * 1024:
                self.breach = (
                    "zip_ratio_exceeded",
                    {"member": self.member, "ratio": int(ratio), "limit": int(self.max_ratio)},
                )
                return b""
        return data

    def read(self, size: int = -1) -> bytes:
        if self.prefix:
            out, self.prefix = self.prefix, b""
            return out
        return self._read(size if size and size > 0 else 1024 * 1024)


def _check_head(head: bytes, ctx: _Ctx) -> None:
    """Cheap checks on the first bytes, before any XML parser sees them."""
    stripped = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return  # UTF-16: lxml decodes it; the DOCTYPE check at the root start still applies
    if not stripped.startswith(b"<"):
        raise ctx.fail("not_xml")
    entities = _ENTITY_RE.findall(head)
    if entities:
        raise ctx.fail("xml_entities_forbidden", entities=sorted({e.decode("ascii", "replace") for e in entities}))
    m = _DOCTYPE_RE.search(head)
    if m:
        end = head.find(b">", m.start())
        raise ctx.fail(
            "xml_dtd_forbidden",
            doctype=head[m.start() : end + 1 if end > 0 else m.start() + 80].decode("utf-8", "replace"),
        )


def _iterparse(source: IO[bytes] | _Guard) -> Any:
    return safe_iterparse(source)


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _namespace(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def _syntax_problem(exc: etree.XMLSyntaxError, guard: _Guard, ctx: _Ctx) -> _Reject:
    if guard.breach is not None:
        code, detail = guard.breach
        return ctx.fail(code, **detail)
    msg = str(exc.msg if getattr(exc, "msg", None) else exc)
    line = exc.position[0] if getattr(exc, "position", None) else None
    if "Excessive depth" in msg:
        return ctx.fail("xml_too_deep", depth=">256", line=line, limit=ctx.limits.max_depth)
    if "amplification" in msg or "entity" in msg.lower() and "loop" in msg.lower():
        return ctx.fail("xml_entities_forbidden", entities=["?"], reason=msg)
    if guard.eof and ("Premature end" in msg or "end of data" in msg or (line is not None and line >= guard.lines)):
        return ctx.fail("xml_truncated", line=line, reason=msg)
    if guard.total == 0 or "Document is empty" in msg:
        return ctx.fail("not_xml")
    return ctx.fail("xml_malformed", line=line, reason=msg.split(", line")[0])


# -------------------------------------------------------------------------------------------- entry


def parse_export(
    path: Path,
    *,
    partner_name: str,
    private_key: bytes | None,
    limits: Limits | None = None,
    accepted: AcceptedSoftware | None = None,
    expected_uais: Collection[str] | None = None,
    require_encryption: bool = False,
) -> ParseResult:
    """Parse and check one deposited export (clear XML, encrypted container, or either in a zip).

    `private_key`: the ENT's RSA private key, PEM or DER (None: encrypted files are rejected, "clé absente").
    `expected_uais`: UAIs the target accepts (one establishment, or every establishment of the site for a
    site-wide deposit); None skips the check. Every UAI of a multi-establishment file must be among them.
    """
    ctx = _Ctx(limits or Limits(), accepted or AcceptedSoftware())
    timetable: Timetable | None = None
    try:
        timetable = _parse_file(Path(path), ctx, partner_name, private_key)
        if timetable is not None:
            if require_encryption and not ctx.meta.encrypted:
                ctx.error("encryption_required")
            if expected_uais is not None:
                _check_uais(timetable, {u.strip().upper() for u in expected_uais}, ctx)
    except _Reject:
        timetable = None
    if ctx.errors:
        timetable = None
    return ParseResult(timetable, ctx.errors, ctx.warnings, ctx.meta)


def _parse_file(path: Path, ctx: _Ctx, partner_name: str, private_key: bytes | None) -> Timetable | None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ctx.fail("file_unreadable", reason=exc.strerror or str(exc)) from None
    if size == 0:
        raise ctx.fail("file_empty")
    if size > ctx.limits.max_input_bytes:
        raise ctx.fail("file_too_large", size=size, limit=ctx.limits.max_input_bytes)
    with open(path, "rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        if magic in ZIP_MAGIC:
            ctx.meta.zipped = True
            return _parse_zip(fh, ctx, partner_name, private_key)
        guard = _Guard(fh, ctx.limits.max_xml_bytes, "xml_too_large")
        return _parse_stream(guard, ctx, partner_name, private_key)


# --------------------------------------------------------------------------------------------- zip

_UNSAFE_NAME = re.compile(r"(^/|^\\|^[A-Za-z]:|\x00)")


def _unsafe_member(name: str) -> bool:
    if _UNSAFE_NAME.search(name):
        return True
    return ".." in PurePosixPath(name.replace("\\", "/")).parts


def _parse_zip(fh: IO[bytes], ctx: _Ctx, partner_name: str, private_key: bytes | None) -> Timetable | None:
    limits = ctx.limits
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise ctx.fail("zip_corrupt", reason=str(exc)) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_zip_members:
            raise ctx.fail("zip_too_many_members", count=len(infos), limit=limits.max_zip_members)
        files = [i for i in infos if not i.is_dir()]
        if not files:
            raise ctx.fail("zip_empty")
        for info in files:
            if _unsafe_member(info.filename):
                raise ctx.fail("zip_unsafe_member", member=info.filename)
            if info.flag_bits & 0x1:
                raise ctx.fail("zip_encrypted_member", member=info.filename)
            if info.file_size > limits.max_zip_member_bytes:
                raise ctx.fail("zip_member_too_large", member=info.filename, limit=limits.max_zip_member_bytes)
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_zip_ratio and info.file_size > 1024 * 1024:
                raise ctx.fail(
                    "zip_ratio_exceeded", member=info.filename, ratio=int(ratio), limit=int(limits.max_zip_ratio)
                )
        xml_members = []
        for info in files:
            try:
                with zf.open(info) as member:
                    head = member.read(1024)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
                raise ctx.fail("zip_corrupt", reason=str(exc)) from None
            if head.lstrip(b"\xef\xbb\xbf").lstrip().startswith(b"<"):
                xml_members.append(info)
        if not xml_members:
            raise ctx.fail("zip_no_xml", members=[i.filename for i in files])
        if len(xml_members) > 1:
            raise ctx.fail("zip_several_xml", members=[i.filename for i in xml_members])
        chosen = xml_members[0]
        ctx.meta.zip_member = chosen.filename
        ctx.meta.zip_ignored = [i.filename for i in files if i is not chosen]
        if ctx.meta.zip_ignored:
            ctx.warn("zip_members_ignored", members=ctx.meta.zip_ignored)
        with zf.open(chosen) as member:
            guard = _Guard(
                member,
                min(limits.max_zip_member_bytes, limits.max_xml_bytes),
                "zip_member_too_large",
                compressed_size=chosen.compress_size,
                max_ratio=limits.max_zip_ratio,
                member=chosen.filename,
            )
            return _parse_stream(guard, ctx, partner_name, private_key)


# -------------------------------------------------------------------------------------- dispatching


def _parse_stream(guard: _Guard, ctx: _Ctx, partner_name: str, private_key: bytes | None) -> Timetable | None:
    _check_head(guard.peek_head(), ctx)
    it = iter(_iterparse(guard))
    try:
        _, root = next(it)
        if root.getroottree().docinfo.doctype:  # a DOCTYPE past the first 64 KiB
            raise ctx.fail("xml_dtd_forbidden", doctype=root.getroottree().docinfo.doctype)
        name = _local(root.tag)
        if name == CONTAINER_ROOT:
            ctx.meta.encrypted = True
            clear = _read_container(it, root, ctx, partner_name, private_key)
        elif name == CLEAR_ROOT:
            ctx.meta.xml_bytes = guard.total
            tt = _ClearParser(ctx).run(it, root)
            ctx.meta.xml_bytes = guard.total
            return tt
        else:
            raise ctx.fail("unknown_document", root=name)
    except etree.XMLSyntaxError as exc:
        raise _syntax_problem(exc, guard, ctx) from None
    except StopIteration:
        raise ctx.fail("not_xml") from None
    # the decrypted export, parsed like a clear file
    inner = _Guard(io.BytesIO(clear), ctx.limits.max_xml_bytes, "xml_too_large")
    _check_head(inner.peek_head(), ctx)
    it = iter(_iterparse(inner))
    try:
        _, root = next(it)
        if root.getroottree().docinfo.doctype:
            raise ctx.fail("xml_dtd_forbidden", doctype=root.getroottree().docinfo.doctype)
        if _local(root.tag) != CLEAR_ROOT:
            raise ctx.fail("unknown_document", root=_local(root.tag))
        tt = _ClearParser(ctx).run(it, root)
        ctx.meta.xml_bytes = inner.total
    except etree.XMLSyntaxError as exc:
        raise _syntax_problem(exc, inner, ctx) from None
    except StopIteration:
        raise ctx.fail("not_xml") from None
    if ctx.meta.container_uai and tt is not None and ctx.meta.container_uai.upper() != tt.uai.upper():
        ctx.warn("container_uai_differs", container=ctx.meta.container_uai, inner=tt.uai)
    return tt


# --------------------------------------------------------------------------------------- encryption

_SOFTWARE_RE = re.compile(r"([A-Za-z][\w.]*)\s+((?:19|20)\d\d)\b")


def parse_software(logiciel: str) -> tuple[str | None, int | None]:
    """'PRONOTE Monoposte-PRONOTE 2013 - 0.5.14' → ('PRONOTE', 2013); 'EDT 2014' → ('EDT', 2014)."""
    m = _SOFTWARE_RE.search(logiciel)
    if m:
        return m.group(1).upper(), int(m.group(2))
    words = re.findall(r"[A-Za-z][\w.]*", logiciel)
    return (words[0].upper() if words else None), None


def _check_format_version(version: str | None, ctx: _Ctx, element: str) -> None:
    m = re.fullmatch(r"\s*(\d+)(?:\.\d+)*\s*", version or "")
    if not m or int(m.group(1)) not in ctx.accepted.format_majors:
        accepted = ", ".join(f"{v}.x" for v in sorted(ctx.accepted.format_majors))
        raise ctx.fail("unknown_format_version", found=version, accepted=accepted, element=element)


def _read_container(it: Any, root: Any, ctx: _Ctx, partner_name: str, private_key: bytes | None) -> bytes:
    """Read the `EXPORT_INDEX_EDUCATION` container and return the decrypted, inflated export bytes."""
    limits = ctx.limits
    values: dict[str, str] = {}
    partners: list[tuple[str, str]] = []
    compressed = True
    depth, count = 1, 1
    for event, elem in it:
        if event == "start":
            depth += 1
            count += 1
            if depth > limits.max_depth:
                raise ctx.fail("xml_too_deep", depth=depth, line=elem.sourceline, limit=limits.max_depth)
            if count > limits.max_elements:
                raise ctx.fail("xml_too_many_elements", limit=limits.max_elements)
            continue
        depth -= 1
        name = _local(elem.tag)
        if depth == 2 and name == "PARTENAIRE":
            partners.append((elem.get("NOM") or "", elem.text or ""))
        elif depth == 1:
            if name == "CONTENU":
                flag = (elem.get("CompresseAvantChiffrement") or "true").strip().lower()
                compressed = flag not in ("false", "0")
            if name != "CLES":
                values[name] = elem.text or ""
            elem.clear()
    ctx.meta.elements = count
    ns = _namespace(root.tag)
    if ns != CONTAINER_NAMESPACE:
        ctx.warn("namespace_unexpected", found=ns)
    for required in ("VERSION", "LOGICIEL", "CONTENU", "VERIFICATION"):
        if required not in values:
            raise ctx.fail("missing_element", element=required, parent=CONTAINER_ROOT, line=None)
    if not partners:
        raise ctx.fail("missing_element", element="CLES/PARTENAIRE", parent=CONTAINER_ROOT, line=None)
    meta = ctx.meta
    meta.container_version = values["VERSION"].strip()
    meta.software = values["LOGICIEL"].strip()
    meta.container_uai = values.get("UAI", "").strip() or None
    meta.establishment_name = values.get("NOMETABLISSEMENT", "").strip() or None
    meta.exported_at = values.get("DATEHEURE", "").strip() or None
    meta.compressed = compressed
    _check_format_version(meta.container_version, ctx, "VERSION")
    meta.product, meta.year = parse_software(meta.software)
    if meta.product not in ctx.accepted.products:
        raise ctx.fail("unknown_software", found=meta.software, accepted=sorted(ctx.accepted.products))
    if meta.year is None or meta.year < ctx.accepted.min_year:
        raise ctx.fail("unsupported_software_year", found=meta.software, min_year=ctx.accepted.min_year)

    wrapped_b64 = next((text for nom, text in partners if nom == partner_name), None)
    if wrapped_b64 is None:
        raise ctx.fail("key_absent", partner=partner_name, found=[nom for nom, _ in partners])
    if private_key is None:
        raise ctx.fail("private_key_missing")
    key = _load_private_key(private_key, ctx)
    try:
        wrapped = base64.b64decode("".join(wrapped_b64.split()), validate=True)
        contenu = base64.b64decode("".join(values["CONTENU"].split()), validate=True)
        verification = base64.b64decode("".join(values["VERIFICATION"].split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ctx.fail("container_malformed", reason=f"base64: {exc}") from None
    return decrypt_content(key, wrapped, contenu, verification, compressed, ctx)


def _load_private_key(data: bytes, ctx: _Ctx) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ctx.fail("private_key_invalid", reason=str(exc) or type(exc).__name__) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ctx.fail("private_key_invalid", reason="not an RSA key")
    return key


def decrypt_content(
    key: Any, wrapped: bytes, contenu: bytes, verification: bytes, compressed: bool, ctx: _Ctx
) -> bytes:
    """Design.md §8a steps 2–4: RSA → 48-byte blob (AES key, IV, MD5 check), AES-128-CBC + PKCS#7,
    SHA-256 check, zlib, BOM strip."""
    from cryptography.hazmat.primitives import padding as sym_padding
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    try:
        blob = key.decrypt(wrapped, padding.PKCS1v15())
    except ValueError:
        raise ctx.fail("key_decrypt_failed") from None
    # OpenSSL's implicit rejection answers a wrong key with random bytes, almost never 48 of them.
    if len(blob) != 48:
        raise ctx.fail("key_decrypt_failed")
    aes_key, iv, check = blob[:16], blob[16:32], blob[32:48]
    if hashlib.md5(blob[:32]).digest() != check:  # noqa: S324 - the format's own integrity check
        raise ctx.fail("key_check_failed")
    if not contenu or len(contenu) % 16:
        raise ctx.fail("content_decrypt_failed", reason="length is not a multiple of the AES block")
    decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(contenu) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise ctx.fail("content_decrypt_failed", reason="bad PKCS#7 padding") from None
    del padded
    hash_ok = hashlib.sha256(plain).digest() == verification
    if compressed:
        out = _inflate(plain, ctx, hash_ok)
        # "Hash SHA256 du contenu non chiffré": real importers hash the inflated-before bytes; accept either.
        if not hash_ok and hashlib.sha256(out).digest() != verification:
            raise ctx.fail("content_hash_mismatch")
    else:
        if not hash_ok:
            raise ctx.fail("content_hash_mismatch")
        out = plain
    return out[3:] if out.startswith(b"\xef\xbb\xbf") else out


def _inflate(data: bytes, ctx: _Ctx, hash_ok: bool) -> bytes:
    cap = ctx.limits.max_xml_bytes
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, cap + 1)
        if len(out) > cap or d.unconsumed_tail:
            raise ctx.fail("xml_too_large", limit=cap)
        out += d.flush()
        if not d.eof:
            raise zlib.error("incomplete zlib stream")
    except zlib.error as exc:
        # A garbled content fails both checks; the hash says why better than zlib.
        raise ctx.fail("content_zlib_failed" if hash_ok else "content_hash_mismatch", reason=str(exc)) from None
    return out


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


class _ClearParser:
    """Streams an `ExportEmploiDuTemps` document into a Timetable, collecting problems by kind."""

    KEEP_SUBTREE = frozenset(["GrilleHoraire", "AnneeScolaire"])

    def __init__(self, ctx: _Ctx) -> None:
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
            name = _local(child.tag)
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
            name = _local(child.tag)
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
            name = _local(child.tag)
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
        ns = _namespace(root.tag)
        if ns != CLEAR_NAMESPACE:
            ctx.warn("namespace_unexpected", found=ns)
        prefix = "{" + ns + "}" if ns else ""
        version, uai = root.get("Version"), root.get("UAI")
        ctx.meta.format_version = version
        if version is None:
            raise ctx.fail("missing_attribute", element=CLEAR_ROOT, attribute="Version", line=root.sourceline, count=1)
        _check_format_version(version, ctx, CLEAR_ROOT)
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
                name = _local(el.tag)
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
        _check_references(tt, ctx)
        _check_slots(tt, self.slot_lines, ctx)
        _check_people(tt, ctx)
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


def _dangling(ctx: _Ctx, source: str, target: str, idents: list[str]) -> None:
    if idents:
        ctx.error(
            "dangling_reference", source=source, target=target, count=len(idents), samples=sorted(set(idents))[:5]
        )


def reference_problems(tt: Timetable) -> list[Problem]:
    """The dangling references of a model (e.g. to check a split part stands alone)."""
    ctx = _Ctx(Limits(), AcceptedSoftware())
    _check_references(tt, ctx)
    return ctx.errors


def _check_references(tt: Timetable, ctx: _Ctx) -> None:
    """Every Ident named somewhere must exist: reported per (source, target) with counts, never a crash."""
    part_ids = {p for c in tt.classes.values() for p in c.parts}
    kinds: list[tuple[str, str, dict[str, Any] | set[str], int]] = [
        ("Professeur", "professeurs", tt.teachers, 0),
        ("Classe", "classes", tt.classes, 1),
        ("PartieDeClasse", "parties de classe", part_ids, 2),
        ("Groupe", "groupes", tt.groups, 3),
        ("Salle", "salles", tt.rooms, 4),
        ("Materiel", "matériels", tt.equipment, 5),
        ("Eleve", "élèves", tt.students, 6),
        ("Personnel", "personnels", tt.staff, 7),
    ]
    bad_subjects = [s.subject for s in tt.slots if s.subject not in tt.subjects]
    _dangling(ctx, "Cours", "matières", bad_subjects)
    for name, label, known, _ in kinds:
        attr = _SLOT_ATTRS[name]
        bad = [r.ident for s in tt.slots for r in getattr(s, attr) if r.ident not in known]
        _dangling(ctx, "Cours", label, bad)
    _dangling(ctx, "Groupe", "classes", [c for g in tt.groups.values() for c in g.classes if c not in tt.classes])
    _dangling(ctx, "Groupe", "parties de classe", [p for g in tt.groups.values() for p in g.parts if p not in part_ids])
    _dangling(ctx, "Groupe", "élèves", [e for g in tt.groups.values() for e in g.students if e not in tt.students])
    _dangling(
        ctx, "Eleve", "classes", [m.ident for s in tt.students.values() for m in s.classes if m.ident not in tt.classes]
    )
    _dangling(
        ctx,
        "Eleve",
        "parties de classe",
        [m.ident for s in tt.students.values() for m in s.parts if m.ident not in part_ids],
    )
    if tt.establishments:
        _dangling(
            ctx,
            "Classe",
            "établissements",
            [e for c in tt.classes.values() for e in c.establishments if e not in tt.establishments],
        )
        orphans = [c.name for c in tt.classes.values() if not c.establishments]
        if orphans:
            ctx.warn("class_without_establishment", count=len(orphans), samples=orphans[:5])


_SLOT_ATTRS = {
    "Professeur": "teachers",
    "Classe": "classes",
    "PartieDeClasse": "parts",
    "Groupe": "groups",
    "Salle": "rooms",
    "Materiel": "equipment",
    "Eleve": "students",
    "Personnel": "staff",
}


def _check_slots(tt: Timetable, lines: list[int], ctx: _Ctx) -> None:
    places = {p.number for p in tt.grid.places}
    working = set(tt.grid.days)
    school = school_weeks_bitmap(tt) | 1  # bit 0 is unused by the format: never flag it
    out_of_grid: list[tuple[int, int, int]] = []
    non_working: list[int] = []
    no_resource = parts_only = both = outside = 0
    for index, s in enumerate(tt.slots):
        last = s.first_place + s.place_count - 1
        if not 1 <= s.day <= 7 or s.place_count < 1 or s.first_place not in places or last not in places:
            out_of_grid.append((s.day, s.first_place, lines[index] if index < len(lines) else 0))
        elif working and s.day not in working:
            non_working.append(s.day)
        if not (s.teachers or s.classes or s.parts or s.groups or s.rooms or s.equipment or s.students or s.staff):
            no_resource += 1
        elif not s.classes and not s.groups and s.parts:
            parts_only += 1
        if s.groups and s.classes:
            both += 1
        for refs in (s.teachers, s.classes, s.parts, s.groups, s.rooms, s.equipment, s.students, s.staff):
            for r in refs:
                if r.weeks & ~school & ((1 << (MAX_WEEK + 1)) - 1):
                    outside += 1
    if out_of_grid:
        day, place, line = out_of_grid[0]
        ctx.error("slot_out_of_grid", count=len(out_of_grid), day=day, place=place, line=line)
    if non_working:
        ctx.warn("slot_on_non_working_day", count=len(non_working), day=non_working[0])
    if no_resource:
        ctx.warn("slot_without_resources", count=no_resource)
    if parts_only:
        ctx.warn("slot_parts_only", count=parts_only)
    if both:
        ctx.warn("slot_groups_and_classes", count=both)
    if outside:
        ctx.warn("weeks_outside_school_year", count=outside)


def normalise_name(last: str, first: str) -> str:
    """Accent-, case- and hyphen-insensitive name key (design.md §7 reconciliation)."""
    text = unicodedata.normalize("NFKD", f"{last} {first}")
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[-'’\s]+", " ", text).split())


def _check_people(tt: Timetable, ctx: _Ctx) -> None:
    without_class = sum(1 for s in tt.students.values() if not s.classes)
    if without_class:
        ctx.warn("student_without_class", count=without_class)
    for kind, people in (("professeurs", tt.teachers.values()), ("élèves", tt.students.values())):
        seen: dict[str, int] = {}
        for p in people:
            key = normalise_name(p.last_name, p.first_name)
            seen[key] = seen.get(key, 0) + 1
        dupes = [k for k, n in seen.items() if n > 1]
        if dupes:
            ctx.warn("homonyms", kind=kind, count=sum(seen[k] for k in dupes), samples=dupes[:3])


def _check_uais(tt: Timetable, expected: set[str], ctx: _Ctx) -> None:
    listed = [e.uai for e in tt.establishments.values()]
    if listed:
        foreign = [u for u in listed if u not in expected]
        if foreign:
            ctx.error("establishment_not_in_site", uais=foreign, expected=sorted(expected))
        if tt.uai and tt.uai not in expected and tt.uai not in listed:
            ctx.error("uai_mismatch", found=tt.uai, expected=sorted(expected))
    elif tt.uai not in expected:
        ctx.error("uai_mismatch", found=tt.uai, expected=sorted(expected))


# ------------------------------------------------------------------------------------------- split


def split_by_establishment(tt: Timetable) -> dict[str, Timetable]:
    """Split a multi-establishment (cité scolaire) timetable by UAI.

    Classes go to the establishments they name (unnamed ones to the file's own UAI, else the first);
    a group to the establishment holding most of its classes, parts and students; a slot to those of its
    groups if it names any (§7: its courses are its groups'), else to those of its classes and parts, each
    copy keeping only that establishment's classes, parts and groups (teachers, rooms… are kept); a slot
    naming none of them goes to the file's own establishment. Students follow their classes; teachers,
    staff, rooms, equipment and subjects follow the slots that use them. Group members and student
    memberships outside an establishment are dropped from its part, so that each part is self-contained
    (no dangling reference). A single-establishment file maps to itself."""
    if len(tt.establishments) <= 1:
        uai = next(iter(tt.establishments.values())).uai if tt.establishments else tt.uai
        return {uai: tt}
    ests = list(tt.establishments.values())
    default = next((e.ident for e in ests if e.uai == tt.uai), ests[0].ident)
    class_est: dict[str, set[str]] = {}
    part_est: dict[str, set[str]] = {}
    for klass in tt.classes.values():
        owners = {e for e in klass.establishments if e in tt.establishments} or {default}
        class_est[klass.ident] = owners
        for p in klass.parts:
            part_est.setdefault(p, set()).update(owners)
    student_est: dict[str, set[str]] = {}
    for student in tt.students.values():
        owners = set()
        for m in student.classes:
            owners |= class_est.get(m.ident, set())
        for m in student.parts:
            owners |= part_est.get(m.ident, set())
        student_est[student.ident] = owners
    # a group goes to the one establishment holding most of its members (ties: the file's own, else the
    # first listed), so that each of its courses is imported once
    order = {e.ident: i for i, e in enumerate(ests)}
    group_est: dict[str, set[str]] = {}
    for g in tt.groups.values():
        votes: dict[str, int] = {}
        for owners in (
            *(class_est.get(c, set()) for c in g.classes),
            *(part_est.get(p, set()) for p in g.parts),
            *(student_est.get(e, set()) for e in g.students),
        ):
            for owner in owners:
                votes[owner] = votes.get(owner, 0) + 1
        if not votes:
            group_est[g.ident] = {default}
            continue
        best = max(votes.values())
        winners = [o for o, n in votes.items() if n == best]
        group_est[g.ident] = {default if default in winners else min(winners, key=order.__getitem__)}

    out: dict[str, Timetable] = {}
    for est in ests:
        eid = est.ident
        classes = {k: c for k, c in tt.classes.items() if eid in class_est[k]}
        parts = {p for p, owners in part_est.items() if eid in owners}
        groups = {k: g for k, g in tt.groups.items() if eid in group_est[k]}
        slots: list[Slot] = []
        for slot in tt.slots:
            mine_c = tuple(r for r in slot.classes if r.ident in classes)
            mine_p = tuple(r for r in slot.parts if r.ident in parts)
            mine_g = tuple(r for r in slot.groups if r.ident in groups)
            # a slot naming groups makes courses for its groups only (§7): it follows its groups
            if mine_g if slot.groups else (mine_c or mine_p):
                slots.append(replace(slot, classes=mine_c, parts=mine_p, groups=mine_g))
            elif not (slot.classes or slot.parts or slot.groups) and eid == default:
                slots.append(slot)
        used_teachers = {r.ident for x in slots for r in x.teachers}
        used_staff = {r.ident for x in slots for r in x.staff}
        used_rooms = {r.ident for x in slots for r in x.rooms}
        used_equipment = {r.ident for x in slots for r in x.equipment}
        used_subjects = {x.subject for x in slots}
        students = {k: v for k, v in tt.students.items() if eid in student_est[k]}
        # members and memberships outside this establishment are dropped: each part stands alone
        groups = {
            k: replace(
                g,
                classes=tuple(c for c in g.classes if c in classes),
                parts=tuple(p for p in g.parts if p in parts),
                students=tuple(e for e in g.students if e in students),
            )
            for k, g in groups.items()
        }
        students = {
            k: replace(
                v,
                classes=tuple(m for m in v.classes if m.ident in classes),
                parts=tuple(m for m in v.parts if m.ident in parts),
            )
            for k, v in students.items()
        }
        out[est.uai] = replace(
            tt,
            uai=est.uai,
            establishments={eid: est},
            subjects={k: v for k, v in tt.subjects.items() if k in used_subjects},
            teachers={k: v for k, v in tt.teachers.items() if k in used_teachers},
            staff={k: v for k, v in tt.staff.items() if k in used_staff},
            rooms={k: v for k, v in tt.rooms.items() if k in used_rooms},
            equipment={k: v for k, v in tt.equipment.items() if k in used_equipment},
            classes=classes,
            groups=groups,
            students=students,
            slots=tuple(slots),
        )
    return out


# ------------------------------------------------------------------------------- the stage's decision

MAX_LISTED = 3  # problems quoted in the step's message; all are in the alerts


def problem_view(p: Problem, severity: str) -> dict[str, Any]:
    return {"code": p.code, "severity": severity, "message": p.message_fr, "message_en": p.message_en,
            "detail": {k: (list(v) if isinstance(v, set | tuple) else v) for k, v in p.detail.items()}}


def summary(problems: list[dict[str, Any]], lang: str) -> str:
    key = "message" if lang == "fr" else "message_en"
    listed = " ".join(p[key] for p in problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    if more > 0:
        listed += f" (+{more} autre(s))" if lang == "fr" else f" (+{more} more)"
    return listed


def decide(cmd: StageCommand, found: dict[str, Any]) -> StageResult:
    """Rejected with every reason when anything is wrong; warnings ride along as alerts. `found` is what
    the worker process reported (`handlers.validate_file`)."""
    errors, warnings = found["errors"], found["warnings"]
    alerts = errors + warnings
    if errors:
        return StageResult(StepStatus.ERROR, outcome=ImportStatus.REJECTED,
                           message="Fichier refusé : " + summary(errors, "fr"),
                           message_en="File rejected: " + summary(errors, "en"), alerts=alerts,
                           counts={"errors": len(errors), "warnings": len(warnings)})
    by_uai = {uai.upper(): est for est, uai in cmd.establishments.items()}
    parts = {by_uai[uai]: sha for uai, sha in found["parts"].items() if uai in by_uai}
    meta = found["meta"]
    if not parts:  # a one-establishment file (maybe deposited on the site URL, encrypted)
        owner = cmd.establishment or by_uai.get((meta.get("uai") or "").upper())
        parts = {owner: found["timetable_sha256"]} if owner else {}
    return StageResult(
        StepStatus.WARNING if warnings else StepStatus.OK,
        message=(f"{len(warnings)} avertissement(s) : " + summary(warnings, "fr")) if warnings else None,
        message_en=(f"{len(warnings)} warning(s): " + summary(warnings, "en")) if warnings else None,
        alerts=alerts, counts={**found["counts"], "warnings": len(warnings)},
        artifacts={"timetable_sha256": found["timetable_sha256"], "timetables": parts,
                   "software": meta.get("software"), "encrypted": meta.get("encrypted")})
