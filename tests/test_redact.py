"""--redact on real de-identification test data (deid-data) and on a dataset holding every row of
PS3.15 Table E.1-1: no identifying value in any output, burned-in banners blank in every image.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_inputs, run_cli, testdata
from PIL import Image

from _dicom_converter.dump import text_of
from _dicom_converter.pixels.display import rendered_frames
from _dicom_converter.reading import is_multi, read_dataset
from _dicom_converter.redaction import (
    CONTENT_SEQUENCE,
    EMPTIED_ACTIONS,
    REMOVED_ACTIONS,
    blank_mask,
    burned_in_text_plan,
    deidentified,
    identifying_strings,
    profile_action,
    profile_table,
    replace_uid,
)

DEID_ULTRASOUNDS = ["GREYSCALE_IMAGE.dcm", "RGB_IMAGE.dcm", "ultrasound-multiframe.dcm"]
DEID_CINES = ["GREYSCALE_CINE.zip", "RGB_CINE.zip"]  # each a zip of one US multi-frame file
DEID_OTHERS = ["humans/ctbrain1.dcm", "animals/cat.dcm", "dicom-cookies/image1.dcm"]
PATIENT_FOLDER = "ZZZDOWNTIME MARY 120907058"  # RGB_IMAGE.dcm's patient and accession number


def deid_data(name: str) -> Path:
    """A file of the deid-data package (real de-identification test files), found offline."""
    from importlib.resources import files

    path = Path(str(files("deid_data") / "data" / name))
    if not path.exists():
        pytest.fail(f"{name} is not in deid-data (pip install -r requirements-dev.txt)")
    return path


def copy_deid_inputs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in DEID_ULTRASOUNDS:
        (folder / name).write_bytes(deid_data(f"ultrasounds/{name}").read_bytes())
    for name in DEID_CINES:
        with zipfile.ZipFile(deid_data(f"ultrasounds/{name}")) as archive:
            (member,) = [m for m in archive.namelist() if m.endswith(".dcm")]
            (folder / Path(member).name).write_bytes(archive.read(member))
    for name in DEID_OTHERS:
        (folder / Path(name).name).write_bytes(deid_data(name).read_bytes())
    named = folder / PATIENT_FOLDER  # as a hospital export names folders: after the patient
    named.mkdir()
    (named / "40404040404.dcm").write_bytes(deid_data("ultrasounds/RGB_IMAGE.dcm").read_bytes())
    return folder


def text_outputs(out: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(out.rglob("*")) if p.suffix in (".txt", ".json", ".html", ".csv"))


def identifying_values(path: Path) -> dict[str, set[str]]:
    """The values of `path` that --redact must not show: of every Table E.1-1 row other than the
    ones it keeps, and of private tags, at every depth and in the file meta.  Left out: values
    under 4 characters and numbers (they occur by chance), and any value a kept attribute also
    holds (a model name that is also a station name)."""
    import warnings

    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deid-data's values too long for their VR, on purpose
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        ds.walk(lambda dataset, element: element.value)  # every value read here, not in `walk`
    found: dict[str, set[str]] = {}
    kept: set[str] = set()

    def walk(dataset) -> None:
        for element in dataset:
            if element.VR == "SQ":
                for item in element.value:
                    walk(item)
                continue
            if isinstance(element.value, (bytes, bytearray)):
                continue
            action = profile_action(int(element.tag))
            for value in (element.value if is_multi(element.value) else [element.value]):
                text = text_of(value)
                if action is None and not element.tag.is_private:
                    kept.add(text)
                elif action != "X/Z/U*":
                    found.setdefault(text, set()).add(element.keyword or str(element.tag))

    walk(ds.file_meta)
    walk(ds)

    def is_number(text: str) -> bool:
        try:
            float(text)
            return True
        except ValueError:
            return False

    return {v: k for v, k in found.items() if len(v) >= 4 and not is_number(v) and v not in kept}


# =============================================================================
# The profile table
# =============================================================================

def test_the_table_is_the_whole_of_table_e11_with_its_actions():
    exact, masked = profile_table()
    assert len(exact) >= 640 and len(masked) >= 3  # 655 rows of the 2026c edition
    rows = {
        0x00081070: "X/Z/D",  # Operators' Name
        0x00321030: "X",      # Reason for Study
        0x00081000: "X",      # Network ID (retired)
        0x00080201: "X",      # Timezone Offset From UTC
        0x00180010: "Z/D",    # Contrast/Bolus Agent
        0x00100010: "Z",      # Patient's Name
        0x00100020: "Z/D",    # Patient ID
        0x00080018: "U",      # SOP Instance UID
        0x0040A730: "D",      # Content Sequence (cleaned instead: Clean Structured Content)
        0x00081140: "X/Z/U*",  # Referenced Image Sequence
    }
    for tag, action in rows.items():
        assert profile_action(tag) == action, f"{tag:08X}"
    assert profile_action(0x60223000) == "X"  # Overlay Data, any group 60xx
    assert profile_action(0x600A4000) == "X"  # Overlay Comments
    assert profile_action(0x50041234) == "X"  # Curve Data: all of groups 50xx
    for kept in (0x00080060, 0x00280010, 0x00281050, 0x00181063, 0x00080016):  # modality, rows, window…
        assert profile_action(kept) is None, f"{kept:08X}"


def every_row_dataset():
    """A dataset with one element for every exact row of Table E.1-1 that pydicom's dictionary
    knows, each holding a value unique to it (``TOKEN<tag>`` for text, a UID ending in the tag,
    a date…), at the top level and again three sequences deep (inside kept sequences), plus
    an Operators' Name stored as LO, overlay and curve groups, private tags and the file meta's
    AE titles.  Returns (dataset, {token: tag})."""
    from pydicom.datadict import dictionary_VR
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence

    tokens: dict[str, int] = {}

    def value_for(tag: int, vr: str, depth: int):
        token = f"TK{tag:08X}D{depth}"
        if vr in ("PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE", "CS"):
            value = token if vr != "PN" else f"{token}^NAME"
        elif vr == "UI":
            token = f"1.2.826.0.1.3680043.10.{tag}.{depth}"
            value = token
        elif vr == "DA":
            token, value = f"19{depth}{tag % 10}0829", f"19{depth}{tag % 10}0829"
        elif vr == "TM":
            token = value = f"10{depth}{tag % 10}12.{tag % 1000000:06d}"
        elif vr == "DT":
            token = value = f"19{depth}{tag % 10}0829101112.{tag % 1000000:06d}"
        elif vr in ("OB", "OW", "UN"):
            value = token.encode()
            return value, None
        else:
            return None, None
        tokens[token] = tag
        return value, token

    def fill(ds, depth: int) -> None:
        exact, _ = profile_table()
        for tag in sorted(exact):
            if tag >> 16 in (0x0000, 0x0002, 0xFFFA) or tag == 0xFFFCFFFC:  # command, meta, signatures
                continue
            try:
                vr = dictionary_VR(tag).split(" or ")[0]
            except KeyError:
                continue
            if vr == "SQ":
                item = Dataset()
                item.CodeMeaning = "kept meaning"
                item.PersonName = f"NESTED{tag:08X}D{depth}^X"
                tokens[f"NESTED{tag:08X}D{depth}"] = tag
                ds.add_new(tag, "SQ", Sequence([item]))
                continue
            value, _ = value_for(tag, vr, depth)
            if value is not None:
                ds.add_new(tag, vr, value)

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.SourceApplicationEntityTitle = "TKSOURCEAE"
    ds.file_meta.SendingApplicationEntityTitle = "TKSENDINGAE"
    ds.file_meta.ReceivingApplicationEntityTitle = "TKRECEIVINGAE"
    tokens.update(TKSOURCEAE=0x00020016, TKSENDINGAE=0x00020017, TKRECEIVINGAE=0x00020018)
    fill(ds, 0)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "OT", 4, 4
    # three deep, through kept sequences
    level1, level2, level3 = Dataset(), Dataset(), Dataset()
    fill(level3, 3)
    level2.AnatomicRegionSequence = [level3]
    level1.AnatomicRegionSequence = [level2]
    ds.AnatomicRegionSequence = [level1]
    # wrong VRs, repeating groups, private tags
    del ds.OperatorsName
    del tokens[f"TK{0x00081070:08X}D0"]
    ds.add_new(0x00081070, "LO", "TKOPERATORASLO")
    ds.add_new(0x60023000, "OW", b"TKOVERLAYDATA\x00\x00\x00")
    ds.add_new(0x60024000, "LT", "TKOVERLAYCOMMENT")
    ds.add_new(0x50042500, "LO", "TKCURVELABEL")
    ds.private_block(0x0011, "TK PRIVATE", create=True).add_new(0x01, "LO", "TKPRIVATEVALUE")
    tokens.update(TKOPERATORASLO=0x00081070, TKOVERLAYCOMMENT=0x60024000, TKCURVELABEL=0x50042500,
                  TKPRIVATEVALUE=0x00111001)
    return ds, tokens


def test_every_row_gets_its_action_at_every_depth():
    ds, tokens = every_row_dataset()
    out = deidentified(ds, "salt")
    exact, _ = profile_table()

    def check(original, shown, depth: int) -> None:
        for element in original:
            tag = int(element.tag)
            action = profile_action(tag)
            if element.tag.is_private or action in REMOVED_ACTIONS:
                assert tag not in shown, (depth, f"{tag:08X}", action)
            elif tag == CONTENT_SEQUENCE:
                assert [i.get("PersonName") for i in shown[tag].value] == [None] * len(element.value)
                assert [i.CodeMeaning for i in shown[tag].value] == ["kept meaning"] * len(element.value)
            elif action in EMPTIED_ACTIONS:
                assert tag in shown and shown[tag].value in (None, "", b"", [], ()), (f"{tag:08X}", action)
            elif action == "U":
                assert shown[tag].value.startswith("2.25."), f"{tag:08X}"
                assert shown[tag].value == replace_uid(element.value, "salt")
            elif element.VR == "SQ":
                for before, after in zip(element.value, shown[tag].value):
                    check(before, after, depth + 1)
            else:
                assert shown[tag].value == element.value, f"{tag:08X}"

    check(ds, out, 0)
    assert "AnatomicRegionSequence" in out and out.Modality == "OT" and out.Rows == 4
    deep = out.AnatomicRegionSequence[0].AnatomicRegionSequence[0].AnatomicRegionSequence[0]
    assert "PatientName" in deep and not deep.PatientName and "OperatorsName" not in deep
    assert not [t for t in (0x00020016, 0x00020017, 0x00020018) if t in out.file_meta]
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID != ds.SOPInstanceUID
    assert "OperatorsName" not in out and 0x60023000 not in out and 0x50042500 not in out
    evaluator = ds.copy()
    evaluator.EvaluatorName = "TKEVALUATOR^NAME"  # a PN the 2026c table does not list
    assert profile_action(0x00142006) is None and not deidentified(evaluator, "salt").EvaluatorName
    assert len([t for t in tokens if exact.get(tokens[t])]) > 500  # most rows carry a searchable value


def test_no_row_value_reaches_the_outputs(tmp_path):
    ds, tokens = every_row_dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "every_row.dcm", enforce_file_format=False)
    raw = (tmp_path / "in" / "every_row.dcm").read_bytes()
    assert all(token.encode() in raw for token in tokens)
    run = run_cli(tmp_path / "in", "-o", tmp_path / "out", "--redact", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    written = text_outputs(tmp_path / "out")
    assert b"AnatomicRegionSequence" in written and b"kept meaning" in written
    leaked = {token: f"{tag:08X}" for token, tag in tokens.items() if token.encode() in written}
    assert not leaked
    # the same file without --redact shows them: the search finds what it looks for
    assert run_cli(tmp_path / "in", "-o", tmp_path / "plain").returncode == 0
    plain = text_outputs(tmp_path / "plain")
    assert b"TKOPERATORASLO" in plain and b"TKSOURCEAE" in plain


def test_a_structured_report_keeps_its_codes_and_numbers():
    import pydicom

    ds = pydicom.dcmread(testdata("test-SR.dcm"))
    out = deidentified(ds, "salt")

    def items(sequence):
        for item in sequence:
            yield item
            yield from items(item.get("ContentSequence", []))

    before, after = list(items(ds.ContentSequence)), list(items(out.ContentSequence))
    assert len(after) == len(before) > 10
    types = [i.get("ValueType") for i in before]
    assert {"TEXT", "CODE", "NUM", "DATE", "UIDREF"} <= set(types)
    for was, now in zip(before, after):
        assert now.get("ValueType") == was.get("ValueType")
        if "ConceptNameCodeSequence" in was:
            assert now.ConceptNameCodeSequence[0].CodeMeaning == was.ConceptNameCodeSequence[0].CodeMeaning
        if was.get("ValueType") == "TEXT":
            assert was.TextValue and not now.TextValue
        if was.get("ValueType") in ("PNAME", "DATE", "TIME", "DATETIME"):
            assert not now.get("PersonName") and not now.get("Date") and not now.get("DateTime")
        if was.get("ValueType") == "UIDREF":
            assert now.UID == replace_uid(was.UID, "salt") != was.UID
        if was.get("ValueType") == "CODE":
            assert now.ConceptCodeSequence[0].CodeMeaning == was.ConceptCodeSequence[0].CodeMeaning
        if was.get("ValueType") == "NUM" and "MeasuredValueSequence" in was:
            assert now.MeasuredValueSequence[0].NumericValue == was.MeasuredValueSequence[0].NumericValue


def test_names_found_for_output_names_include_names_with_the_wrong_vr():
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.add_new(0x00081070, "LO", "Aaron Lear, MD")  # Operators' Name as LO, as in deid-data's RGB cine
    ds.AccessionNumber = "A5551234"
    ds.PatientName = "ZZZDOWNTIME^MARY"
    ds.Modality = "US"
    tokens = identifying_strings(ds)
    assert {"aaron", "lear", "a5551234", "zzzdowntime", "mary"} <= set(tokens)
    assert "us" not in tokens


# =============================================================================
# Burned-in text: which rule, which rectangles
# =============================================================================

def header(**attributes):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.Rows, ds.Columns = 768, 1024
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def test_a_device_rule_from_deid_gives_its_rectangle():
    # deid.dicom: "LABEL Logiq US (LOGIQ9) # (CTP) ... ctpcoordinates 0,0,640,30" (x, y, width, height)
    plan = burned_in_text_plan(header(Modality="US", Manufacturer="GE", ManufacturerModelName="LOGIQ9",
                                         BurnedInAnnotation="YES"))
    assert plan.action == "blank" and plan.steps == ((True, (0, 0, 640, 30)),)
    assert "LOGIQ9" in plan.reason


def test_burned_in_flags_decide_when_no_rule_locates_the_text():
    assert burned_in_text_plan(header(Modality="CT", BurnedInAnnotation="NO")).action == "show"
    assert burned_in_text_plan(header(Modality="CT")).action == "show"
    withheld = burned_in_text_plan(header(Modality="MR", BurnedInAnnotation="YES"))
    assert withheld.action == "withhold" and "no rule" in withheld.reason
    for kind in (dict(Modality="US"), dict(Modality="ES"), dict(Modality="OT"),
                 dict(Modality="CT", SOPClassUID="1.2.840.10008.5.1.4.1.1.7")):
        assert burned_in_text_plan(header(**kind)).action == "withhold", kind
    # deid's "Burned In Annotation" label joins its lines with ||: a CT screen save is flagged
    saved = burned_in_text_plan(header(Modality="CT", Manufacturer="ACME", SeriesDescription="SCREEN SAVE"))
    assert saved.action == "withhold" and "Burned In Annotation" in saved.reason
    missing = burned_in_text_plan(header(Modality="CT", ImageType=None))
    assert missing.action == "withhold" and "Missing ImageType" in missing.reason


def test_ultrasound_regions_keep_only_the_regions():
    from pydicom.dataset import Dataset

    region = Dataset()
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 14, 38
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 1010, 758
    plan = burned_in_text_plan(header(Modality="US", Manufacturer="Nobody", SequenceOfUltrasoundRegions=[region]))
    assert plan.action == "blank"
    mask = blank_mask(plan, 768, 1024)
    assert mask[:38].all() and mask[759:].all() and mask[:, :14].all() and mask[:, 1011:].all()
    assert not mask[38:759, 14:1011].any()


# =============================================================================
# deid-data, end to end
# =============================================================================

@pytest.fixture(scope="module")
def deid_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("deid")
    inputs = copy_deid_inputs(root / "in")
    out = root / "out"
    run = run_cli(inputs, "-o", out, "--redact", "--json", "--frames", "--8bit")
    assert run.returncode == 0, run.stdout + run.stderr
    return inputs, out, run.stdout


def test_deid_data_outputs_hold_none_of_their_identifying_values(deid_run):
    inputs, out, log = deid_run
    assert (out / "index.html").exists()
    written = text_outputs(out) + log.encode()
    names = "\n".join(str(p.relative_to(out)) for p in out.rglob("*")).casefold()
    assert "zzzdowntime" not in names and "40404040404" not in names and "120907058" not in names
    stand_in = r"redacted-[0-9a-f]{16}"  # an HMAC of the name under the run's secret
    assert any(re.fullmatch(stand_in, p.parent.name) and re.fullmatch(stand_in + r"\.png", p.name)
               for p in out.rglob("*.png")), names
    searched = 0
    for path in sorted(p for p in inputs.rglob("*.dcm")):
        values = identifying_values(path)
        searched += len(values)
        leaked = {v: sorted(k) for v, k in values.items() if v.encode() in written}
        assert not leaked, (path.name, leaked)
    assert searched > 100
    raw = b"".join(p.read_bytes() for p in inputs.rglob("*.dcm"))
    for value in ("Aaron Lear, MD", "multiple diagnoses", "RADIOLOGY1", "Rayburn^Kristine", "fragrant pond"):
        assert value.encode() in raw and value.encode() not in written, value


def region_mask(path: Path) -> np.ndarray:
    """True outside the union of the file's ultrasound regions (where the banner is)."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    outside = np.ones((ds.Rows, ds.Columns), dtype=bool)
    for r in ds.SequenceOfUltrasoundRegions:
        outside[r.RegionLocationMinY0:r.RegionLocationMaxY1 + 1, r.RegionLocationMinX0:r.RegionLocationMaxX1 + 1] = False
    return outside


