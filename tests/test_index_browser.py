"""OUTPUT/index.html in a real browser: Debian's Chromium, headless, via Playwright.

The inputs (`test_extras.make_index_inputs`: a PNG, colour and grey cines, a
metadata-only file, a file name needing escaping, and a series whose
PatientName / StudyDescription / SeriesDescription are HTML injections) are
converted once with --series --json.  The page is then opened straight from
disk (file://) and from a server on 127.0.0.1, and must show: no console
errors, no request outside its own folder, every <img> decoded (natural
width > 0), every <video> with a decoded frame (readyState >= 2) and the
duration frames / fps, every link pointing at a file that exists, and the
injected markup as inert text.

Skipped when Playwright or /usr/bin/chromium is missing, failed instead with
REQUIRE_BROWSER=1: see tests/browser.py.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import pytest

import browser
from conftest import run_cli
from test_extras import INJECT_DESCRIPTION, INJECT_NAME, INJECT_SERIES, INJECT_STUDY, make_index_inputs

# Every MP4 the page must play, with its length: none of these inputs has timing
# attributes, so clips and series run at the default 10 fps.
VIDEO_SECONDS = {
    "SC_rgb_2frame.mp4": 2 / 10,  # 2 frames
    "emri_small.mp4": 10 / 10,  # 10 frames
    f"inject/{INJECT_SERIES}.mp4": 2 / 10,  # a series of 2 slices
}

# Runs in the page once it has loaded: bring every lazy <img> into view until
# it is decoded, let every <video> reach HAVE_CURRENT_DATA, then report.
INSPECT = """
async () => {
  const settle = (ok, events, el, ms) => new Promise(resolve => {
    if (ok()) return resolve(true);
    const done = () => { if (ok()) { clearTimeout(timer); resolve(true); } };
    const timer = setTimeout(() => resolve(ok()), ms);
    for (const e of events) el.addEventListener(e, done);
  });
  const images = [];
  for (const img of document.images) {
    img.scrollIntoView();
    await settle(() => img.complete, ['load', 'error'], img, 10000);
    images.push({ src: img.getAttribute('src'), url: img.src, width: img.naturalWidth, complete: img.complete });
  }
  const videos = [];
  for (const video of document.querySelectorAll('video')) {
    video.scrollIntoView();
    await settle(() => video.readyState >= 2, ['loadeddata', 'canplay', 'error'], video, 10000);
    videos.push({ src: video.getAttribute('src'), url: video.currentSrc, readyState: video.readyState,
                  duration: video.duration, width: video.videoWidth, controls: video.controls,
                  error: video.error && video.error.code });
  }
  const links = [...document.querySelectorAll('a[href]')].map(a => ({ href: a.getAttribute('href'), url: a.href }));
  return {
    title: document.title, images, videos, links,
    scripts: document.querySelectorAll('script').length,
    injected: ['injected', 'injected-study'].filter(id => document.getElementById(id) !== null),
    imgX: document.querySelectorAll('img[src="x"]').length,
    text: document.body.innerText,
    h2: [...document.querySelectorAll('h2')].map(h => h.textContent),
  };
}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    browser.require_browser()
    root = tmp_path_factory.mktemp("index_browser")
    inputs = make_index_inputs(root / "in")
    out = root / "out"
    proc = run_cli(inputs, "-o", out, "--series", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "index.html").is_file()
    return out


@pytest.fixture(scope="module")
def chromium():
    browser.require_browser()
    with browser.chromium() as instance:
        yield instance


def open_index(chromium, url: str) -> dict:
    """Load `url` in a fresh page; return what INSPECT saw plus the console errors
    (text and the URL they are about), dialogs and requested URLs."""
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    seen: dict = {"errors": [], "dialogs": [], "requests": []}
    page.on("console", lambda m: seen["errors"].append((m.text, m.location.get("url", "")))
            if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["errors"].append((str(e), "")))

    def on_dialog(dialog):
        seen["dialogs"].append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda r: seen["requests"].append(r.url))
    try:
        response = page.goto(url, wait_until="load", timeout=30_000)
        seen["status"] = response.status if response is not None else None
        seen.update(page.evaluate(INSPECT))
        page.wait_for_timeout(200)  # a late onerror / dialog would show up here
    finally:
        page.close()
    return seen


