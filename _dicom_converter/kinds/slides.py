"""Whole-slide images: tiles stitched into one picture (PS3.3 C.8.12.4, C.7.6.17).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Iterable

from _dicom_converter.base import CorruptFile, Unsupported
from _dicom_converter.pixels.display import rendered_frames
from _dicom_converter.reading import check_pixel_data_length, number_of_frames
from _dicom_converter.writers import write_png

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset

    from _dicom_converter.job import Conversion


# A stitched level wider or taller than this is area-averaged down by a power of two (tiles
# are 2^n pixels, so each output pixel then comes from one tile): a 40x level of ~100k x 80k
# pixels becomes ~6k x 5k.  Memory: the output image and one tile.
SLIDE_MAX_SIDE = 8192


@dataclasses.dataclass(frozen=True)
class SlideLayout:
    """Where each frame of a tiled image goes in its Total Pixel Matrix (PS3.3 C.8.12.4)."""

    rows: int  # Total Pixel Matrix Rows
    columns: int  # Total Pixel Matrix Columns
    tiles: tuple[tuple[int, int] | None, ...]  # each frame's top-left (row, column), 0-based; None: not drawn
    organization: str

    def factor(self, max_side: int = SLIDE_MAX_SIDE) -> int:
        factor = 1
        while max(self.rows, self.columns) > max_side * factor:
            factor *= 2
        return factor


def slide_layout(ds: Dataset) -> SlideLayout:
    """The tile layout of a whole-slide image level.

    TILED_FULL (C.7.6.17.3): the frames fill the matrix tile row by tile row,
    left to right, first focal plane and optical path first; only that first
    plane is drawn.  TILED_SPARSE: each frame's Plane Position (Slide)
    (C.8.12.6.1) gives its 1-based Row/Column Position In Total Image Pixel
    Matrix; a position given twice (another focal plane) keeps its first tile.
    """
    import math

    rows, columns = (int(ds.get(total) if ds.get(total) is not None else ds.get(tile))
                     for total, tile in (("TotalPixelMatrixRows", "Rows"), ("TotalPixelMatrixColumns", "Columns")))
    if rows < 1 or columns < 1:
        raise CorruptFile(f"a total pixel matrix of {columns} x {rows}")
    tile_rows, tile_columns, count = int(ds.Rows), int(ds.Columns), number_of_frames(ds)
    organization = str(ds.get("DimensionOrganizationType", "") or "")
    frames = ds.get("PerFrameFunctionalGroupsSequence") or []
    if organization == "TILED_SPARSE" or not organization and frames and "PlanePositionSlideSequence" in frames[0]:
        tiles: list[tuple[int, int] | None] = []
        seen = set()
        for item in frames[:count]:
            position = (item.get("PlanePositionSlideSequence") or [None])[0]
            try:
                place = (int(position.RowPositionInTotalImagePixelMatrix) - 1,
                         int(position.ColumnPositionInTotalImagePixelMatrix) - 1)
            except (AttributeError, TypeError, ValueError):
                place = None
            if place is not None and (place in seen or not (0 <= place[0] < rows and 0 <= place[1] < columns)):
                place = None
            seen.add(place)
            tiles.append(place)
        tiles += [None] * (count - len(tiles))
    else:
        across = math.ceil(columns / tile_columns)
        plane = across * math.ceil(rows / tile_rows)
        tiles = [((n // across) * tile_rows, (n % across) * tile_columns) if n < plane else None for n in range(count)]
    return SlideLayout(rows, columns, tuple(tiles), organization or "TILED_FULL")


def stitched_slide(frames: Iterable[np.ndarray], layout: SlideLayout, factor: int) -> np.ndarray:
    """The tiles placed in one picture, scaled down by `factor` (area averaging); missing tiles black."""
    import math

    import numpy as np

    picture = None
    for frame, place in zip(frames, layout.tiles):
        if place is None:
            continue
        if picture is None:
            shape = (math.ceil(layout.rows / factor), math.ceil(layout.columns / factor)) + frame.shape[2:]
            picture = np.zeros(shape, dtype=frame.dtype)
        top, left = place
        tile = frame[:layout.rows - top, :layout.columns - left]  # edge tiles are padded past the matrix
        if factor > 1:
            tile, top, left = _area_averaged(tile, top, left, factor)
        region = picture[top:top + tile.shape[0], left:left + tile.shape[1]]
        region[...] = tile[:region.shape[0], :region.shape[1]]
    if picture is None:
        raise CorruptFile("no tile of the slide lies in its total pixel matrix")
    return picture


def _area_averaged(tile: np.ndarray, top: int, left: int, factor: int) -> tuple[np.ndarray, int, int]:
    """`tile` (at `top`, `left` in the matrix) as the output pixels it covers, each the mean of the
    tile's pixels in its `factor` x `factor` block; where the output lands."""
    import numpy as np

    above, before = top % factor, left % factor
    height = -(-(above + tile.shape[0]) // factor) * factor
    width = -(-(before + tile.shape[1]) // factor) * factor
    padded = np.zeros((height, width) + tile.shape[2:], dtype=np.float32)
    counts = np.zeros((height, width), dtype=np.float32)
    padded[above:above + tile.shape[0], before:before + tile.shape[1]] = tile
    counts[above:above + tile.shape[0], before:before + tile.shape[1]] = 1
    shape = (height // factor, factor, width // factor, factor)
    sums = padded.reshape(shape + tile.shape[2:]).sum(axis=(1, 3))
    weight = counts.reshape(shape).sum(axis=(1, 3))
    if tile.ndim == 3:
        weight = weight[..., None]
    mean = np.rint(sums / np.maximum(weight, 1)).astype(tile.dtype)
    return mean, top // factor, left // factor


def check_slide_memory(ds: Dataset, layout: SlideLayout, factor: int, limit: int) -> None:
    """Refuse a stitched picture (plus a tile) larger than `limit` bytes."""
    samples, depth = int(ds.get("SamplesPerPixel") or 1), max(1, int(ds.BitsAllocated) // 8)
    declared = (-(-layout.rows // factor) * -(-layout.columns // factor) + int(ds.Rows) * int(ds.Columns) * 4) * samples * depth
    if declared > limit:
        raise Unsupported(f"a stitched slide of {declared / 2**20:,.0f} MB exceeds the memory limit of "
                          f"{limit / 2**20:,.0f} MB (see --max-memory)")


def write_slide(job: Conversion, kind: str) -> None:
    """A whole-slide image level: its tiles stitched into one PNG."""
    ds, options = job.ds, job.options
    layout = slide_layout(ds)
    factor = layout.factor()
    check_slide_memory(ds, layout, factor, options.max_memory)
    check_pixel_data_length(ds)
    frames, job.rendering["Display"] = rendered_frames(job.source, ds, 255, options.window, not options.redact_salt)
    picture = stitched_slide(job.blanked(frames), layout, factor)
    drawn = sum(place is not None for place in layout.tiles)
    job.rendering["Slide"] = (f"{layout.columns} x {layout.rows} pixels from {drawn} of {len(layout.tiles)} tiles "
                              f"({layout.organization})" + (f", written at 1/{factor}" if factor > 1 else ""))
    if options.write_png:
        write_png(picture, job.output(".png"))
    job.thumbnail(picture)
    job.rendering["Output"] = "PNG 8-bit" if options.write_png else "none"
