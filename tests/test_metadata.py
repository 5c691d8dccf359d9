"""The metadata .txt written beside every converted file, read back from real files."""

from __future__ import annotations

import re
from pathlib import Path

import pydicom
import pytest
from conftest import copy_inputs, run_cli, testdata
from pydicom.data import get_charset_files

from _dicom_converter.cli import main
from _dicom_converter.inputs import output_stem


def convert(source: Path, out: Path) -> str:
    """Run the converter on `source` into `out` and return its .txt, decoded as strict UTF-8."""
    assert main([str(source), "-o", str(out)]) == 0
    text_path = out / (output_stem(source.name) + ".txt")
    return text_path.read_bytes().decode("utf-8")  # raises on anything that is not UTF-8


def section(text: str, title: str) -> list[str]:
    """The lines of the ``# title`` section of a .txt, up to the next section."""
    lines = text.splitlines()
    start = lines.index(f"# {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("# ")), len(lines))
    return [line for line in lines[start:end] if line]


def summary_value(text: str, key: str) -> str:
    found = re.search(rf"^  {key} +(.*)$", "\n".join(section(text, "Summary")), re.MULTILINE)
    assert found is not None, f"no {key} line in the summary"
    return found.group(1)


def charset_file(name: str) -> Path:
    matches = [Path(p) for p in get_charset_files() if Path(p).name == name]
    assert matches, f"{name} not among pydicom's charset files"
    return matches[0]


@pytest.fixture(scope="module")
def ct_text(tmp_path_factory) -> str:
    return convert(testdata("CT_small.dcm"), tmp_path_factory.mktemp("ct"))


# -----------------------------------------------------------------------------
# Summary
# -----------------------------------------------------------------------------

def test_summary_of_ct_small(ct_text):
    assert summary_value(ct_text, "PatientName") == "CompressedSamples^CT1"
    assert summary_value(ct_text, "PatientID") == "1CT1"
    assert summary_value(ct_text, "Modality") == "CT"
    assert summary_value(ct_text, "Size") == "128 x 128 (rows x columns)"
    assert summary_value(ct_text, "Frames") == "1"
    assert summary_value(ct_text, "Bits") == "16 stored of 16, signed"
    assert summary_value(ct_text, "Photometric") == "MONOCHROME2"
    assert summary_value(ct_text, "TransferSyntax") == "Explicit VR Little Endian (1.2.840.10008.1.2.1)"
    assert summary_value(ct_text, "Output") == "PNG 16-bit"


def test_summary_transfer_syntax_of_compressed_cine(tmp_path, capsys):
    text = convert(testdata("examples_ybr_color.dcm"), tmp_path)
    assert summary_value(text, "TransferSyntax") == "JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50)"
    assert summary_value(text, "Frames") == "30"
    assert summary_value(text, "Size") == "240 x 320 (rows x columns)"
    assert summary_value(text, "Photometric") == "YBR_FULL_422"


# -----------------------------------------------------------------------------
# Dump
# -----------------------------------------------------------------------------

def test_dump_lines_name_tag_vr_keyword_value(ct_text):
    dataset = section(ct_text, "Dataset")
    assert re.search(r"^\(0010,0010\) PN PatientName +CompressedSamples\^CT1$", "\n".join(dataset), re.M)
    assert re.search(r"^\(0008,0060\) CS Modality +CT$", "\n".join(dataset), re.M)
    assert re.search(r"^\(0028,0010\) US Rows +128$", "\n".join(dataset), re.M)
    meta = "\n".join(section(ct_text, "File Meta Information"))
    assert re.search(r"^\(0002,0010\) UI TransferSyntaxUID +1\.2\.840\.10008\.1\.2\.1$", meta, re.M)


def test_dump_has_every_top_level_element(ct_text):
    ds = pydicom.dcmread(testdata("CT_small.dcm"))
    top_level = [line for line in section(ct_text, "Dataset") if line.startswith("(")]
    tags = [line[:11] for line in top_level]
    assert tags == [f"({t.group:04X},{t.element:04X})" for t in ds.keys()]


def test_dump_indents_sequence_items(ct_text):
    lines = section(ct_text, "Dataset")
    at = lines.index(next(line for line in lines if line.startswith("(0010,1002) SQ OtherPatientIDsSequence")))
    assert lines[at].endswith("(2 items)")
    assert lines[at + 1] == "  item 1"
    assert re.fullmatch(r"    \(0010,0020\) LO PatientID +ABCD1234", lines[at + 2])
    assert re.fullmatch(r"    \(0010,0022\) CS TypeOfPatientID +TEXT", lines[at + 3])
    assert lines[at + 4] == "  item 2"
    assert re.fullmatch(r"    \(0010,0020\) LO PatientID +1234ABCD", lines[at + 5])


def test_dump_indents_nested_sequences(tmp_path, capsys):
    text = convert(testdata("rtplan.dcm"), tmp_path)
    lines = section(text, "Dataset")
    at = lines.index(next(line for line in lines if line.startswith("    (300C,0004) SQ ReferencedBeamSequence")))
    assert lines[at + 1] == "      item 1"
    assert lines[at + 2].startswith("        (300A,0082) DS BeamDoseSpecificationPoint")
    assert re.fullmatch(r"        \(300A,0084\) DS BeamDose +1\.02754010000000", lines[at + 3])
    # The enclosing item belongs to the FractionGroupSequence at top level.
    enclosing = max(i for i in range(at) if not lines[i].startswith(" "))
    assert lines[enclosing].startswith("(300A,0070) SQ FractionGroupSequence")


def test_dump_includes_private_tags(ct_text):
    dataset = "\n".join(section(ct_text, "Dataset"))
    assert re.search(r"^\(0009,0010\) LO PrivateCreator +GEMS_IDEN_01$", dataset, re.M)
    assert re.search(r"^\(0009,1001\) LO Private \[Full fidelity\] +GE_GENESIS_FF$", dataset, re.M)
    assert re.search(r"^\(0009,1002\) SH \S.* +CT01$", dataset, re.M)


def test_pixel_data_named_with_size_not_dumped(ct_text):
    pixel_lines = [line for line in ct_text.splitlines() if "(7FE0,0010)" in line]
    assert pixel_lines == [
        "(7FE0,0010) OW PixelData                        <32768 bytes, not dumped>"
    ]  # 128 x 128 x 2 bytes
    assert len(ct_text.encode("utf-8")) < 32768  # the text is far smaller than the pixels


def test_encapsulated_pixel_data_not_dumped(tmp_path, capsys):
    text = convert(testdata("examples_ybr_color.dcm"), tmp_path)
    pixel_lines = [line for line in text.splitlines() if "(7FE0,0010)" in line]
    assert len(pixel_lines) == 1
    match = re.fullmatch(r"\(7FE0,0010\) OB PixelData +<(\d+) bytes \(encapsulated\), not dumped>", pixel_lines[0])
    assert match, pixel_lines[0]
    ds = pydicom.dcmread(testdata("examples_ybr_color.dcm"))
    assert int(match.group(1)) == len(ds.PixelData)  # the size, known without reading the data


# -----------------------------------------------------------------------------
# Character sets
# -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("chrH31.dcm", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
        ("chrRuss.dcm", "Люкceмбypг"),
        ("chrX2.dcm", "Wang^XiaoDong=王^小东"),
    ],
)
def test_specific_character_sets_decode(tmp_path, capsys, name, patient):
    source = charset_file(name)
    assert str(pydicom.dcmread(source, force=True).PatientName) == patient  # premise
    text = convert(source, tmp_path)
    assert summary_value(text, "PatientName") == patient
    assert re.search(rf"^\(0010,0010\) PN PatientName +{re.escape(patient)}$", text, re.M)


