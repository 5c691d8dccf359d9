"""The writers, judged by reading their files back: PNG, GIF, MP4 and staged outputs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import write_gif, write_mp4
from PIL import Image, ImageSequence

from _dicom_converter.gif import GIF_MIN_PSNR_COLOUR, GIF_MIN_PSNR_GREY, psnr
from _dicom_converter.job import in_own_thread
from _dicom_converter.writers import staged_outputs, write_png


def grey_ramp(height: int = 16) -> np.ndarray:
    """A uint8 frame `height` rows tall whose columns run 0..255 (256 wide)."""
    return np.tile(np.arange(256, dtype=np.uint8), (height, 1))


def gif_frames(path: Path) -> list[tuple[np.ndarray, int]]:
    """Every frame of a GIF as displayed (composited, as RGB), with its delay in ms."""
    with Image.open(path) as im:
        return [
            (np.asarray(frame.convert("RGB")).copy(), frame.info["duration"])
            for frame in ImageSequence.Iterator(im)
        ]


def as_grey(pixels: np.ndarray) -> np.ndarray:
    """The grey plane of a displayed frame, asserting it really is grey (R = G = B)."""
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    return pixels[..., 0]


def decode_mp4(path: Path, fmt: str = "gray"):
    """(stream facts, decoded frames as arrays in `fmt`, first frame as yuv420p planes)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        facts = {
            "codec": ctx.name, "profile": stream.profile, "pix_fmt": ctx.pix_fmt,
            "frames": stream.frames, "rate": stream.average_rate,
            "width": stream.width, "height": stream.height,
            "color_range": int(ctx.color_range), "colorspace": int(ctx.colorspace),
        }
        frames, yuv = [], None
        for frame in container.decode(stream):
            if yuv is None:
                yuv = frame.to_ndarray(format="yuv420p")
            frames.append(frame.to_ndarray(format=fmt))
    return facts, frames, yuv


# -----------------------------------------------------------------------------
# PNG
# -----------------------------------------------------------------------------

def test_png_16_bit_grey_round_trips_exactly(tmp_path):
    frame = np.arange(65536, dtype=np.uint32).astype(np.uint16).reshape(256, 256)
    write_png(frame, tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "I;16"
        assert im.size == (256, 256)
        back = np.asarray(im)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, frame)


