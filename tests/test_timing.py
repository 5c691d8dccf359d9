"""Frame timing of cine loops: which attribute sets the rate, exact rates, GIF delays."""

from __future__ import annotations

import re
from fractions import Fraction

import av
import pydicom
import pytest
from conftest import testdata
from pydicom.dataset import Dataset

from _dicom_converter.base import DEFAULT_FPS
from _dicom_converter.cli import main
from _dicom_converter.gif import gif_durations
from _dicom_converter.timing import _rate_of, frame_timing

FRAME_TIME = 0x00181063          # (0018,1063) Frame Time
FRAME_TIME_VECTOR = 0x00181065   # (0018,1065) Frame Time Vector


def cine_dataset(frames: int = 4, **attributes) -> Dataset:
    """A bare multi-frame dataset: NumberOfFrames plus the given Cine Module attributes.

    `attributes` are set by keyword, e.g. ``FrameTime=40`` or
    ``FrameIncrementPointer=FRAME_TIME``; nothing else is in the dataset.
    """
    ds = Dataset()
    ds.NumberOfFrames = frames
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


# -----------------------------------------------------------------------------
# Which attribute gives the rate
# -----------------------------------------------------------------------------

def test_frame_increment_pointer_to_frame_time_wins_over_the_rates():
    ds = cine_dataset(
        5, FrameIncrementPointer=FRAME_TIME, FrameTime=40,
        RecommendedDisplayFrameRate=7, CineRate=3,
    )
    timing = frame_timing(ds, 5, None)
    assert timing.rate == Fraction(25)
    assert timing.durations_ms == (40.0,) * 5
    assert "Frame Time" in timing.source


def test_frame_increment_pointer_to_frame_time_vector_keeps_variable_timing():
    # Increments between frames: 0 before frame 1, then 100, 50, 100 ms.
    ds = cine_dataset(
        4, FrameIncrementPointer=FRAME_TIME_VECTOR,
        FrameTimeVector=[0, 100, 50, 100], FrameTime=40,
    )
    timing = frame_timing(ds, 4, None)
    assert timing.source == "Frame Time Vector"
    # Each frame shows until the next one; the last (no increment after it) gets the mean.
    assert timing.durations_ms[:3] == (100.0, 50.0, 100.0)
    assert timing.durations_ms[3] == pytest.approx(250 / 3)
    assert len(timing.durations_ms) == 4
    assert timing.rate == Fraction(12)  # 1000 / mean 83.33 ms
    assert gif_durations(timing.durations_ms) == [100, 50, 100, 80]


def test_pointer_to_a_missing_frame_time_vector_falls_back_to_frame_time():
    ds = cine_dataset(4, FrameIncrementPointer=FRAME_TIME_VECTOR, FrameTime=50)
    timing = frame_timing(ds, 4, None)
    assert timing.rate == Fraction(20)
    assert timing.durations_ms == (50.0,) * 4


def test_frame_time_alone():
    ds = cine_dataset(3, FrameTime=100)
    timing = frame_timing(ds, 3, None)
    assert timing.rate == Fraction(10)
    assert timing.durations_ms == (100.0, 100.0, 100.0)
    assert timing.source == "Frame Time 100 ms"


def test_frame_time_wins_over_recommended_rate_and_cine_rate():
    ds = cine_dataset(3, FrameTime=20, RecommendedDisplayFrameRate=7, CineRate=3)
    assert frame_timing(ds, 3, None).rate == Fraction(50)


def test_recommended_display_frame_rate_wins_over_cine_rate():
    ds = cine_dataset(3, RecommendedDisplayFrameRate=24, CineRate=3)
    timing = frame_timing(ds, 3, None)
    assert timing.rate == Fraction(24)
    assert timing.durations_ms == pytest.approx([1000 / 24] * 3)
    assert "Recommended Display Frame Rate" in timing.source


def test_cine_rate_alone():
    ds = cine_dataset(2, CineRate=5)
    timing = frame_timing(ds, 2, None)
    assert timing.rate == Fraction(5)
    assert timing.durations_ms == (200.0, 200.0)
    assert "Cine Rate" in timing.source


def test_no_timing_attribute_gives_ten_fps():
    timing = frame_timing(cine_dataset(6), 6, None)
    assert DEFAULT_FPS == Fraction(10)
    assert timing.rate == Fraction(10)
    assert timing.durations_ms == (100.0,) * 6
    assert timing.source == "default"


