"""The command line as a user meets it: finding inputs, output layout, errors, exit status."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import av
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate

from conftest import copy_inputs, run_cli, testdata


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def outputs(root: Path) -> list[str]:
    """Files written under `root`, less the index page, its thumbnails and the manifest (checked elsewhere)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and p.relative_to(root).as_posix() not in ("index.html", "manifest.csv")
                  and ".thumbs" not in p.relative_to(root).parts)


def test_folder_tree_is_mirrored_with_cd_style_names(tmp_path):
    inp = tmp_path / "cd"
    (inp / "DICOM" / "ST1").mkdir(parents=True)
    shutil.copy(testdata("CT_small.dcm"), inp / "DICOM" / "ST1" / "IM0001")     # no suffix
    shutil.copy(testdata("MR_small.dcm"), inp / "DICOM" / "ST1" / "I0000123.DCM")  # upper-case suffix
    shutil.copy(testdata("emri_small.dcm"), inp / "DCM00001.dicom")
    run = run_cli(inp, "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert outputs(tmp_path / "out") == [
        "DCM00001.gif", "DCM00001.mp4", "DCM00001.txt",
        "DICOM/ST1/I0000123.png", "DICOM/ST1/I0000123.txt",
        "DICOM/ST1/IM0001.png", "DICOM/ST1/IM0001.txt",
    ]
    assert "Done: 3 converted (2 PNG, 1 GIF, 1 MP4), 0 metadata only, 0 skipped, 0 failed." in run.stdout


def test_single_file_input_writes_into_output_root(tmp_path):
    run = run_cli(testdata("CT_small.dcm"), "-o", tmp_path / "out")
    assert run.returncode == 0
    assert outputs(tmp_path / "out") == ["CT_small.png", "CT_small.txt"]
    png = Image.open(tmp_path / "out" / "CT_small.png")
    assert png.size == (128, 128) and png.mode.startswith("I;16")


def test_8bit_option_writes_8bit_png(tmp_path):
    assert run_cli(testdata("CT_small.dcm"), "-o", tmp_path, "--8bit").returncode == 0
    assert Image.open(tmp_path / "CT_small.png").mode == "L"


def test_inputs_with_the_same_stem_never_overwrite_each_other(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(testdata("CT_small.dcm"), inp / "a")
    shutil.copy(testdata("MR_small.dcm"), inp / "a.dcm")
    run = run_cli(inp, "-o", tmp_path / "out")
    assert run.returncode == 0
    assert outputs(tmp_path / "out") == ["a.png", "a.txt", "a_2.png", "a_2.txt"]
    assert "a.dcm: output renamed to a_2" in run.stdout
    # sorted order: "a" (the CT) keeps the name, "a.dcm" (the MR) gets _2
    assert "Modality               CT" in (tmp_path / "out" / "a.txt").read_text(encoding="utf-8")
    assert "Modality               MR" in (tmp_path / "out" / "a_2.txt").read_text(encoding="utf-8")


def test_non_dicom_files_and_dicomdir_are_skipped_with_a_word(tmp_path):
    inp = copy_inputs(tmp_path / "in", "CT_small.dcm")
    (inp / "notes.txt").write_text("not an image")
    (inp / "photo.dcm").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))  # a lying extension
    (inp / "empty").write_bytes(b"")
    dicomdir = Path(pydicom.data.get_testdata_file("DICOMDIR", download=False))
    shutil.copy(dicomdir, inp / "DICOMDIR")
    run = run_cli(inp, "-o", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    for name in ("notes.txt", "photo.dcm", "empty"):
        assert f"skipped    {name}: not a DICOM file" in run.stdout
    assert "skipped    DICOMDIR: DICOMDIR" in run.stdout
    assert outputs(tmp_path / "out") == ["CT_small.png", "CT_small.txt"]


def test_dataset_without_pixels_gets_metadata_only(tmp_path):
    run = run_cli(testdata("rtplan.dcm"), "-o", tmp_path)
    assert run.returncode == 0
    assert "metadata   rtplan.dcm -> rtplan.txt" in run.stdout
    assert "1 metadata only" in run.stdout
    assert outputs(tmp_path) == ["rtplan.txt"]


def test_bad_file_gets_one_line_and_the_batch_goes_on(tmp_path):
    inp = copy_inputs(tmp_path / "in", "MR_truncated.dcm", "CT_small.dcm", "MR_small.dcm")
    run = run_cli(inp, "-o", tmp_path / "out")
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    assert run.stderr.strip() == "FAILED     MR_truncated.dcm: truncated pixel data (8130 of 8192 bytes)"
    assert outputs(tmp_path / "out") == ["CT_small.png", "CT_small.txt", "MR_small.png", "MR_small.txt"]
    assert "2 converted" in run.stdout and "1 failed." in run.stdout


def test_an_unreadable_stream_names_its_transfer_syntax(tmp_path):
    ds = pydicom.dcmread(testdata("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2, its stream a sequence header and zeros
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(96)])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "mpeg2.dcm")
    run = run_cli(tmp_path / "mpeg2.dcm", "-o", tmp_path / "out")
    assert run.returncode == 1
    assert ("FAILED     mpeg2.dcm: cannot read the MPEG2 Main Profile / Main Level (1.2.840.10008.1.2.4.100) "
            "video stream: ") in run.stderr
    assert "Traceback" not in run.stderr
    assert outputs(tmp_path / "out") == []


