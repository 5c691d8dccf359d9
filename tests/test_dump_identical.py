"""The .txt dump formats raw values straight from their bytes (issue #18).

The text must stay what pydicom's conversion gives, line for line and byte
for byte, on every DICOM file at hand: pydicom's own test files (and
pydicom-data's when installed), its character set and palette files, and
this repository's.  The reference is the same dump with the raw formatters
switched off, so that every element goes through ``ds[tag]`` and
`_value_text` as before.  pydicom's warnings (which the log line quotes) and
the values later readers get must not change either.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import pytest
from conftest import ROOT
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement

from _dicom_converter import dump
from _dicom_converter.dump import _raw_formatting_allowed, dump_dataset
from _dicom_converter.reading import _dcmread, read_dataset
from _dicom_converter.redaction import deidentified
from _dicom_converter.text import metadata_text


def _inputs() -> list[tuple[str, Path]]:
    """(id, path) of every local file that may be DICOM, found by walking the folders
    (pydicom's `get_testdata_files` may try to download the files it lacks)."""
    import pydicom.data

    pydicom_data = Path(pydicom.data.__file__).parent
    roots = {pydicom_data: "pydicom", ROOT: "repo"}
    folders = [pydicom_data / "test_files", pydicom_data / "charset_files", pydicom_data / "palettes",
               ROOT / "tests" / "data", ROOT / "dicom_data"]
    with contextlib.suppress(ImportError):  # pydicom-data
        import data_store

        roots[Path(data_store.__file__).parent] = "pydicom-data"
        folders.append(Path(data_store.__file__).parent / "data")
    found = []
    for path in sorted(p for folder in folders for p in folder.rglob("*") if p.is_file()):
        if path.suffix in (".py", ".pyc", ".txt", ".json", ".md", ".gz", ".bz2", ".zip"):
            continue
        root = next(r for r in roots if path.is_relative_to(r))
        found.append((f"{roots[root]}/{path.relative_to(root)}", path))
    return found


INPUTS = _inputs()


def read(path: Path):
    """`path` read as the converter reads it, else as pydicom reads anything (None: not DICOM)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return read_dataset(path)
        except Exception:
            try:
                ds = _dcmread(path, defer_size="64 KB")
            except Exception:
                return None
            return ds if len(ds) else None


def named_file(name: str) -> Path:
    """A pydicom or pydicom-data test file, or one of pydicom's character set files, by name (offline)."""
    found = get_testdata_file(name, download=False)
    if found is None:
        found = next((path for _, path in INPUTS if path.name == name), None)
    if found is None:
        pytest.fail(f"{name} is not installed (pip install -r requirements-dev.txt)")
    return Path(found)


def dumps(ds) -> tuple[list[str], list[str]]:
    """The two dumps of the .txt (file meta, dataset) as lines, and pydicom's warnings meanwhile."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        meta = getattr(ds, "file_meta", None)
        lines = list(dump_dataset(meta)) if meta is not None and len(meta) else []
        lines += dump_dataset(ds)
    return lines, [f"{w.category.__name__}: {w.message}" for w in caught]


def slow_dumps(ds, monkeypatch) -> tuple[list[str], list[str]]:
    """`dumps` with every element converted by pydicom: the dump as it was before issue #18."""
    with monkeypatch.context() as patch:
        patch.setattr(dump, "_raw_formatting_allowed", lambda: False)
        return dumps(ds)


def later_values(ds) -> tuple[list, list[str]]:
    """Every value as a later reader gets it (converting what is still raw, sequences
    included, values on disk left there), and pydicom's warnings meanwhile."""
    values: list = []

    def walk(dataset, depth):
        for tag in list(dataset.keys()):
            raw = dataset.get_item(tag, keep_deferred=True)
            if isinstance(raw, RawDataElement) and raw.value is None and raw.length:
                values.append((depth, int(tag), "on disk", raw.length))
                continue
            try:
                element = dataset[tag]
            except Exception as exc:
                values.append((depth, int(tag), type(exc).__name__, str(exc)))
                continue
            if element.VR == "SQ":
                values.append((depth, int(tag), "SQ", len(element.value)))
                for item in element.value:
                    walk(item, depth + 1)
            else:
                values.append((depth, int(tag), element.VR, type(element.value).__name__, repr(element.value)))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for dataset in (getattr(ds, "file_meta", None), ds):
            if dataset is not None:
                walk(dataset, 0)
    return values, [f"{w.category.__name__}: {w.message}" for w in caught]


def first_difference(lines: list[str], expected: list[str]) -> str:
    for number, (line, want) in enumerate(zip(lines, expected), 1):
        if line != want:
            return f"line {number}:\n  new: {line!r}\n  old: {want!r}"
    return f"{len(lines)} lines, expected {len(expected)}"


def assert_same_dump(fast, slow, monkeypatch) -> None:
    """`fast` and `slow` (two reads of the same data) give the same dump, the second with
    every element converted by pydicom, and leave the same values and warnings behind."""
    lines, caught = dumps(fast)
    expected, expected_caught = slow_dumps(slow, monkeypatch)
    assert lines == expected, first_difference(lines, expected)
    assert "\n".join(lines).encode("utf-8") == "\n".join(expected).encode("utf-8")
    assert caught == expected_caught  # the log line quotes them
    # What the dump left raw converts later to the same values, and silently:
    # a warning must not move from the dump to a reader that may never come.
    values, later = later_values(fast)
    expected_values, expected_later = later_values(slow)
    assert later == expected_later
    assert values == expected_values


@pytest.mark.parametrize("path", [path for _, path in INPUTS], ids=[name for name, _ in INPUTS])
def test_dump_is_the_one_pydicom_conversion_gives(path, monkeypatch):
    fast, slow = read(path), read(path)
    if fast is None:
        pytest.skip("not a DICOM file pydicom reads")
    assert_same_dump(fast, slow, monkeypatch)


def test_the_inputs_are_found():
    names = {name for name, _ in INPUTS}
    assert "pydicom/test_files/CT_small.dcm" in names
    assert "pydicom/test_files/MR_small_bigendian.dcm" in names
    assert "pydicom/charset_files/chrH31.dcm" in names
    assert any(name.startswith("repo/dicom_data/") for name in names)
    assert any(name.startswith("repo/tests/data/") for name in names)


def raw_share(ds) -> tuple[int, int]:
    """(elements still raw, elements) at every depth, sequences themselves left out."""
    raw = total = 0
    for dataset in (getattr(ds, "file_meta", None), ds):
        for tag in dataset.keys() if dataset is not None else ():
            element = dataset.get_item(tag, keep_deferred=True)
            if not isinstance(element, RawDataElement) and element.VR == "SQ":
                for item in element.value:
                    item_raw, item_total = raw_share(item)
                    raw, total = raw + item_raw, total + item_total
                continue
            raw, total = raw + isinstance(element, RawDataElement), total + 1
    return raw, total


@pytest.mark.parametrize("name", ["693_UNCR.dcm", "CT_small.dcm", "MR_small_bigendian.dcm", "rtplan.dcm", "test-SR.dcm"])
def test_most_values_are_formatted_from_bytes(name):
    """The comparison above means something only if the raw formatters run: most
    elements are still raw after the dump, which leaves them as they were."""
    ds = read(named_file(name))
    dumps(ds)
    raw, total = raw_share(ds)
    assert raw >= 0.85 * total, f"{raw} of {total} elements formatted from bytes"


@pytest.mark.parametrize("name", ["CT_small.dcm", "test-SR.dcm", "chrX1.dcm", "MR_small_implicit.dcm"])
def test_whole_text_and_redacted_text_unchanged(name, monkeypatch):
    """The .txt as written (summary first, which converts some elements), and under
    --redact the de-identified copy, whose values are all converted already."""
    path = named_file(name)
    for shown in (lambda ds: ds, lambda ds: deidentified(ds, "salt")):
        text = metadata_text(shown(read(path)), {})
        with monkeypatch.context() as patch:
            patch.setattr(dump, "_raw_formatting_allowed", lambda: False)
            expected = metadata_text(shown(read(path)), {})
        assert text.encode("utf-8") == expected.encode("utf-8")


@pytest.mark.parametrize(
    ("setting", "value"),
    [("datetime_conversion", True), ("use_none_as_empty_text_VR_value", True), ("data_element_callback", print)],
)
def test_pydicom_settings_that_change_conversion_turn_the_formatters_off(setting, value, monkeypatch):
    from pydicom import config

    assert _raw_formatting_allowed()
    monkeypatch.setattr(config, setting, value)
    assert not _raw_formatting_allowed()


def test_validation_that_raises_turns_the_formatters_off(monkeypatch):
    from pydicom import config

    monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)
    assert not _raw_formatting_allowed()


