"""The extra outputs: --series, --frames, --json, the index page (static checks) and --redact.

Each feature is run once through the CLI (module-scoped fixtures) on real
pydicom / repository files and on synthetic files built here with pydicom;
every builder's docstring says what it makes and why.  The browser checks
of the index page are in test_index_browser.py.
"""

from __future__ import annotations

import dataclasses
import html.parser
import json
import math
import re
import shutil
import warnings
from collections import Counter
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from conftest import ROOT, copy_inputs, index_cards, index_urls, run_cli, testdata
from PIL import Image, ImageSequence

from _dicom_converter.pixels.display import rendered_frames
from _dicom_converter.reading import read_dataset

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
SC_WORD_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word Secondary Capture
EXPLICIT_LE = "1.2.840.10008.1.2.1"


# =============================================================================
# Building synthetic files
# =============================================================================

def write_image(path: Path, stored: np.ndarray, **attributes) -> Path:
    """A greyscale DICOM file with signed 16-bit `stored` pixels and `attributes`.

    `stored` is (rows, cols) for a CT Image, (frames, rows, cols) for a
    multi-frame Secondary Capture.  Modality LUT: HU = stored - 1024.  No
    window unless `attributes` give one.  Attributes given as None are left
    out (so a test can drop e.g. ImagePositionPatient); everything else has
    plain defaults (patient SERIES^TEST, one study).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    multi = stored.ndim == 3
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
    sop_class = SC_WORD_MULTIFRAME if multi else CT_IMAGE
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    defaults = dict(
        PatientName="SERIES^TEST", PatientID="SER001", StudyInstanceUID="1.2.3.4.5.6.7.1",
        SeriesInstanceUID="1.2.3.4.5.6.7.2", StudyDate="20240101", Modality="CT", SeriesNumber=1,
        SeriesDescription="TEST", ImageType=["ORIGINAL", "PRIMARY", "AXIAL"],
    )
    for keyword, value in {**defaults, **attributes}.items():
        if value is not None:
            setattr(ds, keyword, value)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    if multi:
        ds.NumberOfFrames = stored.shape[0]
    ds.PixelData = stored.astype("<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def level_slice(level: int, size: int = 64) -> np.ndarray:
    """A slice whose content encodes `level`: HU from 100*level (left) to 100*level + 50 (right).

    Every slice has its own range, 100 HU above the last; under one window
    for a whole series the frame's mean grey rises with `level`, while a
    frame stretched to its own range would be the same ramp every time.
    """
    ramp = np.rint(np.linspace(0, 50, size)).astype(np.int16)
    return np.tile(ramp, (size, 1)) + np.int16(1024 + 100 * level)


def cross(a, b):
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


# An oblique slice plane: rows along (1,1,0)/√2, columns along (-1,1,2)/√6,
# so the slice normal (row × column) is (1,-1,1)/√3.
ROW = np.array([1.0, 1.0, 0.0]) / math.sqrt(2)
COL = np.array([-1.0, 1.0, 2.0]) / math.sqrt(6)
NORMAL = cross(ROW, COL)

MAIN = ("5", "AX/OBL 2.5mm", "5_AX_OBL_2.5mm")  # SeriesNumber, description, sanitised stem
NO_POSITION = ("6", "NO POSITION", "6_NO_POSITION")
NAMES_ONLY = ("7", "NAMES ONLY", "7_NAMES_ONLY")
TWINS = ("8", "SAME NAME", "8_SAME_NAME")


@dataclasses.dataclass
class SeriesScene:
    """What `make_series_scene` wrote, and the answers the converter should find."""

    folder: Path
    main: list[str]  # the 12 oblique slices' file names, in order along the normal
    main_instances: list[int]  # their InstanceNumbers (not in that order)
    no_position: list[str]  # series 6: no geometry, file names in InstanceNumber order
    names_only: list[str]  # series 7: no geometry, no InstanceNumber: file-name order
    twins: tuple[list[str], list[str]]  # two series, both "8 SAME NAME"
    not_in_main: list[str]  # same SeriesInstanceUID as the main series, but split off or multi-frame


def make_series_scene(folder: Path, seed: int = 20240611) -> SeriesScene:
    """One study of single-frame CT slices (64x64) in `folder`, built to test --series.

    * Series 5 "AX/OBL 2.5mm": 12 slices 2.5 mm apart along the OBLIQUE
      normal (1,-1,1)/√3, each moved by a random in-plane offset of up to
      ±60 mm, so x, y and z alone each give a wrong order and only
      ImagePositionPatient · (row × column) gives the right one.  Slice k
      (k-th along the normal) has pixel level k (`level_slice`), no window.
      File names are random hex; InstanceNumbers are 1..12 with two pairs
      swapped, so neither names nor instance numbers give the order.
    * In the same SeriesInstanceUID: a scout (coronal orientation), a 48x48
      slice and a 3-frame multi-frame file: none may join the 12-slice cine.
    * Series 6 "NO POSITION": 5 slices with no geometry, InstanceNumber 1..5
      not in file-name order; slice with InstanceNumber i has level i.
    * Series 7 "NAMES ONLY": 3 slices with neither geometry nor
      InstanceNumber: file-name order, level = rank by name.
    * Two series both numbered 8 "SAME NAME" (2 axial slices each), and a
      lone single-slice file named 8_SAME_NAME.dcm: three claims on one name.
    """
    rng = np.random.default_rng(seed)
    main_uid = "1.2.3.4.5.6.7.50"
    names = [f"{n:08x}" for n in rng.choice(16**8, size=12, replace=False)]
    instances = [1, 2, 10, 4, 6, 5, 7, 8, 9, 3, 11, 12]
    offsets = rng.uniform(-60, 60, size=(12, 2))
    origin = np.array([-20.0, 35.0, 110.0])
    positions = [origin + 2.5 * k * NORMAL + a * ROW + b * COL for k, (a, b) in enumerate(offsets)]
    oblique = [*ROW, *COL]
    for k, (name, position) in enumerate(zip(names, positions)):
        write_image(folder / name, level_slice(k), SeriesInstanceUID=main_uid, SeriesNumber=MAIN[0],
                    SeriesDescription=MAIN[1], InstanceNumber=instances[k],
                    ImagePositionPatient=[round(float(v), 4) for v in position],
                    ImageOrientationPatient=[round(float(v), 6) for v in oblique])
    # the scene is only a test if the shortcuts all fail
    truth = list(range(12))
    for axis in range(3):
        by_axis = sorted(truth, key=lambda k: positions[k][axis])
        assert by_axis != truth and by_axis != truth[::-1], f"axis {axis} alone sorts the series"
    assert sorted(truth, key=lambda k: instances[k]) != truth
    assert sorted(names) != names

    write_image(folder / "scout", level_slice(3), SeriesInstanceUID=main_uid, SeriesNumber=MAIN[0],
                SeriesDescription=MAIN[1], InstanceNumber=13, ImagePositionPatient=[-100, 0, 150],
                ImageOrientationPatient=[1, 0, 0, 0, 0, -1])
    write_image(folder / "small", level_slice(4, size=48), SeriesInstanceUID=main_uid, SeriesNumber=MAIN[0],
                SeriesDescription=MAIN[1], InstanceNumber=14,
                ImagePositionPatient=[round(float(v), 4) for v in positions[4] + 0.1 * NORMAL],
                ImageOrientationPatient=[round(float(v), 6) for v in oblique])
    write_image(folder / "cine", np.stack([level_slice(k) for k in (0, 5, 11)]), SeriesInstanceUID=main_uid,
                SeriesNumber=MAIN[0], SeriesDescription=MAIN[1], InstanceNumber=15,
                ImagePositionPatient=[round(float(v), 4) for v in positions[0]],
                ImageOrientationPatient=[round(float(v), 6) for v in oblique])

    no_position = {"np_e": 1, "np_d": 2, "np_a": 3, "np_c": 4, "np_b": 5}
    for name, instance in no_position.items():
        write_image(folder / name, level_slice(instance), SeriesInstanceUID="1.2.3.4.5.6.7.60",
                    SeriesNumber=NO_POSITION[0], SeriesDescription=NO_POSITION[1], InstanceNumber=instance)
    names_only = ["nm_1", "nm_2", "nm_3"]
    for level, name in enumerate(names_only):
        write_image(folder / name, level_slice(level), SeriesInstanceUID="1.2.3.4.5.6.7.70",
                    SeriesNumber=NAMES_ONLY[0], SeriesDescription=NAMES_ONLY[1])
    twins = (["tw_a1", "tw_a2"], ["tw_b1", "tw_b2"])
    for uid, pair in zip(("1.2.3.4.5.6.7.81", "1.2.3.4.5.6.7.82"), twins):
        for z, name in enumerate(pair):
            write_image(folder / name, level_slice(z), SeriesInstanceUID=uid, SeriesNumber=TWINS[0],
                        SeriesDescription=TWINS[1], InstanceNumber=z + 1, ImagePositionPatient=[0, 0, z],
                        ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    write_image(folder / f"{TWINS[2]}.dcm", level_slice(0), SeriesInstanceUID="1.2.3.4.5.6.7.83",
                SeriesNumber="9", SeriesDescription="LONE")
    return SeriesScene(
        folder=folder,
        main=names,
        main_instances=instances,
        no_position=sorted(no_position, key=no_position.get),
        names_only=names_only,
        twins=twins,
        not_in_main=["scout", "small", "cine"],
    )


# =============================================================================
# Reading outputs
# =============================================================================

def gif_frames(path: Path) -> tuple[list[np.ndarray], list[int]]:
    """Every frame of a GIF as Pillow composes it (8-bit grey), and each frame's delay in ms."""
    with Image.open(path) as image:
        frames, delays = [], []
        for frame in ImageSequence.Iterator(image):
            frames.append(np.asarray(frame.convert("L"), dtype=np.float64))
            delays.append(frame.info.get("duration"))
    return frames, delays


