"""Shared fixtures: real DICOM files by name, and running the converter."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dicom_converter  # noqa: E402  (after the path is set)


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


@pytest.fixture
def converter():
    return dicom_converter


def write_gif(frames, path: Path, durations_ms, max_size=dicom_converter.DEFAULT_GIF_MAX_SIZE) -> None:
    """A GIF of 8-bit frames through the converter's streaming `gif_writer`."""
    with dicom_converter.gif_writer(path, durations_ms, max_size) as write:
        for frame in frames:
            write(frame)


def write_mp4(frames, path: Path, rate, crf: int) -> int:
    """An MP4 of 8-bit frames through the converter's streaming `mp4_writer`; the frame count."""
    count = 0
    with dicom_converter.mp4_writer(path, rate, crf) as write:
        for frame in frames:
            write(frame)
            count += 1
    return count
