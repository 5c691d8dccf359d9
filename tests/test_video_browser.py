"""A DICOM video's MP4 in Chromium: the H.264 stream copied from a bare B-frame stream, the one
copied from a transport stream with its audio, and the H.264 made from an HEVC stream each play,
last their frames over their rate, and show each frame at its time (the moving bar of test_video)."""

from __future__ import annotations

import numpy as np
import pytest

import browser
from conftest import run_cli
from test_browser import PAGE_SCRIPT
from test_video import FRAMES, H264, HEVC, RATE, clip_with_audio, video_dicom, video_stream


@pytest.fixture(scope="module")
def video_page(tmp_path_factory):
    browser.require_browser()
    root = tmp_path_factory.mktemp("video_browser")
    (root / "in").mkdir()
    video_dicom(root / "in" / "scope.dcm", video_stream("libx264", "h264"), H264, FrameTime=1000 / RATE)
    video_dicom(root / "in" / "scope_ts.dcm", clip_with_audio("mpegts"), H264)
    video_dicom(root / "in" / "heart.dcm", video_stream("libx265", "hevc"), HEVC)
    run = run_cli(root / "in", "-o", root / "out", "-q")
    assert run.returncode == 0, run.stdout + run.stderr
    with browser.serve(root / "out") as url, browser.chromium() as chromium:
        tab = chromium.new_page()
        tab.set_default_timeout(15_000)
        tab.add_init_script(browser.PAGE_HELPERS + PAGE_SCRIPT)
        tab.goto(url + browser.RangeRequestHandler.BLANK)
        yield tab, url, root / "out"
        tab.close()


@pytest.mark.parametrize("mp4", ["scope.mp4", "scope_ts.mp4", "heart.h264.mp4"])
def test_a_copied_video_plays_in_chromium_with_its_duration_and_frames_in_order(video_page, mp4):
    import av

    tab, url, _ = video_page
    info = tab.evaluate("src => loadVideo(src)", f"{url}/{mp4}")
    assert (info["width"], info["height"]) == (96, 64)
    assert info["duration"] == pytest.approx(FRAMES / RATE, abs=1 / RATE), info
    # a transport stream's audio may start before its video: the video then starts that much later
    with av.open(str(video_page[2] / mp4)) as container:
        stream = container.streams.video[0]
        start = float((stream.start_time or 0) * stream.time_base)
    bars = []
    for k in (1, 5, 9, 13, 17, 21):  # B-frames among them: shown out of order, a bar would jump back
        seek = tab.evaluate("([t, w, h]) => seekPixels(t, w, h)", [start + (k + 0.5) / RATE, 96, 64])
        shown = browser.rgba(seek["pixels"], 96, 64)
        bars.append(int(np.flatnonzero(shown[32, :, 0] > 128)[0]))  # the bar's left edge, as bar_positions
    assert all(abs(x - (2 + 3 * k)) <= 1 for x, k in zip(bars, (1, 5, 9, 13, 17, 21))), bars
    ended = tab.evaluate("rate => playToEnd(rate)", 4)
    assert ended["currentTime"] == pytest.approx(ended["duration"], abs=1e-3), ended
