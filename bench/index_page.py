"""Time the index page for 3,000 items in 10 series (test_index_page.make_site), in Chromium.

    python3 bench/index_page.py [--screenshots]

Prints the page's size, its first contentful paint, DOMContentLoaded and load
times, the image requests of the first load, and the time from a click on a
card to the viewer's first decoded image, from a local server and from
file://.  With --screenshots, saves grid.png, viewer.png, phone-grid.png and
phone-viewer.png in the current folder.  Timings are printed, never asserted.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]

import browser  # noqa: E402
from test_index_page import make_site  # noqa: E402

TIMING = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  return { fcp: paint ? paint.startTime : null, dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd };
}"""


def measure(chromium, url: str) -> dict:
    """First-load timings and image requests of `url`, then click → first viewer image (ms)."""
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    images = []
    page.on("request", lambda r: images.append(r.url) if r.resource_type == "image" else None)
    page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    timing = page.evaluate(TIMING)
    timing["images"] = len(images)
    start = time.perf_counter()
    page.locator('button[data-series="0"]').click()
    page.wait_for_function("() => { const i = document.querySelector('#viewer-stage img');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    timing["open"] = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    page.keyboard.press("End")
    page.wait_for_function("() => { const i = document.querySelector('#viewer-stage img');"
                           " return i.getAttribute('src').endsWith('IM0299.png') && i.complete; }")
    timing["end"] = (time.perf_counter() - start) * 1000
    page.close()
    return timing


def screenshots(chromium, url: str) -> None:
    for name, viewport in (("", {"width": 1280, "height": 900}), ("phone-", {"width": 390, "height": 844})):
        context = chromium.new_context(viewport=viewport, device_scale_factor=1)
        page = context.new_page()
        page.goto(url, wait_until="load")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(Path.cwd() / f"{name}grid.png"))
        page.locator('button[data-series="1"]').click()
        page.wait_for_function("() => document.querySelector('#viewer-stage img').complete")
        page.keyboard.press("ArrowDown")
        page.wait_for_timeout(300)
        page.screenshot(path=str(Path.cwd() / f"{name}viewer.png"))
        context.close()


def main() -> None:
    browser.require_browser = lambda: None
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "out"
        start = time.perf_counter()
        make_site(site)
        print(f"made 3,000 items in {time.perf_counter() - start:.1f} s; "
              f"index.html {(site / 'index.html').stat().st_size / 1024:.0f} KiB")
        with browser.serve(site) as url, browser.chromium() as chromium:
            for label, page_url in (("http", url + "/index.html"), ("file", site.as_uri() + "/index.html")):
                for run in range(3):
                    t = measure(chromium, page_url)
                    print(f"{label} run {run + 1}: first paint {t['fcp']:.0f} ms, DOMContentLoaded {t['dcl']:.0f} ms, "
                          f"load {t['load']:.0f} ms, {t['images']} image requests; click to first image "
                          f"{t['open']:.0f} ms, End {t['end']:.0f} ms")
            if "--screenshots" in sys.argv:
                screenshots(chromium, url + "/index.html")
                print("saved grid.png, viewer.png, phone-grid.png, phone-viewer.png in", Path.cwd())


if __name__ == "__main__":
    main()
