"""GIF size and quality targets: at most half of Pillow's optimize=True GIF, PSNR >= 40 dB.

Pillow's GIF is the baseline a plain script writes: every frame at full size, grey
frames with Pillow's 256-grey palette, colour frames with its adaptive palette,
``save_all(..., optimize=True)``.  Ours is measured at its own size (frames larger
than --gif-max-size are scaled down for the GIF only) against the 8-bit frames
scaled the same way.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageSequence

import dicom_converter as dc
from conftest import testdata, write_gif

MIN_PSNR = 40.0
MAX_RATIO = 0.5


def pillow_gif_bytes(frames: list[np.ndarray]) -> int:
    """Size of Pillow's optimize=True animated GIF of `frames` (the baseline)."""
    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], optimize=True,
                   duration=100, loop=0)
    return buffer.tell()


def real_clip(name: str) -> list[np.ndarray]:
    """The 8-bit display frames the converter feeds its encoders for a real file."""
    path = testdata(name)
    frames, _ = dc.rendered_frames(path, dc.read_dataset(path), 255, None)
    return list(frames)


def angiography_like_clip(frames: int = 24, size: int = 1024, seed: int = 3) -> list[np.ndarray]:
    """A noisy angiography-like clip: smooth background, a vessel tree filling with
    contrast over the run, and Gaussian noise of 4 grey levels (quantum mottle)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    background = 150 + 40 * np.sin(6 * x) * np.cos(4 * y)
    out = []
    for k in range(frames):
        fill = min(1.0, k / (frames / 2))
        vessels = sum(np.exp(-((y - 0.3 - 0.2 * b - 0.1 * np.sin(8 * x + b)) ** 2) / 0.0004) for b in range(3))
        image = background - 90 * fill * vessels + rng.normal(0, 4, (size, size))
        out.append(np.clip(image, 0, 255).astype(np.uint8))
    return out


CLIPS = {
    "ultrasound YBR cine (examples_ybr_color)": lambda: real_clip("examples_ybr_color.dcm"),
    "ultrasound 3D cine, 640x480 (color3d_jpeg_baseline)": lambda: real_clip("color3d_jpeg_baseline.dcm"),
    "palette cine (OBXXXX1A_2frame)": lambda: real_clip("OBXXXX1A_2frame.dcm"),
    "noisy angiography-like clip, 1024^2": angiography_like_clip,
}


@pytest.mark.parametrize("name", CLIPS)
def test_gif_is_half_of_pillows_at_40_db(tmp_path, name):
    frames = CLIPS[name]()
    path = tmp_path / "ours.gif"
    write_gif(frames, path, [100] * len(frames))
    shown = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(Image.open(path))]
    assert len(shown) == len(frames)
    for ours, frame in zip(shown, frames):
        wanted = dc.fit_within(frame, dc.DEFAULT_GIF_MAX_SIZE)
        if wanted.ndim == 2:
            ours = ours[..., 0]
        assert dc.psnr(ours, wanted) >= MIN_PSNR
    ratio = path.stat().st_size / pillow_gif_bytes(frames)
    assert ratio <= MAX_RATIO, f"{name}: {ratio:.3f} of Pillow's size"


def test_small_colour_marks_keep_their_colour():
    """A few pixels of a colour of their own (an ECG marker, an icon) must not go to the nearest big box.

    Median cut alone (checked first, so this test is not vacuous) maps them to
    the smooth background's colours, far off; ours keeps them within
    GIF_COLOUR_MAX_ERROR in every channel.
    """
    rows, cols = np.mgrid[0:96, 0:128]
    frame = np.stack([60 + rows, 70 + cols // 2, 90 + (rows + cols) // 4], axis=-1).astype(np.uint8)
    marks = {(10, 10, 3): (0, 200, 0), (40, 100, 4): (40, 60, 220), (80, 20, 2): (230, 20, 20)}
    for (top, left, size), colour in marks.items():
        frame[top : top + size, left : left + size] = colour
    inside = np.zeros(frame.shape[:2], dtype=bool)
    for top, left, size in marks:
        inside[top : top + size, left : left + size] = True

    plain = Image.fromarray(frame).quantize(colors=31, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    plain_rgb = np.asarray(plain.convert("RGB"))
    assert dc.channel_error(plain_rgb, frame)[inside].max() > 100

    indices, palette, shown = dc.quantise_colour(frame, 31)
    assert len(palette) <= 31 and indices.max() < len(palette)
    assert np.array_equal(shown, np.take(palette, indices, axis=0))
    assert dc.channel_error(shown, frame)[inside].max() <= dc.GIF_COLOUR_MAX_ERROR
    assert dc.psnr(shown, frame) >= dc.psnr(plain_rgb, frame) - 0.5  # the background hardly pays for it


def test_ultrasound_gif_keeps_its_overlay_colours(tmp_path):
    """pydicom's Doppler cine: its blue icon and green marker were grey in the GIF (116 levels off)."""
    frames = real_clip("examples_ybr_color.dcm")
    write_gif(frames, tmp_path / "us.gif", [100] * len(frames))
    shown = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(tmp_path / "us.gif"))]
    worst = max(int(dc.channel_error(ours, frame).max()) for ours, frame in zip(shown, frames, strict=True))
    assert worst <= 48, f"a pixel {worst} levels off"
