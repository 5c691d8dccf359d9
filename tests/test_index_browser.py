"""OUTPUT/index.html in a real browser: Debian's Chromium, headless, via Playwright.

The inputs (`test_extras.make_index_inputs`: a PNG, colour and grey cines, a
metadata-only file, a file name needing escaping, and a series whose
PatientName / StudyDescription / SeriesDescription are HTML injections) are
converted once with --series --json.  The page is then opened straight from
disk (file://) and from a server on 127.0.0.1, every series card opened and
stepped through with the keyboard, and it must show: no console errors, no
request outside its own folder and none but thumbnails before a card opens,
every picture decoded (natural width > 0), every <video> with a decoded frame
(readyState >= 2) and the duration frames / fps, every link pointing at a file
that exists, and the injected markup as inert text.

Skipped when Playwright or /usr/bin/chromium is missing, failed instead with
REQUIRE_BROWSER=1: see tests/browser.py.
"""

from __future__ import annotations

import shutil

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

# Waits until ok() holds, one of `events` fires on `el` and ok() holds, or `ms` pass.
SETTLE = """
const settle = (ok, events, el, ms) => new Promise(resolve => {
  if (ok()) return resolve(true);
  const done = () => { if (ok()) { clearTimeout(timer); resolve(true); } };
  const timer = setTimeout(() => resolve(ok()), ms);
  for (const e of events) el.addEventListener(e, done);
});
"""

# Runs in the page once it has loaded: bring every lazy thumbnail into view until it is
# decoded, then report the static page.
INSPECT = """
async () => {
  const images = [];
  for (const img of document.images) {
    img.scrollIntoView();
    await settle(() => img.complete, ['load', 'error'], img, 10000);
    images.push({ src: img.getAttribute('src'), url: img.src, width: img.naturalWidth, complete: img.complete });
  }
  return {
    title: document.title, images, cards: document.querySelectorAll('button[data-series]').length,
    media: document.querySelectorAll('video, audio').length,
    injected: ['injected', 'injected-study'].filter(id => document.getElementById(id) !== null),
    imgX: document.querySelectorAll('img[src="x"]').length,
    text: document.body.innerText,
    h2: [...document.querySelectorAll('h2')].map(h => h.textContent),
  };
}
"""

