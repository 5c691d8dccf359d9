"""Encapsulated documents: the PDF, CDA, STL, OBJ or MTL itself, byte for byte (PS3.3 C.24).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from _dicom_converter.base import CorruptFile
from _dicom_converter.dump import text_of
from _dicom_converter.sop import DOCUMENT_CLASSES

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from _dicom_converter.job import Conversion


DOCUMENT_SUFFIXES = tuple(suffix for suffix, _ in DOCUMENT_CLASSES.values())
ENCAPSULATED_DOCUMENT = 0x00420011


def document_bytes(ds: Dataset) -> bytes:
    """The encapsulated document as it was encapsulated (PS3.3 C.24.2.1): trimmed to Encapsulated
    Document Length (0042,0015) when given, else without the pad byte an odd-length document
    gets (a trailing NUL; DCMTK's pdf2dcm pads so), binary STL to the length its count gives."""
    if ENCAPSULATED_DOCUMENT not in ds:
        raise CorruptFile("no Encapsulated Document (0042,0011)")
    data = bytes(ds[ENCAPSULATED_DOCUMENT].value or b"")
    length = ds.get("EncapsulatedDocumentLength")
    if length is not None and 0 < int(length) <= len(data):
        return data[:int(length)]
    suffix, _ = DOCUMENT_CLASSES[str(ds.SOPClassUID)]
    if suffix == ".stl" and len(data) >= 84 and not data.startswith(b"solid"):
        return data[:84 + 50 * int.from_bytes(data[80:84], "little")]
    return data[:-1] if data.endswith(b"\x00") else data


def document_is_what_it_claims(data: bytes, kind: str) -> bool:
    """Whether the bytes are the kind of document the SOP class says (the MIME type is only a claim)."""
    head = data[:4096]
    if kind == "PDF":
        return head.startswith(b"%PDF-")
    if kind == "CDA":
        return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") and b"ClinicalDocument" in head
    if kind == "STL":
        return len(data) >= 84 and len(data) == 84 + 50 * int.from_bytes(data[80:84], "little")
    return b"\x00" not in head  # OBJ and MTL are text


def write_document(job: Conversion, kind: str) -> None:
    """An encapsulated document: ``STEM.pdf`` (or .xml, .stl, .obj, .mtl), byte for byte."""
    ds = job.ds
    suffix, name = DOCUMENT_CLASSES[str(ds.SOPClassUID)]
    title = text_of(ds.get("DocumentTitle", ""))
    if job.options.redact_salt:  # a document's text and images cannot be de-identified here
        job.rendering["Display"] = f"metadata only (--redact: the {name} document is withheld)"
        return
    data = document_bytes(ds)
    if not document_is_what_it_claims(data, name):
        raise CorruptFile(f"its Encapsulated Document is not the {name} its class claims "
                          f"(begins {data[:8]!r}, MIME type {text_of(ds.get('MIMETypeOfEncapsulatedDocument', ''))!r})")
    with open(job.output(suffix), "wb") as f:
        f.write(data)
    job.rendering["Display"] = f"{name} document, {len(data):,} bytes" + (f": {title}" if title else "")
    job.rendering["Output"] = f"{name} as {suffix}"
