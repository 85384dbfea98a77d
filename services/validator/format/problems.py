"""The validator's problems: every code with its severity, its effect and its French and English message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
