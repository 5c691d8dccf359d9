"""Our GIFs and MP4s as a browser shows them: Debian's Chromium, headless, via Playwright.

The clips are converted once by the CLI and served on 127.0.0.1.  For each
MP4 the <video> must load at the clip's size, last frames / fps, play, and
show at frame k's time the picture we encoded (the converter's own 8-bit
frame, mean error at most 2 grey levels).  For each GIF the <img> must have
the clip's size, Chromium's GIF decoder must find every frame with its delay,
and the frames must match ours within the GIF's quantisation (about 2.5 levels:
see MAX_GIF_MEAN_ERROR).

Skipped when Playwright or /usr/bin/chromium is missing, failed instead with
REQUIRE_BROWSER=1 (as in CI): see tests/browser.py.
"""

from __future__ import annotations

import dataclasses
import io
import time
import urllib.error
import urllib.request
from fractions import Fraction
from pathlib import Path

import browser
import numpy as np
import pytest
from conftest import run_cli, testdata
from PIL import Image, ImageSequence

from _dicom_converter.base import DEFAULT_GIF_MAX_SIZE
from _dicom_converter.gif import GIF_MIN_PSNR_COLOUR, GIF_MIN_PSNR_GREY
from _dicom_converter.pixels.display import rendered_frames
from _dicom_converter.reading import read_dataset
from _dicom_converter.writers import fit_within

MAX_MEAN_ERROR = 2.0  # grey levels, mean absolute difference over pixels and channels
# The synthetic 63x47 colour clip has strong colour at a fine scale: 4:2:0 chroma
# subsampling alone leaves it 1.75-1.98 levels off (FFmpeg's decoder, every frame;
# a chroma QP offset of -6 gained 0.1), so the browser's own rounding can tip it over 2.
# The real colour clip (examples_ybr_color) is held to 2 and comes in near 0.6.
MAX_MEAN_ERROR_FOR = {"odd_colour": 2.5}
# A GIF frame is our frame quantised to GIF_MIN_PSNR_GREY (40 dB; colour to 42): its
# RMS error is at most 255 / 10^(40/20) = 2.55 levels, and a mean |error| is never above
# the RMS error.  Chromium decodes GIF palettes exactly (grey clips came in at 2.03-2.17).
MAX_GIF_MEAN_ERROR = 255 / 10 ** (min(GIF_MIN_PSNR_GREY, GIF_MIN_PSNR_COLOUR) / 20)


# -----------------------------------------------------------------------------
# Clips
# -----------------------------------------------------------------------------