def mp4_frames(path: Path) -> tuple[list[np.ndarray], Fraction]:
    """Every decoded frame of an MP4 (luma, 8-bit) and the stream's average frame rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate)
        frames = [f.to_ndarray(format="gray").astype(np.float64) for f in container.decode(stream)]
    return frames, rate


def slices_listed(series_txt: Path) -> list[str]:
    """The file names under '# Slices in display order' in a series .txt, in order."""
    lines = series_txt.read_text(encoding="utf-8").splitlines()
    start = lines.index("# Slices in display order")
    names = []
    for line in lines[start + 1:]:
        match = re.match(r"\s+(\d+)\s+(\S+)\s+\(", line)
        if match:
            assert int(match.group(1)) == len(names) + 1
            names.append(match.group(2))
    return names


def means(frames: list[np.ndarray]) -> np.ndarray:
    return np.array([float(f.mean()) for f in frames])


def rank_by_level(frames: list[np.ndarray]) -> list[int]:
    """Which level each frame shows: frames of `level_slice` content, ranked by mean grey."""
    return list(np.argsort(np.argsort(means(frames))))


def all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# =============================================================================
# --series
# =============================================================================

@pytest.fixture(scope="module")
def series_run(tmp_path_factory):
    """The synthetic study plus the repository's CT_SERIES, converted with --series (10 fps default)."""
    root = tmp_path_factory.mktemp("series")
    scene = make_series_scene(root / "in" / "study")
    shutil.copytree(ROOT / "dicom_data" / "CT_SERIES", root / "in" / "CT_SERIES")
    out = root / "out"
    proc = run_cli(root / "in", "-o", out, "--series")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return scene, out, proc


