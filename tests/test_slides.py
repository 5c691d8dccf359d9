"""Whole-slide images: tiles stitched into one picture, pixel for pixel.

No whole-slide file ships in the reachable packages, so `write_slide` cuts a known picture into
tiles the way PS3.3 C.8.12.4 lays them out (TILED_FULL in tile order, TILED_SPARSE shuffled with
Plane Position (Slide) per tile).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from _dicom_converter.classify import multiframe_kind
from _dicom_converter.kinds.slides import SlideLayout, slide_layout, stitched_slide
from _dicom_converter.reading import read_dataset
from _dicom_converter.redaction import burned_in_text_plan

WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"


def picture(rows: int = 700, columns: int = 1000) -> np.ndarray:
    """An RGB test picture where every pixel differs from its neighbours (a seam shows)."""
    r, c = np.mgrid[0:rows, 0:columns]
    return np.stack([(r * 7 + c) % 256, (c * 3) % 256, (r * 5 + c * 11) % 256], axis=-1).astype(np.uint8)


def write_slide(path, image: np.ndarray, tile: int = 256, sparse: bool = False, missing=(), seed: int = 0):
    """A VL Whole Slide Microscopy level of `image`, cut into `tile` x `tile` RGB tiles (edge tiles
    padded with white, as scanners do): TILED_FULL in row-major tile order, or TILED_SPARSE with
    the tiles shuffled, each with its Plane Position (Slide), the tile numbers in `missing` left out."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rows, columns = image.shape[:2]
    tiles = []
    for top in range(0, rows, tile):
        for left in range(0, columns, tile):
            block = np.full((tile, tile, 3), 255, np.uint8)
            part = image[top:top + tile, left:left + tile]
            block[:part.shape[0], :part.shape[1]] = part
            tiles.append((top, left, block))
    if sparse:
        tiles = [t for n, t in enumerate(tiles) if n not in missing]
        random.Random(seed).shuffle(tiles)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = WSI
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality, ds.ImageType, ds.BurnedInAnnotation = "SM", ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"], "NO"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows = ds.Columns = tile
    ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = rows, columns
    ds.NumberOfFrames = len(tiles)
    ds.DimensionOrganizationType = "TILED_SPARSE" if sparse else "TILED_FULL"
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if sparse:
        items = []
        for top, left, _ in tiles:
            position = Dataset()
            position.RowPositionInTotalImagePixelMatrix = top + 1
            position.ColumnPositionInTotalImagePixelMatrix = left + 1
            item = Dataset()
            item.PlanePositionSlideSequence = [position]
            items.append(item)
        ds.PerFrameFunctionalGroupsSequence = items
    ds.PixelData = b"".join(block.tobytes() for _, _, block in tiles)
    ds.save_as(path, enforce_file_format=True)
    return path


def convert(tmp_path, source):
    run = run_cli(source, "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    return np.asarray(Image.open(tmp_path / "out" / f"{source.stem}.png")), run.stdout


def test_tiled_full_is_stitched_exactly(tmp_path):
    image = picture()
    stitched, log = convert(tmp_path, write_slide(tmp_path / "full.dcm", image))
    assert stitched.shape == image.shape and np.array_equal(stitched, image)
    assert "1000 x 700 pixels from 12 of 12 tiles (TILED_FULL)" in log
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".thumbs", "full.png", "full.txt", "index.html",
                                                                    "manifest.csv"]


def test_tiled_sparse_shuffled_with_missing_tiles_blank(tmp_path):
    image = picture()
    stitched, log = convert(tmp_path, write_slide(tmp_path / "sparse.dcm", image, sparse=True, missing=(5,)))
    expected = image.copy()
    expected[256:512, 256:512] = 0  # tile 5: second row of tiles, second column
    assert np.array_equal(stitched, expected)
    assert "from 11 of 11 tiles (TILED_SPARSE)" in log


def test_a_big_level_is_area_averaged_by_a_power_of_two():
    image = picture(300, 520)
    layout = SlideLayout(300, 520, tuple((top, left) for top in range(0, 300, 64) for left in range(0, 520, 64)),
                            "TILED_FULL")
    assert layout.factor(max_side=200) == 4
    tiles = [np.pad(image[t:t + 64, l:l + 64], ((0, 64 - image[t:t + 64].shape[0]), (0, 64 - image[:, l:l + 64].shape[1]), (0, 0)))
             for t, l in layout.tiles]
    small = stitched_slide(tiles, layout, 4)
    blocks = image.reshape(75, 4, 130, 4, 3).astype(float).mean(axis=(1, 3))
    assert small.shape == (75, 130, 3) and np.array_equal(small, np.rint(blocks).astype(np.uint8))


def test_tiles_outside_the_matrix_are_left_out(tmp_path):
    import pydicom

    path = write_slide(tmp_path / "odd.dcm", picture(), sparse=True)
    ds = pydicom.dcmread(path)
    ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSlideSequence[0].RowPositionInTotalImagePixelMatrix = 5000
    ds.save_as(path)
    layout = slide_layout(read_dataset(path))
    assert layout.tiles[0] is None and sum(t is not None for t in layout.tiles) == 11
    _, log = convert(tmp_path, path)
    assert "from 11 of 12 tiles (TILED_SPARSE)" in log


def test_a_slide_is_a_slide():
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.SOPClassUID, ds.NumberOfFrames = WSI, 4
    assert multiframe_kind(ds) == "slide"


def test_redact_withholds_a_slide_label_even_marked_clean(tmp_path):
    from pydicom.dataset import Dataset

    label = Dataset()
    label.SOPClassUID, label.ImageType, label.BurnedInAnnotation = WSI, ["ORIGINAL", "PRIMARY", "LABEL", "NONE"], "NO"
    plan = burned_in_text_plan(label)
    assert plan.action == "withhold" and "label" in plan.reason
    tissue = write_slide(tmp_path / "level.dcm", picture(300, 300))
    assert burned_in_text_plan(read_dataset(tissue)).action == "show"  # Burned In Annotation NO
