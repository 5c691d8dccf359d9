"""Structured reports (PS3.3 C.17.3) as a page and an outline.

Real files first: pydicom's test-SR.dcm, reportsi.dcm, reportsi_with_empty_number_tags.dcm
and heudiconv's Siemens Enhanced SR, each compared with what DCMTK's dsr2html shows.
Synthetic trees only for what no real file covers (by-reference loops, KOS, dose
reports, escaping, depth), each built by a helper that says what it makes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import run_cli, testdata
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from _dicom_converter.base import CorruptFile
from _dicom_converter.kinds.reports.content import SR_MAX_DEPTH, WITHHELD
from _dicom_converter.kinds.reports.writer import structured_report

HERE = Path(__file__).parent
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
KOS = "1.2.840.10008.5.1.4.1.1.88.59"
XRAY_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"

# heudiconv 1.5.1's sdist (PyPI, Apache-2.0) holds this file at
# heudiconv/tests/data/Phoenix/99+PhoenixDocument/99+PhoenixDocument+00001.dcm
PHOENIX_NAME = "99+PhoenixDocument+00001.dcm"


def no_links(uid: str) -> None:
    return None


def pydicom_file(name: str) -> Path:
    return Path(get_testdata_file(name, download=False))


def phoenix_path() -> Path:
    for candidate in (os.environ.get("PHOENIX_SR"), HERE / "data" / "heudiconv" / PHOENIX_NAME):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.skip("heudiconv's Phoenix SR not present: pip download heudiconv==1.5.1 --no-deps "
                "--no-binary :all: and extract heudiconv/tests/data/Phoenix/99+PhoenixDocument/")


def render(ds: Dataset, link_of=no_links, withhold: bool = False) -> tuple[str, str]:
    return structured_report(ds, link_of, withhold)


def page_text(html: str) -> str:
    """The visible text of a page (tags dropped, entities decoded, whitespace collapsed)."""
    class Text(HTMLParser):
        def __init__(self):
            super().__init__()
            self.parts, self.skip = [], 0

        def handle_starttag(self, tag, attrs):
            self.skip += tag in ("style", "title")
            self.parts.append(" " if tag in BLOCKS else "")

        def handle_endtag(self, tag):
            self.skip -= tag in ("style", "title")
            self.parts.append(" " if tag in BLOCKS else "")

        def handle_data(self, data):
            if not self.skip:
                self.parts.append(data)

    parser = Text()
    parser.feed(html)
    return squeezed("".join(parser.parts))


BLOCKS = {"p", "li", "ul", "td", "th", "tr", "table", "section", "figure", "figcaption", "br", "hr",
          "h1", "h2", "h3", "h4", "h5", "h6", "div", "img", "video"}


def squeezed(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# -----------------------------------------------------------------------------
# dsr2html as the reference
# -----------------------------------------------------------------------------

# Words dsr2html writes itself: header labels, relationship labels, link markers,
# and the value type it names a nameless item by.  None is a value of the file.
DSR2HTML_CHROME = {
    "Annex", "Content Item", "by-reference", "Waveform", "Image", "Composite",
    "Concept Modifier", "Observation Context", "Acquisition Context", "Inferred from",
    "Properties", "Selected from", "Contains",
}


def dsr2html_strings(path: Path) -> list[str]:
    """Every value, code meaning, code value, number and unit dsr2html shows for `path`.

    Run with the error-tolerance switches (-Ev -Ec -Ee -Er) it needs for
    reportsi*.dcm and the Phoenix file.  Left out: its own labels (the header's
    <b>, the relationship labels in DSR2HTML_CHROME), link texts (its names
    of SOP classes, annex and footnote markers) and the footer.  Each chunk
    is split the way dsr2html joins things: ``concept = value``, ``meaning
    (value, scheme)``, ``date time - observer``, ``"quoted text"``.
    """
    if shutil.which("dsr2html") is None:
        pytest.skip("DCMTK's dsr2html is not installed")
    run = subprocess.run(["dsr2html", "-Ev", "-Ec", "-Ee", "-Er", str(path)], capture_output=True, check=True)
    raw = run.stdout
    charset = re.search(rb"charset=([\w-]+)", raw)
    page = raw.decode(charset.group(1).decode() if charset else "latin-1")

    class Chunks(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack: list[tuple[str, dict]] = []
            self.chunks: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag not in ("br", "p", "hr", "meta"):
                self.stack.append((tag, dict(attrs)))

        def handle_endtag(self, tag):
            while self.stack:
                if self.stack.pop()[0] == tag:
                    break

        def handle_data(self, data):
            tags = [t for t, _ in self.stack]
            classes = [a.get("class") for _, a in self.stack]
            if {"title", "a"} & set(tags) or "footnote" in classes or ("table" in tags and "b" in tags):
                return
            text = squeezed(data)
            if text:
                self.chunks.append(text)

    parser = Chunks()
    parser.feed(page)
    found = []
    for chunk in parser.chunks:
        for piece in re.split(r" = | - ", chunk.strip(" :[]=")):
            piece = piece.strip(" :[]=")
            observed = re.fullmatch(r"\(observed: (.*)\)", piece)
            if observed:
                piece = observed.group(1)
            coded = re.fullmatch(r"(.*) \(([^,()]+), ([^,()]+)\)", piece)  # meaning (value, scheme)
            sex = re.fullmatch(r"(.*) \((male|female|other)\)", piece)
            if coded:
                found += coded.groups()
            elif sex:
                found += sex.groups()
            elif piece.startswith('"') and piece.endswith('"'):
                found.append(piece[1:-1])
            elif piece and piece not in DSR2HTML_CHROME:
                found.append(piece)
    return found


def missing_from(ours: str, reference: list[str]) -> list[str]:
    """The strings of `reference` that `ours` lacks (UCUM's unity: see below)."""
    missing = []
    for expected in reference:
        # dsr2html writes a NUM's unit as its code value, so UCUM's unity "1"
        # reads "1 1"; this renderer writes the unit's meaning for "1".
        unity = re.fullmatch(r"(\S+) 1", expected)
        if unity and f"{unity.group(1)} unary, no units" in ours:
            continue
        if squeezed(expected) not in ours:
            missing.append(expected)
    return missing


@pytest.mark.parametrize("path", [
    pytest.param(lambda: pydicom_file("test-SR.dcm"), id="test-SR"),
    pytest.param(lambda: pydicom_file("reportsi.dcm"), id="reportsi"),
    pytest.param(lambda: pydicom_file("reportsi_with_empty_number_tags.dcm"), id="reportsi_empty_numbers"),
    pytest.param(phoenix_path, id="heudiconv-phoenix"),
])
def test_everything_dsr2html_shows_is_shown(path):
    path = path()
    reference = dsr2html_strings(path)
    assert len(reference) > 10
    html, text = render(dcmread(path))
    assert missing_from(squeezed(text), reference) == []
    assert missing_from(page_text(html), reference) == []


def test_dsr2html_strings_are_the_report_s_values():
    """The comparison sees the values themselves, not just dsr2html's chrome."""
    reference = dsr2html_strings(pydicom_file("test-SR.dcm"))
    for value in ("A mass of", "3 cm", "was detected.", "Sample Code 3", "2222", "99_OFFIS_DCMTK",
                  "Jörg Riesmeier, OFFIS e.V.", "2000-12-06", "12:00:00", "1.2.3.4.5", "Circle", "Segment",
                  '&%$§"!()<>{}/;', "Diameter", "Text Code"):
        assert value in reference


# -----------------------------------------------------------------------------
# Content of test-SR.dcm, value type by value type
# -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def test_sr():
    return dcmread(pydicom_file("test-SR.dcm"))


def test_header(test_sr):
    _, text = render(test_sr)
    assert "Patient:              S R Test" in text  # Test^S R, given name first
    assert "Completion:           COMPLETE — This document is completed!" in text
    assert "Verification:         VERIFIED" in text
    assert "Verifying observer:   Jörg Riesmeier, OFFIS e.V., 2001-02-13 18:47:46" in text
    assert "Content date/time:    2001-02-13 18:47:46" in text
    assert text.startswith("Diagnosis\n=========\n")  # the root's concept name is the title


def test_num_shows_value_and_unit(test_sr):
    html, text = render(test_sr)
    assert "Diameter: 3 cm" in text
    assert 'title="Length Unit (99_OFFIS_DCMTK:cm)">3 cm</span>' in html


def test_code_shows_meaning_and_designator_value(test_sr):
    html, text = render(test_sr)
    assert "Code: Sample Code 3 (99_OFFIS_DCMTK:2222)" in text
    assert '<span class="code" title="99_OFFIS_DCMTK:2222">Sample Code 3</span>' in html


def test_relationships_are_named(test_sr):
    html, text = render(test_sr)
    for label in ("Has observation context", "Has concept modifier", "Inferred from", "Has properties",
                  "Has acquisition context", "Selected from"):
        assert f"[{label}]" in text
        assert f'<span class="rel">{label}</span>' in html
    assert "[Contains]" not in text


def test_dates_times_and_uids_are_readable(test_sr):
    _, text = render(test_sr)
    assert "[Has acquisition context] Date: 2000-12-06" in text
    assert "[Has acquisition context] Time: 12:00:00" in text
    assert "[Has acquisition context] DateTime: 2000-12-06 12:00:00" in text
    assert "[Has observation context] Some UID: 1.2.3.4.5" in text


def test_continuous_container_reads_as_prose(test_sr):
    html, text = render(test_sr)
    assert "A mass of 3 cm was detected." in text
    prose = re.search(r'<p class="prose">(.*?)</p>', html).group(1)
    assert page_text(prose) == "A mass of 3 cm was detected."
    assert 'id="item-1.2.2"' in prose  # the phrase is the by-reference target's anchor


def test_by_reference_items_in_a_real_file_link_to_their_target(test_sr):
    html, text = render(test_sr)
    assert '<a class="ref" href="#item-1.3.2">item 1.3.2</a> (SCoord Code)' in html
    assert 'id="item-1.3.2"' in html
    assert '<a class="ref" href="#item-1.2.2.1">' in html and 'id="item-1.2.2.1"' in html
    assert "[Selected from] -> item 1.3.2 (SCoord Code)" in text


def test_coordinates_are_summarised(test_sr):
    _, text = render(test_sr)
    assert "SCoord Code: Circle, 2 points: (0, 0) (255, 255)" in text
    assert "TCoord Code: Segment, time offsets 1, 2.5 s" in text


def test_references_show_sop_class_and_uid_or_link(test_sr):
    links = {"1.2.3.4.5.0": "../CT/IM1.png", "1.2.3.4.5": "../ECG/wave.png"}
    html, text = render(test_sr, links.get)
    assert '<a href="../CT/IM1.png">CT Image Storage</a>' in html
    assert '<img class="thumb" loading="lazy" src="../CT/IM1.png"' in html
    assert "frames 5, 2" in text and "Grayscale Softcopy Presentation State Storage" in text
    assert "MR Image Storage 1.2.3.4.0.1" in text  # not converted in this run: class and UID
    assert '<a href="../ECG/wave.png">Hemodynamic Waveform Storage</a>' in html
    assert "channels 5/3, 2/0" in text


def test_a_link_with_a_scheme_is_never_written(test_sr):
    html, _ = render(test_sr, lambda uid: "javascript:alert(1)")
    assert "javascript:" not in html


def test_page_is_self_contained(test_sr):
    html, _ = render(test_sr, {"1.2.3.4.5.0": "../CT/IM1.png"}.get)
    assert html.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in html and 'name="viewport"' in html
    assert "<style>" in html and "<script" not in html.lower()
    assert not re.search(r'(src|href)="(https?:)?//', html)


# -----------------------------------------------------------------------------
# Synthetic trees
# -----------------------------------------------------------------------------

def code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def content_item(relationship: str | None, value_type: str | None, concept: tuple | None = None,
                 children: list[Dataset] = (), **values) -> Dataset:
    """One content item: relationship, value type, concept name (value, scheme, meaning), children,
    and its value attributes by keyword (TextValue=..., ConceptCodeSequence=[...], ...)."""
    item = Dataset()
    if relationship:
        item.RelationshipType = relationship
    if value_type:
        item.ValueType = value_type
    if concept:
        item.ConceptNameCodeSequence = [code(*concept)]
    for keyword, value in values.items():
        setattr(item, keyword, value)
    if children:
        item.ContentSequence = list(children)
    return item


def num_item(concept: tuple, number: str, unit: tuple, relationship: str = "CONTAINS") -> Dataset:
    """A NUM item: `number` in `unit` (value, scheme, meaning)."""
    measured = Dataset()
    measured.NumericValue = number
    measured.MeasurementUnitsCodeSequence = [code(*unit)]
    return content_item(relationship, "NUM", concept, MeasuredValueSequence=[measured])


def sr_document(children: list[Dataset], sop_class: str = COMPREHENSIVE_SR,
                title: tuple = ("126000", "DCM", "Imaging Measurement Report"), **header) -> Dataset:
    """A synthetic SR document: a SEPARATE root container titled `title` holding `children`."""
    ds = content_item(None, "CONTAINER", title, children, ContinuityOfContent="SEPARATE", **header)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "2.25.1"
    ds.PatientName = header.get("PatientName", "Doe^John")
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    return ds


def image_item(sop_class: str, instance: str, relationship: str = "CONTAINS", concept=None) -> Dataset:
    """An IMAGE item referencing (`sop_class`, `instance`)."""
    referenced = Dataset()
    referenced.ReferencedSOPClassUID, referenced.ReferencedSOPInstanceUID = sop_class, instance
    return content_item(relationship, "IMAGE", concept, ReferencedSOPSequence=[referenced])


def by_reference(relationship: str, *position: int) -> Dataset:
    """A by-reference item (PS3.3 C.17.3.2.5) pointing at the item at `position`."""
    return content_item(relationship, None, ReferencedContentItemIdentifier=list(position))


def looping_by_reference_report() -> Dataset:
    """A report whose finding is inferred from itself and from its own container, by reference.

    1      root
    1.1    CODE "Finding: Mass"
    1.1.1  INFERRED FROM -> 1.1 (its own parent)
    1.1.2  INFERRED FROM -> 1   (the root)
    1.1.3  INFERRED FROM -> 1.9 (no such item)
    """
    finding = content_item("CONTAINS", "CODE", ("121071", "DCM", "Finding"),
                           [by_reference("INFERRED FROM", 1, 1), by_reference("INFERRED FROM", 1),
                            by_reference("INFERRED FROM", 1, 9)],
                           ConceptCodeSequence=[code("4147007", "SCT", "Mass")])
    return sr_document([finding])


def test_by_reference_loop_renders_as_anchor_links():
    html, text = render(looping_by_reference_report())
    assert '<a class="ref" href="#item-1.1">item 1.1</a> (Finding)' in html
    assert '<li id="item-1.1">' in html
    assert '<a class="ref" href="#item-1">item 1</a> (Imaging Measurement Report)' in html
    assert '<h1 id="item-1">' in html
    assert "reference to item 1.9, not in the document" in text
    assert text.count("Finding: Mass (SCT:4147007)") == 1  # the target is never rendered again


def test_withhold_removes_text_person_names_dates_and_uids(test_sr):
    html, text = render(test_sr, {"1.2.3.4.5.0": "../CT/IM1.png"}.get, withhold=True)
    for output in (text, page_text(html)):
        for secret in ("A mass of", "was detected.", "Sample Text", "2000-12-06", "12:00:00",
                       "1.2.3.4.5", "9.8.7.6", "1.2.3.4.0.1"):
            assert secret not in output
        assert WITHHELD in output
        assert "Sample Code 3 (99_OFFIS_DCMTK:2222)" in output  # codes stay
        assert "Diameter: 3 cm" in output  # numbers and units stay
        assert "CT Image Storage" in output  # the referenced instance's class stays
    assert "--redact: 14 content item values withheld" in text
    assert re.search(r'<body>\s*<p class="notice">--redact: 14 content item values withheld', html)
    assert '<a href="../CT/IM1.png">CT Image Storage</a>' in html  # the link, not the UID


def test_withhold_removes_a_person_name():
    report = sr_document([content_item("HAS OBS CONTEXT", "PNAME", ("121008", "DCM", "Person Observer Name"),
                                       PersonName="Curie^Marie^^Dr."),
                          content_item("HAS OBS CONTEXT", "DATETIME", ("111526", "DCM", "DateTime Started"),
                                       DateTime="20240102030405")])
    _, text = render(report)
    assert "Person Observer Name: Dr. Marie Curie" in text
    assert "DateTime Started: 2024-01-02 03:04:05" in text
    html, text = render(report, withhold=True)
    for output in (text, html):
        assert "Curie" not in output and "Marie" not in output and "2024" not in output
    assert f"Person Observer Name: {WITHHELD}" in text


def test_values_are_escaped():
    hostile = "<script>alert(1)</script>"
    report = sr_document([content_item("CONTAINS", "TEXT", ("121071", "DCM", '<img src=x onerror="y">'),
                                       TextValue=hostile)],
                         PatientName=hostile, StudyDescription='"><script>')
    html, text = render(report, lambda uid: '"><script>')
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert hostile in text


def nested_containers(levels: int) -> Dataset:
    """A root with `levels` named containers, each inside the last, a TEXT at the bottom."""
    inner = content_item("CONTAINS", "TEXT", ("121106", "DCM", "Comment"), TextValue="deep")
    for level in range(levels, 0, -1):
        inner = content_item("CONTAINS", "CONTAINER", ("121070", "DCM", f"Level {level}"), [inner],
                             ContinuityOfContent="SEPARATE")
    return sr_document([inner])


def test_containers_are_nested_headings_capped_at_h6():
    html, text = render(nested_containers(8))
    assert "<h2>Level 1</h2>" in html and "<h5>Level 4</h5>" in html
    assert "<h6>Level 5</h6>" in html and "<h6>Level 8</h6>" in html and "<h7" not in html
    assert "Comment: deep" in text


def test_nesting_beyond_the_limit_is_corrupt():
    render(nested_containers(SR_MAX_DEPTH - 2))
    with pytest.raises(CorruptFile, match="deeper than 64"):
        render(nested_containers(SR_MAX_DEPTH + 1))


def test_a_content_sequence_that_is_not_a_sequence_is_corrupt():
    report = sr_document([content_item("CONTAINS", "TEXT", ("121106", "DCM", "Comment"), TextValue="x")])
    report.ContentSequence[0].add_new(0x0040A730, "LO", "not items")
    with pytest.raises(CorruptFile, match="not a sequence"):
        render(report)


def test_non_conformant_items_show_what_is_there():
    """A TEXT without a concept name or value, an unknown value type, NUMs without values."""
    empty_measured = content_item("CONTAINS", "NUM", ("121206", "DCM", "Distance"), MeasuredValueSequence=[],
                                  NumericValueQualifierCodeSequence=[code("114000", "DCM", "Not a number")])
    no_value = content_item("CONTAINS", "NUM", ("121207", "DCM", "Height"), MeasuredValueSequence=[])
    report = sr_document([
        content_item("CONTAINS", "TEXT", None),
        content_item("CONTAINS", "TABLE", ("1", "99X", "Grid")),
        content_item("FUTURE RELATION", "TEXT", ("121106", "DCM", "Comment"), TextValue="still here"),
        empty_measured, no_value,
        content_item("CONTAINS", "UIDREF", ("121232", "DCM", "Source image"), UID=CT_IMAGE),
    ])
    _, text = render(report)
    assert "(no concept name): (no value)" in text
    assert "Grid: TABLE" in text
    assert "[Future relation] Comment: still here" in text
    assert "Distance: Not a number (DCM:114000)" in text
    assert "Height: no value" in text
    assert f"Source image: {CT_IMAGE} (CT Image Storage)" in text


def key_object_selection() -> Dataset:
    """A synthetic KOS (TID 2010): titled "Of Interest", a description, three key instances
    (a CT image this run made a PNG of, an ultrasound cine it made an MP4 of, one it did not convert)."""
    return sr_document([
        content_item("CONTAINS", "TEXT", ("113012", "DCM", "Key Object Description"), TextValue="Mass, left lobe"),
        image_item(CT_IMAGE, "2.25.10"), image_item(US_MULTIFRAME, "2.25.11"), image_item(CT_IMAGE, "2.25.12"),
    ], sop_class=KOS, title=("113000", "DCM", "Of Interest"))


def test_key_objects_link_and_show_the_images():
    links = {"2.25.10": "../CT/IM10.png", "2.25.11": "../US/cine.mp4"}
    html, text = render(key_object_selection(), links.get)
    keys = html[html.index("<h2>Key objects</h2>"):html.index("<hr>")]
    assert '<span class="code" title="DCM:113000">Of Interest</span>' in keys
    assert "Mass, left lobe" in keys
    assert '<img loading="lazy" src="../CT/IM10.png" alt="CT Image Storage">' in keys
    assert '<video controls muted loop preload="metadata" src="../US/cine.mp4"></video>' in keys
    assert 'CT Image Storage <small class="uid">2.25.12</small>' in keys  # not converted: class and UID
    assert "Selection: Of Interest (DCM:113000)" in text
    assert "Description: Mass, left lobe" in text
    assert "  [1.3] Ultrasound Multi-frame Image Storage 2.25.11 <../US/cine.mp4>" in text
    html, text = render(key_object_selection(), links.get, withhold=True)
    assert "Mass, left lobe" not in html and "2.25.12" not in html and "2.25.12" not in text


def ct_dose_report() -> Dataset:
    """A synthetic CT Radiation Dose SR (TID 10011): two CT Acquisitions (TID 10013) with their
    CT Dose containers, and the accumulated CT Dose Length Product Total (TID 10012)."""
    def acquisition(protocol: str, region: tuple, ctdivol: str, dlp: str) -> Dataset:
        dose = content_item("CONTAINS", "CONTAINER", ("113829", "DCM", "CT Dose"), [
            num_item(("113830", "DCM", "Mean CTDIvol"), ctdivol, ("mGy", "UCUM", "mGy")),
            num_item(("113838", "DCM", "DLP"), dlp, ("mGy.cm", "UCUM", "mGy.cm")),
        ], ContinuityOfContent="SEPARATE")
        return content_item("CONTAINS", "CONTAINER", ("113819", "DCM", "CT Acquisition"), [
            content_item("CONTAINS", "TEXT", ("125203", "DCM", "Acquisition Protocol"), TextValue=protocol),
            content_item("CONTAINS", "CODE", ("123014", "DCM", "Target Region"), ConceptCodeSequence=[code(*region)]),
            dose,
        ], ContinuityOfContent="SEPARATE")

    accumulated = content_item("CONTAINS", "CONTAINER", ("113811", "DCM", "CT Accumulated Dose Data"), [
        num_item(("113813", "DCM", "CT Dose Length Product Total"), "612.4", ("mGy.cm", "UCUM", "mGy.cm")),
    ], ContinuityOfContent="SEPARATE")
    return sr_document([
        accumulated,
        acquisition("Head routine", ("69536005", "SCT", "Head"), "52.1", "901.5"),
        acquisition("Chest", ("43799004", "SCT", "Chest"), "8.25", "310.2"),
    ], sop_class=XRAY_DOSE_SR, title=("113701", "DCM", "X-Ray Radiation Dose Report"))


def test_ct_dose_report_has_a_headline_table():
    html, text = render(ct_dose_report())
    table = html[html.index('<table class="dose">'):html.index("</table>", html.index('<table class="dose">'))]
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    assert page_text(rows[0]) == "Event Protocol Target region CTDIvol DLP"
    assert page_text(rows[1]) == "1 Head routine Head (SCT:69536005) 52.1 mGy 901.5 mGy.cm"
    assert page_text(rows[2]) == "2 Chest Chest (SCT:43799004) 8.25 mGy 310.2 mGy.cm"
    assert '<a href="#item-1.2">1</a>' in rows[1]
    assert "CT Dose Length Product Total: 612.4 mGy.cm" in page_text(html[:html.index("<hr>")])
    assert re.search(r"1\s+Head routine\s+Head \(SCT:69536005\)\s+52.1 mGy\s+901.5 mGy.cm", text)
    assert text.index("CT Dose Length Product Total: 612.4 mGy.cm") < text.index("CT Accumulated Dose Data")
    assert "Mean CTDIvol: 52.1 mGy" in text  # the generic tree follows


def test_pname_of_real_file_and_empty_numbers_file():
    _, text = render(dcmread(pydicom_file("reportsi.dcm")))
    assert re.search(r"^Patient: +First Name Last Name$", text, re.M)
    assert re.search(r"^Sex: +other$", text, re.M)
    assert "[Has observation context] Recording Observer's Name: Enter text" in text
    _, text = render(dcmread(pydicom_file("reportsi_with_empty_number_tags.dcm")))
    assert "Report Text: Enter text" in text


# -----------------------------------------------------------------------------
# Through the command line
# -----------------------------------------------------------------------------

def test_a_report_becomes_a_page_and_its_text_follows_the_summary(tmp_path):
    run = run_cli(pydicom_file("test-SR.dcm"), "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "converted  test-SR.dcm -> test-SR.html test-SR.txt  [Comprehensive SR Storage: Diagnosis]" in run.stdout
    page = (tmp_path / "out" / "test-SR.html").read_text(encoding="utf-8")
    assert "<title>Diagnosis</title>" in page and "Diameter" in page
    text = (tmp_path / "out" / "test-SR.txt").read_text(encoding="utf-8")
    assert text.index("# Summary") < text.index("# Report") < text.index("# Dataset")
    assert "Diameter: 3 cm" in text[text.index("# Report"):text.index("# Dataset")]
    assert 'href="test-SR.html"' in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")


def test_a_key_object_selection_links_to_the_image_this_run_made(tmp_path):
    """A synthetic KOS (see `key_object_selection`) whose first key image is pydicom's CT_small,
    in the same study: the second pass links it, as a thumbnail of the PNG beside it."""
    import shutil

    (tmp_path / "in" / "reports").mkdir(parents=True)
    shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "in" / "CT_small.dcm")
    ct = dcmread(pydicom_file("CT_small.dcm"))
    kos = key_object_selection()
    kos.ContentSequence[1].ReferencedSOPSequence[0].ReferencedSOPInstanceUID = ct.SOPInstanceUID
    kos.StudyInstanceUID, kos.SeriesInstanceUID = ct.StudyInstanceUID, "2.25.99"
    kos.save_as(tmp_path / "in" / "reports" / "kos.dcm", implicit_vr=False, little_endian=True)
    run = run_cli(tmp_path / "in", "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "linked     reports/kos.dcm" in run.stdout and "1 reference(s) linked" in run.stdout
    page = (tmp_path / "out" / "reports" / "kos.html").read_text(encoding="utf-8")
    assert '<img loading="lazy" src="../CT_small.png" alt="CT Image Storage">' in page
    run = run_cli(tmp_path / "in", "-o", tmp_path / "redacted", "--redact")
    assert run.returncode == 0, run.stdout + run.stderr
    page = (tmp_path / "redacted" / "reports" / "kos.html").read_text(encoding="utf-8")
    assert "Mass, left lobe" not in page and ct.SOPInstanceUID not in page and "withheld" in page
    assert '<img loading="lazy" src="../CT_small.png"' in page  # the stand-in UIDs still match


def test_header_labels_keep_their_words_whole_on_a_phone(tmp_path):
    """At 390 px the page's labels ("Verification", "Predecessor document") wrap between words,
    never inside one: the body lets long UIDs break anywhere, the labels must not."""
    from browser import chromium, require_browser, serve

    require_browser()
    (tmp_path / "in").mkdir()
    shutil.copy(testdata("test-SR.dcm"), tmp_path / "in" / "sr.dcm")
    run = run_cli(tmp_path / "in", "-o", tmp_path / "out", "--no-index")
    assert run.returncode == 0, run.stdout + run.stderr
    with serve(tmp_path / "out") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.goto(f"{url}/sr.html")
        words = page.evaluate("""() => {
            const out = [];
            for (const th of document.querySelectorAll('th')) {
                const text = th.firstChild;
                if (!text || text.nodeType !== Node.TEXT_NODE) continue;
                let at = 0;
                for (const word of text.data.split(' ')) {
                    const range = document.createRange();
                    range.setStart(text, at); range.setEnd(text, at + word.length);
                    out.push([word, range.getClientRects().length]);
                    at += word.length + 1;
                }
            }
            return out;
        }""")
    assert {word for word, _ in words} >= {"Verification", "Predecessor"}
    assert all(lines == 1 for _, lines in words), words
