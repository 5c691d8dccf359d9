"""RT Dose: planes of dose in Gy, in colour, with a scale (PS3.3 C.8.8.3), over the CT of
its frame of reference when the run has it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from _dicom_converter.base import CorruptFile, Unsupported
from _dicom_converter.geometry import along_normal, volume_order
from _dicom_converter.job import check_frames, write_slices
from _dicom_converter.pixels.decode import decode_frames
from _dicom_converter.pixels.display import clip_stored_range
from _dicom_converter.reading import read_dataset
from _dicom_converter.redaction import shown_image

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset

    from _dicom_converter.base import Options
    from _dicom_converter.job import Conversion


# The colour wash radiotherapy planning systems show: no dose black, then blue, cyan, green,
# yellow and red up to white at the maximum, linear between these anchors (fraction, RGB).
DOSE_COLOURS = ((0.0, (0, 0, 0)), (0.15, (0, 0, 255)), (0.35, (0, 255, 255)), (0.55, (0, 255, 0)),
                (0.75, (255, 255, 0)), (0.9, (255, 0, 0)), (1.0, (255, 255, 255)))
DOSE_MIN_HEIGHT = 256  # dose grids are coarse (a few mm a voxel): planes are enlarged to at least this, by whole voxels
DOSE_SCALE_WIDTH = 88  # pixels beside each plane: the colour bar and its labels in Gy
DOSE_LEGEND_PX = 14  # the text of the contact sheet's one colour bar
DOSE_LEGEND_BAR = 16  # its width


def dose_colour_lut() -> np.ndarray:
    """256 RGB entries of `DOSE_COLOURS`, for dose fractions 0..1 in 255 steps."""
    import numpy as np

    steps = np.linspace(0.0, 1.0, 256)
    stops = np.array([fraction for fraction, _ in DOSE_COLOURS])
    colours = np.array([rgb for _, rgb in DOSE_COLOURS], dtype=float)
    return np.stack([np.interp(steps, stops, colours[:, k]) for k in range(3)], axis=-1).round().astype(np.uint8)


def dose_units(ds: Dataset) -> tuple[float, str]:
    """Dose Grid Scaling (stored value to dose) and the unit to label it with (C.8.8.3):
    Gy, or ``rel.`` for RELATIVE (to a reference dose)."""
    units = str(ds.get("DoseUnits", "") or "").upper()
    return float(ds.get("DoseGridScaling") or 1.0), "Gy" if units == "GY" else ("rel." if units == "RELATIVE" else units or "?")


def dose_frames(path: Path, ds: Dataset, order: list[int]) -> tuple[Iterator[np.ndarray], str, float]:
    """The dose planes of an RT Dose (PS3.3 C.8.8.3) in `order`, all coloured on one scale from
    0 to the volume's maximum (returned last), each with that scale bar in Gy (Dose Grid
    Scaling x stored value) beside it."""
    import numpy as np

    scaling, unit = dose_units(ds)
    kept, _, high = clip_stored_range(decode_frames(path, ds, order), lambda index: ds)
    top = high * scaling
    lut = dose_colour_lut()
    scale = dose_scale(int(ds.Rows) * max(1, -(-DOSE_MIN_HEIGHT // int(ds.Rows))), top, unit)

    def frames() -> Iterator[np.ndarray]:
        for stored in (iter(kept) if kept is not None else decode_frames(path, ds, order)):
            fraction = stored.astype(np.float64) * scaling / top if top > 0 else np.zeros(stored.shape)
            plane = lut[np.clip(np.rint(fraction * 255), 0, 255).astype(np.uint8)]
            yield np.concatenate([_enlarged(plane), scale], axis=1)

    return frames(), f"dose 0 to {top:.4g} {unit} (Dose Grid Scaling {scaling:g}), colour scale beside each plane", top


def _is_axial(ds: Dataset) -> bool:
    return [round(float(v), 3) for v in ds.get("ImageOrientationPatient") or []] == [1, 0, 0, 0, 1, 0]


DOSE_WASH_OPACITY = 0.5  # over the CT the anatomy shows through the dose
DOSE_WASH_FROM = 0.05  # of the maximum dose: below it the CT is left untinted


def dose_over_images(path: Path, ds: Dataset, images: tuple[Path, ...], options: Options
                     ) -> tuple[Iterator[np.ndarray], str, list[float], float]:
    """The dose sampled onto the images of its frame of reference (the planning CT), slice by
    slice along z: each image with the dose wash over it and the scale (one for all, 0 to the
    volume's maximum) beside it; also each image's z and that maximum.

    Axial grids only (the dose's and each image's orientation 1,0,0 / 0,1,0): each image pixel
    takes the nearest dose voxel in x and y (Image Position + Pixel Spacing, PS3.3 C.7.6.2)
    and the nearest plane in z (Grid Frame Offset Vector, C.8.8.3.2: relative when its first
    value is 0), within half a plane's spacing; pixels outside the grid get no dose.
    """
    import numpy as np

    if not _is_axial(ds):
        raise Unsupported("a dose grid that is not axial cannot yet be drawn over its images")
    scaling, unit = dose_units(ds)
    origin = [float(v) for v in ds.ImagePositionPatient]
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    planes_z = np.array([origin[2] + o if offsets[0] == 0 else o for o in offsets])
    row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    dose = np.stack(list(decode_frames(path, ds))).astype(np.float64) * scaling
    top = float(dose.max())
    half = (float(np.min(np.abs(np.diff(planes_z)))) if len(planes_z) > 1 else 1.0) / 2
    placed = []
    for image_path in images:
        image = read_dataset(image_path)  # pixel data left on disk, the header kept for drawing
        if not _is_axial(image):
            continue
        z = float(image.ImagePositionPatient[2])
        if np.min(np.abs(planes_z - z)) <= half:
            placed.append((z, image_path, image))
    placed.sort(key=lambda item: item[0])
    lut = dose_colour_lut()

    def frames() -> Iterator[np.ndarray]:
        for z, image_path, image in placed:
            image, shown = shown_image(image_path, options, image)
            if shown is None:
                raise Unsupported(f"{image_path.name}, under the dose, is withheld by --redact")
            shown = np.repeat(shown[..., None], 3, axis=2) if shown.ndim == 2 else shown
            x0, y0 = (float(v) for v in image.ImagePositionPatient[:2])
            dy, dx = (float(v) for v in image.PixelSpacing)
            columns = np.floor((x0 + dx * np.arange(shown.shape[1]) - origin[0]) / column_spacing + 0.5).astype(int)
            rows = np.floor((y0 + dy * np.arange(shown.shape[0]) - origin[1]) / row_spacing + 0.5).astype(int)
            inside = (rows[:, None] >= 0) & (rows[:, None] < dose.shape[1]) & (columns >= 0) & (columns < dose.shape[2])
            plane = dose[int(np.argmin(np.abs(planes_z - z)))]
            sampled = plane[np.clip(rows, 0, dose.shape[1] - 1)[:, None], np.clip(columns, 0, dose.shape[2] - 1)]
            fraction = np.where(inside, sampled / top if top > 0 else 0.0, 0.0)
            opacity = np.where(fraction >= DOSE_WASH_FROM, DOSE_WASH_OPACITY, 0.0)[..., None]
            colour = lut[np.clip(np.rint(fraction * 255), 0, 255).astype(np.uint8)].astype(np.float64)
            wash = np.rint(shown * (1 - opacity) + colour * opacity).astype(np.uint8)
            yield np.concatenate([wash, dose_scale(wash.shape[0], top, unit)], axis=1)

    text = (f"dose 0 to {top:.4g} {unit} over {len(placed)} images of its frame of reference "
            f"(wash at {DOSE_WASH_OPACITY:.0%} from {DOSE_WASH_FROM:.0%} of the maximum)")
    return frames(), text, [z for z, _, _ in placed], top


def _enlarged(plane: np.ndarray) -> np.ndarray:
    import numpy as np

    times = max(1, -(-DOSE_MIN_HEIGHT // plane.shape[0]))
    return np.repeat(np.repeat(plane, times, axis=0), times, axis=1)


@functools.lru_cache(maxsize=8)
def dose_scale(height: int, top: float, unit: str) -> np.ndarray:
    """The colour bar (maximum at the top) with 0, half and the maximum labelled, `height` tall."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    lut = dose_colour_lut()
    bar = np.zeros((height, DOSE_SCALE_WIDTH, 3), dtype=np.uint8)
    levels = np.linspace(255, 0, height).round().astype(np.uint8)
    bar[:, 4:16] = lut[levels][:, None, :]
    image = Image.fromarray(bar)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12)
    for fraction, anchor in ((1.0, "lt"), (0.5, "lm"), (0.0, "lb")):
        y = round((1 - fraction) * (height - 1))
        draw.text((20, y), f"{fraction * top:.3g} {unit}", fill=(255, 255, 255), font=font, anchor=anchor)
    return np.asarray(image)