def test_series_outputs_are_exactly_one_cine_per_series_named_number_description(series_run):
    scene, out, proc = series_run
    made = set(all_files(out))
    series_stems = {p.removesuffix(".txt") for p in made if p.endswith(".txt")
                    and (out / p).read_text(encoding="utf-8").startswith("# Series")}
    assert series_stems == {
        "CT_SERIES/3_HEAD_5mm_AXIAL", f"study/{MAIN[2]}", f"study/{NO_POSITION[2]}",
        f"study/{NAMES_ONLY[2]}", f"study/{TWINS[2]}_2", f"study/{TWINS[2]}_3"}
    assert "6 series" in proc.stdout
    # one GIF + MP4 per series; the multi-frame file is converted on its own, not as a series
    cines = {p for p in made if p.endswith((".gif", ".mp4"))}
    assert cines == {f"{stem}{suffix}" for stem in series_stems | {"study/cine"} for suffix in (".gif", ".mp4")}
    # the per-slice PNGs are still written (no --no-png)
    pngs = [p for p in all_files(out) if p.endswith(".png")]
    assert len(pngs) == 20 + 12 + 2 + 5 + 3 + 4 + 1  # CT_SERIES, main, scout+small, 6, 7, twins, lone


def test_series_is_ordered_along_the_oblique_normal_not_by_name_instance_or_axis(series_run):
    scene, out, _ = series_run
    assert slices_listed(out / "study" / f"{MAIN[2]}.txt") == scene.main
    text = (out / "study" / f"{MAIN[2]}.txt").read_text(encoding="utf-8")
    assert re.search(r"Slices\s+12\n", text)
    instances = [int(m) for m in re.findall(r"^\s+\d+\s+\S+\s+\((\d+),", text, flags=re.M)]
    assert instances == scene.main_instances  # listed in position order, so instances out of order


def test_series_frames_follow_the_slice_order_in_gif_and_mp4(series_run):
    scene, out, _ = series_run
    gif, delays = gif_frames(out / "study" / f"{MAIN[2]}.gif")
    mp4, rate = mp4_frames(out / "study" / f"{MAIN[2]}.mp4")
    assert len(gif) == len(mp4) == 12
    assert rank_by_level(gif) == list(range(12))
    assert rank_by_level(mp4) == list(range(12))
    assert delays == [100] * 12
    assert rate == 10


def test_series_uses_one_window_for_all_slices(series_run):
    """No window in the files, each slice its own 50 HU range: one min-max for the
    whole series (0..1150 HU), so frame k is a narrow band at about k/11.5 of full scale."""
    scene, out, _ = series_run
    gif, _ = gif_frames(out / "study" / f"{MAIN[2]}.gif")
    levels = means(gif)
    assert np.all(np.diff(levels) > 15)  # 100 HU of 1150 is 22 grey levels
    assert levels[0] < 15 and levels[-1] > 240
    for frame in gif:
        assert frame.max() - frame.min() < 20  # a 50 HU ramp, not stretched to 0..255
    text = (out / "study" / f"{MAIN[2]}.txt").read_text(encoding="utf-8")
    assert "min-max 0..1150" in text


def test_scout_odd_size_and_multiframe_are_split_from_the_series(series_run):
    scene, out, _ = series_run
    listed = slices_listed(out / "study" / f"{MAIN[2]}.txt")
    assert not set(listed) & set(scene.not_in_main)
    with Image.open(out / "study" / "cine.gif") as gif:
        assert gif.n_frames == 3


def test_series_without_positions_uses_instance_number_then_file_name(series_run):
    scene, out, _ = series_run
    assert slices_listed(out / "study" / f"{NO_POSITION[2]}.txt") == scene.no_position
    gif, _ = gif_frames(out / "study" / f"{NO_POSITION[2]}.gif")
    assert rank_by_level(gif) == list(range(5))
    assert slices_listed(out / "study" / f"{NAMES_ONLY[2]}.txt") == scene.names_only
    gif, _ = gif_frames(out / "study" / f"{NAMES_ONLY[2]}.gif")
    assert rank_by_level(gif) == list(range(3))


def test_series_names_do_not_collide(series_run):
    scene, out, _ = series_run
    listed = {tuple(slices_listed(out / "study" / f"{TWINS[2]}{n}.txt")) for n in ("_2", "_3")}
    assert listed == {tuple(scene.twins[0]), tuple(scene.twins[1])}
    # the lone file keeps its own outputs under the name it was given
    assert (out / "study" / f"{TWINS[2]}.txt").read_text(encoding="utf-8").startswith("# Summary")
    assert (out / "study" / f"{TWINS[2]}.png").is_file()


def test_ct_series_from_the_repository_is_in_position_order(series_run):
    _, out, _ = series_run
    listed = slices_listed(out / "CT_SERIES" / "3_HEAD_5mm_AXIAL.txt")
    assert len(listed) == 20
    assert listed.index("IM0019") == 5 and listed.index("IM0020") == 13
    expected = [f"IM{n:04d}" for n in range(1, 6)] + ["IM0019"] + [f"IM{n:04d}" for n in range(6, 13)] \
        + ["IM0020"] + [f"IM{n:04d}" for n in range(13, 19)]
    assert listed == expected
    text = (out / "CT_SERIES" / "3_HEAD_5mm_AXIAL.txt").read_text(encoding="utf-8")
    assert "window 40/400" in text
    # pixels: GIF frame k is the slice listed k-th (closest of all 20 per-slice PNGs)
    gif, _ = gif_frames(out / "CT_SERIES" / "3_HEAD_5mm_AXIAL.gif")
    mp4, rate = mp4_frames(out / "CT_SERIES" / "3_HEAD_5mm_AXIAL.mp4")
    assert len(gif) == len(mp4) == 20 and rate == 10
    pngs = {name: np.asarray(Image.open(out / "CT_SERIES" / f"{name}.png"), dtype=np.float64) / 257
            for name in listed}
    for k, frame in enumerate(gif):
        errors = {name: float(np.abs(frame - png).mean()) for name, png in pngs.items()}
        assert min(errors, key=errors.get) == listed[k], k


@pytest.fixture(scope="module")
def main_series_only(tmp_path_factory):
    """Just the 12 oblique slices of the main series, in a folder of their own."""
    root = tmp_path_factory.mktemp("main")
    scene = make_series_scene(root / "scene")
    folder = root / "in"
    folder.mkdir()
    for name in scene.main:
        shutil.copy(scene.folder / name, folder / name)
    return scene, folder


