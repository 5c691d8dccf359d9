"""The pixel pipeline: each standard step on its own, then whole files against DCMTK.

DCMTK's dcmj2pnm is the reference renderer: our 8-bit PNGs and frames must
match it within one grey level on average, GIF frames within that plus their
quantisation (they are held to GIF_MIN_PSNR_GREY against our frames).  DCMTK
cannot decode JPEG 2000, so those files are compared with the uncompressed twin
pydicom ships.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import ROOT, run_cli, testdata
from PIL import Image, ImageSequence
from pydicom.dataset import Dataset

from _dicom_converter.base import ENV_HELPER_PIXELS, Unsupported
from _dicom_converter.cli import main
from _dicom_converter.gif import GIF_MIN_PSNR_GREY, psnr
from _dicom_converter.inputs import output_stem
from _dicom_converter.pixels.display import (
    _SHARED_LUTS,
    apply_window,
    choose_voi,
    display_values,
    frame_attributes,
    grayscale_lut,
    is_inverted,
    lut_index,
    render_grayscale,
    rendered_frames,
)
from _dicom_converter.pixels.libjpeg_turbo import use_libjpeg_turbo
from _dicom_converter.reading import read_dataset

needs_dcmtk = pytest.mark.skipif(shutil.which("dcmj2pnm") is None, reason="DCMTK not installed")


def convert(tmp_path: Path, name: str, *options: str) -> Path:
    """Convert one real test file into tmp_path/out and return the output folder."""
    out = tmp_path / "out"
    assert main([str(testdata(name)), "-o", str(out), *options]) == 0
    return out


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int64)


def dcmtk_render(tmp_path: Path, name: str, *flags: str) -> np.ndarray:
    """dcmj2pnm's PNG of a test file (8-bit unless +on2 is among the flags)."""
    ref = tmp_path / "dcmtk.png"
    run = subprocess.run(["dcmj2pnm", *(flags or ("+on",)), str(testdata(name)), str(ref)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return read_png(ref)


def stem_of(name: str) -> str:
    return output_stem(name)


# --- one step at a time -------------------------------------------------------

def mono(**attrs) -> Dataset:
    """A bare greyscale dataset with just the attributes a step reads."""
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored, ds.PixelRepresentation = 16, 1
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def test_linear_window_follows_c11_2_1_2():
    # center 40 width 400: x <= c - 0.5 - (w-1)/2 -> 0, x > c - 0.5 + (w-1)/2 -> 1
    values = np.array([-160, -159, 39.5, 238, 239.5], dtype=float)
    out = apply_window(values, 40, 400, "LINEAR")
    assert out[0] == 0.0 and out[-1] == 1.0
    assert out[2] == pytest.approx(0.5)
    assert out[1] == pytest.approx(1 / 399, abs=1e-9)
    assert out[3] == pytest.approx(1 - 1 / 399, abs=1e-9)


def test_linear_exact_and_sigmoid_windows():
    values = np.array([-160.0, 40.0, 240.0])
    assert apply_window(values, 40, 400, "LINEAR_EXACT").tolist() == [0.0, 0.5, 1.0]
    sigmoid = apply_window(values, 40, 400, "SIGMOID")
    assert sigmoid[1] == pytest.approx(0.5)
    assert sigmoid[0] == pytest.approx(1 / (1 + np.exp(2)))
    with pytest.raises(Unsupported, match="VOI LUT Function"):
        apply_window(values, 40, 400, "CUBIC")


def test_modality_rescale_then_window_gives_hounsfield_display():
    ds = mono(RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400)
    stored = np.array([0, 1024 - 160, 1064, 1024 + 400], dtype=np.int16)
    shown = display_values(stored, ds, choose_voi(ds, None), 255)
    assert shown.tolist() == [0, 0, 128, 255]


def test_monochrome1_is_inverted_after_the_window():
    ds = mono(PhotometricInterpretation="MONOCHROME1", WindowCenter=100, WindowWidth=50)
    stored = np.array([0, 200], dtype=np.int16)
    # low values are white in MONOCHROME1; inverting before VOI would turn both black
    assert display_values(stored, ds, choose_voi(ds, None), 255).tolist() == [255, 0]


def test_presentation_lut_shape_overrides_photometric():
    assert is_inverted(mono(PresentationLUTShape="INVERSE"))
    assert not is_inverted(mono(PhotometricInterpretation="MONOCHROME1", PresentationLUTShape="IDENTITY"))
    assert is_inverted(mono(PhotometricInterpretation="MONOCHROME1"))


def test_window_override_beats_file_window():
    ds = mono(WindowCenter=40, WindowWidth=400)
    voi = choose_voi(ds, (500.0, 1000.0))
    assert (voi.center, voi.width, voi.source) == (500.0, 1000.0, "--window")


def test_lut_of_signed_values_is_indexed_by_unsigned_view():
    ds = mono(WindowCenter=0, WindowWidth=200)
    voi = choose_voi(ds, None)
    frame = np.array([[-100, 0, 99]], dtype=np.int16)
    lut = grayscale_lut(frame.dtype, ds, voi, 65535)
    assert lut[lut_index(frame)].tolist() == display_values(frame, ds, voi, 65535).tolist()


def test_display_luts_kept_between_files_never_mix_their_settings():
    """LUTs outlive their file (slices share them); any setting that differs must not share one."""
    frame = np.array([[-100, 0, 40, 99, 1500]], dtype=np.int16)
    settings = [
        dict(WindowCenter=40, WindowWidth=400),
        dict(WindowCenter=40, WindowWidth=400),  # the same again: served from the kept LUT
        dict(WindowCenter=40, WindowWidth=80),
        dict(WindowCenter=40, WindowWidth=400, RescaleSlope=2, RescaleIntercept=0),
        dict(WindowCenter=40, WindowWidth=400, RescaleSlope=1, RescaleIntercept=-1024),
        dict(WindowCenter=40, WindowWidth=400, PhotometricInterpretation="MONOCHROME1"),
        dict(WindowCenter=40, WindowWidth=400, VOILUTFunction="SIGMOID"),
    ]
    _SHARED_LUTS.clear()
    for attrs in settings:
        ds = mono(**attrs)
        for out_max in (255, 65535):
            voi = choose_voi(ds, None)
            shown = next(render_grayscale([frame], lambda index: ds, lambda a: voi, out_max))
            assert shown.tolist() == display_values(frame, ds, voi, out_max).tolist(), (attrs, out_max)
    assert len(_SHARED_LUTS) == 12  # 6 distinct settings x 2 output depths


def test_per_frame_functional_groups_override_shared():
    ds = mono()
    shared = Dataset()
    shared.PixelValueTransformationSequence = [Dataset()]
    shared.PixelValueTransformationSequence[0].RescaleSlope = 2
    shared.PixelValueTransformationSequence[0].RescaleIntercept = 0
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for center in (100, 300):
        item = Dataset()
        item.FrameVOILUTSequence = [Dataset()]
        item.FrameVOILUTSequence[0].WindowCenter = center
        item.FrameVOILUTSequence[0].WindowWidth = 50
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = frames
    second = frame_attributes(ds, 1)
    assert (second.RescaleSlope, second.WindowCenter) == (2, 300)
    assert frame_attributes(ds, 0).WindowCenter == 100


def test_enhanced_ct_uses_its_functional_groups(tmp_path):
    out = convert(tmp_path, "eCT_Supplemental.dcm", "--no-mp4")
    gif = Image.open(out / "eCT_Supplemental.gif")
    assert gif.n_frames == 2 and gif.size == (512, 512)
    text = (out / "eCT_Supplemental.txt").read_text(encoding="utf-8")
    ds = pydicom.dcmread(testdata("eCT_Supplemental.dcm"))
    voi = ds.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence[0]  # no per-frame VOI here
    assert f"window {float(voi.WindowCenter):g}/{float(voi.WindowWidth):g}" in text


# --- whole files against DCMTK ------------------------------------------------

# (file, dcmj2pnm VOI flags): +Wi 1 the file's first window, +Wl 1 its VOI LUT,
# +Wm min-max (files with no VOI; also the identity for colour).
DCMTK_CASES = [
    ("CT_small.dcm", "+Wm"),                          # CT, rescale, no window
    ("MR_small.dcm", "+Wi 1"),
    ("MR_small_bigendian.dcm", "+Wi 1"),              # explicit big endian
    ("MR_small_implicit.dcm", "+Wi 1"),               # implicit little endian
    ("MR_small_RLE.dcm", "+Wi 1"),                    # RLE lossless
    ("JPEG-LL.dcm", "+Wm"),                           # JPEG lossless process 14
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", "+Wi 1"),      # JPEG lossless SV1 (angiography's format)
    ("JPGExtended.dcm", "+Wm"),                       # JPEG extended 12-bit
    ("image_dfl.dcm", "+Wm"),                         # deflated explicit little endian
    ("RG3_UNCR.dcm", "+Wi 1"),                        # MONOCHROME1 CR
    ("RG1_UNCI.dcm", "+Wi 1"),                        # MONOCHROME1, 15 bits stored
    ("MR2_UNCR.dcm", "+Wi 1"),                        # 12 bits in 16, rescale
    ("693_UNCR.dcm", "+Wi 1"),                        # signed CT, 14 bits stored
    ("mlut_18.dcm", "+Wm"),                           # Modality LUT Sequence
    ("vlut_04.dcm", "+Wl 1"),                         # VOI LUT Sequence
    ("MR-SIEMENS-DICOM-WithOverlays.dcm", "+Wi 1"),   # graphic overlay drawn
    ("rtdose_1frame.dcm", "+Wm"),                     # 32-bit stored values
    ("OBXXXX1A.dcm", "+Wm"),                          # PALETTE COLOR, 16-bit LUT entries
    ("OBXXXX1A_expb.dcm", "+Wm"),                     # ... big endian LUT data
    ("OT-PAL-8-face.dcm", "+Wm"),                     # PALETTE COLOR, ACR-NEMA style
    ("US1_UNCR.dcm", "+Wm"),                          # RGB
    ("color-pl.dcm", "+Wm"),                          # RGB, planar configuration 1
    ("SC_rgb_16bit.dcm", "+Wm"),                      # RGB 16 bits -> 8
    ("SC_ybr_full_uncompressed.dcm", "+Wm"),          # YBR_FULL
    ("SC_ybr_full_422_uncompressed.dcm", "+Wm"),      # YBR_FULL_422
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", "+Wm"),            # JPEG baseline YBR_FULL_422
    ("SC_rgb_jpeg_dcmtk.dcm", "+Wm"),                 # JPEG baseline YBR_FULL
]


@needs_dcmtk
@pytest.mark.parametrize("name, flags", DCMTK_CASES, ids=[c[0] for c in DCMTK_CASES])
def test_8bit_png_matches_dcmtk(tmp_path, name, flags):
    ours = read_png(convert(tmp_path, name, "--8bit") / f"{stem_of(name)}.png")
    reference = dcmtk_render(tmp_path, name, "+on", *flags.split())
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).mean() <= 1.0


@needs_dcmtk
def test_16bit_png_matches_dcmtk_16bit(tmp_path):
    ours = read_png(convert(tmp_path, "MR_small.dcm") / "MR_small.png")
    assert Image.open(tmp_path / "out" / "MR_small.png").mode.startswith("I;16")
    reference = dcmtk_render(tmp_path, "MR_small.dcm", "+on2", "+Wi", "1")
    assert ours.max() > 255  # really 16-bit, not 8-bit values in a 16-bit file
    assert np.abs(ours - reference).mean() <= 257  # one 8-bit grey level


@needs_dcmtk
def test_frames_and_gif_match_dcmtk_with_explicit_window(tmp_path):
    """The 8-bit frames (--frames) match DCMTK within one grey level on average; the GIF
    shows them within its quantisation: at least GIF_MIN_PSNR_GREY against each frame,
    so its mean error to DCMTK is at most that one level plus the RMS error the PSNR
    allows (255 / 10^(40/20) = 2.55 levels)."""
    out = convert(tmp_path, "emri_small.dcm", "--window", "600", "1200", "--no-mp4", "--frames", "--8bit")
    frames = [read_png(out / "emri_small_frames" / f"{k:04d}.png") for k in range(1, 11)]
    gif = [np.asarray(f.convert("L")).astype(np.int64)
           for f in ImageSequence.Iterator(Image.open(out / "emri_small.gif"))]
    refdir = tmp_path / "ref"
    refdir.mkdir()
    subprocess.run(["dcmj2pnm", "+on", "+Fa", "+Ww", "600", "1200",
                    str(testdata("emri_small.dcm")), str(refdir / "f.png")], check=True)
    references = [read_png(refdir / f"f.png.{i}.png") for i in range(10)]
    quantisation = 255 / 10 ** (GIF_MIN_PSNR_GREY / 20)
    for ours, shown, reference in zip(frames, gif, references, strict=True):
        assert np.abs(ours - reference).mean() <= 1.0
        assert psnr(shown, ours) >= GIF_MIN_PSNR_GREY
        assert np.abs(shown - reference).mean() <= 1.0 + quantisation


@pytest.mark.parametrize("compressed, uncompressed", [
    ("MR2_J2KR.dcm", "MR2_UNCR.dcm"),        # JPEG 2000 lossless, greyscale
    ("RG1_J2KR.dcm", "RG1_UNCR.dcm"),        # ... MONOCHROME1
    ("US1_J2KR.dcm", "US1_UNCR.dcm"),        # ... YBR_RCT colour
    ("US1_J2KI.dcm", "US1_UNCI.dcm"),        # JPEG 2000 lossy, YBR_ICT
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),  # JPEG-LS lossless
    ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),
])
def test_compressed_file_renders_like_its_uncompressed_twin(tmp_path, compressed, uncompressed):
    def rendered(name):
        out = tmp_path / stem_of(name)
        assert main([str(testdata(name)), "-o", str(out), "--8bit", "--no-mp4"]) == 0
        image = out / (stem_of(name) + (".gif" if (out / (stem_of(name) + ".gif")).exists() else ".png"))
        return [np.asarray(f.convert("RGB")).astype(np.int64) for f in ImageSequence.Iterator(Image.open(image))]

    for ours, twin in zip(rendered(compressed), rendered(uncompressed), strict=True):
        assert np.abs(ours - twin).mean() <= 0.5


