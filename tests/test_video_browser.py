"""A DICOM video's MP4 in Chromium: the H.264 stream copied from a B-frame stream plays, lasts
its frames over its rate, and shows each frame at its time (the moving bar of test_video)."""

from __future__ import annotations

import numpy as np
import pytest

import browser
from conftest import run_cli
from test_browser import PAGE_SCRIPT
from test_video import FRAMES, H264, RATE, video_dicom, video_stream


@pytest.fixture(scope="module")
def video_page(tmp_path_factory):
    browser.require_browser()
    root = tmp_path_factory.mktemp("video_browser")
    (root / "in").mkdir()
    video_dicom(root / "in" / "scope.dcm", video_stream("libx264", "h264"), H264, FrameTime=1000 / RATE)
    run = run_cli(root / "in", "-o", root / "out", "-q")
    assert run.returncode == 0, run.stdout + run.stderr
    with browser.serve(root / "out") as url, browser.chromium() as chromium:
        tab = chromium.new_page()
        tab.set_default_timeout(15_000)
        tab.add_init_script(browser.PAGE_HELPERS + PAGE_SCRIPT)
        tab.goto(url + browser.RangeRequestHandler.BLANK)
        yield tab, url
        tab.close()


def test_a_copied_video_plays_in_chromium_with_its_duration_and_frames_in_order(video_page):
    tab, url = video_page
    info = tab.evaluate("src => loadVideo(src)", f"{url}/scope.mp4")
    assert (info["width"], info["height"]) == (96, 64)
    assert info["duration"] == pytest.approx(FRAMES / RATE, abs=1 / RATE), info
    bars = []
    for k in (1, 5, 9, 13, 17, 21):  # B-frames among them: shown out of order, a bar would jump back
        seek = tab.evaluate("([t, w, h]) => seekPixels(t, w, h)", [(k + 0.5) / RATE, 96, 64])
        shown = browser.rgba(seek["pixels"], 96, 64)
        bars.append(int(np.argmax(shown[32, :, 0])))
    assert all(abs(x - (2 + 3 * k)) <= 1 for x, k in zip(bars, (1, 5, 9, 13, 17, 21))), bars
    ended = tab.evaluate("rate => playToEnd(rate)", 4)
    assert ended["currentTime"] == pytest.approx(ended["duration"], abs=1e-3), ended
