"""Multi-frame objects whose frames are slices, not moments: the kind decision, anatomical order,
"slices, not time", and the contact sheet.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli, testdata
from PIL import Image

from _dicom_converter.classify import multiframe_kind, object_kind
from _dicom_converter.geometry import frame_orientation, frame_positions, volume_order
from _dicom_converter.job import slice_labels
from _dicom_converter.kinds.dose import (
    DOSE_LEGEND_BAR,
    DOSE_SCALE_WIDTH,
    DOSE_WASH_FROM,
    DOSE_WASH_OPACITY,
    dose_colour_lut,
    dose_legend,
)
from _dicom_converter.pixels.display import rendered_frames
from _dicom_converter.reading import read_dataset
from _dicom_converter.writers import (
    SHEET_BORDER_GREY,
    SHEET_BORDER_PX,
    contact_sheet_writer,
)


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


def label_corner(tile: np.ndarray) -> tuple[int, int]:
    """The rows and columns of a contact sheet tile's top left corner that its label may take:
    a 16 px font, 3 px margin and outline: 24 rows, and at most 160 columns of text."""
    return min(24, tile.shape[0]), min(160, tile.shape[1])


def outside_label(tile: np.ndarray) -> np.ndarray:
    """A mask of `tile`'s pixels that no label touches."""
    rows, columns = label_corner(tile)
    mask = np.ones(tile.shape[:2], bool)
    mask[:rows, :columns] = False
    return mask