@needs_dcmtk
def test_jpeg_lossless_through_libjpeg_turbo_equals_pydicoms_own_decoder(tmp_path, monkeypatch):
    """libjpeg-turbo goes first for JPEG Lossless (`use_libjpeg_turbo`): each frame must equal pylibjpeg's."""
    import imagecodecs
    from pydicom.pixels import iter_pixels

    files = [testdata(name) for name in ("JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "bad_sequence.dcm",
                                         "SC_rgb_jpeg_gdcm.dcm")]  # signed 16, 8, 12 bit; colour
    files.append(ROOT / "dicom_data" / "XA_JPEG_LOSSLESS_SV1.dcm")
    # DCMTK's encoder, both Process 14 forms, over signed, 14-bit, multi-frame and MONOCHROME1 originals
    for name in ("CT_small.dcm", "693_UNCR.dcm", "emri_small.dcm", "RG3_UNCR.dcm"):
        for flag in ("+e1", "+el"):
            files.append(tmp_path / f"{flag[1:]}_{name}")
            subprocess.run(["dcmcjpeg", flag, str(testdata(name)), str(files[-1])], check=True)
    use_libjpeg_turbo()
    decoded = count_turbo_frames(monkeypatch)
    for path in files:
        ours, theirs = list(iter_pixels(path)), list(iter_pixels(path, decoding_plugin="pylibjpeg"))
        assert len(ours) == len(theirs), path.name
        for mine, reference in zip(ours, theirs):
            assert mine.dtype == reference.dtype and np.array_equal(mine, reference), path.name
    # every frame went through libjpeg-turbo: 1+1+1+1 (RGB) + 30 + 2x(1+1+10+1)
    assert len(decoded) == 60


