"""The index page's pictures: OUTPUT/.thumbs mirrors the output tree, one 8-bit JPEG of at
most 256 px per picture the page shows, made from the frame the file's outputs start with (a
volume's or a cine's middle frame; of a stack of slices, the middle slice's PNG), staged and
renamed with the rest, so a failed file leaves none."""

from __future__ import annotations

import shutil

import numpy as np
from PIL import Image

from conftest import run_cli, testdata


def looks_like(thumb: Image.Image, picture: Image.Image) -> float:
    """Correlation of the thumbnail with `picture` scaled to its size (1.0: the same picture)."""
    small = np.asarray(picture.convert("L").resize(thumb.size, Image.Resampling.BOX), float).ravel()
    return float(np.corrcoef(np.asarray(thumb.convert("L"), float).ravel(), small)[0, 1])


def test_each_file_gets_a_small_jpeg_of_what_it_shows(tmp_path):
    (tmp_path / "in" / "CT").mkdir(parents=True)
    shutil.copy(testdata("CT_small.dcm"), tmp_path / "in" / "CT" / "slice.dcm")
    shutil.copy(testdata("eCT_Supplemental.dcm"), tmp_path / "in" / "volume.dcm")
    run = run_cli(tmp_path / "in", "-o", tmp_path / "out", "--frames")
    assert run.returncode == 0, run.stdout + run.stderr
    assert ".thumbs" not in run.stdout  # index material, not listed among the outputs
    out = tmp_path / "out"
    with Image.open(out / ".thumbs" / "CT" / "slice.jpg") as thumb, Image.open(out / "CT" / "slice.png") as png:
        assert thumb.format == "JPEG" and thumb.mode == "L" and thumb.size == (128, 128)
        assert looks_like(thumb, Image.fromarray((np.asarray(png) >> 8).astype(np.uint8))) > 0.99
    with Image.open(out / ".thumbs" / "volume.jpg") as thumb, \
            Image.open(out / "volume_frames" / "0002.png") as middle, Image.open(out / "volume_frames" / "0001.png") as first:
        assert max(thumb.size) <= 256
        to8 = (lambda im: Image.fromarray((np.asarray(im) >> 8).astype(np.uint8)))
        assert looks_like(thumb, to8(middle)) > 0.99 and looks_like(thumb, to8(middle)) > looks_like(thumb, to8(first))


def test_no_index_means_no_thumbnails_and_a_failure_leaves_none(tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copy(testdata("CT_small.dcm"), tmp_path / "in" / "good.dcm")
    data = testdata("CT_small.dcm").read_bytes()
    (tmp_path / "in" / "cut.dcm").write_bytes(data[:len(data) - 20000])  # pixel data cut short
    run = run_cli(tmp_path / "in", "-o", tmp_path / "out")
    assert run.returncode == 1, run.stdout + run.stderr
    assert [p.name for p in (tmp_path / "out" / ".thumbs").iterdir()] == ["good.jpg"]
    run = run_cli(tmp_path / "in", "-o", tmp_path / "plain", "--no-index")
    assert not (tmp_path / "plain" / ".thumbs").exists()


def test_a_cine_is_pictured_by_its_middle_frame(tmp_path):
    """An angiography run starts before the contrast arrives: its card shows the middle frame
    (the samples' XA run, whose first frames are an empty grey disc), not the first."""
    (tmp_path / "in").mkdir()
    shutil.copy(testdata("emri_small.dcm"), tmp_path / "in" / "cine.dcm")  # 10 frames that differ
    run = run_cli(tmp_path / "in", "-o", tmp_path / "out", "--frames", "--8bit")
    assert run.returncode == 0, run.stdout + run.stderr
    out = tmp_path / "out"
    frames = sorted((out / "cine_frames").glob("*.png"))
    assert len(frames) == 10
    with Image.open(out / ".thumbs" / "cine.jpg") as thumb:
        likeness = [looks_like(thumb, Image.open(frame)) for frame in frames]
    assert max(range(10), key=likeness.__getitem__) == 5 and likeness[5] > 0.99, likeness


def test_a_stack_is_pictured_by_its_middle_slice_alone(tmp_path):
    """A series of slices shows one picture on its card, the middle slice's: only that one
    thumbnail is made, by the page from the slice's PNG (the same frame, the same bytes as
    the worker would have made), and a --skip-existing re-run finds or remakes it."""
    import imagecodecs

    from conftest import index_cards
    from _dicom_converter.writers import thumbnail_jpeg

    series = testdata("dicomdirtests/77654033/CT2/17106").parent  # four real CT slices of one series
    shutil.copytree(series, tmp_path / "in" / "CT2")
    shutil.copy(testdata("CT_small.dcm"), tmp_path / "in" / "alone.dcm")  # a slice alone in its series
    out = tmp_path / "out"
    run = run_cli(tmp_path / "in", "-o", out)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(p.relative_to(out / ".thumbs").as_posix() for p in (out / ".thumbs").rglob("*.jpg")) == [
        "CT2/17166.jpg", "alone.jpg"]
    expected = thumbnail_jpeg(imagecodecs.png_decode((out / "CT2" / "17166.png").read_bytes()))
    assert (out / ".thumbs" / "CT2" / "17166.jpg").read_bytes() == expected
    assert {card["thumb"] for card in index_cards(out / "index.html")} == {".thumbs/CT2/17166.jpg", ".thumbs/alone.jpg"}

    (out / ".thumbs" / "CT2" / "17166.jpg").unlink()
    run = run_cli(tmp_path / "in", "-o", out, "--skip-existing")
    assert run.returncode == 0 and "5 already up to date" in run.stdout, run.stdout + run.stderr
    assert (out / ".thumbs" / "CT2" / "17166.jpg").read_bytes() == expected
    assert {card["thumb"] for card in index_cards(out / "index.html")} == {".thumbs/CT2/17166.jpg", ".thumbs/alone.jpg"}