def test_multiframe_writes_gif_and_h264_mp4(tmp_path):
    run = run_cli(testdata("emri_small.dcm"), "-o", tmp_path)
    assert run.returncode == 0
    gif = Image.open(tmp_path / "emri_small.gif")
    assert gif.n_frames == 10 and gif.size == (64, 64)
    with av.open(str(tmp_path / "emri_small.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == 10


def test_no_mp4_and_no_gif_options(tmp_path):
    assert run_cli(testdata("emri_small.dcm"), "-o", tmp_path / "a", "--no-mp4").returncode == 0
    assert outputs(tmp_path / "a") == ["emri_small.gif", "emri_small.txt"]
    assert run_cli(testdata("emri_small.dcm"), "-o", tmp_path / "b", "--no-gif").returncode == 0
    assert outputs(tmp_path / "b") == ["emri_small.mp4", "emri_small.txt"]


def test_fps_option_sets_gif_and_mp4_rate(tmp_path):
    assert run_cli(testdata("emri_small.dcm"), "-o", tmp_path, "--fps", "25").returncode == 0
    gif = Image.open(tmp_path / "emri_small.gif")
    assert gif.info["duration"] == 40
    with av.open(str(tmp_path / "emri_small.mp4")) as container:
        assert container.streams.video[0].average_rate == 25
    assert "25 fps (--fps)" in (tmp_path / "emri_small.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("args, message", [
    (["/no/such/path"], "input path does not exist"),
    (["--fps", "0"], "must be greater than 0"),
    (["--window", "40"], "expected 2 arguments"),
    (["--no-mp4", "--no-gif"], "leave nothing to write"),
    (["--bogus"], "unrecognized arguments"),
])
def test_usage_errors_exit_2(tmp_path, args, message):
    run = run_cli(*args, "-o", tmp_path / "out", cwd=tmp_path)
    assert run.returncode == 2
    assert message in run.stderr


def test_input_is_never_written_even_with_output_inside_it(tmp_path):
    inp = copy_inputs(tmp_path / "in", "CT_small.dcm", "emri_small.dcm")
    before = tree_hashes(inp)
    first = run_cli(inp, "-o", inp / "converted")
    second = run_cli(inp, "-o", inp / "converted")
    assert first.returncode == second.returncode == 0
    # the second run must not take the first run's outputs for inputs
    assert not [line for line in second.stdout.splitlines() if "converted/" in line and not line.startswith("index ")]
    after = {k: v for k, v in tree_hashes(inp).items() if not k.startswith("converted")}
    assert after == before
    assert outputs(inp / "converted") == [
        "CT_small.png", "CT_small.txt", "emri_small.gif", "emri_small.mp4", "emri_small.txt"]


def test_no_temporary_files_are_left_behind(tmp_path):
    inp = copy_inputs(tmp_path / "in", "MR_truncated.dcm", "emri_small.dcm")
    run_cli(inp, "-o", tmp_path / "out")
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".part")]


