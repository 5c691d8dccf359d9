#!/usr/bin/env python3
"""Create a small, deterministic set of synthetic but realistic DICOM files.

The files are meant as test input for ``dicom_converter.py``.  Each one looks
like something found on a hospital CD and exercises a different code path:
signed CT with rescale and window, an MR with no window, an inverted
(MONOCHROME1) radiograph, compressed multi-frame angiography (RLE and JPEG
Lossless), a JPEG baseline YBR_FULL_422 colour ultrasound cine and a PALETTE
COLOR image.  No real patient data is involved: every image is computed here
with numpy (Shepp-Logan head phantom, a chest model, a vessel tree, ...).

Usage::

    python3 create_sample_dicom.py              # writes ./dicom_data/ beside this script
    python3 create_sample_dicom.py -o /tmp/out  # writes somewhere else

Running it again gives byte-identical files: the numpy seeds, UIDs, dates and
encoder settings are all fixed.  The one optional file
(``XA_JPEG_LOSSLESS_SV1.dcm``) needs DCMTK's ``dcmcjpeg`` because neither
pydicom nor Pillow can encode JPEG Lossless.

Module references such as "PS3.3 C.7.6.3" point to DICOM PS3.3 (Information
Object Definitions) and say which IOD module each block of attributes comes
from.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    UltrasoundMultiFrameImageStorage,
    XRayAngiographicImageStorage,
)

# =============================================================================
# Fixed identity of the sample set
# =============================================================================

#: Bump this if the content changes on purpose: it is hashed into every UID,
#: so old and new files can never share a UID.
SAMPLE_SET_VERSION = "dicom_converter sample data v1"

#: One master seed. Each image gets its own generator (SEED, image number), so
#: changing one image never changes the random numbers of another.
SEED = 20240115

#: Fixed dates and times: files must not depend on when the script is run.
STUDY_DATE = "20240115"
INSTANCE_CREATION_DATE = "20240115"
INSTANCE_CREATION_TIME = "120000"

PATIENT_NAME = "Sample^Phantom"
PATIENT_ID = "PHANTOM0001"

#: (0002,0013) is SH (max. 16 characters). We set it ourselves rather than let
#: pydicom write its own version string, so the bytes don't change when
#: pydicom is upgraded.
IMPLEMENTATION_VERSION_NAME = "DCMCONV_SAMPLE_1"

DEFAULT_OUTPUT_DIR = Path(__file__).resolve().parent / "dicom_data"

#: Names of the output files (relative to the output directory).  Hospital CDs
#: usually have extensionless names like these; workstation exports use .dcm.
CT_HEAD_FILE = "DCM00000"
MR_HEAD_FILE = "DCM00001"
CR_CHEST_FILE = "DCM00002"
XA_RLE_FILE = "DCM00003"
US_CINE_FILE = "DCM00004"
PALETTE_FILE = "PALETTE_SC.dcm"
XA_SV1_FILE = "XA_JPEG_LOSSLESS_SV1.dcm"
CT_SERIES_DIR = "CT_SERIES"
CT_SERIES_SLICES = 20

#: InstanceNumber of the slice stored in IM0001, IM0002, ... (in that order).
#: PACS exports name files in the order the images *arrived*. Here slices 6
#: and 14 were "re-sent" last, so sorting by file name gives the wrong slice
#: order. A converter must sort by InstanceNumber / ImagePositionPatient.
CT_SERIES_ARRIVAL_ORDER = [i for i in range(1, CT_SERIES_SLICES + 1) if i not in (6, 14)] + [6, 14]

#: Shown by ``--help``: one entry per file written.
FILE_DESCRIPTIONS = [
    (CT_HEAD_FILE, "CT Image Storage, Shepp-Logan head, 512x512 int16 (PixelRepresentation 1), "
                   "RescaleIntercept -1024, window 40/400, padding -2000 outside the scan circle. "
                   "Explicit VR Little Endian."),
    (MR_HEAD_FILE, "MR Image Storage, T1-like head slice, 256x256 uint16 with values above 4095, "
                   "NO WindowCenter/Width (use min-max). Implicit VR Little Endian."),
    (CR_CHEST_FILE, "CR Image Storage, synthetic PA chest, 864x704 (0.5 mm), 12 bits stored, MONOCHROME1 "
                    "(low values = bright), window 2100/3000. Explicit VR Little Endian."),
    (XA_RLE_FILE, "X-Ray Angiographic Image Storage, 30 frames 256x256, 10 bits stored, contrast "
                  "bolus through a vessel tree, FrameTime 66.67 ms, RLE Lossless."),
    (US_CINE_FILE, "Ultrasound Multi-frame Image Storage, 30 frames 240x320 colour Doppler cine, "
                   "YBR_FULL_422, JPEG Baseline (lossy, encoded with Pillow)."),
    (PALETTE_FILE, "Secondary Capture Image Storage, PALETTE COLOR 256x256 perfusion-style map, "
                   "8-bit indices, 16-bit jet palette."),
    (XA_SV1_FILE, "Same pixels as DCM00003 (new SOP Instance UID), JPEG Lossless Process 14 "
                  "SV1. Written only when DCMTK's dcmcjpeg is on PATH."),
    (f"{CT_SERIES_DIR}/IM0001..IM{CT_SERIES_SLICES:04d}",
     f"CT Image Storage, {CT_SERIES_SLICES}-slice 256x256 head series, 5 mm apart; file-name order "
     "is NOT slice order (slices 6 and 14 are IM0019/IM0020)."),
]


#: Namespace for the name-based UUIDs below (itself a name-based UUID).
UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:dicom_converter:sample-data")


def make_uid(*parts: object) -> UID:
    """Return a repeatable UID made from the sample-set name and ``parts``.

    The UID is ``2.25.<UUID as a decimal integer>`` (PS3.5 B.2), with a
    name-based (SHA-1, version 5) UUID, so it needs no organisation root and
    the same inputs always give the same UID.

    Why not pydicom's ``generate_uid(prefix=None, entropy_srcs=...)``?  In
    pydicom 3.0 ``prefix=None`` makes it ignore ``entropy_srcs`` and return a
    random uuid4 UID, so the files would change on every run.
    """
    name = "|".join([SAMPLE_SET_VERSION, *map(str, parts)])
    return UID(f"2.25.{uuid.uuid5(UID_NAMESPACE, name).int}")


IMPLEMENTATION_CLASS_UID = make_uid("implementation class")


def rng_for(image_number: int) -> np.random.Generator:
    """Return the random generator for one image (seeded by SEED and image_number)."""
    return np.random.default_rng([SEED, image_number])


# =============================================================================
# Small numeric helpers (numpy only; no scipy needed)
# =============================================================================

def _box_blur_1d(a: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Moving average of width 2*radius+1 along one axis, repeating edge values."""
    if radius < 1:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (radius + 1, radius)
    csum = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float64)
    n = a.shape[axis]
    upper = np.take(csum, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
    lower = np.take(csum, np.arange(0, n), axis=axis)
    return (upper - lower) / (2 * radius + 1)


def blur(a: np.ndarray, sigma: float, axes: tuple[int, ...] = (-2, -1)) -> np.ndarray:
    """Approximate Gaussian blur: three box filters per axis.

    Cumulative sums are computed in a fixed order, which keeps the result
    stable from machine to machine.  FFT or BLAS code could round
    differently on different CPUs.
    """
    radius = int(round((np.sqrt(4.0 * sigma * sigma + 1.0) - 1.0) / 2.0))
    out = np.asarray(a, dtype=np.float64)
    for axis in axes:
        for _ in range(3):
            out = _box_blur_1d(out, radius, axis)
    return out


def smooth_random_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Random field with fine detail blurred away, scaled to zero mean and unit std."""
    field = blur(rng.standard_normal(shape), sigma)
    return (field - field.mean()) / field.std()


def pixel_grid(rows: int, cols: int, spacing: float, oversample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Return (x, y) of pixel centres in mm, centred on the image.

    x increases to the right and y downwards (row direction).  With
    ``oversample`` = k, each pixel is split into k x k sub-pixels, so the
    caller can average them to get smooth (anti-aliased) edges.
    """
    step = spacing / oversample
    x = (np.arange(cols * oversample) + 0.5) * step - cols * spacing / 2.0
    y = (np.arange(rows * oversample) + 0.5) * step - rows * spacing / 2.0
    return np.meshgrid(x, y)


def downsample(a: np.ndarray, k: int) -> np.ndarray:
    """Average k x k blocks (reverses ``pixel_grid(oversample=k)``)."""
    if k == 1:
        return a
    h, w = a.shape[0] // k, a.shape[1] // k
    return a.reshape(h, k, w, k).mean(axis=(1, 3))


def ellipse_chord(x, y, x0, y0, a, b, phi_deg=0.0, depth=1.0):
    """Projected thickness of an ellipsoid seen face-on (``depth`` at its centre).

    Radiographs add up attenuation along each ray, and a round organ is
    thicker in the middle than at its edge.  Using the chord length instead
    of a flat mask gives soft, realistic edges.
    """
    phi = np.deg2rad(phi_deg)
    xr = (x - x0) * np.cos(phi) + (y - y0) * np.sin(phi)
    yr = -(x - x0) * np.sin(phi) + (y - y0) * np.cos(phi)
    r2 = (xr / a) ** 2 + (yr / b) ** 2
    return depth * np.sqrt(np.clip(1.0 - r2, 0.0, None))


# =============================================================================
# Phantoms: synthetic anatomy
# =============================================================================

#: 3-D Shepp-Logan head phantom (the ellipsoid table usually credited to Kak &
#: Slaney, "Principles of Computerized Tomographic Imaging", ch. 3).
#: Coordinates are in units of the head half-size; +x is the patient's left
#: (image right), +y is anterior (top of the image). We add a scalp layer and
#: use *additive* tissue values per modality instead of the original abstract
#: densities:
#:   name, x0, y0, z0, a, b, c, phi(deg), CT delta (HU), MR T1 delta (a.u.)
HEAD_ELLIPSOIDS = [
    ("scalp",              0.00,  0.000,  0.000, 0.720, 0.950, 0.930,   0,  1040, 900),
    ("skull",              0.00,  0.000,  0.000, 0.690, 0.920, 0.900,   0,   860, -850),
    ("brain",              0.00, -0.0184, 0.000, 0.6624, 0.874, 0.880,  0,  -870, 650),
    ("right ventricle",   -0.22,  0.000, -0.250, 0.410, 0.160, 0.210, 108,   -22, -480),
    ("left ventricle",     0.22,  0.000, -0.250, 0.310, 0.110, 0.220,  72,   -22, -480),
    ("frontal region",     0.00,  0.350, -0.250, 0.210, 0.250, 0.500,   0,     8, -120),
    ("central nodule",     0.00,  0.100, -0.250, 0.046, 0.046, 0.046,   0,    20, 150),
    ("posterior nodule 1", -0.08, -0.650, -0.250, 0.046, 0.023, 0.020,  0,    35, 250),
    ("posterior nodule 2", 0.06, -0.650, -0.250, 0.046, 0.023, 0.020,  90,    35, 250),
    ("high lesion",        0.06, -0.105,  0.625, 0.056, 0.040, 0.100,  90,    25, 100),
    ("high cyst",          0.00,  0.100,  0.625, 0.056, 0.056, 0.100,   0,   -15, -150),
]

#: Size of one phantom unit in mm: the skull is then 138 x 184 mm (about an adult head).
HEAD_UNIT_MM = 100.0


def head_phantom_slice(rows: int, spacing_mm: float, z_mm: float, column: int,
                       background: float, oversample: int = 2) -> np.ndarray:
    """Axial cross-section of the 3-D head phantom at height ``z_mm``.

    ``column`` picks the value table (8 = CT Hounsfield units, 9 = MR T1).
    Each ellipsoid adds its value inside its cut, as in the classic Shepp-Logan
    phantom. The oversampled grid is averaged back down, which mimics partial
    volume at tissue boundaries.
    """
    x, y = pixel_grid(rows, rows, spacing_mm / HEAD_UNIT_MM, oversample)
    y = -y  # image rows go downwards, phantom +y is anterior (top of image)
    z = z_mm / HEAD_UNIT_MM
    img = np.full(x.shape, background, dtype=np.float64)
    for row in HEAD_ELLIPSOIDS:
        _, x0, y0, z0, a, b, c, phi = row[:8]
        dz = (z - z0) / c
        if abs(dz) >= 1.0:
            continue
        shrink = np.sqrt(1.0 - dz * dz)  # ellipse cut of an ellipsoid at height z
        inside = ellipse_chord(x, y, x0, y0, a * shrink, b * shrink, phi) > 0
        img[inside] += row[column]
    return downsample(img, oversample)


def vessel_tree(rng: np.random.Generator, x: float, y: float, angle: float, length: float,
                radius: float, generations: int, subsegments: int = 4, wiggle: float = 0.18) -> list[tuple]:
    """Random branching tree of tapered tubes.

    Returns segments ``(x0, y0, x1, y1, r0, r1, p0, p1)``: end points,
    radii at each end, and path length from the root at each end (``p``; used
    to time the contrast bolus).  At each branch point the main vessel goes
    on almost straight and a thinner side branch leaves at a random side,
    the way coronary or pulmonary arteries branch.  Each branch is made of a
    few slightly bent sub-segments so vessels wind like real arteries.
    """
    segments: list[tuple] = []

    def grow(x, y, angle, length, radius, generation, path):
        step = length / subsegments
        for _ in range(subsegments):
            angle += rng.normal(0.0, wiggle)
            x1, y1 = x + step * np.cos(angle), y + step * np.sin(angle)
            r1 = radius * 0.96
            segments.append((x, y, x1, y1, radius, r1, path, path + step))
            x, y, radius, path = x1, y1, r1, path + step
        if generation > 0:
            side = rng.choice([-1.0, 1.0])
            grow(x, y, angle - side * rng.uniform(0.05, 0.2), length * rng.uniform(0.8, 0.95),
                 radius * 0.9, generation - 1, path)  # main vessel continues
            grow(x, y, angle + side * rng.uniform(0.5, 0.9), length * rng.uniform(0.55, 0.75),
                 radius * rng.uniform(0.55, 0.7), generation - 1, path)  # side branch

    grow(x, y, angle, length, radius, generations, 0.0)
    return segments


def rasterize_tubes(segments: list[tuple], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Draw tubes as (projected thickness, path length) images, in pixel units.

    For each pixel, the thickness is the chord 2*sqrt(r^2 - d^2) through the
    nearest tube.  The path length lets the caller compute when the bolus
    reaches that pixel.
    """
    rows, cols = shape
    chord = np.zeros(shape)
    path = np.full(shape, np.inf)
    for x0, y0, x1, y1, r0, r1, p0, p1 in segments:
        pad = max(r0, r1) + 1.0
        c_lo, c_hi = max(int(min(x0, x1) - pad), 0), min(int(max(x0, x1) + pad) + 1, cols)
        r_lo, r_hi = max(int(min(y0, y1) - pad), 0), min(int(max(y0, y1) + pad) + 1, rows)
        if c_lo >= c_hi or r_lo >= r_hi:
            continue
        yy, xx = np.mgrid[r_lo:r_hi, c_lo:c_hi].astype(np.float64)
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
        d2 = (xx - x0 - t * dx) ** 2 + (yy - y0 - t * dy) ** 2
        r = r0 + (r1 - r0) * t
        c = 2.0 * np.sqrt(np.clip(r * r - d2, 0.0, None))
        sub_chord = chord[r_lo:r_hi, c_lo:c_hi]
        sub_path = path[r_lo:r_hi, c_lo:c_hi]
        better = c > sub_chord
        sub_chord[better] = c[better]
        sub_path[better] = (p0 + t * (p1 - p0))[better]
    return chord, path


def polyline_segments(points: list[tuple[float, float]], radius: float) -> list[tuple]:
    """Turn a list of points into constant-radius tube segments."""
    return [(xa, ya, xb, yb, radius, radius, 0.0, 0.0)
            for (xa, ya), (xb, yb) in zip(points[:-1], points[1:])]


#: 5x7 bitmap of the letter "R", for the lead side marker on the chest film.
LETTER_R = ["11110", "10001", "10001", "11110", "10100", "10010", "10001"]


def chest_radiograph(rng: np.random.Generator, rows: int, cols: int, spacing: float) -> np.ndarray:
    """Synthetic PA chest radiograph as CR plate values (0..4095, high = more exposure).

    Each structure adds water-equivalent thickness (mm): torso, lungs
    (negative: air), heart, aortic knob, spine, ribs, clavicles, lung
    vessels, gastric bubble.  The exposure reaching the plate is then
    converted to plate values with a smooth curve.  In MONOCHROME1 the
    lowest value is displayed white, so bone and mediastinum come out white
    and lungs dark, as on a film.  Image x runs from patient right to
    patient left (row direction "L"), as for a PA view.
    """
    x, y = pixel_grid(rows, cols, spacing)
    y = y + rows * spacing / 2.0  # y = mm from the top edge (simpler to lay out anatomy)

    # Torso: an elliptic cylinder whose width and depth change along y (neck, shoulders, chest).
    half_width = np.interp(y, [0, 40, 75, 110, 200, 330, 440], [55, 62, 150, 172, 168, 160, 150])
    depth = np.interp(y, [0, 60, 120, 330, 440], [110, 150, 210, 220, 240])
    thickness = depth * np.sqrt(np.clip(1.0 - (x / half_width) ** 2, 0.0, None))

    # Lungs: ellipsoids of air, cut off below by the domes of the diaphragm.
    # The right hemidiaphragm (image left) sits higher, because of the liver.
    air = np.zeros_like(x)
    for side, dome_top in ((-1, 285.0), (+1, 300.0)):
        lung = ellipse_chord(x, y, side * 96.0, 215.0, 58.0, 160.0, depth=150.0)
        dome = dome_top + 70.0 * ((np.abs(x) - 70.0) / 75.0) ** 2  # highest at |x| = 70 mm
        lung *= np.clip((dome - y) / 12.0, 0.0, 1.0)  # soft edge over ~12 mm
        air += lung
    # Heart and aortic knob push the lungs aside: take their thickness back out of the air.
    heart = ellipse_chord(x, y, 28.0, 292.0, 88.0, 68.0, -18.0, depth=130.0)
    aorta = ellipse_chord(x, y, 38.0, 158.0, 22.0, 20.0, depth=60.0)
    air = np.clip(air - heart - aorta, 0.0, None)
    gastric_bubble = ellipse_chord(x, y, 70.0, 352.0, 30.0, 16.0, depth=40.0)
    thickness = thickness - 0.8 * air - gastric_bubble  # lung tissue is ~20 % water

    # Lung vessels spread out from the two hila, visible only against air.
    px = 1.0 / spacing
    vessels = np.zeros_like(x)
    for side in (-1, 1):
        # Angles: 0 = towards image right, +pi/2 = down.  Fan out laterally from each hilum.
        for i, angle in enumerate((-np.pi / 2 + side * 0.5, np.pi / 2 - side * 1.45,
                                   np.pi / 2 - side * 0.9, np.pi / 2 - side * 0.3)):
            segs = vessel_tree(rng, cols / 2 + side * 55 * px, (205 + 16 * i) * px, angle,
                               26 * px, 3.0 * px, 6, wiggle=0.1)
            vessels += rasterize_tubes(segs, (rows, cols))[0] * spacing
        vessels += ellipse_chord(x, y, side * 58.0, 232.0, 16.0, 36.0, depth=8.0)  # hilum
    # Weighted up: real vessels also run along the beam and overlap each other.
    thickness += 5.0 * vessels * np.clip(air / 60.0, 0.0, 1.0)

    # Bone: mm of bone count as ~2.5 mm of water.
    bone = np.zeros_like(x)
    spine = 2.0 * np.sqrt(np.clip(22.0 ** 2 - x ** 2, 0.0, None))
    disc = 0.6 + 0.4 * (np.abs(((y - 60.0) % 28.0) - 14.0) < 11.0)  # lower density at the discs
    bone += 0.45 * spine * disc * np.clip((y - 30.0) / 20.0, 0.0, 1.0)  # mostly hidden by mediastinum
    rib_segs = []
    for i in range(10):
        y0 = 78.0 + 24.0 * i
        for side in (-1, 1):
            s = np.linspace(0.0, 1.0, 24)
            post = [(side * (18 + 135 * t), y0 - 14 * np.sin(np.pi * t) + 38 * t * t) for t in s]
            rib_segs += polyline_segments([(u * px + cols / 2, v * px) for u, v in post], 5.0 * px)
            ant = [(side * (153 - 95 * t), y0 + 38 + 55 * t - 10 * np.sin(np.pi * t)) for t in s]
            rib_segs += polyline_segments([(u * px + cols / 2, v * px) for u, v in ant], 3.5 * px)
    for side in (-1, 1):
        t = np.linspace(0.0, 1.0, 20)
        clav = [(side * (22 + 130 * u), 78 - 28 * u + 8 * np.sin(2 * np.pi * u)) for u in t]
        rib_segs += polyline_segments([(u * px + cols / 2, v * px) for u, v in clav], 7.0 * px)
    bone += rasterize_tubes(rib_segs, (rows, cols))[0] * spacing * (thickness > 20.0)
    thickness = thickness + 2.5 * bone

    # Plate response: latitude curve from unexposed (~200) to direct beam (~3600).
    plate = 200.0 + 3400.0 * np.exp(-np.clip(thickness, 0.0, None) / 230.0)

    # Lead "R" side marker (top left = patient right): blocks almost all X-rays.
    cell = int(round(2.0 * px))
    r0, c0 = int(30 * px), int(20 * px)
    for i, line in enumerate(LETTER_R):
        for j, bit in enumerate(line):
            if bit == "1":
                plate[r0 + i * cell:r0 + (i + 1) * cell, c0 + j * cell:c0 + (j + 1) * cell] = 260.0

    plate = blur(plate, 1.0) + rng.normal(0.0, 14.0, plate.shape)  # detector blur, quantum noise
    # Collimator: outside the light field the plate is unexposed (white in MONOCHROME1).
    collimated = (np.abs(x) > 165.0) | (y < 12.0) | (y > rows * spacing - 12.0)
    plate[collimated] = 90.0 + rng.normal(0.0, 6.0, int(collimated.sum()))
    return np.clip(np.round(plate), 0, 4095).astype(np.uint16)


# =============================================================================
# DICOM building blocks, one function per PS3.3 module
# =============================================================================

@dataclass(frozen=True)
class Study:
    """The parts of the General Study Module (PS3.3 C.7.2.1) that differ per study."""
    key: str
    description: str
    time: str
    accession: str
    study_id: str

    @property
    def uid(self) -> UID:
        return make_uid("study", self.key)


STUDY_CT = Study("ct", "CT HEAD W/O CONTRAST", "081500", "ACC0001", "1001")
STUDY_MR = Study("mr", "MR BRAIN", "091000", "ACC0002", "1002")
STUDY_CR = Study("cr", "XR CHEST PA", "100500", "ACC0003", "1003")
STUDY_XA = Study("xa", "CORONARY ANGIOGRAPHY", "110000", "ACC0004", "1004")
STUDY_US = Study("us", "US CAROTID DOPPLER", "113000", "ACC0005", "1005")
STUDY_SC = Study("sc", "CT PERFUSION MAP", "120000", "ACC0006", "1006")


def new_dataset(sop_class: str, sop_instance: str, transfer_syntax: str) -> Dataset:
    """Empty dataset with File Meta Information (PS3.10 7.1) and SOP Common (PS3.3 C.12.1).

    ImplementationClassUID and ImplementationVersionName are set here rather
    than left to pydicom's defaults, so the bytes don't change with the
    pydicom version.  pydicom adds the group length and version itself.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME

    ds = Dataset()
    ds.file_meta = meta
    # SOP Common Module (PS3.3 C.12.1).
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.InstanceCreationDate = INSTANCE_CREATION_DATE
    ds.InstanceCreationTime = INSTANCE_CREATION_TIME
    return ds


def add_patient_and_study(ds: Dataset, study: Study) -> None:
    """Patient Module (C.7.1.1) and General Study Module (C.7.2.1).

    The Type 2 attributes (birth date, sex, referring physician) must be
    present but may be empty.  We give them plausible values where that
    costs nothing.
    """
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study.uid
    ds.StudyDate = STUDY_DATE
    ds.StudyTime = study.time
    ds.ReferringPhysicianName = ""
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession
    ds.StudyDescription = study.description


def add_series_and_equipment(ds: Dataset, modality: str, series_key: str, series_number: int,
                             description: str, model: str, body_part: str, laterality: str = "") -> None:
    """General Series Module (C.7.3.1) and General Equipment Module (C.7.5.1).

    Laterality is Type 2C: written only for a paired body part (e.g. one
    carotid artery).  For unpaired parts (head, chest, heart) it must be
    absent, not empty.
    """
    ds.Modality = modality
    ds.BodyPartExamined = body_part
    if laterality:
        ds.Laterality = laterality
    ds.SeriesInstanceUID = make_uid("series", series_key)
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.SeriesDate = STUDY_DATE
    ds.Manufacturer = "SYNTHETIC"
    ds.ManufacturerModelName = model
    ds.InstitutionName = "Sample Hospital"
    ds.StationName = "PHANTOM01"
    ds.SoftwareVersions = "create_sample_dicom.py 1"


def add_general_image(ds: Dataset, instance_number: int, image_type: list[str], time: str,
                      patient_orientation: list[str] | str | None = None) -> None:
    """General Image Module (C.7.6.1).

    PatientOrientation is Type 2C: it must be present (it may be empty)
    when there is no Image Plane Module, i.e. for projection images (CR, XA,
    US, SC).  Pass ``None`` for cross-sectional images, which have
    ImageOrientationPatient instead.
    """
    ds.InstanceNumber = instance_number
    ds.ImageType = image_type
    ds.ContentDate = STUDY_DATE
    ds.ContentTime = time
    ds.AcquisitionDate = STUDY_DATE
    ds.AcquisitionTime = time
    if patient_orientation is not None:
        ds.PatientOrientation = patient_orientation


def add_image_plane(ds: Dataset, spacing: float, rows: int, z_mm: float, thickness: float) -> None:
    """Frame of Reference (C.7.4.1) and Image Plane (C.7.6.2) for an axial slice.

    Patient-based coordinates (LPS): going right along a row moves to the
    patient's left (+x), going down a column moves posterior (+y).  That is
    the usual radiological view of a supine patient, seen from the feet.
    ImagePositionPatient is the centre of the top-left pixel.
    """
    ds.FrameOfReferenceUID = make_uid("frame of reference", ds.StudyInstanceUID)
    ds.PositionReferenceIndicator = ""
    corner = -rows * spacing / 2.0 + spacing / 2.0
    ds.PixelSpacing = [spacing, spacing]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [corner, corner, z_mm]
    ds.SliceLocation = z_mm
    ds.SliceThickness = thickness


def add_image_pixel(ds: Dataset, pixels: np.ndarray, photometric: str, bits_stored: int) -> None:
    """Image Pixel Module (C.7.6.3) for native (uncompressed) pixel data.

    ``pixels`` has shape (rows, cols), (frames, rows, cols) or
    (frames, rows, cols, 3).  The dtype sets BitsAllocated and
    PixelRepresentation (int16 means PixelRepresentation 1, two's
    complement).  The data is written little endian, which is what every
    transfer syntax used here expects.
    """
    colour = photometric in ("RGB", "YBR_FULL", "YBR_FULL_422")
    frames_shape = pixels.shape[:-1] if colour else pixels.shape
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = 0  # colour-by-pixel: R1 G1 B1 R2 G2 B2 ...
    ds.Rows, ds.Columns = frames_shape[-2:]
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
    ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"


def add_multiframe_cine(ds: Dataset, n_frames: int, frame_time_ms: str, cine_rate: int) -> None:
    """Multi-frame Module (C.7.6.6) and Cine Module (C.7.6.5).

    FrameIncrementPointer tells a reader which attribute sets the time
    between frames.  Here it points to FrameTime (0018,1063), so FrameTime is
    required (Type 1C).
    """
    ds.NumberOfFrames = n_frames
    ds.FrameIncrementPointer = Tag(0x0018, 0x1063)
    ds.FrameTime = frame_time_ms
    ds.CineRate = cine_rate
    ds.RecommendedDisplayFrameRate = cine_rate
    ds.StartTrim = 1
    ds.StopTrim = n_frames


def add_encapsulated_pixel_data(ds: Dataset, frames: list[bytes], transfer_syntax: str) -> None:
    """Store already-compressed frames, one fragment per frame, with an offset table (PS3.5 A.4)."""
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.PixelData = encapsulate(frames, has_bot=True)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def save(ds: Dataset, path: Path) -> Path:
    """Write a Part 10 file: 128-byte preamble, 'DICM', File Meta, then the dataset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


# =============================================================================
# CT (CT Image IOD, PS3.3 A.3)
# =============================================================================

CT_PADDING_VALUE = -2000  # stored value outside the reconstruction circle (GE-style)


def ct_slice_pixels(rng: np.random.Generator, rows: int, spacing: float, z_mm: float) -> np.ndarray:
    """Head phantom in HU, stored as int16 with intercept -1024 (stored = HU + 1024).

    Air is -1000 HU.  Pixels outside the circular field of view are set to
    the padding value, as scanners do.  This is also why the data is signed:
    stored values go below zero.
    """
    hu = head_phantom_slice(rows, spacing, z_mm, column=8, background=-1000.0)
    # A carbon-fibre head cradle behind the occiput (bottom of the image, +y is
    # posterior here), a few mm outside the scalp.
    x, y = pixel_grid(rows, rows, spacing)
    cradle = np.hypot(x / 80.0, y / 103.0)
    hu[(cradle > 1.0) & (cradle < 1.035) & (y > 35.0)] = 250.0
    hu = blur(hu, 0.6) + rng.normal(0.0, 5.0, hu.shape)  # reconstruction kernel + quantum noise
    stored = np.round(hu + 1024.0)
    stored[np.hypot(x, y) > rows * spacing / 2.0] = CT_PADDING_VALUE
    return np.clip(stored, -32768, 32767).astype(np.int16)


def ct_dataset(pixels: np.ndarray, series_key: str, series_number: int, description: str,
               instance_number: int, spacing: float, z_mm: float, thickness: float) -> Dataset:
    """CT Image IOD: Patient, Study, Series, Frame of Reference, Equipment, Image, CT Image (C.8.2.1)."""
    sop_uid = make_uid("ct", series_key, instance_number)
    ds = new_dataset(CTImageStorage, sop_uid, ExplicitVRLittleEndian)
    add_patient_and_study(ds, STUDY_CT)
    add_series_and_equipment(ds, "CT", series_key, series_number, description, "Phantom CT 64", "HEAD")
    ds.PatientPosition = "HFS"  # Type 2C for CT/MR: head first, supine
    add_general_image(ds, instance_number, ["ORIGINAL", "PRIMARY", "AXIAL"], f"{81600 + instance_number:06d}")
    add_image_plane(ds, spacing, pixels.shape[0], z_mm, thickness)
    add_image_pixel(ds, pixels, "MONOCHROME2", 16)
    # CT Image Module (C.8.2.1).
    ds.KVP = 120
    ds.AcquisitionNumber = 1
    ds.ReconstructionDiameter = round(pixels.shape[0] * spacing, 3)
    ds.GantryDetectorTilt = 0
    ds.ConvolutionKernel = "H30s"
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    # VOI LUT Module (C.11.2): a brain window.
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.WindowCenterWidthExplanation = "BRAIN"
    # Pixel Padding Value (C.7.5.1, Type 3) must use the same VR as the
    # stored pixels (SS here). Set it explicitly so pydicom doesn't have to
    # guess between US and SS.
    ds.add(DataElement(0x00280120, "SS", CT_PADDING_VALUE))
    return ds


def write_ct_head(out: Path) -> list[Path]:
    """DCM00000: one 512x512 CT slice through the ventricles (z = -25 mm)."""
    spacing = 220.0 / 512  # 220 mm field of view, typical for a head
    pixels = ct_slice_pixels(rng_for(1), 512, spacing, -25.0)
    ds = ct_dataset(pixels, "ct head single", 2, "HEAD 512 AXIAL", 1, spacing, -25.0, 5.0)
    return [save(ds, out / CT_HEAD_FILE)]


def write_ct_series(out: Path) -> list[Path]:
    """CT_SERIES/IMxxxx: 20 contiguous 256x256 slices, 5 mm apart (z = -35 .. +60 mm).

    InstanceNumber grows with z, but the file names follow
    CT_SERIES_ARRIVAL_ORDER, so the name order differs from the slice order.
    """
    spacing = 220.0 / 256
    written = []
    for file_index, instance in enumerate(CT_SERIES_ARRIVAL_ORDER, start=1):
        z_mm = -35.0 + 5.0 * (instance - 1)
        # One generator per slice, so a slice's noise doesn't depend on file order.
        pixels = ct_slice_pixels(np.random.default_rng([SEED, 2, instance]), 256, spacing, z_mm)
        ds = ct_dataset(pixels, "ct head series", 3, "HEAD 5mm AXIAL", instance, spacing, z_mm, 5.0)
        written.append(save(ds, out / CT_SERIES_DIR / f"IM{file_index:04d}"))
    return written


# =============================================================================
# MR (MR Image IOD, PS3.3 A.4)
# =============================================================================

def write_mr_head(out: Path) -> list[Path]:
    """DCM00001: T1-like 256x256 head slice, uint16, no window, Implicit VR Little Endian.

    MR values have no physical unit and no standard range, and many MR
    files carry no window at all, so a viewer must fall back to min-max.
    The values go up to about 8000 (beyond 12 bits), which catches readers
    that assume 12 bits.  Coil shading and Rician noise (magnitude of complex
    Gaussian noise, so the background is not zero) make it look like a real
    magnitude image.  Implicit VR is still common on older CDs.
    """
    rng = rng_for(3)
    rows, spacing, z_mm = 256, 240.0 / 256, -25.0
    signal = head_phantom_slice(rows, spacing, z_mm, column=9, background=0.0)
    signal *= 1.0 + 0.06 * smooth_random_field(rng, signal.shape, 3.0) * (signal > 100)  # tissue texture
    x, y = pixel_grid(rows, rows, spacing)
    coil = 1.0 + 0.35 * np.exp(-((x + 60.0) ** 2 + (y + 70.0) ** 2) / (2 * 90.0 ** 2))  # receive coil bias
    signal = blur(signal * coil, 0.5) * 6.0
    noise_sigma = 60.0
    magnitude = np.hypot(signal + rng.normal(0.0, noise_sigma, signal.shape),
                         rng.normal(0.0, noise_sigma, signal.shape))
    pixels = np.clip(np.round(magnitude), 0, 65535).astype(np.uint16)

    ds = new_dataset(MRImageStorage, make_uid("mr", 1), ImplicitVRLittleEndian)
    add_patient_and_study(ds, STUDY_MR)
    add_series_and_equipment(ds, "MR", "mr t1", 4, "t1_se_tra", "Phantom MR 1.5T", "BRAIN")
    ds.PatientPosition = "HFS"
    add_general_image(ds, 1, ["ORIGINAL", "PRIMARY", "OTHER"], "091500")
    add_image_plane(ds, spacing, rows, z_mm, 5.0)
    add_image_pixel(ds, pixels, "MONOCHROME2", 16)
    # MR Image Module (C.8.3.1): Type 1 and 2 acquisition descriptors.
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = 500
    ds.EchoTime = 15
    ds.EchoTrainLength = 1
    ds.MagneticFieldStrength = 1.5
    ds.ImagingFrequency = 63.86
    ds.ImagedNucleus = "1H"
    ds.SpacingBetweenSlices = 6
    ds.AcquisitionNumber = 1
    # Deliberately no WindowCenter/WindowWidth and no Rescale*: min-max is the only option.
    return [save(ds, out / MR_HEAD_FILE)]


# =============================================================================
# CR (Computed Radiography Image IOD, PS3.3 A.2)
# =============================================================================

CR_WINDOW = (2100, 3000)  # centre, width in stored values (covers lungs to mediastinum)


def write_cr_chest(out: Path) -> list[Path]:
    """DCM00002: PA chest, 864x704 at 0.5 mm, 12 bits stored, MONOCHROME1, with a window.

    In MONOCHROME1 the lowest value is displayed white, the reverse of
    MONOCHROME2.  Many CR systems store images this way.  A converter that
    ignores PhotometricInterpretation will output a negative: black bones,
    white lungs.
    """
    rows, cols, spacing = 864, 704, 0.5  # 432 x 352 mm: a 14 x 17 inch plate
    pixels = chest_radiograph(rng_for(4), rows, cols, spacing)
    ds = new_dataset(ComputedRadiographyImageStorage, make_uid("cr", 1), ExplicitVRLittleEndian)
    add_patient_and_study(ds, STUDY_CR)
    add_series_and_equipment(ds, "CR", "cr chest", 1, "CHEST PA", "Phantom CR Reader", "CHEST")
    ds.ViewPosition = "PA"  # CR Series Module (C.8.1.1), with BodyPartExamined
    # PA view shown as if facing the patient: rows run to the patient's Left, columns to the Feet.
    add_general_image(ds, 1, ["ORIGINAL", "PRIMARY"], "100600", ["L", "F"])
    add_image_pixel(ds, pixels, "MONOCHROME1", 12)
    # CR Image Module (C.8.1.2), Type 3 attributes a real reader would write.
    ds.KVP = 120
    ds.ExposureTime = 12
    ds.XRayTubeCurrent = 250
    ds.DistanceSourceToDetector = 1800
    ds.PlateType = "ST-VI"
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelSpacing = [spacing, spacing]
    ds.WindowCenter, ds.WindowWidth = CR_WINDOW
    ds.WindowCenterWidthExplanation = "CHEST"
    return [save(ds, out / CR_CHEST_FILE)]


# =============================================================================
# XA (X-Ray Angiographic Image IOD, PS3.3 A.14)
# =============================================================================

XA_FRAMES, XA_SIZE, XA_FPS = 30, 256, 15
XA_FRAME_TIME = "66.67"  # ms, 1000 / 15 fps
XA_SHUTTER_RADIUS = 124  # pixels, circular image-intensifier field


def xa_frames(rng: np.random.Generator) -> np.ndarray:
    """Coronary-style angiography run: uint16 frames, 10 bits used, shape (30, 256, 256).

    Intensity follows the X-ray exposure (PixelIntensityRelationship LIN),
    so iodine-filled vessels are dark.  A 1.1 s injection starts at 0.2 s.
    Each vessel point fills when the bolus front has travelled its path
    length and empties again at the same delay after the injection stops,
    so the contrast visibly runs down the tree and then washes out.  The
    first frames have no contrast, as real runs do (they serve as masks).
    Outside the circular collimator everything is 0, as on
    image-intensifier runs (this also gives RLE long runs to compress).
    """
    n = XA_SIZE
    segments = vessel_tree(rng, 74.0, 50.0, np.deg2rad(58.0), 46.0, 4.6, generations=6)
    chord, path = rasterize_tubes(segments, (n, n))
    # Judkins-style catheter: up from the aorta at the bottom, hooking into the ostium.
    catheter = polyline_segments(
        [(30, 262), (28, 200), (30, 140), (36, 96), (46, 64), (60, 50), (74, 50)], 1.6)
    catheter_chord = rasterize_tubes(catheter, (n, n))[0]

    # Static anatomy (-log transmission): smooth soft tissue variation, the
    # diaphragm / liver at the bottom left and the spine on the right.
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    tissue = 0.07 * smooth_random_field(rng, (n, n), 16.0)
    tissue += 0.45 * np.clip((yy - 0.45 * xx - 170.0) / 30.0, 0.0, 1.0)
    tissue += 0.30 * np.exp(-((xx - 205.0) / 20.0) ** 2)
    vignette = 1.0 - 0.30 * ((xx - n / 2) ** 2 + (yy - n / 2) ** 2) / (n / 2) ** 2
    shutter = np.hypot(xx - (n - 1) / 2, yy - (n - 1) / 2) > XA_SHUTTER_RADIUS

    velocity = 300.0  # px/s, speed of the bolus front along the tree
    injection_start, injection_length = 0.2, 1.1  # s
    delay = path / velocity
    frames = np.empty((XA_FRAMES, n, n), dtype=np.uint16)
    for k in range(XA_FRAMES):
        t = k / XA_FPS - injection_start - delay
        # Smooth on/off steps (logistic) for arrival and wash-out at each point.
        concentration = 1.0 / (1.0 + np.exp(-t / 0.05)) / (1.0 + np.exp((t - injection_length) / 0.12))
        opacity = 0.22 * chord * concentration + 0.55 * catheter_chord
        exposure = 760.0 * vignette * np.exp(-tissue - blur(opacity, 0.7))
        # Quantum noise grows with sqrt(signal); recursive filtering on real
        # systems keeps it at a few grey levels.
        noisy = exposure + rng.normal(0.0, 1.0, exposure.shape) * np.sqrt(exposure) * 0.12
        frame = np.clip(np.round(noisy), 1, 1023)
        frame[shutter] = 0
        frames[k] = frame
    return frames


def xa_dataset(frames: np.ndarray, instance_number: int) -> Dataset:
    """X-Ray Angiographic IOD with X-Ray Image (C.8.7.1), X-Ray Acquisition (C.8.7.2),
    XA Positioner (C.8.7.5), Cine, Multi-frame, Contrast/Bolus (C.7.6.4) and
    Display Shutter (C.7.6.11).  The pixel data is left uncompressed; the
    caller compresses it.
    """
    ds = new_dataset(XRayAngiographicImageStorage, make_uid("xa", instance_number), ExplicitVRLittleEndian)
    add_patient_and_study(ds, STUDY_XA)
    add_series_and_equipment(ds, "XA", "xa lca", 1, "LCA RAO 30 CRAN 20", "Phantom Cath Lab", "HEART")
    add_general_image(ds, instance_number, ["ORIGINAL", "PRIMARY", "SINGLE PLANE"], "110500", "")
    add_image_pixel(ds, frames, "MONOCHROME2", 10)
    add_multiframe_cine(ds, frames.shape[0], XA_FRAME_TIME, XA_FPS)
    ds.PixelIntensityRelationship = "LIN"
    ds.RadiationSetting = "GR"
    ds.KVP = 80
    ds.XRayTubeCurrent = 600
    ds.ExposureTime = 8
    ds.IntensifierSize = 230
    ds.FieldOfViewShape = "ROUND"
    ds.ImagerPixelSpacing = [0.3, 0.3]
    ds.PositionerMotion = "STATIC"
    ds.PositionerPrimaryAngle = -30  # RAO 30
    ds.PositionerSecondaryAngle = 20  # cranial 20
    ds.DistanceSourceToDetector = 1000
    ds.DistanceSourceToPatient = 750
    ds.ContrastBolusAgent = "IOPAMIDOL 370"
    ds.ShutterShape = "CIRCULAR"
    ds.CenterOfCircularShutter = [XA_SIZE // 2, XA_SIZE // 2]
    ds.RadiusOfCircularShutter = XA_SHUTTER_RADIUS
    ds.WindowCenter = 512
    ds.WindowWidth = 1024
    return ds


def write_xa(out: Path) -> list[Path]:
    """DCM00003 (RLE Lossless) and, with DCMTK, XA_JPEG_LOSSLESS_SV1.dcm (JPEG Lossless SV1).

    Both hold the same pixels, so a test can check that the two lossless
    decoders give identical arrays.  The copy gets its own SOP Instance UID
    and InstanceNumber 2, because two files with one UID would clash in a
    PACS or a DICOMDIR.  dcmcjpeg also writes its own ImplementationClassUID
    and a DerivationDescription, as real DCMTK-compressed files have.
    """
    frames = xa_frames(rng_for(5))
    written = []

    ds = xa_dataset(frames, 1)
    # pydicom's own RLE encoder (pure Python) is always available, and its
    # output does not depend on which optional plugins are installed.
    ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    written.append(save(ds, out / XA_RLE_FILE))

    dcmcjpeg = shutil.which("dcmcjpeg")
    if dcmcjpeg is None:
        print(f"note: dcmcjpeg not found, {XA_SV1_FILE} not (re)written", file=sys.stderr)
        return written
    with tempfile.TemporaryDirectory() as tmp:
        native = save(xa_dataset(frames, 2), Path(tmp) / "xa_native.dcm")
        target = out / XA_SV1_FILE
        # +e1: JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14,
        #      Selection Value 1), transfer syntax 1.2.840.10008.1.2.4.70.
        # +un: keep our SOP Instance UID (never generate a random one), so the
        #      output is repeatable.
        subprocess.run([dcmcjpeg, "+e1", "+un", str(native), str(target)], check=True)
    written.append(target)
    return written


# =============================================================================
# US (Ultrasound Multi-frame Image IOD, PS3.3 A.7)
# =============================================================================

US_FRAMES, US_ROWS, US_COLS, US_FPS = 30, 240, 320, 30
US_FRAME_TIME = "33.33"  # ms
US_JPEG_QUALITY = 85


def doppler_colour(v: np.ndarray) -> np.ndarray:
    """Map velocity/Nyquist in [-1, 1] to RGB: red/yellow towards the probe, blue/cyan away."""
    a = np.clip(np.abs(v), 0.0, 1.0)
    rgb = np.zeros(v.shape + (3,))
    main = 90.0 + 165.0 * np.clip(a / 0.7, 0.0, 1.0)
    highlight = 255.0 * np.clip((a - 0.7) / 0.3, 0.0, 1.0)
    towards = v > 0
    rgb[..., 0] = np.where(towards, main, highlight * 0.3)
    rgb[..., 1] = highlight * np.where(towards, 1.0, 0.8)
    rgb[..., 2] = np.where(towards, 0.0, main)
    return rgb


def us_frames(rng: np.random.Generator) -> np.ndarray:
    """Carotid colour Doppler cine from a sector probe: uint8 RGB, shape (30, 240, 320, 3).

    B-mode: speckle (complex Gaussian noise blurred by an anisotropic
    point-spread function, then envelope-detected) multiplied by a tissue
    echogenicity map (skin, fat, muscle fibres, vessel wall, dark lumen),
    then log-compressed to 8 bits.  Colour: parabolic flow in the lumen,
    pulsing with a carotid waveform (72 bpm), projected onto each beam
    direction.  With a sector probe a horizontal vessel therefore shows red
    on one side of the image and blue on the other.  Annotations: the colour
    box outline, a colour bar and depth marks, burned into the pixels as
    scanners do.
    """
    rows, cols = US_ROWS, US_COLS
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    apex_x, apex_y = cols / 2.0, -30.0
    r = np.hypot(xx - apex_x, yy - apex_y)
    theta = np.arctan2(xx - apex_x, yy - apex_y)  # 0 = straight down
    sector = (np.abs(theta) < np.deg2rad(38.0)) & (r > 40.0) & (r < 268.0)

    # Tissue echogenicity (linear amplitude) in image coordinates.
    echo = np.full((rows, cols), 0.30)
    echo += 1.6 * np.exp(-((yy - 14.0) / 2.5) ** 2)  # skin / gel interface
    echo -= 0.15 * ((yy > 20) & (yy < 45))  # subcutaneous fat, darker
    muscle = (yy > 45) & (yy < 95)
    echo += muscle * (0.10 + 0.5 * np.sin(yy / 2.3 + 0.04 * xx) ** 8)  # muscle fibre streaks
    echo += 0.6 * np.exp(-((yy - 96.0) / 3.0) ** 2)  # fascia
    echo *= np.exp(0.45 * smooth_random_field(rng, (rows, cols), 8.0))
    slope = 0.30  # the artery dives by ~17 degrees to the right: gives a usable Doppler angle
    vessel_y = 140.0 + slope * (xx - cols / 2)
    dist = np.abs(yy - vessel_y) / np.sqrt(1.0 + slope ** 2)
    echo *= np.exp(-np.clip(yy - 20.0, 0.0, None) / 500.0)  # residual depth attenuation after TGC
    echo = np.clip(echo, 0.05, None)

    # Speckle: one static complex field (the probe does not move), so tissue
    # speckle is stable from frame to frame the way it is on a real scanner.
    field = rng.standard_normal((rows, cols)) + 1j * rng.standard_normal((rows, cols))
    psf_axial, psf_lateral = 1.0, 2.0  # pixels; lateral resolution is worse than axial
    speckle = np.abs(blur(blur(field.real, psf_axial, (0,)), psf_lateral, (1,))
                     + 1j * blur(blur(field.imag, psf_axial, (0,)), psf_lateral, (1,)))
    speckle /= np.sqrt(np.mean(speckle ** 2))

    flow_dir = np.array([-1.0, -slope]) / np.hypot(1.0, slope)  # to the left, i.e. towards the head
    beam_x, beam_y = np.sin(theta), np.cos(theta)
    cos_beam = -(flow_dir[0] * beam_x + flow_dir[1] * beam_y)  # > 0: towards the probe
    box = (np.abs(theta + np.deg2rad(2.0)) < np.deg2rad(20.0)) & (r > 120.0) & (r < 215.0)
    box_edge = box & ~(np.roll(box, 1, 0) & np.roll(box, -1, 0) & np.roll(box, 1, 1) & np.roll(box, -1, 1))

    # Overlays that stay the same in every frame.
    overlay = np.zeros((rows, cols, 3))
    overlay_mask = np.zeros((rows, cols), dtype=bool)
    bar_v = np.linspace(1.0, -1.0, 80)[:, None] * np.ones((1, 8))
    overlay[20:100, 8:16] = doppler_colour(bar_v)
    overlay_mask[20:100, 8:16] = True
    for depth_px in range(0, rows, 40):  # one mark per cm (~0.25 mm per pixel)
        overlay[depth_px:depth_px + 2, cols - 12:cols - 6] = 200.0
        overlay_mask[depth_px:depth_px + 2, cols - 12:cols - 6] = True

    frames = np.empty((US_FRAMES, rows, cols, 3), dtype=np.uint8)
    period = 60.0 / 72.0
    for k in range(US_FRAMES):
        phase = (k / US_FPS) % period / period
        # Carotid waveform: sharp systolic peak, dicrotic notch bump, diastolic flow.
        pulse = (0.25 + 0.75 * np.exp(-((phase - 0.15) / 0.07) ** 2)
                 + 0.12 * np.exp(-((phase - 0.38) / 0.05) ** 2))
        lumen_radius = 16.0 * (1.0 + 0.05 * pulse)  # ~8 mm artery, wider in systole
        wall = np.exp(-((dist - lumen_radius - 2.0) / 1.8) ** 2)
        frame_echo = np.where(dist < lumen_radius, 0.012, echo) + 1.4 * wall
        # Blood is a weak scatterer whose speckle changes from frame to frame.
        blood_speckle = np.abs(rng.standard_normal((rows, cols)) + 1j * rng.standard_normal((rows, cols)))
        amp = np.where(dist < lumen_radius, blood_speckle * 0.7, speckle) * frame_echo
        # Mild speckle reduction (all modern scanners do some), then log
        # compression into a 55 dB display range.
        db = 20.0 * np.log10(0.5 * (amp + blur(amp, 1.0)) + 1e-6)
        gray = np.clip((db + 40.0) / 55.0, 0.0, 1.0) ** 1.3 * 255.0
        gray[~sector] = 0.0

        velocity = 1.4 * pulse * np.clip(1.0 - (dist / lumen_radius) ** 2, 0.0, None)  # / Nyquist
        doppler = velocity * cos_beam
        show_colour = box & (dist < lumen_radius) & (np.abs(doppler) > 0.06)
        rgb = np.repeat(gray[..., None], 3, axis=2)
        rgb[show_colour] = doppler_colour(doppler[show_colour])
        rgb[box_edge] = 180.0
        rgb[overlay_mask] = overlay[overlay_mask]
        frames[k] = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    return frames


def encode_jpeg_baseline_422(frame: np.ndarray) -> bytes:
    """Encode one RGB frame as JPEG baseline, YCbCr 4:2:2 (DICOM YBR_FULL_422).

    Pillow converts RGB to full-range YCbCr and with subsampling=1 halves the
    chroma horizontally (4:2:2), which is exactly the PS3.5 8.2.1 combination
    for Photometric Interpretation YBR_FULL_422 with JPEG Baseline.
    """
    buf = io.BytesIO()
    Image.fromarray(frame, "RGB").save(buf, format="JPEG", quality=US_JPEG_QUALITY,
                                       subsampling=1, optimize=False)
    return buf.getvalue()


def write_us(out: Path) -> list[Path]:
    """DCM00004: 30-frame colour Doppler cine, JPEG Baseline (1.2.840.10008.1.2.4.50), YBR_FULL_422."""
    frames = us_frames(rng_for(6))
    ds = new_dataset(UltrasoundMultiFrameImageStorage, make_uid("us", 1), JPEGBaseline8Bit)
    add_patient_and_study(ds, STUDY_US)
    add_series_and_equipment(ds, "US", "us carotid", 1, "CAROTID RT COLOR", "Phantom US 5000",
                             "CAROTID", "R")
    # US Image Module (C.8.5.6): ImageType value 3 = exam type, value 4 = modes
    # bitmap (0001 2D + 0010 colour Doppler).
    add_general_image(ds, 1, ["DERIVED", "PRIMARY", "VASCULAR", "0011"], "113200", "")
    # Image Pixel: describe the *compressed* pixels (YBR_FULL_422), as PS3.5 8.2.1 requires.
    add_image_pixel(ds, frames, "YBR_FULL_422", 8)
    add_multiframe_cine(ds, frames.shape[0], US_FRAME_TIME, US_FPS)
    jpeg_frames = [encode_jpeg_baseline_422(f) for f in frames]
    add_encapsulated_pixel_data(ds, jpeg_frames, JPEGBaseline8Bit)
    ds.LossyImageCompression = "01"  # Type 1C in the US Image Module once lossy
    ratio = frames.nbytes / sum(len(f) for f in jpeg_frames)
    ds.LossyImageCompressionRatio = f"{ratio:.2f}"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.TransducerData = ["C5-1", "", ""]
    ds.ProcessingFunction = "CAROTID"
    ds.HeartRate = 72
    return [save(ds, out / US_CINE_FILE)]


# =============================================================================
# PALETTE COLOR (Secondary Capture Image IOD, PS3.3 A.8)
# =============================================================================

def jet_palette(entries: int = 256) -> np.ndarray:
    """Jet colour map as uint16 (entries, 3), 0..65535; entry 0 is black (background)."""
    v = np.linspace(0.0, 1.0, entries)
    rgb = np.stack([np.clip(1.5 - np.abs(4.0 * v - k), 0.0, 1.0) for k in (3.0, 2.0, 1.0)], axis=1)
    rgb[0] = 0.0
    return np.round(rgb * 65535.0).astype(np.uint16)


def write_palette(out: Path) -> list[Path]:
    """PALETTE_SC.dcm: 8-bit indices through a 16-bit jet palette (Palette Color LUT, C.7.9).

    The image is a perfusion-style map: a smooth field inside the head
    phantom's brain (cortex high, ventricles low, one under-perfused
    territory), plus a colour bar showing the whole palette.  Index 0
    (black) is the background.  A converter has to apply the LUT: shown
    directly, the indices look like a plain greyscale image.
    """
    rng = rng_for(7)
    rows, spacing = 256, 240.0 / 256
    ct = head_phantom_slice(rows, spacing, -25.0, column=8, background=-1000.0)
    x, y = pixel_grid(rows, rows, spacing)
    _, bx, by, bz, ba, bb, bc = HEAD_ELLIPSOIDS[2][:7]  # the brain ellipsoid
    shrink = np.sqrt(1.0 - ((-0.25 - bz) / bc) ** 2)
    brain = ellipse_chord(x / HEAD_UNIT_MM, -y / HEAD_UNIT_MM, bx, by, ba * shrink, bb * shrink) > 0
    rim = np.clip(blur(brain.astype(float), 6.0), 0.0, 1.0)
    field = 0.35 + 0.55 * (1.0 - rim) * 2.0 + 0.08 * smooth_random_field(rng, (rows, rows), 5.0)
    field = blur(field, 2.0)
    field[ct < 20] *= 0.3  # CSF has no perfusion
    territory = np.exp(-(((x - 45.0) / 28.0) ** 2 + ((y + 10.0) / 38.0) ** 2))
    field *= 1.0 - 0.65 * territory  # right MCA-like deficit
    field = np.clip(field, 0.0, 1.0)
    indices = np.where(brain, 1 + np.round(field * 254.0), 0).astype(np.uint8)
    indices[40:216, 238:248] = np.linspace(255, 1, 176).round().astype(np.uint8)[:, None]

    ds = new_dataset(SecondaryCaptureImageStorage, make_uid("sc", 1), ExplicitVRLittleEndian)
    add_patient_and_study(ds, STUDY_SC)
    add_series_and_equipment(ds, "OT", "sc perfusion", 100, "CBF MAP (synthetic)", "Phantom Workstation",
                             "HEAD")
    ds.ConversionType = "WSD"  # SC Equipment Module (C.8.6.1): workstation
    add_general_image(ds, 1, ["DERIVED", "SECONDARY"], "120500", "")
    add_image_pixel(ds, indices, "PALETTE COLOR", 8)
    lut = jet_palette(256)
    # Descriptor: 256 entries, first stored value mapped = 0, 16 bits per entry.
    # VR is US because PixelRepresentation is 0.
    for colour, (desc_tag, data_tag) in enumerate(((0x00281101, 0x00281201),
                                                    (0x00281102, 0x00281202),
                                                    (0x00281103, 0x00281203))):
        ds.add(DataElement(desc_tag, "US", [256, 0, 16]))
        ds.add(DataElement(data_tag, "OW", lut[:, colour].astype("<u2").tobytes()))
    return [save(ds, out / PALETTE_FILE)]


# =============================================================================
# Command line
# =============================================================================

WRITERS = [write_ct_head, write_mr_head, write_cr_chest, write_xa, write_us, write_palette, write_ct_series]


def build_parser() -> argparse.ArgumentParser:
    """Argument parser; the epilog lists every file written."""
    epilog = "files written:\n" + "\n".join(
        f"  {name}\n" + textwrap.fill(text, width=79, initial_indent=" " * 6, subsequent_indent=" " * 6)
        for name, text in FILE_DESCRIPTIONS)
    epilog += ("\n\nAll files belong to the synthetic patient Sample^Phantom (PatientID PHANTOM0001)\n"
               "and are byte-identical on every run. Only DICOM image files go into the\n"
               "output directory (no README, no DICOMDIR), so a converter run over it should\n"
               "produce no errors.")
    parser = argparse.ArgumentParser(
        description="Write a small set of synthetic DICOM test files (CT, MR, CR, XA, US, "
                    "palette colour) for dicom_converter.",
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR,
                        help=f"output directory (default: {DEFAULT_OUTPUT_DIR})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out: Path = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    for writer in WRITERS:
        for path in writer(out):
            size = path.stat().st_size
            total += size
            print(f"{size:>10,d}  {path.relative_to(out)}")
    print(f"{total:>10,d}  total bytes in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
