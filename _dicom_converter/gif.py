"""Animated GIFs written frame by frame: uniform grey bins or a shared colour palette held
to a minimum PSNR, only the changed rectangle of each frame, durations from the file's timing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from _dicom_converter.base import DEFAULT_GIF_MAX_SIZE
from _dicom_converter.writers import fit_within

if TYPE_CHECKING:
    import numpy as np


def gif_durations(durations_ms: Iterable[float]) -> list[int]:
    """Per-frame GIF delays in ms, rounded to the format's 10 ms ticks without drift.

    GIF stores delays in hundredths of a second; rounding each frame alone
    makes a 15 fps loop run at 14.3 fps.  The rounding error is carried to
    the next frame so the total stays true.
    """
    return list(_gif_delays(durations_ms))


def _gif_delays(durations_ms: Iterable[float]) -> Iterator[int]:
    """`gif_durations` one at a time (a video's frame count is known only once it is decoded)."""
    carried = 0.0
    for duration in durations_ms:
        exact = duration + carried
        ticks = max(2, round(exact / 10.0))  # browsers slow delays under 20 ms to 100 ms
        yield ticks * 10
        carried = exact - ticks * 10


# GIF quality and size (issue #18; tests/test_gif_size.py).  A grey frame is
# shown through uniform bins of greys, each drawn as the mean grey of its
# pixels, as wide as keeps the frame at 40 dB PSNR against the 8-bit frame.  On
# the 512^2 x 40-frame noisy angiography-like clips that makes 0.29-0.31 of
# Pillow's optimize=True GIF where the old 45 dB ladder of Lloyd-Max palettes
# made 0.73-0.76 (0.42 on pydicom's noisy MR cine, was 0.81; 0.19 on the XA
# sample, was 0.22), in half the CPU time (3.2 ms a 512^2 frame, was 5.6-6.4).
# Noise is what LZW pays for, and at a given error uniform bins leave the fewest
# distinct values: Lloyd-Max palettes held to 40 dB made 0.42-0.58.  Colour
# frames keep their median-cut palettes and drift thresholds, tried in turn
# until the frame reaches its target (the palette cine needs the 31-colour
# first step: 0.51 without it).
GIF_MIN_PSNR_GREY = 40.0    # visually lossless for a preview; the frame PNGs and the MP4 are the faithful outputs
GIF_MIN_PSNR_COLOUR = 42.0  # colour clips are mostly lossy-JPEG ultrasound already
# Bin widths tried, coarsest first.  Whole greys alone step over the target
# (8 greys: 40.9 dB on noise, 9: 39.8): quarters made the GIFs 0-18% smaller.
# The last, 1.25, is never under 48 dB (no pixel more than one grey off), so any
# target up to that is met.
GIF_GREY_STEPS = tuple(quarters / 4 for quarters in range(64, 4, -1))  # 16, 15.75, ... 1.25
GIF_GREY_EXACT = 32  # a frame of at most this many greys keeps them all (synthetic, labels, few-level data)
GIF_GREY_RUN = 8  # unchanged greys in a row at least this long are left transparent; shorter runs are redrawn
GIF_COLOUR_STEPS = ((31, 4), (63, 4), (127, 3), (255, 2), (255, 0))
GIF_MAX_COLOURS = 255  # one palette entry is always left free for "unchanged" (transparent)
GIF_COLOUR_MAX_ERROR = 32  # levels in any channel: a pixel further off gets a colour of its own
GIF_RARE_COLOURS = 16  # at most this many palette entries for such colours


def grey_bins(step: float) -> np.ndarray:
    """The bin of each grey value (256 entries): bins `step` greys wide, but black and white
    each a bin of their own, so a black background, a redacted band or white burned-in
    text stays exactly black or white."""
    import numpy as np

    inner = 1 + np.floor((np.arange(1, 255) - 1) / step).astype(np.int64)
    return np.concatenate(([0], inner, [inner[-1] + 1])).astype(np.uint8)


def bin_greys(histogram: np.ndarray, bins: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """The grey each bin is shown as for a frame with this 256-bin `histogram`: the mean
    of its pixels, or its `previous` grey where that is within one grey of the mean.

    Keeping the grey keeps the unchanged pixels of the bin unchanged on screen, so
    they stay transparent: a band of a noisy static frame brightened by 40 greys
    cost 0.41 of the first frame's bytes with fresh means, 0.13 with kept ones.
    """
    import numpy as np

    count = int(bins[-1]) + 1
    weight = np.bincount(bins, histogram, count)
    mean = np.bincount(bins, histogram * np.arange(256), count) / np.maximum(weight, 1)  # 0: no pixel in it
    if previous is not None:
        mean = np.where(np.abs(mean - previous) <= 1, previous, mean)
    return np.rint(mean).astype(np.uint8)


def grey_psnr(histogram: np.ndarray, bins: np.ndarray, greys: np.ndarray) -> float:
    """PSNR of a frame with this 256-bin `histogram` shown through `bins` and their `greys`:
    worked out on the histogram (256 values, not the pixels), exactly as `psnr` would."""
    import numpy as np

    error = np.arange(256) - greys.take(bins).astype(np.int64)
    return _psnr_of(int((histogram * error * error).sum()), int(histogram.sum()))


def choose_grey_bins(histogram: np.ndarray, previous: tuple | None) -> tuple[np.ndarray, np.ndarray]:
    """(bins, greys) for a frame: the `previous` frame's bins while they keep it at
    GIF_MIN_PSNR_GREY, else the widest of GIF_GREY_STEPS that does (0.4 ms a 512^2 frame).

    Keeping the bins keeps the palette indices of unchanged pixels: a new width
    for a few changed rows of a noisy static frame redrew all of it (0.96 of the
    first frame's bytes where 0.03 were enough).  A width is only left when the
    target is missed, never for a coarser one, so a clip whose first frame needs
    fine bins keeps them; its noise, which sets the width, changes little.
    """
    if previous is not None:
        bins = previous[0]
        greys = bin_greys(histogram, bins, previous[1])
        if grey_psnr(histogram, bins, greys) >= GIF_MIN_PSNR_GREY:
            return bins, greys
    for step in GIF_GREY_STEPS:
        bins = grey_bins(step)
        greys = bin_greys(histogram, bins)
        if grey_psnr(histogram, bins, greys) >= GIF_MIN_PSNR_GREY:
            break
    return bins, greys


def quantise_grey(frame: np.ndarray, histogram: np.ndarray, previous: tuple | None = None):
    """Palette indices of `frame` (whose 256-bin `histogram` is given), its grey palette
    (N x 3, R=G=B, N < 256), the grey each pixel is then shown as, and the (bins, greys)
    used, for the next frame (None when the frame's few greys were kept exactly)."""
    import numpy as np

    present = np.flatnonzero(histogram)
    if len(present) <= GIF_GREY_EXACT:  # kept exactly: nothing to gain from merging so few
        bins, greys, chosen = np.zeros(256, dtype=np.uint8), present.astype(np.uint8), None
        bins[present] = np.arange(len(present))
    else:
        bins, greys = chosen = choose_grey_bins(histogram, previous)
    indices = bins.take(frame)
    return indices, np.repeat(greys[:, None], 3, axis=1), greys.take(indices), chosen


def quantise_colour(frame: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Palette indices of an RGB `frame`, its own palette of at most `count` colours, and
    the colour each pixel is then shown as.

    Median cut splits colour space by pixel count, so a colour only a few
    pixels have (an ultrasound's green ECG marker, a blue icon) goes to the
    nearest big box: up to 116 levels off on pydicom's ultrasound cines, at a
    PSNR that still passed.  Such colours take over the least-used entries.
    """
    import numpy as np
    from PIL import Image

    image = Image.fromarray(frame).quantize(colors=min(count, GIF_MAX_COLOURS),
                                            method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette = np.frombuffer(image.palette.tobytes(), dtype=np.uint8).reshape(-1, 3)[:count].copy()
    indices = np.asarray(image).copy()
    values = np.take(palette, indices, axis=0)  # 1 ms; palette[indices] takes 3
    far = channel_error(values, frame) > GIF_COLOUR_MAX_ERROR
    if far.any():
        give_rare_colours_entries(frame, indices, palette, far)
        values = np.take(palette, indices, axis=0)
    return indices, palette, values


def channel_error(shown: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Per pixel, the largest |shown - wanted| over the colour channels (int16)."""
    import numpy as np

    error = np.abs(shown.astype(np.int16) - wanted)
    return np.maximum(np.maximum(error[..., 0], error[..., 1]), error[..., 2])  # 20x drift.max(axis=2)


def give_rare_colours_entries(frame: np.ndarray, indices: np.ndarray, palette: np.ndarray, far: np.ndarray) -> None:
    """Map the `far` pixels to colours of their own, in place, in the least-used palette entries.

    Up to a quarter of the entries (at most 16) are taken; the pixels that
    used one move to the remaining entry nearest to its colour (per entry, not
    per pixel: 0.3 ms a frame where the nearest entry for each pixel took 3).
    """
    import numpy as np
    from PIL import Image

    taken = min(GIF_RARE_COLOURS, len(palette) // 4)
    if taken == 0:
        return
    rare = Image.fromarray(np.ascontiguousarray(frame[far][None])).quantize(
        colors=taken, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    rare_palette = np.frombuffer(rare.palette.tobytes(), dtype=np.uint8).reshape(-1, 3)[:taken]
    rare_indices = np.asarray(rare)[0]
    freed = np.argsort(np.bincount(indices.ravel(), minlength=len(palette)), kind="stable")[: len(rare_palette)]
    kept = np.setdiff1d(np.arange(len(palette)), freed)
    distance = ((palette[freed, None, :].astype(np.int32) - palette[None, kept, :]) ** 2).sum(axis=2)
    moved_to = np.arange(len(palette), dtype=indices.dtype)
    moved_to[freed] = kept[distance.argmin(axis=1)]
    np.take(moved_to, indices, out=indices)
    palette[freed] = rare_palette
    indices[far] = freed[rare_indices]


def psnr(shown: np.ndarray, wanted: np.ndarray) -> float:
    """Peak signal-to-noise ratio of 8-bit `shown` against `wanted`, in dB (inf if equal).

    The squared errors are summed exactly (integers), so this agrees to the last
    bit with the error `grey_psnr` works out from a histogram: a frame
    written at the target is measured at the target, not a rounding under it.
    """
    import numpy as np

    error = shown.astype(np.int32) - wanted
    return _psnr_of(int(np.square(error).sum(dtype=np.int64)), error.size)  # 0.4 ms for 512^2 RGB; float32 took 2.6


def _psnr_of(squared_error: int, count: int) -> float:
    """PSNR in dB of `count` 8-bit samples whose squared errors sum to `squared_error`."""
    import math

    return float("inf") if squared_error == 0 else 10 * math.log10(255.0**2 * count / squared_error)


def in_long_runs(mask: np.ndarray, length: int) -> np.ndarray:
    """The pixels of a 2-D boolean `mask` that lie in a run of at least `length` True pixels along a row."""
    import numpy as np

    cols = mask.shape[1]
    starts = mask[:, : max(0, cols - length + 1)].copy()  # True where a whole run of `length` starts
    for shift in range(1, length):  # loops over the run's length, not the pixels
        starts &= mask[:, shift : shift + starts.shape[1]]
    out = np.zeros_like(mask)
    for shift in range(length):
        out[:, shift : shift + starts.shape[1]] |= starts
    return out


def gif_grey_update(frame: np.ndarray, shown: np.ndarray | None, previous: tuple | None):
    """How to draw grey `frame` over the canvas `shown`, the previous frame's (bins, greys)
    given; returns indices, palette, drawn, canvas and the (bins, greys) for the next frame.

    The canvas becomes exactly the quantised frame.  A pixel whose grey is unchanged is
    left transparent only inside a row-wise run of GIF_GREY_RUN or more: LZW codes
    a long run of one index in a few codes, but a lone transparent pixel is one more
    symbol in the noise.  On noisy clips half the pixels keep their grey, scattered,
    and leaving all of them transparent made the GIF 21-29% larger than redrawing
    them; on a static textured background with a moving part, redrawing everything
    changed made it 3x larger.  Runs of 8: within 3% of the better of the two on
    each clip, 5% under both on a smooth one (runs of 4: 6-13% over on noise; runs
    of 16: 9% over on the static background).
    """
    import numpy as np

    histogram = np.bincount(frame.ravel(), minlength=256)
    indices, palette, values, chosen = quantise_grey(frame, histogram, previous)
    if shown is None:
        return indices, palette, np.ones(frame.shape, dtype=bool), values, chosen
    return indices, palette, ~in_long_runs(values == shown, GIF_GREY_RUN), values, chosen


def gif_colour_update(frame: np.ndarray, shown: np.ndarray | None):
    """How to draw RGB `frame` over the canvas `shown`; returns indices, palette, drawn, canvas.

    Each (palette size, threshold) step is tried in turn and the first whose
    canvas reaches the PSNR target against the frame is kept; a pixel is redrawn
    where it drifted more than the threshold from the canvas.
    """
    import numpy as np

    if shown is not None:
        drift = channel_error(frame, shown)
    for count, threshold in GIF_COLOUR_STEPS:
        indices, palette, values = quantise_colour(frame, count)
        if shown is None:
            drawn, canvas = np.ones(frame.shape[:2], dtype=bool), values
        else:
            drawn = drift > threshold
            canvas = np.where(drawn[..., None], values, shown)
        if psnr(canvas, frame) >= GIF_MIN_PSNR_COLOUR:
            break
    return indices, palette, drawn, canvas


def gif_frame_update(frame: np.ndarray, shown: np.ndarray | None, bins: tuple | None):
    """Choose how to draw `frame` over the canvas `shown`, the grey `bins` of the frame
    before given; returns indices, palette, drawn, canvas, and the bins for the next frame
    (see `gif_grey_update`, `gif_colour_update`)."""
    if frame.ndim == 2:
        return gif_grey_update(frame, shown, bins)
    return (*gif_colour_update(frame, shown), None)


@contextlib.contextmanager
def gif_writer(path: Path, durations_ms: Iterable[float], max_size: int | None = DEFAULT_GIF_MAX_SIZE):
    """Stream frames into a looping GIF89a; yields ``write(frame)``.

    Each frame carries its own palette (greys in bins, or colours by median
    cut) and only the pixels it redraws: the rest is transparent, and the frame
    is cropped to the box of what it draws (see `gif_frame_update`).  The
    transparent index is the palette's first free entry, so a frame's colour
    table is no longer than it needs.  Only the displayed canvas is kept
    between frames, so a long clip streams in constant memory.
    """
    import numpy as np
    from PIL import GifImagePlugin, Image

    delays = _gif_delays(durations_ms)
    state: dict = {"shown": None, "bins": None}  # the canvas, and the grey bins of the frame before

    def write(frame: np.ndarray) -> None:
        frame = fit_within(frame, max_size)
        if state["shown"] is None:
            _write_gif_header(fp, frame.shape[1], frame.shape[0])
        shown, bins = state["shown"], state["bins"]
        indices, palette, drawn, state["shown"], state["bins"] = gif_frame_update(frame, shown, bins)
        rows, cols = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
        if rows.size:
            top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        else:  # nothing changed: a 1x1 transparent frame keeps the frame and its delay
            top, bottom, left, right = 0, 1, 0, 1
        transparent = len(palette)
        box = np.where(drawn[top:bottom, left:right], indices[top:bottom, left:right], transparent)
        image = Image.fromarray(box.astype(np.uint8), mode="L").convert("P")
        image.putpalette(palette.astype(np.uint8).tobytes() + b"\x00\x00\x00")  # + the transparent entry
        for chunk in GifImagePlugin.getdata(
            image, offset=(int(left), int(top)), duration=next(delays),
            transparency=transparent, disposal=1, include_color_table=True,
        ):
            fp.write(chunk)

    with open(path, "wb") as fp:
        yield write
        fp.write(b";")  # GIF trailer


def _write_gif_header(fp, width: int, height: int) -> None:
    """GIF89a signature, screen descriptor (no global palette), loop-forever extension."""
    import struct

    fp.write(b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00")
    fp.write(b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00")  # Netscape loop, 0 = forever