def test_png_8_bit_grey_round_trips_exactly(tmp_path):
    frame = np.arange(7 * 9 * 4, dtype=np.uint8).reshape(7 * 4, 9)  # 28 rows x 9 columns
    write_png(frame, tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "L"
        assert im.size == (9, 28)
        np.testing.assert_array_equal(np.asarray(im), frame)


def test_png_rgb_round_trips_exactly(tmp_path):
    frame = np.random.default_rng(7).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    write_png(frame, tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "RGB"
        assert im.size == (9, 7)
        np.testing.assert_array_equal(np.asarray(im), frame)


@pytest.mark.parametrize("frame", [
    np.random.default_rng(1).integers(0, 65536, (33, 17), dtype=np.uint16),
    np.random.default_rng(2).integers(0, 256, (40, 30), dtype=np.uint8)[::2, 1::3],  # not contiguous
    np.random.default_rng(3).integers(0, 256, (5, 11, 3), dtype=np.uint8),
], ids=["grey16", "grey8-strided", "rgb"])
def test_png_is_read_alike_by_ffmpeg_with_valid_checksums(tmp_path, frame):
    """The PNG writer is our own (see write_png): a second decoder and the CRCs check it."""
    write_png(frame, tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as im:
        im.verify()  # every chunk's CRC
    with av.open(str(tmp_path / "a.png")) as container:
        decoded = next(container.decode(video=0))
    expected_format = {np.dtype(np.uint16): "gray16be", np.dtype(np.uint8): "gray"}.get(frame.dtype)
    assert decoded.format.name == (expected_format if frame.ndim == 2 else "rgb24")
    np.testing.assert_array_equal(decoded.to_ndarray(), frame)


# -----------------------------------------------------------------------------
# GIF
# -----------------------------------------------------------------------------

def test_gif_loops_forever_with_size_and_grey_values(tmp_path):
    values = (0, 77, 128, 200, 255)
    frames = [np.full((20, 30), v, dtype=np.uint8) for v in values]
    frames[2][5:10, 3:8] = 13
    write_gif(frames, tmp_path / "a.gif", [100, 50, 30, 250, 40])
    with Image.open(tmp_path / "a.gif") as im:
        assert im.info["loop"] == 0
        assert im.size == (30, 20)
        assert im.n_frames == 5
    shown = gif_frames(tmp_path / "a.gif")
    assert [d for _, d in shown] == [100, 50, 30, 250, 40]
    for (pixels, _), expected in zip(shown, frames):
        # few distinct greys fit the palette: they are kept exactly, as pure greys
        np.testing.assert_array_equal(as_grey(pixels), expected)


def test_gif_keeps_every_frame_and_the_total_duration(tmp_path):
    a = np.full((8, 8), 10, dtype=np.uint8)
    b = np.full((8, 8), 240, dtype=np.uint8)
    durations = [33.33] * 3 + [100, 100]
    write_gif([a, a, a, b, a], tmp_path / "a.gif", durations)
    shown = gif_frames(tmp_path / "a.gif")
    # unchanged frames are written as tiny transparent frames, not merged away
    assert [int(as_grey(p)[0, 0]) for p, _ in shown] == [10, 10, 10, 240, 10]
    assert [d for _, d in shown] == [30, 40, 30, 100, 100]  # rounding error carried
    assert abs(sum(d for _, d in shown) - sum(durations)) <= 10


def test_gif_grey_clip_meets_its_psnr_target_with_fewer_levels(tmp_path):
    rng = np.random.default_rng(7)
    base = np.tile(np.linspace(30, 220, 96), (64, 1))
    frames = [np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8) for _ in range(6)]
    write_gif(frames, tmp_path / "n.gif", [100] * 6)
    shown = gif_frames(tmp_path / "n.gif")
    assert len(shown) == 6
    for (pixels, _), frame in zip(shown, frames):
        grey = as_grey(pixels)
        assert psnr(grey, frame) >= GIF_MIN_PSNR_GREY
        assert len(np.unique(grey)) < len(np.unique(frame))  # levels were really reduced


def test_gif_rgb_keeps_colours_of_the_first_frame(tmp_path):
    red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    first = np.zeros((8, 12, 3), dtype=np.uint8)
    first[:, :4], first[:, 4:8], first[:, 8:] = red, green, blue
    second = np.zeros_like(first)
    second[:4], second[4:] = blue, red
    write_gif([first, second], tmp_path / "c.gif", [100, 100])
    shown = gif_frames(tmp_path / "c.gif")
    assert len(shown) == 2
    np.testing.assert_array_equal(shown[0][0], first)
    np.testing.assert_array_equal(shown[1][0], second)


def test_gif_rgb_keeps_colours_that_appear_after_the_first_frame(tmp_path):
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))   # 16 x 64 grey ramp
    first = np.stack([grey] * 3, axis=-1)
    second = first.copy()
    second[4:12, 20:40] = (220, 30, 30)                               # a red patch
    write_gif([first, second], tmp_path / "d.gif", [100, 100])
    shown = gif_frames(tmp_path / "d.gif")
    assert psnr(shown[0][0], first) >= GIF_MIN_PSNR_COLOUR
    patch = shown[1][0][4:12, 20:40].astype(int)
    assert (patch[..., 0] - patch[..., 2]).min() > 100              # red, not grey (92,92,92)


def test_gif_downscales_large_frames_only(tmp_path):
    big = np.zeros((1024, 768), dtype=np.uint8)
    write_gif([big, big], tmp_path / "big.gif", [100, 100], max_size=512)
    write_gif([big, big], tmp_path / "full.gif", [100, 100], max_size=None)
    with Image.open(tmp_path / "big.gif") as im, Image.open(tmp_path / "full.gif") as full:
        assert im.size == (384, 512) and full.size == (768, 1024)