def count_turbo_frames(monkeypatch) -> list:
    """A list that gets an entry for each frame libjpeg-turbo decodes."""
    import imagecodecs

    turbo, decoded = imagecodecs.jpeg8_decode, []
    monkeypatch.setattr(imagecodecs, "jpeg8_decode", lambda src, **kw: decoded.append(1) or turbo(src, **kw))
    return decoded


# Every JPEG Baseline / Extended file in pydicom's test data that DCMTK reads
# (SC_rgb_jpeg.dcm has a header DCMTK cannot parse).
JPEG_LOSSY_FILES = (
    "color3d_jpeg_baseline.dcm", "examples_ybr_color.dcm",  # ultrasound cines, YBR_FULL_422
    "JPEG-lossy.dcm", "JPGExtended.dcm",  # 12-bit grey; NEMA's NM1_JPLY and pydicom's rewrite of it
    "SC_jpeg_no_color_transform.dcm", "SC_jpeg_no_color_transform_2.dcm", "SC_rgb_dcmtk_+eb+cr.dcm",
    "SC_rgb_jpeg_app14_dcmd.dcm",  # RGB in the stream
    "SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_dcmtk_+eb+cy+n2.dcm", "SC_rgb_dcmtk_+eb+cy+s4.dcm",
    "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg_lossy_gdcm.dcm", "SC_rgb_small_odd_jpeg.dcm",  # YBR_FULL
    "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_dcmtk_+eb+cy+s2.dcm",  # YBR_FULL_422
)