# -----------------------------------------------------------------------------
# Values made to sit on the edges the formatters must respect: lengths one past
# pydicom's maximum (it warns), patterns it refuses, escape sequences, odd lengths,
# private blocks, implicit VR, UN, big endian.  Real files seldom have them.
# -----------------------------------------------------------------------------

UID_64 = b"1." + b"2" * 62
GE = b"GEMS_IDEN_01"  # a creator in pydicom's private dictionary: (0009,xx01) is LO "Full fidelity"
VALUES = {
    "UI": [UID_64, UID_64 + b"3", b"1.2.03", b"1.2\\1.3\x00", b"1.2 ", b" 1.2", b"1.2\n", b"\\".join([b"1.2"] * 20)],
    "LO": [b"L" * 64, b"L" * 65, b"A\\B ", b"caf\xe9 ", b"caf\xc3\xa9", b"\xff\xfe", b"\x1b$B;3\x1b(B", b"a\r\nb"],
    "SH": [b"S" * 16, b"S" * 17, b"1\\" * 10],
    "UC": [b"U" * 70, b" x \\ y "],
    "CS": [b"ORIGINAL\\PRIMARY\\AXIAL ", b" A ", b"\x00\x00", b"a\nb", b"\t"],
    "DS": [b"0.5\\0.5 ", b" 1e3", b"1.2.3", b"nan", b"1_0", b"\\", b"  ", b"0.12345678901234567", b"1\x00",
           b"\\".join([b"-1.5"] * 20), b"+.5 "],
    "IS": [b"12", b" +12 ", b"1.0", b"1234567890123", b"1\\2\\", b"\x00 ", b"-0", b"\xb2"],
    "DA": [b"20200101", b"2020-01-01 ", b"\\20200101"],
    "TM": [b"120000.5 ", b"25"],
    "DT": [b"20200101120000", b"x"],
    "AS": [b"045Y"],
    "PN": [b"Doe^John", b"Doe^John=", b"=Ideo", b"P" * 65, b"Doe^John\\Roe^Jane ", b"J\xf6rg", b"\x1b$B;3\x1b(B",
           b"a\nb", b"\x00"],
    "LT": [b"line1\r\nline2", b"a\\b", b"T" * 10241, b"t\x00"],
    "ST": [b"S" * 1025, b"S" * 1024, b"x\ny"],
    "UT": [b"U" * 20000, b"end \x00"],
    "AE": [b" AE1 \\AE2", b"A\x00"],
    "UR": [b"http://x/ y ", b"a\\b"],
    "US": [b"\x00\x02", b"\x00\x02\x00", bytes(range(40))],
    "SS": [b"\xff\xff", bytes(range(34))],
    "UL": [b"\x01\x00\x00\x00", b"\x01\x00"],
    "SL": [b"\xff\xff\xff\xff"],
    "FL": [b"\x00\x00\xc0\x7f", b"\xcd\xcc\xcc\x3d" * 17],
    "FD": [b"\x00" * 8, b"\x9a\x99\x99\x99\x99\x99\xb9\x3f", b"\x00" * 12],
    "SV": [b"\xff" * 8],
    "UV": [b"\x01" * 16],
    "AT": [b"\x28\x00\x09\x00", b"\x18\x00\x63\x10\x18\x00\x65\x10", b"\x28\x00\x09"],
    "OB": [b"\x00\x01", b"\x00" * 64, b"\x00" * 65],
    "OW": [b"\x01\x02" * 3],
    "UN": [b"045Y", b"\x00" * 70],
}
TAG_OF = {"UI": 0x00080018, "LO": 0x00081030, "SH": 0x00080050, "UC": 0x00080120, "CS": 0x00080008,
          "DS": 0x00280030, "IS": 0x00200013, "DA": 0x00080020, "TM": 0x00080030, "DT": 0x0008002A,
          "AS": 0x00101010, "PN": 0x00100010, "LT": 0x00324000, "ST": 0x00080081, "UT": 0x0040A160,
          "AE": 0x00020016, "UR": 0x00080190, "US": 0x00280010, "SS": 0x00189219, "UL": 0x00081161,
          "SL": 0x00186020, "FL": 0x00181088, "FD": 0x00180090, "SV": 0x00720082, "UV": 0x00720083,
          "AT": 0x00280009, "OB": 0x00020001, "OW": 0x00221234, "UN": 0x00101010}


