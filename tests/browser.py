"""Looking at our outputs in a real browser: Debian's Chromium, driven by Playwright.

    with serve(folder) as url, chromium() as browser:
        page = browser.new_page()
        page.goto(url + "/index.html")

`serve` puts a folder on http://127.0.0.1:PORT with byte-range support (a
<video> seeks by asking for byte ranges; Python's SimpleHTTPRequestHandler
ignores the Range header).  `chromium` starts /usr/bin/chromium headless with
a fresh profile and no network chatter; Playwright's own browser download is
never used.  `require_browser()` skips a test when either is missing, or
fails it when REQUIRE_BROWSER=1 (for CI, so the tests cannot silently stop
running there).
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import os
import re
import threading
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: apt-get install -y chromium

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def require_browser() -> None:
    """Skip (or, with REQUIRE_BROWSER=1, fail) unless Playwright and Chromium are installed."""
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install playwright)")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"{CHROMIUM} (apt-get install -y chromium)")
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (REQUIRE_BROWSER=1)", pytrace=False)
        pytest.skip(message)


# -----------------------------------------------------------------------------
# Serving a folder
# -----------------------------------------------------------------------------

RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class RangeRequestHandler(SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler plus single byte ranges (``Range: bytes=A-B``, ``A-``, ``-N``)."""

    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".mp4": "video/mp4", ".gif": "image/gif", ".png": "image/png",
        ".json": "application/json", ".txt": "text/plain; charset=utf-8",
    }

    BLANK = "/__blank__.html"  # an empty page on the server's origin, whatever the folder holds

    _range: int | None = None  # length of the 206 body being sent
    _file = False  # the request names a file (so Accept-Ranges is true of it)

    def send_head(self):
        self._range = None
        if self.path == self.BLANK:
            return self._send_blank()
        header = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        self._file = path.is_file()
        if header is None or not self._file:
            return super().send_head()
        size = path.stat().st_size
        match = RANGE.match(header.strip())
        if match is None or match.groups() == ("", ""):
            return super().send_head()  # not a form we serve: the whole file, as RFC 9110 allows
        first, last = match.groups()
        if first == "":  # the last N bytes
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        if start >= size or start > end:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        body = path.open("rb")
        body.seek(start)
        self._range = end - start + 1
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(self._range))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return body

    def _send_blank(self):
        body = b"<!doctype html><meta charset=utf-8><title>blank</title><body></body>"
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def copyfile(self, source, outputfile):
        if self._range is None:
            return super().copyfile(source, outputfile)
        left = self._range
        while left > 0:
            chunk = source.read(min(left, 64 * 1024))
            if not chunk:
                break
            outputfile.write(chunk)
            left -= len(chunk)

    def end_headers(self):
        if self._file and self._range is None:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format, *args):  # quiet: pytest shows failures, not access logs
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (a free port) in a thread; yields the base URL.

    URL + RangeRequestHandler.BLANK is an empty page of the same origin: a
    place to run scripts that load the folder's files and read their pixels.
    """
    handler = partial(RangeRequestHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -----------------------------------------------------------------------------
# Chromium
# -----------------------------------------------------------------------------

@contextlib.contextmanager
def chromium(*extra_args: str):
    """Debian's Chromium, headless; yields a Playwright Browser.

    Playwright's `launch` gives the browser a fresh profile in a temporary
    folder and removes it on close (it refuses a --user-data-dir argument).
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args], timeout=30_000,
        )
        try:
            yield browser
        finally:
            browser.close()


# JavaScript run in the page: `canvasPixels(source, width, height)` draws an
# <img>, <video>, canvas or VideoFrame onto a fresh canvas and returns its
# RGBA pixels from getImageData, base64-encoded (a JSON list of ints is slow).
PAGE_HELPERS = """
window.canvasPixels = (source, width, height) => {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(source, 0, 0, width, height);
  const data = ctx.getImageData(0, 0, width, height).data;
  let text = '';
  for (let i = 0; i < data.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, data.subarray(i, i + 0x8000));
  }
  return btoa(text);
};
"""


def rgba(encoded: str, width: int, height: int) -> np.ndarray:
    """Pixels returned by `canvasPixels` as a (height, width, 4) uint8 array."""
    return np.frombuffer(base64.b64decode(encoded), dtype=np.uint8).reshape(height, width, 4)
