"""Encapsulated documents (PDF, CDA, STL) come out as the documents themselves, byte for byte.

No DICOM document ships in the reachable packages: the tests encapsulate real documents with
DCMTK's pdf2dcm, cda2dcm and stl2dcm (a PDF Pillow writes, a CDA document, a binary STL).
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from conftest import run_cli


def dcmtk(*args) -> None:
    done = subprocess.run([*map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def a_pdf(path, odd: bool):
    """A one-page PDF (Pillow's), made odd in length with a trailing newline when `odd`."""
    from PIL import Image

    Image.new("RGB", (60, 40), (200, 30, 30)).save(path)
    data = path.read_bytes()
    if (len(data) % 2 == 1) != odd:
        path.write_bytes(data + b"\n")
    assert (len(path.read_bytes()) % 2 == 1) == odd
    return path


def a_binary_stl(path):
    """Two triangles of a unit square, as binary STL (80-byte header, count, 50 bytes a facet)."""
    facets = np.zeros(2, dtype=[("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    facets["normal"] = (0, 0, 1)
    facets["v"][0] = ((0, 0, 0), (1, 0, 0), (0, 1, 0))
    facets["v"][1] = ((1, 0, 0), (1, 1, 0), (0, 1, 0))
    path.write_bytes(b"unit square".ljust(80, b" ") + (2).to_bytes(4, "little") + facets.tobytes())
    return path


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    root = tmp_path_factory.mktemp("documents")
    sources = root / "sources"
    (root / "in").mkdir()
    sources.mkdir()
    made = {}
    for odd in (False, True):
        pdf = a_pdf(sources / f"report_{'odd' if odd else 'even'}.pdf", odd)
        dcmtk("pdf2dcm", "+t", "Radiology report", pdf, root / "in" / f"{pdf.stem}.dcm")
        made[pdf.stem] = pdf
    cda = sources / "letter.xml"
    cda.write_text('<?xml version="1.0"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3"><title>Referral letter</title>'
                   "</ClinicalDocument>\n", encoding="utf-8")
    dcmtk("cda2dcm", cda, root / "in" / "letter.dcm")
    made["letter"] = cda
    stl = a_binary_stl(sources / "model.stl")
    dcmtk("stl2dcm", stl, root / "in" / "model.dcm")
    made["model"] = stl
    run = run_cli(root / "in", "-o", root / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    return root, made, run.stdout


@pytest.mark.parametrize("stem, suffix", [("report_even", ".pdf"), ("report_odd", ".pdf"), ("letter", ".xml"),
                                          ("model", ".stl")])
def test_each_document_comes_out_byte_for_byte(documents, stem, suffix):
    root, made, log = documents
    out = root / "out" / f"{stem}{suffix}"
    assert out.read_bytes() == made[stem].read_bytes()
    assert f"converted  {stem}.dcm -> {stem}{suffix} {stem}.txt" in log
    if suffix == ".pdf":  # as DCMTK's dcm2pdf extracts it
        dcmtk("dcm2pdf", root / "in" / f"{stem}.dcm", root / f"{stem}_dcmtk.pdf")
        assert (root / f"{stem}_dcmtk.pdf").read_bytes() == out.read_bytes()


def test_the_title_and_size_are_shown_and_linked(documents):
    root, made, log = documents
    size = len(made["report_odd"].read_bytes())
    assert f"[PDF document, {size:,} bytes: Radiology report]" in log
    assert "CDA document" in log and "Referral letter" in log
    text = (root / "out" / "report_odd.txt").read_text(encoding="utf-8")
    assert f"Display                PDF document, {size:,} bytes: Radiology report" in text
    page = (root / "out" / "index.html").read_text(encoding="utf-8")
    assert '<a href="report_odd.pdf">PDF</a>' in page and '<a href="model.stl">STL model</a>' in page


def test_redact_withholds_documents(documents, tmp_path):
    root, _, _ = documents
    run = run_cli(root / "in" / "report_odd.dcm", "-o", tmp_path, "--redact")
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", "manifest.csv", "report_odd.txt"]
    assert "metadata   report_odd.dcm -> report_odd.txt  [metadata only (--redact: the PDF document is withheld)]" in run.stdout


def test_a_document_that_is_not_what_its_class_claims_fails_and_is_never_html(documents, tmp_path):
    """report_even.dcm with its document replaced by an HTML page and its MIME type set to
    text/html: refused (the class says PDF), and nothing is written as .html."""
    import pydicom

    root, _, _ = documents
    ds = pydicom.dcmread(root / "in" / "report_even.dcm")
    page = b"<html><script>alert(1)</script></html>"
    ds.EncapsulatedDocument, ds.MIMETypeOfEncapsulatedDocument = page, "text/html"
    if "EncapsulatedDocumentLength" in ds:
        ds.EncapsulatedDocumentLength = len(page)
    ds.save_as(tmp_path / "fake.dcm")
    run = run_cli(tmp_path / "fake.dcm", "-o", tmp_path / "out")
    assert run.returncode == 1
    assert "FAILED     fake.dcm: its Encapsulated Document is not the PDF its class claims" in run.stdout + run.stderr
    assert not [p for p in (tmp_path / "out").rglob("*") if p.suffix in (".html", ".pdf") and p.name != "index.html"]
