"""A corpus of bad deposits, each with the problem code the validator must give it — and its twin, the
tolerated corpus: files carrying what real exports carry, each with the warning it must give while the import
goes on. Between them every row of the validation policy (services/validator/format/problems.py) has a file.

`build_corpus(directory)` writes every case (lazily: the huge file is sparse, the zip bomb is deflated
in a stream) and returns `BadCase`s holding the file, the `parse_export` keyword arguments to use and
the accepted codes (a wrong RSA key may surface as either of two codes: OpenSSL's implicit rejection
answers random bytes that almost never have the expected length).
"""

from __future__ import annotations

import base64
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from services.validator.domain import Limits
from tests.factory import (
    GeneratedSchool,
    encrypt_export,
    make_keypair,
    make_school,
    zip_export,
)

PARTNER = "EDT-IMPORT"


@dataclass
class CorpusContext:
    school: GeneratedSchool
    xml: bytes
    private_key: bytes
    public_key: bytes
    other_public_key: bytes
    multi: GeneratedSchool | None = None

    @classmethod
    def create(cls, seed: int = 7) -> CorpusContext:
        school = make_school("XS", seed)
        private, public = make_keypair()
        _, other_public = make_keypair()
        return cls(school, school.to_xml_bytes(), private, public, other_public)

    @property
    def uai(self) -> str:
        return self.school.timetable.uai

    def encrypted(self, **kwargs: Any) -> bytes:
        kwargs.setdefault("uai", self.uai)
        public = kwargs.pop("public_key", self.public_key)
        partner = kwargs.pop("partner", PARTNER)
        return encrypt_export(self.xml, public, partner, **kwargs)

    def xml_with(self, old: str, new: str, count: int = 1) -> bytes:
        text = self.xml.decode("utf-8")
        if old not in text:
            raise AssertionError(f"factory XML lacks {old!r}")
        return text.replace(old, new, count).encode("utf-8")


@dataclass
class BadCase:
    name: str
    codes: frozenset[str]  # the codes accepted for this case; `code` is the one expected
    code: str
    path: Path
    kwargs: dict[str, Any] = field(default_factory=dict)  # parse_export keyword overrides
    description: str = ""


Builder = Callable[[CorpusContext, Path], tuple[bytes | Callable[[Path], None], dict[str, Any]]]
CASES: list[tuple[str, str, tuple[str, ...], str, Builder]] = []


TOLERATED: list[tuple[str, str, tuple[str, ...], str, Builder]] = []


def case(name: str, code: str, description: str, *also: str) -> Callable[[Builder], Builder]:
    """A file the validator must reject with `code` (or one of `also`)."""
    def register(fn: Builder) -> Builder:
        CASES.append((name, code, also, description, fn))
        return fn

    return register


def tolerated(name: str, code: str, description: str) -> Callable[[Builder], Builder]:
    """A file the validator must accept with the warning `code`."""
    def register(fn: Builder) -> Builder:
        TOLERATED.append((name, code, (), description, fn))
        return fn

    return register


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


# ------------------------------------------------------------------------------- not XML, hostile XML


@case("not_xml.txt", "not_xml", "plain text")
def _not_xml(ctx: CorpusContext, d: Path) -> Any:
    return b"Bonjour, ceci n'est pas un export.\n", {}


@case("empty.xml", "file_empty", "zero bytes")
def _empty(ctx: CorpusContext, d: Path) -> Any:
    return b"", {}