# -----------------------------------------------------------------------------
# MP4
# -----------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [Fraction(25), Fraction(30000, 1001), Fraction(25, 2)])
def test_mp4_stream_is_browser_h264(tmp_path, rate):
    frames = [np.full((16, 32), v, dtype=np.uint8) for v in (40, 80, 120, 160, 200, 240, 30)]
    count = write_mp4(iter(frames), tmp_path / "a.mp4", rate, 18)
    assert count == 7
    facts, decoded, _ = decode_mp4(tmp_path / "a.mp4")
    assert facts["codec"] == "h264"
    assert facts["profile"] == "High"
    assert facts["pix_fmt"] == "yuv420p"
    assert facts["frames"] == 7
    assert len(decoded) == 7
    assert facts["rate"] == rate
    assert facts["color_range"] == 1          # AVCOL_RANGE_MPEG: limited (TV) range
    assert facts["colorspace"] in (5, 6)      # BT.470BG / SMPTE 170M: both BT.601
    assert (facts["width"], facts["height"]) == (32, 16)
    for got, want in zip(decoded, frames):
        # one step of limited-range luma is 255/219 = 1.16 grey levels
        assert abs(float(got.astype(float).mean()) - float(want.mean())) <= 1.2


def test_mp4_grey_ramp_is_limited_range_and_accurate(tmp_path):
    ramp = grey_ramp(16)
    write_mp4([ramp] * 3, tmp_path / "a.mp4", Fraction(10), 18)
    _, decoded, yuv = decode_mp4(tmp_path / "a.mp4")
    error = np.abs(decoded[0].astype(int) - ramp.astype(int))
    assert error.mean() < 1.0
    y = yuv[:16]  # the luma plane of the 16-row frame
    assert 16 <= int(y.min()) <= 19     # black near 16, not 0
    assert 232 <= int(y.max()) <= 235   # white near 235, not 255


def test_mp4_odd_size_is_padded_not_scaled(tmp_path):
    rows, cols = np.mgrid[0:65, 0:63]                       # 63 wide x 65 tall
    frame = np.clip(cols * 4 + rows // 8, 0, 255).astype(np.uint8)
    write_mp4([frame, frame], tmp_path / "a.mp4", Fraction(10), 18)
    facts, decoded, _ = decode_mp4(tmp_path / "a.mp4")
    assert (facts["width"], facts["height"]) == (64, 66)
    assert decoded[0].shape == (66, 64)
    region = decoded[0][:65, :63].astype(int)
    assert np.abs(region - frame).mean() < 1.5
    assert np.abs(region - frame).max() <= 4
    # The padding repeats the last column and row rather than adding black.
    assert abs(int(decoded[0][:65, 63].mean()) - int(frame[:, 62].mean())) <= 3
    assert abs(int(decoded[0][65, :63].mean()) - int(frame[64].mean())) <= 3


def test_mp4_index_comes_before_media_data(tmp_path):
    write_mp4([grey_ramp()] * 4, tmp_path / "a.mp4", Fraction(10), 18)
    data = (tmp_path / "a.mp4").read_bytes()
    moov, mdat = data.find(b"moov"), data.find(b"mdat")
    assert moov > 0 and mdat > 0
    assert moov < mdat


def test_mp4_rgb_clip_decodes_in_colour(tmp_path):
    frame = np.zeros((32, 48, 3), dtype=np.uint8)
    frame[..., 0] = 200
    frame[..., 1] = (np.arange(48) * 5).astype(np.uint8)
    frame[..., 2] = 30
    count = write_mp4([frame] * 4, tmp_path / "a.mp4", Fraction(15), 18)
    assert count == 4
    facts, decoded, _ = decode_mp4(tmp_path / "a.mp4", fmt="rgb24")
    assert facts["pix_fmt"] == "yuv420p"
    assert len(decoded) == 4
    got = decoded[0].astype(int)
    assert got.shape == (32, 48, 3)
    assert abs(got[..., 0].mean() - 200) < 4
    assert abs(got[..., 1].mean() - frame[..., 1].mean()) < 4
    assert abs(got[..., 2].mean() - 30) < 4
    assert np.abs(got - frame).mean() < 4
    assert np.abs(got[..., 0] - got[..., 2]).mean() > 100   # not grey


# -----------------------------------------------------------------------------
# Staged outputs
# -----------------------------------------------------------------------------

def test_writer_in_own_thread_writes_in_order_and_reports_its_error():
    import contextlib

    written = []

    @contextlib.contextmanager
    def writer(fail_at=None):
        def write(frame):
            if frame == fail_at:
                raise OSError(28, "No space left on device")
            written.append(frame)
        yield write
        written.append("closed")

    with in_own_thread(writer()) as write:
        for frame in range(50):
            write(frame)
    assert written == list(range(50)) + ["closed"]

    written.clear()
    with pytest.raises(OSError, match="No space left"):
        with in_own_thread(writer(fail_at=3)) as write:
            for frame in range(200):  # more than the queue holds: must not block after the failure
                write(frame)
    assert written == [0, 1, 2]


def test_staged_outputs_rename_on_success(tmp_path):
    png, text = tmp_path / "a.png", tmp_path / "a_sub" / "a.txt"
    with staged_outputs(tmp_path / "a") as (output, finals):
        temp_png, temp_text = output(".png"), output("_sub/a.txt")
        assert finals == [png, text]
        assert temp_png.parent == png.parent and temp_text.parent == text.parent
        assert temp_png.name.startswith(".") and temp_png.name.endswith(".part")
        temp_png.write_bytes(b"png")
        temp_text.write_text("text")
        assert not png.exists() and not text.exists()
    assert png.read_bytes() == b"png"
    assert text.read_text() == "text"
    assert list(tmp_path.rglob("*.part")) == []
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "a.png", "a_sub/a.txt"
    ]