@dataclasses.dataclass
class Clip:
    """One multi-frame input: where it is, and what the outputs should be."""

    name: str  # input file name; outputs are <stem>.mp4 and <stem>.gif
    fps: Fraction  # the rate its timing attributes say, worked out by hand
    frames: list[np.ndarray] = dataclasses.field(default_factory=list)  # ours, 8-bit

    @property
    def stem(self) -> str:
        return self.name.removesuffix(".dcm")

    @property
    def count(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return self.frames[0].shape[1], self.frames[0].shape[0]


def write_cine(path: Path, pixels: np.ndarray, frame_time_ms: float) -> Path:
    """A multi-frame Secondary Capture file: uint8/uint16 (frames, rows, cols[, 3]) pixels."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    colour = pixels.ndim == 4
    sop_class = (
        "1.2.840.10008.5.1.4.1.1.7.4" if colour  # Multi-frame True Color SC
        else "1.2.840.10008.5.1.4.1.1.7.3" if pixels.dtype == np.uint16  # Grayscale Word SC
        else "1.2.840.10008.5.1.4.1.1.7.2"  # Grayscale Byte SC
    )
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop_class
    ds.Modality = "OT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[1:3]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8 * pixels.dtype.itemsize
    if pixels.dtype == np.uint16:
        ds.BitsStored = 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.FrameTime = f"{frame_time_ms:g}"
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def wave(shape: tuple[int, int], phase: float, angle: float) -> np.ndarray:
    """A smooth sine wave 0..1 over a (rows, cols) grid, one period across, moving with `phase`."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    along = (cols / shape[1]) * np.cos(angle) + (rows / shape[0]) * np.sin(angle)
    return 0.5 + 0.5 * np.sin(2 * np.pi * (along - phase))


def make_synthetic_clips(folder: Path) -> None:
    """Three clips of smooth moving waves (each frame differs from the next by 8+ levels on average):

    grey.dcm        40 frames 128x96, 12 bits stored in 16, no window (so min-max),
                    Frame Time 40 ms = 25 fps
    odd_grey.dcm    20 frames 63x47 (odd both ways: the MP4 pads to 64x48), 8 bits,
                    Frame Time 66.67 ms = 15 fps
    odd_colour.dcm  24 frames 63x47 RGB, Frame Time 80 ms = 12.5 fps
    """
    folder.mkdir(parents=True, exist_ok=True)
    grey = np.stack([wave((96, 128), k / 40, 0.5) for k in range(40)])
    write_cine(folder / "grey.dcm", (100 + grey * 3900).round().astype(np.uint16), 40)
    odd = np.stack([wave((47, 63), k / 20, 2.0) * (0.6 + 0.4 * wave((47, 63), 0, 1.0)) for k in range(20)])
    write_cine(folder / "odd_grey.dcm", (odd * 255).round().astype(np.uint8), 66.67)
    rows, cols = np.mgrid[0:47, 0:63]
    tint = np.stack([cols / 62, rows / 46, 1 - cols / 62], axis=-1)  # saturated corners, smooth chroma
    rgb = np.stack([0.6 * tint + 0.4 * wave((47, 63), k / 24, 0.6)[..., None] for k in range(24)])
    write_cine(folder / "odd_colour.dcm", (rgb * 255).round().astype(np.uint8), 80)


# Expected rates come from the files' attributes, worked out here independently of the converter.
CLIPS = {
    "grey": Clip("grey.dcm", Fraction(25)),                      # synthetic, above
    "mri": Clip("emri_small.dcm", Fraction(10)),                 # pydicom: 10 frames 64x64 noisy MR, no timing: 10 fps default
    "odd_grey": Clip("odd_grey.dcm", Fraction(15)),              # synthetic, above
    "colour": Clip("examples_ybr_color.dcm", Fraction(30)),      # pydicom: 30 frames 320x240 YBR_FULL_422 JPEG, 33.33 ms
    "odd_colour": Clip("odd_colour.dcm", Fraction(25, 2)),       # synthetic, above
}

SMALL_GIF = 64  # --gif-max-size for the scaled-GIF run


@pytest.fixture(scope="module")
def site(chromium, tmp_path_factory):
    """All clips converted by the CLI (plus the grey clip's GIF at --gif-max-size 64 in small/), served."""
    root = tmp_path_factory.mktemp("browser")
    inputs = root / "in"
    make_synthetic_clips(inputs)
    for clip in CLIPS.values():
        if not (inputs / clip.name).exists():
            (inputs / clip.name).write_bytes(testdata(clip.name).read_bytes())
    out = root / "out"
    for args in ([inputs, "-o", out], [inputs / "grey.dcm", "-o", out / "small", "--no-mp4",
                                      "--gif-max-size", str(SMALL_GIF)]):
        result = run_cli(*args, "-q")
        assert result.returncode == 0, result.stdout + result.stderr
    for clip in CLIPS.values():
        if not clip.frames:
            path = inputs / clip.name
            frames, _ = rendered_frames(path, read_dataset(path), 255, None)
            clip.frames = [np.asarray(f) for f in frames]
    with browser.serve(out) as url:
        yield url, out


@pytest.fixture(scope="module")
def tab(chromium, site):
    """One tab for the module, with our page helpers in every document it loads."""
    tab = chromium.new_page()
    tab.set_default_timeout(15_000)
    tab.add_init_script(browser.PAGE_HELPERS + PAGE_SCRIPT)
    yield tab
    tab.close()


@pytest.fixture
def page(tab, site):
    """The tab on a fresh blank document from our server (same origin, so canvases stay readable)."""
    tab.goto(site[0] + browser.RangeRequestHandler.BLANK)
    return tab


# -----------------------------------------------------------------------------
# In the page
# -----------------------------------------------------------------------------

PAGE_SCRIPT = """
window.failOn = (element, what) => new Promise((_, reject) => {
  element.addEventListener('error', () => {
    const e = element.error;
    reject(new Error(what + ' failed to load' + (e ? ': code ' + e.code + ' ' + e.message : '')));
  }, { once: true });
});

// `element` as #under-test at the top of the page, loading `src`: resolves on `event`, rejects on error
window.showUnderTest = async (element, src, event) => {
  element.id = 'under-test';
  document.body.prepend(element);
  const loaded = new Promise(resolve => element.addEventListener(event, resolve, { once: true }));
  element.src = src;
  await Promise.race([loaded, failOn(element, src)]);
  return element;
};

window.loadVideo = async (src) => {
  const video = window.video = document.createElement('video');
  video.muted = true;
  video.preload = 'auto';
  await showUnderTest(video, src, 'loadeddata');
  const seekable = video.seekable.length === 1 ? [video.seekable.start(0), video.seekable.end(0)] : [];
  return { width: video.videoWidth, height: video.videoHeight, duration: video.duration,
           readyState: video.readyState, seekable };
};

// 'seeked' can fire before the sought frame reaches the compositor (here 2 runs in 16
// drew emri_small's last frame that way): drawing then copies the frame shown before.
// So wait for the frame itself to be presented, and give its media time to the test.
window.seekPixels = async (time, width, height) => {
  const seeked = new Promise(resolve => video.addEventListener('seeked', resolve, { once: true }));
  const presented = new Promise(resolve => video.requestVideoFrameCallback((now, frame) => resolve(frame.mediaTime)));
  video.currentTime = time;
  await seeked;
  const mediaTime = await Promise.race([presented, new Promise(resolve => setTimeout(() => resolve(null), 5000))]);
  return { mediaTime, pixels: canvasPixels(video, width, height) };
};

window.playFor = async (ms) => {
  const start = video.currentTime;
  await video.play();
  await new Promise(resolve => setTimeout(resolve, ms));
  const result = { start, end: video.currentTime, paused: video.paused, error: video.error && video.error.code };
  video.pause();
  return result;
};

window.playToEnd = async (rate) => {
  video.playbackRate = rate;
  const ended = new Promise(resolve => video.addEventListener('ended', resolve, { once: true }));
  await video.play();
  await ended;
  return { currentTime: video.currentTime, duration: video.duration, played: video.played.length ?
           [video.played.start(0), video.played.end(video.played.length - 1)] : [] };
};

window.loadGif = async (src, sample) => {
  const img = window.img = await showUnderTest(new Image(), src, 'load');
  const width = img.naturalWidth, height = img.naturalHeight;
  // drawImage of an animated <img> draws its first frame (HTML canvas spec)
  const first = canvasPixels(img, width, height);
  // Chromium's own GIF decoder, frame by frame (WebCodecs ImageDecoder)
  const decoder = new ImageDecoder({ data: await (await fetch(src)).arrayBuffer(), type: 'image/gif' });
  await decoder.tracks.ready;
  await decoder.completed;
  const track = decoder.tracks.selectedTrack;
  const durations = [], frames = {};
  for (let k = 0; k < track.frameCount; k++) {
    const { image } = await decoder.decode({ frameIndex: k });
    durations.push(image.duration);  // microseconds
    if (sample.includes(k)) frames[k] = canvasPixels(image, width, height);
    image.close();
  }
  return { width, height, first, frameCount: track.frameCount, animated: track.animated,
           repetitionCount: track.repetitionCount, durations, frames };
};
"""


def mean_error(shown: np.ndarray, ours: np.ndarray) -> float:
    """Mean |shown - ours| over `ours`'s region and channels; grey frames against R, G and B."""
    rows, cols = ours.shape[:2]
    rgb = shown[:rows, :cols, :3].astype(np.float64)
    expected = ours[..., None] if ours.ndim == 2 else ours
    return float(np.abs(rgb - expected).mean())


def nearest(shown: np.ndarray, frames: list[np.ndarray]) -> str:
    """Which of our frames `shown` is closest to, for failure messages."""
    errors = [mean_error(shown, f) for f in frames]
    best = int(np.argmin(errors))
    return f"closest is our frame {best} (mean error {errors[best]:.2f})"


def sample(count: int) -> list[int]:
    """First, last and a few frames between."""
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, min(count, 5))})


