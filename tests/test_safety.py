"""Nothing lost: the input is never touched, outputs are whole or absent, names are safe."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pydicom
import pytest
from conftest import ROOT, copy_inputs, run_cli, testdata
from PIL import Image, ImageSequence

from _dicom_converter.base import ENV_CRASH_ON, Options
from _dicom_converter.inputs import plan_outputs
from _dicom_converter.pool import convert_all

posix_signals = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM, process groups: POSIX only")


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def files_under(root: Path) -> list[str]:
    """Files written under `root`, less the index page, its thumbnails and the manifest (checked elsewhere)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and p.relative_to(root).as_posix() not in ("index.html", "manifest.csv")
                  and ".thumbs" not in p.relative_to(root).parts)


def assert_outputs_whole(root: Path) -> int:
    """Every output opens and decodes completely; returns how many were checked."""
    checked = 0
    for path in root.rglob("*"):
        assert not path.name.endswith(".part"), f"temporary file left: {path}"
        if path.suffix in (".png", ".gif"):
            with Image.open(path) as image:
                for frame in ImageSequence.Iterator(image):
                    frame.load()
        elif path.suffix == ".mp4":
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                decoded = sum(1 for _ in container.decode(stream))
                assert decoded == stream.frames > 0
        elif path.suffix == ".txt":
            assert path.read_text(encoding="utf-8").startswith("# Summary")
        else:
            continue
        checked += 1
    return checked


def test_output_equal_to_input_writes_beside_and_never_over_inputs(tmp_path):
    inp = copy_inputs(tmp_path / "in", "CT_small.dcm")
    shutil.copy(testdata("MR_small.dcm"), inp / "CT_small.txt")  # a DICOM file named like an output
    before = tree_hashes(inp)
    first = run_cli(inp, "-o", inp)
    assert first.returncode == 0, first.stderr
    after = tree_hashes(inp)
    assert {k: after[k] for k in before} == before  # no input changed
    # CT_small.dcm would write CT_small.txt over the input of that name: it moves aside
    assert "CT_small.dcm: output renamed to CT_small_2" in first.stdout
    second = run_cli(inp, "-o", inp)
    assert second.returncode == 0
    assert {k: tree_hashes(inp)[k] for k in before} == before


def test_json_output_never_lands_on_an_input_named_like_it(tmp_path):
    inp = copy_inputs(tmp_path / "in", "CT_small.dcm")
    shutil.copy(testdata("MR_small.dcm"), inp / "CT_small.json")  # a DICOM file named like the JSON output
    before = tree_hashes(inp)
    run = run_cli(inp, "-o", inp, "--json")
    assert run.returncode == 0, run.stderr
    assert {k: tree_hashes(inp)[k] for k in before} == before
    assert "CT_small.dcm: output renamed to CT_small_2" in run.stdout


def test_rerun_gives_identical_outputs(tmp_path):
    inp = copy_inputs(tmp_path / "in", "CT_small.dcm", "emri_small.dcm", "examples_ybr_color.dcm")
    assert run_cli(inp, "-o", tmp_path / "a").returncode == 0
    assert run_cli(inp, "-o", tmp_path / "b", "--jobs", "1").returncode == 0
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")


def test_skip_existing_resumes_only_what_is_missing_or_stale(tmp_path):
    inp = copy_inputs(tmp_path / "in", "CT_small.dcm", "MR_small.dcm", "rtplan.dcm")
    out = tmp_path / "out"
    assert run_cli(inp, "-o", out).returncode == 0
    (out / "MR_small.png").unlink()                      # an interrupted earlier run
    later = time.time() + 5
    os.utime(inp / "CT_small.dcm", (later, later))       # an input changed since
    run = run_cli(inp, "-o", out, "--skip-existing")
    assert run.returncode == 0
    assert "up to date rtplan.dcm" in run.stdout
    assert "converted  CT_small.dcm" in run.stdout and "converted  MR_small.dcm" in run.stdout
    assert "1 already up to date" in run.stdout
    assert (out / "MR_small.png").exists()