@needs_dcmtk
@pytest.mark.parametrize("name", JPEG_LOSSY_FILES)
def test_jpeg_baseline_and_extended_decode_as_dcmtk_does(tmp_path, monkeypatch, name):
    """libjpeg-turbo goes first for lossy JPEG too: every frame equals DCMTK's dcmdjpeg, RGB after pydicom's
    YBR conversion.  (pylibjpeg differs by up to 5 levels on these, and refuses JPEG-lossy.dcm.)"""
    from pydicom.pixels import iter_pixels

    reference = tmp_path / "dcmdjpeg.dcm"
    subprocess.run(["dcmdjpeg", str(testdata(name)), str(reference)], check=True, capture_output=True)
    theirs = pydicom.dcmread(reference)
    use_libjpeg_turbo()
    decoded = count_turbo_frames(monkeypatch)
    ours = np.stack(list(iter_pixels(testdata(name))))
    assert ours.shape[0] == len(decoded) == int(theirs.get("NumberOfFrames", 1) or 1)
    assert np.array_equal(ours.reshape(theirs.pixel_array.shape), theirs.pixel_array)


def test_a_jpeg_frame_cut_short_converts_with_a_warning(tmp_path):
    """Data ending before the end-of-image marker decodes as far as it goes, as viewers show it, but not silently."""
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(testdata("JPGExtended.dcm"))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) * 3 // 4]])
    ds.save_as(tmp_path / "cut.dcm")
    shutil.copy(testdata("JPGExtended.dcm"), tmp_path / "whole.dcm")
    results = {}
    for stem in ("cut", "whole"):
        run = run_cli(tmp_path / f"{stem}.dcm", "-o", tmp_path / "out", "--window", "128", "256")
        assert run.returncode == 0, run.stderr
        results[stem] = run.stdout
    assert "warning: a JPEG frame ends before its end-of-image marker" in results["cut"]
    assert "warning" not in results["whole"]
    cut, whole = (read_png(tmp_path / "out" / f"{stem}.png") for stem in ("cut", "whole"))
    assert np.array_equal(cut[:400], whole[:400])  # the top of the image decoded before the data ran out