def even(n: int) -> int:
    return n + n % 2


VIDEO_CLIPS = list(CLIPS)


# -----------------------------------------------------------------------------
# MP4 in <video>
# -----------------------------------------------------------------------------

@pytest.mark.parametrize("key", VIDEO_CLIPS)
def test_mp4_loads_at_the_clip_size_and_lasts_frames_over_fps(key, page, site):
    clip = CLIPS[key]
    info = page.evaluate("src => loadVideo(src)", f"{site[0]}/{clip.stem}.mp4")
    width, height = clip.size
    assert info["readyState"] >= 2, info  # HAVE_CURRENT_DATA: a frame is decoded
    # seekable to the end: needs byte ranges (without, Chromium can only seek to 0)
    assert info["seekable"] == [0, pytest.approx(info["duration"])], info
    assert (info["width"], info["height"]) == (even(width), even(height)), "odd sizes pad by one, never scale"
    expected = clip.count / clip.fps
    assert abs(info["duration"] - float(expected)) <= 1 / float(clip.fps) + 1e-3, (
        f"duration {info['duration']} s, expected {clip.count} frames / {clip.fps} fps = {float(expected):.4f} s"
    )


@pytest.mark.parametrize("key", VIDEO_CLIPS)
def test_mp4_plays(key, page, site):
    clip = CLIPS[key]
    page.evaluate("src => loadVideo(src)", f"{site[0]}/{clip.stem}.mp4")
    played = page.evaluate("ms => playFor(ms)", 400)
    assert played["error"] is None and not played["paused"], played
    assert played["end"] - played["start"] >= 0.15, f"playback did not advance: {played}"
    ended = page.evaluate("rate => playToEnd(rate)", 4)  # on to the end, four times as fast
    assert ended["currentTime"] == pytest.approx(ended["duration"], abs=1e-3), ended