def test_declared_pixel_data_over_the_memory_limit_is_refused_before_decoding(tmp_path):
    ds = pydicom.dcmread(testdata("CT_small.dcm"))
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 100000  # 800 TB declared; the real pixel data is 32 KB
    ds.save_as(tmp_path / "bomb.dcm")
    run = run_cli(tmp_path / "bomb.dcm", "-o", tmp_path / "out")
    assert run.returncode == 1
    assert "exceeds the memory limit" in run.stderr and "see --max-memory" in run.stderr
    assert "Traceback" not in run.stderr
    small = run_cli(testdata("CT_small.dcm"), "-o", tmp_path / "out2", "--max-memory", "0.01")
    assert small.returncode == 1 and "pixel data of 0 MB (128x128, 1 frames)" in small.stderr


def start_cine_batch(tmp_path: Path, cines: int, jobs: int, **popen) -> tuple[subprocess.Popen, Path]:
    """The converter on `cines` copies of a 120-frame 640x480 cine (long enough to
    interrupt mid-file), started in the background; the process and its output folder."""
    inp = tmp_path / "in"
    inp.mkdir()
    for n in range(cines):
        shutil.copy(testdata("color3d_jpeg_baseline.dcm"), inp / f"cine{n}.dcm")
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "dicom_converter.py"), str(inp), "-o", str(out), "--jobs", str(jobs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
    )
    return process, out


def wait_for_temporaries(out: Path, count: int = 1) -> None:
    """Until `count` .part files are under `out`: a conversion is under way."""
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.rglob("*.part"))) < count:
        time.sleep(0.05)


@posix_signals
@pytest.mark.parametrize("method", multiprocessing.get_all_start_methods())
def test_interrupted_run_stops_promptly_and_leaves_only_whole_files(tmp_path, method):
    process, out = start_cine_batch(tmp_path, 8, 2, start_new_session=True,
                                    env={**os.environ, "DICOM_CONVERTER_START_METHOD": method},
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_temporaries(out)
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert stdout.strip().splitlines()[-1].startswith("Interrupted: ")
    assert "Traceback" not in stderr
    assert len(files_under(out)) < 8 * 3  # really stopped part-way
    assert_outputs_whole(out)


@posix_signals
def test_sigterm_also_stops_cleanly(tmp_path):
    process, out = start_cine_batch(tmp_path, 6, 1)
    wait_for_temporaries(out)
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "Interrupted: " in stdout
    assert_outputs_whole(out)


@posix_signals
def test_a_worker_cleans_up_after_one_sigterm_even_when_a_second_comes(tmp_path):
    """The pool terminates surviving workers again when one exits: that second SIGTERM
    used to interrupt the first one's clean-up and leave a temporary file behind."""
    script = f"""
import os, signal, sys, time
sys.path.insert(0, {str(ROOT)!r})
from _dicom_converter.pool import Terminated, _worker_init
_worker_init()
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
except Terminated:
    os.kill(os.getpid(), signal.SIGTERM)  # arrives while cleaning up
    time.sleep(0.1)
    print("cleaned up")
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout.strip()) == (0, "cleaned up"), run.stderr


def temporary_name(pid: int, started: int, token: str = "0123abcd") -> str:
    """A temporary file's name as `staged_outputs` makes it, for process `pid` started at `started`."""
    return f".dicom-converter-{pid}-{started}-{token}.part"


@posix_signals
def test_an_interrupted_batch_removes_temporaries_of_dead_workers(tmp_path):
    import psutil

    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)
    me = os.getpid()
    started = round(psutil.Process(me).create_time() * 100)
    orphan = out / "sub" / temporary_name(dead, started)  # as a worker killed mid-clean-up leaves it
    reused = out / temporary_name(me, started - 1000)  # a dead process's whose pid is now this one's
    users = out / f".dicom-converter-{dead}-notes.part"  # not a name the converter makes: the user's
    users.write_bytes(b"keep me")
    orphan.write_bytes(b"half a file")
    reused.write_bytes(b"half a file")
    mine = out / temporary_name(me, started)  # a live process's: not ours to delete
    mine.write_bytes(b"in progress")
    process, _ = start_cine_batch(tmp_path, 4, 1)
    wait_for_temporaries(out, 5)  # the four above, and one of this run's
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 130, stdout
    assert not orphan.exists() and not reused.exists()
    assert mine.read_bytes() == b"in progress" and users.read_bytes() == b"keep me"
    mine.unlink()
    users.unlink()
    assert_outputs_whole(out)


