"""A corpus of bad deposits, each with the problem code the validator must give it.

`build_corpus(directory)` writes every case (lazily: the huge file is sparse, the zip bomb is deflated
in a stream) and returns `BadCase`s holding the file, the `parse_export` keyword arguments to use and
the accepted codes (a wrong RSA key may surface as either of two codes: OpenSSL's implicit rejection
answers random bytes that almost never have the expected length).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
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


def case(name: str, code: str, description: str, *also: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        CASES.append((name, code, also, description, fn))
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


@case("missing_attribute.xml", "missing_attribute", "a Cours without Jour")
def _missing_attr(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml_with('<Cours Jour="', '<Cours Jours="'), {}


@case("missing_element.xml", "missing_element", "no AnneeScolaire")
def _missing_element(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode()
    start = text.index("  <AnneeScolaire")
    end = text.index("\n", start) + 1
    return (text[:start] + text[end:]).encode(), {}


@case("dangling_reference.xml", "dangling_reference", "a Cours naming an unknown teacher")
def _dangling(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode()
    at = text.index("<Professeur Ident=", text.index("  <Cours>"))
    end = text.index('"', at + len('<Professeur Ident="'))
    return (text[:at] + '<Professeur Ident="999999' + text[end:]).encode(), {}


@case("incoherent_year.xml", "school_year_incoherent", "DateFin before DateDebut")
def _year(ctx: CorpusContext, d: Path) -> Any:
    y = ctx.school.timetable.school_year
    return ctx.xml_with(f'DateFin="{y.end}"', f'DateFin="{y.start.replace(year=y.start.year - 1)}"'), {}


@case("invalid_weeks.xml", "invalid_value", "Semaines is not a number")
def _invalid(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode()
    at = text.index('Semaines="', text.index("  <Cours>")) + len('Semaines="')
    end = text.index('"', at)
    return (text[:at] + "toutes" + text[end:]).encode(), {}


@case("out_of_grid.xml", "slot_out_of_grid", "a Cours at place 42 of a 10-place day")
def _out_of_grid(ctx: CorpusContext, d: Path) -> Any:
    return ctx.xml_with('NumeroPlaceDebut="0"', 'NumeroPlaceDebut="42"'), {}


@case("duplicate_ident.xml", "duplicate_ident", "two subjects with one Ident")
def _duplicate(ctx: CorpusContext, d: Path) -> Any:
    text = ctx.xml.decode()
    at = text.index("\t<Matiere ")
    line = text[at : text.index("\n", at) + 1]
    return (text[:at] + line + text[at:]).encode(), {}


# ------------------------------------------------------------------------------------------- corpus


def build_corpus(directory: Path, ctx: CorpusContext | None = None) -> list[BadCase]:
    """Write every bad file into `directory`; return the cases with their parse arguments."""
    ctx = ctx or CorpusContext.create()
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, code, also, description, fn in CASES:
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
