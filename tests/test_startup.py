"""What a run imports, and how often: pydicom once per run under fork (the workers inherit it),
and without the HTTP client and progress bar pydicom loads only for its test-data downloads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, testdata


@pytest.mark.parametrize("module, flag", [("requests", "HAVE_REQUESTS"), ("tqdm", "USE_PROGRESS_BAR")])
def test_pydicom_is_imported_without_its_download_helpers_which_stay_importable(module, flag):
    """requests (not one of our dependencies, but often installed) and tqdm (ours, for the
    terminal's bar) are hidden from pydicom's import only: pydicom's downloads go without
    them, and afterwards each imports as it would have, or is missing as it would have been."""
    code = ("import importlib.util, sys\n"
            f"installed = importlib.util.find_spec({module!r}) is not None\n"
            "from _dicom_converter.reading import import_pydicom\n"
            "import_pydicom()\n"
            "import pydicom.data.download as download\n"
            f"print({module!r} in sys.modules, download.{flag})\n"
            "try:\n"
            f"    import {module}\n"
            "    print('imported' if installed else 'unexpected')\n"
            "except ImportError as exc:\n"
            "    print('hidden' if 'halted' in str(exc) else 'missing' if not installed else 'unexpected')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[:2] == ["False", "False"]
    assert run.stdout.split()[2] in ("imported", "missing"), run.stdout


def converted_with_import_times(tmp_path, start_method: str) -> subprocess.CompletedProcess:
    """Four copies of CT_small converted by two workers started by `start_method`, under
    -X importtime, which prints a line for every module a process imports (the workers'
    lines too: they share stderr)."""
    (tmp_path / "in").mkdir()
    for n in range(4):
        shutil.copy(testdata("CT_small.dcm"), tmp_path / "in" / f"ct{n}.dcm")
    env = {**os.environ, "DICOM_CONVERTER_START_METHOD": start_method}
    run = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "dicom_converter.py"), str(tmp_path / "in"),
                          "-o", str(tmp_path / "out"), "-j", "2"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 converted" in run.stdout
    return run


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="fork is Linux's start method")
def test_forked_workers_inherit_pydicom_instead_of_importing_it_again(tmp_path):
    """Two workers and the main process imported pydicom three times; now the main process
    imports it once, before the workers fork."""
    run = converted_with_import_times(tmp_path, "fork")
    assert len(re.findall(r"\|\s+pydicom$", run.stderr, re.M)) == 1  # at any depth
    # nor its download helpers (a hidden module's refused import has a line too, but loads no submodule)
    assert not re.findall(r"\|\s+(requests|tqdm)\.\w+$", run.stderr, re.M)


def test_a_spawned_pools_main_process_writes_the_page_without_pydicom(tmp_path):
    """Under spawn (Windows' and macOS' start method) each worker imports pydicom itself;
    the main process, which only walks, hands out and writes the manifest and the page,
    does not import it for the page's patient names (0.1-0.2 s): three imports with two
    workers before, two now."""
    run = converted_with_import_times(tmp_path, "spawn")
    assert len(re.findall(r"\|\s+pydicom$", run.stderr, re.M)) == 2  # at any depth: once in each worker
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "<h2>CompressedSamples^CT1" not in page and "CompressedSamples, CT1" in page