def test_hostile_and_awkward_names(tmp_path):
    inp = tmp_path / "in"
    (inp / "sub dir").mkdir(parents=True)
    names = ["with space.dcm", "日本語の画像.dcm", "-leading-dash.dcm", "x" * 250 + ".dcm"]
    for name in names:
        shutil.copy(testdata("CT_small.dcm"), inp / "sub dir" / name)
    evil = pydicom.dcmread(testdata("MR_small.dcm"))
    evil.PatientName = "../../../../tmp/evil"
    evil.SeriesDescription = "/etc/passwd"
    evil.save_as(inp / "evil")
    out = tmp_path / "out"
    run = run_cli(inp, "-o", out)
    assert run.returncode == 0, run.stderr
    produced = files_under(out)
    assert "sub dir/with space.png" in produced
    assert "sub dir/日本語の画像.png" in produced
    assert "sub dir/-leading-dash.png" in produced
    assert "evil.png" in produced and "evil.txt" in produced
    long_png = [p for p in produced if p.startswith("sub dir/xxx") and p.endswith(".png")]
    assert len(long_png) == 1 and len(os.fsencode(Path(long_png[0]).name)) <= 255
    assert all(not p.startswith("..") for p in produced)
    assert not any("evil" in p.name for p in (tmp_path.parent).glob("*evil*") if p != tmp_path)