def test_series_fps_option_sets_gif_and_mp4_rate(main_series_only, tmp_path):
    scene, folder = main_series_only
    proc = run_cli(folder, "-o", tmp_path, "--series", "--fps", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    gif, delays = gif_frames(tmp_path / f"{MAIN[2]}.gif")
    mp4, rate = mp4_frames(tmp_path / f"{MAIN[2]}.mp4")
    assert len(gif) == len(mp4) == 12
    assert delays == [250] * 12 and rate == 4
    assert rank_by_level(mp4) == list(range(12))
    assert "4 fps (--fps)" in (tmp_path / f"{MAIN[2]}.txt").read_text(encoding="utf-8")


def test_series_no_png_still_writes_series_cines_and_texts(main_series_only, tmp_path):
    scene, folder = main_series_only
    proc = run_cli(folder, "-o", tmp_path, "--series", "--no-png")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    made = all_files(tmp_path)
    assert not [p for p in made if p.endswith(".png")]
    assert {f"{name}.txt" for name in scene.main} <= set(made)
    assert {f"{MAIN[2]}.gif", f"{MAIN[2]}.mp4", f"{MAIN[2]}.txt"} <= set(made)
    assert slices_listed(tmp_path / f"{MAIN[2]}.txt") == scene.main


# =============================================================================
# --frames
# =============================================================================

@pytest.fixture(scope="module")
def frames_runs(tmp_path_factory):
    """emri_small.dcm (10 frames, 12-bit MR, no window) and SC_rgb_2frame.dcm (RGB),
    converted with --frames, and again with --frames --8bit."""
    root = tmp_path_factory.mktemp("frames")
    inputs = copy_inputs(root / "in", "emri_small.dcm", "SC_rgb_2frame.dcm")
    runs = {}
    for label, extra in (("16", []), ("8", ["--8bit"])):
        out = root / f"out{label}"
        proc = run_cli(inputs, "-o", out, "--frames", *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[label] = out
    return inputs, runs


def test_frames_are_written_one_png_per_frame(frames_runs):
    inputs, runs = frames_runs
    for out in runs.values():
        assert sorted(p.name for p in (out / "emri_small_frames").iterdir()) == [f"{k:04d}.png" for k in range(1, 11)]
        assert sorted(p.name for p in (out / "SC_rgb_2frame_frames").iterdir()) == ["0001.png", "0002.png"]
        with Image.open(out / "SC_rgb_2frame_frames" / "0002.png") as image:
            assert (image.mode, image.size) == ("RGB", (100, 100))
        assert (out / "emri_small.gif").is_file() and (out / "emri_small.mp4").is_file()
    with Image.open(runs["16"] / "emri_small_frames" / "0001.png") as image:
        assert (image.mode, image.size) == ("I;16", (64, 64))
    with Image.open(runs["8"] / "emri_small_frames" / "0001.png") as image:
        assert (image.mode, image.size) == ("L", (64, 64))


def test_frame_pngs_hold_the_pixels_fed_to_gif_and_mp4(frames_runs):
    inputs, runs = frames_runs
    path = inputs / "emri_small.dcm"
    encoded, _ = rendered_frames(path, read_dataset(path), 255, None)
    encoded = [f.astype(np.int32) for f in encoded]
    assert len(encoded) == 10
    for k, expected in enumerate(encoded, 1):
        sixteen = np.asarray(Image.open(runs["16"] / "emri_small_frames" / f"{k:04d}.png")).astype(np.int32)
        eight = np.asarray(Image.open(runs["8"] / "emri_small_frames" / f"{k:04d}.png")).astype(np.int32)
        assert sixteen.max() > 255  # really 16-bit data, not 8 bits in a 16-bit file
        assert np.abs(np.rint(sixteen / 257) - expected).max() <= 1, k
        assert np.abs(eight - expected).max() <= 1, k
    # and the MP4 shows those frames (lossy H.264, so on average)
    mp4, _ = mp4_frames(runs["16"] / "emri_small.mp4")
    assert len(mp4) == 10
    for frame, expected in zip(mp4, encoded):
        assert np.abs(frame - expected).mean() < 3


def test_frames_are_not_written_for_single_frame_files_or_without_the_option(tmp_path):
    inputs = copy_inputs(tmp_path / "in", "emri_small.dcm", "CT_small.dcm")
    proc = run_cli(inputs, "-o", tmp_path / "a")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not list((tmp_path / "a").glob("*_frames"))
    proc = run_cli(inputs, "-o", tmp_path / "b", "--frames")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in (tmp_path / "b").glob("*_frames")) == ["emri_small_frames"]


# =============================================================================
# --json
# =============================================================================

def write_binary_file(path: Path) -> Path:
    """A small CT image with a private 5000-byte OB value (over the 1 KB bulk threshold)
    and a private 16-byte OB value (under it)."""
    write_image(path, level_slice(1, size=16), WindowCenter=40, WindowWidth=400)
    import pydicom

    ds = pydicom.dcmread(path)
    block = ds.private_block(0x0029, "TEST BINARY", create=True)
    block.add_new(0x01, "OB", bytes(range(256)) * 19 + bytes(136))  # 5000 bytes
    block.add_new(0x02, "OB", bytes(range(16)))
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def json_run(tmp_path_factory):
    """Real files (CT with a nested sequence and private tags, MR with a window, JPEG
    lossless, RT plan without pixels), pydicom's charset files, and `write_binary_file`,
    converted with --json.

    Of the charset files only the 12 complete images are used: the other five are
    CR / MR image objects cut down to a header (no Pixel Data), which the
    converter may refuse as damaged; that is not what these tests are about.
    """
    import pydicom
    from pydicom.data import get_charset_files

    root = tmp_path_factory.mktemp("json")
    inputs = copy_inputs(root / "in", "CT_small.dcm", "MR_small.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm",
                         "rtplan.dcm", "emri_small.dcm")
    charsets = inputs / "charset"
    charsets.mkdir()
    for path in get_charset_files():
        if path.endswith(".dcm") and "PixelData" in pydicom.dcmread(path, force=True):
            shutil.copy(path, charsets)
    assert len(list(charsets.iterdir())) == 12
    write_binary_file(inputs / "binary.dcm")
    out = root / "out"
    proc = run_cli(inputs, "-o", out, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return inputs, out


def strict_json(path: Path):
    """The JSON in `path`, read as RFC 8259 JSON: UTF-8, and no NaN / Infinity (which
    Python writes and reads by default, but JavaScript's JSON.parse and others reject)."""
    def reject(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(path.read_bytes().decode("utf-8"), parse_constant=reject)


def load_json_dataset(path: Path):
    import pydicom

    data = strict_json(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no bulk data URI handler": expected, the data is left out
        return data, pydicom.Dataset.from_json(data)


def test_json_round_trips_key_values(json_run):
    import pydicom

    inputs, out = json_run
    for name in ("CT_small", "MR_small", "JPGLosslessP14SV1_1s_1f_8b", "rtplan", "emri_small"):
        source = pydicom.dcmread(inputs / f"{name}.dcm")
        data, ds = load_json_dataset(out / f"{name}.json")
        assert "7FE00010" not in data or "Value" not in data["7FE00010"]
        for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "SOPClassUID", "Rows", "Columns",
                        "WindowCenter", "WindowWidth", "RescaleIntercept", "NumberOfFrames", "StudyDate"):
            if keyword in source:
                assert ds[keyword].value == source[keyword].value, (name, keyword)
    _, ds = load_json_dataset(out / "CT_small.json")
    assert [item.PatientID for item in ds.OtherPatientIDsSequence] == ["ABCD1234", "1234ABCD"]
    assert str(ds.PatientName) == "CompressedSamples^CT1"
    _, ds = load_json_dataset(out / "MR_small.json")
    assert float(ds.WindowCenter) == 600
    _, ds = load_json_dataset(out / "rtplan.json")
    assert ds.BeamSequence[0].ControlPointSequence[0].GantryAngle == 0
    assert ds.FractionGroupSequence[0].ReferencedBeamSequence[0].ReferencedBeamNumber == 1


def test_json_leaves_out_bulk_data_with_its_size(json_run):
    inputs, out = json_run
    sizes = {"CT_small": 128 * 128 * 2, "MR_small": 64 * 64 * 2, "emri_small": 10 * 64 * 64 * 2}
    for name, size in sizes.items():
        pixel = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))["7FE00010"]
        assert "InlineBinary" not in pixel and "Value" not in pixel
        assert pixel["vr"] in ("OW", "OB")
        assert str(size) in pixel["BulkDataURI"], (name, pixel)
    # encapsulated (JPEG lossless) pixel data: the size of the encapsulated value
    import pydicom

    source = pydicom.dcmread(inputs / "JPGLosslessP14SV1_1s_1f_8b.dcm")
    pixel = json.loads((out / "JPGLosslessP14SV1_1s_1f_8b.json").read_text(encoding="utf-8"))["7FE00010"]
    assert "InlineBinary" not in pixel and str(len(source.PixelData)) in pixel["BulkDataURI"]
    data = json.loads((out / "binary.json").read_text(encoding="utf-8"))
    assert "InlineBinary" not in data["00291001"] and "5000" in data["00291001"]["BulkDataURI"]
    assert data["00291002"]["InlineBinary"] == "AAECAwQFBgcICQoLDA0ODw=="  # small values stay inline
    assert (out / "binary.json").stat().st_size < 4000


def test_json_is_utf8_with_non_ascii_names(json_run):
    import pydicom

    inputs, out = json_run
    checked = 0
    for source_path in sorted((inputs / "charset").glob("*.dcm")):
        source = pydicom.dcmread(source_path, force=True)
        raw = (out / "charset" / f"{source_path.stem}.json").read_bytes()
        data, ds = load_json_dataset(out / "charset" / f"{source_path.stem}.json")
        if "PatientName" in source:
            assert str(ds.PatientName) == str(source.PatientName), source_path.name
            if any(ord(c) > 127 for c in str(source.PatientName)):
                # written as UTF-8 text, not \\u escapes
                alphabetic = str(source.PatientName).split("=")[0]
                assert alphabetic.encode("utf-8") in raw, source_path.name
                checked += 1
    assert checked >= 10
    data, _ = load_json_dataset(out / "charset" / "chrH31.json")
    assert data["00100010"]["Value"] == [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎",
                                          "Phonetic": "やまだ^たろう"}]


