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