def test_latin1_text_is_written_as_utf8(tmp_path, capsys):
    text = convert(testdata("test-SR.dcm"), tmp_path)  # SpecificCharacterSet ISO_IR 100
    assert re.search(r"^    \(0040,A075\) PN VerifyingObserverName +Riesmeier\^Jörg$", text, re.M)
    assert "Riesmeier^Jörg".encode("utf-8") in (tmp_path / "test-SR.txt").read_bytes()


# -----------------------------------------------------------------------------
# Files without pixel data
# -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["rtplan.dcm", "rtstruct.dcm"])  # structured reports: test_reports
def test_file_without_pixels_gets_only_text(tmp_path, capsys, name):
    stem = name[: -len(".dcm")]
    text = convert(testdata(name), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", "manifest.csv", f"{stem}.txt"]
    assert summary_value(text, "Frames") == "0"
    assert summary_value(text, "Display") == "metadata only (no pixel data)"
    assert "(7FE0,0010)" not in text
    printed = capsys.readouterr().out
    assert re.search(rf"^metadata +{re.escape(name)} -> {stem}\.txt", printed, re.M)
    assert "0 converted (0 PNG, 0 GIF, 0 MP4), 1 metadata only" in printed


def test_batch_reports_metadata_only_files(tmp_path):
    inputs = copy_inputs(tmp_path / "in", "rtplan.dcm", "CT_small.dcm")
    out = tmp_path / "out"
    done = run_cli(inputs, "-o", out)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^metadata +rtplan\.dcm -> rtplan\.txt", done.stdout, re.M)
    assert re.search(r"^converted +CT_small\.dcm -> CT_small\.png CT_small\.txt", done.stdout, re.M)
    assert "Done: 1 converted (1 PNG, 0 GIF, 0 MP4), 1 metadata only, 0 skipped, 0 failed." in done.stdout
    assert sorted(p.name for p in out.iterdir()) == [".thumbs", "CT_small.png", "CT_small.txt", "index.html", "manifest.csv",
                                                  "rtplan.txt"]
    assert [p.name for p in (out / ".thumbs").iterdir()] == ["CT_small.jpg"]  # the index page's picture of it
