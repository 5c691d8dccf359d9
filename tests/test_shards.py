"""Runs split across machines: --shard K/N converts a deterministic share (by folder), N
shards started at once into one output folder convert every file exactly once, and once all
have finished, manifest.csv, index.html and every output are byte for byte what one run writes."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_cli, testdata

from _dicom_converter.inputs import find_files
from _dicom_converter.manifest import REDACT_SECRET, in_shard, shard_secret
from _dicom_converter.reading import read_dataset

FOLDERS = {  # a small archive: several folders, names that collide, a non-DICOM file
    "A": ["CT_small.dcm", "MR_small.dcm"], "B/1": ["emri_small.dcm"], "B/2": ["rtplan.dcm", "test-SR.dcm"],
    "C": ["SC_rgb.dcm", "waveform_ecg.dcm"], "D": ["JPEG2000.dcm"], "E": ["OBXXXX1A.dcm"], "": ["MR_small_RLE.dcm"],
}


def archive(root: Path) -> Path:
    for folder, names in FOLDERS.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(testdata(name), root / folder / name)
    shutil.copy(testdata("CT_small.dcm"), root / "A" / "CT_small")  # collides with A/CT_small.dcm
    (root / "E" / "notes.txt").write_text("not DICOM")
    return root


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".shards" not in p.relative_to(root).parts}


def test_shards_together_write_what_one_run_writes(tmp_path):
    inp = archive(tmp_path / "in")
    single = run_cli(inp, "-o", tmp_path / "single", "-j", "1")
    assert single.returncode == 0, single.stdout + single.stderr
    shards = tmp_path / "shards"
    runs = [subprocess.Popen([sys.executable, str(ROOT / "dicom_converter.py"), str(inp), "-o", str(shards),
                              "--shard", f"{k}/3", "-j", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for k in (1, 2, 3)]
    logs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], logs
    converted = [line.split()[1].rstrip(":") for out, _ in logs for line in out.splitlines()
                 if line.startswith(("converted", "metadata", "skipped"))]
    inputs = sorted(p.relative_to(inp).as_posix() for p in inp.rglob("*") if p.is_file())
    assert sorted(converted) == inputs  # every file exactly once
    assert sum("merged     3 shards" in out for out, _ in logs) >= 1  # the last one to finish merged
    assert tree(shards) == tree(tmp_path / "single")
    assert sorted(p.name for p in (shards / ".shards").iterdir()) == [f"part-{k}-of-3.jsonl" for k in (1, 2, 3)]


def test_shares_are_by_folder_and_do_not_overlap(tmp_path):

    inp = archive(tmp_path / "in")
    files = find_files(inp)
    shares = [[p for p in files if in_shard(p, inp, (k, 4))] for k in (1, 2, 3, 4)]
    assert sorted(p for share in shares for p in share) == sorted(files)
    for share in shares:
        others = [p for other in shares if other is not share for p in other]
        assert not {p.parent for p in share} & {p.parent for p in others}


def test_the_manifest_has_a_row_per_input_with_what_researchers_filter_on(tmp_path):
    inp = archive(tmp_path / "in")
    run = run_cli(inp, "-o", tmp_path / "out")
    assert run.returncode == 0, run.stdout + run.stderr
    with open(tmp_path / "out" / "manifest.csv", encoding="utf-8", newline="") as f:
        rows = {row["input"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == sorted(p.relative_to(inp).as_posix() for p in inp.rglob("*") if p.is_file())
    ct = rows["A/CT_small.dcm"]
    assert (ct["status"], ct["modality"], ct["rows"], ct["columns"], ct["bits"], ct["photometric"]) == \
        ("converted", "CT", "128", "128", "16", "MONOCHROME2")
    assert json.loads(rows["A/CT_small"]["outputs"]) == ["A/CT_small.png", "A/CT_small.txt"]
    assert json.loads(ct["outputs"]) == ["A/CT_small_2.png", "A/CT_small_2.txt"]  # sorted after A/CT_small
    assert rows["E/notes.txt"]["status"] == "skipped" and rows["E/notes.txt"]["reason"] == "not a DICOM file"
    assert rows["B/2/rtplan.dcm"]["status"] == "metadata"
    assert rows["C/waveform_ecg.dcm"]["sop_class"] == "1.2.840.10008.5.1.4.1.1.9.1.1"


def test_merging_before_every_shard_is_done_says_which_are_missing(tmp_path):
    inp = archive(tmp_path / "in")
    run = run_cli(inp, "-o", tmp_path / "out", "--shard", "1/2")
    assert run.returncode == 0 and "merged" not in run.stdout, run.stdout + run.stderr
    assert not (tmp_path / "out" / "manifest.csv").exists()
    merge = run_cli("-o", tmp_path / "out", "--merge-shards", "2", cwd=tmp_path)  # no input needed
    assert merge.returncode == 1 and "part-2-of-2.jsonl not written yet" in merge.stderr
    run = run_cli(inp, "-o", tmp_path / "out", "--shard", "2/2")
    assert run.returncode == 0 and "merged     2 shards" in run.stdout, run.stdout + run.stderr
    merge = run_cli("-o", tmp_path / "out", "--merge-shards", "2", cwd=tmp_path)
    assert merge.returncode == 0 and "merged 2 shards" in merge.stdout, merge.stdout + merge.stderr
    assert (tmp_path / "out" / "manifest.csv").is_file() and (tmp_path / "out" / "index.html").is_file()


@pytest.mark.parametrize("bad", ["0/3", "4/3", "a/b", "3"])
def test_a_bad_shard_is_a_usage_error(tmp_path, bad):
    run = run_cli(tmp_path, "--shard", bad)
    assert run.returncode == 2 and "expected K/N with 1 <= K <= N" in run.stderr


def test_redacted_shards_replace_uids_alike_and_the_merge_deletes_their_secret(tmp_path):
    """Each --redact run draws a secret for its UID stand-ins; shards share one through the
    output folder (the first to start writes it), so one study's stand-in is the same in
    every shard, and the merge deletes it, so it does not leave with the outputs."""

    inp = tmp_path / "in"
    folders = [name for name in ("F1", "F2", "F3", "F4", "F5", "F6") if in_shard(inp / name / "x", inp, (1, 2))][:1]
    folders += [name for name in ("G1", "G2", "G3", "G4", "G5", "G6") if in_shard(inp / name / "x", inp, (2, 2))][:1]
    for folder in folders:  # the same study in two folders, one per shard
        (inp / folder).mkdir(parents=True)
        shutil.copy(testdata("CT_small.dcm"), inp / folder / "CT_small.dcm")
    out = tmp_path / "out"
    runs = [subprocess.Popen([sys.executable, str(ROOT / "dicom_converter.py"), str(inp), "-o", str(out), "--redact",
                              "--shard", f"{k}/2", "-j", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for k in (1, 2)]
    logs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], logs
    with open(out / "manifest.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(row["status"] == "converted" for row in rows)
    original = read_dataset(testdata("CT_small.dcm")).StudyInstanceUID
    assert rows[0]["study_uid"] == rows[1]["study_uid"] != original
    assert not (out / ".shards" / REDACT_SECRET).exists()
    again = run_cli(inp, "-o", out, "--redact", "--shard", "1/2")  # a new secret would not match the others
    assert again.returncode == 1 and "were merged and their --redact secret deleted" in again.stderr


def test_shards_starting_together_read_one_secret(tmp_path):

    first, second = shard_secret(tmp_path, (1, 3)), shard_secret(tmp_path, (3, 3))
    assert first == second and len(first) == 32
    assert (tmp_path / ".shards" / REDACT_SECRET).read_text().strip() == first
