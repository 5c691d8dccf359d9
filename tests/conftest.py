"""Shared fixtures: real DICOM files by name, and running the converter."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# after the path is set: the tests import the package beside dicom_converter.py
from _dicom_converter.base import DEFAULT_GIF_MAX_SIZE  # noqa: E402
from _dicom_converter.gif import gif_writer  # noqa: E402
from _dicom_converter.writers import mp4_writer  # noqa: E402


def testdata(name: str) -> Path:
    """A real file shipped by pydicom or pydicom-data, looked up offline by name."""
    from pydicom.data import get_testdata_file

    found = get_testdata_file(name, download=False)
    if found is None:
        pytest.fail(f"{name} is not installed (pip install -r requirements-dev.txt)")
    return Path(found)


def copy_inputs(folder: Path, *names: str) -> Path:
    """Copy real test files by name into `folder` (created) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(testdata(name), folder / name)
    return folder


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run dicom_converter.py as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, str(ROOT / "dicom_converter.py"), *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=600,
    )


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium through Playwright, one per test module (see tests/browser.py)."""
    import browser

    browser.require_browser()
    with browser.chromium() as instance:
        yield instance


def write_gif(frames, path: Path, durations_ms, max_size=DEFAULT_GIF_MAX_SIZE) -> None:
    """A GIF of 8-bit frames through the converter's streaming `gif_writer`."""
    with gif_writer(path, durations_ms, max_size) as write:
        for frame in frames:
            write(frame)


def write_mp4(frames, path: Path, rate, crf: int) -> int:
    """An MP4 of 8-bit frames through the converter's streaming `mp4_writer`; the frame count."""
    count = 0
    with mp4_writer(path, rate, crf) as write:
        for frame in frames:
            write(frame)
            count += 1
    return count


def index_cards(index_html: Path) -> list[dict]:
    """The series cards of an index page, in page order: the patient (h2) and study (h3)
    headings above each, its title and thumbnail, and the viewer's items for it (from the
    page's JSON): ``{"h2", "h3", "title", "thumb", "items"}``."""
    import json
    import re
    from html.parser import HTMLParser

    page = index_html.read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script type="application/json" id="index-data">(.*?)</script>', page,
                                re.S).group(1))

    class Cards(HTMLParser):
        def __init__(self):
            super().__init__()
            self.cards, self.headings, self.heading, self.title = [], {"h2": "", "h3": ""}, None, False

        def handle_starttag(self, tag, attrs):
            attributes = dict(attrs)
            if tag in ("h2", "h3"):
                self.heading, self.headings[tag] = tag, ""
            elif tag == "button" and "data-series" in attributes:
                number = int(attributes["data-series"])
                self.cards.append({**self.headings, "title": "", "thumb": None, "items": data[number]["items"]})
            elif tag == "img" and "thumb" in attributes.get("class", "") and self.cards:
                self.cards[-1]["thumb"] = attributes.get("src")
            elif tag == "span" and attributes.get("class") == "title":
                self.title = True

        def handle_endtag(self, tag):
            self.heading = None if tag in ("h2", "h3") else self.heading
            self.title = False if tag == "span" else self.title

        def handle_data(self, text):
            if self.heading:
                self.headings[self.heading] += text
            if self.title and self.cards:
                self.cards[-1]["title"] += text

    parser = Cards()
    parser.feed(page)
    return parser.cards


def index_urls(cards: list[dict]) -> set[str]:
    """Every file an index page's cards and viewer refer to (decoded, relative to OUTPUT)."""
    from urllib.parse import unquote

    urls = {card["thumb"] for card in cards if card["thumb"]}
    for card in cards:
        for item in card["items"]:
            urls.update(item[kind] for kind in ("image", "video", "audio") if item.get(kind))
            urls.update(url for _, url in item.get("links", []))
    return {unquote(url) for url in urls}
