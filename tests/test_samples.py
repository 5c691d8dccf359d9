"""Tests for the synthetic sample data: create_sample_dicom.py and the committed dicom_data/.

These check the *inputs* that dicom_converter.py is run on, not the converter:
- regenerating gives byte-identical files (the script is deterministic);
- every file has the SOP class, transfer syntax, photometric interpretation,
  frame count and pixel layout it claims, and decodes with pydicom;
- the pixel values show what each file is meant to exercise (HU after
  rescale, MONOCHROME1 polarity, a moving contrast bolus, colour Doppler, ...).

The JPEG Lossless SV1 file is made by DCMTK's dcmcjpeg; its tests are skipped
when dcmcjpeg is not installed.  Byte-identity assumes the same encoder
versions as when dicom_data/ was committed (Pillow's libjpeg for the
ultrasound JPEG, dcmcjpeg 3.6.7 for SV1).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames
from pydicom.pixels import apply_color_lut
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    UltrasoundMultiFrameImageStorage,
    XRayAngiographicImageStorage,
)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "create_sample_dicom.py"
DATA = ROOT / "dicom_data"

SV1_FILE = "XA_JPEG_LOSSLESS_SV1.dcm"
HAVE_DCMCJPEG = shutil.which("dcmcjpeg") is not None
needs_dcmcjpeg = pytest.mark.skipif(not HAVE_DCMCJPEG, reason="DCMTK dcmcjpeg not installed")

CT_SERIES = [f"CT_SERIES/IM{i:04d}" for i in range(1, 21)]

# name -> (SOP Class, transfer syntax, PhotometricInterpretation, NumberOfFrames or None,
#          pixel_array shape, pixel_array dtype, Modality)
EXPECTED = {
    "DCM00000": (CTImageStorage, ExplicitVRLittleEndian, "MONOCHROME2", None,
                 (512, 512), np.int16, "CT"),
    "DCM00001": (MRImageStorage, ImplicitVRLittleEndian, "MONOCHROME2", None,
                 (256, 256), np.uint16, "MR"),
    "DCM00002": (ComputedRadiographyImageStorage, ExplicitVRLittleEndian, "MONOCHROME1", None,
                 (864, 704), np.uint16, "CR"),
    "DCM00003": (XRayAngiographicImageStorage, RLELossless, "MONOCHROME2", 30,
                 (30, 256, 256), np.uint16, "XA"),
    "DCM00004": (UltrasoundMultiFrameImageStorage, JPEGBaseline8Bit, "YBR_FULL_422", 30,
                 (30, 240, 320, 3), np.uint8, "US"),
    "PALETTE_SC.dcm": (SecondaryCaptureImageStorage, ExplicitVRLittleEndian, "PALETTE COLOR", None,
                       (256, 256), np.uint8, "OT"),
    SV1_FILE: (XRayAngiographicImageStorage, JPEGLosslessSV1, "MONOCHROME2", 30,
               (30, 256, 256), np.uint16, "XA"),
    **{name: (CTImageStorage, ExplicitVRLittleEndian, "MONOCHROME2", None, (256, 256), np.int16, "CT")
       for name in CT_SERIES},
}


def _param(name: str):
    marks = [needs_dcmcjpeg] if name == SV1_FILE else []
    return pytest.param(name, marks=marks, id=name)


ALL_FILES = [_param(name) for name in EXPECTED]


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def read(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(DATA / name)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    """Run the generator into a fresh directory, exactly as a user would."""
    out = tmp_path_factory.mktemp("samples")
    proc = subprocess.run([sys.executable, str(SCRIPT), "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


# ----------------------------------------------------------------------------
# The set as a whole
# ----------------------------------------------------------------------------

def test_regeneration_is_byte_identical_to_committed_data(regenerated):
    committed = files_under(DATA)
    fresh = files_under(regenerated)
    if not HAVE_DCMCJPEG:
        committed = [name for name in committed if name != SV1_FILE]
    assert fresh == committed
    different = [name for name in fresh
                 if (regenerated / name).read_bytes() != (DATA / name).read_bytes()]
    assert different == []


def test_committed_data_is_exactly_the_expected_files():
    assert files_under(DATA) == sorted(EXPECTED)


def test_every_file_is_part10_dicom_so_the_folder_converts_cleanly():
    for name in files_under(DATA):
        head = (DATA / name).read_bytes()[:132]
        assert head[:128] == b"\0" * 128, name
        assert head[128:] == b"DICM", name


def test_total_size_stays_small():
    total = sum((DATA / name).stat().st_size for name in files_under(DATA))
    assert total <= 8_000_000


def test_uids_are_valid_and_instances_unique():
    sop_uids = []
    for name in EXPECTED:
        ds = read(name)
        for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID,
                    ds.file_meta.ImplementationClassUID):
            assert UID(uid).is_valid, (name, uid)
        sop_uids.append(ds.SOPInstanceUID)
    assert len(set(sop_uids)) == len(EXPECTED)


def test_help_lists_every_top_level_file():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for name in EXPECTED:
        if "/" not in name:
            assert name in proc.stdout
    assert "CT_SERIES/IM0001..IM0020" in proc.stdout


# ----------------------------------------------------------------------------
# Every file: header, file meta, pixel layout
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_FILES)
def test_file_header_and_pixels(name):
    sop_class, syntax, photometric, frames, shape, dtype, modality = EXPECTED[name]
    ds = read(name)
    meta = ds.file_meta
    assert ds.SOPClassUID == sop_class
    assert meta.MediaStorageSOPClassUID == sop_class
    assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert meta.TransferSyntaxUID == syntax
    assert ds.Modality == modality
    assert ds.PatientName == "Sample^Phantom"
    assert ds.PatientID == "PHANTOM0001"
    assert ds.StudyDate == "20240115"
    assert ds.PhotometricInterpretation == photometric
    if frames is None:
        assert "NumberOfFrames" not in ds
    else:
        assert ds.NumberOfFrames == frames
    colour = len(shape) == 4
    assert ds.SamplesPerPixel == (3 if colour else 1)
    assert (ds.Rows, ds.Columns) == (shape[-3:-1] if colour else shape[-2:])
    assert ds.HighBit == ds.BitsStored - 1
    assert ds.BitsAllocated == np.dtype(dtype).itemsize * 8
    assert ds.PixelRepresentation == (1 if np.dtype(dtype).kind == "i" else 0)

    pixels = ds.pixel_array
    assert pixels.shape == shape
    assert pixels.dtype == dtype
    assert int(pixels.max()) < 2 ** ds.BitsStored or ds.PixelRepresentation == 1


@pytest.mark.skipif(shutil.which("dcmdump") is None, reason="DCMTK dcmdump not installed")
@pytest.mark.parametrize("name", ALL_FILES)
def test_dcmdump_reads_without_warnings(name):
    proc = subprocess.run(["dcmdump", str(DATA / name)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stderr == ""


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools dciodvfy not installed")
@pytest.mark.parametrize("name", ALL_FILES)
def test_dciodvfy_finds_no_iod_errors_or_warnings(name):
    proc = subprocess.run(["dciodvfy", str(DATA / name)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if line.startswith(("Error", "Warning"))]
    assert problems == []


# ----------------------------------------------------------------------------
# What each file is there to exercise
# ----------------------------------------------------------------------------

def test_ct_head_is_signed_hounsfield_with_brain_window():
    ds = read("DCM00000")
    assert ds.PixelRepresentation == 1
    assert (ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType) == (-1024, 1, "HU")
    assert (ds.WindowCenter, ds.WindowWidth) == (40, 400)
    assert ds.PixelPaddingValue == -2000
    stored = ds.pixel_array
    hu = stored.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert stored[0, 0] == -2000  # outside the scan circle
    assert -1050 < np.median(hu[12:40, 236:276]) < -950  # air in front of the head
    assert 15 < np.median(hu[300:330, 240:272]) < 45  # brain
    assert np.percentile(hu, 99.9) > 700  # skull
    assert (hu[180:300, 150:230] < 15).sum() > 1000  # the dark (CSF) ventricles


def test_ct_series_needs_sorting_by_position_not_file_name():
    datasets = {name: read(name) for name in CT_SERIES}
    assert len({ds.SeriesInstanceUID for ds in datasets.values()}) == 1
    assert len({ds.FrameOfReferenceUID for ds in datasets.values()}) == 1
    by_name = [int(datasets[name].InstanceNumber) for name in CT_SERIES]
    assert sorted(by_name) == list(range(1, 21))
    assert by_name != sorted(by_name)  # file-name order is NOT slice order
    assert (by_name[-2], by_name[-1]) == (6, 14)

    slices = sorted(datasets.values(), key=lambda ds: int(ds.InstanceNumber))
    z = [float(ds.ImagePositionPatient[2]) for ds in slices]
    assert z == pytest.approx([-35.0 + 5.0 * i for i in range(20)])
    for ds in slices:
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert float(ds.SliceLocation) == pytest.approx(float(ds.ImagePositionPatient[2]))
        assert float(ds.SliceThickness) == 5.0
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([220 / 256] * 2)

    # The phantom changes along z: the head's cross-section shrinks towards the vertex.
    head_area = [int((ds.pixel_array > 500).sum()) for ds in slices]  # stored > 500: not air
    assert head_area[0] > head_area[-1] * 1.1
    assert not np.array_equal(slices[0].pixel_array, slices[10].pixel_array)


def test_mr_has_no_window_and_uses_more_than_12_bits():
    ds = read("DCM00001")
    for keyword in ("WindowCenter", "WindowWidth", "VOILUTSequence", "RescaleSlope", "RescaleIntercept"):
        assert keyword not in ds
    assert (ds.BitsStored, ds.PixelRepresentation) == (16, 0)
    pixels = ds.pixel_array
    assert pixels.max() > 4095
    assert 20 < np.median(pixels[:16, :16]) < 200  # Rician noise floor, not zero
    assert ds.ScanningSequence == "SE"


def test_cr_is_monochrome1_with_window():
    ds = read("DCM00002")
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert (ds.WindowCenter, ds.WindowWidth) == (2100, 3000)
    assert ds.BitsStored == 12
    assert list(ds.PatientOrientation) == ["L", "F"]
    assert ds.ViewPosition == "PA"
    pixels = ds.pixel_array.astype(np.int64)
    assert pixels.max() <= 4095
    # Stored values are exposure-like: the air-filled lung (shown dark) is
    # HIGHER than the mediastinum (shown white) in MONOCHROME1.
    rows = slice(380, 420)  # ~200 mm from the top
    right_lung = np.median(pixels[rows, 150:170])
    mediastinum = np.median(pixels[rows, 342:362])
    assert right_lung > mediastinum + 500
    assert np.median(pixels[:, :10]) < 200  # collimated edge: unexposed, shown white


def test_xa_rle_is_a_cine_run_with_a_moving_bolus():
    ds = read("DCM00003")
    assert ds.NumberOfFrames >= 30
    assert ds.FrameIncrementPointer == Tag(0x0018, 0x1063)
    assert float(ds.FrameTime) == pytest.approx(66.67)
    assert int(ds.CineRate) == 15
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 10, 9)
    assert ds.PixelIntensityRelationship == "LIN"
    frames = ds.pixel_array.astype(np.int64)
    assert frames.max() < 1024
    assert (frames[:, 0, 0] == 0).all() and (frames[:, -1, -1] == 0).all()  # circular shutter
    # Pixels made darker by contrast (relative to the contrast-free first frame).
    filled = [int(((frames[0] - frames[k]) > 60).sum()) for k in range(len(frames))]
    assert filled[1] == 0
    assert filled[4] < filled[8] < filled[12]  # the bolus runs down the tree
    assert max(filled) > 2000
    assert filled[-1] < max(filled) / 3  # and washes out again


@needs_dcmcjpeg
def test_xa_sv1_copy_is_jpeg_process14_sv1_with_identical_pixels():
    rle, sv1 = read("DCM00003"), read(SV1_FILE)
    assert sv1.file_meta.TransferSyntaxUID == JPEGLosslessSV1
    assert sv1.SeriesInstanceUID == rle.SeriesInstanceUID
    assert sv1.SOPInstanceUID != rle.SOPInstanceUID
    first = next(generate_frames(sv1.PixelData, number_of_frames=sv1.NumberOfFrames))
    assert first[:2] == b"\xff\xd8"
    assert b"\xff\xc3" in first  # SOF3: lossless, Huffman
    sos = first.index(b"\xff\xda")
    components = first[sos + 4]
    predictor = first[sos + 5 + 2 * components]  # Ss holds the predictor in lossless JPEG
    assert predictor == 1
    np.testing.assert_array_equal(sv1.pixel_array, rle.pixel_array)


def test_us_is_jpeg_baseline_422_colour_doppler_cine():
    ds = read("DCM00004")
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert (ds.SamplesPerPixel, ds.PlanarConfiguration, ds.BitsAllocated) == (3, 0, 8)
    assert float(ds.FrameTime) == pytest.approx(33.33)
    assert int(ds.CineRate) == 30
    assert ds.FrameIncrementPointer == Tag(0x0018, 0x1063)
    assert ds.LossyImageCompression == "01"
    fragments = list(generate_frames(ds.PixelData, number_of_frames=ds.NumberOfFrames))
    assert len(fragments) == 30
    sof = fragments[0].index(b"\xff\xc0")  # SOF0: baseline
    sampling = [fragments[0][sof + 11 + 3 * c] for c in range(3)]
    assert sampling == [0x21, 0x11, 0x11]  # Y 2x1, Cb 1x1, Cr 1x1: 4:2:2

    rgb = ds.pixel_array.astype(np.int64)  # pydicom converts YBR_FULL_422 to RGB
    image = rgb[:, :, 20:]  # leave out the colour bar at the left
    red = ((image[..., 0] > 150) & (image[..., 1] < 90) & (image[..., 2] < 90)).sum(axis=(1, 2))
    assert red.max() > 1000  # flow towards the probe in systole
    assert red.min() < red.max() / 3  # ...and much less in diastole: pulsatile
    grey = (np.abs(image[..., 0] - image[..., 1]) < 12) & (np.abs(image[..., 1] - image[..., 2]) < 12)
    assert grey.mean() > 0.9  # mostly B-mode greyscale


def test_palette_color_lut_maps_indices_to_jet():
    ds = read("PALETTE_SC.dcm")
    for colour in ("Red", "Green", "Blue"):
        assert list(ds[f"{colour}PaletteColorLookupTableDescriptor"].value) == [256, 0, 16]
        assert len(ds[f"{colour}PaletteColorLookupTableData"].value) == 256 * 2
    indices = ds.pixel_array
    assert indices[0, 0] == 0 and indices.max() == 255
    rgb = apply_color_lut(indices, ds)
    assert rgb.shape == (256, 256, 3)
    assert rgb.dtype == np.uint16
    assert rgb[0, 0].tolist() == [0, 0, 0]  # background index 0 is black
    top, bottom = rgb[40, 242].astype(int), rgb[215, 242].astype(int)  # colour bar ends
    assert top[0] > 20000 and top[2] == 0  # dark red
    assert bottom[2] > 20000 and bottom[0] == 0  # dark blue