def raw_dataset(elements, implicit=False, little=True, charset="iso8859"):
    """A dataset of raw elements ``(tag, VR or None, bytes or None)`` as pydicom reads them."""
    from pydicom.dataset import Dataset
    from pydicom.tag import BaseTag

    raws = {}
    for tag, vr, value in elements:
        length = len(value or b"")
        raws[BaseTag(tag)] = RawDataElement(BaseTag(tag), None if implicit else vr, length, value, 0, implicit, little)
    ds = Dataset(dict(sorted(raws.items())))
    ds.set_original_encoding(implicit, little, charset)
    return ds


def crafted_cases():
    cases = []
    for vr, values in VALUES.items():
        for number, value in enumerate(values):
            cases.append((f"{vr}-{number}", [(TAG_OF[vr], vr, value)], {}))
    everything = [(TAG_OF[vr], vr, values[0]) for vr, values in VALUES.items()]
    cases += [
        ("all-implicit", everything, {"implicit": True}),
        ("all-big-endian", everything, {"little": False}),
        ("utf8", [(TAG_OF[vr], vr, value) for vr in ("LO", "PN", "SH", "LT") for value in VALUES[vr]],
         {"charset": ["UTF8"]}),
        ("iso2022", [(TAG_OF["LO"], "LO", v) for v in VALUES["LO"]], {"charset": ["iso8859", "iso2022_jp"]}),
        ("cyrillic", [(TAG_OF["PN"], "PN", b"\xbb\xee\xdc")], {"charset": ["iso_ir_144"]}),
        ("no-charset-read", [(0x00080005, "CS", b"ISO_IR 100"), (TAG_OF["PN"], "PN", b"J\xf6rg")], {"charset": ""}),
        # pydicom then reads (0008,0005) for every element it converts, and here that fails
        ("no-charset-read-bad", [(0x00080005, "US", b"\x01\x00"), (0x00081234, "OL", b"\x01\x02\x03\x04")],
         {"charset": ""}),
        ("no-charset-read-unknown-vr", [(0x00080005, "??", b"x "), (0x00280010, "US", b"\x00\x02")], {"charset": ""}),
        ("empty-values", [(TAG_OF[vr], vr, None if number % 2 else b"") for number, vr in enumerate(VALUES)], {}),
        ("empty-implicit", [(TAG_OF[vr], vr, None) for vr in VALUES], {"implicit": True}),
        ("private-block", [(0x00090010, "LO", GE), (0x00091001, "LO", b"GE_GENESIS_FF"), (0x00091002, "SH", b"CT01"),
                           (0x00091003, "UN", b"x\\y "), (0x00111001, "LO", b"no creator")], {}),
        ("private-implicit", [(0x00090010, None, GE), (0x00091001, None, b"GE_GENESIS_FF"),
                              (0x00091099, None, b"\x01\x02"), (0x00190010, None, b"ACME"), (0x00191001, None, b"1")],
         {"implicit": True}),
        ("private-un", [(0x00090010, "UN", GE), (0x00091001, "UN", b"GE_GENESIS_FF ")], {}),
        ("private-long-creator", [(0x00090010, "LO", b"C" * 65), (0x00091001, "LO", b"x")], {}),
        ("private-multi-creator", [(0x00090010, "LO", b"A\\B"), (0x00091001, "LO", b"x")], {}),
        ("private-empty-creator", [(0x00090010, "LO", b""), (0x00091001, "LO", b"x")], {}),
        ("private-group-length", [(0x00090000, "UL", b"\x01\x00"), (0x00090010, "LO", GE), (0x00091001, "LO", b"x")],
         {}),
        ("private-low-elements", [(0x00090005, "LO", b"x"), (0x00090010, "LO", GE)], {}),
        ("public-unknown", [(0x00221234, "LO", b"x"), (0x00080000, "UL", b"\x04\x00\x00\x00")], {}),
        ("public-unknown-implicit", [(0x00221234, None, b"x"), (0x00080000, None, b"\x04\x00\x00\x00")],
         {"implicit": True}),
        ("un-known-vr", [(0x00280010, "UN", b"\x00\x02"), (0x00280106, "UN", b"\x00\x00")], {}),
        ("lut-descriptor", [(0x00281101, "SS", b"\x00\x80\x00\x00\x10\x00"),
                            (0x00281102, "US", b"\x00\x80\x00\x00\x10\x00")], {}),
        ("ambiguous-implicit", [(0x00280103, None, b"\x01\x00"), (0x00280106, None, b"\xff\xff"),
                                (0x00281101, None, b"\x00\x80\x00\x00\x10\x00")], {"implicit": True}),
        ("bulk-keyword", [(0x7FE00010, "OW", b"\x00\x01" * 40), (0x00420011, "OB", b"%PDF")], {}),
        ("unknown-vr", [(0x00100010, "XX", b"abc")], {}),
    ]
    return cases


