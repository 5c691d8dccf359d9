"""Frame timing: how long each frame of a cine lasts (PS3.3 C.7.6.5, C.7.6.6), and the
rate an MP4 and a GIF play it at.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import TYPE_CHECKING

from _dicom_converter.base import DEFAULT_FPS, CorruptFile
from _dicom_converter.reading import is_multi

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


@dataclasses.dataclass(frozen=True)
class Timing:
    """How long each frame shows: a nominal rate plus per-frame durations in ms."""

    rate: Fraction
    durations_ms: tuple[float, ...]
    source: str

    def describe(self) -> str:
        return f"{float(self.rate):.4g} fps ({self.source})"


def frame_timing(ds: Dataset, frames: int, fps: Fraction | None) -> Timing:
    """The frame rate of a cine (PS3.3 C.7.6.5 Cine Module), or `fps` when given.

    Order of precedence: the attribute that Frame Increment Pointer names
    (Frame Time or Frame Time Vector), then Frame Time, Recommended Display
    Frame Rate, Cine Rate, and finally 10 fps.  A Frame Time Vector keeps its
    variable timing as per-frame durations.
    """
    if fps is not None:
        return _constant_timing(Fraction(fps), frames, "--fps")
    order = [k for k in frame_increment_keywords(ds) if k in ("FrameTime", "FrameTimeVector")]
    order += ["FrameTime", "RecommendedDisplayFrameRate", "CineRate"]
    for keyword in order:
        timing = _timing_from(ds, keyword, frames)
        if timing is not None:
            return timing
    return _constant_timing(DEFAULT_FPS, frames, "default")


def frame_increment_keywords(ds: Dataset) -> list[str]:
    """The keywords Frame Increment Pointer (PS3.3 C.7.6.6) names: what the frames step through."""
    pointers = ds.get("FrameIncrementPointer") or []
    return [_keyword_of(tag) for tag in (pointers if is_multi(pointers) else [pointers])]


def _keyword_of(tag) -> str:
    from pydicom.datadict import keyword_for_tag

    try:
        return keyword_for_tag(tag)
    except Exception:
        return ""


def _timing_from(ds: Dataset, keyword: str, frames: int) -> Timing | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    try:
        if keyword == "FrameTimeVector":
            vector = [float(v) for v in (value if is_multi(value) else [value])]
            # The first entry is the time before the first frame, usually 0 (C.7.6.5.1.2).
            durations = [v for v in vector[1:] if v > 0]
            if len(durations) < frames - 1:
                return None
            durations = durations[: frames - 1]
            mean = sum(durations) / len(durations)
            durations = durations + [mean]
            return Timing(_rate_of(1000.0 / mean), tuple(durations), "Frame Time Vector")
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if number <= 0:
        return None
    if keyword == "FrameTime":
        return _constant_timing(_rate_of(1000.0 / number), frames, f"Frame Time {number:g} ms")
    label = "Recommended Display Frame Rate" if keyword.startswith("Recommended") else "Cine Rate"
    return _constant_timing(_rate_of(number), frames, f"{label} {number:g}")


def _rate_of(fps: float) -> Fraction:
    """A rate as an exact fraction: 29.97 -> 30000/1001, 12.5 -> 25/2, 14.9993 -> 15.

    Frame Time is stored in ms with a few decimals (66.67 for 15 fps), so the
    rate it gives is snapped to the nearest NTSC rate (N*1000/1001), whole
    number, or fraction with a small denominator, in that order.
    """
    ntsc = round(fps * 1.001)
    if ntsc and abs(fps * 1.001 - ntsc) <= 1e-4 * fps:
        return Fraction(ntsc * 1000, 1001)
    if round(fps) and abs(fps - round(fps)) <= 1e-3 * fps:
        return Fraction(round(fps))
    small = Fraction(fps).limit_denominator(100)
    if abs(float(small) - fps) <= 1e-4 * fps:
        return small
    return Fraction(fps).limit_denominator(1000)


def _constant_timing(rate: Fraction, frames: int, source: str) -> Timing:
    if rate <= 0:
        raise CorruptFile(f"invalid frame rate {rate}")
    return Timing(rate, tuple([1000.0 / float(rate)] * frames), source)
