"""The README's generated parts, checked against what the converter really does.

- The support table (``<!-- support-table:begin -->`` … ``end``) is built from a
  conversion of real pydicom / pydicom-data files chosen to cover every
  transfer syntax and photometric interpretation: a row lists only files that
  converted *and* whose outputs are what they should be (PNG or GIF + MP4,
  grey or RGB, every frame).
- The size table (``<!-- size-table:begin -->`` … ``end``) comes from a
  conversion of the shipped ``dicom_data/`` with default options.
- Every option of ``build_parser()`` is in both READMEs' option tables, and
  nothing else is; both READMEs show the same commands; ``.ci/run`` runs the
  README's test command.
- ``docs/ct_head.png`` and ``docs/xa_run.gif`` are what the README says.

Regenerate the blocks (in README.md and README_CN.md) and the docs images:

    python3 tests/test_docs.py --write
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageSequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import ROOT, testdata  # noqa: E402

from _dicom_converter.cli import build_parser, main
from _dicom_converter.inputs import output_stem

READMES = (ROOT / "README.md", ROOT / "README_CN.md")
DATA = ROOT / "dicom_data"
DOCS_PNG = ROOT / "docs" / "ct_head.png"
DOCS_GIF = ROOT / "docs" / "xa_run.gif"
PNG_SAMPLE, GIF_SAMPLE = "DCM00000", "DCM00003"

# Real files covering each transfer syntax and photometric interpretation
# (pydicom-data has no HTJ2K file, so HTJ2K has no row).
SUPPORT_FILES = (
    # Implicit VR Little Endian
    "MR_small_implicit.dcm", "rtdose.dcm", "SC_rgb_jpeg_dcmd.dcm", "gdcm-US-ALOKA-16.dcm",
    # Explicit VR Little Endian
    "CT_small.dcm", "RG1_UNCI.dcm", "emri_small.dcm", "eCT_Supplemental.dcm", "SC_rgb.dcm",
    "color-pl.dcm", "SC_ybr_full_uncompressed.dcm", "SC_ybr_full_422_uncompressed.dcm",
    "examples_palette.dcm",
    # Explicit VR Big Endian
    "MR_small_bigendian.dcm", "ExplVR_BigEnd.dcm", "OBXXXX1A_expb.dcm",
    # Deflated Explicit VR Little Endian
    "image_dfl.dcm",
    # RLE Lossless
    "MR_small_RLE.dcm", "emri_small_RLE.dcm", "SC_rgb_rle.dcm", "OBXXXX1A_rle.dcm",
    # JPEG Baseline (Process 1)
    "SC_jpeg_no_color_transform.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm",
    "examples_ybr_color.dcm",
    # JPEG Extended (Process 2 and 4)
    "JPGExtended.dcm", "JPEG-lossy.dcm",
    # JPEG Lossless, Process 14, Selection Value 1
    "JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "SC_rgb_jpeg_gdcm.dcm",
    # JPEG-LS Lossless and Near-Lossless
    "MR_small_jpeg_ls_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm",
    "JPEGLSNearLossless_16.dcm", "SC_rgb_jls_lossy_line.dcm",
    # JPEG 2000 Lossless and lossy
    "MR_small_jp2klossless.dcm", "RG1_J2KR.dcm", "US1_J2KR.dcm",
    "JPEG2000.dcm", "RG1_J2KI.dcm", "US1_J2KI.dcm",
)

# Files in SUPPORT_FILES that must fail: name -> (text the failure message contains, why).
EXPECTED_FAILURES: dict[str, tuple[str, str]] = {}
# (JPEG-lossy.dcm, NEMA's NM1_JPLY, was one while pylibjpeg decoded it: libjpeg-turbo and
# DCMTK read its 12-bit stream, as the same pixels as JPGExtended.dcm, pydicom's rewrite of it.)

# Short names for the size table and the photometric table (the UID table uses pydicom's names).
SHORT_NAMES = {
    "1.2.840.10008.1.2": "Implicit VR LE",
    "1.2.840.10008.1.2.1": "Explicit VR LE",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR LE",
    "1.2.840.10008.1.2.2": "Explicit VR BE",
    "1.2.840.10008.1.2.5": "RLE Lossless",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.201": "HTJ2K Lossless",
    "1.2.840.10008.1.2.4.202": "HTJ2K Lossless RPCL",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
}

SIZE_SAMPLES = ("DCM00003", "DCM00004", "XA_JPEG_LOSSLESS_SV1.dcm")
MP4_TOLERANCE = 0.02  # relative, on top of the rounding to whole KB


# =============================================================================
# Running the converter
# =============================================================================

def run_main(args: list[str]) -> tuple[int, str]:
    """`main(args)` in this process; returns (exit status, stdout + stderr)."""
    saved = sys.stdout, sys.stderr
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # main() calls .reconfigure()
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    sys.stdout, sys.stderr = out, err
    try:
        status = main([str(a) for a in args])
    finally:
        sys.stdout, sys.stderr = saved
        for stream in (out, err):
            stream.flush()
    text = "".join(s.buffer.getvalue().decode("utf-8", "replace") for s in (out, err))
    return status, text


@contextlib.contextmanager
def one_cpu():
    """Pin this process (and the workers it forks) to one CPU core, where the OS allows it.

    libx264 picks its thread count from the cores it may use, and the MP4's size
    depends on it; on one core the size is the same on every machine.
    """
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def stem_of(name: str) -> str:
    return output_stem(name)


# =============================================================================
# The support table
# =============================================================================

@dataclass
class Converted:
    name: str
    uid: str
    ts_name: str
    photometric: str
    frames: int
    notes: list[str]
    failure: str | None  # None: converted, and the outputs checked out


def describe(ds: pydicom.Dataset) -> tuple[int, list[str]]:
    """Frame count and what else a file exercises, read from the file itself."""
    frames = int(ds.get("NumberOfFrames") or 1)
    notes = []
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        notes.append("enhanced")
    if frames > 1:
        notes.append(f"{frames} frames")
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        notes.append(f"planar {int(ds.get('PlanarConfiguration', 0))}")
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        if "SegmentedRedPaletteColorLookupTableData" in ds:
            notes.append("segmented")
        descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
        if descriptor is not None:
            notes.append(f"{int(descriptor[2])}-bit palette")
    return frames, notes


def output_problem(out: Path, name: str, ds: pydicom.Dataset, frames: int) -> str | None:
    """Why the outputs of one converted file are not what they should be, or None."""
    stem = stem_of(name)
    colour = int(ds.get("SamplesPerPixel", 1)) == 3 or ds.PhotometricInterpretation == "PALETTE COLOR"
    if not (out / f"{stem}.txt").is_file():
        return "no .txt"
    if frames == 1:
        png = out / f"{stem}.png"
        if not png.is_file():
            return "no PNG"
        with Image.open(png) as im:
            if im.mode != ("RGB" if colour else "L"):
                return f"PNG mode {im.mode}"
            if im.size != (ds.Columns, ds.Rows):
                return f"PNG size {im.size}"
        return None
    mp4, gif = out / f"{stem}.mp4", out / f"{stem}.gif"
    if not mp4.is_file() or mp4.stat().st_size == 0:
        return "no MP4"
    if not gif.is_file():
        return "no GIF"
    with Image.open(gif) as im:
        if im.n_frames != frames:
            return f"GIF has {im.n_frames} of {frames} frames"
    return None


def convert_support_files(workdir: Path) -> list[Converted]:
    """Convert SUPPORT_FILES in one run over a folder of symbolic links; what happened to each."""
    inputs, out = workdir / "in", workdir / "out"
    inputs.mkdir(parents=True)
    for name in SUPPORT_FILES:
        (inputs / name).symlink_to(testdata(name))
    _, log = run_main([inputs, "-o", out, "--8bit", "--no-index", "-q"])
    failed = dict(re.findall(r"^FAILED +(.+?): (.*)$", log, flags=re.M))
    results = []
    for name in SUPPORT_FILES:
        ds = pydicom.dcmread(inputs / name, stop_before_pixels=True)
        uid = pydicom.uid.UID(str(ds.file_meta.TransferSyntaxUID))
        frames, notes = describe(ds)
        failure = failed.get(name) or output_problem(out, name, ds, frames)
        results.append(Converted(name, str(uid), uid.name, str(ds.PhotometricInterpretation),
                                 frames, notes, failure))
    return results


def _uid_key(uid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in uid.split("."))


def _files(names) -> str:
    return ", ".join(f"`{n}`" for n in sorted(names, key=str.casefold))


def support_markdown(results: list[Converted]) -> str:
    """Both support tables, from the files that converted, and the files that did not."""
    ok = [r for r in results if r.failure is None]
    lines = [
        "| transfer syntax | UID | files that converted | photometric interpretations |",
        "|---|---|---|---|",
    ]
    for uid in sorted({r.uid for r in ok}, key=_uid_key):
        rows = [r for r in ok if r.uid == uid]
        pis = ", ".join(sorted({r.photometric for r in rows}))
        lines.append(f"| {rows[0].ts_name} | `{uid}` | {_files(r.name for r in rows)} | {pis} |")
    lines += [
        "",
        "| photometric interpretation | files that converted | transfer syntaxes |",
        "|---|---|---|",
    ]
    for pi in sorted({r.photometric for r in ok}):
        rows = sorted((r for r in ok if r.photometric == pi), key=lambda r: r.name.casefold())
        files = ", ".join(f"`{r.name}`" + (f" ({', '.join(r.notes)})" if r.notes else "") for r in rows)
        syntaxes = ", ".join(SHORT_NAMES.get(u, pydicom.uid.UID(u).name)
                             for u in sorted({r.uid for r in rows}, key=_uid_key))
        lines.append(f"| {pi} | {files} | {syntaxes} |")
    failures = [r for r in results if r.failure is not None]
    if failures:
        lines.append("")
        for r in failures:
            why = EXPECTED_FAILURES.get(r.name, (None, r.failure))[1]
            short = SHORT_NAMES.get(r.uid, r.ts_name)
            lines.append(f"Not converted: `{r.name}` ({short}, {r.photometric}): {why}.")
    return "\n".join(lines)


# =============================================================================
# The size table
# =============================================================================

@dataclass
class SizeRow:
    name: str
    content: str
    frames: int
    size: str
    dicom: int
    gif: int
    mp4: int


def convert_samples(out: Path) -> None:
    """The shipped samples with default options (one CPU core: see `one_cpu`)."""
    with one_cpu():
        status, log = run_main([DATA, "-o", out, "-q"])
    assert status == 0, log


def size_rows(out: Path) -> list[SizeRow]:
    rows = []
    for name in SIZE_SAMPLES:
        ds = pydicom.dcmread(DATA / name, stop_before_pixels=True)
        stem = out / stem_of(name)
        text = (stem.parent / f"{stem.name}.txt").read_text(encoding="utf-8")
        rate = re.search(r"^  FrameRate +(.+?)(?: \(|$)", text, flags=re.M).group(1)
        uid = str(ds.file_meta.TransferSyntaxUID)
        content = f"{ds.Modality}, {SHORT_NAMES.get(uid, uid)}, {ds.PhotometricInterpretation}, {rate}"
        rows.append(SizeRow(
            name, content, int(ds.NumberOfFrames), f"{ds.Columns} × {ds.Rows}",
            (DATA / name).stat().st_size,
            (stem.parent / f"{stem.name}.gif").stat().st_size,
            (stem.parent / f"{stem.name}.mp4").stat().st_size,
        ))
    return rows


def _kb(size: int) -> str:
    return f"{round(size / 1024):,} KB"


SIZE_HEADER = ("| sample | content | frames | width × height | DICOM file | GIF | MP4 |\n"
               "|---|---|---|---|---:|---:|---:|")
SIZE_NOTE = ("GIF and DICOM sizes are exact. MP4 sizes are measured with the converter on one CPU "
             "core: x264 splits the work into more threads on more cores, and the MP4 then comes "
             "out a few per cent larger.")


def size_markdown(rows: list[SizeRow]) -> str:
    lines = [SIZE_HEADER]
    for r in rows:
        lines.append(f"| `{r.name}` | {r.content} | {r.frames} | {r.size} | {r.dicom:,} bytes "
                     f"| {r.gif:,} bytes | {_kb(r.mp4)} |")
    return "\n".join(lines + ["", SIZE_NOTE])


# =============================================================================
# README blocks
# =============================================================================

def block_names(text: str) -> list[str]:
    return re.findall(r"<!-- ([\w-]+):begin -->", text)


def read_block(text: str, name: str) -> str:
    match = re.search(rf"<!-- {name}:begin -->\n(.*?)\n?<!-- {name}:end -->", text, flags=re.S)
    assert match, f"no <!-- {name}:begin --> … <!-- {name}:end --> block"
    return match.group(1).strip("\n")


def write_block(text: str, name: str, content: str) -> str:
    pattern = rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)"
    assert re.search(pattern, text, flags=re.S), f"no {name} block"
    return re.sub(pattern, lambda m: f"{m.group(1)}{content}\n{m.group(2)}", text, count=1, flags=re.S)


def sh_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)]


def option_rows(text: str) -> list[str]:
    """First cells of the options table: table rows whose first cell names an argument."""
    cells = re.findall(r"^\| *(`[^|]*?`) *\|", text, flags=re.M)
    return [c for c in cells if c.startswith("`-") or c == "`input_path`"]


# =============================================================================
# Tests
# =============================================================================

@pytest.fixture(scope="module")
def support_results(tmp_path_factory) -> list[Converted]:
    return convert_support_files(tmp_path_factory.mktemp("support"))


@pytest.fixture(scope="module")
def samples_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samples") / "out"
    convert_samples(out)
    return out


def test_support_files_convert(support_results):
    """Every file converts except the known damaged ones, which fail with their reason."""
    failed = {r.name: r.failure for r in support_results if r.failure is not None}
    assert set(failed) == set(EXPECTED_FAILURES), failed
    for name, (expected, _) in EXPECTED_FAILURES.items():
        assert expected in failed[name], failed[name]


def test_support_files_cover_every_syntax_and_photometric(support_results):
    ok = [r for r in support_results if r.failure is None]
    syntaxes = {r.uid for r in ok}
    assert {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
            "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
            "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
            "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"} <= syntaxes
    assert {r.photometric for r in ok} >= {"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422",
                                           "YBR_ICT", "YBR_RCT", "PALETTE COLOR"}
    notes = {note for r in ok for note in r.notes}
    assert {"planar 0", "planar 1", "segmented", "enhanced"} <= notes
    assert any(r.frames > 1 for r in ok)


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_readme_support_table(support_results, readme):
    assert read_block(readme.read_text(encoding="utf-8"), "support-table") == support_markdown(support_results), (
        "the support table is out of date: run python3 tests/test_docs.py --write")


def test_sizes_are_deterministic(samples_out, tmp_path):
    again = tmp_path / "out"
    convert_samples(again)
    for first, second in zip(size_rows(samples_out), size_rows(again)):
        assert (first.gif, first.frames) == (second.gif, second.frames)
        assert abs(first.mp4 - second.mp4) <= MP4_TOLERANCE * first.mp4


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.name)
def test_readme_size_table(samples_out, readme):
    """Everything exact but the MP4 size, which must be within 2% (plus rounding to KB)."""
    documented = read_block(readme.read_text(encoding="utf-8"), "size-table")
    measured = size_rows(samples_out)
    mp4_text = re.compile(r"\| ([\d,]+) KB \|$")
    doc_lines, our_lines = documented.splitlines(), size_markdown(measured).splitlines()
    hint = "the size table is out of date: run python3 tests/test_docs.py --write"
    assert len(doc_lines) == len(our_lines), hint
    for doc, ours in zip(doc_lines, our_lines):
        assert mp4_text.sub("|", doc) == mp4_text.sub("|", ours), hint
    for row, line in zip(measured, doc_lines[2:]):
        kb = int(mp4_text.search(line).group(1).replace(",", ""))
        assert abs(kb - row.mp4 / 1024) <= MP4_TOLERANCE * row.mp4 / 1024 + 0.5, (row.name, row.mp4, kb)


def test_options_documented_in_both_readmes():
    parser = build_parser()
    real = {s for action in parser._actions for s in action.option_strings} - {"-h", "--help"}
    real |= {action.dest for action in parser._actions if not action.option_strings}
    for readme in READMES:
        cells = option_rows(readme.read_text(encoding="utf-8"))
        documented = set()
        for cell in cells:
            documented |= set(re.findall(r"(?<![\w-])(--?[0-9a-z][0-9a-z-]*|input_path)", cell))
        assert documented == real, (readme.name, "missing:", real - documented, "unknown:", documented - real)
        assert len(cells) == len(set(cells)), (readme.name, "an option has two rows")


def test_readmes_have_the_same_commands():
    english, chinese = (sh_blocks(p.read_text(encoding="utf-8")) for p in READMES)
    assert english == chinese
    assert "bash .ci/run" in english
    install = [b for b in english if "pip install -r requirements.txt" in b]
    assert install and install[0].endswith("python3 dicom_converter.py")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 -m pip install -q -r requirements-dev.txt" in ci
    assert "python3 -m pytest" in ci


def test_readmes_have_the_same_blocks():
    """Same marker blocks with the same contents (the tables are not translated)."""
    english, chinese = (p.read_text(encoding="utf-8") for p in READMES)
    assert block_names(english) == block_names(chinese)
    for name in block_names(english):
        assert read_block(english, name) == read_block(chinese, name), name
    assert "README.md" in chinese.split("\n## ")[0], "README_CN.md links back to README.md at the top"


def test_docs_png_is_the_8bit_ct_sample(tmp_path):
    status, log = run_main([DATA / PNG_SAMPLE, "-o", tmp_path, "--8bit", "--no-index", "-q"])
    assert status == 0, log
    with Image.open(tmp_path / f"{PNG_SAMPLE}.png") as fresh, Image.open(DOCS_PNG) as docs:
        assert docs.mode == fresh.mode == "L"
        assert np.array_equal(np.asarray(docs), np.asarray(fresh))
    for readme in READMES:
        assert "docs/ct_head.png" in readme.read_text(encoding="utf-8")


def test_docs_gif_is_the_xa_sample(samples_out):
    with Image.open(samples_out / f"{GIF_SAMPLE}.gif") as fresh, Image.open(DOCS_GIF) as docs:
        assert docs.n_frames == fresh.n_frames == int(pydicom.dcmread(DATA / GIF_SAMPLE).NumberOfFrames)
        assert docs.size == fresh.size
        for a, b in zip(ImageSequence.Iterator(docs), ImageSequence.Iterator(fresh)):
            assert np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))
    for readme in READMES:
        assert "docs/xa_run.gif" in readme.read_text(encoding="utf-8")


# =============================================================================
# python3 tests/test_docs.py --write
# =============================================================================

def write_all() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = convert_support_files(work / "support")
        samples = work / "samples"
        convert_samples(samples)
        png_out = work / "png"
        status, log = run_main([DATA / PNG_SAMPLE, "-o", png_out, "--8bit", "--no-index", "-q"])
        assert status == 0, log
        blocks = {"support-table": support_markdown(results), "size-table": size_markdown(size_rows(samples))}
        english = READMES[0].read_text(encoding="utf-8")
        for readme in READMES:
            text = readme.read_text(encoding="utf-8")
            for name, content in blocks.items():
                text = write_block(text, name, content)
            if readme != READMES[0]:  # other generated blocks (bench-table) are copied from README.md
                for name in block_names(english):
                    if name not in blocks:
                        text = write_block(text, name, read_block(english, name))
            readme.write_text(text, encoding="utf-8")
            print(f"wrote {readme.relative_to(ROOT)}")
        DOCS_PNG.parent.mkdir(exist_ok=True)
        shutil.copyfile(png_out / f"{PNG_SAMPLE}.png", DOCS_PNG)
        shutil.copyfile(samples / f"{GIF_SAMPLE}.gif", DOCS_GIF)
        os.chmod(DOCS_PNG, 0o644)
        os.chmod(DOCS_GIF, 0o644)
        print(f"wrote {DOCS_PNG.relative_to(ROOT)}, {DOCS_GIF.relative_to(ROOT)}")
        for r in results:
            if r.failure is not None:
                print(f"not converted: {r.name}: {r.failure}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: python3 {Path(__file__).relative_to(ROOT)} --write   "
                 "(rewrites the generated blocks of README.md and README_CN.md and the docs images)")
    write_all()