def test_whole_pydicom_corpus_one_line_per_file_no_traceback(tmp_path):
    """Every real file pydicom and pydicom-data ship gives exactly one result line."""
    from pydicom.data import get_testdata_files

    inp = tmp_path / "corpus"
    inp.mkdir()
    names = []
    for path in get_testdata_files():
        if os.path.isfile(path) and not os.path.exists(inp / os.path.basename(path)):
            os.symlink(path, inp / os.path.basename(path))
            names.append(os.path.basename(path))
    run = run_cli(inp, "-o", tmp_path / "out", "--no-mp4")
    text = run.stdout + run.stderr
    assert "Traceback" not in text
    result_lines = [line for line in text.splitlines() if not line.startswith(("Done:", "note", "index", "manifest"))]
    assert sorted(line.split()[1].rstrip(":") for line in result_lines) == sorted(names)
    assert run.returncode == 1  # pydicom ships deliberately broken files
    for known_bad in ("MR_truncated.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm", "badVR.dcm"):
        assert f"FAILED     {known_bad}: " in run.stderr
    converted = sum(line.startswith("converted") for line in result_lines)
    assert converted >= 110


# -----------------------------------------------------------------------------
# Exit statuses, --version, --help, the summary (#26)
# -----------------------------------------------------------------------------

@pytest.mark.parametrize("make, line", [
    (lambda folder: None, "no DICOM files found in {folder}: the folder holds no files"),
    (lambda folder: [Image.new("L", (8, 8)).save(folder / f"photo{n}.jpg") for n in range(3)],
     "no DICOM files found in {folder}: 3 files looked at, none DICOM"),
])
def test_an_input_without_dicom_files_exits_1_with_one_line_and_writes_nothing(tmp_path, make, line):
    folder = tmp_path / "in"
    folder.mkdir()
    make(folder)
    run = run_cli(folder, "-o", tmp_path / "out", "-q")
    assert run.returncode == 1
    assert run.stderr == f"error: {line.format(folder=folder)}\n"
    assert run.stdout == ""
    assert list((tmp_path / "out").iterdir()) == []  # no empty manifest.csv or index.html


def test_a_single_file_that_is_not_dicom_exits_1(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    run = run_cli(tmp_path / "notes.txt", "-o", tmp_path / "out")
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == f"error: {tmp_path / 'notes.txt'} is not a DICOM file"
    assert list((tmp_path / "out").iterdir()) == []


def test_output_naming_an_existing_file_is_a_usage_error(tmp_path):
    (tmp_path / "out.png").write_bytes(b"mine")
    run = run_cli(testdata("CT_small.dcm"), "-o", tmp_path / "out.png")
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1].endswith(
        f"error: -o {tmp_path / 'out.png'} is a file; OUTPUT must be a folder (it is created if missing)")
    assert (tmp_path / "out.png").read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_version_is_the_one_in_pyproject(tmp_path):
    import tomllib

    from _dicom_converter.base import __version__

    version = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]["version"]
    assert __version__ == version
    run = run_cli("--version")
    assert run.returncode == 0
    assert run.stdout == f"dicom_converter.py {version}\n"


