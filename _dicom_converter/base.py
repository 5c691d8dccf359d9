"""Shared types and constants: defaults, environment settings, the errors a file can
raise, and the two bundles of choices (`Options` per file, `Batch` per run).

The bottom of the package: it imports nothing of its own.
"""

from __future__ import annotations

import dataclasses
import os
from fractions import Fraction
from pathlib import Path

# The release, as pyproject.toml's `version` (tests/test_cli.py checks they agree); an installed
# copy reports its package metadata instead (`cli.program_version`).
__version__ = "1.0.0"

DEFAULT_INPUT = "dicom_data"
DEFAULT_OUTPUT = "output"
DEFAULT_FPS = Fraction(10)
# H.264 settings, measured by bench/x264.py (PSNR of each frame's luma against the
# 8-bit input, as fed and as a player shows it; the lowest per clip) on pydicom's
# 64^2 noisy MR (emri_small), the sample XA runs, and bench/'s noisy 512^2 and
# 1024^2 angiography clips, 2026-12: preset ultrafast at crf 15 keeps every grey
# clip at >= 40.7 dB worst frame (XA 1024^2: 42.6 / 41.1 dB) in 0.8 s of CPU for
# 100 frames of 1024^2, where veryfast at crf 13 (the previous default) took 3.6 s
# for 43.9 / 42.4 dB and 12% fewer bytes: noisy angiography at these rates is
# mostly entropy coding.  8x8dct keeps the High profile (ultrafast alone writes
# Constrained Baseline); the macroblock tree with a short lookahead keeps nearly
# still clips small (the sample XA: 46 KB, not 119 KB without it).
DEFAULT_CRF = 15
X264_PRESET = "ultrafast"
X264_PARAMS = "8x8dct=1:mbtree=1:rc-lookahead=10"
X264_TUNE = "psnr"  # fidelity to the pixels over psycho-visual sharpening
# GIF frames are scaled to fit this (the MP4 and PNGs keep full size): a 1024^2
# angiography GIF is a preview, and a quarter of the pixels is a quarter of the bytes.
DEFAULT_GIF_MAX_SIZE = 512

# Suffixes removed from an input name to make the output stem (any case).
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")

# Output stems are cut to this many bytes: room for "_NN" and ".mp4" within NAME_MAX (255).
MAX_STEM_BYTES = 240

# Media Storage Directory Storage: the DICOMDIR index of a CD, not an image.
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

# Elements whose values are bulk data: never dumped in the .txt.
BULK_DATA_KEYWORDS = frozenset(
    {"PixelData", "FloatPixelData", "DoubleFloatPixelData", "WaveformData",
     "OverlayData", "EncapsulatedDocument", "SpectroscopyData"}
)

# Binary values longer than this are summarised in the .txt by their size.
LONG_BINARY_BYTES = 64
# Numeric multi-values longer than this are cut in the .txt, with a count.
LONG_MULTI_VALUES = 16

# Decoded frames of a clip are kept between the range pass and the render pass
# when they fit in this many bytes; larger clips are decoded a second time.
CLIP_CACHE_BYTES = 256 * 1024 * 1024

# Settings read from the environment, here and nowhere else.  They are for tests
# and CI, not for users: an environment variable reaches worker and helper
# processes under every start method, where a monkeypatch in the test process
# reaches only forked ones.
ENV_START_METHOD = "DICOM_CONVERTER_START_METHOD"  # fork | forkserver | spawn; unset: the platform's default
ENV_HELPER_PIXELS = "DICOM_CONVERTER_HELPER_PIXELS"  # clips above this many pixels decode in a helper process
ENV_CRASH_ON = "DICOM_CONVERTER_CRASH_ON"  # decoding an input of this file name crashes (a real SIGSEGV)


def environment_setting(name: str) -> str | None:
    """The value of one of the ENV_* settings above, or None when unset or empty."""
    return os.environ.get(name) or None


class ConversionError(Exception):
    """A problem with one input file; the message is shown to the user as is."""


class NotDicom(ConversionError):
    """The file is not a DICOM dataset."""


class CorruptFile(ConversionError):
    """The file claims to be DICOM but cannot be read or decoded."""


class Unsupported(ConversionError):
    """A valid file that uses something this program cannot render."""


class Skipped(ConversionError):
    """A DICOM file that is deliberately not converted (e.g. DICOMDIR)."""


class OutputPathTooLong(ConversionError):
    """An output path longer than the platform allows (Windows without long paths)."""


@dataclasses.dataclass(frozen=True)
class Options:
    """The choices that shape one file's conversion (plain values, no argparse)."""

    eight_bit: bool = False
    write_gif: bool = True
    write_mp4: bool = True
    transcode: bool = True  # HEVC video: also an H.264 MP4 (--no-transcode)
    fps: Fraction | None = None
    window: tuple[float, float] | None = None
    crf: int = DEFAULT_CRF
    gif_max_size: int | None = DEFAULT_GIF_MAX_SIZE
    max_memory: int = 4 * 1024**3
    write_png: bool = True
    frame_pngs: bool = False
    write_json: bool = False
    redact_salt: str | None = None  # set: --redact, with this run's secret for UID replacement
    redact_pixels: str = "blank"  # under --redact: "blank" burned-in text (or withhold), "keep" the pixels
    thumbnails: Path | None = None  # OUTPUT/.thumbs, where the index page's small pictures go; None: none


@dataclasses.dataclass(frozen=True)
class Batch:
    """The choices that shape a run as a whole (how many at once, what else it writes)."""

    jobs: int = 1
    quiet: bool = False
    skip_existing: bool = False
    series: bool = False  # --series: the single-frame files of each series also as one cine
    index: bool = True  # OUTPUT/index.html
    shard: tuple[int, int] | None = None  # --shard K/N: this run converts share K of N
    layout: str = "mirror"  # --layout: "mirror" the input tree, or "study": PATIENT/STUDY/SERIES/


def first_line(exc: BaseException) -> str:
    """The exception's message on one line (pydicom lists each plugin's reason on its own)."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def display_name(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)