def from_disk_exists(url: str) -> bool:
    return Path(url2pathname(urlsplit(url).path)).is_file()


def served_exists(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status == 200 and len(response.read()) > 0


@pytest.fixture(scope="module")
def from_disk(site, chromium) -> tuple[dict, str]:
    base = site.as_uri() + "/"
    return open_index(chromium, base + "index.html"), base


@pytest.fixture(scope="module")
def served(site, chromium):
    with browser.serve(site) as url:
        seen = open_index(chromium, url + "/index.html")
        assert seen["status"] == 200
        # links are checked while the server still runs
        targets = [i["url"] for i in seen["images"]] + [v["url"] for v in seen["videos"]] \
            + [a["url"] for a in seen["links"]]
        seen["missing"] = [t for t in targets if not served_exists(t)]
        yield seen, url + "/"


def is_favicon_404(error: tuple[str, str]) -> bool:
    """Chromium asks a web server for /favicon.ico when the page names no icon."""
    text, url = error
    return urlsplit(url).path == "/favicon.ico" and "404" in text


def check_index(seen: dict, base: str) -> None:
    """What must hold both from disk and from a server (console errors are checked by the callers)."""
    assert seen["dialogs"] == []
    assert seen["title"] == "DICOM conversion"
    outside = [u for u in seen["requests"] if not u.startswith(base)]
    assert outside == []  # nothing from the network, nothing outside the output folder

    for image in seen["images"]:
        assert image["complete"] and image["width"] > 0, image
    assert sorted(unquote(i["src"]) for i in seen["images"]) == sorted([
        "CT_small.png", "odd #1 & _b_.png", "inject/slice0.png", "inject/slice1.png",
        "SC_rgb_2frame.gif", "emri_small.gif", f"inject/{INJECT_SERIES}.gif"])
    widths = {unquote(i["src"]): i["width"] for i in seen["images"]}
    assert widths["CT_small.png"] == 128 and widths["odd #1 & _b_.png"] == 64 and widths["emri_small.gif"] == 64

    videos = {unquote(v["src"]): v for v in seen["videos"]}
    assert set(videos) == set(VIDEO_SECONDS)
    for src, video in videos.items():
        assert video["error"] is None and video["controls"], video
        assert video["readyState"] >= 2, video
        assert video["duration"] == pytest.approx(VIDEO_SECONDS[src], abs=0.02), video

    # a .txt and a .json for each of the 7 files, a .txt for the series
    assert len(seen["links"]) == 2 * 7 + 1
    assert sorted(unquote(a["href"]) for a in seen["links"] if "inject/" in a["href"]) == [
        f"inject/{INJECT_SERIES}.txt", "inject/slice0.json", "inject/slice0.txt",
        "inject/slice1.json", "inject/slice1.txt"]
    for url in [i["url"] for i in seen["images"]] + [v["url"] for v in seen["videos"]] + [a["url"] for a in seen["links"]]:
        assert url.startswith(base), url

    # injected markup stays text
    assert seen["scripts"] == 0 and seen["injected"] == [] and seen["imgX"] == 0
    for value in (INJECT_NAME, INJECT_DESCRIPTION, INJECT_STUDY):
        assert value in seen["text"]
    assert f"Patient {INJECT_NAME} — X<1>" in seen["h2"]


def test_index_from_disk(from_disk):
    seen, base = from_disk
    assert seen["errors"] == []
    check_index(seen, base)
    targets = [i["url"] for i in seen["images"]] + [v["url"] for v in seen["videos"]] + [a["url"] for a in seen["links"]]
    assert [t for t in targets if not from_disk_exists(t)] == []


def test_index_from_a_local_server(served):
    seen, base = served
    assert [e for e in seen["errors"] if not is_favicon_404(e)] == []
    check_index(seen, base)
    assert seen["missing"] == []


def test_index_from_a_local_server_logs_no_console_error(served):
    seen, _ = served
    assert seen["errors"] == []


# -----------------------------------------------------------------------------
# The kinds with sections of their own, on one page
# -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kinds_site(tmp_path_factory) -> Path:
    """A volume (eCT_Supplemental), a segmentation over its CT (liver.dcm and test_segmentations'
    slices), an RT dose, a stitched slide (test_slides), a PDF (DCMTK's pdf2dcm), a DICOM
    video (test_video), pydicom's ECG and Comprehensive SR, and a µ-law voice recording
    (test_waveforms), converted together."""
    from conftest import testdata
    from test_documents import a_pdf, dcmtk
    from test_segmentations import ct_under_liver
    from test_slides import picture, write_slide
    from test_video import H264, RATE, video_dicom, video_stream
    from test_waveforms import mulaw_audio_file

    browser.require_browser()
    root = tmp_path_factory.mktemp("kinds_browser")
    inputs = root / "in"
    inputs.mkdir()
    for name in ("eCT_Supplemental.dcm", "liver.dcm", "rtdose.dcm", "waveform_ecg.dcm", "test-SR.dcm"):
        (inputs / name).write_bytes(testdata(name).read_bytes())
    ct_under_liver(inputs)
    write_slide(inputs / "slide.dcm", picture(300, 400), tile=128)
    dcmtk("pdf2dcm", a_pdf(root / "report.pdf", odd=True), inputs / "report.dcm")
    video_dicom(inputs / "scope.dcm", video_stream("libx264", "h264"), H264, FrameTime=1000 / RATE)
    mulaw_audio_file(root)
    (root / "voice.dcm").rename(inputs / "voice.dcm")
    out = root / "out"
    proc = run_cli(inputs, "-o", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_each_kind_shows_in_the_index(kinds_site, chromium):
    with browser.serve(kinds_site) as url:
        seen = open_index(chromium, url + "/index.html")
        targets = [i["url"] for i in seen["images"]] + [v["url"] for v in seen["videos"]] + \
            [a["url"] for a in seen["links"]]
        assert [t for t in targets if not served_exists(t)] == []
    assert [e for e in seen["errors"] if not is_favicon_404(e)] == []
    images = {unquote(i["src"]): i for i in seen["images"]}
    for name in ("eCT_Supplemental.png", "liver.png", "rtdose.png", "slide.png"):  # sheets, the slide
        assert images[name]["complete"] and images[name]["width"] > 0, images.get(name)
    assert images["slide.png"]["width"] == 400
    videos = {unquote(v["src"]): v for v in seen["videos"]}
    assert videos["scope.mp4"]["readyState"] >= 2 and videos["scope.mp4"]["duration"] == pytest.approx(1.0, abs=0.05)
    assert videos["eCT_Supplemental.mp4"]["readyState"] >= 2
    assert "report.pdf" in [unquote(a["href"]) for a in seen["links"]]
    assert "1 Liver (sRGB 217,130,101)" in seen["text"] and "slices, not time" in seen["text"]
    assert images["waveform_ecg.png"]["complete"] and images["waveform_ecg.png"]["width"] > 0
    hrefs = [unquote(a["href"]) for a in seen["links"]]
    assert {"test-SR.html", "waveform_ecg.csv", "waveform_ecg_median.png"} <= set(hrefs)
    assert "A mass of 3 cm was detected." in seen["text"]  # the report's first lines


def test_the_voice_recording_plays_in_the_index(kinds_site, chromium):
    with browser.serve(kinds_site) as url:
        page = chromium.new_page()
        try:
            page.goto(url + "/index.html", wait_until="load")
            duration = page.evaluate("""() => new Promise((done, fail) => {
                const audio = document.querySelector('audio[src="voice.wav"]');
                if (audio.readyState >= 1) return done(audio.duration);
                audio.addEventListener('loadedmetadata', () => done(audio.duration));
                audio.addEventListener('error', () => fail(String(audio.error && audio.error.code)));
                audio.load();
            })""")
        finally:
            page.close()
    assert duration == pytest.approx(0.5, abs=0.01)
