"""index_page(): the series cards and the viewer, statically and in Debian's Chromium.

The site (`make_site`) is synthetic: no real CD has 3,000 items in 10 series
with a hostile patient name, a cine and a sound in one.  Browser tests are
skipped when Playwright or /usr/bin/chromium is missing (failed with
REQUIRE_BROWSER=1): see tests/browser.py.
Every browser test also checks that the page logged no console error, opened
no dialog and requested nothing outside the output folder.
"""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import browser
import numpy as np
import pytest

from _dicom_converter.index_page import INDEX_DATA_ID, index_page, script_json
from _dicom_converter.values import person_name_listed

SERIES, PER_SERIES = 10, 300
MIXED = SERIES - 1  # the series with no thumbnail, whose first items are a cine, a sound and a report
HOSTILE = 1  # the series with hostile title, fact, excerpt and link
INJECT_NAME = "<script>window.pwned=1;alert(1)</script>"
INJECT_TITLE = '<img src=x onerror="window.pwned=2;alert(2)">'
INJECT_FACT = "</script><script>window.pwned=3;alert(3)</script>"
INJECT_EXCERPT = "<b>bold</b> &amp; <!-- line\u2028break\u2029 -->"
INJECT_URL = "javascript:window.pwned=4"
CINE_SECONDS = 2.0


# -----------------------------------------------------------------------------
# The synthetic output folder
# -----------------------------------------------------------------------------

def make_site(folder: Path) -> list[dict]:
    """Write a converter-like output folder and its index.html; return the model.

    Two patients (the first named INJECT_NAME), three studies, SERIES series
    of PER_SERIES items each.  Item i of series k is ``S{k}/IM{i:04d}.png``, a
    grey 96x64 picture of "k/i" (every URL distinct, so a test can tell which
    one is shown), with a ``.txt`` beside it.  Series 0..8 have a 128^2 JPEG
    thumbnail under ``.thumbs/``; series MIXED has none, and its items 0, 1, 2
    are a cine (``cine.mp4``, CINE_SECONDS of H.264, plus ``cine.gif``), a sound
    (``voice.wav``, no picture) and a report (``report.html`` and an excerpt).
    Series HOSTILE carries the INJECT_* strings in its title, facts, excerpt
    and links.
    """
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".thumbs").mkdir()
    series_list = []
    for k in range(SERIES):
        (folder / f"S{k}").mkdir()
        items = []
        for i in range(PER_SERIES):
            stem = f"S{k}/IM{i:04d}"
            picture = Image.new("L", (96, 64), 40 + (i * 7) % 160)
            ImageDraw.Draw(picture).text((6, 20), f"{k}/{i}", fill=255)
            picture.save(folder / f"{stem}.png", compress_level=1)
            (folder / f"{stem}.txt").write_text(f"item {i} of series {k}\n", encoding="utf-8")
            items.append({"title": stem, "image": f"{stem}.png", "video": None, "audio": None,
                          "facts": [["Display", "window 40/400 (file)"], ["Slice", str(i + 1)]],
                          "links": [["txt", f"{stem}.txt"]], "excerpt": None})
        thumb = None
        if k != MIXED:
            thumb = f".thumbs/S{k}.jpg"
            Image.new("RGB", (128, 128), (30 * k % 255, 90, 160)).save(folder / thumb, quality=80)
        series_list.append({"key": f"s{k}", "title": f"Series {k + 1} CT HEAD", "modality": "CT",
                            "count": PER_SERIES, "size": "96×64", "thumb": thumb, "items": items})

    mixed = series_list[MIXED]
    mixed.update(title="Series 10 mixed", modality="OT")
    write_mp4(folder / "cine.mp4", frames=int(CINE_SECONDS * 10), rate=10)
    Image.new("L", (64, 64), 128).save(folder / "cine.gif")
    write_wav(folder / "voice.wav")
    (folder / "report.html").write_text("<!doctype html><title>report</title><p>report", encoding="utf-8")
    mixed["items"][0].update(title="cine", image="cine.gif", video="cine.mp4",
                             facts=[["Rate", "10 fps (default)"]], links=[["txt", "S9/IM0000.txt"]])
    mixed["items"][1].update(title="voice", image=None, audio="voice.wav", facts=[["Audio", "8000 Hz"]])
    mixed["items"][2].update(title="report", image=None, excerpt="Findings: none.\nImpression: normal.",
                             links=[["report", "report.html"], ["txt", "S9/IM0002.txt"]])

    hostile = series_list[HOSTILE]
    hostile["title"] = INJECT_TITLE
    hostile["items"][0].update(title="line\u2028sep\u2029" + INJECT_TITLE,
                               facts=[["Display", INJECT_FACT], [INJECT_TITLE, "x"]],
                               excerpt=INJECT_EXCERPT,
                               links=[["txt", "S1/IM0000.txt"], [INJECT_TITLE, INJECT_URL]])

    patients = [
        {"name": person_name_listed(INJECT_NAME), "id": "X<1>", "studies": [
            {"date": "20240102", "description": INJECT_FACT, "series": series_list[:4]}]},
        {"name": "DOE, JANE", "id": "123", "studies": [
            {"date": "20230101", "description": "CT HEAD", "series": series_list[4:7]},
            {"date": "20240301", "description": "MR KNEE", "series": series_list[7:]}]},
    ]
    (folder / "index.html").write_text(index_page(patients), encoding="utf-8")
    return patients


