"""``--layout study`` (`_dicom_converter.layout`): outputs under PATIENT/STUDY/SERIES/ named from
each file's values; the tree, the index page's links and the manifest agree; shards make the
single run's tree; under --redact only de-identified values name anything; no value leaves OUTPUT."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest

from conftest import ROOT, copy_inputs, index_cards, run_cli, testdata

SAMPLES = ROOT / "dicom_data"


@pytest.fixture(scope="module")
def study_inputs(tmp_path_factory) -> Path:
    """Four patients: the samples' phantom (6 studies, a 20-slice series), two of pydicom's
    CompressedSamples patients (a CT and an MR) and its ECG, in a CD-like tree."""
    root = tmp_path_factory.mktemp("layout") / "in"
    shutil.copytree(SAMPLES, root / "DICOM" / "PA000000")
    copy_inputs(root / "DICOM" / "PA000001", "CT_small.dcm", "MR_small.dcm", "waveform_ecg.dcm")
    return root


def outputs_of(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*")
            if p.is_file() and ".thumbs" not in p.parts and ".shards" not in p.parts}


def manifest_outputs(out: Path) -> dict[str, list[str]]:
    with open(out / "manifest.csv", encoding="utf-8", newline="") as f:
        return {row["input"]: json.loads(row["outputs"]) if row["outputs"].startswith("[") else row["outputs"].split()
                for row in csv.DictReader(f)}


def linked(card: dict) -> set[str]:
    return {unquote(url) for item in card["items"] for url in
            [item.get("image"), item.get("video"), item.get("page"), *(link[1] for link in item.get("links", []))] if url}


def test_folders_name_the_patient_the_study_and_the_series(study_inputs, tmp_path):
    out = tmp_path / "out"
    run = run_cli(study_inputs, "-o", out, "--layout", "study")
    assert run.returncode == 0, run.stdout + run.stderr
    made = outputs_of(out)
    series = "Sample, Phantom (PHANTOM0001)/2024-01-15 CT HEAD W_O CONTRAST/003 HEAD 5mm AXIAL"
    assert {f"{series}/{n:04d}.png" for n in range(1, 21)} <= made  # by Instance Number, zero-padded
    assert "CompressedSamples, CT1 (1CT1)/2004-01-19 e+1/001 CT/0001.png" in made
    assert "Anonymous (642341)/2013-01-25 ECG/ECG/ECG.png" in made  # a waveform named by its kind
    assert not any("DICOM" in name or "PA00000" in name for name in made)  # nothing of the disc's names
    # the manifest and the page point at the same files, and every one exists
    manifest = manifest_outputs(out)
    assert len(manifest) == 30 and all(p in made for paths in manifest.values() for p in paths), manifest
    cards = index_cards(out / "index.html")
    assert all(linked(card) <= made for card in cards)
    for card in cards:  # each card's files lie under its own patient's folder
        folders = {url.split("/")[0] for url in linked(card)}
        assert len(folders) == 1, folders


def test_under_redact_only_de_identified_values_name_anything(study_inputs, tmp_path):
    out = tmp_path / "out"
    run = run_cli(study_inputs, "-o", out, "--layout", "study", "--redact")
    assert run.returncode == 0, run.stdout + run.stderr
    made = outputs_of(out)
    assert "Patient 1/Study 1 CT/003 CT/0007.png" in made  # the phantom: the first patient in the input
    assert "Patient 2/Study 1 CT/001 CT/0001.png" in made  # CT_small, then MR_small, then the ECG
    for secret in ("Phantom", "PHANTOM0001", "CompressedSamples", "1CT1", "642341", "Anonymous", "HEAD", "2024"):
        assert not any(secret in name for name in made), secret
    # the page numbers patients as the folders do
    for card in index_cards(out / "index.html"):
        assert {url.split("/")[0] for url in linked(card)} == {card["h2"]}, card["h2"]


def test_two_shards_into_one_folder_give_the_single_runs_tree(study_inputs, tmp_path):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert run_cli(study_inputs, "-o", single, "--layout", "study").returncode == 0
    for k in (1, 2):
        run = run_cli(study_inputs, "-o", sharded, "--layout", "study", "--shard", f"{k}/2")
        assert run.returncode == 0, run.stdout + run.stderr
    assert outputs_of(sharded) == outputs_of(single)
    for name in ("manifest.csv", "index.html"):
        assert (sharded / name).read_bytes() == (single / name).read_bytes(), name


def test_a_second_run_skips_what_the_first_converted(study_inputs, tmp_path):
    out = tmp_path / "out"
    assert run_cli(study_inputs, "-o", out, "--layout", "study").returncode == 0
    before = outputs_of(out)
    again = run_cli(study_inputs, "-o", out, "--layout", "study", "--skip-existing")
    up_to_date = [line for line in again.stdout.splitlines() if line.startswith("up to date ")]
    assert again.returncode == 0 and len(up_to_date) == 30, again.stdout
    assert outputs_of(out) == before


def hostile_names_file(path: Path) -> Path:
    """A copy of pydicom's CT_small.dcm whose patient, study and series values try to climb out
    of OUTPUT or name a Windows device: no real file carries such values."""
    from pydicom import dcmread

    ds = dcmread(testdata("CT_small.dcm"))
    ds.PatientName, ds.PatientID = "../../../escaped", ".."
    ds.StudyDescription, ds.SeriesDescription = "/etc/passwd", "CON"
    ds.StudyDate = ""
    del ds.SeriesNumber  # the series folder is then its description alone: a device name
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def test_no_value_can_leave_output(tmp_path):
    hostile_names_file(tmp_path / "in" / "x.dcm")
    out = tmp_path / "deep" / "out"
    run = run_cli(tmp_path / "in", "-o", out, "--layout", "study")
    assert run.returncode == 0, run.stdout + run.stderr
    assert {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*") if p.is_file()} == {"in", "deep"}
    made = outputs_of(out)
    assert "_.._.._escaped (..)/_etc_passwd/CON_/0001.png" in made, made


def test_series_frames_and_json_follow_the_layout(tmp_path):
    """--series puts the series' cine in the series' own folder, --frames and --json beside each file."""
    inputs = tmp_path / "in"
    shutil.copytree(SAMPLES / "CT_SERIES", inputs / "CT_SERIES")
    shutil.copy(SAMPLES / "DCM00004", inputs / "DCM00004")  # an ultrasound clip
    out = tmp_path / "out"
    run = run_cli(inputs, "-o", out, "--layout", "study", "--series", "--frames", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    made = outputs_of(out)
    ct = "Sample, Phantom (PHANTOM0001)/2024-01-15 CT HEAD W_O CONTRAST/003 HEAD 5mm AXIAL"
    assert {f"{ct}/0007.png", f"{ct}/0007.json", f"{ct}/0007.txt"} <= made
    assert {f"{ct}/3_HEAD_5mm_AXIAL{suffix}" for suffix in (".gif", ".mp4", ".txt")} <= made  # the series' cine
    us = "Sample, Phantom (PHANTOM0001)/2024-01-15 US CAROTID DOPPLER/001 CAROTID RT COLOR"
    assert f"{us}/0001_frames/0030.png" in made and f"{us}/0001.json" in made
    assert {p.split("/")[0] for p in made} == {"Sample, Phantom (PHANTOM0001)", "index.html", "manifest.csv"}
