"""The validation severity policy (design.md §7), written once: every problem code with its severity, its
effect on the import and its French and English message.

A **rejection** only where the file cannot be used safely or truthfully: not XML or unsafe XML, size and zip
caps, wrong UAI, key, decryption or verification failures, software, year or format version not accepted, no
school year or time grid, no usable course at all. What real exports carry — dangling references, subject-only
slots, duplicate idents, empty or impossible dates on people, unknown elements and attributes, week bits
outside the school year — is a **warning** with counts and samples, and the import goes on with the effect
stated here. Parsers report a code; its severity is looked up here, never decided where it is found.
docs/validation.md is this table in prose; a test checks that the two list the same codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"  # the import is rejected
    WARNING = "warning"  # the import goes on, with the rule's effect


@dataclass(frozen=True, slots=True)
class Rule:
    severity: Severity
    effect: str  # what happens to the file's data, e.g. "reference dropped"; "import rejected" for errors
    fr: str  # message; {placeholders} are filled from the problem's detail
    en: str


REJECTED = "import rejected"
E, W = Severity.ERROR, Severity.WARNING

POLICY: dict[str, Rule] = {
    # the file itself
    "file_empty": Rule(E, REJECTED, "Le fichier est vide.", "The file is empty."),
    "file_too_large": Rule(
        E,
        REJECTED,
        "Le fichier est trop volumineux ({size} octets, maximum {limit}).",
        "The file is too large ({size} bytes, limit {limit}).",
    ),
    "file_unreadable": Rule(
        E, REJECTED, "Le fichier ne peut pas être lu ({reason}).", "The file cannot be read ({reason})."
    ),
    "not_xml": Rule(
        E,
        REJECTED,
        "Le fichier n'est ni un fichier XML ni une archive zip contenant un XML.",
        "The file is neither XML nor a zip archive holding one XML file.",
    ),
    "xml_malformed": Rule(
        E,
        REJECTED,
        "Le fichier XML est mal formé (ligne {line}) : {reason}.",
        "The XML file is malformed (line {line}): {reason}.",
    ),
    "xml_truncated": Rule(
        E,
        REJECTED,
        "Le fichier XML est tronqué (ligne {line}) : l'envoi a probablement été interrompu.",
        "The XML file is truncated (line {line}): the upload was probably interrupted.",
    ),
    "xml_dtd_forbidden": Rule(
        E,
        REJECTED,
        "Le fichier XML déclare une DTD ({doctype}), ce que ne fait aucun export EDT/PRONOTE : refusé.",
        "The XML file declares a DTD ({doctype}), which no EDT/PRONOTE export does: refused.",
    ),
    "xml_entities_forbidden": Rule(
        E,
        REJECTED,
        "Le fichier XML déclare des entités ({entities}) : refusé par sécurité.",
        "The XML file declares entities ({entities}): refused for safety.",
    ),
    "xml_too_deep": Rule(
        E,
        REJECTED,
        "Le fichier XML est trop imbriqué (profondeur {depth} à la ligne {line}, maximum {limit}).",
        "The XML file is nested too deep (depth {depth} at line {line}, limit {limit}).",
    ),
    "xml_too_many_elements": Rule(
        E,
        REJECTED,
        "Le fichier XML contient trop d'éléments (plus de {limit}).",
        "The XML file has too many elements (more than {limit}).",
    ),
    "xml_too_large": Rule(
        E,
        REJECTED,
        "Le contenu XML est trop volumineux (plus de {limit} octets).",
        "The XML content is too large (more than {limit} bytes).",
    ),
    "unknown_document": Rule(
        E,
        REJECTED,
        "Ce fichier XML n'est pas un export EDT/PRONOTE (élément racine « {root} »).",
        "This XML file is not an EDT/PRONOTE export (root element '{root}').",
    ),
    # zip
    "zip_corrupt": Rule(
        E, REJECTED, "L'archive zip est illisible ({reason}).", "The zip archive is unreadable ({reason})."
    ),
    "zip_empty": Rule(E, REJECTED, "L'archive zip est vide.", "The zip archive is empty."),
    "zip_no_xml": Rule(
        E,
        REJECTED,
        "L'archive zip ne contient aucun fichier XML (fichiers : {members}).",
        "The zip archive holds no XML file (members: {members}).",
    ),
    "zip_several_xml": Rule(
        E,
        REJECTED,
        "L'archive zip contient plusieurs fichiers XML ({members}) : un seul est attendu.",
        "The zip archive holds several XML files ({members}): exactly one is expected.",
    ),
    "zip_too_many_members": Rule(
        E,
        REJECTED,
        "L'archive zip contient trop de fichiers ({count}, maximum {limit}).",
        "The zip archive has too many members ({count}, limit {limit}).",
    ),
    "zip_unsafe_member": Rule(
        E,
        REJECTED,
        "L'archive zip contient un nom de fichier dangereux (« {member} ») : refusée.",
        "The zip archive has an unsafe member name ('{member}'): refused.",
    ),
    "zip_encrypted_member": Rule(
        E,
        REJECTED,
        "L'archive zip est protégée par mot de passe (« {member} »).",
        "The zip archive is password-protected ('{member}').",
    ),
    "zip_member_too_large": Rule(
        E,
        REJECTED,
        "Le fichier « {member} » de l'archive est trop volumineux une fois décompressé (maximum {limit} octets).",
        "Member '{member}' of the archive is too large once uncompressed (limit {limit} bytes).",
    ),
    "zip_ratio_exceeded": Rule(
        E,
        REJECTED,
        "Le fichier « {member} » de l'archive a un taux de compression anormal ({ratio}:1, maximum {limit}:1) : refusé (bombe zip).",
        "Member '{member}' of the archive has an abnormal compression ratio ({ratio}:1, limit {limit}:1): refused (zip bomb).",
    ),
    "zip_members_ignored": Rule(
        W, "members ignored", "Fichiers de l'archive ignorés : {members}.", "Archive members ignored: {members}."
    ),
    # software, format and establishment
    "unknown_format_version": Rule(
        E,
        REJECTED,
        "Version de format inconnue : « {found} » (versions acceptées : {accepted}).",
        "Unknown format version: '{found}' (accepted: {accepted}).",
    ),
    "unknown_software": Rule(
        E,
        REJECTED,
        "Logiciel non reconnu : « {found} » (acceptés : {accepted}).",
        "Unknown software: '{found}' (accepted: {accepted}).",
    ),
    "unsupported_software_year": Rule(
        E,
        REJECTED,
        "Version du logiciel non prise en charge : « {found} » (acceptées : {min_year} et suivantes).",
        "Unsupported software version: '{found}' (accepted: {min_year} and later).",
    ),
    "uai_mismatch": Rule(
        E,
        REJECTED,
        "Le fichier concerne l'établissement {found}, pas l'établissement attendu ({expected}).",
        "The file is for establishment {found}, not the expected one ({expected}).",
    ),
    "establishment_not_in_site": Rule(
        E,
        REJECTED,
        "Le fichier contient des établissements qui ne font pas partie de cet espace : {uais}.",
        "The file covers establishments that are not part of this site: {uais}.",
    ),
    "encryption_required": Rule(
        E,
        REJECTED,
        "Cet espace n'accepte que des exports chiffrés : le fichier déposé est en clair.",
        "This site only accepts encrypted exports: the deposited file is in clear.",
    ),
    # encryption
    "container_malformed": Rule(
        E, REJECTED, "Le conteneur chiffré est invalide : {reason}.", "The encrypted container is invalid: {reason}."
    ),
    "key_absent": Rule(
        E,
        REJECTED,
        "Clé absente : le fichier n'est pas chiffré pour le partenaire « {partner} » (partenaires : {found}).",
        "Key absent: the file is not encrypted for partner '{partner}' (partners: {found}).",
    ),
    "private_key_missing": Rule(
        E,
        REJECTED,
        "Clé absente : aucune clé privée n'est configurée pour déchiffrer les exports PRONOTE.",
        "Key absent: no private key is configured to decrypt PRONOTE exports.",
    ),
    "private_key_invalid": Rule(
        E,
        REJECTED,
        "La clé privée configurée est illisible ({reason}).",
        "The configured private key cannot be read ({reason}).",
    ),
    "key_decrypt_failed": Rule(
        E,
        REJECTED,
        "La clé de chiffrement du fichier ne peut pas être déchiffrée : le fichier a été chiffré pour une autre clé.",
        "The file's encryption key cannot be decrypted: the file was encrypted for another key.",
    ),
    "key_check_failed": Rule(
        E, REJECTED, "Le contrôle de la clé de chiffrement (MD5) a échoué.", "The encryption key check (MD5) failed."
    ),
    "content_decrypt_failed": Rule(
        E,
        REJECTED,
        "Le contenu chiffré ne peut pas être déchiffré ({reason}).",
        "The encrypted content cannot be decrypted ({reason}).",
    ),
    "content_hash_mismatch": Rule(
        E,
        REJECTED,
        "Le contenu déchiffré ne correspond pas à son empreinte SHA-256 : fichier altéré.",
        "The decrypted content does not match its SHA-256 hash: the file was altered.",
    ),
    "content_zlib_failed": Rule(
        E,
        REJECTED,
        "Le contenu déchiffré ne peut pas être décompressé ({reason}).",
        "The decrypted content cannot be decompressed ({reason}).",
    ),
    "container_uai_differs": Rule(
        W,
        "none",
        "L'UAI du conteneur ({container}) diffère de celui de l'export ({inner}).",
        "The container's UAI ({container}) differs from the export's ({inner}).",
    ),
    # what the timetable needs
    "missing_element": Rule(
        E,
        REJECTED,
        "Élément obligatoire absent : {element} (dans {parent}, ligne {line}).",
        "Required element missing: {element} (in {parent}, line {line}).",
    ),
    "missing_attribute": Rule(
        E,
        REJECTED,
        "Attribut obligatoire absent : {attribute} de {element} (ligne {line}, {count} occurrence(s)).",
        "Required attribute missing: {attribute} of {element} (line {line}, {count} occurrence(s)).",
    ),
    "invalid_value": Rule(
        E,
        REJECTED,
        "Valeur invalide pour {attribute} de {element} : « {value} » (ligne {line}, {count} occurrence(s)).",
        "Invalid value for {attribute} of {element}: '{value}' (line {line}, {count} occurrence(s)).",
    ),
    "school_year_incoherent": Rule(
        E, REJECTED, "Dates de l'année scolaire incohérentes : {reason}.", "Incoherent school year dates: {reason}."
    ),
    "grid_invalid": Rule(E, REJECTED, "Grille horaire invalide : {reason}.", "Invalid time grid: {reason}."),
    "no_usable_course": Rule(
        E,
        REJECTED,
        "Aucun service d'enseignement utilisable dans le fichier : aucun cours ne relie une matière connue à une classe ou à un groupe.",
        "No usable course in the file: no slot links a known subject to a class or a group.",
    ),
    # what real files carry
    "duplicate_ident": Rule(
        W,
        "first kept",
        "Identifiant en double : {count} {element} reprennent un Ident déjà utilisé (ex. {samples}) : seul le premier est retenu.",
        "Duplicate ident: {count} {element} reuse an Ident already used (e.g. {samples}): only the first is kept.",
    ),
    "dangling_reference": Rule(
        W,
        "reference dropped",
        "{count} référence(s) de {source} vers des {target} inconnu(e)s (ex. Ident {samples}) : ces références sont ignorées.",
        "{count} reference(s) from {source} to unknown {target} (e.g. Ident {samples}): those references are ignored.",
    ),
    "slot_subject_unknown": Rule(
        W,
        "slot ignored",
        "{count} cours citent une matière inconnue (ex. Ident {samples}) : ignorés.",
        "{count} slot(s) name an unknown subject (e.g. Ident {samples}): ignored.",
    ),
    "slot_without_subject": Rule(
        W,
        "slot ignored",
        "{count} cours sans matière (ligne {line}) : ignorés.",
        "{count} slot(s) without a subject (line {line}): ignored.",
    ),
    "slot_incomplete": Rule(
        W,
        "slot ignored",
        "{count} cours sans jour ou place valides ({attribute}, ex. « {value} », ligne {line}) : ignorés.",
        "{count} slot(s) without a valid day or place ({attribute}, e.g. '{value}', line {line}): ignored.",
    ),
    "slot_out_of_grid": Rule(
        W,
        "slot ignored",
        "{count} cours hors de la grille horaire (ex. jour {day}, place {place}, ligne {line}) : ignorés.",
        "{count} slot(s) outside the time grid (e.g. day {day}, place {place}, line {line}): ignored.",
    ),
    "element_incomplete": Rule(
        W,
        "element ignored",
        "{count} {element} sans {attribute} utilisable (ex. « {value} », ligne {line}) : ignoré(e)s.",
        "{count} {element} without a usable {attribute} (e.g. '{value}', line {line}): ignored.",
    ),
    "attribute_missing": Rule(
        W,
        "left empty",
        "{count} {element} sans attribut {attribute} (ligne {line}) : valeur laissée vide.",
        "{count} {element} without attribute {attribute} (line {line}): value left empty.",
    ),
    "date_invalid": Rule(
        W,
        "date ignored",
        "{count} date(s) invalide(s) pour {attribute} de {element} (ex. « {value} », ligne {line}) : ignorée(s).",
        "{count} invalid date(s) for {attribute} of {element} (e.g. '{value}', line {line}): ignored.",
    ),
    "value_ignored": Rule(
        W,
        "value ignored",
        "{count} valeur(s) invalide(s) pour {attribute} de {element} (ex. « {value} », ligne {line}) : ignorée(s).",
        "{count} invalid value(s) for {attribute} of {element} (e.g. '{value}', line {line}): ignored.",
    ),
    "unknown_elements": Rule(
        W,
        "ignored",
        "Éléments ou attributs inconnus ignorés : {samples}.",
        "Unknown elements or attributes ignored: {samples}.",
    ),
    "section_missing": Rule(
        W, "none", "Section absente du fichier : {element}.", "Section missing from the file: {element}."
    ),
    "namespace_unexpected": Rule(
        W, "none", "Espace de noms XML inattendu : « {found} ».", "Unexpected XML namespace: '{found}'."
    ),
    "week1_not_monday": Rule(
        W,
        "none",
        "Le premier jour de la semaine 1 ({date}) n'est pas un lundi.",
        "The first day of week 1 ({date}) is not a Monday.",
    ),
    "grid_place_count_mismatch": Rule(
        W,
        "places as listed",
        "La grille annonce {declared} places par jour mais en décrit {found}.",
        "The grid declares {declared} places per day but describes {found}.",
    ),
    "slot_on_non_working_day": Rule(
        W,
        "none",
        "{count} cours placé(s) sur un jour non ouvré (ex. jour {day}).",
        "{count} slot(s) on a non-working day (e.g. day {day}).",
    ),
    "slot_without_resources": Rule(
        W,
        "slot ignored",
        "{count} cours sans aucune ressource (seulement une matière) : ignorés.",
        "{count} slot(s) with no resource (a subject only): ignored.",
    ),
    "slot_parts_only": Rule(
        W,
        "no course made",
        "{count} cours ne concernent que des parties de classe : aucun service d'enseignement n'en est créé.",
        "{count} slot(s) name only parts of classes: no course is made from them.",
    ),
    "slot_groups_and_classes": Rule(
        W,
        "groups only",
        "{count} cours citent à la fois des groupes et des classes : seuls les groupes sont retenus.",
        "{count} slot(s) name both groups and classes: only the groups are kept.",
    ),
    "slot_several_subjects": Rule(
        W,
        "first kept",
        "{count} cours citent plusieurs matières : seule la première est retenue.",
        "{count} slot(s) name several subjects: only the first is kept.",
    ),
    "weeks_outside_school_year": Rule(
        W,
        "weeks ignored",
        "{count} ressource(s) de cours ont des semaines hors de l'année scolaire : ces semaines sont ignorées.",
        "{count} slot resource(s) have weeks outside the school year: those weeks are ignored.",
    ),
    "birth_date_empty": Rule(
        W, "none", "{count} élève(s) sans date de naissance.", "{count} student(s) without a birth date."
    ),
    "student_without_class": Rule(W, "none", "{count} élève(s) sans classe.", "{count} student(s) without a class."),
    "class_without_establishment": Rule(
        W,
        "file's establishment",
        "{count} classe(s) sans établissement dans un fichier multi-établissements (ex. {samples}).",
        "{count} class(es) without an establishment in a multi-establishment file (e.g. {samples}).",
    ),
    "homonyms": Rule(
        W,
        "none",
        "{count} homonyme(s) parmi les {kind} (ex. Ident {samples}) : le rapprochement par nom sera ambigu ; ils figurent dans les listes des non rapprochés.",
        "{count} homonym(s) among {kind} (e.g. Ident {samples}): matching by name will be ambiguous; they are in the unreconciled lists.",
    ),
}

# code → (French, English), the messages alone
MESSAGES: dict[str, tuple[str, str]] = {code: (rule.fr, rule.en) for code, rule in POLICY.items()}


class _Fmt(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    message_fr: str
    message_en: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> Severity:
        return POLICY[self.code].severity

    @property
    def effect(self) -> str:
        return POLICY[self.code].effect


def make_problem(code: str, **detail: Any) -> Problem:
    rule = POLICY[code]
    values = _Fmt({k: (", ".join(map(str, v)) if isinstance(v, list | tuple) else v) for k, v in detail.items()})
    return Problem(code, rule.fr.format_map(values), rule.en.format_map(values), detail)


def problem_view(p: Problem) -> dict[str, Any]:
    return {"code": p.code, "severity": p.severity.value, "effect": p.effect, "message": p.message_fr,
            "message_en": p.message_en,
            "detail": {k: (list(v) if isinstance(v, set | tuple) else v) for k, v in p.detail.items()}}
