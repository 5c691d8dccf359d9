"""Every platform: start methods, a Windows emulation, crash isolation, portable names.

The process tests run the converter as a separate program (or its pool) under
each start method this machine has; faults are put in through the converter's
environment hooks (ENV_*), which reach worker and helper processes however
they start, never through a monkeypatch of code that runs in another process.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pydicom
import pytest
from conftest import ROOT, copy_inputs, run_cli, testdata
from test_safety import assert_outputs_whole, files_under, posix_signals, tree_hashes

from _dicom_converter import writers
from _dicom_converter.base import ENV_CRASH_ON, ENV_HELPER_PIXELS, ENV_START_METHOD, MAX_STEM_BYTES, Options
from _dicom_converter.cli import available_memory
from _dicom_converter.convert import convert_file
from _dicom_converter.inputs import name_key, output_stem, plan_outputs
from _dicom_converter.pool import default_jobs
from _dicom_converter.writers import write_text

START_METHODS = multiprocessing.get_all_start_methods()

# What CPython 3.11/3.12 on Windows lacks, emulated in every process of a run
# (sitecustomize is imported at the start of each interpreter, spawned workers
# and helpers included): no fork or forkserver, spawn the default, no os.fchmod,
# and os.kill(pid, 0) is no liveness check (on Windows it sends a console Ctrl-C).
WINDOWS_EMULATION = '''
import multiprocessing.context as context, os
for name in ("fork", "forkserver"):
    context._concrete_contexts.pop(name, None)
context._default_context._default_context = context._concrete_contexts["spawn"]
del os.fchmod
_kill = os.kill
def kill(pid, sig):
    if sig == 0:
        raise OSError("emulated Windows: os.kill(pid, 0) sends CTRL_C_EVENT")
    return _kill(pid, sig)
os.kill = kill
'''


def environment(**settings: str) -> dict[str, str]:
    return {**os.environ, **settings}


def run_converter(*args, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "dicom_converter.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def windows_emulation(tmp_path_factory) -> dict[str, str]:
    """The environment of a run under the Windows emulation; checks that it takes hold."""
    folder = tmp_path_factory.mktemp("windows")
    (folder / "sitecustomize.py").write_text(WINDOWS_EMULATION)
    env = environment(PYTHONPATH=os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
    env.pop(ENV_START_METHOD, None)
    probe = subprocess.run([sys.executable, "-c", "import multiprocessing, os; print(hasattr(os, 'fchmod'), "
                            "multiprocessing.get_start_method()); multiprocessing.get_context('fork')"],
                           capture_output=True, text=True, env=env)
    assert probe.stdout.split() == ["False", "spawn"]
    assert "cannot find context for 'fork'" in probe.stderr
    return env


def corpus(folder: Path) -> Path:
    """dicom_data/ and every file pydicom ships, linked into `folder`."""
    from pydicom.data import get_testdata_files

    shutil.copytree(ROOT / "dicom_data", folder / "dicom_data")
    for path in get_testdata_files():
        if os.path.isfile(path) and not (folder / os.path.basename(path)).exists():
            (folder / os.path.basename(path)).symlink_to(path)
    return folder


def test_windows_emulation_converts_exactly_as_the_normal_run(tmp_path, windows_emulation):
    inp = corpus(tmp_path / "in")
    # clips decode in the helper process too, and every kind of output is made
    args = (inp, "--frames", "--json", "--series", "--no-mp4", "-j", "2")
    normal = run_converter(*args, "-o", tmp_path / "normal", env=environment(**{ENV_HELPER_PIXELS: "1"}))
    emulated = run_converter(*args, "-o", tmp_path / "windows",
                             env={**windows_emulation, ENV_HELPER_PIXELS: "1"})
    assert "Traceback" not in emulated.stderr and "AttributeError" not in emulated.stderr
    assert emulated.returncode == normal.returncode == 1  # pydicom ships deliberately broken files
    summary = (lambda run: [line for line in run.stdout.splitlines() if line.startswith("Done:")])
    assert summary(emulated) == summary(normal) and summary(normal)  # the index line names each -o
    assert sorted(emulated.stderr.splitlines()) == sorted(normal.stderr.splitlines())
    assert tree_hashes(tmp_path / "windows") == tree_hashes(tmp_path / "normal")
    assert len(files_under(tmp_path / "normal")) > 300


@pytest.mark.parametrize("method", START_METHODS)
def test_every_start_method_gives_the_same_outputs(tmp_path, method):
    inp = copy_inputs(tmp_path / "in", "CT_small.dcm", "emri_small_RLE.dcm", "examples_ybr_color.dcm", "rtplan.dcm")
    args = (inp, "--frames", "--json", "--no-mp4", "-j", "2")
    reference = run_converter(*args, "-o", tmp_path / "reference", env=environment())
    run = run_converter(*args, "-o", tmp_path / method,
                        env=environment(**{ENV_START_METHOD: method, ENV_HELPER_PIXELS: "1"}))
    assert run.returncode == reference.returncode == 0, run.stderr
    assert tree_hashes(tmp_path / method) == tree_hashes(tmp_path / "reference")


@pytest.mark.parametrize("method", START_METHODS)
def test_a_crash_in_the_decoding_helper_fails_that_file_with_its_reason(tmp_path, method):
    """The helper really runs (the crash is in it, not in the worker) and its death is reported."""
    inp = copy_inputs(tmp_path / "in", "CT_small.dcm", "emri_small_RLE.dcm", "emri_small.dcm")
    run = run_converter(inp, "-o", tmp_path / "out", "-j", "2", env=environment(**{
        ENV_START_METHOD: method, ENV_HELPER_PIXELS: "1", ENV_CRASH_ON: "emri_small_RLE.dcm"}))
    assert run.returncode == 1
    assert "FAILED     emri_small_RLE.dcm: the decoding process stopped (exit status -11)" in run.stderr
    assert "converted  emri_small.dcm" in run.stdout and "converted  CT_small.dcm" in run.stdout
    assert "Traceback" not in run.stderr
    assert not list((tmp_path / "out").glob("emri_small_RLE*")) and not list((tmp_path / "out").rglob("*.part"))


@pytest.mark.parametrize("method", START_METHODS)
def test_a_crashing_worker_fails_its_file_and_idle_workers_stop_quietly(tmp_path, method):
    inp = copy_inputs(tmp_path / "in", "CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "rtplan.dcm")
    shutil.copy(testdata("emri_small.dcm"), inp / "poison.dcm")
    run = run_converter(inp, "-o", tmp_path / "out", "-j", "2",
                        env=environment(**{ENV_START_METHOD: method, ENV_CRASH_ON: "poison.dcm"}))
    assert run.returncode == 1
    assert "FAILED     poison.dcm: the converter crashed on this file" in run.stderr
    assert run.stdout.splitlines()[-2].startswith("Done: 3 converted")  # then the index page's path
    assert "Traceback" not in run.stderr and "Terminated" not in run.stderr, run.stderr
    assert not list((tmp_path / "out").rglob("*.part")) and not list((tmp_path / "out").glob("poison*"))


def long_native_cine(folder: Path) -> Path:
    """The 120-frame 640x480 ultrasound cine decompressed to native RGB (about 110 MB, some seconds to
    convert): pydicom decodes native data in process, so with ENV_HELPER_PIXELS it goes to the helper."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(testdata("color3d_jpeg_baseline.dcm"))
    ds.decompress()
    ds.save_as(folder / "long.dcm")
    return folder


