"""The display pipeline (PS3.3 C.11, PS3.4 Annex N), one function per step:

    stored values -> Modality LUT -> VOI LUT / window -> Presentation -> output bits

Every greyscale frame goes through one lookup table from stored value to output, as DCMTK does;
colour (RGB, YBR_*, PALETTE COLOR) becomes 8-bit RGB.  Overlays (C.9) are drawn in.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from _dicom_converter.base import CLIP_CACHE_BYTES, CorruptFile, Unsupported, first_line
from _dicom_converter.pixels.decode import decode_frames
from _dicom_converter.reading import is_multi, number_of_frames

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset


def frame_attributes(ds: Dataset, index: int) -> Dataset:
    """The attributes that govern frame `index`, with functional groups resolved.

    Enhanced multi-frame objects (PS3.3 C.7.6.16) keep rescale and window per
    frame in the Per-Frame Functional Groups Sequence, falling back to the
    Shared Functional Groups Sequence.  pydicom's LUT functions read top-level
    attributes only, so the frame's Pixel Value Transformation (C.7.6.16.2.9)
    and Frame VOI LUT (C.7.6.16.2.10) values are copied onto a shallow copy.
    """
    groups = []
    for sequence in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = ds.get(sequence)
        if not items:
            continue
        item_index = 0 if sequence.startswith("Shared") else index
        if item_index < len(items):
            groups.append(items[item_index])
    if not groups:
        return ds
    view = ds.copy()
    for group in groups:
        for macro in ("PixelValueTransformationSequence", "FrameVOILUTSequence"):
            items = group.get(macro)
            if items:
                for element in items[0]:
                    view[element.tag] = element
    return view


def stored_values_domain(dtype: np.dtype) -> np.ndarray:
    """Every value a frame of integer `dtype` can hold, in the order of its unsigned view."""
    import numpy as np

    unsigned = np.dtype(f"u{dtype.itemsize}")
    return np.arange(2 ** (8 * dtype.itemsize), dtype=np.int64).astype(unsigned).view(dtype)


def apply_modality(values: np.ndarray, attrs: Dataset) -> np.ndarray:
    """Modality LUT (PS3.3 C.11.1): stored values to modality units (e.g. HU).

    pydicom's `apply_modality_lut` handles Rescale Slope/Intercept and the
    Modality LUT Sequence; it cannot make a ``uint12`` array for a 12-bit LUT
    (it names the dtype after the descriptor's bit depth), so such LUTs are
    given a 16-bit container here.
    """
    import numpy as np
    from pydicom.pixels import apply_modality_lut

    if attrs.get("ModalityLUTSequence"):
        item = attrs.ModalityLUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        if bits not in (8, 16):
            item = _lut_item_with_depth(item, 16 if bits > 8 else 8)
            attrs = attrs.copy()
            attrs.ModalityLUTSequence = [item]
    try:
        out = apply_modality_lut(values, attrs)
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise CorruptFile(f"invalid Modality LUT: {first_line(exc)}") from None
    return np.asarray(out, dtype=np.float64)


def _lut_item_with_depth(item: Dataset, depth: int) -> Dataset:
    from pydicom.dataset import Dataset

    copy = Dataset()
    copy.update(item)
    descriptor = list(item.LUTDescriptor)
    descriptor[2] = depth
    copy.LUTDescriptor = descriptor
    return copy


def apply_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """VOI window (PS3.3 C.11.2.1.2 and C.11.2.1.3) mapped onto 0.0–1.0.

    Written here rather than calling pydicom's `apply_windowing`: that
    function scales its output to a range derived from Bits Stored and the
    rescale values (and writes back into the dataset), while the display needs
    0–1 to quantise to 8 or 16 bits; the formulas are the standard's.
    """
    import numpy as np

    function = (function or "LINEAR").strip().upper()
    values = np.asarray(values, dtype=np.float64)
    if function == "SIGMOID":
        if width <= 0:
            raise CorruptFile(f"invalid Window Width {width} for SIGMOID")
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        if width <= 0:
            raise CorruptFile(f"invalid Window Width {width} for LINEAR_EXACT")
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if function != "LINEAR":
        raise Unsupported(f"VOI LUT Function {function!r} is not supported")
    if width < 1:
        raise CorruptFile(f"invalid Window Width {width} (must be at least 1)")
    if width == 1:  # a threshold: C.11.2.1.2.1 with width - 1 == 0
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def apply_voi_lut_sequence(values: np.ndarray, attrs: Dataset) -> np.ndarray:
    """The first VOI LUT of the VOI LUT Sequence (PS3.3 C.11.2.1.1), mapped onto 0.0–1.0.

    pydicom's `apply_voi` does the lookup; its output spans the LUT's
    declared entry bit depth (LUT Descriptor value 3), which sets full scale.
    """
    import numpy as np
    from pydicom.pixels import apply_voi

    item = attrs.VOILUTSequence[0]
    try:
        out = apply_voi(np.rint(values).astype(np.int64), attrs)
    except (ValueError, TypeError, IndexError, NotImplementedError, AttributeError) as exc:
        raise CorruptFile(f"invalid VOI LUT Sequence: {first_line(exc)}") from None
    full_scale = 2 ** int(item.LUTDescriptor[2]) - 1
    return np.asarray(out, dtype=np.float64) / full_scale


def apply_linear_range(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map the modality range `low`–`high` linearly onto 0.0–1.0 (no VOI in the file)."""
    import numpy as np

    if high <= low:
        return np.zeros(np.shape(values), dtype=np.float64)
    return np.clip((np.asarray(values, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


def is_inverted(attrs: Dataset) -> bool:
    """Presentation (PS3.3 C.11.6, C.7.6.3.1.2): whether minimum is shown white.

    Presentation LUT Shape, when present, says it outright (INVERSE or
    IDENTITY).  Otherwise MONOCHROME1 means the lowest value is white.  The
    inversion is applied after VOI; inverting before the window double-inverts.
    """
    shape = str(attrs.get("PresentationLUTShape", "") or "").strip().upper()
    if shape in ("INVERSE", "IDENTITY"):
        return shape == "INVERSE"
    return str(attrs.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1"


@dataclasses.dataclass(frozen=True)
class Voi:
    """The VOI step chosen for an image: a window, the file's VOI LUT, or a range."""

    kind: str  # "window", "lut" or "range"
    center: float = 0.0
    width: float = 0.0
    function: str = "LINEAR"
    source: str = ""

    def describe(self) -> str:
        if self.kind == "window":
            extra = "" if self.function == "LINEAR" else f" {self.function}"
            return f"window {self.center:g}/{self.width:g}{extra} ({self.source})"
        if self.kind == "lut":
            return f"VOI LUT ({self.source})"
        return f"min-max {self.center:g}..{self.width:g} ({self.source})"


def choose_voi(attrs: Dataset, override: tuple[float, float] | None) -> Voi | None:
    """The VOI of PS3.3 C.11.2 in order of precedence, or None when the file has none.

    ``--window`` wins; then the first Window Center/Width pair with its VOI LUT
    Function; then the first item of the VOI LUT Sequence.
    """
    if override is not None:
        return Voi("window", override[0], override[1], "LINEAR", "--window")
    center, width = attrs.get("WindowCenter"), attrs.get("WindowWidth")
    if center not in (None, "") and width not in (None, ""):
        try:
            center = float(center[0] if is_multi(center) else center)
            width = float(width[0] if is_multi(width) else width)
        except (TypeError, ValueError, IndexError):
            raise CorruptFile(f"invalid Window Center/Width {center!r}/{width!r}") from None
        function = str(attrs.get("VOILUTFunction", "") or "LINEAR").strip().upper()
        return Voi("window", center, width, function, "file")
    if attrs.get("VOILUTSequence"):
        return Voi("lut", source="file")
    return None


def apply_voi_step(values: np.ndarray, attrs: Dataset, voi: Voi) -> np.ndarray:
    """Run the chosen VOI on modality values, giving 0.0–1.0."""
    if voi.kind == "window":
        return apply_window(values, voi.center, voi.width, voi.function)
    if voi.kind == "lut":
        return apply_voi_lut_sequence(values, attrs)
    return apply_linear_range(values, voi.center, voi.width)


def display_values(stored: np.ndarray, attrs: Dataset, voi: Voi, out_max: int) -> np.ndarray:
    """The grayscale standard display pipeline (PS3.4 N.2.1) from stored values to output.

    Modality LUT, VOI, then Presentation; output is scaled to 0–`out_max` and
    returned as uint8 (255) or uint16 (65535).
    """
    import numpy as np

    shown = apply_voi_step(apply_modality(stored, attrs), attrs, voi)
    if is_inverted(attrs):
        shown = 1.0 - shown
    return np.rint(shown * out_max).astype(np.uint8 if out_max <= 255 else np.uint16)


def grayscale_lut(dtype: np.dtype, attrs: Dataset, voi: Voi, out_max: int) -> np.ndarray:
    """`display_values` for every stored value of `dtype`, indexed by its unsigned view."""
    return display_values(stored_values_domain(dtype), attrs, voi, out_max)


def modality_range(low: float, high: float, attrs: Dataset) -> tuple[float, float]:
    """The range of modality values that stored values `low`..`high` map to."""
    import numpy as np

    if attrs.get("ModalityLUTSequence"):
        stored = np.arange(int(low), int(high) + 1, dtype=np.int64)
    else:  # a rescale is linear: the ends suffice (a negative slope swaps them)
        stored = np.array([low, high], dtype=np.float64)
    values = apply_modality(stored, attrs)
    return float(values.min()), float(values.max())


def lut_index(frame: np.ndarray) -> np.ndarray:
    """The frame viewed as unsigned integers, to index a LUT built by `stored_values_domain`."""
    return frame.view(f"u{frame.dtype.itemsize}")


def uses_lut(frame: np.ndarray) -> bool:
    return frame.dtype.kind in "ui" and frame.dtype.itemsize <= 2


# Display LUTs outlive the file they were built for: the slices of a CT or MR
# series share their rescale and window, and building a 16-bit LUT took 1.5 ms,
# a tenth of a 512^2 slice's whole conversion.  Only LUTs that plain values
# define are kept; a LUT Sequence is keyed by identity, which is valid only
# while its file is open.
_SHARED_LUTS: dict[tuple, np.ndarray] = {}
SHARED_LUTS_KEPT = 16  # LUTs kept at most (a 16-bit one is 64-128 KB)


def render_grayscale(
    frames: Iterable[np.ndarray], attrs_of, voi_of, out_max: int, overlays=(), numbers=None
) -> Iterator[np.ndarray]:
    """Render stored greyscale frames for display, one LUT per distinct frame setting.

    `numbers` are the file's frame numbers of the frames given, when not in storage order
    (which overlay frame belongs to each)."""
    import numpy as np

    luts: dict[tuple, np.ndarray] = {}  # this call's LUTs from LUT Sequences
    for index, frame in enumerate(frames):
        attrs = attrs_of(index)
        voi = voi_of(attrs)
        if not uses_lut(frame):
            shown = display_values(frame, attrs, voi, out_max)
        else:
            key = (frame.dtype.str, voi, out_max, _lut_key(attrs))
            shareable = not (attrs.get("ModalityLUTSequence") or attrs.get("VOILUTSequence"))
            cache = _SHARED_LUTS if shareable else luts
            if key not in cache:
                if len(cache) >= SHARED_LUTS_KEPT:
                    cache.clear()
                cache[key] = grayscale_lut(frame.dtype, attrs, voi, out_max)
            shown = np.take(cache[key], lut_index(frame))  # twice as fast as cache[key][index] here
        number = numbers[index] if numbers is not None else index
        yield apply_overlays(shown, number, overlays, out_max) if overlays else shown


def _lut_key(attrs: Dataset) -> tuple:
    """What makes two frames' display LUTs differ, beyond the VOI itself."""
    return (
        str(attrs.get("RescaleSlope", "")), str(attrs.get("RescaleIntercept", "")),
        id(attrs.get("ModalityLUTSequence")), id(attrs.get("VOILUTSequence")),
        is_inverted(attrs),
    )


def overlay_planes(ds: Dataset) -> list[tuple[int, np.ndarray, int, int]]:
    """The graphic overlays of `ds` (PS3.3 C.9.2 Overlay Plane Module).

    Returns ``(first frame index, bitmap frames, top row, left column)`` for each
    Overlay Type G plane that carries its own Overlay Data; viewers (and DCMTK's
    default) draw these over the image.  Region-of-interest (R) planes outline
    an area for analysis and are not drawn.
    """
    planes = []
    for group in range(0x6000, 0x6020, 2):
        kind = ds[group, 0x0040].value if (group, 0x0040) in ds else "G"
        if (group, 0x3000) not in ds or str(kind).strip() != "G":
            continue
        try:
            bitmap = ds.overlay_array(group)
        except Exception as exc:
            raise CorruptFile(f"invalid overlay plane {group:04X}: {first_line(exc)}") from None
        bitmap = bitmap.reshape((-1,) + bitmap.shape[-2:])
        origin = ds.get((group, 0x0050))
        top, left = (int(origin.value[0]) - 1, int(origin.value[1]) - 1) if origin and origin.VM == 2 else (0, 0)
        first = int(ds.get((group, 0x0051)).value) - 1 if (group, 0x0051) in ds else 0
        planes.append((first, bitmap, top, left))
    return planes


def apply_overlays(frame: np.ndarray, index: int, planes, out_max: int) -> np.ndarray:
    """Draw the overlay bits that belong to frame `index` in white (DCMTK's Replace mode)."""
    for first, bitmap, top, left in planes:
        if not first <= index < first + len(bitmap):
            continue
        bits = bitmap[index - first]
        rows, cols = frame.shape[:2]
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + bits.shape[0], rows), min(left + bits.shape[1], cols)
        if r1 <= r0 or c1 <= c0:
            continue
        region = frame[r0:r1, c0:c1]
        region[bits[r0 - top : r1 - top, c0 - left : c1 - left] != 0] = out_max
    return frame


def palette_lut(dtype: np.dtype, ds: Dataset) -> np.ndarray:
    """PALETTE COLOR (PS3.3 C.7.6.3.1.5-6, C.7.9): an 8-bit RGB entry per stored value.

    pydicom's `apply_color_lut` expands normal and segmented LUTs; applying it
    once to every possible index gives a table the frames are looked up in.
    16-bit LUT entries are scaled to 8 bits with rounding.
    """
    import numpy as np
    from pydicom.pixels import apply_color_lut

    check_palette(ds)
    domain = stored_values_domain(dtype)
    try:
        table = apply_color_lut(np.clip(domain, 0, None).astype(dtype), _native_order_luts(ds))
    except (ValueError, TypeError, IndexError, AttributeError, KeyError) as exc:
        raise CorruptFile(f"invalid palette colour lookup table: {first_line(exc)}") from None
    if table.ndim != 2 or table.shape[1] not in (3, 4):
        raise CorruptFile(f"palette colour lookup tables give {table.shape[-1]} channels, not red, green and blue")
    return to_eight_bit(table[:, :3], 16 if table.dtype.itemsize > 1 else 8)


def check_palette(ds: Dataset) -> None:
    """Refuse palette LUTs that contradict their descriptors (PS3.3 C.7.6.3.1.5-6)."""
    for colour in ("Red", "Green", "Blue"):
        descriptor = ds.get(f"{colour}PaletteColorLookupTableDescriptor")
        if not descriptor or len(descriptor) != 3:
            raise CorruptFile(f"missing or invalid {colour} Palette Color Lookup Table Descriptor")
        entries, bits = int(descriptor[0]) or 65536, int(descriptor[2])
        if bits not in (8, 16):
            raise CorruptFile(f"{colour} palette LUT entries of {bits} bits (only 8 or 16 are allowed)")
        data = ds.get(f"{colour}PaletteColorLookupTableData")
        if data is not None and len(data) < entries * (1 if bits == 8 and len(data) < 2 * entries else 2):
            raise CorruptFile(f"{colour} palette LUT data is shorter than its descriptor ({len(data)} bytes "
                              f"for {entries} entries)")


def _native_order_luts(ds: Dataset) -> Dataset:
    """`ds` with 16-bit palette LUT data in little-endian order.

    pydicom 3.0's `apply_color_lut` reads (non-segmented) LUT data in the
    machine's byte order, so a big-endian file's palette comes out byte-swapped
    (OBXXXX1A_expb differed from DCMTK by 12 levels on average, up to 254).
    """
    import numpy as np

    if ds.original_encoding[1] is not False:
        return ds
    swapped = ds.copy()
    for colour in ("Red", "Green", "Blue", "Alpha"):
        keyword = f"{colour}PaletteColorLookupTableData"
        data = ds.get(keyword)
        if data and len(data) % 2 == 0 and int(ds.RedPaletteColorLookupTableDescriptor[2]) == 16:
            swapped[keyword].value = np.frombuffer(data, dtype=">u2").astype("<u2").tobytes()
    return swapped


def to_eight_bit(values: np.ndarray, bits: int) -> np.ndarray:
    """Scale unsigned values of `bits` significant bits to 0–255, rounding."""
    import numpy as np

    if bits == 8 and values.dtype == np.uint8:
        return values
    if bits == 16 and values.dtype == np.uint16:
        # rint(v * 255 / 65535) is rint(v / 257), which never meets a tie (257 is odd): in
        # integers it is (v + 128) // 257, the same bytes for all 65,536 values (tested), in
        # 0.1 ms for a 512^2 frame where the float64 form took 1.8 ms (every thumbnail and
        # every 16-bit frame of a cine on its way to the GIF and MP4).
        return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)
    full_scale = float(2**bits - 1)
    scaled = np.rint(values.astype(np.float64) * (255.0 / full_scale))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def render_colour(frames: Iterable[np.ndarray], ds: Dataset) -> Iterator[np.ndarray]:
    """Colour frames as 8-bit RGB (PS3.3 C.7.6.3.1.2).

    RGB and YBR come out of the decoder as RGB; deeper samples are scaled
    from Bits Stored to 8 bits; PALETTE COLOR is looked up in its LUTs.
    """
    import numpy as np

    photometric = str(ds.PhotometricInterpretation).strip()
    bits_stored = int(ds.get("BitsStored") or ds.BitsAllocated)
    table = None
    for frame in frames:
        if photometric == "PALETTE COLOR":
            if table is None:
                table = palette_lut(frame.dtype, ds)
            yield np.take(table, lut_index(frame), axis=0)
        elif frame.dtype == np.uint8:
            yield frame
        else:
            yield to_eight_bit(frame, min(bits_stored, 8 * frame.dtype.itemsize))


def is_colour(ds: Dataset) -> bool:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    return photometric not in ("MONOCHROME1", "MONOCHROME2")


def rendered_frames(
    path: Path, ds: Dataset, out_max: int, window: tuple[float, float] | None, draw_overlays: bool = True,
    order: list[int] | None = None,
) -> tuple[Iterator[np.ndarray], str]:
    """The display frames of `path` (in `order`, when given) and a description of the VOI used.

    Overlays are drawn unless `draw_overlays` is false (``--redact``: the
    profile removes Overlay Data, whose graphics can hold text).

    When the file has no VOI and no `window` is given, the whole clip's
    modality range is used (one range for all frames, so a loop does not
    flicker): that needs a first pass over the frames, which are kept for the
    second pass when they fit in CLIP_CACHE_BYTES and decoded again otherwise.
    """
    if is_colour(ds):
        return render_colour(decode_frames(path, ds, order), ds), "colour"

    attrs_cache: dict[int, Dataset] = {}
    numbers = order or range(number_of_frames(ds))  # the file's frame number of each frame shown

    def attrs_of(index: int) -> Dataset:
        if index not in attrs_cache:
            attrs_cache[index] = frame_attributes(ds, numbers[index])
        return attrs_cache[index]

    overlays = overlay_planes(ds) if draw_overlays else []
    file_vois = {choose_voi(attrs_of(0), window)}
    if "PerFrameFunctionalGroupsSequence" in ds and window is None:
        file_vois |= {choose_voi(attrs_of(i), None) for i in range(number_of_frames(ds))}
    if None not in file_vois:
        voi_descriptions = sorted({v.describe() for v in file_vois})
        description = voi_descriptions[0] if len(voi_descriptions) == 1 else "per-frame windows"
        return (
            render_grayscale(
                decode_frames(path, ds, order), attrs_of, lambda a: choose_voi(a, window), out_max, overlays,
                numbers,
            ),
            description,
        )

    kept, low, high = clip_stored_range(decode_frames(path, ds, order), attrs_of)
    voi_range = Voi("range", low, high, source="no window in file")

    def voi_of(attrs: Dataset) -> Voi:
        return choose_voi(attrs, window) or voi_range

    frames = iter(kept) if kept is not None else decode_frames(path, ds, order)
    return render_grayscale(frames, attrs_of, voi_of, out_max, overlays, numbers), voi_range.describe()


def clip_stored_range(frames: Iterable[np.ndarray], attrs_of) -> tuple[list | None, float, float]:
    """One pass over a clip: its modality-value range, and the frames if they fit the cache."""
    import numpy as np

    kept: list | None = []
    kept_bytes = 0
    low, high = float("inf"), float("-inf")
    for index, frame in enumerate(frames):
        finite = frame if frame.dtype.kind in "ui" else frame[np.isfinite(frame)]
        if finite.size:
            lo, hi = modality_range(finite.min(), finite.max(), attrs_of(index))
            low, high = min(low, lo), max(high, hi)
        if kept is not None:
            kept_bytes += frame.nbytes
            if kept_bytes <= CLIP_CACHE_BYTES:
                kept.append(frame)
            else:
                kept = None
    if low > high:
        low = high = 0.0
    return kept, low, high