def banner_rows(path: Path) -> int:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return min(int(r.RegionLocationMinY0) for r in ds.SequenceOfUltrasoundRegions)


def test_the_inputs_really_have_text_in_their_banners(deid_run):
    inputs, _, _ = deid_run
    names = ["GREYSCALE_IMAGE.dcm", "RGB_IMAGE.dcm", "GREYSCALE_CINE.dcm", "RGB_CINE.dcm"]  # not
    for name in names:  # ultrasound-multiframe.dcm: deid-data ships it with its banner already black
        path = inputs / name
        frames, _ = rendered_frames(path, read_dataset(path), 255, None)
        frame = next(frames)
        assert frame[:banner_rows(path) - 4].max() > 128, name  # white text on black


def test_every_image_output_is_black_outside_the_ultrasound_regions(deid_run):
    import av

    inputs, out, _ = deid_run
    ultrasounds = [p for p in sorted(inputs.iterdir()) if p.name in DEID_ULTRASOUNDS or "CINE" in p.name]
    assert len(ultrasounds) == 5
    for path in ultrasounds:
        outside = region_mask(path)
        full = [out / f"{path.stem}.png"] if (out / f"{path.stem}.png").exists() else \
            sorted((out / f"{path.stem}_frames").glob("*.png"))
        assert full, path.name
        for png in full:  # full resolution: every pixel outside the regions is exactly black
            pixels = np.asarray(Image.open(png))
            assert pixels.shape[:2] == outside.shape and pixels[outside].max() == 0, png.name
            assert pixels[~outside].max() > 0
        if (out / f"{path.stem}.gif").exists():  # scaled down: the banner rows, away from the edge
            gif = Image.open(out / f"{path.stem}.gif")
            scale = gif.height / outside.shape[0]
            top = int(banner_rows(path) * scale) - 2
            for index in range(gif.n_frames):
                gif.seek(index)
                assert np.asarray(gif.convert("RGB"))[:top].max() == 0, (path.name, index)
            with av.open(str(out / f"{path.stem}.mp4")) as container:
                for frame in container.decode(video=0):
                    grey = frame.to_ndarray(format="gray")
                    assert grey[:banner_rows(path) - 4].max() <= 24, path.name  # black after H.264