@case("xxe.xml", "xml_entities_forbidden", "external entity reading a local file")
def _xxe(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode("utf-8")
    head, rest = text.split("\n", 1)
    doctype = '<!DOCTYPE ExportEmploiDuTemps [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    return (head + "\n" + doctype + rest.replace('Libelle="FRANCAIS"', 'Libelle="&xxe;"')).encode(), {}


@case("billion_laughs.xml", "xml_entities_forbidden", "exponential entity expansion")
def _laughs(ctx: CorpusContext, d: Path) -> Any:
    ents = ['<!ENTITY lol "lol">'] + [f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
    doc = f'<?xml version="1.0"?>\n<!DOCTYPE ExportEmploiDuTemps [{"".join(ents)}]>\n'
    doc = doc.replace("&lol0;", "&lol;")
    return (doc + '<ExportEmploiDuTemps Version="1.1" UAI="&lol9;"/>').encode(), {}


@case("external_dtd.xml", "xml_dtd_forbidden", "DOCTYPE pointing at a remote DTD")
def _external_dtd(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode("utf-8")
    head, rest = text.split("\n", 1)
    return (head + '\n<!DOCTYPE ExportEmploiDuTemps SYSTEM "http://127.0.0.1:9/edt.dtd">\n' + rest).encode(), {}


@case("huge_sparse.xml", "file_too_large", "2.5 GB sparse file: refused on its size, never read")
def _huge(ctx: CorpusContext, d: Path) -> Any:
    def write(path: Path) -> None:
        with open(path, "wb") as fh:
            fh.write(b"<ExportEmploiDuTemps>")
            fh.truncate(2_500_000_000)

    return write, {}


@case("huge_stream.xml", "xml_too_large", "more XML than the stream cap (cap lowered to 1 MiB)")
def _huge_stream(ctx: CorpusContext, d: Path) -> Any:
    def write(path: Path) -> None:
        with open(path, "wb") as fh:
            fh.write(ctx.xml.split(b"<Cours>", 1)[0] + b"<Cours>\n")
            block = b'\t<Cours Jour="1" NumeroPlaceDebut="0" NombrePlaces="1"><Matiere Ident="2"/></Cours>\n' * 1000
            for _ in range(40):  # ~3.5 MB, written in blocks
                fh.write(block)
            fh.write(b"  </Cours>\n</ExportEmploiDuTemps>\n")

    return write, {"limits": Limits(max_xml_bytes=1024 * 1024)}


@case("too_many_elements.xml", "xml_too_many_elements", "more elements than the cap (cap lowered to 500)")
def _many(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml, {"limits": Limits(max_elements=500)}


@case("too_deep.xml", "xml_too_deep", "an unknown element nested 100 deep")
def _deep(ctx: CorpusContext, d: Path) -> Any:
    nest = "<Etiquette>" * 100 + "</Etiquette>" * 100
    return ctx.xml_with("  <Cours>", f"  <Etiquettes>{nest}</Etiquettes>\n  <Cours>"), {}


@case("truncated.xml", "xml_truncated", "upload cut in the middle")
def _truncated(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml[: len(ctx.xml) * 2 // 3], {}


@case("malformed.xml", "xml_malformed", "mismatched tag in the middle of the file")
def _malformed(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml_with("  </Matieres>", "  </Matiere>"), {}


@case("other_document.xml", "unknown_document", "well-formed XML that is not an export")
def _other(ctx: CorpusContext, d: Path) -> Any:
    return b'<?xml version="1.0"?>\n<html><body>Emploi du temps</body></html>\n', {}


# ---------------------------------------------------------------------------------------------- zip


@case("zip_bomb.zip", "zip_ratio_exceeded", "64 MiB of blanks deflated ~1000:1")
def _bomb(ctx: CorpusContext, d: Path) -> Any:
    def write(path: Path) -> None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("EDT_2014_1.xml", "w") as member:
            member.write(b"<ExportEmploiDuTemps>")
            chunk = b" " * (1024 * 1024)
            for _ in range(64):
                member.write(chunk)
            member.write(b"</ExportEmploiDuTemps>")

    return write, {}


@case("zip_member_too_large.zip", "zip_member_too_large", "member larger than the cap (cap lowered to 16 KiB)")
def _member_large(ctx: CorpusContext, d: Path) -> Any:
    return zip_export(ctx.xml, "EDT_To_KOSMOS.xml"), {"limits": Limits(max_zip_member_bytes=16 * 1024)}


@case("zip_traversal.zip", "zip_unsafe_member", "member named ../../")
def _traversal(ctx: CorpusContext, d: Path) -> Any:
    return _zip([("../../etc/cron.d/EDT.xml", ctx.xml)]), {}


@case("zip_empty.zip", "zip_empty", "a zip without members")
def _zip_empty(ctx: CorpusContext, d: Path) -> Any:
    return _zip([]), {}


@case("zip_two_xml.zip", "zip_several_xml", "two XML members")
def _zip_two(ctx: CorpusContext, d: Path) -> Any:
    return _zip([("EDT_a.xml", ctx.xml), ("EDT_b.xml", ctx.xml)]), {}


@case("zip_no_xml.zip", "zip_no_xml", "a zip holding only a text file")
def _zip_none(ctx: CorpusContext, d: Path) -> Any:
    return _zip([("lisezmoi.txt", b"rien ici")]), {}


@case("zip_corrupt.zip", "zip_corrupt", "zip magic then garbage")
def _zip_corrupt(ctx: CorpusContext, d: Path) -> Any:
    return zip_export(ctx.xml, "EDT.xml")[:300], {}


@case("zip_password.zip", "zip_encrypted_member", "member flagged as password-protected")
def _zip_password(ctx: CorpusContext, d: Path) -> Any:
    data = bytearray(_zip([("EDT.xml", ctx.xml)]))
    # zipfile cannot write encrypted members: set the "encrypted" flag in both headers by hand
    data[6] |= 0x1
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 0x1
    return bytes(data), {}


# --------------------------------------------------------------------------------------- encryption


@case("wrong_partner.xml", "key_absent", "encrypted for another ENT only")
def _wrong_partner(ctx: CorpusContext, d: Path) -> Any:
    return ctx.encrypted(partner="AUTRE-ENT"), {}


@case("no_private_key.xml", "private_key_missing", "encrypted, but no key configured here")
def _no_key(ctx: CorpusContext, d: Path) -> Any:
    return ctx.encrypted(), {"private_key": None}


@case("invalid_private_key.xml", "private_key_invalid", "the configured key is not a key")
def _invalid_key(ctx: CorpusContext, d: Path) -> Any:
    return ctx.encrypted(), {"private_key": b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"}


@case("wrong_key.xml", "key_decrypt_failed", "encrypted to another RSA key under our partner name", "key_check_failed")
def _wrong_key(ctx: CorpusContext, d: Path) -> Any:
    return ctx.encrypted(public_key=ctx.other_public_key), {}


@case("bad_md5.xml", "key_check_failed", "RSA blob whose MD5 key check is wrong")
def _bad_md5(ctx: CorpusContext, d: Path) -> Any:
    return ctx.encrypted(bad_md5=True), {}


@case("tampered.xml", "content_hash_mismatch", "one ciphertext byte flipped")
def _tampered(ctx: CorpusContext, d: Path) -> Any:
    return ctx.encrypted(tamper=True), {}


@case("bad_zlib.xml", "content_zlib_failed", "says compressed, is not")
def _bad_zlib(ctx: CorpusContext, d: Path) -> Any:
    return ctx.encrypted(claim_compressed_but_raw=True), {}


@case("container_no_content.xml", "missing_element", "container without CONTENU")
def _no_content(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.encrypted().decode()
    start, end = text.index("<CONTENU"), text.index("</CONTENU>") + len("</CONTENU>")
    return (text[:start] + text[end:]).encode(), {}


@case("container_bad_base64.xml", "container_malformed", "CONTENU is not base64")
def _bad_b64(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.encrypted().decode()
    start = text.index(">", text.index("<CONTENU")) + 1
    return (text[:start] + "!!not base64!!" + text[start + 20 :]).encode(), {}


@case("container_unknown_version.xml", "unknown_format_version", "container VERSION 3.0")
def _container_version(ctx: CorpusContext, d: Path) -> Any:
    return ctx.encrypted(version="3.0"), {}


@case("unknown_software.xml", "unknown_software", "LOGICIEL of another vendor")
def _unknown_software(ctx: CorpusContext, d: Path) -> Any:
    return ctx.encrypted(software="UnDeuxTemps 2020 - 4.1"), {}


@case("old_software.xml", "unsupported_software_year", "PRONOTE 2011")
def _old_software(ctx: CorpusContext, d: Path) -> Any:
    return ctx.encrypted(software="PRONOTE Monoposte-PRONOTE 2011 - 0.3.2"), {}


# ------------------------------------------------------------------------------------------- content


@case("wrong_uai.xml", "uai_mismatch", "the file of another establishment")
def _wrong_uai(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml, {"expected_uais": ["0999999Z"]}


@case("foreign_establishment.xml", "establishment_not_in_site", "cité scolaire file, one UAI not in the site")
def _foreign(ctx: CorpusContext, d: Path) -> Any:
    multi = ctx.multi or make_school("XL", 3)
    ctx.multi = multi
    return multi.to_xml_bytes(), {"expected_uais": [multi.timetable.uai]}


@case("clear_but_encryption_required.xml", "encryption_required", "site requires encryption")
def _clear_required(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml, {"require_encryption": True}


@case("unknown_version.xml", "unknown_format_version", "export Version 2.0")
def _version(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml_with('Version="1.1"', 'Version="2.0"'), {}


@case("year_missing_attribute.xml", "missing_attribute", "AnneeScolaire without DateFin")
def _year_missing_attr(ctx: CorpusContext, d: Path) -> Any:
    y = ctx.school.timetable.school_year
    return ctx.xml_with(f' DateFin="{y.end}"', ""), {}


@case("year_invalid_date.xml", "invalid_value", "DatePremierJourSemaine1 is not a date")
def _year_invalid(ctx: CorpusContext, d: Path) -> Any:
    y = ctx.school.timetable.school_year
    return ctx.xml_with(f'DatePremierJourSemaine1="{y.week1}"', 'DatePremierJourSemaine1="lundi"'), {}


@case("missing_element.xml", "missing_element", "no AnneeScolaire")
def _missing_element(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode()
    start = text.index("  <AnneeScolaire")
    end = text.index("\n", start) + 1
    return (text[:start] + text[end:]).encode(), {}


@case("grid_without_place.xml", "grid_invalid", "GrilleHoraire without any Place")
def _no_place(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode()
    start, end = text.index("<PlacesParJour>") + len("<PlacesParJour>"), text.index("\t</PlacesParJour>")
    return (text[:start] + "\n" + text[end:]).encode(), {}


@case("incoherent_year.xml", "school_year_incoherent", "DateFin before DateDebut")
def _year(ctx: CorpusContext, d: Path) -> Any:
    y = ctx.school.timetable.school_year
    return ctx.xml_with(f'DateFin="{y.end}"', f'DateFin="{y.start.replace(year=y.start.year - 1)}"'), {}


@case("no_usable_course.xml", "no_usable_course", "every Cours names a subject the file does not declare")
def _no_course(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode()
    head, cours = text.split("  <Cours>", 1)
    return (head + "  <Cours>" + re.sub(r'<Matiere Ident="\d+"/>', '<Matiere Ident="999999"/>', cours)).encode(), {}


@case("unreadable", "file_unreadable", "the path is a directory, not a file")
def _unreadable(ctx: CorpusContext, d: Path) -> Any:
    return (lambda path: path.mkdir(exist_ok=True)), {}


@case("zip_too_many_members.zip", "zip_too_many_members", "more members than the cap (cap lowered to 3)")
def _zip_many(ctx: CorpusContext, d: Path) -> Any:
    return _zip([("EDT.xml", ctx.xml)] + [(f"note{i}.txt", b"x") for i in range(4)]), {
        "limits": Limits(max_zip_members=3)}


@case("content_not_blocks.xml", "content_decrypt_failed", "CONTENU is not a whole number of AES blocks")
def _not_blocks(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.encrypted().decode()
    start = text.index(">", text.index("<CONTENU")) + 1
    end = text.index("</CONTENU>")
    return (text[:start] + base64.b64encode(b"x" * 15).decode() + text[end:]).encode(), {}


# ------------------------------------------------------------------ tolerated: what real files carry


def _first_cours(text: str) -> tuple[int, int]:
    """Start and end offsets of the first Cours element of the Cours section."""
    start = text.index("\t<Cours ", text.index("  <Cours>"))
    return start, text.index("\t</Cours>\n", start) + len("\t</Cours>\n")


def _in_first_cours(ctx: CorpusContext, old: str, new: str) -> bytes:
    text = ctx.xml.decode()
    start, end = _first_cours(text)
    block = text[start:end]
    if old not in block:
        raise AssertionError(f"first Cours lacks {old!r}")
    return (text[:start] + block.replace(old, new, 1) + text[end:]).encode()


@tolerated("slot_incomplete.xml", "slot_incomplete", "a Cours without Jour")
def _slot_incomplete(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml_with('<Cours Jour="', '<Cours Jours="'), {}


@tolerated("dangling_reference.xml", "dangling_reference", "a Cours naming an unknown teacher")
def _dangling(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode()
    at = text.index("<Professeur Ident=", text.index("  <Cours>"))
    end = text.index('"', at + len('<Professeur Ident="'))
    return (text[:at] + '<Professeur Ident="999999' + text[end:]).encode(), {}


@tolerated("dangling_part.xml", "dangling_reference", "students in a part of class no Classe declares (real PRONOTE)")
def _dangling_part(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode()
    at = text.index("\t  <Classe Ident=", text.index("  <Eleves>"))
    return (text[:at] + '\t  <PartieDeClasse Ident="30" DateEntree="2012-09-04" DateSortie="2013-08-31"/>\n'
            + text[at:]).encode(), {}


@tolerated("invalid_weeks.xml", "element_incomplete", "a Semaines that is not a number")
def _invalid(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode()
    at = text.index('Semaines="', text.index("  <Cours>")) + len('Semaines="')
    end = text.index('"', at)
    return (text[:at] + "toutes" + text[end:]).encode(), {}


@tolerated("out_of_grid.xml", "slot_out_of_grid", "a Cours at place 42 of a 10-place day")
def _out_of_grid(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml_with('NumeroPlaceDebut="0"', 'NumeroPlaceDebut="42"'), {}


@tolerated("duplicate_ident.xml", "duplicate_ident", "two subjects with one Ident")
def _duplicate(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode()
    at = text.index("\t<Matiere ")
    line = text[at : text.index("\n", at) + 1]
    copy = line.replace('Libelle="', 'Libelle="DOUBLON ')
    return (text[:at] + line + copy + text[at + len(line):]).encode(), {}


@tolerated("subject_unknown.xml", "slot_subject_unknown", "a Cours naming a subject the file does not declare")
def _subject_unknown(ctx: CorpusContext, d: Path) -> Any:
    return _in_first_cours(ctx, '<Matiere Ident="', '<Matiere Ident="99999'), {}


@tolerated("without_subject.xml", "slot_without_subject", "a Cours without its Matiere")
def _without_subject(ctx: CorpusContext, d: Path) -> Any:
    return _in_first_cours(ctx, "\t  <Matiere Ident=", "\t  <Sujet Ident="), {}


@tolerated("teacher_without_ident.xml", "element_incomplete", "a Professeur without Ident")
def _no_ident(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml_with("\t<Professeur Ident=", "\t<Professeur Id="), {}


@tolerated("teacher_without_first_name.xml", "attribute_missing", "a Professeur without Prenom")
def _no_first_name(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode()
    at = text.index(" Prenom=", text.index("\t<Professeur "))
    end = text.index('"', at + len(' Prenom="'))
    return (text[:at] + text[end + 1:]).encode(), {}


@tolerated("impossible_birth_date.xml", "date_invalid", "a student born on 31/02/2012")
def _impossible_date(ctx: CorpusContext, d: Path) -> Any:
    return re.sub(rb'(<Eleve [^>]*DateNaissance=")[^"]*', rb"\g<1>31/02/2012", ctx.xml, count=1), {}


@tolerated("exit_before_entry.xml", "date_invalid", "a class membership ending before it starts")
def _exit_before(ctx: CorpusContext, d: Path) -> Any:
    return re.sub(rb'(<Classe Ident="\d+" DateEntree=")[^"]*(" DateSortie=")[^"]*', rb"\g<1>2020-06-30\g<2>2020-01-01",
                  ctx.xml, count=1), {}


@tolerated("empty_birth_date.xml", "birth_date_empty", 'a student with DateNaissance=""')
def _empty_birth(ctx: CorpusContext, d: Path) -> Any:
    return re.sub(rb'(<Eleve [^>]*DateNaissance=")[^"]*', rb"\g<1>", ctx.xml, count=1), {}


@tolerated("bad_cancellations.xml", "value_ignored", "SemainesAnnulation that is not a number")
def _bad_cancel(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml_with("\t<Cours Jour=", '\t<Cours SemainesAnnulation="jamais" Jour='), {}


@tolerated("unknown_names.xml", "unknown_elements", "an Absences section and an attribute no schema has")
def _unknown(ctx: CorpusContext, d: Path) -> Any:
    data = ctx.xml_with("  <Cours>", '  <Absences>\n\t<Absence Ident="1"/>\n  </Absences>\n  <Cours>')
    return data.replace(b"\t<Matiere Ident=", b'\t<Matiere Couleur="rouge" Ident=', 1), {}


@tolerated("no_rooms_section.xml", "section_missing", "no Salles section (and so no room of any Cours)")
def _no_rooms(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode()
    start, end = text.index("  <Salles>"), text.index("  </Salles>\n") + len("  </Salles>\n")
    return (text[:start] + text[end:]).encode(), {}


@tolerated("other_namespace.xml", "namespace_unexpected", "the export in another XML namespace")
def _namespace(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml_with("http://www.index-education.com/exportemploidutemps",
                        "http://www.index-education.com/exportemploidutemps/v2"), {}


@tolerated("week1_tuesday.xml", "week1_not_monday", "DatePremierJourSemaine1 on a Tuesday")
def _tuesday(ctx: CorpusContext, d: Path) -> Any:
    y = ctx.school.timetable.school_year
    return ctx.xml_with(f'DatePremierJourSemaine1="{y.week1}"',
                        f'DatePremierJourSemaine1="{y.week1 + timedelta(days=1)}"'), {}


@tolerated("place_count.xml", "grid_place_count_mismatch", "NombrePlacesParJour says 12, 10 places listed")
def _place_count(ctx: CorpusContext, d: Path) -> Any:
    return re.sub(rb'NombrePlacesParJour="\d+"', b'NombrePlacesParJour="12"', ctx.xml, count=1), {}


@tolerated("no_friday.xml", "slot_on_non_working_day", "Friday's slots, Friday not among the working days")
def _no_friday(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml_with("\t  <Jour>5</Jour>\n", ""), {}


@tolerated("subject_only.xml", "slot_without_resources", "a Cours with a subject only (100 in a real PRONOTE file)")
def _subject_only(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml, {}


@tolerated("parts_only.xml", "slot_parts_only", "a Cours naming only a part of a class")
def _parts_only(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml, {}


@tolerated("group_and_class.xml", "slot_groups_and_classes", "a Cours naming a group and a class")
def _group_and_class(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml, {}


@tolerated("homonyms.xml", "homonyms", "students sharing a name")
def _homonyms(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml, {}


@tolerated("two_subjects.xml", "slot_several_subjects", "a Cours with two Matiere")
def _two_subjects(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode()
    start, end = _first_cours(text)
    block = text[start:end]
    line_start = block.index("\t  <Matiere ")
    line = block[line_start : block.index("\n", line_start) + 1]
    return (text[:start] + block.replace(line, line + line, 1) + text[end:]).encode(), {}


@tolerated("week_60.xml", "weeks_outside_school_year", "a resource with bit 60 set")
def _week_60(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode()
    at = text.index('Semaines="', text.index("  <Cours>")) + len('Semaines="')
    end = text.index('"', at)
    return (text[:at] + str(int(text[at:end]) | 1 << 60) + text[end:]).encode(), {}


@tolerated("student_without_class.xml", "student_without_class", "a student whose Classe was left out")
def _no_class(ctx: CorpusContext, d: Path) -> Any:
    return re.sub(rb'\t  <Classe Ident="\d+" DateEntree="[^"]*" DateSortie="[^"]*"/>\n', b"",
                  ctx.xml, count=1), {}


@tolerated("zip_with_readme.zip", "zip_members_ignored", "a zip holding the export and a text file")
def _zip_readme(ctx: CorpusContext, d: Path) -> Any:
    return _zip([("EDT_To_KOSMOS.xml", ctx.xml), ("lisezmoi.txt", b"export du lundi")]), {}


@tolerated("container_other_uai.xml", "container_uai_differs", "the container's UAI edited by hand (laclasse 2018)")
def _container_uai(ctx: CorpusContext, d: Path) -> Any:
    return ctx.encrypted(uai="0134567U"), {}


@tolerated("class_without_establishment.xml", "class_without_establishment",
           "a cité scolaire file with a Classe naming no Etablissement")
def _no_establishment(ctx: CorpusContext, d: Path) -> Any:
    multi = ctx.multi or make_school("XS2", 3)
    xml = multi.to_xml_bytes()
    uais = [e.uai for e in multi.timetable.establishments.values()]
    return re.sub(rb'\t  <Etablissement Ident="\d+"/>\n', b"", xml, count=1), {"expected_uais": uais}


# ------------------------------------------------------------------------------------------- corpus


def build_corpus(directory: Path, ctx: CorpusContext | None = None, *, cases: list[Any] | None = None) -> list[BadCase]:
    """Write every case (the bad files by default; `cases=TOLERATED` for the tolerated corpus) into `directory`;
    return the cases with their parse arguments."""
    ctx = ctx or CorpusContext.create()
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, code, also, description, fn in CASES if cases is None else cases:
        content, kwargs = fn(ctx, directory)
        path = directory / name
        if callable(content):
            content(path)
        else:
            path.write_bytes(content)
        out.append(BadCase(name, frozenset((code, *also)), code, path, kwargs, description))
    return out


def parse_kwargs(case: BadCase, ctx: CorpusContext) -> dict[str, Any]:
    """`parse_export` arguments for a case: our partner and key unless the case says otherwise."""
    kwargs: dict[str, Any] = {"partner_name": PARTNER, "private_key": ctx.private_key}
    kwargs.update(case.kwargs)
    return kwargs