def write_mp4(path: Path, frames: int, rate: int) -> None:
    """A 64x64 H.264 clip (yuv420p) of `frames` frames at `rate` fps, through PyAV."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for n in range(frames):
            frame = np.full((64, 64, 3), (n * 12) % 256, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def write_wav(path: Path, seconds: float = 0.5, rate: int = 8000) -> None:
    """A 440 Hz mono 16-bit tone."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


def item_url(k: int, i: int) -> str:
    return f"S{k}/IM{i:04d}.png"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("index_page") / "out"
    make_site(folder)
    return folder


# -----------------------------------------------------------------------------
# The text of the page
# -----------------------------------------------------------------------------

def page_parts(site: Path) -> tuple[str, list]:
    """(the page without its JSON block, the JSON block's value)."""
    text = (site / "index.html").read_text(encoding="utf-8")
    match = re.search(rf'<script type="application/json" id="{INDEX_DATA_ID}">(.*?)</script>', text, re.S)
    return text[:match.start()] + text[match.end():], json.loads(match.group(1))


def test_static_markup_stays_small_for_3000_items(site):
    markup, data = page_parts(site)
    assert len(markup) < 40_000  # headings, 10 cards, the viewer's frame, style and script
    markup = re.sub(r"<script>.*?</script>", "", markup, flags=re.S)
    assert markup.count("<img") == SERIES - 1  # the thumbnails, nothing else
    assert "<video" not in markup and "<audio" not in markup
    assert "IM0001" not in markup  # items live only in the JSON
    assert [len(s["items"]) for s in data] == [PER_SERIES] * SERIES
    assert markup.count('loading="lazy"') == SERIES - 1


def test_dicom_values_are_escaped_in_the_markup(site):
    markup, _ = page_parts(site)
    assert "<script>window.pwned" not in markup and "<img src=x" not in markup
    # "=" separates a PN's component groups: the second is shown as the ideographic name
    assert "<h2>&lt;script&gt;window.pwned (1;alert(1)&lt;/script&gt;) · ID X&lt;1&gt;</h2>" in markup
    assert markup.count("<script") == 1  # the page's own; the JSON block was cut out above


def test_json_block_cannot_end_its_script():
    hostile = {"a": "</script><script>x()</script>", "b": "<!--", "c": "&amp;", "d": "\u2028\u2029>"}
    text = script_json(hostile)
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == hostile


def test_an_empty_model_is_a_page():
    text = index_page([])
    assert "<h1>DICOM conversion</h1>" in text and "0 series, 0 items" in text


def test_a_card_without_thumbnail_or_links():
    series = {"key": "x", "title": "Series 1", "modality": "SR", "count": 1, "size": "", "thumb": None,
              "items": [{"title": "a", "image": None, "video": None, "audio": None, "facts": [], "links": [],
                         "excerpt": None}]}
    text = index_page([{"name": "", "id": "", "studies": [{"date": "", "description": "", "series": [series]}]}])
    assert '<span class="thumb none" aria-hidden="true">SR</span>' in text
    assert "SR · structured report · 1 item</span>" in text and "<h2>Unknown patient</h2>" in text
    assert 'class="files"' not in text


# -----------------------------------------------------------------------------
# In Chromium
# -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(site):
    with browser.serve(site) as url:
        yield url + "/"