@pytest.mark.parametrize("key", VIDEO_CLIPS)
def test_mp4_frame_at_its_time_is_our_frame(key, page, site):
    clip = CLIPS[key]
    info = page.evaluate("src => loadVideo(src)", f"{site[0]}/{clip.stem}.mp4")
    failures = []
    for k in sample(clip.count):
        time_s = (k + 0.5) / float(clip.fps)  # the middle of frame k
        seek = page.evaluate("([t, w, h]) => seekPixels(t, w, h)", [time_s, info["width"], info["height"]])
        if seek["mediaTime"] is None:
            failures.append(f"frame {k} at {time_s:.3f} s: no frame was presented within 5 s of the seek")
            continue
        if abs(seek["mediaTime"] - k / float(clip.fps)) > 0.25 / float(clip.fps):
            failures.append(f"frame {k} at {time_s:.3f} s: the frame presented starts at {seek['mediaTime']:.3f} s")
        shown = browser.rgba(seek["pixels"], info["width"], info["height"])
        error = mean_error(shown, clip.frames[k])
        if error > MAX_MEAN_ERROR_FOR.get(key, MAX_MEAN_ERROR):
            failures.append(f"frame {k} at {time_s:.3f} s: mean error {error:.2f}; {nearest(shown, clip.frames)}")
    assert not failures, "\n".join(failures)


# -----------------------------------------------------------------------------
# GIF in <img>
# -----------------------------------------------------------------------------

_gif_cache: dict[str, dict] = {}


def gif_in_chromium(page, url: str, count: int) -> dict:
    """`loadGif` of `url` with pixels of `sample(count)` frames, once per URL for the module."""
    if url not in _gif_cache:
        _gif_cache[url] = page.evaluate("([src, picks]) => loadGif(src, picks)", [url, sample(count)])
    return _gif_cache[url]


def gif_case(key: str, site) -> tuple[str, Path, list[np.ndarray], Fraction]:
    """URL, file, our frames at GIF size, and rate of one clip's GIF ("grey@64": the --gif-max-size run)."""
    url, out = site
    name, _, size = key.partition("@")
    clip = CLIPS[name]
    folder = f"small/{clip.stem}.gif" if size else f"{clip.stem}.gif"
    ours = [fit_within(f, int(size) if size else DEFAULT_GIF_MAX_SIZE) for f in clip.frames]
    return f"{url}/{folder}", out / folder, ours, clip.fps


GIF_CASES = [*CLIPS, f"grey@{SMALL_GIF}"]  # every clip here fits 512, so only grey@64 is scaled

GIF_COLOUR_XFAIL = pytest.mark.xfail(
    strict=True,
    reason="a limit of the GIF format, documented in the README: one frame holds at most 256 colours, "
           "and a smooth full-colour field (2961 colours in 63x47) is off by a mean 3.6-3.9 levels "
           "(PSNR 34 dB) with any palette (k-means refinement of the median cut gained < 1 dB); the MP4 "
           "of the same clip passes",
)