def test_the_contact_sheet_holds_every_slice_in_order_labelled_and_bordered(tmp_path):
    """eCT_Supplemental's two 512 x 512 slices side by side, a 2 px grey line between them,
    each labelled in its top left corner (white outlined in black) and untouched elsewhere."""
    source = testdata("eCT_Supplemental.dcm")
    run = run_cli(source, "-o", tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    sheet = np.asarray(Image.open(tmp_path / "eCT_Supplemental.png"))
    first, second = rendered(source, order=[1, 0])
    assert sheet.shape == (512, 512 + SHEET_BORDER_PX + 512)
    assert (sheet[:, 512:512 + SHEET_BORDER_PX] == SHEET_BORDER_GREY).all()
    for tile, expected in ((sheet[:, :512], first), (sheet[:, 512 + SHEET_BORDER_PX:], second)):
        keep = outside_label(tile)
        assert np.array_equal(tile[keep], expected[keep])
        rows, columns = label_corner(tile)
        corner, under = tile[:rows, :columns], expected[:rows, :columns]
        assert (corner == 255).sum() > 40 and ((corner == 0) & (under != 0)).sum() + (under == 0).sum() > 0
        assert not np.array_equal(corner, under)  # the label is drawn


def test_slices_are_labelled_by_patient_axis_or_along_the_normal():
    # eCT_Supplemental: orientation -1,0,0 / 0,1,0, normal -z: 149 and 159 along it are z -149 and -159
    ds = read_dataset(testdata("eCT_Supplemental.dcm"))
    order, _ = volume_order(ds)
    positions = [frame_positions(ds)[n] for n in order]
    assert slice_labels(positions, frame_orientation(ds)) == ["z -149 mm", "z -159 mm"]
    assert slice_labels([12.345, None], [0, 1, 0, 0, 0, -1]) == ["x -12.35 mm", ""]  # sagittal: normal -x
    tilted = [1, 0, 0, 0, 0.9848, -0.17365]  # a gantry tilted 10 degrees: no axis to name
    assert slice_labels([7.0], tilted) == ["7 mm"]
    assert slice_labels([1.0], None) == ["1 mm"]


def reversed_dose(path):
    """pydicom's rtdose.dcm (15 dose planes of 10 x 10, offsets 0..70 mm) with its Grid Frame
    Offset Vector reversed, so the planes are stored from 70 down to 0 mm."""
    import pydicom

    ds = pydicom.dcmread(testdata("rtdose.dcm"))
    ds.GridFrameOffsetVector = list(reversed([float(v) for v in ds.GridFrameOffsetVector]))
    ds.save_as(path)
    return path


def bar_like_runs(picture: np.ndarray) -> list[tuple[int, int]]:
    """The runs of adjacent columns of an RGB picture that look like a colour bar: 200 or more
    distinct colours down the column (a dose plane's column, enlarged from 10 voxels, has at
    most 10, and a label adds a few greys)."""
    colours = picture.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    distinct = np.array([len(np.unique(colours[:, x])) for x in range(picture.shape[1])])
    runs, start = [], None
    for x, bar in enumerate(np.append(distinct >= 200, False)):
        if bar and start is None:
            start = x
        elif not bar and start is not None:
            runs.append((start, x))
            start = None
    return runs


def test_dose_planes_in_grid_offset_order_coloured_in_dose_units(tmp_path):
    """rtdose's 15 planes on one colour scale: the frames (GIF, MP4, --frames) each with the bar
    beside them, the sheet with the planes alone in a 4 x 4 grid and the bar once, at its right."""
    import pydicom

    source = reversed_dose(tmp_path / "dose.dcm")
    order, how = volume_order(read_dataset(source))
    assert order == list(range(14, -1, -1)) and how == "by Grid Frame Offset Vector"
    run = run_cli(source, "-o", tmp_path / "out", "--frames")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "dose 0 to 1.254 rel. (Dose Grid Scaling 1e-06)" in run.stdout  # RELATIVE units, 1.254e6 x 1e-6
    stored = pydicom.dcmread(source).pixel_array
    lut = dose_colour_lut()
    assert tuple(lut[0]) == (0, 0, 0) and tuple(lut[255]) == (255, 255, 255)
    sheet = np.asarray(Image.open(tmp_path / "out" / "dose.png"))
    cell, pitch = 260, 260 + SHEET_BORDER_PX  # 10 x 10 voxels enlarged 26 times
    grid = 4 * cell + 3 * SHEET_BORDER_PX
    assert sheet.shape[:2] == (grid, sheet.shape[1]) and grid + SHEET_BORDER_PX + 60 < sheet.shape[1] < grid + 200
    for n, frame in enumerate(order):
        expected = lut[np.rint(stored[frame] / stored.max() * 255).astype(np.uint8)]  # one scale: the volume's
        expected = np.repeat(np.repeat(expected, 26, axis=0), 26, axis=1)
        row, column = divmod(n, 4)
        tile = sheet[row * pitch:row * pitch + cell, column * pitch:column * pitch + cell]
        keep = outside_label(tile)
        assert np.array_equal(tile[keep], expected[keep]), n
        png = np.asarray(Image.open(tmp_path / "out" / "dose_frames" / f"{n + 1:04d}.png"))
        assert png.shape == (cell, cell + DOSE_SCALE_WIDTH, 3) and np.array_equal(png[:, :cell], expected)
        assert np.array_equal(png[0, cell + 4], lut[255]) and np.array_equal(png[-1, cell + 4], lut[0])
    assert (sheet[:grid, cell:pitch] == SHEET_BORDER_GREY).all() and (sheet[cell:pitch, :grid] == SHEET_BORDER_GREY).all()
    ((left, right),) = bar_like_runs(sheet)  # one colour bar, beside the grid
    assert grid < left and right - left == DOSE_LEGEND_BAR
    index = {tuple(colour): level for level, colour in enumerate(lut.tolist())}
    levels = [index[tuple(colour)] for colour in sheet[:, left + DOSE_LEGEND_BAR // 2].tolist()
              if tuple(colour) in index and any(colour)]
    levels = levels[levels.index(255):]  # below the unit's text: the bar, the maximum at the top
    assert len(levels) > 900 and levels == sorted(levels, reverse=True) and levels[-1] <= 1


def test_the_dose_legend_says_gy_or_relative_dose_and_its_labels_do_not_touch():
    """The sheet's bar for a relative and a Gy dose, tall and short: its title and each value's
    label in rows of their own (between them a row with no text)."""
    tall, gy = dose_legend(1046, 1.254, "rel."), dose_legend(1046, 1.254, "Gy")
    assert tall.shape[1] > gy.shape[1]  # "relative dose" is wider than "Gy"
    for legend in (tall, gy, dose_legend(130, 60.0, "Gy"), dose_legend(40, 2.0, "Gy")):
        text = legend[:, DOSE_LEGEND_BAR + 8:].max(axis=(1, 2)) > 60  # rows with label ink, right of the bar
        starts = np.flatnonzero(np.diff(text.astype(int)) == 1)
        assert len(starts) >= (3 if legend.shape[0] > 100 else 1), legend.shape
    assert len(np.flatnonzero(np.diff((tall[:, DOSE_LEGEND_BAR + 8:].max(axis=(1, 2)) > 60).astype(int)) == 1)) == 6


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
    pitch = 203 + SHEET_BORDER_PX  # 10 columns of (2048 - 9 lines of 2 px) // 10 = 203 px
    assert sheet.shape == (10 * 203 + 9 * SHEET_BORDER_PX,) * 2 == (2048, 2048)
    assert sheet[100, 100] == 0 and sheet[pitch * 3 + 100, pitch * 7 + 100] == 37 and sheet[-1, -1] == 99
    assert (sheet[:, 203:pitch] == SHEET_BORDER_GREY).all() and (sheet[203:pitch, :] == SHEET_BORDER_GREY).all()


def sheet_of(frames, labels=None) -> np.ndarray:
    """The contact sheet `contact_sheet_writer` makes of `frames` (and `labels`), as an array."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sheet.png"
        with contact_sheet_writer(path, len(frames), labels=labels) as write:
            for frame in frames:
                write(frame)
        return np.asarray(Image.open(path))


def test_a_label_too_long_for_its_tile_is_cut_to_the_number_and_never_crosses_a_border():
    """Four flat 48 x 48 grey (100) RGB tiles with a label far wider than them: each gets its
    number only, inside its own tile; tiles too small for even that get none."""
    flat = [np.full((48, 48, 3), 100, np.uint8) for _ in range(4)]
    sheet = sheet_of(flat, ["z -12345.67 mm"] * 4)
    assert sheet.shape == (2 * 48 + SHEET_BORDER_PX, 2 * 48 + SHEET_BORDER_PX, 3)
    assert (sheet[48:48 + SHEET_BORDER_PX] == SHEET_BORDER_GREY).all()
    assert (sheet[:, 48:48 + SHEET_BORDER_PX] == SHEET_BORDER_GREY).all()
    for top in (0, 48 + SHEET_BORDER_PX):
        for left in (0, 48 + SHEET_BORDER_PX):
            tile = sheet[top:top + 48, left:left + 48]
            drawn = np.argwhere((tile != 100).any(axis=2))
            assert len(drawn) and drawn[:, 1].max() < 20  # a digit or two, not the position
            assert (tile >= 200).all(axis=2).any() and (tile <= 40).all(axis=2).any()  # white, outlined black
    tiny = sheet_of([np.full((6, 6), 100, np.uint8)] * 2, ["z 1 mm"] * 2)
    assert tiny.shape == (6, 6 + SHEET_BORDER_PX + 6) and (tiny[:, :6] == 100).all()


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