CRAFTED = crafted_cases()


@pytest.mark.parametrize(("elements", "options"), [c[1:] for c in CRAFTED], ids=[c[0] for c in CRAFTED])
def test_crafted_values(elements, options, monkeypatch):
    assert_same_dump(raw_dataset(elements, **options), raw_dataset(elements, **options), monkeypatch)


@pytest.mark.parametrize("seed", range(4))
def test_random_raw_values(seed, monkeypatch):
    """Datasets of random raw elements built from tricky pieces of bytes."""
    import random

    from pydicom.datadict import DicomDictionary

    rng = random.Random(seed)
    tags_of: dict[str, list[int]] = {}
    for tag, entry in DicomDictionary.items():
        tags_of.setdefault(entry[0], []).append(tag)
    pieces = [b" ", b"\x00", b"\\", b"\r\n", b"\n", b"1", b"0", b"12", b"-", b"+", b".", b"e", b"5", b"1.2.840", b"A",
              b"^", b"=", b"\xe9", b"\xc3\xa9", b"\xff", b"\x1b$B", b"nan", b"Q" * 60, b"2" * 11, b"\xa0", b"  "]
    creators = [b"GEMS_IDEN_01", b"SIEMENS CSA HEADER", b"ACME", b"", b"GEMS_ACQU_01"]

    def value():
        kind = rng.random()
        if kind < 0.15:
            return rng.choice([b"", None])
        if kind < 0.3:
            return b"\\".join(rng.choice([b"1", b"2.5", b"", b" 3 ", b"1.2.3", b"-7", b"\xe9"])
                              for _ in range(rng.randrange(2, 40)))
        if kind < 0.45:
            return bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 4, 6, 8, 16, 64, 65, 130])))
        return b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 8)))

    for _ in range(150):
        implicit = rng.random() < 0.3
        elements = []
        for _ in range(rng.randrange(1, 20)):
            vr = rng.choice(list(VALUES))
            if rng.random() < 0.65:
                tag = rng.choice(tags_of[vr])
                written = vr if rng.random() < 0.85 else rng.choice(["UN", "LO", "OB"])
            else:
                group, block = rng.choice([0x0009, 0x0019, 0x0043]), rng.choice([0x10, 0x11])
                if rng.random() < 0.8:
                    elements.append(((group << 16) | block, rng.choice(["LO", "LO", "UN", "SH"]), rng.choice(creators)))
                tag, written = (group << 16) | (block << 8) | rng.choice([0x01, 0x02, 0x03, 0x0C]), vr
            if isinstance(tag, int):
                elements.append((tag, written, value()))
        options = {"implicit": implicit, "little": rng.random() < 0.8,
                   "charset": rng.choice(["iso8859", ["latin_1"], ["UTF8"], ["iso8859", "iso2022_jp"], ""])}
        if rng.random() < 0.1:
            elements.append((0x00080005, rng.choice(["CS", "US", "LO"]), rng.choice([b"ISO_IR 192", b"\x01\x00", b""])))
        elements = list({tag: (tag, vr, v) for tag, vr, v in elements}.values())
        assert_same_dump(raw_dataset(elements, **options), raw_dataset(elements, **options), monkeypatch)


def summary_and_record(ds) -> tuple[str, dict, list[str]]:
    """The .txt's summary and the index record of `ds`, and pydicom's warnings meanwhile."""
    from _dicom_converter.text import index_record, summary_text

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary, record = summary_text(ds, {}), index_record(ds)
    return summary, record, [f"{w.category.__name__}: {w.message}" for w in caught]


@pytest.mark.parametrize("path", [path for _, path in INPUTS], ids=[name for name, _ in INPUTS])
def test_summary_and_index_record_read_from_bytes_are_the_converted_values(path, monkeypatch):
    """The summary and the index record read their values from the bytes too
    (`dump.value_texts`): the same text, the same record, the same warnings, and the same
    values left for later readers as with every value converted by pydicom."""
    fast, slow = read(path), read(path)
    if fast is None:
        pytest.skip("not a DICOM file pydicom reads")
    got = summary_and_record(fast)
    with monkeypatch.context() as patch:
        patch.setattr(dump, "_raw_formatting_allowed", lambda: False)
        expected = summary_and_record(slow)
    assert got == expected
    assert later_values(fast) == later_values(slow)