@posix_signals
@pytest.mark.parametrize("method", START_METHODS)
def test_a_worker_killed_while_its_helper_runs_does_not_hang_the_batch(tmp_path, method):
    """As the OOM killer would: SIGKILL the worker while its decoding helper sends frames."""
    import psutil

    inp = long_native_cine(tmp_path / "in")
    shutil.copy(testdata("CT_small.dcm"), inp / "CT_small.dcm")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "dicom_converter.py"), str(inp), "-o", str(tmp_path / "out"), "-j", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment(**{ENV_START_METHOD: method, ENV_HELPER_PIXELS: "1"}))
    converter, helper = psutil.Process(process.pid), None
    deadline = time.time() + 120
    while helper is None and time.time() < deadline:
        helpers = [p for p in converter.children(recursive=True) if p.ppid() != converter.pid
                   and "spawn_main" in " ".join(p.cmdline())]
        helper = helpers[0] if helpers else None
        time.sleep(0.05)
    assert helper is not None, "no decoding helper started"
    time.sleep(0.5)  # frames are flowing
    worker = psutil.Process(helper.ppid())
    worker.kill()
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode in (0, 1)
    assert "Traceback" not in stderr
    assert "converted  CT_small.dcm" in stdout
    # the lost file was run again on its own: converted, or failed with a reason
    assert "converted  long.dcm" in stdout or "FAILED     long.dcm: " in stderr
    helper.wait(timeout=30)  # it exits at its next write to the dead worker's pipe
    assert not list((tmp_path / "out").rglob("*.part"))
    assert_outputs_whole(tmp_path / "out")