@needs_dcmtk
def test_jpeg_lossless_with_a_point_transform_keeps_the_high_bits(tmp_path):
    """Process 14 may drop Pt low bits (a point transform): the rest must come back in place.

    Found while testing libjpeg-turbo: pylibjpeg 2.x returned one constant value
    for every pixel of this file, libjpeg-turbo the original less its 2 low bits.
    """
    from pydicom.pixels import iter_pixels

    original = pydicom.dcmread(testdata("CT_small.dcm")).pixel_array.astype(np.int64)
    encoded = tmp_path / "pt2.dcm"
    subprocess.run(["dcmcjpeg", "+el", "+pt", "2", str(testdata("CT_small.dcm")), str(encoded)], check=True)
    use_libjpeg_turbo()
    decoded = next(iter_pixels(encoded)).astype(np.int64)
    assert 0 <= (original - decoded).min() and (original - decoded).max() <= 3
    assert (original - decoded).max() > 0  # the low bits really were dropped


def test_segmented_palette_expands_to_colour(tmp_path):
    # DCMTK does not support segmented palettes; pydicom's expansion is checked on values
    out = convert(tmp_path, "gdcm-US-ALOKA-16.dcm")
    image = read_png(out / "gdcm-US-ALOKA-16.png")
    ds = pydicom.dcmread(testdata("gdcm-US-ALOKA-16.dcm"))
    assert image.shape == (ds.Rows, ds.Columns, 3)
    from pydicom.pixels import apply_color_lut
    expected = np.rint(apply_color_lut(ds.pixel_array, ds) / 257.0)
    assert np.abs(image - expected).max() <= 1