def test_fps_option_overrides_the_file():
    ds = cine_dataset(3, FrameIncrementPointer=FRAME_TIME, FrameTime=40, CineRate=3)
    timing = frame_timing(ds, 3, Fraction(25, 2))
    assert timing.rate == Fraction(25, 2)
    assert timing.durations_ms == (80.0, 80.0, 80.0)
    assert timing.source == "--fps"


@pytest.mark.parametrize("frame_time", [0, -40])
def test_zero_or_negative_frame_time_is_ignored(frame_time):
    ds = cine_dataset(3, FrameIncrementPointer=FRAME_TIME, FrameTime=frame_time,
                      RecommendedDisplayFrameRate=15)
    assert frame_timing(ds, 3, None).rate == Fraction(15)
    only = cine_dataset(3, FrameTime=frame_time)
    assert frame_timing(only, 3, None).rate == DEFAULT_FPS


# -----------------------------------------------------------------------------
# Exact rates
# -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("fps", "expected"),
    [
        (29.97, Fraction(30000, 1001)),
        (59.94, Fraction(60000, 1001)),
        (23.976, Fraction(24000, 1001)),
        (25.0, Fraction(25)),
        (1000 / 33.3667, Fraction(30000, 1001)),  # NTSC Frame Time
        (12.5, Fraction(25, 2)),
        (7.5, Fraction(15, 2)),
        (1000 / 66.67, Fraction(15)),
    ],
)
def test_rate_of_gives_exact_fractions(fps, expected):
    assert _rate_of(fps) == expected


def test_frame_time_80_ms_is_exactly_12_5_fps():
    assert frame_timing(cine_dataset(2, FrameTime=80), 2, None).rate == Fraction(25, 2)


# -----------------------------------------------------------------------------
# GIF delays
# -----------------------------------------------------------------------------

def test_gif_durations_carry_rounding_over_300_frames():
    delays = gif_durations([33.33] * 300)
    assert len(delays) == 300
    assert all(d % 10 == 0 for d in delays)
    assert set(delays) == {30, 40}           # neither always 30 (too fast) nor 40 (too slow)
    assert abs(sum(delays) - 300 * 33.33) <= 10


def test_gif_durations_15_fps_does_not_drift_to_14_3():
    delays = gif_durations([1000 / 15] * 15)
    assert abs(sum(delays) - 1000) <= 10     # rounding each alone would give 15 x 70 = 1050
    assert set(delays) == {60, 70}


def test_gif_durations_exact_ticks_unchanged():
    assert gif_durations([100, 50, 250, 20]) == [100, 50, 250, 20]


def test_gif_durations_never_below_20_ms():
    assert gif_durations([5, 10, 12]) == [20, 20, 20]


# -----------------------------------------------------------------------------
# A real cine file
# -----------------------------------------------------------------------------

def test_real_cine_rate_reaches_text_and_mp4(tmp_path, capsys):
    source = testdata("examples_ybr_color.dcm")
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    assert float(ds.FrameTime) == pytest.approx(33.333)  # i.e. 30 frames per second
    frames = int(ds.NumberOfFrames)
    expected = Fraction(30)

    assert main([str(source), "-o", str(tmp_path), "--no-gif"]) == 0

    text = (tmp_path / "examples_ybr_color.txt").read_text(encoding="utf-8")
    line = re.search(r"^  FrameRate +(.*)$", text, re.MULTILINE)
    assert line is not None, text[:2000]
    assert line.group(1) == "30 fps (Frame Time 33.333 ms)"

    with av.open(str(tmp_path / "examples_ybr_color.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == expected
        assert stream.frames == frames
        assert (stream.width, stream.height) == (int(ds.Columns), int(ds.Rows))


def test_fps_option_reaches_the_mp4(tmp_path, capsys):
    source = testdata("examples_ybr_color.dcm")
    assert main([str(source), "-o", str(tmp_path), "--no-gif", "--fps", "12.5"]) == 0
    with av.open(str(tmp_path / "examples_ybr_color.mp4")) as container:
        assert container.streams.video[0].average_rate == Fraction(25, 2)
    text = (tmp_path / "examples_ybr_color.txt").read_text(encoding="utf-8")
    assert re.search(r"^  FrameRate +12\.5 fps \(--fps\)$", text, re.MULTILINE)