# --- Names every file system accepts -------------------------------------------

@pytest.mark.parametrize(("name", "stem"), [
    ("CON", "CON_"), ("con.dcm", "con_"), ("NUL.txt", "NUL_.txt"), ("LPT9", "LPT9_"), ("COM\u00b9.x", "COM\u00b9_.x"),
    ("CONSOLE", "CONSOLE"), ("a<b>c:d\"e|f?g*h\\i", "a_b_c_d_e_f_g_h_i"), ("tab\there\x7f", "tab_here_"),
    ("trailing. . ", "trailing"), ("...", "_"), ("caf\u00e9.dcm", "caf\u00e9"),
    ("bad\udcffbyte", "bad_byte"),  # a Latin-1 name on a Linux CD, read as UTF-8
])
def test_output_stems_are_portable(name, stem):
    assert output_stem(name) == stem


def test_long_names_are_cut_between_characters():
    for name in ("x" * 300, "日本語の画像" * 30, "é" * 200 + "x", "x" + "😀" * 80):
        stem = output_stem(name)
        assert len(stem.encode("utf-8")) <= MAX_STEM_BYTES
        assert name.startswith(stem) and len(stem) > 50  # whole characters, as many as fit


def test_names_that_differ_only_by_case_or_normalisation_never_share_an_output(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    names = ["IM1", "im1", unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")]
    for name in names:
        (inp / name).write_bytes(b"")
    planned = plan_outputs(sorted(inp.iterdir()), inp, tmp_path / "out")
    keys = [name_key(stem) for _, stem, _ in planned]
    assert len(set(keys)) == 4
    # in sorted order NFD (e + combining accent) comes before NFC (é): the later of each pair moves aside
    assert {stem.name for _, stem, _ in planned} == {"IM1", "im1_2", "cafe\u0301", "caf\u00e9_2"}


def test_unportable_folder_names_are_mirrored_portably(tmp_path):
    inp = tmp_path / "in"
    (inp / "AUX" / "a:b ").mkdir(parents=True)
    (inp / "AUX" / "a:b " / "IM1").write_bytes(b"")
    [(_, stem, _)] = plan_outputs([inp / "AUX" / "a:b " / "IM1"], inp, tmp_path / "out")
    assert stem == tmp_path / "out" / "AUX_" / "a_b" / "IM1"


def test_frames_folders_are_reserved_by_the_planner(tmp_path):
    """``a`` writes ``a_frames/0001.png``; a DICOM file ``a_frames/0001`` beside it must not share it."""
    inp = tmp_path / "in"
    (inp / "a_frames").mkdir(parents=True)
    shutil.copy(testdata("emri_small.dcm"), inp / "a")
    shutil.copy(testdata("emri_small_RLE.dcm"), inp / "a_frames" / "0001")
    out = tmp_path / "out"
    run = run_cli(inp, "-o", out, "--frames", "--no-mp4")
    assert run.returncode == 0, run.stderr
    assert "a: output renamed to a_2" in run.stdout
    produced = files_under(out)
    assert "a_frames/0001.gif" in produced and "a_frames/0001.txt" in produced
    assert [p for p in produced if p.startswith("a_2_frames/")] == [f"a_2_frames/{n:04d}.png" for n in range(1, 11)]
    assert "a_frames/0001_frames/0010.png" in produced
    # each line counts its own frame PNGs only; the GIF in a_frames/ is no frame PNG
    line = next(line for line in run.stdout.splitlines() if line.startswith("converted  a_frames"))
    assert "a_frames/0001.gif a_frames/0001.txt +10 frame PNGs" in line
    assert "+10 frame PNGs" in next(line for line in run.stdout.splitlines() if line.startswith("converted  a "))
    assert pydicom.dcmread(testdata("emri_small_RLE.dcm")).NumberOfFrames == 10


def test_long_unicode_file_and_series_names_convert_and_index(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for n, name in enumerate(["CT_small.dcm", "CT_small.dcm"]):
        ds = pydicom.dcmread(testdata(name))
        ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8
        with pytest.warns(UserWarning, match="exceeds the maximum length"):  # longer than LO allows, as some are
            ds.SeriesDescription = "頭部単純CT" * 30  # a long CJK description names the series cine
        ds.InstanceNumber = n + 1
        ds.ImagePositionPatient = [0, 0, n]
        ds.save_as(inp / (f"{n}" + "日本語の画像" * 14))  # 253 bytes: the stem is cut inside a character
    out = tmp_path / "out"
    run = run_cli(inp, "-o", out, "--series")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    names = [p.name for p in out.rglob("*")]
    assert all(len(name.encode("utf-8")) <= 255 for name in names)
    assert sum(name.endswith(".png") for name in names) == 2 and sum(name.endswith(".gif") for name in names) == 1
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "日本語の画像" in page and "頭部単純CT" in page


def test_a_failed_rename_rolls_back_the_outputs_already_renamed(tmp_path):
    out = tmp_path / "out"
    (out / "CT_small.png").mkdir(parents=True)  # a folder in the way of the PNG's final name
    (out / "CT_small.png" / "keep").write_text("the user's")
    run = run_cli(testdata("CT_small.dcm"), "-o", out, "--json")
    assert run.returncode == 1
    assert "FAILED     CT_small.dcm: cannot write output CT_small.png: " in run.stderr
    assert files_under(out) == ["CT_small.png/keep"]  # no .json, .txt or .part left


def test_an_output_path_windows_cannot_take_fails_that_file_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "windows_path_limit", lambda: 80)  # in-process: the limit is read here
    stem = tmp_path / ("x" * 80)
    result = convert_file(testdata("CT_small.dcm"), stem, Options())
    assert result.status == "failed"
    assert "more than Windows allows (80): choose a shorter -o" in result.message
    assert not list(tmp_path.iterdir())


# --- Platform facts --------------------------------------------------------------

def test_text_outputs_are_written_with_newline_line_ends(tmp_path, monkeypatch):
    calls = []
    real = Path.write_text
    monkeypatch.setattr(Path, "write_text", lambda self, text, **kw: calls.append(kw) or real(self, text, **kw))
    write_text("a\nb\n", tmp_path / "t.txt")
    assert calls == [{"encoding": "utf-8", "newline": "\n"}]
    # and every text output goes through it: no other write_text or text-mode open in the program
    files = [ROOT / "dicom_converter.py", *sorted((ROOT / "_dicom_converter").rglob("*.py"))]
    assert len(files) > 30  # the whole package is scanned
    source = "".join(path.read_text(encoding="utf-8") for path in files)
    assert source.count(".write_text(") == 1
    assert "encoding=\"utf-8\")" not in source.replace("path.write_text(text, encoding=\"utf-8\", newline", "")


def test_jobs_default_is_capped_on_windows(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(128)), raising=False)
    assert default_jobs() == 128
    monkeypatch.setattr(sys, "platform", "win32")
    assert default_jobs() == 61


def test_available_memory_comes_from_psutil():
    import psutil

    assert abs(available_memory() - psutil.virtual_memory().available) < 512 * 2**20