def test_minmax_window_spans_the_whole_clip_not_each_frame():
    path = testdata("emri_small.dcm")
    frames, description = rendered_frames(path, read_dataset(path), 255, None)
    frames = list(frames)
    clip = pydicom.dcmread(path).pixel_array.astype(float)
    expected = np.rint((clip - clip.min()) / (clip.max() - clip.min()) * 255)
    assert description == f"min-max {clip.min():g}..{clip.max():g} (no window in file)"
    assert len(frames) == 10
    for ours, want in zip(frames, expected):
        assert np.abs(ours.astype(float) - want).max() <= 0.5
    # a per-frame min-max would stretch every frame to full range; the clip's does not
    assert min(int(f.max()) for f in frames) < 255


def test_decoding_in_a_helper_process_gives_the_same_outputs(tmp_path, monkeypatch):
    """Large clips decode in a helper process; force that path on small clips and compare."""
    names = ("emri_small.dcm", "examples_ybr_color.dcm", "emri_small_RLE.dcm")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in names:
        (inputs / name).symlink_to(testdata(name))
    assert main([str(inputs), "-o", str(tmp_path / "alone"), "--no-index", "-j", "1"]) == 0
    monkeypatch.setenv(ENV_HELPER_PIXELS, "1")  # read in the worker: reaches it under every start method
    assert main([str(inputs), "-o", str(tmp_path / "helper"), "--no-index", "-j", "1"]) == 0
    for name in names:
        for suffix in (".gif", ".mp4", ".txt"):
            alone = (tmp_path / "alone" / (stem_of(name) + suffix)).read_bytes()
            assert alone == (tmp_path / "helper" / (stem_of(name) + suffix)).read_bytes(), name + suffix


def test_decoder_errors_come_back_from_the_helper_process(tmp_path, monkeypatch, capsys):
    data = bytearray(testdata("emri_small_jpeg_2k_lossless.dcm").read_bytes())
    last_frame = data.rindex(b"\xff\x4f\xff\x51")  # SOC + SIZ: the last frame's codestream
    data[last_frame:last_frame + 4] = b"JUNK"  # frames 1-9 decode, the 10th cannot
    (tmp_path / "broken.dcm").write_bytes(bytes(data))
    monkeypatch.setenv(ENV_HELPER_PIXELS, "1")
    assert main([str(tmp_path / "broken.dcm"), "-o", str(tmp_path / "out"), "--no-index", "-j", "1"]) == 1
    assert "FAILED     broken.dcm: cannot decode JPEG 2000" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == ["manifest.csv"]  # with its failure


def test_sixteen_to_eight_bits_is_the_rounded_scale_for_every_value():
    """`to_eight_bit`'s integer form for 16-bit frames equals rint(v * 255 / 65535) for all 65,536 values."""
    import numpy as np

    from _dicom_converter.pixels.display import to_eight_bit

    every = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    expected = np.clip(np.rint(every.astype(np.float64) * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    assert to_eight_bit(every, 16).dtype == np.uint8
    assert np.array_equal(to_eight_bit(every, 16), expected)
    assert np.array_equal(to_eight_bit(np.array([4095], np.uint16), 12), [255])  # other depths as before