def test_withheld_images_have_a_txt_and_a_reason(deid_run):
    inputs, out, log = deid_run
    for stem in ("image1", "ctbrain1"):
        assert sorted(p.name for p in out.glob(f"{stem}.*")) == [f"{stem}.json", f"{stem}.txt"]
        line = next(line for line in log.splitlines() if line.split()[1:2] == [f"{stem}.dcm"])
        assert line.startswith("metadata") and "image withheld" in line, line
        assert "Redaction" in (out / f"{stem}.txt").read_text(encoding="utf-8")
    assert "deid rule 'Stanford Blacklist Missing ImageType'" in log
    text = (out / "GREYSCALE_IMAGE.txt").read_text(encoding="utf-8")
    assert re.search(r"Redaction\s+blanked x 0-1024, y 0-768; kept x 14-1011, y 38-759", text), text[:2000]
    assert (out / "cat.png").exists()  # a DX marked Burned In Annotation NO is shown
    assert json.loads((out / "cat.json").read_text(encoding="utf-8"))["00280301"]["Value"] == ["NO"]


def test_redact_pixels_keep_leaves_the_pixels(tmp_path):
    source = deid_data("ultrasounds/GREYSCALE_IMAGE.dcm")
    run = run_cli(source, "-o", tmp_path, "--redact", "--redact-pixels", "keep", "--8bit")
    assert run.returncode == 0, run.stdout + run.stderr
    pixels = np.asarray(Image.open(tmp_path / "GREYSCALE_IMAGE.png"))
    assert pixels[region_mask(source)].max() > 128
    text = (tmp_path / "GREYSCALE_IMAGE.txt").read_text(encoding="utf-8")
    assert re.search(r"Redaction\s+pixels kept as they are \(--redact-pixels keep\)", text)
    assert "ZZZ TEST" not in text
    refused = run_cli(source, "-o", tmp_path / "x", "--redact-pixels", "keep")
    assert refused.returncode == 2 and "--redact-pixels only applies with --redact" in refused.stderr


