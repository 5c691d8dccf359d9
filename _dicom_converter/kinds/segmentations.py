"""Segmentations: each segment in its colour, slice by slice (PS3.3 C.8.20), over the
images it segments when the run has them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from _dicom_converter.dump import text_of
from _dicom_converter.geometry import along_normal, frame_orientation, frame_positions
from _dicom_converter.job import (
    check_frames,
    write_one_frame,
    write_slices,
)
from _dicom_converter.pixels.decode import decode_frames
from _dicom_converter.reading import number_of_frames, read_dataset
from _dicom_converter.redaction import shown_image

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset

    from _dicom_converter.base import Options
    from _dicom_converter.job import Conversion


SEGMENT_COLOURS = ((255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 200, 0), (200, 64, 255), (0, 220, 220))
# CIELab (D50, the ICC profile connection space of PS3.3 C.10.7.1.1) to sRGB (D65): Bradford
# adaptation, then the sRGB primaries (IEC 61966-2-1).
BRADFORD_D50_TO_D65 = ((0.9555766, -0.0230393, 0.0631636), (-0.0282895, 1.0099416, 0.0210077),
                       (0.0122982, -0.0204830, 1.3299098))
XYZ_TO_LINEAR_SRGB = ((3.2404542, -1.5371385, -0.4985314), (-0.9692660, 1.8760108, 0.0415560),
                      (0.0556434, -0.2040259, 1.0572252))
D50_WHITE = (0.96422, 1.0, 0.82521)


def cielab_to_srgb(scaled: Iterable[int]) -> tuple[int, int, int]:
    """A DICOM CIELab value (L* 0..100 and a*, b* -128..127, each scaled to 0..65535) as 8-bit sRGB."""
    import numpy as np

    v = [float(x) / 65535 for x in scaled]
    lightness, a, b = v[0] * 100, v[1] * 255 - 128, v[2] * 255 - 128
    fy = (lightness + 16) / 116
    epsilon, kappa = 216 / 24389, 24389 / 27

    def inverse(t: float) -> float:
        return t ** 3 if t ** 3 > epsilon else (116 * t - 16) / kappa

    xyz = np.array([inverse(fy + a / 500), fy ** 3 if lightness > kappa * epsilon else lightness / kappa,
                    inverse(fy - b / 200)]) * np.array(D50_WHITE)
    linear = np.clip(np.array(XYZ_TO_LINEAR_SRGB) @ (np.array(BRADFORD_D50_TO_D65) @ xyz), 0, 1)
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return tuple(int(round(c * 255)) for c in encoded)


def segments(ds: Dataset) -> dict[int, tuple[str, tuple[int, int, int]]]:
    """Segment number -> (label, sRGB colour) from the Segment Sequence (C.8.20.4): the
    Recommended Display CIELab Value, else a colour of `SEGMENT_COLOURS` by number."""
    found = {}
    for item in ds.get("SegmentSequence") or []:
        number = int(item.get("SegmentNumber") or len(found) + 1)
        lab = item.get("RecommendedDisplayCIELabValue")
        colour = cielab_to_srgb(lab) if lab is not None and len(lab) == 3 else \
            SEGMENT_COLOURS[(number - 1) % len(SEGMENT_COLOURS)]
        found[number] = (text_of(item.get("SegmentLabel", "")) or f"segment {number}", colour)
    return found


def segmentation_slices(ds: Dataset) -> list[list[tuple[int, int]]]:
    """The frames of a segmentation grouped by slice, slices in order along the normal: each a
    list of (frame number, segment number).  Frames without a position are slices of their own."""
    positions = frame_positions(ds)
    items = ds.get("PerFrameFunctionalGroupsSequence") or []
    count = number_of_frames(ds)
    by_slice: dict = {}
    for n in range(count):
        identification = (items[n].get("SegmentIdentificationSequence") or [None])[0] if n < len(items) else None
        segment = int(getattr(identification, "ReferencedSegmentNumber", 1) or 1)
        position = positions[n] if n < len(positions) and positions[n] is not None else None
        key = (0, round(position, 3)) if position is not None else (1, n)
        by_slice.setdefault(key, []).append((n, segment))
    return [by_slice[key] for key in sorted(by_slice)]


def segmentation_frames(path: Path, ds: Dataset, slices: list[list[tuple[int, int]]],
                        backgrounds: list | None = None) -> tuple[Iterator[np.ndarray], str]:
    """Each slice as RGB: every segment's frame in its colour, BINARY masks opaque,
    FRACTIONAL ones by opacity (value / Maximum Fractional Value, C.8.20.2.3); on black, or,
    with `backgrounds` (a function of the slice number giving the segmented image's display
    frame, or None), over that image at SEGMENT_OVERLAY_OPACITY."""
    import numpy as np

    colours = segments(ds)
    fractional = str(ds.get("SegmentationType", "")).upper() == "FRACTIONAL"
    maximum = float(ds.get("MaximumFractionalValue") or 255) if fractional else 1.0
    order = [frame for group in slices for frame, _ in group]
    shown_shape = (int(ds.Rows), int(ds.Columns), 3)

    def frames() -> Iterator[np.ndarray]:
        decoded = decode_frames(path, ds, order)
        for number, group in enumerate(slices):
            image = backgrounds(number) if backgrounds is not None else None
            shown = np.zeros((int(ds.Rows), int(ds.Columns), 3), dtype=np.float32) if image is None else \
                np.broadcast_to(image.astype(np.float32).reshape(image.shape[:2] + (-1,)), shown_shape).copy()
            strength = 1.0 if image is None else SEGMENT_OVERLAY_OPACITY
            for _, segment in group:
                mask = next(decoded)
                opacity = strength * np.clip(mask.astype(np.float32) / maximum, 0, 1)[..., None]
                colour = np.array(colours.get(segment, ("", (255, 255, 255)))[1], dtype=np.float32)
                shown = shown * (1 - opacity) + colour * opacity
            yield np.rint(shown).astype(np.uint8)

    legend = [f"{number} {label} (sRGB {','.join(map(str, rgb))})" for number, (label, rgb) in colours.items()]
    unknown = sorted({segment for group in slices for _, segment in group} - set(colours))
    legend += [f"{number} not in the Segment Sequence (white)" for number in unknown]
    legend = "; ".join(legend)
    where = "on black" if backgrounds is None else f"over the images it segments ({backgrounds.found} of {len(slices)} slices)"
    return frames(), f"{'fractional' if fractional else 'binary'} segmentation {where}: {legend or 'no segments'}"


SEGMENT_OVERLAY_OPACITY = 0.5  # over its image a segment lets the anatomy show through


class _Backgrounds:
    """The display frame (8-bit) of the image under each slice of a segmentation, by slice number."""

    def __init__(self, slices: dict[int, tuple[Path, Dataset]], options: Options):
        self.slices, self.options, self.found = slices, options, len(slices)

    def __call__(self, number: int):
        if number not in self.slices:
            return None
        path, image = self.slices[number]
        return shown_image(path, self.options, image)[1]


def segmented_images(ds: Dataset, slices: list[list[tuple[int, int]]], images: tuple[Path, ...],
                     options: Options) -> _Backgrounds:
    """Which of `images` (single-frame files of the segmented series) lies under each slice: the
    one at the slice's position along the normal (within half a millimetre), of the same size."""
    positions = frame_positions(ds)
    under: dict[int, tuple[Path, Dataset]] = {}
    placed = []
    for path in images:
        image = read_dataset(path)  # pixel data left on disk, the header kept for drawing
        if (int(image.get("Rows") or 0), int(image.get("Columns") or 0)) != (int(ds.Rows), int(ds.Columns)):
            continue
        position = along_normal(image.get("ImagePositionPatient"), image.get("ImageOrientationPatient"))
        if position is not None:
            placed.append((position, path, image))
    for number, group in enumerate(slices):
        where = positions[group[0][0]] if group[0][0] < len(positions) else None
        if where is None or not placed:
            continue
        position, path, image = min(placed, key=lambda item: (abs(item[0] - where), str(item[1])))
        if abs(position - where) <= 0.5:
            under[number] = (path, image)
    return _Backgrounds(under, options)


def write_segmentation(job: Conversion, kind: str) -> None:
    """A segmentation: each segment in its colour, slice by slice, over the images it segments
    when this run has them (`job.images`)."""
    source, ds, options = job.source, job.ds, job.options
    check_frames(job)
    slices = segmentation_slices(ds)
    backgrounds = segmented_images(ds, slices, job.images, options) if job.images else None
    frames, job.rendering["Display"] = segmentation_frames(source, ds, slices, backgrounds)
    frames = job.blanked(frames)
    if len(slices) == 1:
        return write_one_frame(job, frames, False)
    positions = frame_positions(ds)
    shown = [positions[group[0][0]] if group[0][0] < len(positions) else None for group in slices]
    write_slices(job, frames, len(slices), "by position along the slice normal", shown, frame_orientation(ds))