def dose_legend(height: int, top: float, unit: str) -> np.ndarray:
    """The contact sheet's one colour bar, `height` tall: its unit above ("Gy", or "relative
    dose" for RELATIVE), the bar below (maximum at the top), and 0, the maximum and the steps
    between labelled at its right, as many as fit without touching (five, three or two)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=DOSE_LEGEND_PX)
    title = {"Gy": "Gy", "rel.": "relative dose"}.get(unit, unit)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin, line = 6, round(DOSE_LEGEND_PX * 1.3)
    bar_top = margin + line + line // 2 + margin  # the top value's label, centred on the bar's top, clears the unit
    bar_bottom = max(bar_top + 2, height - margin - line // 2)
    span = bar_bottom - bar_top
    steps = next((n for n in (4, 2, 1) if span / n >= 2 * line), 1)
    texts = [(k / steps, f"{top * k / steps:.3g}") for k in range(steps + 1)]
    labels_w = max(measure.textlength(text, font=font) for _, text in texts)
    width = round(max(measure.textlength(title, font=font), DOSE_LEGEND_BAR + margin + labels_w)) + 2 * margin
    legend = np.zeros((height, width, 3), dtype=np.uint8)
    levels = np.linspace(255, 0, max(1, min(span, height - bar_top))).round().astype(np.uint8)
    legend[bar_top:bar_top + len(levels), margin:margin + DOSE_LEGEND_BAR] = dose_colour_lut()[levels][:, None, :]
    image = Image.fromarray(legend)
    draw = ImageDraw.Draw(image)
    draw.text((margin, margin), title, fill=(255, 255, 255), font=font, anchor="lt")
    for fraction, text in texts:
        y = round(bar_top + (1 - fraction) * (len(levels) - 1))
        draw.text((margin + DOSE_LEGEND_BAR + margin, y), text, fill=(255, 255, 255), font=font, anchor="lm")
    return np.asarray(image)


def write_dose(job: Conversion, kind: str) -> None:
    """An RT Dose: its planes in colour with a scale in Gy, drawn over the images of its frame of
    reference when this run has them (`job.images`), else plane by plane in grid order."""
    source, ds, options = job.source, job.ds, job.options
    frames_total = check_frames(job)
    order, ordered_by = volume_order(ds)
    if job.plan is not None and job.plan.action == "blank":
        raise Unsupported("--redact found rectangles to blank in a dose grid, which it cannot do")
    _, unit = dose_units(ds)
    if job.images:
        frames, job.rendering["Display"], positions, top = dose_over_images(source, ds, job.images, options)
        frames_total = len(positions)
        if not frames_total:
            raise CorruptFile("none of the images of its frame of reference lies within the dose grid")
        ordered_by = "the images' positions in z"
        orientation = (1, 0, 0, 0, 1, 0)  # dose_over_images draws axial images only
    else:
        frames, job.rendering["Display"], top = dose_frames(source, ds, order)
        positions, orientation = dose_plane_positions(ds, order), ds.get("ImageOrientationPatient")
    # the sheet shows the one scale once, beside its grid, rather than on every tile
    write_slices(job, frames, frames_total, ordered_by, positions, orientation,
                 legend=functools.partial(dose_legend, top=top, unit=unit), trim_right=DOSE_SCALE_WIDTH)


def dose_plane_positions(ds: Dataset, order: list[int]) -> list[float | None]:
    """Each plane's position along the slice normal, in `order`: Image Position (Patient) plus
    its Grid Frame Offset Vector value (C.8.8.3.2: offsets along the normal when the first is
    0, else the planes' z, which the standard allows for axial grids only)."""
    try:
        offsets = [float(v) for v in ds.GridFrameOffsetVector]
    except (AttributeError, TypeError, ValueError):
        return []
    origin = along_normal(ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient"))
    if offsets and offsets[0] != 0:
        return [offsets[n] if n < len(offsets) else None for n in order]
    return [origin + offsets[n] if origin is not None and n < len(offsets) else None for n in order]