class Watched:
    """A fresh page that records console errors, dialogs and requests while a test runs."""

    def __init__(self, chromium, base: str, **context):
        self.base = base
        self.context = chromium.new_context(**{"viewport": {"width": 1280, "height": 900}, **context})
        self.page = self.context.new_page()
        self.errors, self.dialogs, self.requests = [], [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("request", lambda r: self.requests.append((r.url, r.resource_type)))

    def open(self, name: str = "index.html"):
        self.page.goto(self.base + name, wait_until="load")
        return self.page

    def paths(self, kind: str | None = None) -> list[str]:
        """Requested paths relative to the output folder (of one resource type, if given)."""
        return [unquote(url[len(self.base):]) for url, t in self.requests
                if url.startswith(self.base) and (kind is None or t == kind)]

    def item_requests(self) -> set[str]:
        return {p for p in self.paths() if re.fullmatch(r"S\d/IM\d{4}\.png", p)}

    def check_and_close(self) -> None:
        self.page.wait_for_timeout(100)  # a late error or dialog would show up here
        try:
            assert self.errors == []
            assert self.dialogs == []
            assert [u for u, _ in self.requests if not u.startswith(self.base)] == []
            assert self.page.evaluate("window.pwned") is None
        finally:
            self.context.close()


@pytest.fixture
def watched(chromium, served):
    pages = []

    def start(base: str = served, **context) -> Watched:
        pages.append(Watched(chromium, base, **context))
        return pages[-1]

    yield start
    for w in pages:
        w.check_and_close()


def shown(page) -> dict:
    """What the viewer shows: its <img>/<video>/<audio> sources (null when hidden), slider, text."""
    return page.evaluate("""() => {
      const stage = document.getElementById('viewer-stage');
      const src = tag => { const el = stage.querySelector(tag);
                           return el && !el.hidden ? el.getAttribute('src') : null; };
      const slider = document.getElementById('viewer-slider');
      return { open: document.getElementById('viewer').open, img: src('img'), video: src('video'), audio: src('audio'),
               value: slider.value, valuetext: slider.getAttribute('aria-valuetext'),
               title: document.getElementById('viewer-title').textContent };
    }""")


def open_card(page, k: int) -> None:
    page.locator(f'button[data-series="{k}"]').click()
    page.wait_for_function("() => document.getElementById('viewer').open")


def expect_item(page, k: int, i: int) -> None:
    now = shown(page)
    assert (now["img"], now["value"], now["valuetext"], now["title"]) == (
        item_url(k, i), str(i + 1), f"image {i + 1} of {PER_SERIES}", f"S{k}/IM{i:04d}"), now


def live_text(page, text: str) -> None:
    page.wait_for_function("t => document.getElementById('viewer-live').textContent === t", arg=text,
                           timeout=5000)


def test_first_load_requests_only_the_thumbnails(watched):
    w = watched()
    page = w.open()
    page.mouse.wheel(0, 5000)  # bring every lazy card into view
    page.wait_for_load_state("networkidle")
    images = w.paths("image")
    assert len(images) <= SERIES and all(p.startswith(".thumbs/") for p in images), images
    assert sorted(images) == sorted(f".thumbs/S{k}.jpg" for k in range(SERIES) if k != MIXED)
    assert w.item_requests() == set() and all(p in ("index.html",) or p.startswith(".thumbs/") for p in w.paths())
    assert page.locator("li.card").count() == SERIES
    assert page.locator(".thumb.none").inner_text() == "OT"
    assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth === 128)")


def test_a_click_opens_the_viewer_and_keys_move_through_the_series(watched):
    w = watched()
    page = w.open()
    open_card(page, 0)
    expect_item(page, 0, 0)
    assert page.evaluate("document.getElementById('viewer').getAttribute('aria-label')") == "Series 1 CT HEAD"
    for _ in range(5):
        page.keyboard.press("ArrowDown")
    expect_item(page, 0, 5)
    live_text(page, f"image 6 of {PER_SERIES}")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")
    expect_item(page, 0, 4)
    page.keyboard.press("PageDown")
    expect_item(page, 0, 14)
    page.keyboard.press("PageUp")
    expect_item(page, 0, 4)
    page.keyboard.press("End")
    expect_item(page, 0, PER_SERIES - 1)
    page.keyboard.press("ArrowDown")  # stays on the last
    expect_item(page, 0, PER_SERIES - 1)
    live_text(page, f"image {PER_SERIES} of {PER_SERIES}")
    page.keyboard.press("Home")
    expect_item(page, 0, 0)
    page.wait_for_function("() => document.querySelector('#viewer-stage img').complete")
    assert page.evaluate("document.querySelector('#viewer-stage img').naturalWidth") == 96
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.getElementById('viewer').open")
    assert page.evaluate("document.activeElement.dataset.series") == "0"
    # closed ('close' fires a task after .open turns false): nothing left loading
    page.wait_for_function("() => !document.querySelector('#viewer-stage img').hasAttribute('src')")