def test_staged_outputs_leave_nothing_on_error(tmp_path):
    png, gif, text = tmp_path / "a.png", tmp_path / "a.gif", tmp_path / "a.txt"
    with pytest.raises(RuntimeError, match="boom"):
        with staged_outputs(tmp_path / "a") as (output, _):
            output(".png").write_bytes(b"png")
            output(".gif").write_bytes(b"gif")
            output(".txt")  # handed out but never written
            raise RuntimeError("boom")
    assert not png.exists() and not gif.exists() and not text.exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_halving_a_frame_gives_pillows_box_resize_bytes():
    """`fit_within`'s numpy path for an exact half equals Pillow's BOX resize, grey and RGB."""
    import numpy as np
    from PIL import Image

    from _dicom_converter.writers import fit_within, halved

    rng = np.random.default_rng(7)
    for shape in [(512, 512), (256, 512), (64, 128, 3), (2, 2), (1024, 1024), (1024, 256), (512, 128, 3)]:
        frame = rng.integers(0, 256, shape, dtype=np.uint8)
        frame[0, :2] = 255  # the rounding of 255 + 255 + 1 must not wrap
        pillow = np.asarray(Image.fromarray(frame).resize((shape[1] // 2, shape[0] // 2), Image.Resampling.BOX))
        if shape[1] >= shape[0]:  # taller frames stay with Pillow (it may take their rows first)
            assert np.array_equal(halved(frame), pillow), shape
        assert np.array_equal(fit_within(frame, max(shape[:2]) // 2), pillow), shape


@pytest.mark.parametrize("shape", [(256, 256), (200, 256), (17, 256), (1, 1), (256, 256, 3), (255, 131, 3)])
def test_thumbnail_jpeg_is_the_jpeg_pillow_writes(shape):
    """The thumbnail goes through imagecodecs' libjpeg-turbo for its speed; its bytes are those
    of Pillow's JPEG writer at the same quality (what the thumbnails were before)."""
    import io

    from _dicom_converter.writers import THUMB_QUALITY, thumbnail_jpeg

    rng = np.random.default_rng(sum(shape))
    noise = (rng.random(shape) * 255).astype(np.uint8)
    smooth = np.clip(np.cumsum(noise.astype(int), axis=0) // shape[0], 0, 255).astype(np.uint8)
    for picture in (noise, smooth):
        pillow = io.BytesIO()
        Image.fromarray(picture).save(pillow, "JPEG", quality=THUMB_QUALITY)
        assert thumbnail_jpeg(picture) == pillow.getvalue()
