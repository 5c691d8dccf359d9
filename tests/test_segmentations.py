"""Segmentations: segments in their recommended colours (CIELab -> sRGB), slice by slice, on black."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import index_cards, run_cli, testdata
from PIL import Image

from _dicom_converter.kinds.segmentations import cielab_to_srgb, segmentation_slices
from _dicom_converter.reading import read_dataset


@pytest.mark.parametrize("lab, rgb", [
    ((65535, 32896, 32896), (255, 255, 255)),  # L* 100, a* = b* = 0: the white point
    ((0, 32896, 32896), (0, 0, 0)),
    ((32768, 32896, 32896), (119, 119, 119)),  # L* 50 neutral: Y 0.184, sRGB 0.466
])
def test_cielab_neutrals_map_to_greys(lab, rgb):
    assert all(abs(a - b) <= 1 for a, b in zip(cielab_to_srgb(lab), rgb))


def liver_masks():
    import pydicom

    ds = pydicom.dcmread(testdata("liver.dcm"))
    return ds, ds.pixel_array


def test_a_binary_segmentation_is_its_colour_on_black_in_slice_order(tmp_path):
    ds, masks = liver_masks()
    colour = np.array(cielab_to_srgb(ds.SegmentSequence[0].RecommendedDisplayCIELabValue), dtype=np.uint8)
    assert tuple(colour) == (217, 130, 101)  # CIELab 41661, 41167, 40792
    run = run_cli(testdata("liver.dcm"), "-o", tmp_path, "--frames")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "binary segmentation on black: 1 Liver (sRGB 217,130,101)" in run.stdout
    assert "slices, not time" in run.stdout
    order = [n for n, _ in sum(segmentation_slices(read_dataset(testdata("liver.dcm"))), [])]
    assert sorted(order) == [0, 1, 2] and masks.max() == 1
    for shown, frame in enumerate(order, 1):
        png = np.asarray(Image.open(tmp_path / "liver_frames" / f"{shown:04d}.png"))
        assert np.array_equal(png, masks[frame][..., None] * colour), shown
    text = (tmp_path / "liver.txt").read_text(encoding="utf-8")
    assert "Slices                 3" in text
    (card,) = index_cards(tmp_path / "index.html")  # its card opens the sheet, the legend and slices beside
    ((item,),) = [card["items"]]
    assert item["image"] == "liver.png" and card["thumb"] == ".thumbs/liver.jpg"
    assert "1 Liver (sRGB 217,130,101)" in dict(item["facts"])["Display"] and dict(item["facts"])["Slices"].startswith("3,")


def test_the_sheet_labels_each_slice_with_its_place_and_lines_between_them(tmp_path):
    """liver.dcm's three slices on a 2 x 2 sheet: each tile as its --frames PNG except for its
    top left corner, where its label is (white outlined in black), a grey line between tiles;
    the labels name z, as the slices are axial (1,0,0 / 0,1,0)."""
    from _dicom_converter.geometry import frame_orientation, frame_positions
    from _dicom_converter.job import slice_labels
    from _dicom_converter.writers import SHEET_BORDER_GREY, SHEET_BORDER_PX

    run = run_cli(testdata("liver.dcm"), "-o", tmp_path, "--frames")
    assert run.returncode == 0, run.stdout + run.stderr
    sheet = np.asarray(Image.open(tmp_path / "liver.png"))
    pitch = 512 + SHEET_BORDER_PX
    assert sheet.shape == (2 * 512 + SHEET_BORDER_PX, 2 * 512 + SHEET_BORDER_PX, 3)
    assert (sheet[512:pitch] == SHEET_BORDER_GREY).all() and (sheet[:, 512:pitch] == SHEET_BORDER_GREY).all()
    for n in range(3):
        row, column = divmod(n, 2)
        tile = sheet[row * pitch:row * pitch + 512, column * pitch:column * pitch + 512]
        frame = np.asarray(Image.open(tmp_path / "liver_frames" / f"{n + 1:04d}.png"))
        differs = np.argwhere((tile != frame).any(axis=2))
        assert len(differs) > 40 and differs[:, 0].max() < 24 and differs[:, 1].max() < 160, n
        assert (tile[:24, :160] >= 200).all(axis=2).any() and (tile[:24, :160] <= 40).all(axis=2).any()
    assert not sheet[pitch:, pitch:].any()  # the fourth cell: no slice
    ds = read_dataset(testdata("liver.dcm"))
    positions = frame_positions(ds)
    shown = [positions[group[0][0]] for group in segmentation_slices(ds)]
    assert slice_labels(shown, frame_orientation(ds)) == ["z -128.69 mm", "z -127.69 mm", "z -126.69 mm"]


def test_a_fractional_segmentation_by_opacity(tmp_path):
    """liver.dcm made FRACTIONAL: 8-bit values 128 inside the liver, Maximum Fractional Value 255."""
    from pydicom.uid import ExplicitVRLittleEndian

    ds, masks = liver_masks()
    ds.SegmentationType, ds.MaximumFractionalValue = "FRACTIONAL", 255
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = (masks.astype(np.uint8) * 128).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(tmp_path / "fractional.dcm")
    run = run_cli(tmp_path / "fractional.dcm", "-o", tmp_path / "out", "--frames")
    assert run.returncode == 0, run.stdout + run.stderr
    colour = np.array((217, 130, 101), dtype=np.float32)
    png = np.asarray(Image.open(tmp_path / "out" / "fractional_frames" / "0002.png"))
    frame = [n for n, _ in sum(segmentation_slices(read_dataset(tmp_path / "fractional.dcm")), [])][1]
    assert np.array_equal(png, np.rint(masks[frame][..., None] * colour * 128 / 255).astype(np.uint8))


def test_two_segments_on_one_slice_are_drawn_together(tmp_path):
    """liver.dcm with its third frame made segment 2 ("Tumour", no recommended colour) at the
    position of the second frame: two slices, the second showing both segments."""
    import copy

    from pydicom.dataset import Dataset

    ds, masks = liver_masks()
    tumour = Dataset()
    tumour.SegmentNumber, tumour.SegmentLabel = 2, "Tumour"
    ds.SegmentSequence.append(tumour)
    frames = ds.PerFrameFunctionalGroupsSequence
    frames[2].SegmentIdentificationSequence[0].ReferencedSegmentNumber = 2
    frames[2].PlanePositionSequence = copy.deepcopy(frames[1].PlanePositionSequence)
    ds.save_as(tmp_path / "two.dcm")
    slices = segmentation_slices(read_dataset(tmp_path / "two.dcm"))
    assert len(slices) == 2 and sorted(len(s) for s in slices) == [1, 2]
    run = run_cli(tmp_path / "two.dcm", "-o", tmp_path / "out", "--frames")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 Tumour (sRGB 64,200,64)" in run.stdout
    shared = next(n for n, s in enumerate(slices, 1) if len(s) == 2)
    png = np.asarray(Image.open(tmp_path / "out" / "two_frames" / f"{shared:04d}.png"))
    liver, tumour_colour = np.array((217, 130, 101)), np.array((64, 200, 64))
    expected = np.zeros(png.shape, dtype=np.float64)
    for frame, segment in slices[shared - 1]:
        mask = masks[frame][..., None].astype(float)
        expected = expected * (1 - mask) + (liver if segment == 1 else tumour_colour) * mask
    assert np.array_equal(png, np.rint(expected).astype(np.uint8))
    for colour in (liver, tumour_colour):  # both segments show on the shared slice
        assert (png == colour).all(axis=-1).any(), colour


def ct_under_liver(folder):
    """Three 512 x 512 CT slices where liver.dcm's frames lie (its Referenced Series, the same
    positions and orientation), a diagonal ramp of HU with a soft-tissue window: the images a
    segmentation is drawn over when they are converted in the same run."""
    import pydicom
    from test_extras import write_image

    liver = pydicom.dcmread(testdata("liver.dcm"))
    series = liver.ReferencedSeriesSequence[0].SeriesInstanceUID
    r, c = np.mgrid[0:512, 0:512]
    paths = []
    for n, item in enumerate(liver.PerFrameFunctionalGroupsSequence):
        stored = ((r + c) % 400 + 1024 - 160 + n).astype(np.int16)
        paths.append(write_image(folder / f"ct{n}.dcm", stored, SeriesInstanceUID=series,
                                 FrameOfReferenceUID=liver.FrameOfReferenceUID,
                                 ImagePositionPatient=list(item.PlanePositionSequence[0].ImagePositionPatient),
                                 ImageOrientationPatient=[1, 0, 0, 0, 1, 0], InstanceNumber=n + 1,
                                 WindowCenter=40, WindowWidth=400))
    return paths


def test_a_segmentation_is_drawn_over_the_images_it_segments_in_the_same_run(tmp_path):
    ds, masks = liver_masks()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "liver.dcm").write_bytes(testdata("liver.dcm").read_bytes())
    cts = ct_under_liver(tmp_path / "in")
    run = run_cli(tmp_path / "in", "-o", tmp_path / "out", "--frames", "--8bit")
    assert run.returncode == 0, run.stdout + run.stderr
    line = next(line for line in run.stdout.splitlines() if line.startswith("overlaid   liver.dcm"))
    assert "over the images it segments (3 of 3 slices)" in line, run.stdout
    slices = segmentation_slices(read_dataset(tmp_path / "in" / "liver.dcm"))
    colour = np.array((217, 130, 101), dtype=np.float32)
    for shown, group in enumerate(slices, 1):
        ((frame, _),) = group
        ct = np.asarray(Image.open(tmp_path / "out" / f"ct{frame}.png")).astype(np.float32)  # at that position
        opacity = (0.5 * masks[frame].astype(np.float32))[..., None]
        expected = np.rint(ct[..., None] * (1 - opacity) + colour * opacity)
        png = np.asarray(Image.open(tmp_path / "out" / "liver_frames" / f"{shown:04d}.png")).astype(np.float32)
        assert np.abs(png - expected).max() <= 1, shown
        assert masks[frame].any() and (png[masks[frame] == 0] == ct[masks[frame] == 0][:, None]).all()
    items = [item for card in index_cards(tmp_path / "out" / "index.html") for item in card["items"]]
    (liver,) = [item for item in items if item.get("image") == "liver.png"]  # once: the overlaid result
    assert "over the images it segments" in dict(liver["facts"])["Display"]
    assert len(cts) == 3


def test_under_redact_the_segmentation_still_finds_its_images(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "liver.dcm").write_bytes(testdata("liver.dcm").read_bytes())
    ct_under_liver(tmp_path / "in")
    run = run_cli(tmp_path / "in", "-o", tmp_path / "out", "--redact")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "over the images it segments (3 of 3 slices)" in run.stdout  # the UIDs' stand-ins match
    text = (tmp_path / "out" / "liver.txt").read_text(encoding="utf-8")
    assert "1.2.392.200103.20080913.113635.1.2009.6.22.21.43.10.23430.1" not in text  # the series it refers to