def test_enter_on_a_focused_card_opens_it_and_close_returns_focus(watched):
    w = watched()
    page = w.open()
    page.locator('button[data-series="2"]').focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('viewer').open")
    assert page.evaluate("document.activeElement.id") == "viewer-slider"
    page.keyboard.press("ArrowRight")
    expect_item(page, 2, 1)
    page.get_by_role("button", name="Close").click()
    page.wait_for_function("() => !document.getElementById('viewer').open")
    assert page.evaluate("document.activeElement.dataset.series") == "2"


def test_the_slider_and_the_wheel_move_it(watched):
    w = watched()
    page = w.open()
    open_card(page, 3)
    page.locator("#viewer-slider").fill("150")
    expect_item(page, 3, 149)
    box = page.locator("#viewer-stage").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(3):
        page.mouse.wheel(0, 100)
        page.wait_for_timeout(30)
    page.wait_for_function(f"() => document.getElementById('viewer-slider').value === '{152 + 1}'")
    expect_item(page, 3, 152)
    page.mouse.wheel(0, -100)
    page.wait_for_function(f"() => document.getElementById('viewer-slider').value === '{151 + 1}'")
    expect_item(page, 3, 151)
    live_text(page, f"image 152 of {PER_SERIES}")


def test_a_swipe_moves_it(watched):
    w = watched(has_touch=True)
    page = w.open()
    open_card(page, 4)
    box = page.locator("#viewer-stage").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = w.context.new_cdp_session(page)

    def swipe(dx: float, dy: float) -> None:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
        for n in range(1, 11):
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove",
                                                  "touchPoints": [{"x": x + dx * n / 10, "y": y + dy * n / 10}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

    swipe(0, -110)  # finger up 110 px: 4 items forward (24 px each)
    expect_item(page, 4, 4)
    swipe(60, 5)  # finger right 60 px: 2 back
    expect_item(page, 4, 2)


def test_only_the_neighbours_are_prefetched(watched):
    w = watched()
    page = w.open()
    open_card(page, 5)
    page.wait_for_load_state("networkidle")
    assert w.item_requests() == {item_url(5, 0), item_url(5, 1)}
    page.keyboard.press("End")
    # "networkidle" may already hold when the key is pressed: wait for the last item's request,
    # then for the network to settle, before counting
    wanted = {item_url(5, i) for i in (0, 1, PER_SERIES - 2, PER_SERIES - 1)}
    for _ in range(100):
        if wanted <= w.item_requests():
            break
        page.wait_for_timeout(50)
    page.wait_for_load_state("networkidle")
    assert w.item_requests() == wanted


def test_a_cine_plays_a_sound_sounds_and_a_report_shows_its_excerpt(watched):
    w = watched()
    page = w.open()
    open_card(page, MIXED)
    now = shown(page)
    assert (now["video"], now["img"], now["audio"]) == ("cine.mp4", None, None)
    page.wait_for_function("() => document.querySelector('#viewer-stage video').readyState >= 2", timeout=10_000)
    video = page.evaluate("""() => { const v = document.querySelector('#viewer-stage video');
      return { duration: v.duration, controls: v.controls, muted: v.muted, loop: v.loop, error: v.error }; }""")
    assert video == {"duration": pytest.approx(CINE_SECONDS, abs=0.05), "controls": True, "muted": True,
                     "loop": True, "error": None}
    assert "cine.gif" not in w.paths()  # the MP4 is shown, not the GIF of the same clip
    page.keyboard.press("ArrowDown")
    now = shown(page)
    assert (now["video"], now["img"], now["audio"]) == (None, None, "voice.wav")
    page.wait_for_function("() => document.querySelector('#viewer-stage audio').readyState >= 1", timeout=10_000)
    assert page.evaluate("document.querySelector('#viewer-stage audio').duration") == pytest.approx(0.5, abs=0.02)
    page.keyboard.press("ArrowDown")
    now = shown(page)
    assert (now["video"], now["img"], now["audio"]) == (None, None, None)
    assert page.locator("#viewer-stage p").inner_text() == "No picture for this item."
    assert page.locator("#viewer-excerpt").inner_text() == "Findings: none.\nImpression: normal."
    assert page.locator("#viewer-links a").evaluate_all("l => l.map(a => [a.textContent, a.getAttribute('href')])") \
        == [["report", "report.html"], ["txt", "S9/IM0002.txt"]]


def test_it_works_from_file_urls(watched, site):
    w = watched(base=site.as_uri() + "/")
    page = w.open()
    open_card(page, 6)
    page.keyboard.press("ArrowDown")
    expect_item(page, 6, 1)
    page.wait_for_function("() => document.querySelector('#viewer-stage img').complete")
    assert page.evaluate("document.querySelector('#viewer-stage img').naturalWidth") == 96
    link = page.locator("#viewer-links a").first
    assert Path(url2pathname(urlsplit(link.evaluate("a => a.href")).path)).is_file()
    open_again = w.item_requests()
    assert open_again <= {item_url(6, i) for i in range(3)}, open_again


def test_hostile_values_show_as_text(watched):
    w = watched()
    page = w.open()
    assert "<script>window.pwned (1;alert(1)</script>) · ID X<1>" in page.locator("h2").all_inner_texts()
    assert page.locator("h3").first.inner_text() == f"2024-01-02 · {INJECT_FACT} · 4 series"
    assert page.locator(f'button[data-series="{HOSTILE}"] .title').inner_text() == INJECT_TITLE
    assert page.evaluate("document.querySelectorAll('script').length") == 2
    assert page.evaluate("document.querySelectorAll('img[src=x]').length") == 0
    open_card(page, HOSTILE)
    assert page.locator("#viewer-series").inner_text() == INJECT_TITLE
    assert page.evaluate("document.getElementById('viewer').getAttribute('aria-label')") == INJECT_TITLE
    assert page.evaluate("document.getElementById('viewer-title').textContent") == \
        "line\u2028sep\u2029" + INJECT_TITLE
    assert page.locator("#viewer-facts").evaluate("dl => [...dl.children].map(e => e.textContent)") == \
        ["Display", INJECT_FACT, INJECT_TITLE, "x"]
    assert page.evaluate("document.getElementById('viewer-excerpt').textContent") == INJECT_EXCERPT
    links = page.locator("#viewer-links a").evaluate_all("l => l.map(a => [a.textContent, a.getAttribute('href')])")
    assert links == [["txt", "S1/IM0000.txt"], [INJECT_TITLE, "./" + INJECT_URL]]  # a path, not a scheme
    assert page.evaluate("document.querySelectorAll('img[src=x], script').length") == 2


def test_without_script_every_card_links_a_file(watched, site):
    w = watched(java_script_enabled=False)
    page = w.open()
    assert page.locator("li.card").count() == SERIES
    hrefs = page.locator("li.card a").evaluate_all("l => l.map(a => a.getAttribute('href'))")
    assert len(hrefs) == SERIES and all((site / unquote(h)).is_file() for h in hrefs), hrefs
    assert hrefs[0] == "S0/IM0000.txt"
    assert w.item_requests() == set()


def test_a_phone_gets_two_columns_and_a_fitted_viewer(watched):
    w = watched(viewport={"width": 390, "height": 844}, device_scale_factor=2, has_touch=True, is_mobile=True)
    page = w.open()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    boxes = [page.locator(f'button[data-series="{k}"]').bounding_box() for k in (0, 1, 2)]
    assert boxes[0]["y"] == boxes[1]["y"] < boxes[2]["y"]  # two per row
    assert 150 < boxes[0]["width"] < 200
    open_card(page, 0)
    page.wait_for_function("() => document.querySelector('#viewer-stage img').complete")
    for selector in ("#viewer-stage img", "#viewer-close", "#viewer-slider", "#viewer-facts"):
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["y"] + box["height"] <= 844, selector


def test_a_study_described_by_its_modality_says_it_once():
    study = {"date": "20130125", "time": "105919", "description": "ECG", "modalities": ["ECG"], "series": []}
    assert "<h3>2013-01-25 10:59 · ECG · 0 series</h3>" in index_page([{"name": "", "studies": [study]}])