def test_overlays_are_not_drawn_under_redact(tmp_path):
    """pydicom's MR with an overlay plane, its Image Type made ORIGINAL\\PRIMARY (as DERIVED\\SECONDARY
    deid's rules withhold it)."""
    import pydicom

    ds = pydicom.dcmread(testdata("MR-SIEMENS-DICOM-WithOverlays.dcm"))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    source = tmp_path / "overlay.dcm"
    ds.save_as(source)
    ds = read_dataset(source)
    with_overlays = next(rendered_frames(source, ds, 65535, None)[0])
    without = next(rendered_frames(source, ds, 65535, None, draw_overlays=False)[0])
    assert (with_overlays != without).any()
    run = run_cli(source, "-o", tmp_path / "out", "--redact")
    assert run.returncode == 0, run.stdout + run.stderr
    (png,) = (tmp_path / "out").glob("*.png")
    assert np.array_equal(np.asarray(Image.open(png)), without)


# =============================================================================
# Series, and runs into a folder an earlier run wrote
# =============================================================================

def localizer_slices(folder: Path) -> list[Path]:
    """Three 160 x 160 CT localizer slices of a GE LightSpeed VCT, one series, a horizontal ramp
    (HU 0..1590): deid's rule "LightSpeed Localizers" blanks x 0-80, y 0-85 of such images."""
    from test_extras import write_image

    ramp = np.tile(np.arange(160, dtype=np.int16) * 10 + 1024, (160, 1))
    return [write_image(folder / f"slice{n}.dcm", ramp + n, Manufacturer="GE MEDICAL SYSTEMS",
                        ManufacturerModelName="LightSpeed VCT", ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
                        InstanceNumber=n + 1, ImagePositionPatient=[0, 0, n],
                        ImageOrientationPatient=[1, 0, 0, 0, 1, 0]) for n in range(3)]