def test_json_stays_json_with_non_finite_floats(tmp_path):
    """A CT slice whose DiffusionBValue (FD) is NaN and DiffusionGradientOrientation (FD) holds +inf:
    both are legal IEEE values in a DICOM file."""
    import pydicom

    path = write_image(tmp_path / "in" / "nan.dcm", level_slice(1, size=16))
    ds = pydicom.dcmread(path)
    ds.DiffusionBValue = float("nan")
    ds.DiffusionGradientOrientation = [float("inf"), 0.0, 1.0]
    ds.save_as(path, enforce_file_format=True)
    proc = run_cli(tmp_path / "in", "-o", tmp_path / "out", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = strict_json(tmp_path / "out" / "nan.json")
    assert data["00280010"]["Value"] == [16]


# =============================================================================
# The index page (static checks; the browser checks are in test_index_browser.py)
# =============================================================================

INJECT_NAME = "<script>alert(1)</script>"
INJECT_DESCRIPTION = '"><img id=injected src=x onerror=alert(2)>'
INJECT_STUDY = "</h3><b id=injected-study>&amp;</b>"
INJECT_SERIES = "4__img_id_injected_src_x_onerror_alert_2"  # "4_" + the description, [^\w.-]+ -> "_"


def make_index_inputs(folder: Path) -> Path:
    """Inputs for the index page, in `folder`:

    * CT_small.dcm (single frame: PNG), SC_rgb_2frame.dcm (colour cine: GIF +
      MP4), emri_small.dcm (grey cine), rtplan.dcm (no pixels: .txt only);
    * MR_small.dcm copied as ``odd #1 & <b>.dcm``: its outputs are named
      ``odd #1 & _b_`` (``<>`` are no part of a Windows name), which still
      needs URL and HTML escaping in links;
    * two CT slices of one series whose PatientName is ``<script>…``,
      SeriesDescription ``"><img id=injected …>`` and StudyDescription
      ``</h3><b id=injected-study>…`` (markup that must stay text), which
      --series joins into a cine.
    """
    copy_inputs(folder, "CT_small.dcm", "SC_rgb_2frame.dcm", "emri_small.dcm", "rtplan.dcm")
    shutil.copy(testdata("MR_small.dcm"), folder / "odd #1 & <b>.dcm")
    for z in range(2):
        write_image(folder / "inject" / f"slice{z}.dcm", level_slice(z), PatientName=INJECT_NAME,
                    PatientID="X<1>", SeriesDescription=INJECT_DESCRIPTION, StudyDescription=INJECT_STUDY,
                    SeriesNumber=4, SeriesInstanceUID="1.2.3.4.5.6.7.90", StudyInstanceUID="1.2.3.4.5.6.7.91",
                    InstanceNumber=z + 1, ImagePositionPatient=[0, 0, z], ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    return folder


class PageParser(html.parser.HTMLParser):
    """Tags, attributes and text of a page, with the nearest h2/h3/p heading before each figure."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.headings: dict[str, str] = {}
        self.figures: list[dict] = []  # {"h2", "h3", "p", "refs"}
        self._open: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag in ("h2", "h3", "p"):
            self.headings[tag] = ""
            if tag == "h2":
                self.headings.pop("h3", None), self.headings.pop("p", None)
            if tag == "h3":
                self.headings.pop("p", None)
        if tag == "figure":
            self.figures.append({**self.headings, "refs": []})
        for key in ("src", "href"):
            if key in attributes and self.figures:
                self.figures[-1]["refs"].append(attributes[key])
        self._open.append(tag)

    def handle_endtag(self, tag):
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data):
        self.text.append(data)
        for tag in ("h2", "h3", "p"):
            if self._open and self._open[-1] == tag:
                self.headings[tag] += data


def parse_page(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


@pytest.fixture(scope="module")
def index_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("index")
    inputs = make_index_inputs(root / "in")
    out = root / "out"
    proc = run_cli(inputs, "-o", out, "--series", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return inputs, out


def test_index_is_self_contained(index_run):
    """Its one script is inline (and the only one its Content-Security-Policy lets run), its
    data a JSON block; nothing else runs, and nothing points outside the output folder."""
    _, out = index_run
    page = (out / "index.html").read_text(encoding="utf-8")
    parsed = parse_page(out / "index.html")
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    scripts = [a for tag, a in parsed.tags if tag == "script"]
    assert scripts == [{"type": "application/json", "id": "index-data"}, {}]  # no src: nothing fetched
    assert "connect-src 'none'" in page and "script-src 'sha256-" in page
    tags = {tag for tag, _ in parsed.tags}
    assert not tags & {"iframe", "object", "embed", "base", "form"}
    markup = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert not re.search(r"@import|url\(|@font-face", markup)
    for tag, attributes in parsed.tags:
        if tag == "link":  # only an inline icon (it spares the server a /favicon.ico request)
            assert attributes.get("rel") == "icon" and attributes.get("href", "").startswith("data:"), attributes
            continue
        for key, value in attributes.items():
            assert not key.startswith("on"), (tag, attributes)
            if key in ("src", "href", "poster", "srcset", "action"):
                parts = urlsplit(value)
                assert not parts.scheme and not parts.netloc and not value.startswith("/"), value
    assert "http:" not in markup and "https:" not in markup and "//" not in markup


def test_index_links_every_output(index_run):
    """Every output is reachable from a card's viewer, every URL there exists, and the page
    itself loads nothing but one small thumbnail per series."""
    _, out = index_run
    cards = index_cards(out / "index.html")
    linked = index_urls(cards)
    for url in linked:
        assert (out / url).is_file(), url
    made = {p for p in all_files(out) if p not in ("index.html", "manifest.csv") and "_frames/" not in p
            and not p.startswith(".thumbs/")}
    assert made == {url for url in linked if not url.startswith(".thumbs/")}
    assert {"odd #1 & _b_.png", "odd #1 & _b_.txt", "rtplan.txt", "rtplan.json", f"inject/{INJECT_SERIES}.mp4"} <= made
    parsed = parse_page(out / "index.html")
    assert not [a for tag, a in parsed.tags if tag in ("video", "audio")]
    pictures = [a["src"] for tag, a in parsed.tags if tag == "img"]
    assert pictures and all(unquote(src).startswith(".thumbs/") and unquote(src).endswith(".jpg") for src in pictures)
    assert len(pictures) <= len(cards)
    videos = [item["video"] for card in cards for item in card["items"] if item.get("video")]
    assert len(videos) == len([p for p in made if p.endswith(".mp4")])


def test_index_escapes_dicom_values(index_run):
    _, out = index_run
    page = (out / "index.html").read_text(encoding="utf-8")
    parsed = parse_page(out / "index.html")
    assert INJECT_NAME not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img id=injected" not in page and "injected-study>" not in page
    assert not [a for tag, a in parsed.tags if a.get("id", "").startswith("injected") or a.get("src") == "x"]
    text = "".join(parsed.text)
    for value in (INJECT_NAME, INJECT_DESCRIPTION, INJECT_STUDY, "X<1>"):
        assert value in text  # shown literally
    # the series' output name is sanitised from the description
    assert sorted(p.name for p in (out / "inject").glob("4_*")) == [f"{INJECT_SERIES}{s}" for s in (".gif", ".mp4", ".txt")]


def test_index_groups_by_patient_study_series(index_run):
    _, out = index_run
    cards = index_cards(out / "index.html")
    by_item = {item["title"]: card for card in cards for item in card["items"]}
    ct = by_item["CT_small"]
    # PN components family first, then the ID, sex and age; study date (ISO), time, description
    assert ct["h2"] == "CompressedSamples, CT1 · ID 1CT1 · other · 0 years"
    assert ct["h3"] == "2004-01-19 07:27 · e+1 · CT · 1 series"
    assert ct["title"] == "Series 1"
    assert by_item["odd #1 & _b_"]["h2"] == "CompressedSamples, MR1 · ID 4MR1 · female"
    assert by_item["SC_rgb_2frame"]["h2"] == "Lestrade, G · ID ID1 · female · 24 years"
    assert by_item["emri_small"]["h2"] == "Unknown patient · born 2000-01-01"
    assert by_item["emri_small"]["title"] == "Series 301"
    injected = [card for card in cards if card["h2"] == f"{INJECT_NAME} · ID X<1>"]
    assert len(injected) == 1  # the two slices and their series cine: one card
    assert [item["title"] for item in injected[0]["items"]] == [f"inject/{INJECT_SERIES}", "inject/slice0",
                                                                "inject/slice1"]  # the series cine first
    assert injected[0]["h3"].startswith("2024-01-01") and INJECT_STUDY in injected[0]["h3"]
    assert injected[0]["title"] == f"Series 4 · {INJECT_DESCRIPTION}"
    # CT1, MR1, Lestrade, (no name), injected, and rtplan's (metadata only) patient
    assert len({card["h2"] for card in cards}) == 6
    assert by_item["rtplan"]["h2"] == "Last, pre First mid · ID id00001 · other"  # Family^Given^Middle^Prefix
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count("<h2>CompressedSamples, CT1") == 1


def test_index_shows_summary_facts(index_run):
    _, out = index_run
    items = {item["title"]: dict(item["facts"]) for card in index_cards(out / "index.html") for item in card["items"]}
    assert items["CT_small"]["Size"] == "128×128" and items["SC_rgb_2frame"]["Size"] == "100×100"
    assert items["emri_small"]["Frames"] == "10"


def test_no_index_option(tmp_path):
    inputs = copy_inputs(tmp_path / "in", "CT_small.dcm")
    proc = run_cli(inputs, "-o", tmp_path / "out", "--no-index")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all_files(tmp_path / "out") == ["CT_small.png", "CT_small.txt", "manifest.csv"]  # no index, no thumbnails


# =============================================================================
# --redact
# =============================================================================

PHI = {  # the synthetic patient's identifying values
    "PatientName": "DOE^JOHN", "PatientID": "PID12345", "PatientBirthDate": "19610203",
    "AccessionNumber": "ACC98765", "InstitutionName": "ST ELSEWHERE CLINIC",
    "InstitutionAddress": "1 Lantern Road Springfield", "ReferringPhysicianName": "HOUSE^GREGORY",
    "PerformingPhysicianName": "CUDDY^LISA", "OperatorsName": "WILSON^JAMES", "StationName": "CTSTATION7",
    "OtherPatientIDs": "OTHERID77", "PatientAddress": "742 Evergreen Terrace", "StudyID": "STUDY4242",
    "StudyDate": "20230517", "SeriesDate": "20230518", "AcquisitionDateTime": "20230517101112",
    "StudyTime": "101112", "DeviceSerialNumber": "SN-555-777", "PatientTelephoneNumbers": "555-0199",
}
PHI_STUDY_UID = "1.2.3.999.1"


def make_patient_folder(root: Path) -> list[Path]:
    """Three CT slices of patient DOE^JOHN (one study, one series; full PHI from `PHI`, a
    private tag with SECRETPRIVATE, a nested request sequence with an ID) in ``DOE^JOHN/``
    named ``DOE_JOHN_00N.dcm``, plus a fourth of the same study, another series, named
    after the patient ID: ``PID12345_scan.dcm``."""
    import pydicom
    from pydicom.dataset import Dataset

    folder = root / "DOE^JOHN"
    paths = []
    for n in range(3):
        paths.append(write_image(folder / f"DOE_JOHN_00{n + 1}.dcm", level_slice(n, size=32), **PHI,
                                 StudyInstanceUID=PHI_STUDY_UID, SeriesInstanceUID="1.2.3.999.2",
                                 SeriesDescription="JOHN DOE CHEST", InstanceNumber=n + 1,
                                 ImagePositionPatient=[0, 0, n], ImageOrientationPatient=[1, 0, 0, 0, 1, 0]))
    paths.append(write_image(folder / "PID12345_scan.dcm", level_slice(5, size=32), **PHI,
                             StudyInstanceUID=PHI_STUDY_UID, SeriesInstanceUID="1.2.3.999.3", SeriesNumber=2))
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.private_block(0x0011, "ACME PRIVATE", create=True).add_new(0x01, "LO", "SECRETPRIVATE")
        item = Dataset()
        item.RequestedProcedureID = "RPID31337"
        item.ScheduledProcedureStepID = "SPS4711"
        ds.RequestAttributesSequence = [item]
        ds.save_as(path, enforce_file_format=True)
    return paths


# Identifying values of the real files, all present in them (checked in the test).
REAL_PHI = {
    "CT_small.dcm": ["CompressedSamples", "1CT1", "ABCD1234", "1234ABCD", "JFK IMAGING CENTER", "CT01_OC0",
                     "GEMS_", "20040119", "19970430", "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"],
    "rtplan.dcm": ["Last^First^mid^pre", "id00001", "COMPUTER002", "Radiation Therap", "20030716", "study1"],
    "JPGLosslessP14SV1_1s_1f_8b.dcm": ["Citizen^Jan", "KINETDX", "20190124"],
    "SC_rgb_2frame.dcm": ["Lestrade"],
}


@pytest.fixture(scope="module")
def redact_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("redact")
    inputs = copy_inputs(root / "in", *REAL_PHI)
    patient = make_patient_folder(inputs)
    out = root / "out"
    proc = run_cli(inputs, "-o", out, "--redact", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return inputs, patient, out


def phi_strings() -> list[str]:
    parts = []
    for value in PHI.values():
        # short numbers ("742" of a street address) occur by chance in the random replacement UIDs
        parts += [value] + [p for p in re.split(r"[\^ ]", value) if len(p) >= 3 and not (p.isdigit() and len(p) < 6)]
    return parts + ["DOE", "JOHN", "SECRETPRIVATE", "RPID31337", "SPS4711", PHI_STUDY_UID]


def test_redact_inputs_really_hold_the_values_searched_for(redact_run):
    inputs, patient, _ = redact_run
    for name, values in REAL_PHI.items():
        raw = (inputs / name).read_bytes()
        assert all(v.encode() in raw for v in values), name
    raw = patient[0].read_bytes()
    assert all(v.encode() in raw for v in phi_strings())


def test_redact_output_names_hold_no_names_or_ids(redact_run):
    _, _, out = redact_run
    made = all_files(out)
    for path in made:
        for token in ("doe", "john", "pid12345"):
            assert token not in path.casefold(), path
    assert len([p for p in made if p.endswith(".png")]) == 4 + 2  # 4 slices + CT_small + JPEG lossless
    assert len([p for p in made if p.endswith(".json")]) == 4 + 4


def test_redact_outputs_hold_no_identifying_values(redact_run):
    _, _, out = redact_run
    texts = [p for p in out.rglob("*") if p.suffix in (".txt", ".json", ".html", ".csv")]
    assert len(texts) == 2 * 8 + 2  # .txt and .json of 8 files, index.html, manifest.csv
    searched = phi_strings() + [v for values in REAL_PHI.values() for v in values]
    for path in texts:
        raw = path.read_bytes()
        for value in searched:  # as the inputs spell them (checked above)
            assert value.encode() not in raw, (path.name, value)
        assert b"DOE_JOHN" not in raw and b"DOE%5EJOHN" not in raw, path.name


def test_redact_removes_private_tags(redact_run):
    _, _, out = redact_run
    for path in out.rglob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert not [tag for tag in data if int(tag[:4], 16) % 2], path.name
    for path in out.rglob("*.txt"):
        odd = re.findall(r"^\s*\(([0-9A-F]{4}),[0-9A-F]{4}\)", path.read_text(encoding="utf-8"), flags=re.M)
        assert not [g for g in odd if int(g, 16) % 2], path.name


def test_redact_replaces_uids_consistently_and_keeps_class_uids(redact_run):
    import pydicom

    inputs, patient, out = redact_run
    jsons = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.rglob("*.json"))]
    ours = [d for d in jsons if d.get("00080016", {}).get("Value") == [CT_IMAGE]]
    ours = [d for d in ours if d["00280010"]["Value"] == [32]]  # the 32x32 synthetic slices
    assert len(ours) == 4
    study_uids = {d["0020000D"]["Value"][0] for d in ours}
    assert len(study_uids) == 1
    (study_uid,) = study_uids
    assert study_uid != PHI_STUDY_UID and re.fullmatch(r"2\.25\.[1-9]\d*", study_uid) and len(study_uid) <= 64
    series = Counter(d["0020000E"]["Value"][0] for d in ours)
    assert sorted(series.values()) == [1, 3]  # 3 slices of one series, 1 of another
    assert all(s.startswith("2.25.") for s in series)
    sops = {d["00080018"]["Value"][0] for d in ours}
    assert len(sops) == 4 and all(s.startswith("2.25.") for s in sops)
    originals = {str(pydicom.dcmread(p).SOPInstanceUID) for p in patient}
    assert not sops & originals
    # CT_small: another study, another stand-in; class UIDs kept
    ct = pydicom.dcmread(inputs / "CT_small.dcm")
    ct_json = json.loads((out / "CT_small.json").read_text(encoding="utf-8"))
    assert ct_json["0020000D"]["Value"][0].startswith("2.25.")
    assert ct_json["0020000D"]["Value"][0] not in (study_uid, str(ct.StudyInstanceUID))
    assert ct_json["00080016"]["Value"] == [str(ct.SOPClassUID)]
    # the .txt: same stand-ins as the .json, transfer syntax and SOP class kept, media UID = SOP UID
    text = (out / "CT_small.txt").read_text(encoding="utf-8")
    sop = ct_json["00080018"]["Value"][0]
    assert re.search(rf"\(0002,0003\) UI MediaStorageSOPInstanceUID\s+{re.escape(sop)}$", text, flags=re.M)
    assert re.search(rf"\(0008,0018\) UI SOPInstanceUID\s+{re.escape(sop)}$", text, flags=re.M)
    assert re.search(r"\(0002,0010\) UI TransferSyntaxUID\s+1\.2\.840\.10008\.1\.2\.1$", text, flags=re.M)
    assert re.search(r"\(0008,0016\) UI SOPClassUID\s+1\.2\.840\.10008\.5\.1\.4\.1\.1\.2$", text, flags=re.M)


def test_redact_blanks_dates_and_names_in_json(redact_run):
    _, _, out = redact_run
    for path in out.rglob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        for tag, element in data.items():
            if element["vr"] in ("PN", "DA", "DT", "TM"):
                assert "Value" not in element, (path.name, tag, element)
        for tag in ("00100020", "00080080", "00080050", "00081010", "00200010"):  # ID, institution…
            assert "Value" not in data.get(tag, {}), (path.name, tag)


@pytest.fixture(scope="module")
def redact_series_run(tmp_path_factory):
    """The DOE^JOHN folder converted with --redact --series."""
    root = tmp_path_factory.mktemp("redact_series")
    make_patient_folder(root / "in")
    out = root / "out"
    proc = run_cli(root / "in", "-o", out, "--redact", "--series")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 series" in proc.stdout
    return out


def test_redact_series_output_names_hold_no_names(redact_series_run):
    out = redact_series_run
    for path in all_files(out):
        assert "doe" not in path.casefold() and "john" not in path.casefold(), path
    assert "doe" not in (out / "index.html").read_text(encoding="utf-8").casefold()


def test_redact_series_text_holds_no_names(redact_series_run):
    out = redact_series_run
    (series_txt,) = [p for p in out.rglob("*.txt") if p.read_text(encoding="utf-8").startswith("# Series")]
    text = series_txt.read_text(encoding="utf-8")
    assert len(slices_listed(series_txt)) == 3
    for value in ("DOE", "JOHN", "PID12345"):
        assert value.casefold() not in text.casefold(), value