@pytest.mark.parametrize("key", GIF_CASES)
def test_gif_in_img_has_the_clip_size_frames_and_timing(key, page, site):
    url, path, ours, fps = gif_case(key, site)
    height, width = ours[0].shape[:2]
    if key == f"grey@{SMALL_GIF}":
        assert (width, height) == (64, 48)  # 128x96 scaled to fit 64
    with Image.open(path) as im:
        assert im.size == (width, height)
        assert sum(1 for _ in ImageSequence.Iterator(im)) == len(ours), "Pillow's frame count"
    gif = gif_in_chromium(page, url, len(ours))
    assert (gif["width"], gif["height"]) == (width, height), "<img> naturalWidth x naturalHeight"
    assert gif["frameCount"] == len(ours) and gif["animated"], "frames in Chromium's GIF decoder"
    assert gif["repetitionCount"] == float("inf"), "loops forever"
    total = sum(gif["durations"]) / 1e6
    # GIF delays are whole 10 ms ticks, rounded with the error carried so the total stays true
    assert abs(total - len(ours) / float(fps)) <= 0.011, (
        f"GIF lasts {total:.3f} s, expected {len(ours)} frames / {fps} fps; delays {gif['durations'][:4]} us"
    )


@pytest.mark.parametrize(
    "key", [pytest.param(k, marks=GIF_COLOUR_XFAIL) if k == "odd_colour" else k for k in GIF_CASES]
)
def test_gif_frames_in_chromium_are_our_frames(key, page, site):
    url, _, ours, _ = gif_case(key, site)
    height, width = ours[0].shape[:2]
    gif = gif_in_chromium(page, url, len(ours))
    shown = {"<img> drawn (its first frame)": (browser.rgba(gif["first"], width, height), 0)}
    for k in sample(len(ours)):
        shown[f"decoded frame {k}"] = (browser.rgba(gif["frames"][str(k)], width, height), k)
    failures = []
    for what, (pixels, k) in shown.items():
        error = mean_error(pixels, ours[k])
        if error > MAX_GIF_MEAN_ERROR:
            failures.append(f"{what}: mean error {error:.2f} to our frame {k}; {nearest(pixels, ours)}")
    assert not failures, "\n".join(failures)


def test_gif_animates_in_img(page, site):
    """Screenshots of the <img> over about a second show several of our frames, going forward."""
    clip = CLIPS["grey"]
    page.evaluate("([src, picks]) => loadGif(src, picks)", [f"{site[0]}/{clip.stem}.gif", []])
    element = page.locator("img#under-test")
    seen = []
    for _ in range(6):
        shot = np.asarray(Image.open(io.BytesIO(element.screenshot())).convert("RGBA"))
        errors = [mean_error(shot, f) for f in clip.frames]
        best = int(np.argmin(errors))
        assert errors[best] <= MAX_GIF_MEAN_ERROR, f"screenshot is none of our frames: {nearest(shot, clip.frames)}"
        if not seen or seen[-1] != best:
            seen.append(best)
        time.sleep(0.1)
    assert len(seen) >= 3, f"the <img> did not animate: frames seen {seen}"
    steps = [(b - a) % clip.count for a, b in zip(seen, seen[1:])]
    assert all(0 < step < clip.count // 2 for step in steps), f"frames seen out of order: {seen}"


# -----------------------------------------------------------------------------
# The server helper
# -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "header, status, body, content_range",
    [
        ("bytes=2-5", 206, b"2345", "bytes 2-5/10"),
        ("bytes=7-", 206, b"789", "bytes 7-9/10"),
        ("bytes=-3", 206, b"789", "bytes 7-9/10"),
        ("bytes=8-100", 206, b"89", "bytes 8-9/10"),
        ("bytes=10-", 416, b"", "bytes */10"),
        (None, 200, b"0123456789", None),
    ],
)
def test_server_answers_byte_ranges(tmp_path, header, status, body, content_range):
    (tmp_path / "a.mp4").write_bytes(b"0123456789")
    with browser.serve(tmp_path) as url:
        request = urllib.request.Request(url + "/a.mp4", headers={"Range": header} if header else {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                got = (response.status, response.read(), response.headers.get("Content-Range"))
                assert response.headers["Accept-Ranges"] == "bytes"
                assert response.headers["Content-Type"] == "video/mp4"
        except urllib.error.HTTPError as error:
            got = (error.code, error.read(), error.headers.get("Content-Range"))
    assert got == (status, body, content_range)


def test_server_has_a_blank_page_of_its_own(tmp_path):
    (tmp_path / "index.html").write_text("<p>the folder's own page</p>")
    with browser.serve(tmp_path) as url:
        with urllib.request.urlopen(url + browser.RangeRequestHandler.BLANK, timeout=10) as response:
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert b"<body></body>" in response.read()