# Runs with the viewer open: what it shows now, once its picture is decoded or its video
# or sound has data.
SHOWN = """
async () => {
  const el = [...document.querySelectorAll('#viewer-stage img, #viewer-stage video, #viewer-stage audio')]
    .find(e => !e.hidden && e.getAttribute('src'));  // the one element in use
  const shown = { series: document.getElementById('viewer-series').textContent,
                  title: document.getElementById('viewer-title').textContent,
                  facts: document.getElementById('viewer-facts').innerText,
                  excerpt: document.getElementById('viewer-excerpt').textContent,
                  links: [...document.querySelectorAll('#viewer-links a')].map(a => ({ href: a.getAttribute('href'), url: a.href })),
                  tag: el ? el.tagName.toLowerCase() : null };
  if (el && el.tagName === 'IMG') {
    await settle(() => el.complete, ['load', 'error'], el, 10000);
    Object.assign(shown, { src: el.getAttribute('src'), url: el.src, width: el.naturalWidth, complete: el.complete });
  } else if (el) {
    await settle(() => el.readyState >= (el.tagName === 'VIDEO' ? 2 : 1), ['loadeddata', 'loadedmetadata', 'canplay', 'error'], el, 10000);
    Object.assign(shown, { src: el.getAttribute('src'), url: el.currentSrc, readyState: el.readyState,
                           duration: el.duration, width: el.videoWidth || 0, controls: el.controls,
                           error: el.error && el.error.code });
  }
  return shown;
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


def open_index(chromium, url: str) -> dict:
    """Load `url` in a fresh page, look at it (INSPECT), then open every series card and step
    through its items with the keyboard (SHOWN for each); return what was seen, with the
    console errors (text and the URL they are about), dialogs, and the URLs requested
    before and after the first card was opened."""
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    seen: dict = {"errors": [], "dialogs": [], "requests": [], "shown": []}
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
        page.evaluate(f"() => {{ window.settle = (() => {{ {SETTLE} return settle; }})(); }}")
        seen.update(page.evaluate(INSPECT))
        seen["first_requests"] = list(seen["requests"])
        for card in range(seen["cards"]):
            page.click(f'button[data-series="{card}"]')
            count = int(page.get_attribute("#viewer-slider", "max"))
            for number in range(count):
                seen["shown"].append(page.evaluate(SHOWN))
                if number + 1 < count:
                    page.keyboard.press("ArrowDown")
            page.keyboard.press("Escape")
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


def targets(seen: dict) -> list[str]:
    """Every URL the page and its viewer pointed at."""
    return [i["url"] for i in seen["images"]] + [s["url"] for s in seen["shown"] if s["tag"]] \
        + [a["url"] for s in seen["shown"] for a in s["links"]]


@pytest.fixture(scope="module")
def from_disk(site, chromium) -> tuple[dict, str]:
    base = site.as_uri() + "/"
    return open_index(chromium, base + "index.html"), base


@pytest.fixture(scope="module")
def served(site, chromium):
    with browser.serve(site) as url:
        seen = open_index(chromium, url + "/index.html")
        assert seen["status"] == 200
        seen["missing"] = [t for t in targets(seen) if not served_exists(t)]  # while the server still runs
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
    # until a card is opened, the page loads only its thumbnails: no full-size output
    loaded = sorted(unquote(u[len(base):]) for u in seen["first_requests"] if u != base + "index.html")
    assert loaded and all(u.startswith(".thumbs/") for u in loaded), loaded
    assert seen["media"] == 0 and len(seen["images"]) <= seen["cards"]
    for image in seen["images"]:
        assert image["complete"] and image["width"] > 0, image

    shown = {s["title"]: s for s in seen["shown"]}
    pictures = {title: s for title, s in shown.items() if s["tag"] == "img"}
    assert sorted(unquote(s["src"]) for s in pictures.values()) == sorted([
        "CT_small.png", "odd #1 & _b_.png", "inject/slice0.png", "inject/slice1.png"])
    for picture in pictures.values():
        assert picture["complete"] and picture["width"] > 0, picture
    assert pictures["CT_small"]["width"] == 128 and pictures["odd #1 & _b_"]["width"] == 64
    videos = {unquote(s["src"]): s for s in shown.values() if s["tag"] == "video"}
    assert set(videos) == set(VIDEO_SECONDS)
    for src, video in videos.items():
        assert video["error"] is None and video["controls"], video
        assert video["readyState"] >= 2, video
        assert video["duration"] == pytest.approx(VIDEO_SECONDS[src], abs=0.02), video
    assert shown["rtplan"]["tag"] is None and "metadata only" in shown["rtplan"]["facts"]

    # each file's viewer links its .txt and .json and its pictures; the series, its .txt, GIF and MP4
    links = sorted(unquote(a["href"]) for s in seen["shown"] for a in s["links"])
    assert len(links) == len(set(links))
    assert [link for link in links if link.startswith("inject/")] == sorted([
        f"inject/{INJECT_SERIES}.txt", f"inject/{INJECT_SERIES}.gif", f"inject/{INJECT_SERIES}.mp4",
        "inject/slice0.json", "inject/slice0.txt", "inject/slice0.png",
        "inject/slice1.json", "inject/slice1.txt", "inject/slice1.png"])
    for url in targets(seen):
        assert url.startswith(base), url

    # injected markup stays text
    assert seen["injected"] == [] and seen["imgX"] == 0
    for value in (INJECT_NAME, INJECT_DESCRIPTION, INJECT_STUDY):
        assert value in seen["text"]
    assert f"Series 4 · {INJECT_DESCRIPTION}" in {s["series"] for s in seen["shown"]}  # the viewer's heading too
    assert f"{INJECT_NAME} · ID X<1>" in seen["h2"]


def test_index_from_disk(from_disk):
    seen, base = from_disk
    assert seen["errors"] == []
    check_index(seen, base)
    assert [t for t in targets(seen) if not from_disk_exists(t)] == []


def test_index_from_a_local_server(served):
    seen, base = served
    assert [e for e in seen["errors"] if not is_favicon_404(e)] == []
    check_index(seen, base)
    assert seen["missing"] == []


def test_index_from_a_local_server_logs_no_console_error(served):
    seen, _ = served
    assert seen["errors"] == []


def test_a_series_scrolls_to_slice_n_with_the_keyboard(tmp_path, chromium):
    """A series of 5 slices (CT_small copied, each its own Instance Number and position):
    its card shows the middle slice's thumbnail; opened, End then ArrowUp shows slice 4's PNG."""
    import pydicom

    from conftest import testdata

    (tmp_path / "in").mkdir()
    for number in range(1, 6):
        ds = pydicom.dcmread(testdata("CT_small.dcm"))
        ds.InstanceNumber, ds.SOPInstanceUID = number, f"{ds.SOPInstanceUID}.{number}"
        ds.ImagePositionPatient = [0, 0, 5.0 * (6 - number)]  # files named against position order
        ds.save_as(tmp_path / "in" / f"IM{number}.dcm")
    run = run_cli(tmp_path / "in", "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    with browser.serve(tmp_path / "out") as url:
        page = chromium.new_page()
        try:
            page.goto(url + "/index.html", wait_until="load")
            assert page.get_attribute("img.thumb", "src") == ".thumbs/IM3.jpg"  # the middle of five
            page.focus('button[data-series="0"]')
            page.keyboard.press("Enter")
            first = page.get_attribute("#viewer-stage img", "src")
            page.keyboard.press("End")
            page.keyboard.press("ArrowUp")
            fourth = page.get_attribute("#viewer-stage img", "src")
            assert page.get_attribute("#viewer-slider", "aria-valuetext") == "image 4 of 5"
        finally:
            page.close()
    # in slice order along the normal: IM5 (z = 5) first, IM2 (z = 20) fourth
    assert (first, fourth) == ("IM5.png", "IM2.png")


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
        assert [t for t in targets(seen) if not served_exists(t)] == []
    assert [e for e in seen["errors"] if not is_favicon_404(e)] == []
    shown = {s["title"]: s for s in seen["shown"]}
    for name in ("slide", "waveform_ecg"):  # the stitched slide, the ECG page
        assert shown[name]["tag"] == "img" and shown[name]["complete"] and shown[name]["width"] > 0, shown[name]
    assert shown["slide"]["width"] == 400
    # a volume, a segmentation and a dose scroll in their MP4s; a video plays
    for name in ("eCT_Supplemental", "liver", "rtdose", "scope"):
        assert shown[name]["tag"] == "video" and shown[name]["readyState"] >= 2, shown[name]
    assert shown["scope"]["duration"] == pytest.approx(1.0, abs=0.05)
    assert shown["voice"]["tag"] == "audio" and shown["voice"]["duration"] == pytest.approx(0.5, abs=0.01)
    hrefs = {unquote(a["href"]) for s in seen["shown"] for a in s["links"]}
    assert {"report.pdf", "test-SR.html", "waveform_ecg.csv", "waveform_ecg_median.png"} <= hrefs
    assert "1 Liver (sRGB 217,130,101)" in shown["liver"]["facts"] and "slices, not time" in shown["eCT_Supplemental"]["facts"]
    assert "A mass of 3 cm was detected." in shown["test-SR"]["excerpt"]  # the report's first lines


def card_texts(chromium, url: str) -> dict[str, str]:
    """The line under each card's title, the headings and the page's text, as Chromium renders them."""
    page = chromium.new_page()
    try:
        page.goto(url)
        return {"metas": page.locator("button[data-series] .meta").all_inner_texts(),
                "placeholders": page.locator("button[data-series] .thumb.none").all_inner_texts(),
                "h2": page.locator("body > h2").all_inner_texts(),
                                                        "h3": page.locator("body > h3").all_inner_texts(),
                                                        "body": page.locator("body").inner_text()}
    finally:
        page.close()


def test_each_kind_is_counted_as_its_kind(kinds_site, chromium):
    """Cards count what their kind holds (slices, planes, segments, leads, a clip's length),
    never "1 image" for a clip, and spell out the modality."""
    with browser.serve(kinds_site) as url:
        cards = card_texts(chromium, url + "/index.html")
    metas = cards["metas"]
    assert "CT · computed tomography · 2 slices · 512×512" in metas  # eCT_Supplemental, a volume
    assert "RTDOSE · RT dose · 15 planes · 10×10" in metas
    assert "SEG · segmentation · 1 segment · 3 slices · 512×512" in metas
    assert "ECG · electrocardiography · 12 leads · 10 s" in metas
    assert "SR · structured report · report" in metas
    assert any(m.startswith("DOC · document · PDF document") for m in metas), metas
    assert "SM · slide microscopy · 400 × 300 px" in metas  # the stitched picture, not its tiles
    assert "ES · endoscopy · 1 recording · 1 video · 96×64" in metas  # a video and a voice in one series
    assert not any(" image" in m for m in metas if m.startswith(("RTDOSE", "SEG", "ECG", "SR", "AU"))), metas
    # a card without a picture names its kind
    assert sorted(cards["placeholders"]) == ["PDF", "Report"], cards["placeholders"]


def test_under_redact_patients_and_studies_stay_apart(tmp_path, chromium):
    """Three patients on one disc: "Patient 1" to "Patient 3", their studies numbered, and
    no name or ID of theirs anywhere on the page."""
    from conftest import copy_inputs

    inputs = copy_inputs(tmp_path / "in", "CT_small.dcm", "MR_small.dcm", "waveform_ecg.dcm")
    out = tmp_path / "out"
    proc = run_cli(inputs, "-o", out, "--redact")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with browser.serve(out) as url:
        cards = card_texts(chromium, url + "/index.html")
    assert cards["h2"] == ["Patient 1", "Patient 2", "Patient 3"]
    assert cards["h3"] == ["Study 1 · CT · 1 series", "Study 1 · MR · 1 series", "Study 1 · ECG · 1 series"]
    for name in ("CompressedSamples", "CT1", "MR1", "Anonymous", "642341", "1CT1", "4MR1"):
        assert name not in cards["body"], name


OVERLAY_STATE = """() => {
  const img = document.querySelector('#viewer-stage img'), overlay = document.getElementById('viewer-overlay');
  const fit = Math.min(img.offsetWidth / img.naturalWidth, img.offsetHeight / img.naturalHeight);
  const zoom = getComputedStyle(img).transform === 'none' ? 1 : new DOMMatrix(getComputedStyle(img).transform).a;
  return {
    letters: [...overlay.querySelectorAll('.edge')].map(e => e.textContent),
    window: overlay.querySelector('.window').textContent,
    shown: !overlay.hidden && getComputedStyle(overlay).display !== 'none',
    bar: overlay.querySelector('.bar').getBoundingClientRect().width,
    label: overlay.querySelector('.label').textContent,
    screenPxPerImagePx: fit * zoom, natural: img.naturalWidth,
  };
}"""


def open_card_of(page, words: str) -> None:
    """Open the first card whose line under the title holds `words` ("CT ·", "20 images")."""
    metas = page.locator("button[data-series] .meta").all_inner_texts()
    page.locator("button[data-series]").nth(next(i for i, m in enumerate(metas) if words in m)).click()
    page.wait_for_function("() => { const i = document.querySelector('#viewer-stage img');"
                           " return i && (i.hidden || i.complete) }")


def bar_mm(label: str) -> float:
    number, unit = label.split()[:2]
    return float(number) * (10 if unit == "cm" else 1)


@pytest.fixture(scope="module")
def overlay_site(tmp_path_factory) -> Path:
    """An axial CT (CT_small.dcm), an oblique sagittal MR (MR2_UNCR.dcm) and the samples' 20-slice
    CT series, converted."""
    from conftest import copy_inputs

    browser.require_browser()
    root = tmp_path_factory.mktemp("overlays")
    inputs = copy_inputs(root / "in", "CT_small.dcm", "MR2_UNCR.dcm")
    shutil.copytree(Path(__file__).resolve().parent.parent / "dicom_data" / "CT_SERIES", inputs / "CT_SERIES")
    out = root / "out"
    proc = run_cli(inputs, "-o", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.mark.parametrize("modality, name, letters", [
    ("CT", "CT_small.dcm", ["R", "A", "L", "P"]),  # axial: the patient's right on the viewer's left, anterior up
    ("MR", "MR2_UNCR.dcm", ["AR", "H", "PL", "F"]),  # sagittal (oblique): anterior left, head up
])
def test_orientation_letters_and_a_scale_bar_true_to_pixel_spacing(overlay_site, chromium, modality, name, letters):
    from pydicom import dcmread

    from conftest import testdata

    ds = dcmread(testdata(name), stop_before_pixels=True)
    column_mm = float(ds.PixelSpacing[1]) * int(ds.Columns)  # the picture's width in mm
    with browser.serve(overlay_site) as url:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url + "/index.html")
        open_card_of(page, modality + " ·")
        state = page.evaluate(OVERLAY_STATE)
        assert state["shown"] and state["letters"] == letters, state
        if "WindowCenter" in ds:  # the file's window, used as it is
            assert state["window"] == f"W {float(ds.WindowWidth):g} L {float(ds.WindowCenter):g}", state
        else:  # no window in the file: none claimed
            assert state["window"] == "", state
        # the bar's length on screen is its label's length at this zoom
        mm_per_screen_px = column_mm / (state["natural"] * state["screenPxPerImagePx"])
        assert state["bar"] * mm_per_screen_px == pytest.approx(bar_mm(state["label"]), rel=0.02), state
        page.keyboard.press("1")  # one image pixel per screen pixel
        one = page.evaluate(OVERLAY_STATE)
        assert one["screenPxPerImagePx"] == pytest.approx(1, rel=0.01), one
        assert one["bar"] * column_mm / one["natural"] == pytest.approx(bar_mm(one["label"]), rel=0.02), one
        page.keyboard.press("+")
        assert page.evaluate(OVERLAY_STATE)["screenPxPerImagePx"] == pytest.approx(1.25, rel=0.01)
        page.keyboard.press("0")
        assert page.evaluate(OVERLAY_STATE)["screenPxPerImagePx"] == pytest.approx(state["screenPxPerImagePx"])
        page.close()


def test_a_report_and_a_pdf_open_inside_the_viewer(kinds_site, chromium):
    with browser.serve(kinds_site) as url:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url + "/index.html")
        metas = page.locator("button[data-series] .meta").all_inner_texts()
        page.locator("button[data-series]").nth(metas.index("SR · structured report · report")).click()
        frame = page.locator("#viewer-stage iframe")
        frame.wait_for(state="visible")  # the viewer opens on the click's next frame, not during it
        assert frame.is_visible() and frame.get_attribute("sandbox") == ""  # no scripts, no origin
        report = page.frame_locator("#viewer-stage iframe").locator("body")
        assert "A mass of 3 cm was detected." in report.inner_text()
        assert page.locator("#viewer-stage p").is_hidden()  # no "No picture for this item."
        page.keyboard.press("Escape")
        pdf = next(i for i, m in enumerate(metas) if m.startswith("DOC · document · PDF document"))
        page.locator("button[data-series]").nth(pdf).click()
        page.wait_for_function("() => (document.querySelector('#viewer-stage iframe') || {}).src"
                               " && document.querySelector('#viewer-stage iframe').src.endsWith('report.pdf')")
        assert frame.is_visible() and frame.get_attribute("src").endswith("report.pdf")
        assert frame.get_attribute("sandbox") is None  # Chromium shows no PDF in a sandboxed frame
        page.close()


def test_on_a_phone_nothing_overflows_and_the_series_slider_is_labelled(overlay_site, chromium):
    with browser.serve(overlay_site) as url:
        page = chromium.new_page(viewport={"width": 390, "height": 844})
        page.goto(url + "/index.html")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        open_card_of(page, "20 images")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        label = page.locator(".move label")
        assert label.is_visible() and label.inner_text() == "Image in series"
        for selector in ("#viewer-zoom-in", "#viewer-close", "#viewer-stage"):
            box = page.locator(selector).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (selector, box)
        page.close()
