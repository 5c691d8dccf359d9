"""Multi-frame objects whose frames are slices, not moments: the kind decision, anatomical order,
"slices, not time", and the contact sheet.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli, testdata
from PIL import Image

from _dicom_converter.classify import multiframe_kind, object_kind
from _dicom_converter.geometry import frame_positions, volume_order
from _dicom_converter.kinds.dose import DOSE_SCALE_WIDTH, DOSE_WASH_FROM, DOSE_WASH_OPACITY, dose_colour_lut
from _dicom_converter.pixels.display import rendered_frames
from _dicom_converter.reading import read_dataset
from _dicom_converter.writers import contact_sheet_writer


def rendered(path, order=None, out_max=255) -> list[np.ndarray]:
    frames, _ = rendered_frames(path, read_dataset(path), out_max, None, True, order)
    return list(frames)


@pytest.mark.parametrize("name, kind", [
    ("eCT_Supplemental.dcm", "volume"),   # Enhanced CT, Plane Position per frame
    ("rtdose.dcm", "dose"),               # Frame Increment Pointer -> Grid Frame Offset Vector, RT Dose class
    ("examples_ybr_color.dcm", "cine"),   # US multi-frame, Frame Increment Pointer -> Frame Time
    ("emri_small.dcm", "cine"),           # Enhanced MR with no positions: no signal, as before
    ("liver.dcm", "segmentation"),        # the Segmentation class, one frame or many
    ("liver_1frame.dcm", "segmentation"),
])
def test_the_kind_of_each_multiframe_file(name, kind):
    ds = read_dataset(testdata(name))
    assert object_kind(ds) == kind


def test_an_enhanced_ct_scrolls_in_anatomical_order(tmp_path):
    """eCT_Supplemental stores its slices at 159 then 149 along the normal (orientation -1,0,0 /
    0,1,0: normal -z; z -159 then -149): shown 149 first, as its Dimension Index Values say."""
    import pydicom

    source = testdata("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    assert [f.FrameContentSequence[0].DimensionIndexValues for f in ds.PerFrameFunctionalGroupsSequence] == [[1, 2], [1, 1]]
    assert volume_order(read_dataset(source)) == ([1, 0], "by position along the slice normal")
    run = run_cli(source, "-o", tmp_path, "--frames")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "10 fps (slices, not time)" in run.stdout
    stored = rendered(source, out_max=65535)
    assert not np.array_equal(stored[0], stored[1])
    shown = [np.asarray(Image.open(tmp_path / "eCT_Supplemental_frames" / f"{n:04d}.png")) for n in (1, 2)]
    assert np.array_equal(shown[0], stored[1]) and np.array_equal(shown[1], stored[0])
    text = (tmp_path / "eCT_Supplemental.txt").read_text(encoding="utf-8")
    assert "Slices                 2, by position along the slice normal" in text
    assert "FrameRate              10 fps (slices, not time)" in text


def test_the_contact_sheet_holds_every_slice_in_order(tmp_path):
    source = testdata("eCT_Supplemental.dcm")
    run = run_cli(source, "-o", tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    sheet = np.asarray(Image.open(tmp_path / "eCT_Supplemental.png"))
    first, second = rendered(source, order=[1, 0])
    assert sheet.shape == (512, 1024)
    assert np.array_equal(sheet[:, :512], first) and np.array_equal(sheet[:, 512:], second)


def reversed_dose(path):
    """pydicom's rtdose.dcm (15 dose planes of 10 x 10, offsets 0..70 mm) with its Grid Frame
    Offset Vector reversed, so the planes are stored from 70 down to 0 mm."""
    import pydicom

    ds = pydicom.dcmread(testdata("rtdose.dcm"))
    ds.GridFrameOffsetVector = list(reversed([float(v) for v in ds.GridFrameOffsetVector]))
    ds.save_as(path)
    return path


def test_dose_planes_in_grid_offset_order_coloured_in_dose_units(tmp_path):
    import pydicom

    source = reversed_dose(tmp_path / "dose.dcm")
    order, how = volume_order(read_dataset(source))
    assert order == list(range(14, -1, -1)) and how == "by Grid Frame Offset Vector"
    run = run_cli(source, "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "dose 0 to 1.254 rel. (Dose Grid Scaling 1e-06)" in run.stdout  # RELATIVE units, 1.254e6 x 1e-6
    stored = pydicom.dcmread(source).pixel_array
    lut = dose_colour_lut()
    assert tuple(lut[0]) == (0, 0, 0) and tuple(lut[255]) == (255, 255, 255)
    sheet = np.asarray(Image.open(tmp_path / "out" / "dose.png"))
    cell_height, cell_width = 260, 260 + DOSE_SCALE_WIDTH  # 10 x 10 voxels enlarged 26 times, and the scale
    assert sheet.shape == (4 * cell_height, 4 * cell_width, 3)
    for n, frame in enumerate(order):
        expected = lut[np.rint(stored[frame] / stored.max() * 255).astype(np.uint8)]
        expected = np.repeat(np.repeat(expected, 26, axis=0), 26, axis=1)
        row, column = divmod(n, 4)
        cell = sheet[row * cell_height:(row + 1) * cell_height, column * cell_width:(column + 1) * cell_width]
        assert np.array_equal(cell[:, :260], expected), n
        assert np.array_equal(cell[0, 264], lut[255]) and np.array_equal(cell[-1, 264], lut[0])  # the colour bar


def test_a_big_volume_gives_a_sheet_at_most_2048_wide():
    frames = [np.full((512, 512), n, dtype=np.uint8) for n in range(100)]
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sheet.png"
        with contact_sheet_writer(path, len(frames)) as write:
            for frame in frames:
                write(frame)
        sheet = np.asarray(Image.open(path))
    assert sheet.shape == (10 * 204, 10 * 204)  # 10 columns of 2048 // 10 = 204 px
    assert sheet[0, 0] == 0 and sheet[204 * 3 + 5, 204 * 7 + 5] == 37 and sheet[-1, -1] == 99


def test_positions_that_lie_fall_back_in_order_and_say_so():
    """eCT_Supplemental edited: a frame's position that is no number, then a per-frame
    sequence one item short of the frames."""
    import copy

    import pydicom

    ds = pydicom.dcmread(testdata("eCT_Supplemental.dcm"))
    broken = copy.deepcopy(ds)
    broken.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].add_new(0x00200032, "LO", ["x", "y", "z"])
    assert frame_positions(broken)[0] is None
    assert multiframe_kind(broken) == "cine"  # one position left: nothing says "slices"
    assert volume_order(broken) == ([1, 0], "by Dimension Index Values")
    short = copy.deepcopy(ds)
    del short.PerFrameFunctionalGroupsSequence[1]
    assert volume_order(short) == ([0, 1], "as stored (the file gives no slice positions)")


def test_two_time_points_scroll_one_after_the_other_and_say_so():
    """eCT_Supplemental edited: its two slices given Temporal Position Index 2 and 1."""
    import pydicom

    ds = pydicom.dcmread(testdata("eCT_Supplemental.dcm"))
    for item, time in zip(ds.PerFrameFunctionalGroupsSequence, (2, 1)):
        item.FrameContentSequence[0].TemporalPositionIndex = time
    order, how = volume_order(ds)
    assert order == [1, 0]
    assert how == ("by position along the slice normal; 2 stacks or time points, one after another: "
                   "stack 1 time 1 slices 1-1, stack 1 time 2 slices 2-2")


def ct_under_dose(folder, planes=(0, 7, 14)):
    """CT slices of 20 x 20 pixels at 5 mm in rtdose.dcm's frame of reference, at the z of the
    dose planes `planes`, offset by -2.5 mm in x and y so that each 10 mm dose voxel covers
    exactly 2 x 2 of their pixels (no pixel centre on a voxel edge); a flat 40 HU with a soft-
    tissue window (displayed 128: the window centre)."""
    import pydicom
    from test_extras import write_image

    dose = pydicom.dcmread(testdata("rtdose.dcm"))
    x0, y0, z0 = (float(v) for v in dose.ImagePositionPatient)
    paths = []
    for n, plane in enumerate(planes):
        z = z0 + float(dose.GridFrameOffsetVector[plane])
        paths.append(write_image(folder / f"ct{plane:02d}.dcm", np.full((20, 20), 1024 + 40, np.int16),
                                 FrameOfReferenceUID=dose.FrameOfReferenceUID, PixelSpacing=[5, 5],
                                 ImagePositionPatient=[x0 - 2.5, y0 - 2.5, z], ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                                 InstanceNumber=n + 1, WindowCenter=40, WindowWidth=400, SeriesInstanceUID="1.2.3.44"))
    return paths


def test_a_dose_is_drawn_over_its_ct_in_the_same_run(tmp_path):
    import pydicom

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "dose.dcm").write_bytes(testdata("rtdose.dcm").read_bytes())
    ct_under_dose(tmp_path / "in")
    run = run_cli(tmp_path / "in", "-o", tmp_path / "out", "--frames", "--8bit")
    assert run.returncode == 0, run.stdout + run.stderr
    line = next(line for line in run.stdout.splitlines() if line.startswith("overlaid   dose.dcm"))
    assert "over 3 images of its frame of reference" in line, run.stdout
    dose = pydicom.dcmread(testdata("rtdose.dcm")).pixel_array.astype(float)
    lut = dose_colour_lut().astype(float)
    ct = np.asarray(Image.open(tmp_path / "out" / "ct00.png")).astype(float)
    assert ct.shape == (20, 20) and (ct == 128).all()
    for shown, plane in enumerate((0, 7, 14), 1):
        fraction = np.repeat(np.repeat(dose[plane] / dose.max(), 2, axis=0), 2, axis=1)
        opacity = np.where(fraction >= DOSE_WASH_FROM, DOSE_WASH_OPACITY, 0)[..., None]
        expected = np.rint(ct[..., None] * (1 - opacity) + lut[np.rint(fraction * 255).astype(int)] * opacity)
        png = np.asarray(Image.open(tmp_path / "out" / "dose_frames" / f"{shown:04d}.png"))
        assert png.shape == (20, 20 + DOSE_SCALE_WIDTH, 3)
        assert np.array_equal(png[:, :20], expected.astype(np.uint8)), plane
    text = (tmp_path / "out" / "dose.txt").read_text(encoding="utf-8")
    assert "Slices                 3, the images' positions in z" in text