def test_symlink_loop_does_not_hang_the_walk(tmp_path):
    inp = copy_inputs(tmp_path / "in", "CT_small.dcm")
    try:
        (inp / "loop").symlink_to(inp, target_is_directory=True)
    except OSError as exc:  # Windows without the privilege to make links
        pytest.skip(f"cannot make symbolic links here: {exc}")
    (inp / "link.dcm").symlink_to(inp / "CT_small.dcm")  # a link to a file is an input
    run = subprocess.run([sys.executable, str(ROOT / "dicom_converter.py"), str(inp), "-o", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    assert files_under(tmp_path / "out") == ["CT_small.png", "CT_small.txt", "link.png", "link.txt"]


def test_unwritable_output_root_fails_at_once(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    run = run_cli(testdata("CT_small.dcm"), "-o", blocker / "out")
    assert run.returncode == 1
    assert run.stderr.startswith("error: cannot write to output directory")
    assert "Traceback" not in run.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="file-size limits (RLIMIT_FSIZE) are POSIX only")
def test_a_full_disk_fails_that_file_cleanly(tmp_path):
    """A write that fails part-way (here: a file-size limit, as a full disk would) leaves nothing."""
    import resource

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    inp = copy_inputs(tmp_path / "in", "CT_small.dcm", "US1_UNCR.dcm")  # ~20 KB vs ~400 KB of PNG
    run = subprocess.run([sys.executable, str(ROOT / "dicom_converter.py"), str(inp), "-o", str(tmp_path / "out"),
                          "--jobs", "1"], capture_output=True, text=True, timeout=120, preexec_fn=limit_file_size)
    assert run.returncode == 1
    assert "FAILED     US1_UNCR.dcm: cannot write output: File too large" in run.stderr
    assert files_under(tmp_path / "out") == ["CT_small.png", "CT_small.txt"]


def test_a_decoder_crash_fails_only_that_file(tmp_path, monkeypatch):
    """A worker killed mid-file (a real segfault, where a C decoder would crash) fails that file alone.

    The crash comes from the converter's ENV_CRASH_ON hook, read in the worker itself,
    so it happens under every start method; the cine has its GIF and MP4 staged by then.
    """

    monkeypatch.setenv(ENV_CRASH_ON, "poison.dcm")
    inp = copy_inputs(tmp_path / "in", "CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "rtplan.dcm")
    shutil.copy(testdata("emri_small.dcm"), inp / "poison.dcm")
    tasks = [(source, stem, Options()) for source, stem, _ in plan_outputs(sorted(inp.iterdir()), inp, tmp_path / "out")]
    results = list(convert_all(tasks, jobs=2))
    assert [r.source.name for r in results] == sorted(p.name for p in inp.iterdir())
    status = {r.source.name: r.status for r in results}
    assert status == {"CT_small.dcm": "converted", "MR_small.dcm": "converted", "emri_small.dcm": "converted",
                      "poison.dcm": "failed", "rtplan.dcm": "metadata"}
    assert "crashed" in next(r.message for r in results if r.source.name == "poison.dcm")
    assert not list((tmp_path / "out").rglob("*.part"))
    assert not list((tmp_path / "out").glob("poison*"))


def test_reruns_into_the_input_folder_give_the_same_tree(tmp_path):
    """OUTPUT = the input folder, three times: the earlier outputs (listed in its manifest.csv)
    are neither inputs (no "skipped" for them) nor names taken (no ``_2`` copies)."""
    same = tmp_path / "same"
    shutil.copytree(ROOT / "dicom_data", same)
    inputs = sorted(str(p.relative_to(same)) for p in same.rglob("*") if p.is_file())
    trees, summaries, pngs = [], [], []
    for _ in range(3):
        run = run_cli(same, "-o", same, "-q")
        assert run.returncode == 0, run.stderr
        trees.append(sorted(str(p.relative_to(same)) for p in same.rglob("*")))
        summaries.append(run.stdout)
        pngs.append((same / "CT_SERIES" / "IM0001.png").read_bytes())
    assert trees[0] == trees[1] == trees[2]
    assert summaries[0] == summaries[1] == summaries[2]
    assert summaries[0].splitlines()[0] == "Done: 27 converted (24 PNG, 3 GIF, 3 MP4), 0 metadata only, 0 skipped, 0 failed."
    assert pngs[0] == pngs[1] == pngs[2]
    assert not [name for name in trees[2] if "_2." in name or "_3." in name]
    assert set(inputs) <= set(trees[2]) and "DCM00003.mp4" in trees[2] and "CT_SERIES/IM0020.txt" in trees[2]
    resumed = run_cli(same, "-o", same, "-q", "--skip-existing")
    assert resumed.stdout.splitlines()[0] == ("Done: 0 converted (0 PNG, 0 GIF, 0 MP4), 0 metadata only, 0 skipped, "
                                              "27 already up to date, 0 failed.")
    assert sorted(str(p.relative_to(same)) for p in same.rglob("*")) == trees[0]


def test_rerun_with_frames_into_the_input_folder_reuses_the_names(tmp_path):
    """Outputs named like inputs (an input CT_small.txt beside CT_small.dcm) and folders of
    outputs (STEM_frames/) are told apart by the record too."""
    inp = copy_inputs(tmp_path / "in", "CT_small.dcm", "emri_small.dcm")
    shutil.copy(testdata("MR_small.dcm"), inp / "CT_small.txt")  # a DICOM file named like an output
    first = run_cli(inp, "-o", inp, "--frames")
    tree = tree_hashes(inp)
    second = run_cli(inp, "-o", inp, "--frames")
    assert first.returncode == second.returncode == 0, second.stderr
    assert sorted(tree_hashes(inp)) == sorted(tree)
    assert "emri_small_frames/0010.png" in tree and "CT_small_2.png" in tree and "CT_small_3.png" not in tree
    assert "skipped  " not in second.stdout and " 0 skipped, " in second.stdout
    assert second.stdout.count("output renamed") == 1  # CT_small.dcm beside the input CT_small.txt, as the first time
    assert {k: v for k, v in tree_hashes(inp).items() if k.endswith(".png")} == \
        {k: v for k, v in tree.items() if k.endswith(".png")}