def test_help_lists_every_kind_of_object_and_ends_with_four_examples():
    run = run_cli("--help")
    assert run.returncode == 0
    table = run.stdout.split("becomes (STEM: the input's name):\n\n")[1].split("\n\n")[0]
    rows = [[cell.strip() for cell in line.strip().split("  ") if cell.strip()] for line in table.splitlines()]
    assert [(kind.split(" (")[0], made.split(" (")[0]) for kind, made in rows] == [
        ("images", "STEM.png"),
        ("cines", "STEM.gif + STEM.mp4"),
        ("volumes, segmentations, RT dose", "STEM.png contact sheet + STEM.gif + STEM.mp4"),
        ("whole-slide images", "STEM.png"),
        ("DICOM video", "STEM.mp4"),
        ("encapsulated PDF, CDA, STL, OBJ, MTL", "the document itself: STEM.pdf, .xml, .stl ..."),
        ("structured reports", "STEM.html"),
        ("waveforms", "STEM.png on ECG paper / strips + STEM.csv"),
        ("audio", "STEM.wav"),
        ("no pixels", "STEM.txt only"),
    ]
    assert "Every DICOM file also gets STEM.txt" in run.stdout
    tail = run.stdout.rstrip("\n").split("examples:\n")[1].splitlines()
    assert [line.split()[0] for line in tail[1::2]] == ["dicom_converter.py"] * 4
    assert [line.strip() for line in tail[1::2]] == [
        "dicom_converter.py /media/cdrom -o ~/scans",
        "dicom_converter.py ~/scans/CD1 --redact -o ~/to_share",
        "dicom_converter.py /data/archive -o /shared/out --shard 3/16 -q",
        "dicom_converter.py IM000001.dcm -o .",
    ]
    for status in ("0 ", "1 ", "2 ", "130 "):
        assert f"\n  {status}" in run.stdout.split("exit status:")[1]


def test_summary_counts_every_kind_of_output_and_ends_with_the_index_page(tmp_path):
    inp = copy_inputs(tmp_path / "in", "CT_small.dcm", "emri_small.dcm", "waveform_ecg.dcm")
    run = run_cli(inp, "-o", tmp_path / "out", "--json")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[-2] == ("Done: 3 converted (3 PNG, 1 GIF, 1 MP4, 1 CSV, 3 JSON), "
                         "0 metadata only, 0 skipped, 0 failed.")
    assert lines[-1] == f"index      {(tmp_path / 'out' / 'index.html').resolve()}"
    assert (tmp_path / "out" / "index.html").is_file()
    quiet = run_cli(inp, "-o", tmp_path / "quiet", "--json", "--no-index", "-q")
    assert quiet.stdout.splitlines() == ["Done: 3 converted (3 PNG, 1 GIF, 1 MP4, 1 CSV, 3 JSON), "
                                         "0 metadata only, 0 skipped, 0 failed."]


def test_in_a_pipe_each_line_comes_as_its_file_finishes(tmp_path):
    """Read the log as the run writes it: the first file's line arrives while the run goes on,
    and a slow file (a cine, first in order) does not hold back the lines of the quick ones
    converted beside it.  Events in order, not durations."""
    import subprocess
    import sys

    from conftest import ROOT

    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(ROOT / "dicom_data" / "DCM00004", inp / "a_cine.dcm")  # 1st in order, the slowest sample
    for n in range(40):
        shutil.copy(ROOT / "dicom_data" / "CT_SERIES" / "IM0001", inp / f"s{n:02}.dcm")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(ROOT / "dicom_converter.py"), inp, "-o", out, "-j", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        running, cine_done = proc.poll() is None, (out / "a_cine.txt").exists()
        rest = proc.stdout.read()
    finally:
        proc.communicate(timeout=600)
    assert proc.returncode == 0
    assert first.startswith("converted  s") and running  # a quick file's line, read while the run goes on
    assert not cine_done  # ... before the cine started before it was done
    lines = (first + rest).splitlines()
    assert sorted(line.split()[1] for line in lines[:41]) == ["a_cine.dcm", *(f"s{n:02}.dcm" for n in range(40))]