def test_series_and_single_outputs_are_blanked_alike(tmp_path):
    localizer_slices(tmp_path / "in")
    run = run_cli(tmp_path / "in", "-o", tmp_path / "out", "--redact", "--series", "--8bit")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("burned-in text blanked (deid rule 'LightSpeed Localizers')") == 3, run.stdout
    for png in sorted((tmp_path / "out").glob("slice*.png")):
        pixels = np.asarray(Image.open(png))
        assert pixels[:85, :80].max() == 0 and pixels[85:, 80:].min() > 0, png.name
    (gif,) = (tmp_path / "out").glob("*.gif")  # the series cine, 160 px: not scaled
    frames = Image.open(gif)
    assert frames.n_frames == 3
    for index in range(3):
        frames.seek(index)
        pixels = np.asarray(frames.convert("L"))
        assert pixels[:85, :80].max() == 0 and pixels[85:, 80:].min() > 0, index
    assert "burned-in text blanked in 3 of 3 slices" in run.stdout


def test_skip_existing_never_takes_an_unredacted_run_for_a_redacted_one(tmp_path):
    copy_inputs(tmp_path / "in", "CT_small.dcm")
    out = tmp_path / "out"
    assert run_cli(tmp_path / "in", "-o", out).returncode == 0
    assert b"CompressedSamples" in (out / "CT_small.txt").read_bytes()
    again = run_cli(tmp_path / "in", "-o", out, "--redact", "--skip-existing")
    assert again.returncode == 0 and "up to date CT_small" not in again.stdout, again.stdout
    assert b"CompressedSamples" not in (out / "CT_small.txt").read_bytes()
    once_more = run_cli(tmp_path / "in", "-o", out, "--redact", "--skip-existing")
    assert "up to date CT_small.dcm" in once_more.stdout, once_more.stdout
