#!/usr/bin/env python3
"""Convert DICOM images into files anyone can open.

Single frames become PNG (16-bit grey by default), multi-frame cine loops become an
animated GIF and an H.264 MP4, and every DICOM file gets a UTF-8 ``.txt`` beside its
images with a summary and the full element dump.

Pixels follow the DICOM display pipelines (PS3.3 C.11, PS3.4 Annex N):

    stored values -> Modality LUT -> VOI LUT / window -> Presentation -> output bits

Colour images (RGB, YBR_*, PALETTE COLOR) are converted to 8-bit RGB.

The file reads top to bottom in the order data flows:

    constants & errors -> finding inputs -> reading a dataset -> pixel pipeline
    -> frame timing -> writers -> converting one file -> the batch -> command line
"""

from __future__ import annotations

import argparse
import base64
import codecs
import collections
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import re
import secrets
import sys
import warnings
from fractions import Fraction
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator
from urllib.parse import urlsplit

if TYPE_CHECKING:  # heavy imports are deferred so that --help answers at once
    import numpy as np
    from pydicom.dataset import Dataset


# =============================================================================
# Constants and errors
# =============================================================================

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


# =============================================================================
# Finding inputs
# =============================================================================

@dataclasses.dataclass
class FolderGroup:
    """The input files whose outputs go to one output folder, as a case- and
    normalisation-insensitive file system sees it: the files of every input folder that
    mirrors to it (``A/`` and ``a/``, ``a:`` and ``a_``), and what outputs there must not land on."""

    files: list[tuple[Path, Path]]  # (input file, the output folder it mirrors to), sorted by input
    present: set[str]  # name keys of the input files and the output subfolders here


def walk_groups(root: Path, output: Path, exclude: Path | None = None) -> Iterator[FolderGroup]:
    """The input tree under `root` (or `root` itself), one output folder at a time, in sorted order.

    Names can collide only within one output folder, so planning one group
    after another needs no state from the others, and the walk holds one
    folder's listing, not the whole tree.  Symbolic links to directories are
    not followed, so link loops cannot hang the walk; `exclude` (the output
    folder, when it lies inside the input) is not entered, so a second run
    does not pick up its own outputs.
    """
    if root.is_file():
        yield FolderGroup([(root, output)], {name_key(root)})
    else:
        yield from _walk_group([(root, output)], exclude)


def _walk_group(folders: list[tuple[Path, Path]], exclude: Path | None) -> Iterator[FolderGroup]:
    files: list[tuple[Path, Path]] = []
    subfolders: dict[str, list[tuple[Path, Path]]] = {}
    present: set[str] = set()
    for folder, mirrored in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:  # unreadable: as os.walk, the rest of the tree goes on
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if exclude is None or path.resolve() != exclude:
                    out = mirrored / portable_name(entry.name)
                    present.add(name_key(out))
                    subfolders.setdefault(name_key(out), []).append((path, out))
            elif entry.is_file():  # a link to a file counts, a link to a folder not
                files.append((path, mirrored))
                present.add(name_key(path))
    if files:
        yield FolderGroup(sorted(files), present)
    for group in sorted(subfolders.values(), key=min):
        yield from _walk_group(sorted(group), exclude)


def find_files(root: Path, exclude: Path | None = None) -> list[Path]:
    """Every regular file under `root` (or `root` itself), in the walk's order."""
    return [path for group in walk_groups(root, root, exclude) for path, _ in group.files]


def looks_like_dicom(path: Path) -> bool:
    """True when the content of `path` is a DICOM dataset (PS3.10 7.1).

    Files with the 128-byte preamble and ``DICM`` prefix are DICOM.  Older files
    without the preamble start directly with a group 0x0002/0x0008 element, in
    either byte order; anything else (text, images, JSON) is not DICOM,
    whatever its name.
    """
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    little = int.from_bytes(head[0:2], "little")
    big = int.from_bytes(head[0:2], "big")
    if not ({little, big} & {0x0002, 0x0008}):
        return False
    try:
        ds = _dcmread(path, stop_before_pixels=True)
    except Exception:
        return False
    return any(
        keyword in ds for keyword in ("SOPClassUID", "Modality", "StudyInstanceUID", "Rows")
    )


# Names must be valid on every file system a CD's outputs are copied to; Windows'
# rules are the strictest (Microsoft's "Naming Files, Paths, and Namespaces"):
# these device names are reserved with or without an extension (``CON.png``),
# as are the superscript-digit ports Windows 11 added; no name may hold
# ``<>:"/\|?*`` or a control character, or end in a dot or space.  Undecodable
# bytes (surrogate escapes of a Linux file name) are no name on macOS or Windows.
WINDOWS_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{port}{n}" for port in ("COM", "LPT") for n in "123456789\u00b9\u00b2\u00b3"}
)
UNPORTABLE_CHARACTERS = r'[<>:"/\\|?*\x00-\x1f\x7f\ud800-\udfff]'


def portable_name(name: str, max_bytes: int = MAX_STEM_BYTES) -> str:
    """`name` as NTFS, APFS, HFS+, FAT and ext4 all accept it, at most `max_bytes` of UTF-8.

    Unportable characters become ``_``; a long name is cut between characters,
    never inside one; a reserved device name gets ``_`` after its base
    (``CON.tar`` -> ``CON_.tar``).
    """
    import re

    name = re.sub(UNPORTABLE_CHARACTERS, "_", name)
    name = name.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")  # a cut character is dropped whole
    name = name.rstrip(" .") or "_"
    base, dot, rest = name.partition(".")
    if base.rstrip(" ").upper() in WINDOWS_RESERVED_NAMES:
        name = f"{base.rstrip(' ')}_{dot}{rest}"
    return name


def name_key(path: Path | str) -> str:
    """What two paths are compared by: the same key means the same file on some file system.

    APFS and NTFS ignore case, and APFS (like HFS+) also Unicode normalisation:
    ``IM1``/``im1`` and ``café`` in NFC/NFD must never be two outputs.
    """
    import unicodedata

    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", str(path)).casefold())


def output_stem(name: str) -> str:
    """The output stem for an input file name: `name` less a DICOM suffix, made portable.

    Names near the file system's 255-byte limit are shortened so that ``_2``
    and ``.mp4`` still fit.  Only the input's name is used, never a DICOM
    value, so a dataset cannot steer where its outputs go.
    """
    lowered = name.lower()
    for suffix in DICOM_SUFFIXES:
        if lowered.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return portable_name(name)


OUTPUT_SUFFIXES = (".png", "_median.png", ".gif", ".mp4", ".h264.mp4", ".csv", ".wav", ".html",
                   ".pdf", ".xml", ".stl", ".obj", ".mtl", ".json", ".txt")  # the .txt last
FRAMES_SUFFIX = "_frames"  # --frames writes STEM_frames/0001.png …
# What one output suffix holds more than another that it ends with (".h264" of ".h264.mp4" and
# ".mp4"): the stems whose outputs could be another stem's.  Checked per stem, so planning keeps
# one key per file, not one per output.
OUTPUT_INFIXES = tuple(sorted({a[:-len(b)] for a in OUTPUT_SUFFIXES for b in OUTPUT_SUFFIXES
                               if a != b and a.endswith(b)}))


def plan_outputs(files: list[Path], root: Path, output: Path) -> list[tuple[Path, Path, str]]:
    """`plan_group` for a list of DICOM files under `root`, grouped by the output folder they mirror to."""
    base = root if root.is_dir() else root.parent
    groups: dict[str, list[tuple[Path, Path]]] = {}
    present = {name_key(path) for path in files}
    for path in files:
        folder = output.joinpath(*(portable_name(part) for part in path.parent.relative_to(base).parts))
        groups.setdefault(name_key(folder), []).append((path, folder))
        present.update(name_key(out) for out in (folder, *folder.parents))
    planned = [entry for group in groups.values() for entry in plan_group(sorted(group), present, output)]
    return sorted(planned)


def plan_group(files: list[tuple[Path, Path]], present: set[str], output: Path) -> list[tuple[Path, Path, str]]:
    """Pair each DICOM input of one output folder (input, output folder) with a unique output stem.

    The input tree is mirrored, each folder name made portable.  Two inputs
    whose stems coincide (``a`` and ``a.dcm``), or whose outputs do (``a.h264``'s
    MP4 and ``a``'s H.264 MP4), do not overwrite each other: the later one in
    sorted order gets ``STEM_2`` (``_3``…).  A stem is
    also moved aside when one of its outputs (``STEM.png``, the folder
    ``STEM_frames``) would land on something `present`: an input file
    (possible when OUTPUT is the input folder: a DICOM file named ``IM1.txt``
    beside ``IM1``) or a folder the mirrored tree needs.  Names are compared by
    `name_key`, since outputs are often copied to case- and
    normalisation-insensitive file systems.  Returns ``(input, stem path,
    note)``; the note tells of a rename.
    """
    taken: set[str] = set()
    reserved = {name_key(output / "index.html"), name_key(output / "manifest.csv")}  # the run's own

    def clashes(stem: Path) -> bool:
        frames = name_key(f"{stem}{FRAMES_SUFFIX}")
        key = name_key(stem)
        outputs = [name_key(f"{stem}{suffix}") for suffix in OUTPUT_SUFFIXES]
        return (key in taken or frames in present
                or any(out in present or out in reserved for out in outputs)
                # another stem's outputs on ours: ``a`` + ``.h264.mp4`` is ``a.h264`` + ``.mp4``
                or any(name_key(f"{stem}{infix}") in taken or (key.endswith(infix.casefold())
                                                                and key[:-len(infix)] in taken)
                       for infix in OUTPUT_INFIXES))

    planned = []
    for path, folder in files:
        stem = output_stem(path.name)
        candidate, n = stem, 1
        while clashes(folder / candidate):
            n += 1
            candidate = f"{stem}_{n}"
        taken.add(name_key(folder / candidate))
        note = f"output renamed to {candidate} (name {stem} already taken)" if n > 1 else ""
        planned.append((path, folder / candidate, note))
    return planned


# =============================================================================
# Reading a dataset
# =============================================================================

def _dcmread(path: Path, **kwargs) -> Dataset:
    import pydicom

    return pydicom.dcmread(path, force=True, **kwargs)


def read_dataset(path: Path) -> Dataset:
    """Read the dataset of `path`, leaving bulk values (pixel data) on disk.

    Values over 64 KB are deferred: they are read only when used, so the
    metadata of a 2 GB cine costs what its header costs.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = _dcmread(path, defer_size="64 KB")
    except OSError as exc:
        if exc.errno is None:  # pydicom's own OSError: "No tag to read at file position …"
            raise CorruptFile(f"truncated: {first_line(exc)}") from None
        raise CorruptFile(f"cannot read file: {exc.strerror or exc}") from None
    except Exception as exc:  # pydicom raises many kinds on damaged headers (zlib, lengths, VRs)
        raise CorruptFile(f"cannot read DICOM dataset: {first_line(exc)}") from None
    for warning in caught:
        if "End of file reached" in str(warning.message):  # pydicom read on past a cut
            raise CorruptFile(f"truncated: {first_line(warning.message).split(' in file ')[0]}")
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if not len(ds):
        # pydicom returns nothing at all when the file ends inside the pixel data;
        # the header alone tells the two cases apart.
        try:
            header = _dcmread(path, stop_before_pixels=True)
        except Exception:
            header = ()
        if len(header):
            raise CorruptFile("truncated: the file ends inside its pixel data")
        raise NotDicom("no DICOM elements found")
    check_complete(ds, path)
    sop_class = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
    if sop_class == MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds:
        raise Skipped("DICOMDIR (the index of a DICOM CD, not an image)")
    return ds


def check_complete(ds: Dataset, path: Path) -> None:
    """Refuse a file whose elements run past its end (cut short, or a length that lies).

    pydicom reads such a value short without a word, and an image can lose
    its pixel data that way.  Walking the top-level element headers again,
    values skipped rather than read, finds where the dataset claims to end.
    """
    from pydicom.dataelem import RawDataElement
    from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
    from pydicom.uid import UID

    syntax = UID(transfer_syntax_of(ds))
    if not syntax.is_transfer_syntax or syntax.is_deflated:
        return
    size = path.stat().st_size
    pixels = ds.get_item("PixelData", keep_deferred=True) if "PixelData" in ds else None
    if (isinstance(pixels, RawDataElement) and pixels.length != 0xFFFFFFFF
            and pixels.value_tell + pixels.length == size):
        return  # the usual case: native pixel data is the last element and ends the file
    try:
        with path.open("rb") as fp:
            read_preamble(fp, force=True)
            _read_file_meta_info(fp)
            last, claimed = None, fp.tell()
            for last in data_element_generator(fp, syntax.is_implicit_VR, syntax.is_little_endian, defer_size=1):
                claimed = fp.tell()  # the end of the element just walked
                if claimed > size:
                    break
    except Exception:  # the full read already succeeded; this check only adds certainty
        return
    if claimed > size and last is not None and last.tag == 0x7FE00010:
        raise CorruptFile(f"truncated pixel data ({size - last.value_tell} of {last.length} bytes)")
    if claimed > size and last is not None:
        raise CorruptFile(f"truncated or a wrong length: element {last.tag} runs {claimed - size} bytes "
                          f"past the end of the file")
    if 0 < size - claimed < 8:  # less than an element header left: the file was cut inside one
        raise CorruptFile(f"truncated: the file ends {size - claimed} bytes into an element header")


def transfer_syntax_of(ds: Dataset) -> str:
    """The Transfer Syntax UID of `ds`, inferred from its encoding when it has no File Meta."""
    from pydicom.dataelem import RawDataElement
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    uid = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    implicit, little = ds.original_encoding
    pixels = ds.get_item("PixelData", keep_deferred=True) if "PixelData" in ds else None
    if isinstance(pixels, RawDataElement):  # how pydicom really read it (it may have switched)
        implicit, little = pixels.is_implicit_VR, pixels.is_little_endian
    if uid and (not UID(uid).is_transfer_syntax or UID(uid).is_compressed or implicit is None
                or (UID(uid).is_implicit_VR, UID(uid).is_little_endian) == (implicit, little)):
        return uid
    # No File Meta, or it names a native syntax the data is not in: pydicom found
    # the real encoding while reading (and warned); the pixels are in it too.
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def has_pixel_data(ds: Dataset) -> bool:
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def number_of_frames(ds: Dataset) -> int:
    """NumberOfFrames (PS3.3 C.7.6.6), 1 when absent; refuses nonsense values."""
    value = ds.get("NumberOfFrames", 1)
    try:
        frames = int(value) if value not in (None, "") else 1
    except (TypeError, ValueError):
        raise CorruptFile(f"invalid Number of Frames {value!r}") from None
    if frames < 1:
        raise CorruptFile(f"invalid Number of Frames {frames}")
    return frames


def check_pixel_data_length(ds: Dataset) -> None:
    """Refuse native (uncompressed) pixel data shorter than its image attributes say.

    The length comes from the element header, so nothing is read (a value cut
    off by the end of the file is `check_complete`'s to find); without this
    check numpy reports a reshape error that tells a user nothing.
    """
    from pydicom.dataelem import RawDataElement
    from pydicom.pixels.utils import get_expected_length
    from pydicom.uid import UID

    syntax = UID(transfer_syntax_of(ds))
    if syntax.is_compressed or syntax.is_deflated or "PixelData" not in ds:
        return  # (offsets in a deflated file are offsets in the inflated stream)
    raw = ds.get_item("PixelData", keep_deferred=True)
    actual = raw.length if isinstance(raw, RawDataElement) else len(raw.value or b"")
    try:
        expected = get_expected_length(ds, "bytes")
    except Exception:
        return
    if actual < expected:
        raise CorruptFile(f"truncated pixel data ({actual} of {expected} bytes)")


def check_memory(ds: Dataset, frames: int, limit: int) -> None:
    """Refuse, before anything is allocated, pixel data declared larger than `limit` bytes.

    Rows x Columns x Frames x Samples x Bits Allocated is what decoding the whole
    object would take; a damaged or hostile header can declare terabytes.
    """
    declared = (int(ds.Rows) * int(ds.Columns) * frames * int(ds.get("SamplesPerPixel") or 1)
                * int(ds.BitsAllocated) // 8)
    if declared > limit:
        raise Unsupported(
            f"pixel data of {declared / 2**20:,.0f} MB ({ds.Rows}x{ds.Columns}, {frames} frames) "
            f"exceeds the memory limit of {limit / 2**20:,.0f} MB (see --max-memory)"
        )


def check_image_attributes(ds: Dataset) -> None:
    """Refuse, before decoding, an Image Pixel module (PS3.3 C.7.6.3) that cannot be right,
    or pixel data in a transfer syntax that does not exist."""
    from pydicom.uid import UID

    syntax = UID(transfer_syntax_of(ds))
    if not syntax.is_transfer_syntax:
        raise Unsupported(f"unknown transfer syntax {syntax}")
    for keyword in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if ds.get(keyword) in (None, ""):
            raise CorruptFile(f"missing {keyword} (required to read pixel data)")
    if int(ds.Rows) < 1 or int(ds.Columns) < 1:
        raise CorruptFile(f"invalid image size {ds.Rows}x{ds.Columns}")
    if int(ds.BitsAllocated) not in (1, 8, 16, 32, 64):
        raise CorruptFile(f"invalid Bits Allocated {ds.BitsAllocated}")


# =============================================================================
# Pixel pipeline
#
# Every greyscale frame goes through one lookup table that holds the whole
# display pipeline for every possible stored value (256 or 65536 entries), built
# with the step functions below; a frame is then rendered by one numpy `take`.
# 32-bit and float pixel data run the same steps on the frame directly.
# =============================================================================

# pydicom decodes the JPEG syntaxes with pylibjpeg-libjpeg (or GDCM).  For JPEG
# Lossless both took 54-57 ms per 1024^2 12-bit frame here, 5.4 s of a 100-frame
# angiography run converted in 9 s; libjpeg-turbo 3, as bundled by imagecodecs,
# decodes the same frames bit for bit in 9.8 ms.  For JPEG Baseline/Extended it
# takes 1.1 ms per 640x480 ultrasound frame where pylibjpeg takes 35 ms, and its
# output equals DCMTK's (dcmdjpeg) on every such file in pydicom's test data, where
# pylibjpeg's differs by up to 5 levels (chroma upsampling, IDCT rounding).  It
# also reads NEMA's NM1_JPLY (pydicom's JPEG-lossy.dcm), which pylibjpeg refuses.
# It is registered through pydicom's decoding-plugin interface, ahead of pydicom's
# own plugins, which stay behind it: pydicom falls back to them for any frame it
# declines or fails on.  Like theirs, it hands back the colour space the JPEG
# stream holds (YCbCr for YBR_FULL/YBR_FULL_422, else RGB) and leaves the
# conversion to RGB to pydicom (PS3.3 C.7.6.3.1.2).
TURBO_PLUGIN = "libjpeg-turbo"
TURBO_PLUGIN_MODULE = "dicom_converter_libjpeg_turbo"
JPEG_LOSSLESS_SYNTAXES = ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70")  # Process 14; its SV1 form
TURBO_SYNTAXES = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", *JPEG_LOSSLESS_SYNTAXES)  # + Baseline, Extended
JPEG_STREAM_COLOUR = {"YBR_FULL": "YCBCR", "YBR_FULL_422": "YCBCR", "RGB": "RGB"}  # libjpeg's names


def use_libjpeg_turbo() -> None:
    """Put libjpeg-turbo first among pydicom's JPEG decoders (once per process)."""
    import types

    if TURBO_PLUGIN_MODULE in sys.modules:
        return
    import imagecodecs
    from pydicom.pixels.decoders import (
        JPEGBaseline8BitDecoder,
        JPEGExtended12BitDecoder,
        JPEGLosslessDecoder,
        JPEGLosslessSV1Decoder,
    )

    # pydicom imports a plugin by module path and asks it these two questions
    plugin = types.ModuleType(TURBO_PLUGIN_MODULE)
    plugin.is_available = lambda uid: bool(imagecodecs.JPEG8.available) and uid in TURBO_SYNTAXES
    plugin.DECODER_DEPENDENCIES = dict.fromkeys(TURBO_SYNTAXES, ("imagecodecs",))
    plugin.decode_frame = decode_jpeg_frame
    sys.modules[TURBO_PLUGIN_MODULE] = plugin
    for decoder in (JPEGBaseline8BitDecoder, JPEGExtended12BitDecoder, JPEGLosslessDecoder, JPEGLosslessSV1Decoder):
        # plugins are tried in the order they were added: take pydicom's own
        # (as pydicom registers them) out, add ours, then put theirs back
        theirs = []
        for name in ("gdcm", "pylibjpeg", "pillow"):
            with contextlib.suppress(ValueError):  # not registered for this syntax
                decoder.remove_plugin(name)
                theirs.append(name)
        decoder.add_plugin(TURBO_PLUGIN, (TURBO_PLUGIN_MODULE, "decode_frame"))
        for name in theirs:
            decoder.add_plugin(name, (f"pydicom.pixels.decoders.{name}", "_decode_frame"))


def decode_jpeg_frame(src: bytes, runner) -> bytes:
    """One JPEG frame through libjpeg-turbo, as pydicom's decoders return it.

    Colour comes back in the stream's own colour space, samples interleaved.
    A frame whose data stops before the end-of-image marker is decoded as far
    as it goes (as DCMTK and pylibjpeg do) with a warning, instead of silently.
    """
    import imagecodecs

    samples = runner.samples_per_pixel
    colour = JPEG_STREAM_COLOUR.get(str(runner.photometric_interpretation)) if samples == 3 else None
    if samples != 1 and colour is None:
        raise ValueError(f"{samples} samples as {runner.photometric_interpretation} are left to pydicom's decoders")
    frame = imagecodecs.jpeg8_decode(src, colorspace=colour, outcolorspace=colour)
    shape = (runner.rows, runner.columns) + ((samples,) if samples > 1 else ())
    if frame.shape != shape or 8 * frame.dtype.itemsize > runner.bits_allocated:
        raise ValueError(f"decoded a {frame.shape} {frame.dtype} frame, not the "
                         f"{shape} {runner.bits_allocated}-bit one declared")
    tail = bytes(src[-256:]).rstrip(b"\x00\xff")  # the end-of-image marker, then any padding
    if tail and not tail.endswith(b"\xff\xd9"):
        warnings.warn("a JPEG frame ends before its end-of-image marker (cut short?): "
                      "shown as far as it decodes", stacklevel=2)
    if samples > 1:
        runner.set_option("planar_configuration", 0)  # interleaved, whatever the file says
    return frame.astype(f"<u{runner.bits_allocated // 8}", copy=False).tobytes()


def decode_frames(path: Path, ds: Dataset, order: list[int] | None = None) -> Iterator[np.ndarray]:
    """Yield the stored values of each frame of `path`, one at a time (in `order`, when given).

    pydicom's `iter_pixels` reads and decodes one frame at a time from the
    file, so a long cine never sits in memory whole; YBR_FULL/YBR_FULL_422 come
    out as RGB (PS3.3 C.7.6.3.1.2).  Decoder failures become one clear error
    naming the transfer syntax.
    """
    from pydicom.pixels import iter_pixels
    from pydicom.uid import UID

    syntax = UID(transfer_syntax_of(ds))
    # Given a path, iter_pixels reads frames straight from the file, parsing the
    # header again (2 ms of a CT slice), which streams a cine frame by frame; a
    # single frame, compressed or not, is decoded from the dataset already read
    # (its deferred pixel data read by seeking to it), and a deflated file must
    # be inflated first, which reading it whole does.
    if syntax in TURBO_SYNTAXES:
        use_libjpeg_turbo()
    source = path
    if syntax.is_deflated:
        source = _dcmread(path)
    elif ds.get("NumberOfFrames") in (None, "", 1, "1") and getattr(ds, "file_meta", {}).get("TransferSyntaxUID") == syntax:
        source = ds
    if path.name == environment_setting(ENV_CRASH_ON):
        import faulthandler

        faulthandler._sigsegv()  # for the tests: a crash in C, as a decoder's on damaged data
    try:
        for frame in iter_pixels(source, transfer_syntax_uid=syntax, indices=order):
            yield frame
    except (NotImplementedError, RuntimeError, ImportError) as exc:
        if "missing dependencies" in str(exc) or "not supported" in str(exc) or isinstance(exc, ImportError):
            raise Unsupported(f"no decoder for {syntax.name} ({syntax}): {first_line(exc)}") from None
        raise CorruptFile(f"cannot decode {syntax.name} pixel data: {first_line(exc)}") from None
    except (ValueError, EOFError, AttributeError, KeyError, TypeError, IndexError, OSError) as exc:
        raise CorruptFile(f"cannot decode {syntax.name} pixel data: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    """The exception's message on one line (pydicom lists each plugin's reason on its own)."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def frame_attributes(ds: Dataset, index: int) -> Dataset:
    """The attributes that govern frame `index`, with functional groups resolved.

    Enhanced multi-frame objects (PS3.3 C.7.6.16) keep rescale and window per
    frame in the Per-Frame Functional Groups Sequence, falling back to the
    Shared Functional Groups Sequence.  pydicom's LUT functions read top-level
    attributes only, so the frame's Pixel Value Transformation (C.7.6.16.2.9)
    and Frame VOI LUT (C.7.6.16.2.10) values are copied onto a shallow copy.
    """
    groups = []
    for sequence in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = ds.get(sequence)
        if not items:
            continue
        item_index = 0 if sequence.startswith("Shared") else index
        if item_index < len(items):
            groups.append(items[item_index])
    if not groups:
        return ds
    view = ds.copy()
    for group in groups:
        for macro in ("PixelValueTransformationSequence", "FrameVOILUTSequence"):
            items = group.get(macro)
            if items:
                for element in items[0]:
                    view[element.tag] = element
    return view


def stored_values_domain(dtype: np.dtype) -> np.ndarray:
    """Every value a frame of integer `dtype` can hold, in the order of its unsigned view."""
    import numpy as np

    unsigned = np.dtype(f"u{dtype.itemsize}")
    return np.arange(2 ** (8 * dtype.itemsize), dtype=np.int64).astype(unsigned).view(dtype)


def apply_modality(values: np.ndarray, attrs: Dataset) -> np.ndarray:
    """Modality LUT (PS3.3 C.11.1): stored values to modality units (e.g. HU).

    pydicom's `apply_modality_lut` handles Rescale Slope/Intercept and the
    Modality LUT Sequence; it cannot make a ``uint12`` array for a 12-bit LUT
    (it names the dtype after the descriptor's bit depth), so such LUTs are
    given a 16-bit container here.
    """
    import numpy as np
    from pydicom.pixels import apply_modality_lut

    if attrs.get("ModalityLUTSequence"):
        item = attrs.ModalityLUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        if bits not in (8, 16):
            item = _lut_item_with_depth(item, 16 if bits > 8 else 8)
            attrs = attrs.copy()
            attrs.ModalityLUTSequence = [item]
    try:
        out = apply_modality_lut(values, attrs)
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise CorruptFile(f"invalid Modality LUT: {first_line(exc)}") from None
    return np.asarray(out, dtype=np.float64)


def _lut_item_with_depth(item: Dataset, depth: int) -> Dataset:
    from pydicom.dataset import Dataset

    copy = Dataset()
    copy.update(item)
    descriptor = list(item.LUTDescriptor)
    descriptor[2] = depth
    copy.LUTDescriptor = descriptor
    return copy


def apply_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """VOI window (PS3.3 C.11.2.1.2 and C.11.2.1.3) mapped onto 0.0–1.0.

    Written here rather than calling pydicom's `apply_windowing`: that
    function scales its output to a range derived from Bits Stored and the
    rescale values (and writes back into the dataset), while the display needs
    0–1 to quantise to 8 or 16 bits; the formulas are the standard's.
    """
    import numpy as np

    function = (function or "LINEAR").strip().upper()
    values = np.asarray(values, dtype=np.float64)
    if function == "SIGMOID":
        if width <= 0:
            raise CorruptFile(f"invalid Window Width {width} for SIGMOID")
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        if width <= 0:
            raise CorruptFile(f"invalid Window Width {width} for LINEAR_EXACT")
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if function != "LINEAR":
        raise Unsupported(f"VOI LUT Function {function!r} is not supported")
    if width < 1:
        raise CorruptFile(f"invalid Window Width {width} (must be at least 1)")
    if width == 1:  # a threshold: C.11.2.1.2.1 with width - 1 == 0
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def apply_voi_lut_sequence(values: np.ndarray, attrs: Dataset) -> np.ndarray:
    """The first VOI LUT of the VOI LUT Sequence (PS3.3 C.11.2.1.1), mapped onto 0.0–1.0.

    pydicom's `apply_voi` does the lookup; its output spans the LUT's
    declared entry bit depth (LUT Descriptor value 3), which sets full scale.
    """
    import numpy as np
    from pydicom.pixels import apply_voi

    item = attrs.VOILUTSequence[0]
    try:
        out = apply_voi(np.rint(values).astype(np.int64), attrs)
    except (ValueError, TypeError, IndexError, NotImplementedError, AttributeError) as exc:
        raise CorruptFile(f"invalid VOI LUT Sequence: {first_line(exc)}") from None
    full_scale = 2 ** int(item.LUTDescriptor[2]) - 1
    return np.asarray(out, dtype=np.float64) / full_scale


def apply_linear_range(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map the modality range `low`–`high` linearly onto 0.0–1.0 (no VOI in the file)."""
    import numpy as np

    if high <= low:
        return np.zeros(np.shape(values), dtype=np.float64)
    return np.clip((np.asarray(values, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


def is_inverted(attrs: Dataset) -> bool:
    """Presentation (PS3.3 C.11.6, C.7.6.3.1.2): whether minimum is shown white.

    Presentation LUT Shape, when present, says it outright (INVERSE or
    IDENTITY).  Otherwise MONOCHROME1 means the lowest value is white.  The
    inversion is applied after VOI; inverting before the window double-inverts.
    """
    shape = str(attrs.get("PresentationLUTShape", "") or "").strip().upper()
    if shape in ("INVERSE", "IDENTITY"):
        return shape == "INVERSE"
    return str(attrs.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1"


@dataclasses.dataclass(frozen=True)
class Voi:
    """The VOI step chosen for an image: a window, the file's VOI LUT, or a range."""

    kind: str  # "window", "lut" or "range"
    center: float = 0.0
    width: float = 0.0
    function: str = "LINEAR"
    source: str = ""

    def describe(self) -> str:
        if self.kind == "window":
            extra = "" if self.function == "LINEAR" else f" {self.function}"
            return f"window {self.center:g}/{self.width:g}{extra} ({self.source})"
        if self.kind == "lut":
            return f"VOI LUT ({self.source})"
        return f"min-max {self.center:g}..{self.width:g} ({self.source})"


def choose_voi(attrs: Dataset, override: tuple[float, float] | None) -> Voi | None:
    """The VOI of PS3.3 C.11.2 in order of precedence, or None when the file has none.

    ``--window`` wins; then the first Window Center/Width pair with its VOI LUT
    Function; then the first item of the VOI LUT Sequence.
    """
    if override is not None:
        return Voi("window", override[0], override[1], "LINEAR", "--window")
    center, width = attrs.get("WindowCenter"), attrs.get("WindowWidth")
    if center not in (None, "") and width not in (None, ""):
        try:
            center = float(center[0] if is_multi(center) else center)
            width = float(width[0] if is_multi(width) else width)
        except (TypeError, ValueError, IndexError):
            raise CorruptFile(f"invalid Window Center/Width {center!r}/{width!r}") from None
        function = str(attrs.get("VOILUTFunction", "") or "LINEAR").strip().upper()
        return Voi("window", center, width, function, "file")
    if attrs.get("VOILUTSequence"):
        return Voi("lut", source="file")
    return None


def is_multi(value) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


def apply_voi_step(values: np.ndarray, attrs: Dataset, voi: Voi) -> np.ndarray:
    """Run the chosen VOI on modality values, giving 0.0–1.0."""
    if voi.kind == "window":
        return apply_window(values, voi.center, voi.width, voi.function)
    if voi.kind == "lut":
        return apply_voi_lut_sequence(values, attrs)
    return apply_linear_range(values, voi.center, voi.width)


def display_values(stored: np.ndarray, attrs: Dataset, voi: Voi, out_max: int) -> np.ndarray:
    """The grayscale standard display pipeline (PS3.4 N.2.1) from stored values to output.

    Modality LUT, VOI, then Presentation; output is scaled to 0–`out_max` and
    returned as uint8 (255) or uint16 (65535).
    """
    import numpy as np

    shown = apply_voi_step(apply_modality(stored, attrs), attrs, voi)
    if is_inverted(attrs):
        shown = 1.0 - shown
    return np.rint(shown * out_max).astype(np.uint8 if out_max <= 255 else np.uint16)


def grayscale_lut(dtype: np.dtype, attrs: Dataset, voi: Voi, out_max: int) -> np.ndarray:
    """`display_values` for every stored value of `dtype`, indexed by its unsigned view."""
    return display_values(stored_values_domain(dtype), attrs, voi, out_max)


def modality_range(low: float, high: float, attrs: Dataset) -> tuple[float, float]:
    """The range of modality values that stored values `low`..`high` map to."""
    import numpy as np

    if attrs.get("ModalityLUTSequence"):
        stored = np.arange(int(low), int(high) + 1, dtype=np.int64)
    else:  # a rescale is linear: the ends suffice (a negative slope swaps them)
        stored = np.array([low, high], dtype=np.float64)
    values = apply_modality(stored, attrs)
    return float(values.min()), float(values.max())


def lut_index(frame: np.ndarray) -> np.ndarray:
    """The frame viewed as unsigned integers, to index a LUT built by `stored_values_domain`."""
    return frame.view(f"u{frame.dtype.itemsize}")


def uses_lut(frame: np.ndarray) -> bool:
    return frame.dtype.kind in "ui" and frame.dtype.itemsize <= 2


# Display LUTs outlive the file they were built for: the slices of a CT or MR
# series share their rescale and window, and building a 16-bit LUT took 1.5 ms,
# a tenth of a 512^2 slice's whole conversion.  Only LUTs that plain values
# define are kept; a LUT Sequence is keyed by identity, which is valid only
# while its file is open.
_SHARED_LUTS: dict[tuple, np.ndarray] = {}
SHARED_LUTS_KEPT = 16  # LUTs kept at most (a 16-bit one is 64-128 KB)


def render_grayscale(
    frames: Iterable[np.ndarray], attrs_of, voi_of, out_max: int, overlays=(), numbers=None
) -> Iterator[np.ndarray]:
    """Render stored greyscale frames for display, one LUT per distinct frame setting.

    `numbers` are the file's frame numbers of the frames given, when not in storage order
    (which overlay frame belongs to each)."""
    luts: dict[tuple, np.ndarray] = {}  # this call's LUTs from LUT Sequences
    for index, frame in enumerate(frames):
        attrs = attrs_of(index)
        voi = voi_of(attrs)
        if not uses_lut(frame):
            shown = display_values(frame, attrs, voi, out_max)
        else:
            key = (frame.dtype.str, voi, out_max, _lut_key(attrs))
            shareable = not (attrs.get("ModalityLUTSequence") or attrs.get("VOILUTSequence"))
            cache = _SHARED_LUTS if shareable else luts
            if key not in cache:
                if len(cache) >= SHARED_LUTS_KEPT:
                    cache.clear()
                cache[key] = grayscale_lut(frame.dtype, attrs, voi, out_max)
            shown = cache[key][lut_index(frame)]
        number = numbers[index] if numbers is not None else index
        yield apply_overlays(shown, number, overlays, out_max) if overlays else shown


def _lut_key(attrs: Dataset) -> tuple:
    """What makes two frames' display LUTs differ, beyond the VOI itself."""
    return (
        str(attrs.get("RescaleSlope", "")), str(attrs.get("RescaleIntercept", "")),
        id(attrs.get("ModalityLUTSequence")), id(attrs.get("VOILUTSequence")),
        is_inverted(attrs),
    )


def overlay_planes(ds: Dataset) -> list[tuple[int, np.ndarray, int, int]]:
    """The graphic overlays of `ds` (PS3.3 C.9.2 Overlay Plane Module).

    Returns ``(first frame index, bitmap frames, top row, left column)`` for each
    Overlay Type G plane that carries its own Overlay Data; viewers (and DCMTK's
    default) draw these over the image.  Region-of-interest (R) planes outline
    an area for analysis and are not drawn.
    """
    planes = []
    for group in range(0x6000, 0x6020, 2):
        kind = ds[group, 0x0040].value if (group, 0x0040) in ds else "G"
        if (group, 0x3000) not in ds or str(kind).strip() != "G":
            continue
        try:
            bitmap = ds.overlay_array(group)
        except Exception as exc:
            raise CorruptFile(f"invalid overlay plane {group:04X}: {first_line(exc)}") from None
        bitmap = bitmap.reshape((-1,) + bitmap.shape[-2:])
        origin = ds.get((group, 0x0050))
        top, left = (int(origin.value[0]) - 1, int(origin.value[1]) - 1) if origin and origin.VM == 2 else (0, 0)
        first = int(ds.get((group, 0x0051)).value) - 1 if (group, 0x0051) in ds else 0
        planes.append((first, bitmap, top, left))
    return planes


def apply_overlays(frame: np.ndarray, index: int, planes, out_max: int) -> np.ndarray:
    """Draw the overlay bits that belong to frame `index` in white (DCMTK's Replace mode)."""
    for first, bitmap, top, left in planes:
        if not first <= index < first + len(bitmap):
            continue
        bits = bitmap[index - first]
        rows, cols = frame.shape[:2]
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + bits.shape[0], rows), min(left + bits.shape[1], cols)
        if r1 <= r0 or c1 <= c0:
            continue
        region = frame[r0:r1, c0:c1]
        region[bits[r0 - top : r1 - top, c0 - left : c1 - left] != 0] = out_max
    return frame


def palette_lut(dtype: np.dtype, ds: Dataset) -> np.ndarray:
    """PALETTE COLOR (PS3.3 C.7.6.3.1.5-6, C.7.9): an 8-bit RGB entry per stored value.

    pydicom's `apply_color_lut` expands normal and segmented LUTs; applying it
    once to every possible index gives a table the frames are looked up in.
    16-bit LUT entries are scaled to 8 bits with rounding.
    """
    import numpy as np
    from pydicom.pixels import apply_color_lut

    check_palette(ds)
    domain = stored_values_domain(dtype)
    try:
        table = apply_color_lut(np.clip(domain, 0, None).astype(dtype), _native_order_luts(ds))
    except (ValueError, TypeError, IndexError, AttributeError, KeyError) as exc:
        raise CorruptFile(f"invalid palette colour lookup table: {first_line(exc)}") from None
    if table.ndim != 2 or table.shape[1] not in (3, 4):
        raise CorruptFile(f"palette colour lookup tables give {table.shape[-1]} channels, not red, green and blue")
    return to_eight_bit(table[:, :3], 16 if table.dtype.itemsize > 1 else 8)


def check_palette(ds: Dataset) -> None:
    """Refuse palette LUTs that contradict their descriptors (PS3.3 C.7.6.3.1.5-6)."""
    for colour in ("Red", "Green", "Blue"):
        descriptor = ds.get(f"{colour}PaletteColorLookupTableDescriptor")
        if not descriptor or len(descriptor) != 3:
            raise CorruptFile(f"missing or invalid {colour} Palette Color Lookup Table Descriptor")
        entries, bits = int(descriptor[0]) or 65536, int(descriptor[2])
        if bits not in (8, 16):
            raise CorruptFile(f"{colour} palette LUT entries of {bits} bits (only 8 or 16 are allowed)")
        data = ds.get(f"{colour}PaletteColorLookupTableData")
        if data is not None and len(data) < entries * (1 if bits == 8 and len(data) < 2 * entries else 2):
            raise CorruptFile(f"{colour} palette LUT data is shorter than its descriptor ({len(data)} bytes "
                              f"for {entries} entries)")


def _native_order_luts(ds: Dataset) -> Dataset:
    """`ds` with 16-bit palette LUT data in little-endian order.

    pydicom 3.0's `apply_color_lut` reads (non-segmented) LUT data in the
    machine's byte order, so a big-endian file's palette comes out byte-swapped
    (OBXXXX1A_expb differed from DCMTK by 12 levels on average, up to 254).
    """
    import numpy as np

    if ds.original_encoding[1] is not False:
        return ds
    swapped = ds.copy()
    for colour in ("Red", "Green", "Blue", "Alpha"):
        keyword = f"{colour}PaletteColorLookupTableData"
        data = ds.get(keyword)
        if data and len(data) % 2 == 0 and int(ds.RedPaletteColorLookupTableDescriptor[2]) == 16:
            swapped[keyword].value = np.frombuffer(data, dtype=">u2").astype("<u2").tobytes()
    return swapped


def to_eight_bit(values: np.ndarray, bits: int) -> np.ndarray:
    """Scale unsigned values of `bits` significant bits to 0–255, rounding."""
    import numpy as np

    if bits == 8 and values.dtype == np.uint8:
        return values
    full_scale = float(2**bits - 1)
    scaled = np.rint(values.astype(np.float64) * (255.0 / full_scale))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def render_colour(frames: Iterable[np.ndarray], ds: Dataset) -> Iterator[np.ndarray]:
    """Colour frames as 8-bit RGB (PS3.3 C.7.6.3.1.2).

    RGB and YBR come out of the decoder as RGB; deeper samples are scaled
    from Bits Stored to 8 bits; PALETTE COLOR is looked up in its LUTs.
    """
    import numpy as np

    photometric = str(ds.PhotometricInterpretation).strip()
    bits_stored = int(ds.get("BitsStored") or ds.BitsAllocated)
    table = None
    for frame in frames:
        if photometric == "PALETTE COLOR":
            if table is None:
                table = palette_lut(frame.dtype, ds)
            yield table[lut_index(frame)]
        elif frame.dtype == np.uint8:
            yield frame
        else:
            yield to_eight_bit(frame, min(bits_stored, 8 * frame.dtype.itemsize))


def is_colour(ds: Dataset) -> bool:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    return photometric not in ("MONOCHROME1", "MONOCHROME2")


def rendered_frames(
    path: Path, ds: Dataset, out_max: int, window: tuple[float, float] | None, draw_overlays: bool = True,
    order: list[int] | None = None,
) -> tuple[Iterator[np.ndarray], str]:
    """The display frames of `path` (in `order`, when given) and a description of the VOI used.

    Overlays are drawn unless `draw_overlays` is false (``--redact``: the
    profile removes Overlay Data, whose graphics can hold text).

    When the file has no VOI and no `window` is given, the whole clip's
    modality range is used (one range for all frames, so a loop does not
    flicker): that needs a first pass over the frames, which are kept for the
    second pass when they fit in CLIP_CACHE_BYTES and decoded again otherwise.
    """
    if is_colour(ds):
        return render_colour(decode_frames(path, ds, order), ds), "colour"

    attrs_cache: dict[int, Dataset] = {}
    numbers = order or range(number_of_frames(ds))  # the file's frame number of each frame shown

    def attrs_of(index: int) -> Dataset:
        if index not in attrs_cache:
            attrs_cache[index] = frame_attributes(ds, numbers[index])
        return attrs_cache[index]

    overlays = overlay_planes(ds) if draw_overlays else []
    file_vois = {choose_voi(attrs_of(0), window)}
    if "PerFrameFunctionalGroupsSequence" in ds and window is None:
        file_vois |= {choose_voi(attrs_of(i), None) for i in range(number_of_frames(ds))}
    if None not in file_vois:
        voi_descriptions = sorted({v.describe() for v in file_vois})
        description = voi_descriptions[0] if len(voi_descriptions) == 1 else "per-frame windows"
        return (
            render_grayscale(
                decode_frames(path, ds, order), attrs_of, lambda a: choose_voi(a, window), out_max, overlays,
                numbers,
            ),
            description,
        )

    kept, low, high = clip_stored_range(decode_frames(path, ds, order), attrs_of)
    voi_range = Voi("range", low, high, source="no window in file")

    def voi_of(attrs: Dataset) -> Voi:
        return choose_voi(attrs, window) or voi_range

    frames = iter(kept) if kept is not None else decode_frames(path, ds, order)
    return render_grayscale(frames, attrs_of, voi_of, out_max, overlays, numbers), voi_range.describe()


def clip_stored_range(frames: Iterable[np.ndarray], attrs_of) -> tuple[list | None, float, float]:
    """One pass over a clip: its modality-value range, and the frames if they fit the cache."""
    import numpy as np

    kept: list | None = []
    kept_bytes = 0
    low, high = float("inf"), float("-inf")
    for index, frame in enumerate(frames):
        finite = frame if frame.dtype.kind in "ui" else frame[np.isfinite(frame)]
        if finite.size:
            lo, hi = modality_range(finite.min(), finite.max(), attrs_of(index))
            low, high = min(low, lo), max(high, hi)
        if kept is not None:
            kept_bytes += frame.nbytes
            if kept_bytes <= CLIP_CACHE_BYTES:
                kept.append(frame)
            else:
                kept = None
    if low > high:
        low = high = 0.0
    return kept, low, high


# Clips with more pixels than this are decoded in a helper process while this one
# encodes: measured on a 1024^2 x 100 JPEG Lossless angiography run when pylibjpeg
# decoded it, decoding (~6 s) and encoding (~8 s) each held one core, and
# pylibjpeg keeps the GIL, so a thread would not overlap them.  libjpeg-turbo now
# decodes that run in 1 s (see `use_libjpeg_turbo`) and the helper gained it
# nothing but 80 MB of memory, so what libjpeg-turbo decodes stays in process;
# the helper still pays for the syntaxes pylibjpeg decodes (JPEG-LS, JPEG 2000,
# RLE).  Small clips are not worth starting a process for (see `rendered_frames_in_helper`).
PARALLEL_DECODE_PIXELS = 16 * 1024 * 1024


def decode_in_helper(ds: Dataset, frames: int) -> bool:
    """Whether to decode this clip in a helper process (see `PARALLEL_DECODE_PIXELS`)."""
    threshold = int(environment_setting(ENV_HELPER_PIXELS) or PARALLEL_DECODE_PIXELS)
    if frames < 2 or frames * int(ds.Rows) * int(ds.Columns) < threshold:
        return False
    return transfer_syntax_of(ds) not in TURBO_SYNTAXES


def rendered_frames_in_helper(
    path: Path, ds: Dataset, out_max: int, window: tuple[float, float] | None, draw_overlays: bool = True,
    order: list[int] | None = None,
) -> tuple[Iterator[np.ndarray], str]:
    """`rendered_frames`, run in a helper process that sends frames through a pipe.

    The helper is always spawned, whatever the pool's start method: a forked
    helper inherits every descriptor of its worker, the pool's pipes among
    them, so a worker killed while its helper ran (the OOM killer) stayed
    "alive" to the pool and the batch hung (2 of 4 tries), the helper blocked
    on a pipe no one read.  A spawned helper holds only its end of its pipe:
    when the worker dies, its next write fails and it exits.  Spawning costs
    about 0.24 s a clip here (measured on 10-frame RLE clips forced through
    it), against the seconds a clip of PARALLEL_DECODE_PIXELS takes to decode.

    The helper reads the dataset itself (plain values cross the process
    boundary); its errors come back as the same `ConversionError`; if this
    process stops (an error in an encoder, Ctrl-C), the helper is ended.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    helper = context.Process(target=_render_into_pipe, args=(send, path, out_max, window, draw_overlays, order),
                             daemon=True)
    helper.start()
    send.close()
    try:
        kind, payload = receive.recv()
    except EOFError:
        helper.join()
        raise CorruptFile(f"the decoding process stopped (exit status {helper.exitcode})") from None
    if kind == "error":
        helper.join()
        raise payload

    def frames() -> Iterator[np.ndarray]:
        import numpy as np

        try:
            while True:
                kind, value = receive.recv()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                shape, dtype = value
                yield np.frombuffer(receive.recv_bytes(), dtype=dtype).reshape(shape)
        except EOFError:
            raise CorruptFile(f"the decoding process stopped (exit status {helper.exitcode})") from None
        finally:
            receive.close()
            if helper.is_alive():
                helper.terminate()
            helper.join()

    return frames(), payload


def _render_into_pipe(send, path: Path, out_max: int, window, draw_overlays: bool, order) -> None:
    """In the helper: render every frame and send it; errors are sent, not raised."""
    import signal

    import numpy as np

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the converting process decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        try:
            frames, description = rendered_frames(path, read_dataset(path), out_max, window, draw_overlays, order)
            send.send(("description", description))
            for frame in frames:
                send.send(("frame", (frame.shape, frame.dtype.str)))
                send.send_bytes(np.ascontiguousarray(frame).reshape(-1).view(np.uint8))
            send.send(("end", None))
        except ConnectionError:
            raise
        except ConversionError as exc:
            send.send(("error", exc))
        except Exception as exc:
            send.send(("error", CorruptFile(f"cannot decode pixel data: {first_line(exc)}")))
    except ConnectionError:  # the worker is gone (killed): there is no one to tell
        pass
    finally:
        send.close()


# =============================================================================
# Frame timing
# =============================================================================

@dataclasses.dataclass(frozen=True)
class Timing:
    """How long each frame shows: a nominal rate plus per-frame durations in ms."""

    rate: Fraction
    durations_ms: tuple[float, ...]
    source: str

    def describe(self) -> str:
        return f"{float(self.rate):.4g} fps ({self.source})"


def frame_timing(ds: Dataset, frames: int, fps: Fraction | None) -> Timing:
    """The frame rate of a cine (PS3.3 C.7.6.5 Cine Module), or `fps` when given.

    Order of precedence: the attribute that Frame Increment Pointer names
    (Frame Time or Frame Time Vector), then Frame Time, Recommended Display
    Frame Rate, Cine Rate, and finally 10 fps.  A Frame Time Vector keeps its
    variable timing as per-frame durations.
    """
    if fps is not None:
        return _constant_timing(Fraction(fps), frames, "--fps")
    order = [k for k in frame_increment_keywords(ds) if k in ("FrameTime", "FrameTimeVector")]
    order += ["FrameTime", "RecommendedDisplayFrameRate", "CineRate"]
    for keyword in order:
        timing = _timing_from(ds, keyword, frames)
        if timing is not None:
            return timing
    return _constant_timing(DEFAULT_FPS, frames, "default")


def frame_increment_keywords(ds: Dataset) -> list[str]:
    """The keywords Frame Increment Pointer (PS3.3 C.7.6.6) names: what the frames step through."""
    pointers = ds.get("FrameIncrementPointer") or []
    return [_keyword_of(tag) for tag in (pointers if is_multi(pointers) else [pointers])]


def _keyword_of(tag) -> str:
    from pydicom.datadict import keyword_for_tag

    try:
        return keyword_for_tag(tag)
    except Exception:
        return ""


def _timing_from(ds: Dataset, keyword: str, frames: int) -> Timing | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    try:
        if keyword == "FrameTimeVector":
            vector = [float(v) for v in (value if is_multi(value) else [value])]
            # The first entry is the time before the first frame, usually 0 (C.7.6.5.1.2).
            durations = [v for v in vector[1:] if v > 0]
            if len(durations) < frames - 1:
                return None
            durations = durations[: frames - 1]
            mean = sum(durations) / len(durations)
            durations = durations + [mean]
            return Timing(_rate_of(1000.0 / mean), tuple(durations), "Frame Time Vector")
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if number <= 0:
        return None
    if keyword == "FrameTime":
        return _constant_timing(_rate_of(1000.0 / number), frames, f"Frame Time {number:g} ms")
    label = "Recommended Display Frame Rate" if keyword.startswith("Recommended") else "Cine Rate"
    return _constant_timing(_rate_of(number), frames, f"{label} {number:g}")


def _rate_of(fps: float) -> Fraction:
    """A rate as an exact fraction: 29.97 -> 30000/1001, 12.5 -> 25/2, 14.9993 -> 15.

    Frame Time is stored in ms with a few decimals (66.67 for 15 fps), so the
    rate it gives is snapped to the nearest NTSC rate (N*1000/1001), whole
    number, or fraction with a small denominator, in that order.
    """
    ntsc = round(fps * 1.001)
    if ntsc and abs(fps * 1.001 - ntsc) <= 1e-4 * fps:
        return Fraction(ntsc * 1000, 1001)
    if round(fps) and abs(fps - round(fps)) <= 1e-3 * fps:
        return Fraction(round(fps))
    small = Fraction(fps).limit_denominator(100)
    if abs(float(small) - fps) <= 1e-4 * fps:
        return small
    return Fraction(fps).limit_denominator(1000)


def _constant_timing(rate: Fraction, frames: int, source: str) -> Timing:
    if rate <= 0:
        raise CorruptFile(f"invalid frame rate {rate}")
    return Timing(rate, tuple([1000.0 / float(rate)] * frames), source)


# =============================================================================
# Writers
#
# Each writer writes to the exact path it is given; `staged_outputs` hands it
# a temporary name in the output folder and renames on success.
# =============================================================================

# PNG is written here rather than through Pillow, whose writer tries four row
# filters per row (libpng's heuristic) with no option to skip the search; that
# search was over half its time.  Every row gets the "Up" filter, then libdeflate
# (bundled by imagecodecs) at level 1.  Measured on 16- and 8-bit CT, MR and CR
# images and an RGB ultrasound, against Python's zlib at level 1 (level 6 took
# twice as long for files 3-6% larger; 9 was 5x for 1%): faster on every image
# (a 512^2 CT 2.0 ms against 2.3 ms, a 1955x1841 CR 58 ms against 91 ms, the
# ultrasound 3.3 ms against 6.6 ms), with 16-bit files 0-25% smaller; 8-bit
# CRs came out up to 24% larger.  zlib-ng at level 1 was faster again but made
# CR files 30-70% larger.  Pillow with its filter search took 6.3 ms for the CT.
PNG_COMPRESS_LEVEL = 1
PNG_FILTER_UP = 2  # filter type byte (PNG 9.2): each byte minus the byte above it


def write_png(frame: np.ndarray, path: Path) -> None:
    """A PNG (ISO/IEC 15948) of one frame: 8/16-bit grey or 8-bit RGB, as the array's dtype and shape say."""
    import struct
    import zlib

    import imagecodecs
    import numpy as np

    height, width = frame.shape[:2]
    samples = np.ascontiguousarray(frame, dtype=frame.dtype.newbyteorder(">"))  # PNG is big-endian
    samples = samples.view(np.uint8).reshape(height, -1)
    rows = np.empty((height, samples.shape[1] + 1), np.uint8)
    rows[:, 0] = PNG_FILTER_UP
    rows[0, 1:] = samples[0]  # the row above the first counts as zeros
    np.subtract(samples[1:], samples[:-1], out=rows[1:, 1:])
    colour_type = 0 if frame.ndim == 2 else 2  # grey or RGB
    chunks = (
        (b"IHDR", struct.pack(">IIBBBBB", width, height, 8 * frame.dtype.itemsize, colour_type, 0, 0, 0)),
        (b"IDAT", imagecodecs.deflate_encode(rows, level=PNG_COMPRESS_LEVEL)),  # a zlib stream, as PNG wants
        (b"IEND", b""),
    )
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        for kind, body in chunks:
            f.write(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))


# The index page's pictures: one JPEG of at most 256 px per output, beside nothing the user
# opens (OUTPUT/.thumbs mirrors the output tree).  Measured on a 256 px CT and ECG page:
# JPEG at quality 80 takes 0.3-0.4 ms and 6-9 KB, WebP 6-9 ms and 3-5 KB, so 3,000 slices
# cost 1 s of JPEG against 27 s of WebP; the page loads one thumbnail per series.
THUMBS_FOLDER = ".thumbs"
THUMB_SIZE = 256
THUMB_QUALITY = 80


def thumbnail_path(stem: Path, thumbs: Path) -> Path:
    """Where the thumbnail of the outputs of `stem` goes: `thumbs` mirrors the output tree."""
    return thumbs / Path(f"{stem.relative_to(thumbs.parent)}.jpg")


def write_thumbnail(frame: np.ndarray, path: Path) -> None:
    """`frame` (grey or RGB, 8 or 16 bits) as an 8-bit JPEG fitted within THUMB_SIZE."""
    import numpy as np
    from PIL import Image

    if frame.dtype != np.uint8:
        frame = to_eight_bit(frame, 8 * frame.dtype.itemsize)
    Image.fromarray(np.ascontiguousarray(fit_within(frame, THUMB_SIZE))).save(path, "JPEG", quality=THUMB_QUALITY)


def gif_durations(durations_ms: Iterable[float]) -> list[int]:
    """Per-frame GIF delays in ms, rounded to the format's 10 ms ticks without drift.

    GIF stores delays in hundredths of a second; rounding each frame alone
    makes a 15 fps loop run at 14.3 fps.  The rounding error is carried to
    the next frame so the total stays true.
    """
    return list(_gif_delays(durations_ms))


def _gif_delays(durations_ms: Iterable[float]) -> Iterator[int]:
    """`gif_durations` one at a time (a video's frame count is known only once it is decoded)."""
    carried = 0.0
    for duration in durations_ms:
        exact = duration + carried
        ticks = max(2, round(exact / 10.0))  # browsers slow delays under 20 ms to 100 ms
        yield ticks * 10
        carried = exact - ticks * 10


def fit_within(frame: np.ndarray, max_size: int | None) -> np.ndarray:
    """`frame` scaled down (never up) so its longer side is at most `max_size`."""
    import numpy as np
    from PIL import Image

    rows, cols = frame.shape[:2]
    if not max_size or max(rows, cols) <= max_size:
        return frame
    scale = max_size / max(rows, cols)
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    # area averaging: no ringing, and it averages noise down instead of aliasing it
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BOX))


# GIF quality and size (issue #18; tests/test_gif_size.py).  A grey frame is
# shown through uniform bins of greys, each drawn as the mean grey of its
# pixels, as wide as keeps the frame at 40 dB PSNR against the 8-bit frame.  On
# the 512^2 x 40-frame noisy angiography-like clips that makes 0.29-0.31 of
# Pillow's optimize=True GIF where the old 45 dB ladder of Lloyd-Max palettes
# made 0.73-0.76 (0.42 on pydicom's noisy MR cine, was 0.81; 0.19 on the XA
# sample, was 0.22), in half the CPU time (3.2 ms a 512^2 frame, was 5.6-6.4).
# Noise is what LZW pays for, and at a given error uniform bins leave the fewest
# distinct values: Lloyd-Max palettes held to 40 dB made 0.42-0.58.  Colour
# frames keep their median-cut palettes and drift thresholds, tried in turn
# until the frame reaches its target (the palette cine needs the 31-colour
# first step: 0.51 without it).
GIF_MIN_PSNR_GREY = 40.0    # visually lossless for a preview; the frame PNGs and the MP4 are the faithful outputs
GIF_MIN_PSNR_COLOUR = 42.0  # colour clips are mostly lossy-JPEG ultrasound already
# Bin widths tried, coarsest first.  Whole greys alone step over the target
# (8 greys: 40.9 dB on noise, 9: 39.8): quarters made the GIFs 0-18% smaller.
# The last, 1.25, is never under 48 dB (no pixel more than one grey off), so any
# target up to that is met.
GIF_GREY_STEPS = tuple(quarters / 4 for quarters in range(64, 4, -1))  # 16, 15.75, ... 1.25
GIF_GREY_EXACT = 32  # a frame of at most this many greys keeps them all (synthetic, labels, few-level data)
GIF_GREY_RUN = 8  # unchanged greys in a row at least this long are left transparent; shorter runs are redrawn
GIF_COLOUR_STEPS = ((31, 4), (63, 4), (127, 3), (255, 2), (255, 0))
GIF_MAX_COLOURS = 255  # one palette entry is always left free for "unchanged" (transparent)
GIF_COLOUR_MAX_ERROR = 32  # levels in any channel: a pixel further off gets a colour of its own
GIF_RARE_COLOURS = 16  # at most this many palette entries for such colours


def grey_bins(step: float) -> np.ndarray:
    """The bin of each grey value (256 entries): bins `step` greys wide, but black and white
    each a bin of their own, so a black background, a redacted band or white burned-in
    text stays exactly black or white."""
    import numpy as np

    inner = 1 + np.floor((np.arange(1, 255) - 1) / step).astype(np.int64)
    return np.concatenate(([0], inner, [inner[-1] + 1])).astype(np.uint8)


def bin_greys(histogram: np.ndarray, bins: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """The grey each bin is shown as for a frame with this 256-bin `histogram`: the mean
    of its pixels, or its `previous` grey where that is within one grey of the mean.

    Keeping the grey keeps the unchanged pixels of the bin unchanged on screen, so
    they stay transparent: a band of a noisy static frame brightened by 40 greys
    cost 0.41 of the first frame's bytes with fresh means, 0.13 with kept ones.
    """
    import numpy as np

    count = int(bins[-1]) + 1
    weight = np.bincount(bins, histogram, count)
    mean = np.bincount(bins, histogram * np.arange(256), count) / np.maximum(weight, 1)  # 0: no pixel in it
    if previous is not None:
        mean = np.where(np.abs(mean - previous) <= 1, previous, mean)
    return np.rint(mean).astype(np.uint8)


def grey_psnr(histogram: np.ndarray, bins: np.ndarray, greys: np.ndarray) -> float:
    """PSNR of a frame with this 256-bin `histogram` shown through `bins` and their `greys`:
    worked out on the histogram (256 values, not the pixels), exactly as `psnr` would."""
    import numpy as np

    error = np.arange(256) - greys.take(bins).astype(np.int64)
    return _psnr_of(int((histogram * error * error).sum()), int(histogram.sum()))


def choose_grey_bins(histogram: np.ndarray, previous: tuple | None) -> tuple[np.ndarray, np.ndarray]:
    """(bins, greys) for a frame: the `previous` frame's bins while they keep it at
    GIF_MIN_PSNR_GREY, else the widest of GIF_GREY_STEPS that does (0.4 ms a 512^2 frame).

    Keeping the bins keeps the palette indices of unchanged pixels: a new width
    for a few changed rows of a noisy static frame redrew all of it (0.96 of the
    first frame's bytes where 0.03 were enough).  A width is only left when the
    target is missed, never for a coarser one, so a clip whose first frame needs
    fine bins keeps them; its noise, which sets the width, changes little.
    """
    if previous is not None:
        bins = previous[0]
        greys = bin_greys(histogram, bins, previous[1])
        if grey_psnr(histogram, bins, greys) >= GIF_MIN_PSNR_GREY:
            return bins, greys
    for step in GIF_GREY_STEPS:
        bins = grey_bins(step)
        greys = bin_greys(histogram, bins)
        if grey_psnr(histogram, bins, greys) >= GIF_MIN_PSNR_GREY:
            break
    return bins, greys


def quantise_grey(frame: np.ndarray, histogram: np.ndarray, previous: tuple | None = None):
    """Palette indices of `frame` (whose 256-bin `histogram` is given), its grey palette
    (N x 3, R=G=B, N < 256), the grey each pixel is then shown as, and the (bins, greys)
    used, for the next frame (None when the frame's few greys were kept exactly)."""
    import numpy as np

    present = np.flatnonzero(histogram)
    if len(present) <= GIF_GREY_EXACT:  # kept exactly: nothing to gain from merging so few
        bins, greys, chosen = np.zeros(256, dtype=np.uint8), present.astype(np.uint8), None
        bins[present] = np.arange(len(present))
    else:
        bins, greys = chosen = choose_grey_bins(histogram, previous)
    indices = bins.take(frame)
    return indices, np.repeat(greys[:, None], 3, axis=1), greys.take(indices), chosen


def quantise_colour(frame: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Palette indices of an RGB `frame`, its own palette of at most `count` colours, and
    the colour each pixel is then shown as.

    Median cut splits colour space by pixel count, so a colour only a few
    pixels have (an ultrasound's green ECG marker, a blue icon) goes to the
    nearest big box: up to 116 levels off on pydicom's ultrasound cines, at a
    PSNR that still passed.  Such colours take over the least-used entries.
    """
    import numpy as np
    from PIL import Image

    image = Image.fromarray(frame).quantize(colors=min(count, GIF_MAX_COLOURS),
                                            method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette = np.frombuffer(image.palette.tobytes(), dtype=np.uint8).reshape(-1, 3)[:count].copy()
    indices = np.asarray(image).copy()
    values = np.take(palette, indices, axis=0)  # 1 ms; palette[indices] takes 3
    far = channel_error(values, frame) > GIF_COLOUR_MAX_ERROR
    if far.any():
        give_rare_colours_entries(frame, indices, palette, far)
        values = np.take(palette, indices, axis=0)
    return indices, palette, values


def channel_error(shown: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Per pixel, the largest |shown - wanted| over the colour channels (int16)."""
    import numpy as np

    error = np.abs(shown.astype(np.int16) - wanted)
    return np.maximum(np.maximum(error[..., 0], error[..., 1]), error[..., 2])  # 20x drift.max(axis=2)


def give_rare_colours_entries(frame: np.ndarray, indices: np.ndarray, palette: np.ndarray, far: np.ndarray) -> None:
    """Map the `far` pixels to colours of their own, in place, in the least-used palette entries.

    Up to a quarter of the entries (at most 16) are taken; the pixels that
    used one move to the remaining entry nearest to its colour (per entry, not
    per pixel: 0.3 ms a frame where the nearest entry for each pixel took 3).
    """
    import numpy as np
    from PIL import Image

    taken = min(GIF_RARE_COLOURS, len(palette) // 4)
    if taken == 0:
        return
    rare = Image.fromarray(np.ascontiguousarray(frame[far][None])).quantize(
        colors=taken, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    rare_palette = np.frombuffer(rare.palette.tobytes(), dtype=np.uint8).reshape(-1, 3)[:taken]
    rare_indices = np.asarray(rare)[0]
    freed = np.argsort(np.bincount(indices.ravel(), minlength=len(palette)), kind="stable")[: len(rare_palette)]
    kept = np.setdiff1d(np.arange(len(palette)), freed)
    distance = ((palette[freed, None, :].astype(np.int32) - palette[None, kept, :]) ** 2).sum(axis=2)
    moved_to = np.arange(len(palette), dtype=indices.dtype)
    moved_to[freed] = kept[distance.argmin(axis=1)]
    np.take(moved_to, indices, out=indices)
    palette[freed] = rare_palette
    indices[far] = freed[rare_indices]


def psnr(shown: np.ndarray, wanted: np.ndarray) -> float:
    """Peak signal-to-noise ratio of 8-bit `shown` against `wanted`, in dB (inf if equal).

    The squared errors are summed exactly (integers), so this agrees to the last
    bit with the error `grey_psnr` works out from a histogram: a frame
    written at the target is measured at the target, not a rounding under it.
    """
    import numpy as np

    error = shown.astype(np.int32) - wanted
    return _psnr_of(int(np.square(error).sum(dtype=np.int64)), error.size)  # 0.4 ms for 512^2 RGB; float32 took 2.6


def _psnr_of(squared_error: int, count: int) -> float:
    """PSNR in dB of `count` 8-bit samples whose squared errors sum to `squared_error`."""
    import math

    return float("inf") if squared_error == 0 else 10 * math.log10(255.0**2 * count / squared_error)


def in_long_runs(mask: np.ndarray, length: int) -> np.ndarray:
    """The pixels of a 2-D boolean `mask` that lie in a run of at least `length` True pixels along a row."""
    import numpy as np

    cols = mask.shape[1]
    starts = mask[:, : max(0, cols - length + 1)].copy()  # True where a whole run of `length` starts
    for shift in range(1, length):  # loops over the run's length, not the pixels
        starts &= mask[:, shift : shift + starts.shape[1]]
    out = np.zeros_like(mask)
    for shift in range(length):
        out[:, shift : shift + starts.shape[1]] |= starts
    return out


def gif_grey_update(frame: np.ndarray, shown: np.ndarray | None, previous: tuple | None):
    """How to draw grey `frame` over the canvas `shown`, the previous frame's (bins, greys)
    given; returns indices, palette, drawn, canvas and the (bins, greys) for the next frame.

    The canvas becomes exactly the quantised frame.  A pixel whose grey is unchanged is
    left transparent only inside a row-wise run of GIF_GREY_RUN or more: LZW codes
    a long run of one index in a few codes, but a lone transparent pixel is one more
    symbol in the noise.  On noisy clips half the pixels keep their grey, scattered,
    and leaving all of them transparent made the GIF 21-29% larger than redrawing
    them; on a static textured background with a moving part, redrawing everything
    changed made it 3x larger.  Runs of 8: within 3% of the better of the two on
    each clip, 5% under both on a smooth one (runs of 4: 6-13% over on noise; runs
    of 16: 9% over on the static background).
    """
    import numpy as np

    histogram = np.bincount(frame.ravel(), minlength=256)
    indices, palette, values, chosen = quantise_grey(frame, histogram, previous)
    if shown is None:
        return indices, palette, np.ones(frame.shape, dtype=bool), values, chosen
    return indices, palette, ~in_long_runs(values == shown, GIF_GREY_RUN), values, chosen


def gif_colour_update(frame: np.ndarray, shown: np.ndarray | None):
    """How to draw RGB `frame` over the canvas `shown`; returns indices, palette, drawn, canvas.

    Each (palette size, threshold) step is tried in turn and the first whose
    canvas reaches the PSNR target against the frame is kept; a pixel is redrawn
    where it drifted more than the threshold from the canvas.
    """
    import numpy as np

    if shown is not None:
        drift = channel_error(frame, shown)
    for count, threshold in GIF_COLOUR_STEPS:
        indices, palette, values = quantise_colour(frame, count)
        if shown is None:
            drawn, canvas = np.ones(frame.shape[:2], dtype=bool), values
        else:
            drawn = drift > threshold
            canvas = np.where(drawn[..., None], values, shown)
        if psnr(canvas, frame) >= GIF_MIN_PSNR_COLOUR:
            break
    return indices, palette, drawn, canvas


def gif_frame_update(frame: np.ndarray, shown: np.ndarray | None, bins: tuple | None):
    """Choose how to draw `frame` over the canvas `shown`, the grey `bins` of the frame
    before given; returns indices, palette, drawn, canvas, and the bins for the next frame
    (see `gif_grey_update`, `gif_colour_update`)."""
    if frame.ndim == 2:
        return gif_grey_update(frame, shown, bins)
    return (*gif_colour_update(frame, shown), None)


@contextlib.contextmanager
def gif_writer(path: Path, durations_ms: Iterable[float], max_size: int | None = DEFAULT_GIF_MAX_SIZE):
    """Stream frames into a looping GIF89a; yields ``write(frame)``.

    Each frame carries its own palette (greys in bins, or colours by median
    cut) and only the pixels it redraws: the rest is transparent, and the frame
    is cropped to the box of what it draws (see `gif_frame_update`).  The
    transparent index is the palette's first free entry, so a frame's colour
    table is no longer than it needs.  Only the displayed canvas is kept
    between frames, so a long clip streams in constant memory.
    """
    import numpy as np
    from PIL import GifImagePlugin, Image

    delays = _gif_delays(durations_ms)
    state: dict = {"shown": None, "bins": None}  # the canvas, and the grey bins of the frame before

    def write(frame: np.ndarray) -> None:
        frame = fit_within(frame, max_size)
        if state["shown"] is None:
            _write_gif_header(fp, frame.shape[1], frame.shape[0])
        shown, bins = state["shown"], state["bins"]
        indices, palette, drawn, state["shown"], state["bins"] = gif_frame_update(frame, shown, bins)
        rows, cols = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
        if rows.size:
            top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        else:  # nothing changed: a 1x1 transparent frame keeps the frame and its delay
            top, bottom, left, right = 0, 1, 0, 1
        transparent = len(palette)
        box = np.where(drawn[top:bottom, left:right], indices[top:bottom, left:right], transparent)
        image = Image.fromarray(box.astype(np.uint8), mode="L").convert("P")
        image.putpalette(palette.astype(np.uint8).tobytes() + b"\x00\x00\x00")  # + the transparent entry
        for chunk in GifImagePlugin.getdata(
            image, offset=(int(left), int(top)), duration=next(delays),
            transparency=transparent, disposal=1, include_color_table=True,
        ):
            fp.write(chunk)

    with open(path, "wb") as fp:
        yield write
        fp.write(b";")  # GIF trailer


def _write_gif_header(fp, width: int, height: int) -> None:
    """GIF89a signature, screen descriptor (no global palette), loop-forever extension."""
    import struct

    fp.write(b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00")
    fp.write(b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00")  # Netscape loop, 0 = forever


@contextlib.contextmanager
def mp4_writer(path: Path, rate: Fraction, crf: int):
    """Stream frames into an H.264 MP4 that browsers play; yields ``write(frame)``.

    H.264 High profile, yuv420p, limited range: grey frames go in as ``gray``
    and colour as ``rgb24``; libswscale converts them to limited-range BT.601,
    and the stream is tagged so.  Odd sizes are padded by repeating the last
    row/column (4:2:0 needs even sizes), never cropped or scaled.
    ``+faststart`` puts the index first so playback starts before the
    download ends.
    """
    import av
    import numpy as np

    container = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
    state: dict = {"stream": None, "count": 0}

    def write(frame: np.ndarray) -> None:
        pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
        if pad_h or pad_w:
            pad = ((0, pad_h), (0, pad_w)) + (((0, 0),) if frame.ndim == 3 else ())
            frame = np.pad(frame, pad, mode="edge")
        stream = state["stream"]
        if stream is None:
            stream = state["stream"] = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = frame.shape[1], frame.shape[0]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": X264_PRESET, "tune": X264_TUNE, "profile": "high",
                              "x264-params": X264_PARAMS}
            stream.codec_context.colorspace = av.video.reformatter.Colorspace.ITU601
            stream.codec_context.color_range = av.video.reformatter.ColorRange.MPEG
        image = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(frame), format="gray" if frame.ndim == 2 else "rgb24"
        )
        image.pts = state["count"]
        container.mux(stream.encode(image))
        state["count"] += 1

    try:
        yield write
        if state["stream"] is not None:
            container.mux(state["stream"].encode(None))
    finally:
        container.close()


def write_text(text: str, path: Path) -> None:
    """UTF-8 with ``\\n`` line ends on every platform (Windows' text mode would write ``\\r\\n``)."""
    path.write_text(text, encoding="utf-8", newline="\n")


# Temporary outputs are named ``.dicom-converter-PID-STARTED-RANDOM.part``: the
# owner's process id and its start time (centiseconds since the epoch, psutil's
# create_time), so a sweep after a crash deletes only what a dead process of
# ours left, even when its pid has since been reused by another process.
TEMPORARY_PREFIX = ".dicom-converter-"
TEMPORARY_NAME = r"\.dicom-converter-(\d+)-(\d+)-[0-9a-f]{8}\.part"


@functools.lru_cache(maxsize=None)
def _process_tag(pid: int) -> str:
    """``PID-STARTED`` of process `pid`, cached by pid so a forked child computes its own."""
    import psutil

    return f"{pid}-{round(psutil.Process(pid).create_time() * 100)}"


@functools.lru_cache(maxsize=None)
def windows_path_limit() -> int | None:
    """The longest path Windows lets this process use, or None where there is no such limit.

    260 characters (MAX_PATH, the terminating NUL included) unless long paths
    are enabled in the registry, which Python (whose manifest opts in) then honours.
    """
    if sys.platform != "win32":
        return None
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SYSTEM\CurrentControlSet\Control\FileSystem") as key:
            if winreg.QueryValueEx(key, "LongPathsEnabled")[0] == 1:
                return None
    except OSError:
        pass
    return 259


@contextlib.contextmanager
def staged_outputs(stem: Path) -> Iterator:
    """Give out temporary paths for the outputs of `stem`; rename them all at the end, or none.

    Yields ``(output, finals)``: ``output(suffix)`` stages the output named
    `stem` + `suffix` (``".png"``, ``"_frames/0001.png"``), or `final` when
    given (a thumbnail), and returns the path to write; `finals` lists the
    final names in the order they were staged.

    Outputs are written as hidden ``.part`` files in their own folder (so the
    rename is atomic), and only when the whole file converted are they renamed
    to their final names.  If a rename fails (a folder in the way) or is
    interrupted, those already renamed are removed again: a failed or
    interrupted conversion leaves no file under a final name.
    """
    staged: list[tuple[Path, Path]] = []
    finals: list[Path] = []
    limit = windows_path_limit()

    def output(suffix: str, final: Path | None = None) -> Path:
        final = Path(f"{stem}{suffix}") if final is None else final
        length = len(str(final.absolute()))
        if limit is not None and length > limit:
            raise OutputPathTooLong(f"output path {final.name} would be {length} characters, "
                                    f"more than Windows allows ({limit}): choose a shorter -o, or enable long "
                                    f"paths in Windows")
        final.parent.mkdir(parents=True, exist_ok=True)
        # a short name of its own: the final name may already be near the 255-byte limit
        while True:
            temp = final.parent / f"{TEMPORARY_PREFIX}{_process_tag(os.getpid())}-{secrets.token_hex(4)}.part"
            try:  # mode 0666 less the umask, as for any new file (mkstemp would make it 0600)
                os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
                break
            except FileExistsError:
                continue
        staged.append((temp, final))
        finals.append(final)
        return temp

    renamed: list[Path] = []
    try:
        yield output, finals
        for temp, final in staged:
            try:
                os.replace(temp, final)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, final.name) from None
            renamed.append(final)
    except BaseException:
        for path in renamed + [temp for temp, _ in staged[len(renamed):]]:
            with contextlib.suppress(OSError):
                path.unlink()
        raise


# =============================================================================
# Metadata text
# =============================================================================

SUMMARY_FIELDS = (
    ("Patient", ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")),
    ("Study", ("StudyDate", "StudyTime", "StudyDescription")),
    ("Series", ("SeriesNumber", "SeriesDescription", "Modality")),
    ("Equipment", ("Manufacturer", "ManufacturerModelName", "InstitutionName")),
)


def summary_text(ds: Dataset, rendering: dict[str, str]) -> str:
    """The short human summary at the top of the .txt."""
    lines = []
    for title, keywords in SUMMARY_FIELDS:
        lines.append(f"{title}:")
        for keyword in keywords:
            lines.append(f"  {keyword:<22} {text_of(ds.get(keyword, ''))}")
    lines.append("Image:")
    syntax = transfer_syntax_of(ds)
    from pydicom.uid import UID

    image_fields = {
        "Size": f"{ds.get('Rows', '?')} x {ds.get('Columns', '?')} (rows x columns)"
        if "Rows" in ds else "",
        "Frames": str(ds.get("NumberOfFrames", 1)) if has_pixel_data(ds) else "0",
        "Bits": f"{ds.get('BitsStored', '?')} stored of {ds.get('BitsAllocated', '?')}, "
        f"{'signed' if ds.get('PixelRepresentation') == 1 else 'unsigned'}" if "BitsAllocated" in ds else "",
        "Photometric": str(ds.get("PhotometricInterpretation", "")),
        "TransferSyntax": f"{UID(syntax).name} ({syntax})",
    }
    image_fields.update(rendering)
    for key, value in image_fields.items():
        lines.append(f"  {key:<22} {value}")
    return "\n".join(lines) + "\n"


def text_of(value) -> str:
    return "" if value is None else str(value).replace("\x00", "").strip()


def dump_dataset(ds: Dataset, depth: int = 0) -> Iterator[str]:
    """Every element like ``dcmdump`` shows it: tag, VR, keyword, value.

    Sequences are indented item by item; private tags are included; bulk and
    long binary values are summarised by their size, never dumped.

    A value pydicom has not converted yet (a raw element) is formatted from
    its bytes when `_raw_line` can prove the text is the one its conversion
    would give; any other goes through pydicom (`ds[tag]`) as always.  Raw
    elements formatted so are left raw: whoever reads them later gets
    pydicom's own conversion.
    """
    from pydicom.dataelem import RawDataElement

    indent = "  " * depth
    fast = _raw_formatting_allowed() and _raw_charset_read(ds)
    encoding = _raw_text_encoding(ds) if fast else None
    creators: dict[int, object] = {}  # what `_raw_line` has read of private creators, by tag
    for tag in ds.keys():
        raw = ds.get_item(tag, keep_deferred=True)
        if fast and isinstance(raw, RawDataElement):
            line = _raw_line(ds, int(tag), raw, encoding, creators)
            if line is not None:
                yield indent + line
                continue
        tag_text, keyword, _ = _tag_info(tag)
        keyword = keyword or _private_name(ds, tag)
        size = _bulk_size(raw, keyword, getattr(ds, "filename", None) if depth == 0 else None)
        if size is not None:
            yield f"{indent}{tag_text} {raw.VR or '??'} {keyword:<32} <{size}, not dumped>"
            continue
        try:
            element = ds[tag]
        except Exception as exc:  # a single bad value must not lose the rest of the dump
            yield f"{indent}{tag_text} {getattr(raw, 'VR', '??')} {keyword:<32} <unreadable: {first_line(exc)}>"
            continue
        if element.VR == "SQ":
            yield f"{indent}{tag_text} SQ {keyword:<32} ({len(element.value)} items)"
            for number, item in enumerate(element.value, 1):
                yield f"{indent}  item {number}"
                yield from dump_dataset(item, depth + 2)
            continue
        yield f"{indent}{tag_text} {element.VR} {keyword:<32} {_value_text(element)}"


def _bulk_size(raw, keyword: str, filename=None) -> str | None:
    """The size of a bulk value or of one still on disk (never read), or None for any other."""
    from pydicom.dataelem import RawDataElement

    deferred = isinstance(raw, RawDataElement) and raw.value is None and raw.length
    return _length_text(raw, filename) if keyword in BULK_DATA_KEYWORDS or deferred else None


def _length_text(raw, filename=None) -> str:
    """The size of a value, from the element header while the value is still on disk.

    Encapsulated pixel data has an undefined length; it runs to the end of the
    file but for its 8-byte sequence delimiter, which gives its size unread.
    """
    length = raw.length if hasattr(raw, "length") else len(raw.value or b"")
    if length != 0xFFFFFFFF:
        return f"{length} bytes"
    if filename and getattr(raw, "value_tell", None) is not None:
        with contextlib.suppress(OSError):
            return f"{os.path.getsize(filename) - raw.value_tell - 8} bytes (encapsulated)"
    return "undefined length (encapsulated)"


def _private_name(ds: Dataset, tag) -> str:
    from pydicom.tag import Tag

    tag = Tag(tag)
    if not tag.is_private:
        return "Unknown"
    if tag.is_private_creator:
        return "PrivateCreator"
    try:
        name = ds[tag].name
    except Exception:
        name = ""
    return f"Private {name}".strip() if name and "Private tag" not in name else "Private"


def _value_text(element) -> str:
    value = element.value
    if isinstance(value, (bytes, bytearray)):
        if len(value) > LONG_BINARY_BYTES:
            return f"<{len(value)} bytes of binary data>"
        return "\\".join(f"{b:02x}" for b in value) or "(empty)"
    if is_multi(value):
        items = [text_of(v) for v in value]
        shown = items[:LONG_MULTI_VALUES]
        more = f" … ({len(items)} values)" if len(items) > LONG_MULTI_VALUES else ""
        return "\\".join(shown) + more
    if value is None or value == "":
        return "(empty)"
    return text_of(value).replace("\r\n", "\n").replace("\n", " ⏎ ")


# -----------------------------------------------------------------------------
# Raw values formatted from their bytes (issue #18)
#
# pydicom converts an element when it is first read, building value objects
# (DSfloat, IS, UID, PersonName, MultiValue) and writing the element back into
# the dataset: for the .txt that was most of its cost.  The formatters below
# mirror, VR by VR, what pydicom 3's converters (pydicom.values) and
# `_value_text` make of the bytes.  Two things must not change: the text, and
# pydicom's warnings, which the log line quotes (`_with_warnings`).  So a
# formatter takes only values pydicom converts silently, and returns None for
# any other (too long, not matching the VR's pattern, not decodable, escape
# sequences, an odd length), which sends the element the old way.
# -----------------------------------------------------------------------------

_TAG_INFO: dict[int, tuple[str, str, str | None]] = {}
_PRIVATE_INFO: dict[tuple[int, str], tuple[str, str]] = {}
_INFO_LIMIT = 65536  # entries per cache; a file of random tags must not grow them without end
_UNKNOWN = object()  # a private creator that cannot be read without converting it
_LUT_DESCRIPTOR_TAGS = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})  # pydicom mends a negative first value
_RAW_TEXT_CODECS = frozenset({"ascii", "iso8859-1", "utf-8"})  # ISO_IR 6, ISO_IR 100, ISO_IR 192
_IS_PATTERN = re.compile(r" *[+\-]?[0-9]+ *")  # pydicom's IS pattern, ASCII digits only
_UI_PATTERN = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")  # pydicom's UI pattern


def _raw_formatting_allowed() -> bool:
    """Whether pydicom converts values the default way, the one the formatters mirror.

    Hooks, a data element callback, numpy or Decimal values, datetime objects
    or validation that raises all change what conversion gives or does.
    """
    import pydicom.hooks
    import pydicom.valuerep
    from pydicom import config

    hooks = pydicom.hooks.hooks
    return (
        config.data_element_callback is None
        and not hooks.raw_element_kwargs
        and hooks.raw_element_vr is pydicom.hooks.raw_element_vr
        and hooks.raw_element_value is pydicom.hooks.raw_element_value
        and pydicom.valuerep.DSclass is pydicom.valuerep.DSfloat
        and not (config.use_DS_numpy or config.use_IS_numpy or config.datetime_conversion)
        and not config.use_none_as_empty_text_VR_value
        and config.settings.reading_validation_mode != config.RAISE
    )


def _raw_charset_read(ds: Dataset) -> bool:
    """Whether converting an element of `ds` leaves its Specific Character Set alone.

    In a dataset without a character set from reading (one built in memory)
    pydicom reads (0008,0005) for every element it converts, and that read
    may warn or fail: such a dataset is dumped the old way.
    """
    return bool(ds.original_character_set) or 0x00080005 not in ds


def _raw_text_encoding(ds: Dataset) -> str | None:
    """The Python encoding pydicom decodes `ds`'s text values with (SH, LO, ST, LT, UT,
    UC, PN), when it is one the formatters handle; None sends those VRs the old way.

    pydicom uses the character set read with the dataset, else its own Specific
    Character Set, else its parent's; escape sequences (ISO 2022 code
    extensions) are refused value by value (`_decoded`).
    """
    charset = ds.original_character_set
    if not charset:  # and no Specific Character Set (`_raw_charset_read`)
        charset = getattr(ds, "_parent_encoding", None)  # what pydicom's `_character_set` falls back on
        if charset is None:
            return None
    encodings = [charset] if isinstance(charset, str) else list(charset or ())
    first = encodings[0] if encodings else "iso8859"  # pydicom's default when none is given
    try:
        codec = codecs.lookup(first).name
    except LookupError:  # pydicom warns, and decodes as ISO_IR 6
        return None
    return first if codec in _RAW_TEXT_CODECS else None


def _tag_info(tag: int) -> tuple[str, str, str | None]:
    """``(GGGG,EEEE)``, the keyword and the dictionary VR (None if pydicom has none) of `tag`.

    For a tag without a keyword the name is the one `_private_name` gives
    without looking at the dataset ("Unknown", "PrivateCreator"), or "" for a
    private tag, named after its creator.  Cached: the same tags recur in
    every file, and pydicom's dictionary lookups are slow.
    """
    info = _TAG_INFO.get(tag)
    if info is None:
        from pydicom.datadict import dictionary_VR

        group, element = tag >> 16, tag & 0xFFFF
        keyword = _keyword_of(tag)
        if not keyword and not group % 2:
            keyword = "Unknown"
        elif not keyword and 0x0010 <= element < 0x0100:
            keyword = "PrivateCreator"
        try:
            vr = dictionary_VR(tag)
        except Exception:
            vr = None
        if len(_TAG_INFO) >= _INFO_LIMIT:
            _TAG_INFO.clear()
        info = _TAG_INFO[tag] = (f"({group:04X},{element:04X})", keyword, vr)
    return info


def _raw_line(ds: Dataset, tag: int, raw, encoding: str | None, creators: dict) -> str | None:
    """The dump line of a raw element (without indent) formatted from its bytes, or None
    when only pydicom's conversion can tell: deferred, bulk or undefined-length
    values (sequences), ambiguous or unknown VRs, and values `_RAW_FORMATTERS` refuse.

    `tag` is a plain int (pydicom's BaseTag compares slowly); `creators` caches
    the private creators read for `ds` (`_private_creator`).
    """
    value = raw.value  # None when deferred (on disk), and for some empty values
    if (value is None and raw.length) or raw.length == 0xFFFFFFFF:
        return None
    tag_text, keyword, vr = _tag_info(tag)
    if keyword in BULK_DATA_KEYWORDS:
        return None
    private = (tag >> 16) % 2 == 1
    creator = None  # a private tag's creator: its VR and name may depend on it
    if private:
        # Converting a private element makes pydicom read its creator (gggg,00xx)
        # into it, and converting a creator makes it read (gggg,0000) likewise:
        # those conversions may warn or fail, so they must be silent ones.
        element, group = tag & 0xFFFF, tag & 0xFFFF0000
        if element < 0x0010:  # (gggg,0000-000F): pydicom takes (gggg,0000) for their creator
            return None
        if group not in creators:
            creators[group] = ds.get_item(group, keep_deferred=True) is not None
        if creators[group]:  # a private group length: left to pydicom
            return None
        if element >= 0x0100:  # not a creator itself
            block = group | (element >> 8)
            creator = creators.get(block, creators)
            if creator is creators:
                creator = creators[block] = _private_creator(ds, block, encoding)
    if creator is _UNKNOWN:
        return None
    # the VR as pydicom's `raw_element_vr` hook finds it
    if raw.VR is None:  # implicit VR: the dictionary's
        if vr is None:
            if private:
                vr = _private_vr(tag, creator)
            elif tag & 0xFFFF == 0:  # a group length
                vr = "UL"
            else:
                return None  # pydicom warns, and reads it as UN
    elif raw.VR == "UN" and _replace_un():  # a VR a converter wrote as UN: the dictionary's
        if private:
            vr = _private_vr(tag, creator)
        else:
            vr = (vr if value is None or len(value) < 0xFFFF else None) or "UN"
    else:
        vr = raw.VR
    formatter = _RAW_FORMATTERS.get(vr)
    if formatter is None or (tag in _LUT_DESCRIPTOR_TAGS and vr != "US"):  # SQ, "US or SS", unknown VRs
        return None
    if not raw.length:
        text = "(empty)"  # pydicom's empty value for the VR: None, "" or an empty name
    else:
        text = formatter(value, raw.is_little_endian, encoding if tag != 0x00080005 else "iso8859")
        if text is None:
            return None
    if not keyword:
        keyword = _private_info(tag, creator)[1]
    return f"{tag_text} {vr} {keyword:<32} {text}"


def _replace_un() -> bool:
    from pydicom import config

    return config.replace_un_with_known_vr


def _private_creator(ds: Dataset, block: int, encoding: str | None):
    """The private creator (gggg,00xx) `block` as pydicom reads it (a str), None if the
    dataset has none, or `_UNKNOWN` when it cannot be read without converting it.

    A raw creator is read like an LO value (`_raw_text_items`): pydicom gives
    creators the VR LO when the file does not say (implicit VR, UN).
    """
    from pydicom.dataelem import RawDataElement

    creator = ds.get_item(block, keep_deferred=True)
    if creator is None:
        return None
    if isinstance(creator, RawDataElement):
        if (creator.value is None and creator.length) or creator.VR not in (None, "UN", "LO"):
            return _UNKNOWN
        if (creator.VR == "UN" and not _replace_un()) or (creator.VR is None and _tag_info(block)[2]):
            return _UNKNOWN  # read as UN, or as the dictionary's VR
        values = _raw_text_items(creator.value, encoding, 64) if creator.length else [""]
        return values[0] if values is not None and len(values) == 1 else _UNKNOWN
    value = creator.value
    return value if type(value) is str else _UNKNOWN


def _private_info(tag: int, creator: str | None) -> tuple[str, str]:
    """The VR pydicom gives the private `tag` (a creator, or in the block of `creator`:
    None if the dataset has none) when the file does not say, and its name as
    `_private_name` shows it; cached per tag and creator.

    pydicom's `_private_vr_for_tag` and `DataElement.name`, without converting
    the element (which is how `_private_name` gets the name).
    """
    key = (tag, creator)
    info = _PRIVATE_INFO.get(key)
    if info is None:
        from pydicom.datadict import private_dictionary_description, private_dictionary_VR

        if 0x0010 <= tag & 0xFFFF < 0x0100:
            info = ("LO", "PrivateCreator")
        else:
            vr, name = "UN", "Private tag data"
            if creator is not None:
                with contextlib.suppress(KeyError):
                    vr = private_dictionary_VR(tag, creator)
            if creator:
                with contextlib.suppress(KeyError):
                    name = f"[{private_dictionary_description(tag, creator)}]"
            info = (vr, f"Private {name}".strip() if name and "Private tag" not in name else "Private")
        if len(_PRIVATE_INFO) >= _INFO_LIMIT:
            _PRIVATE_INFO.clear()
        _PRIVATE_INFO[key] = info
    return info


def _private_vr(tag: int, creator: str | None) -> str:
    return _private_info(tag, creator)[0]


def _values_text(values) -> str:
    """`_value_text` of a value pydicom holds as `values`: one value, or a MultiValue of them.

    `values` are the strings (or numbers) whose ``str()`` the converted items
    give; a blank item stays as it is, as pydicom keeps it.
    """
    if len(values) == 1:
        value = values[0]
        if value == "":
            return "(empty)"
        return text_of(value).replace("\r\n", "\n").replace("\n", " ⏎ ")
    shown = [text_of(v) for v in values[:LONG_MULTI_VALUES]]
    more = f" … ({len(values)} values)" if len(values) > LONG_MULTI_VALUES else ""
    return "\\".join(shown) + more


def _decoded(value: bytes, encoding: str | None) -> str | None:
    """`value` decoded as pydicom's `decode_bytes` does when it holds no escape sequence,
    or None where pydicom would warn (not decodable) or switch character sets (ESC)."""
    if encoding is None or b"\x1b" in value:
        return None
    try:
        return value.decode(encoding)
    except (UnicodeError, LookupError):
        return None


def _raw_text_items(value: bytes, encoding: str | None, max_length: int) -> list[str] | None:
    """SH, LO, UC (`convert_text`): split at backslashes, each item checked against the
    VR's maximum length (pydicom warns past it) and stripped of trailing spaces and NULs."""
    decoded = _decoded(value, encoding)
    if decoded is None:
        return None
    items = decoded.split("\\")
    if max_length and any(len(item) > max_length for item in items):
        return None
    return [item.rstrip("\0 ") for item in items]


def _text_formatter(max_length: int):
    def text(value: bytes, little: bool, encoding: str | None) -> str | None:
        items = _raw_text_items(value, encoding, max_length)
        return None if items is None else _values_text(items)

    return text


def _single_text_formatter(max_length: int):
    """ST, LT, UT (`convert_single_string`): one value, backslashes and all."""
    def text(value: bytes, little: bool, encoding: str | None) -> str | None:
        decoded = _decoded(value, encoding)
        if decoded is None or (max_length and len(decoded) > max_length):
            return None
        return _values_text([decoded.rstrip("\0 ")])

    return text


def _person_names_text(value: bytes, little: bool, encoding: str | None) -> str | None:
    """PN (`convert_PN`): names without component groups ("="), each at most 64
    characters (pydicom warns past it); `str(PersonName)` is then the name itself."""
    if b"=" in value:  # pydicom drops empty trailing groups and checks each group: left to it
        return None
    decoded = _decoded(value.rstrip(b"\x00 "), encoding)
    if decoded is None:
        return None
    items = decoded.split("\\")
    if any(len(item) > 64 for item in items):
        return None
    return _values_text(items)


def _strings_text(value: bytes, little: bool, encoding: str | None) -> str:
    """AS, CS, DA, DT, TM (`convert_string`, dates and times kept as strings)."""
    return _values_text(value.decode("latin-1").rstrip(" \x00").split("\\"))


def _application_entities_text(value: bytes, little: bool, encoding: str | None) -> str:
    """AE (`convert_AE_string`): each item stripped of spaces at both ends."""
    return _values_text([item.strip() for item in value.decode("latin-1").split("\\")])


def _uri_text(value: bytes, little: bool, encoding: str | None) -> str:
    """UR (`convert_UR_string`): one value, trailing spaces dropped."""
    return _values_text([value.decode("latin-1").rstrip()])


def _uids_text(value: bytes, little: bool, encoding: str | None) -> str | None:
    """UI (`convert_UI`): only valid UIDs (pydicom validates each, and warns)."""
    items = value.decode("latin-1").rstrip("\0 ").split("\\")
    if any(item and (len(item) > 64 or not _UI_PATTERN.fullmatch(item)) for item in items):
        return None
    return _values_text(items)


def _decimals_text(value: bytes, little: bool, encoding: str | None) -> str | None:
    """DS (`convert_DS_string`): `str(DSfloat)` is the item stripped; an item `float()`
    refuses makes pydicom retry the value as other VRs, so it goes the old way."""
    items = value.decode("latin-1").strip().rstrip(" \x00").split("\\")
    for item in items:
        if item.strip():
            try:
                float(item)
            except ValueError:
                return None
    return _values_text(items)


def _integers_text(value: bytes, little: bool, encoding: str | None) -> str | None:
    """IS (`convert_IS_string`): only items pydicom accepts silently (at most 12
    characters of an optional sign and digits); `str(IS)` is then the item stripped."""
    items = value.decode("latin-1").rstrip(" \x00").split("\\")
    for item in items:
        if item.strip() and (len(item) > 12 or not _IS_PATTERN.fullmatch(item)):
            return None
    return _values_text(items)


def _binary_text(value: bytes, little: bool, encoding: str | None) -> str:
    """OB, OD, OF, OL, OV, OW, UN: the bytes as they are (pydicom never swaps them)."""
    if len(value) > LONG_BINARY_BYTES:
        return f"<{len(value)} bytes of binary data>"
    return value.hex("\\")


def _numbers_formatter(code: str):
    """US, SS, UL, SL, UV, SV, FL, FD (`convert_numbers`): only the values shown are unpacked."""
    import struct

    size = struct.calcsize("=" + code)

    def text(value: bytes, little: bool, encoding: str | None) -> str | None:
        count, odd = divmod(len(value), size)
        if odd:  # pydicom raises (or makes it UN): the old path says which
            return None
        shown = min(count, LONG_MULTI_VALUES)
        numbers = struct.unpack_from(f"{'<' if little else '>'}{shown}{code}", value)
        if count == 1:
            return str(numbers[0])
        more = f" … ({count} values)" if count > LONG_MULTI_VALUES else ""
        return "\\".join(map(str, numbers)) + more

    return text


def _tags_text(value: bytes, little: bool, encoding: str | None) -> str | None:
    """AT (`convert_ATvalue`): each pair of 16-bit numbers as ``(GGGG,EEEE)``."""
    import struct

    count, odd = divmod(len(value), 4)
    if odd:  # pydicom logs it and drops the rest
        return None
    shown = min(count, LONG_MULTI_VALUES)
    numbers = struct.unpack_from(f"{'<' if little else '>'}{2 * shown}H", value)
    tags = [f"({numbers[i]:04X},{numbers[i + 1]:04X})" for i in range(0, 2 * shown, 2)]
    if count == 1:
        return tags[0]
    more = f" … ({count} values)" if count > LONG_MULTI_VALUES else ""
    return "\\".join(tags) + more


_RAW_FORMATTERS = {
    "AE": _application_entities_text, "AS": _strings_text, "CS": _strings_text, "DA": _strings_text,
    "DT": _strings_text, "TM": _strings_text, "UR": _uri_text, "UI": _uids_text,
    "DS": _decimals_text, "IS": _integers_text, "PN": _person_names_text,
    "SH": _text_formatter(16), "LO": _text_formatter(64), "UC": _text_formatter(0),
    "ST": _single_text_formatter(1024), "LT": _single_text_formatter(10240), "UT": _single_text_formatter(0),
    **dict.fromkeys(("OB", "OD", "OF", "OL", "OV", "OW", "UN"), _binary_text),
    **{vr: _numbers_formatter(code) for vr, code in
       (("US", "H"), ("SS", "h"), ("UL", "L"), ("SL", "l"), ("UV", "Q"), ("SV", "q"), ("FL", "f"), ("FD", "d"))},
    "AT": _tags_text,
}


def json_dataset(ds: Dataset) -> dict:
    """The dataset in the DICOM JSON Model (PS3.18 F.2), bulk data left out.

    pydicom's `to_json_dict` writes it; pixel data and binary values over
    1 KB are replaced by a BulkDataURI that names their size (there is no
    server to fetch them from), and values still on disk are never read.
    """
    from pydicom.dataset import Dataset

    def bulk(element) -> str:
        return f"not-included:{len(element.value)} bytes"

    light = Dataset()
    notes = {}
    try:  # a damaged element (an unknown VR) is found when read, here or in the JSON writer
        for tag in ds.keys():
            raw = ds.get_item(tag, keep_deferred=True)
            size = _bulk_size(raw, _keyword_of(tag), getattr(ds, "filename", None))
            if size is not None:
                notes[f"{tag:08X}"] = {"vr": raw.VR or "UN", "BulkDataURI": f"not-included:{size}"}
                continue
            light[tag] = ds[tag]
        data = light.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=bulk)
    except Exception as exc:
        raise CorruptFile(f"cannot express the dataset as DICOM JSON: {first_line(exc)}") from None
    data.update(notes)
    return _json_safe(dict(sorted(data.items())))


def _json_safe(value):
    """NaN and infinities as the strings PS3.18 F.2.3.1 prescribes; JSON has no such numbers."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def index_record(ds: Dataset) -> dict:
    """What the index page and series grouping need from one dataset (plain values).

    A value that cannot be read (a damaged element) is left empty: the index
    is a convenience and must not fail a file that converted.
    """
    def text(keyword: str) -> str:
        try:
            return text_of(ds.get(keyword, "") or "")
        except Exception:
            return ""

    def numbers(keyword: str) -> list[float] | None:
        try:
            return [float(v) for v in ds[keyword].value] if keyword in ds else None
        except Exception:
            return None

    return {
        "patient_name": text("PatientName"), "patient_id": text("PatientID"),
        "study_uid": text("StudyInstanceUID"), "study_date": text("StudyDate"),
        "study_description": text("StudyDescription"),
        "series_uid": text("SeriesInstanceUID"), "series_number": text("SeriesNumber"),
        "series_description": text("SeriesDescription"), "modality": text("Modality"),
        "rows": int(text("Rows") or 0) if text("Rows").isdigit() else 0,
        "columns": int(text("Columns") or 0) if text("Columns").isdigit() else 0,
        "frames": text("NumberOfFrames") or "1", "photometric": text("PhotometricInterpretation"),
        "orientation": numbers("ImageOrientationPatient"), "position": numbers("ImagePositionPatient"),
        "instance": text("InstanceNumber"), "sop_class": text("SOPClassUID"),
        "instance_uid": text("SOPInstanceUID"), "bits": text("BitsStored"), "body_part": text("BodyPartExamined"),
        "manufacturer": text("Manufacturer"), "model": text("ManufacturerModelName"),
        "frame_of_reference": text("FrameOfReferenceUID"),
        "referenced_series": text_of(((ds.get("ReferencedSeriesSequence") or [{}])[0]).get("SeriesInstanceUID", "")),
    }


def metadata_text(ds: Dataset, rendering: dict[str, str], report: str = "") -> str:
    """Summary, then a structured report's text (the summary stays first: `outputs_are_current`
    reads the head), then File Meta, then the dataset."""
    parts = ["# Summary", summary_text(ds, rendering)]
    if report:
        parts += ["# Report", report.rstrip("\n") + "\n"]
    meta = getattr(ds, "file_meta", None)
    if meta is not None and len(meta):
        parts += ["# File Meta Information", "\n".join(dump_dataset(meta)) + "\n"]
    parts += ["# Dataset", "\n".join(dump_dataset(ds)) + "\n"]
    return "\n".join(parts)


# =============================================================================
# Redaction (--redact): PS3.15 Annex E, the Basic Application Level Confidentiality Profile
# =============================================================================

# Table E.1-1 comes from dicom-anonymizer (Kitware): of the maintained packages it
# is the one that carries the whole table, 655 rows of the 2026c edition with the
# retired attributes and the overlay and curve repeating groups, each under its
# basic-profile action.  deid ships ~70 header actions of its own choosing, and
# dicognito decides by VR, with no table (compared 2026-12).  The module is data:
# lists of (group, element) or (group, element, group mask, element mask) per action.
PROFILE_TABLE = "dicomanonymizer.dicom_anonymization_databases.dicomfields_2026c"
PROFILE_ACTIONS = {"D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D",
                   "X_Z_TAGS": "X/Z", "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*"}
REMOVED_ACTIONS = ("X", "X/Z", "X/D", "X/Z/D")  # "remove" is allowed by each: the outputs are not DICOM files
EMPTIED_ACTIONS = ("Z", "D", "Z/D")  # a dummy value is shown as no value: there is no IOD to keep valid
FILE_META_REMOVED = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)  # AE titles, private info
CONTENT_SEQUENCE = 0x0040A730
DEIDENTIFIED = "PS3.15 basic profile, Table E.1-1 (--redact)"  # in the .txt: --skip-existing tells runs apart
TEXT_VALUE = 0x0040A160


@functools.lru_cache(maxsize=None)
def profile_table() -> tuple[dict[int, str], tuple[tuple[int, int, str], ...]]:
    """Table E.1-1 as {tag: action} and its repeating-group rows as (tag, mask, action)."""
    import importlib

    table = importlib.import_module(PROFILE_TABLE)
    exact: dict[int, str] = {}
    masked: list[tuple[int, int, str]] = []
    for name, action in PROFILE_ACTIONS.items():
        for row in getattr(table, name):
            if len(row) == 2:
                exact[row[0] << 16 | row[1]] = action
            else:
                group, element, group_mask, element_mask = row
                masked.append((group << 16 | element, group_mask << 16 | element_mask, action))
    return exact, tuple(masked)


def profile_action(tag: int) -> str | None:
    """The basic profile's action for `tag` (X, Z, D, U or a combination), None to keep it."""
    exact, masked = profile_table()
    action = exact.get(tag)
    if action is None:
        action = next((action for value, mask, action in masked if tag & mask == value), None)
    return action


def deidentified(ds: Dataset, salt: str) -> Dataset:
    """A copy of `ds` under the basic de-identification profile (PS3.15 E.1, Table E.1-1).

    Every element at every depth gets its table action by tag, whatever its
    VR or keyword: removed (X), emptied (Z, D), or its instance UID replaced
    (U) by one derived from it and this run's secret `salt`, so references
    between files still match within the run but cannot be traced back.
    Private tags and the file meta's AE titles are removed, and so is any
    person name (PN) the table does not list (2026c misses Evaluator Name and
    Secondary Reviewer Name); what else the table does not list stays
    (modality, sizes, windows, timing).  Structured
    content follows the Clean Structured Content option (`clean_content_items`).
    """
    import copy

    out = copy.deepcopy(ds)  # values still on disk are copied unread
    _apply_profile(out, salt)
    meta = getattr(out, "file_meta", None)
    if meta is not None:
        for tag in FILE_META_REMOVED:
            meta.pop(tag, None)
        _apply_profile(meta, salt)
    return out


def _apply_profile(ds: Dataset, salt: str) -> None:
    from pydicom.dataelem import DataElement

    for tag in list(ds.keys()):
        action = profile_action(int(tag))
        if action in REMOVED_ACTIONS or (action is None and tag.is_private):
            del ds[tag]
            continue
        raw = ds.get_item(tag, keep_deferred=True)
        if is_deferred(raw):  # a bulk value, never a sequence: act on it unread
            if action is not None:
                ds[tag] = DataElement(tag, raw.VR or _dictionary_vr(tag), None)
            continue
        element = ds[tag]
        if action is None and element.VR == "PN":  # a person's name the table misses (Evaluator Name)
            action = "Z"
        if tag == CONTENT_SEQUENCE and element.VR == "SQ":
            clean_content_items(element.value, salt)
        elif action in EMPTIED_ACTIONS:
            element.value = [] if element.VR == "SQ" else None
        elif action == "U":
            element.value = _replaced_uids(element.value, salt)
        elif element.VR == "SQ":  # kept, or X/Z/U*: kept with the instance UIDs inside replaced
            for item in element.value:
                _apply_profile(item, salt)


def clean_content_items(items, salt: str) -> None:
    """PS3.15 E.3.4 Clean Structured Content: a report keeps its codes, numbers and structure.

    The basic profile would remove the Content Sequence whole; instead each
    content item gets the table's actions (its person names, dates, times and
    date-times emptied, its UIDs replaced, nested items likewise) and TEXT
    items lose their text, which can name anyone.
    """
    for item in items:
        _apply_profile(item, salt)
        if TEXT_VALUE in item:
            item[TEXT_VALUE].value = None


def is_deferred(raw) -> bool:
    from pydicom.dataelem import RawDataElement

    return isinstance(raw, RawDataElement) and raw.value is None and bool(raw.length)


def _dictionary_vr(tag: int) -> str:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


def _replaced_uids(value, salt: str):
    if isinstance(value, (bytes, bytearray)):  # a UID stored with VR UN: no use shown as bytes
        return None
    if is_multi(value):
        return [replace_uid(str(v), salt) for v in value]
    return replace_uid(str(value), salt) if value else value


def as_shown(ds: Dataset, options: Options) -> Dataset:
    """`ds` as the outputs show it: de-identified under ``--redact``, else itself."""
    return deidentified(ds, options.redact_salt) if options.redact_salt else ds


def replace_uid(uid: str, salt: str) -> str:
    """A stand-in for an instance UID (a 2.25 UUID-derived UID); registered DICOM UIDs stay."""
    import hashlib
    from pydicom.uid import UID

    if not uid or UID(uid).name != uid:  # a registered UID (SOP class, transfer syntax…)
        return uid
    digest = hashlib.sha256(f"{salt}:{uid}".encode()).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


NAME_OR_IDENTIFIER = r"(Name|Names|ID|IDs|Number|Numbers|BirthDate|Address)$"  # by keyword, of the table's rows


def identifying_strings(ds: Dataset) -> list[str]:
    """Parts of the values that must not appear in output names under ``--redact``.

    Hospital exports name folders and files after the patient, an ID or an
    accession number: the top-level values of the table's rows that are a
    person name (by VR or by keyword: an operator's name stored as LO), an
    identifier, a number, a birth date or an address, split into words.
    """
    import re

    found = []
    for tag in ds.keys():
        action = profile_action(int(tag))
        raw = ds.get_item(tag, keep_deferred=True)
        if action in (None, "U") or is_deferred(raw):
            continue
        try:
            element = ds[tag]
        except Exception:
            continue
        if element.VR == "SQ" or not (element.VR == "PN" or re.search(NAME_OR_IDENTIFIER, element.keyword)):
            continue
        for item in (element.value if is_multi(element.value) else [element.value]):
            for part in re.split(r"[\s^=,]+", text_of(item)):
                if len(part) >= 3:
                    found.append(part.casefold())
    return found


# Burned-in text.  The rules are CTP's DicomPixelAnonymizer library of where
# devices burn text in, by manufacturer, model and image type, as deid ships and
# keeps it (its data file `deid.dicom`, read by deid's own recipe parser).  deid
# brings matplotlib into the environment (78 MB installed), which this program
# never imports: deid's own matcher lives in `deid.dicom`, whose import pulls in
# pyplot (about 1 s a process, and a font cache written on first use), so the
# labels are matched by `label_matches`, after deid's `deid.dicom.filter`.  One
# difference, on purpose: deid 0.4.13 ANDs every line of a label and ignores a
# line's leading `||`; this applies `||` as written (CTP's meaning), which can
# only flag more images, never fewer.
BURNED_IN_RECIPE = "dicom"
SECONDARY_CAPTURE_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.1",
                                       "1.2.840.10008.5.1.4.1.1.7.2", "1.2.840.10008.5.1.4.1.1.7.3",
                                       "1.2.840.10008.5.1.4.1.1.7.4"})
VISIBLE_LIGHT_CLASSES = "1.2.840.10008.5.1.4.1.1.77.1."  # endoscopy, microscopy, photography (prefix)
TEXT_BEARING_MODALITIES = frozenset({"US", "IVUS", "XC", "ES", "GM", "OT", "DOC"})


@functools.lru_cache(maxsize=None)
def burned_in_rules() -> dict[str, list[dict]]:
    """deid's filter sections: ``whitelist``, ``graylist``, ``blacklist``, each a list of labels."""
    from deid.logger import bot

    bot.level = 0  # QUIET: deid logs every line it parses at DEBUG on stderr
    from deid.config import DeidRecipe

    return DeidRecipe(BURNED_IN_RECIPE).get_filters()


def _filter_holds(ds: Dataset, action: str, field: str, value: str) -> bool:
    """One line of a label, as `deid.dicom.filter` means it: case-insensitive, over the value's text."""
    import re

    content = ds.get(int(field, 0) if field.startswith("0x") else field)
    content = getattr(content, "value", content)
    action = action.lower().strip()
    if action == "missing":
        return content is None
    if action == "present":
        return content is not None
    if action == "empty":
        return content is not None and not content
    texts = [str(c).lower().strip() for c in (content if isinstance(content, list) else [content]) if c is not None]
    term = str(value).lower().strip()
    if action in ("equals", "notequals"):
        return any(text == term for text in texts) == (action == "equals")
    if action in ("contains", "notcontains"):
        try:
            return any(re.search(term, text) for text in texts) == (action == "contains")
        except re.error:
            return False
    return False


def label_matches(ds: Dataset, label: dict) -> bool:
    """Whether a deid label's lines hold for `ds`: ``+`` is and, ``||`` or, left to right."""
    result = None
    for group in label["filters"]:
        values = group["value"]
        flags = [_filter_holds(ds, action, field, values[n] if n < len(values) else "")
                 for n, (action, field) in enumerate(zip(group["action"], group["field"]))]
        held = flags[0]
        for n, flag in enumerate(flags[1:]):
            inner = group["InnerOperators"][n] if n < len(group["InnerOperators"]) else "and"
            held = (held or flag) if inner == "or" else (held and flag)
        result = held if result is None else (result or held) if group["operator"] == "or" else (result and held)
    return bool(result) if label["filters"] else bool(label["coordinates"])


@dataclasses.dataclass(frozen=True)
class PixelPlan:
    """What ``--redact`` does to an image's pixels: show them, blank rectangles, or withhold the image.

    `steps` are (blank, (x0, y0, x1, y1)) applied in order, ends exclusive:
    blank=False keeps a rectangle an earlier step blanked (deid's keep
    coordinates), so "all, then keep each ultrasound region" blanks the rest.
    """

    action: str  # "show" | "blank" | "withhold"
    reason: str
    steps: tuple[tuple[bool, tuple[int, int, int, int]], ...] = ()

    def describe(self) -> str:
        if self.action != "blank":
            return f"{'shown' if self.action == 'show' else 'withheld'}: {self.reason}"
        blanked = "; ".join(f"{'blanked' if blank else 'kept'} x {x0}-{x1}, y {y0}-{y1}"
                            for blank, (x0, y0, x1, y1) in self.steps)
        return f"{blanked} ({self.reason})"


def burned_in_text_plan(ds: Dataset) -> PixelPlan:
    """How ``--redact`` keeps burned-in text out of this image's outputs.

    The basic profile leaves pixel data to its Clean Pixel Data Option
    (PS3.15 E.3.1); this applies it and fails safe, in this order:
    1. a deid whitelist label (Burned In Annotation NO, a known clean device)
       and no device rectangles: shown as it is;
    2. an image with a Sequence of Ultrasound Regions (PS3.3 C.8.5.5), not
       marked NO: everything outside the union of its regions is blanked;
    3. the rectangles of every matching deid graylist label are blanked;
    4. else withheld: a blacklist label matches, Burned In Annotation is YES,
       the image is a whole slide's label (C.8.12.4.1.1, Image Type LABEL: checked first),
       or the flag is absent on a kind that carries text (ultrasound,
       secondary capture, endoscopy, photography) and no rule says where it is.
    """
    rules = burned_in_rules()
    matched = {name: [label for label in rules.get(name, []) if label_matches(ds, label)]
               for name in ("whitelist", "graylist", "blacklist")}
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    device_steps, devices = [], []
    for label in matched["graylist"]:
        for keep, coordinates in label["coordinates"]:
            rectangles = _rectangles(ds, str(coordinates), rows, columns)
            device_steps += [(not keep, rectangle) for rectangle in rectangles]
            if rectangles:
                devices.append(_label_name(label))
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    image_type = [str(value).upper() for value in (ds.get("ImageType") or [])]
    if str(ds.get("SOPClassUID", "")) == WHOLE_SLIDE_CLASS and "LABEL" in image_type[2:3]:
        return PixelPlan("withhold", "a slide's label image, which carries the patient's name and barcode")
    if matched["whitelist"] and not device_steps:
        return PixelPlan("show", f"deid rule '{_label_name(matched['whitelist'][0])}'")
    steps, reasons = [], []
    regions = _rectangles(ds, "from:SequenceOfUltrasoundRegions", rows, columns)
    if regions and flag != "NO":
        steps = [(True, (0, 0, columns, rows))] + [(False, region) for region in regions]
        reasons.append("outside the ultrasound regions")
    if device_steps:
        steps += device_steps
        reasons.append("deid rule " + ", ".join(f"'{name}'" for name in dict.fromkeys(devices)))
    if steps:
        return PixelPlan("blank", " and ".join(reasons), tuple(steps))
    if matched["blacklist"]:
        return PixelPlan("withhold", f"deid rule '{_label_name(matched['blacklist'][0])}' flags burned-in "
                         "text that no rule locates")
    if flag == "YES":
        return PixelPlan("withhold", "Burned In Annotation is YES and no rule says where the text is")
    sop_class = str(ds.get("SOPClassUID", ""))
    if not flag and (str(ds.get("Modality", "")).upper() in TEXT_BEARING_MODALITIES
                     or sop_class in SECONDARY_CAPTURE_CLASSES or sop_class.startswith(VISIBLE_LIGHT_CLASSES)):
        return PixelPlan("withhold", "a kind of image that carries burned-in text, no Burned In Annotation "
                         "flag, and no rule says where the text is")
    return PixelPlan("show", "no rule flags burned-in text")


def _label_name(label: dict) -> str:
    return label.get("name", "").removeprefix("LABEL").split("#")[0].strip()


def _rectangles(ds: Dataset, coordinates: str, rows: int, columns: int) -> list[tuple[int, int, int, int]]:
    """A deid coordinate ("x0,y0,x1,y1", "all", "from:<sequence of regions>") as rectangles in the image."""
    if coordinates.strip().lower() == "all":
        return [(0, 0, columns, rows)]
    if coordinates.startswith("from:"):  # PS3.3 C.8.5.5.1: region corners, inclusive
        found = []
        for region in ds.get(coordinates[5:].strip()) or []:
            try:
                corners = [int(region[keyword].value) for keyword in
                           ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1", "RegionLocationMaxY1")]
            except (KeyError, TypeError, ValueError):
                continue
            found.append((corners[0], corners[1], corners[2] + 1, corners[3] + 1))
        return found
    try:
        x0, y0, x1, y1 = (int(part) for part in coordinates.split(",") if part.strip())
    except ValueError:
        return []
    return [(x0, y0, x1, y1)]


def pixel_plan(ds: Dataset, options: Options) -> PixelPlan | None:
    """The plan for this image's pixels, None when they are shown as they are (no --redact, or
    ``--redact-pixels keep``)."""
    if not options.redact_salt or options.redact_pixels == "keep":
        return None
    return burned_in_text_plan(ds)


def blank_mask(plan: PixelPlan, rows: int, columns: int) -> np.ndarray:
    """True where `plan` blanks a frame of `rows` x `columns`."""
    import numpy as np

    mask = np.zeros((rows, columns), dtype=bool)
    for blank, (x0, y0, x1, y1) in plan.steps:
        mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = blank
    return mask


def shown_image(path: Path, options: Options, image: Dataset | None = None) -> tuple[Dataset, np.ndarray | None]:
    """A single-frame image's dataset (read unless given) and its 8-bit display frame as its own
    outputs show it (``--redact``'s plan applied): what a segmentation or a dose is drawn over.
    None: withheld."""
    image = image if image is not None else read_dataset(path)
    plan = pixel_plan(image, options)
    if plan is not None and plan.action == "withhold":
        return image, None
    frames, _ = rendered_frames(path, image, 255, options.window, not options.redact_salt)
    if plan is not None and plan.action == "blank":
        frames = blanked(frames, [blank_mask(plan, int(image.Rows), int(image.Columns))])
    return image, next(frames, None)


def blanked(frames: Iterable[np.ndarray], masks: Iterable[np.ndarray | None]) -> Iterator[np.ndarray]:
    """Each display frame with its mask's pixels set to black (before any downscaling)."""
    for frame, mask in zip(frames, masks):
        if mask is not None and mask.any():
            if mask.shape != frame.shape[:2]:
                raise CorruptFile(f"a frame of {frame.shape[1]} x {frame.shape[0]} where the file says "
                                  f"{mask.shape[1]} x {mask.shape[0]}: cannot place the blanking")
            if not frame.flags.writeable:
                frame = frame.copy()
            frame[mask] = 0
        yield frame


# =============================================================================
# Kinds of object: what a file is decides what it becomes
# =============================================================================

CINE_POINTERS = ("FrameTime", "FrameTimeVector")  # PS3.3 C.7.6.5 Cine Module
VOLUME_POINTERS = ("GridFrameOffsetVector", "SliceVector")  # RT Dose C.8.8.3.2, NM C.8.4.8
SEGMENTATION_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
WHOLE_SLIDE_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"


def object_kind(ds: Dataset) -> str:
    """What `ds` is: a ``document`` (an encapsulated PDF, CDA, STL, OBJ or MTL), a ``waveform``
    (ECG, pressures, audio: PS3.3 C.10.9), a ``report`` (an SR document, C.17), ``metadata``
    (no pixel data), ``segmentation`` (PS3.3 A.51, one frame or many), ``image`` (one frame),
    or what `multiframe_kind` says of several frames."""
    if str(ds.get("SOPClassUID", "")) in DOCUMENT_CLASSES:
        return "document"
    if "WaveformSequence" in ds and not has_pixel_data(ds):
        return "waveform"
    if not has_pixel_data(ds) and (str(ds.get("SOPClassUID", "")).startswith(SR_CLASS_PREFIX) or (
            ds.get("ValueType") == "CONTAINER" and "ContentSequence" in ds)):
        return "report"
    if not has_pixel_data(ds):
        return "metadata"
    if transfer_syntax_of(ds) in VIDEO_SYNTAXES:
        return "video"
    if str(ds.get("SOPClassUID", "")) == SEGMENTATION_CLASS:
        return "segmentation"
    if number_of_frames(ds) == 1:
        return "image"
    return multiframe_kind(ds)


def multiframe_kind(ds: Dataset) -> str:
    """Whether the frames of `ds` are moments (``cine``) or places (``volume``, ``slide``,
    ``segmentation``), from the standard's signals.

    The rules, in order:
    1. Frame Increment Pointer (PS3.3 C.7.6.6) names Frame Time or Frame Time
       Vector: a cine (angiography, ultrasound, cardiac cines).
    2. It names Grid Frame Offset Vector (RT Dose planes, C.8.8.3.2) or Slice
       Vector (NM, C.8.4.8.1): a volume, or a ``dose`` for the RT Dose class
       (C.8.8.3), whose planes are drawn in colour with a scale.
    3. The frames' Plane Position (Patient) (C.7.6.16.2.3, per-frame
       functional groups) moves along the slice normal: a volume (Enhanced
       CT, MR, PET, tomosynthesis).  A temporal dimension over one position
       is a cine.
    4. Dimension Organization Type TILED_FULL or TILED_SPARSE (C.7.6.17), or
       the VL Whole Slide Microscopy class (C.8.12.4): a ``slide``, its tiles
       stitched.
    5. The Segmentation class (C.8.20): a ``segmentation``, its segments
       coloured slice by slice.
    6. Anything else stays a cine, the behaviour for files with no signal.
    """
    keywords = set(frame_increment_keywords(ds))
    sop_class = str(ds.get("SOPClassUID", ""))
    if keywords & set(CINE_POINTERS):
        return "cine"
    if keywords & set(VOLUME_POINTERS):
        return "dose" if sop_class == RT_DOSE_CLASS else "volume"
    if sop_class == WHOLE_SLIDE_CLASS or str(ds.get("DimensionOrganizationType", "")).startswith("TILED"):
        return "slide"
    if sop_class == SEGMENTATION_CLASS:
        return "segmentation"
    if len({position for position in frame_positions(ds) if position is not None}) > 1:
        return "dose" if sop_class == RT_DOSE_CLASS else "volume"
    return "cine"


def frame_positions(ds: Dataset) -> list[float | None]:
    """Each frame's position along the slice normal (Plane Position and Orientation (Patient),
    C.7.6.16.2.3-4, per frame or shared), None where the file does not say."""
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    frames = ds.get("PerFrameFunctionalGroupsSequence") or []
    positions = []
    for item in frames:
        position = _group_value(item, shared, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _group_value(item, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
        positions.append(along_normal(position, orientation))
    return positions


def _group_value(item, shared, macro: str, keyword: str):
    for group in (item, shared):
        if group is not None and group.get(macro):
            value = group.get(macro)[0].get(keyword)
            if value is not None:
                return value
    return None


def along_normal(position, orientation) -> float | None:
    """Image Position · (row × column direction cosines), as `slice_order` orders a series."""
    try:
        p = [float(v) for v in position]
        r, c = [float(v) for v in orientation[:3]], [float(v) for v in orientation[3:6]]
    except (TypeError, ValueError):
        return None
    if len(p) != 3 or len(r) != 3 or len(c) != 3:
        return None
    normal = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    return sum(a * b for a, b in zip(p, normal))


# =============================================================================
# Volumes: frames that are slices, in anatomical order
# =============================================================================

CONTACT_SHEET_WIDTH = 2048  # pixels at most: one picture of the whole volume, light enough to open


def volume_order(ds: Dataset) -> tuple[list[int], str]:
    """The frame numbers of a volume in anatomical order, and how they were ordered.

    By stack (Stack ID) and temporal position (Temporal Position Index) of the
    Frame Content (C.7.6.16.2.2), then by position along the slice normal; an
    RT Dose by its Grid Frame Offset Vector (C.8.8.3.2); without positions, by
    the Dimension Index Values (C.7.6.17.1); else as stored.
    """
    count = number_of_frames(ds)
    offsets = ds.get("GridFrameOffsetVector")
    if offsets is not None and is_multi(offsets) and len(offsets) == count:
        return sorted(range(count), key=lambda n: float(offsets[n])), "by Grid Frame Offset Vector"
    positions = frame_positions(ds)
    frames = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(positions) == count and None not in positions:
        groups = [_frame_group(item) for item in frames]
        order = sorted(range(count), key=lambda n: (groups[n], positions[n], n))
        return order, "by position along the slice normal" + _groups_text([groups[n] for n in order])
    indices = [_frame_content(item).get("DimensionIndexValues") for item in frames]
    if len(indices) == count and None not in indices:
        keys = [tuple(int(v) for v in (i if is_multi(i) else [i])) for i in indices]
        return sorted(range(count), key=lambda n: (keys[n], n)), "by Dimension Index Values"
    return list(range(count)), "as stored (the file gives no slice positions)"


def _groups_text(groups: list[tuple]) -> str:
    """Where each stack or temporal position runs in the ordered slices, when there are several."""
    runs: list[list] = []
    for number, group in enumerate(groups, 1):
        if runs and runs[-1][0] == group:
            runs[-1][2] = number
        else:
            runs.append([group, number, number])
    if len(runs) < 2:
        return ""
    parts = [f"{'stack ' + stack + ' ' if stack else ''}{'time ' + str(time) + ' ' if time else ''}"
             f"slices {first}-{last}" for (stack, time), first, last in runs]
    return f"; {len(runs)} stacks or time points, one after another: " + ", ".join(parts)


def _frame_content(item) -> Dataset:
    from pydicom.dataset import Dataset

    content = item.get("FrameContentSequence")
    return content[0] if content else Dataset()


def _frame_group(item) -> tuple:
    content = _frame_content(item)
    return (str(content.get("StackID", "")), int(content.get("TemporalPositionIndex") or 0))


@contextlib.contextmanager
def contact_sheet_writer(path: Path, count: int, max_width: int = CONTACT_SHEET_WIDTH):
    """Collect `count` frames into one PNG grid (``write(frame)``), written when done.

    The grid is about square; each slice is scaled down (area averaging) to fit
    its cell, so the sheet is at most `max_width` wide and holds only itself.
    """
    import math

    import numpy as np

    columns = max(1, math.ceil(math.sqrt(count)))
    state: dict = {"sheet": None, "written": 0}

    def write(frame: np.ndarray) -> None:
        rows_px, cols_px = frame.shape[:2]
        cell = min(cols_px, max(1, max_width // columns))
        tile = fit_within(frame, max(1, round(max(rows_px, cols_px) * cell / cols_px)))
        if state["sheet"] is None:
            state["cell"] = tile.shape[:2]
            shape = (math.ceil(count / columns) * tile.shape[0], columns * tile.shape[1]) + frame.shape[2:]
            state["sheet"] = np.zeros(shape, dtype=frame.dtype)
        height, width = state["cell"]
        n = state["written"]
        top, left = (n // columns) * height, (n % columns) * width
        tile = tile[:height, :width]
        state["sheet"][top:top + tile.shape[0], left:left + tile.shape[1]] = tile
        state["written"] += 1

    yield write
    if state["sheet"] is not None:
        write_png(state["sheet"], path)


# =============================================================================
# RT Dose: planes of dose in Gy, in colour, with a scale
# =============================================================================

RT_DOSE_CLASS = "1.2.840.10008.5.1.4.1.1.481.2"
# The colour wash radiotherapy planning systems show: no dose black, then blue, cyan, green,
# yellow and red up to white at the maximum, linear between these anchors (fraction, RGB).
DOSE_COLOURS = ((0.0, (0, 0, 0)), (0.15, (0, 0, 255)), (0.35, (0, 255, 255)), (0.55, (0, 255, 0)),
                (0.75, (255, 255, 0)), (0.9, (255, 0, 0)), (1.0, (255, 255, 255)))
DOSE_MIN_HEIGHT = 256  # dose grids are coarse (a few mm a voxel): planes are enlarged to at least this, by whole voxels
DOSE_SCALE_WIDTH = 88  # pixels beside each plane: the colour bar and its labels in Gy


def dose_colour_lut() -> np.ndarray:
    """256 RGB entries of `DOSE_COLOURS`, for dose fractions 0..1 in 255 steps."""
    import numpy as np

    steps = np.linspace(0.0, 1.0, 256)
    stops = np.array([fraction for fraction, _ in DOSE_COLOURS])
    colours = np.array([rgb for _, rgb in DOSE_COLOURS], dtype=float)
    return np.stack([np.interp(steps, stops, colours[:, k]) for k in range(3)], axis=-1).round().astype(np.uint8)


def dose_units(ds: Dataset) -> tuple[float, str]:
    """Dose Grid Scaling (stored value to dose) and the unit to label it with (C.8.8.3):
    Gy, or ``rel.`` for RELATIVE (to a reference dose)."""
    units = str(ds.get("DoseUnits", "") or "").upper()
    return float(ds.get("DoseGridScaling") or 1.0), "Gy" if units == "GY" else ("rel." if units == "RELATIVE" else units or "?")


def dose_frames(path: Path, ds: Dataset, order: list[int]) -> tuple[Iterator[np.ndarray], str]:
    """The dose planes of an RT Dose (PS3.3 C.8.8.3) in `order`, coloured from 0 to the
    volume's maximum, each with a scale bar in Gy (Dose Grid Scaling x stored value)."""
    import numpy as np

    scaling, unit = dose_units(ds)
    kept, _, high = clip_stored_range(decode_frames(path, ds, order), lambda index: ds)
    top = high * scaling
    lut = dose_colour_lut()
    scale = dose_scale(int(ds.Rows) * max(1, -(-DOSE_MIN_HEIGHT // int(ds.Rows))), top, unit)

    def frames() -> Iterator[np.ndarray]:
        for stored in (iter(kept) if kept is not None else decode_frames(path, ds, order)):
            fraction = stored.astype(np.float64) * scaling / top if top > 0 else np.zeros(stored.shape)
            plane = lut[np.clip(np.rint(fraction * 255), 0, 255).astype(np.uint8)]
            yield np.concatenate([_enlarged(plane), scale], axis=1)

    return frames(), f"dose 0 to {top:.4g} {unit} (Dose Grid Scaling {scaling:g}), colour scale beside each plane"


def _is_axial(ds: Dataset) -> bool:
    return [round(float(v), 3) for v in ds.get("ImageOrientationPatient") or []] == [1, 0, 0, 0, 1, 0]


DOSE_WASH_OPACITY = 0.5  # over the CT the anatomy shows through the dose
DOSE_WASH_FROM = 0.05  # of the maximum dose: below it the CT is left untinted


def dose_over_images(path: Path, ds: Dataset, images: tuple[Path, ...], options: Options
                     ) -> tuple[Iterator[np.ndarray], str, int]:
    """The dose sampled onto the images of its frame of reference (the planning CT), slice by
    slice along z: each image with the dose wash over it and the scale beside it.

    Axial grids only (the dose's and each image's orientation 1,0,0 / 0,1,0): each image pixel
    takes the nearest dose voxel in x and y (Image Position + Pixel Spacing, PS3.3 C.7.6.2)
    and the nearest plane in z (Grid Frame Offset Vector, C.8.8.3.2: relative when its first
    value is 0), within half a plane's spacing; pixels outside the grid get no dose.
    """
    import numpy as np

    if not _is_axial(ds):
        raise Unsupported("a dose grid that is not axial cannot yet be drawn over its images")
    scaling, unit = dose_units(ds)
    origin = [float(v) for v in ds.ImagePositionPatient]
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    planes_z = np.array([origin[2] + o if offsets[0] == 0 else o for o in offsets])
    row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    dose = np.stack(list(decode_frames(path, ds))).astype(np.float64) * scaling
    top = float(dose.max())
    half = (float(np.min(np.abs(np.diff(planes_z)))) if len(planes_z) > 1 else 1.0) / 2
    placed = []
    for image_path in images:
        image = read_dataset(image_path)  # pixel data left on disk, the header kept for drawing
        if not _is_axial(image):
            continue
        z = float(image.ImagePositionPatient[2])
        if np.min(np.abs(planes_z - z)) <= half:
            placed.append((z, image_path, image))
    placed.sort(key=lambda item: item[0])
    lut = dose_colour_lut()

    def frames() -> Iterator[np.ndarray]:
        for z, image_path, image in placed:
            image, shown = shown_image(image_path, options, image)
            if shown is None:
                raise Unsupported(f"{image_path.name}, under the dose, is withheld by --redact")
            shown = np.repeat(shown[..., None], 3, axis=2) if shown.ndim == 2 else shown
            x0, y0 = (float(v) for v in image.ImagePositionPatient[:2])
            dy, dx = (float(v) for v in image.PixelSpacing)
            columns = np.floor((x0 + dx * np.arange(shown.shape[1]) - origin[0]) / column_spacing + 0.5).astype(int)
            rows = np.floor((y0 + dy * np.arange(shown.shape[0]) - origin[1]) / row_spacing + 0.5).astype(int)
            inside = (rows[:, None] >= 0) & (rows[:, None] < dose.shape[1]) & (columns >= 0) & (columns < dose.shape[2])
            plane = dose[int(np.argmin(np.abs(planes_z - z)))]
            sampled = plane[np.clip(rows, 0, dose.shape[1] - 1)[:, None], np.clip(columns, 0, dose.shape[2] - 1)]
            fraction = np.where(inside, sampled / top if top > 0 else 0.0, 0.0)
            opacity = np.where(fraction >= DOSE_WASH_FROM, DOSE_WASH_OPACITY, 0.0)[..., None]
            colour = lut[np.clip(np.rint(fraction * 255), 0, 255).astype(np.uint8)].astype(np.float64)
            wash = np.rint(shown * (1 - opacity) + colour * opacity).astype(np.uint8)
            yield np.concatenate([wash, dose_scale(wash.shape[0], top, unit)], axis=1)

    text = (f"dose 0 to {top:.4g} {unit} over {len(placed)} images of its frame of reference "
            f"(wash at {DOSE_WASH_OPACITY:.0%} from {DOSE_WASH_FROM:.0%} of the maximum)")
    return frames(), text, len(placed)


def _enlarged(plane: np.ndarray) -> np.ndarray:
    import numpy as np

    times = max(1, -(-DOSE_MIN_HEIGHT // plane.shape[0]))
    return np.repeat(np.repeat(plane, times, axis=0), times, axis=1)


@functools.lru_cache(maxsize=8)
def dose_scale(height: int, top: float, unit: str) -> np.ndarray:
    """The colour bar (maximum at the top) with 0, half and the maximum labelled, `height` tall."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    lut = dose_colour_lut()
    bar = np.zeros((height, DOSE_SCALE_WIDTH, 3), dtype=np.uint8)
    levels = np.linspace(255, 0, height).round().astype(np.uint8)
    bar[:, 4:16] = lut[levels][:, None, :]
    image = Image.fromarray(bar)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12)
    for fraction, anchor in ((1.0, "lt"), (0.5, "lm"), (0.0, "lb")):
        y = round((1 - fraction) * (height - 1))
        draw.text((20, y), f"{fraction * top:.3g} {unit}", fill=(255, 255, 255), font=font, anchor=anchor)
    return np.asarray(image)


# =============================================================================
# Segmentations: each segment in its colour, slice by slice
# =============================================================================

SEGMENT_COLOURS = ((255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 200, 0), (200, 64, 255), (0, 220, 220))
# CIELab (D50, the ICC profile connection space of PS3.3 C.10.7.1.1) to sRGB (D65): Bradford
# adaptation, then the sRGB primaries (IEC 61966-2-1).
BRADFORD_D50_TO_D65 = ((0.9555766, -0.0230393, 0.0631636), (-0.0282895, 1.0099416, 0.0210077),
                       (0.0122982, -0.0204830, 1.3299098))
XYZ_TO_LINEAR_SRGB = ((3.2404542, -1.5371385, -0.4985314), (-0.9692660, 1.8760108, 0.0415560),
                      (0.0556434, -0.2040259, 1.0572252))
D50_WHITE = (0.96422, 1.0, 0.82521)


def cielab_to_srgb(scaled: Iterable[int]) -> tuple[int, int, int]:
    """A DICOM CIELab value (L* 0..100 and a*, b* -128..127, each scaled to 0..65535) as 8-bit sRGB."""
    import numpy as np

    v = [float(x) / 65535 for x in scaled]
    lightness, a, b = v[0] * 100, v[1] * 255 - 128, v[2] * 255 - 128
    fy = (lightness + 16) / 116
    epsilon, kappa = 216 / 24389, 24389 / 27

    def inverse(t: float) -> float:
        return t ** 3 if t ** 3 > epsilon else (116 * t - 16) / kappa

    xyz = np.array([inverse(fy + a / 500), fy ** 3 if lightness > kappa * epsilon else lightness / kappa,
                    inverse(fy - b / 200)]) * np.array(D50_WHITE)
    linear = np.clip(np.array(XYZ_TO_LINEAR_SRGB) @ (np.array(BRADFORD_D50_TO_D65) @ xyz), 0, 1)
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return tuple(int(round(c * 255)) for c in encoded)


def segments(ds: Dataset) -> dict[int, tuple[str, tuple[int, int, int]]]:
    """Segment number -> (label, sRGB colour) from the Segment Sequence (C.8.20.4): the
    Recommended Display CIELab Value, else a colour of `SEGMENT_COLOURS` by number."""
    found = {}
    for item in ds.get("SegmentSequence") or []:
        number = int(item.get("SegmentNumber") or len(found) + 1)
        lab = item.get("RecommendedDisplayCIELabValue")
        colour = cielab_to_srgb(lab) if lab is not None and len(lab) == 3 else \
            SEGMENT_COLOURS[(number - 1) % len(SEGMENT_COLOURS)]
        found[number] = (text_of(item.get("SegmentLabel", "")) or f"segment {number}", colour)
    return found


def segmentation_slices(ds: Dataset) -> list[list[tuple[int, int]]]:
    """The frames of a segmentation grouped by slice, slices in order along the normal: each a
    list of (frame number, segment number).  Frames without a position are slices of their own."""
    positions = frame_positions(ds)
    items = ds.get("PerFrameFunctionalGroupsSequence") or []
    count = number_of_frames(ds)
    by_slice: dict = {}
    for n in range(count):
        identification = (items[n].get("SegmentIdentificationSequence") or [None])[0] if n < len(items) else None
        segment = int(getattr(identification, "ReferencedSegmentNumber", 1) or 1)
        position = positions[n] if n < len(positions) and positions[n] is not None else None
        key = (0, round(position, 3)) if position is not None else (1, n)
        by_slice.setdefault(key, []).append((n, segment))
    return [by_slice[key] for key in sorted(by_slice)]


def segmentation_frames(path: Path, ds: Dataset, slices: list[list[tuple[int, int]]],
                        backgrounds: list | None = None) -> tuple[Iterator[np.ndarray], str]:
    """Each slice as RGB: every segment's frame in its colour, BINARY masks opaque,
    FRACTIONAL ones by opacity (value / Maximum Fractional Value, C.8.20.2.3); on black, or,
    with `backgrounds` (a function of the slice number giving the segmented image's display
    frame, or None), over that image at SEGMENT_OVERLAY_OPACITY."""
    import numpy as np

    colours = segments(ds)
    fractional = str(ds.get("SegmentationType", "")).upper() == "FRACTIONAL"
    maximum = float(ds.get("MaximumFractionalValue") or 255) if fractional else 1.0
    order = [frame for group in slices for frame, _ in group]
    shown_shape = (int(ds.Rows), int(ds.Columns), 3)

    def frames() -> Iterator[np.ndarray]:
        decoded = decode_frames(path, ds, order)
        for number, group in enumerate(slices):
            image = backgrounds(number) if backgrounds is not None else None
            shown = np.zeros((int(ds.Rows), int(ds.Columns), 3), dtype=np.float32) if image is None else \
                np.broadcast_to(image.astype(np.float32).reshape(image.shape[:2] + (-1,)), shown_shape).copy()
            strength = 1.0 if image is None else SEGMENT_OVERLAY_OPACITY
            for _, segment in group:
                mask = next(decoded)
                opacity = strength * np.clip(mask.astype(np.float32) / maximum, 0, 1)[..., None]
                colour = np.array(colours.get(segment, ("", (255, 255, 255)))[1], dtype=np.float32)
                shown = shown * (1 - opacity) + colour * opacity
            yield np.rint(shown).astype(np.uint8)

    legend = [f"{number} {label} (sRGB {','.join(map(str, rgb))})" for number, (label, rgb) in colours.items()]
    unknown = sorted({segment for group in slices for _, segment in group} - set(colours))
    legend += [f"{number} not in the Segment Sequence (white)" for number in unknown]
    legend = "; ".join(legend)
    where = "on black" if backgrounds is None else f"over the images it segments ({backgrounds.found} of {len(slices)} slices)"
    return frames(), f"{'fractional' if fractional else 'binary'} segmentation {where}: {legend or 'no segments'}"


SEGMENT_OVERLAY_OPACITY = 0.5  # over its image a segment lets the anatomy show through


class _Backgrounds:
    """The display frame (8-bit) of the image under each slice of a segmentation, by slice number."""

    def __init__(self, slices: dict[int, tuple[Path, Dataset]], options: Options):
        self.slices, self.options, self.found = slices, options, len(slices)

    def __call__(self, number: int):
        if number not in self.slices:
            return None
        path, image = self.slices[number]
        return shown_image(path, self.options, image)[1]


def segmented_images(ds: Dataset, slices: list[list[tuple[int, int]]], images: tuple[Path, ...],
                     options: Options) -> _Backgrounds:
    """Which of `images` (single-frame files of the segmented series) lies under each slice: the
    one at the slice's position along the normal (within half a millimetre), of the same size."""
    positions = frame_positions(ds)
    under: dict[int, tuple[Path, Dataset]] = {}
    placed = []
    for path in images:
        image = read_dataset(path)  # pixel data left on disk, the header kept for drawing
        if (int(image.get("Rows") or 0), int(image.get("Columns") or 0)) != (int(ds.Rows), int(ds.Columns)):
            continue
        position = along_normal(image.get("ImagePositionPatient"), image.get("ImageOrientationPatient"))
        if position is not None:
            placed.append((position, path, image))
    for number, group in enumerate(slices):
        where = positions[group[0][0]] if group[0][0] < len(positions) else None
        if where is None or not placed:
            continue
        position, path, image = min(placed, key=lambda item: (abs(item[0] - where), str(item[1])))
        if abs(position - where) <= 0.5:
            under[number] = (path, image)
    return _Backgrounds(under, options)


# =============================================================================
# Whole-slide images: tiles stitched into one picture
# =============================================================================

# A stitched level wider or taller than this is area-averaged down by a power of two (tiles
# are 2^n pixels, so each output pixel then comes from one tile): a 40x level of ~100k x 80k
# pixels becomes ~6k x 5k.  Memory: the output image and one tile.
SLIDE_MAX_SIDE = 8192


@dataclasses.dataclass(frozen=True)
class SlideLayout:
    """Where each frame of a tiled image goes in its Total Pixel Matrix (PS3.3 C.8.12.4)."""

    rows: int  # Total Pixel Matrix Rows
    columns: int  # Total Pixel Matrix Columns
    tiles: tuple[tuple[int, int] | None, ...]  # each frame's top-left (row, column), 0-based; None: not drawn
    organization: str

    def factor(self, max_side: int = SLIDE_MAX_SIDE) -> int:
        factor = 1
        while max(self.rows, self.columns) > max_side * factor:
            factor *= 2
        return factor


def slide_layout(ds: Dataset) -> SlideLayout:
    """The tile layout of a whole-slide image level.

    TILED_FULL (C.7.6.17.3): the frames fill the matrix tile row by tile row,
    left to right, first focal plane and optical path first; only that first
    plane is drawn.  TILED_SPARSE: each frame's Plane Position (Slide)
    (C.8.12.6.1) gives its 1-based Row/Column Position In Total Image Pixel
    Matrix; a position given twice (another focal plane) keeps its first tile.
    """
    import math

    rows, columns = (int(ds.get(total) if ds.get(total) is not None else ds.get(tile))
                     for total, tile in (("TotalPixelMatrixRows", "Rows"), ("TotalPixelMatrixColumns", "Columns")))
    if rows < 1 or columns < 1:
        raise CorruptFile(f"a total pixel matrix of {columns} x {rows}")
    tile_rows, tile_columns, count = int(ds.Rows), int(ds.Columns), number_of_frames(ds)
    organization = str(ds.get("DimensionOrganizationType", "") or "")
    frames = ds.get("PerFrameFunctionalGroupsSequence") or []
    if organization == "TILED_SPARSE" or not organization and frames and "PlanePositionSlideSequence" in frames[0]:
        tiles: list[tuple[int, int] | None] = []
        seen = set()
        for item in frames[:count]:
            position = (item.get("PlanePositionSlideSequence") or [None])[0]
            try:
                place = (int(position.RowPositionInTotalImagePixelMatrix) - 1,
                         int(position.ColumnPositionInTotalImagePixelMatrix) - 1)
            except (AttributeError, TypeError, ValueError):
                place = None
            if place is not None and (place in seen or not (0 <= place[0] < rows and 0 <= place[1] < columns)):
                place = None
            seen.add(place)
            tiles.append(place)
        tiles += [None] * (count - len(tiles))
    else:
        across = math.ceil(columns / tile_columns)
        plane = across * math.ceil(rows / tile_rows)
        tiles = [((n // across) * tile_rows, (n % across) * tile_columns) if n < plane else None for n in range(count)]
    return SlideLayout(rows, columns, tuple(tiles), organization or "TILED_FULL")


def stitched_slide(frames: Iterable[np.ndarray], layout: SlideLayout, factor: int) -> np.ndarray:
    """The tiles placed in one picture, scaled down by `factor` (area averaging); missing tiles black."""
    import math

    import numpy as np

    picture = None
    for frame, place in zip(frames, layout.tiles):
        if place is None:
            continue
        if picture is None:
            shape = (math.ceil(layout.rows / factor), math.ceil(layout.columns / factor)) + frame.shape[2:]
            picture = np.zeros(shape, dtype=frame.dtype)
        top, left = place
        tile = frame[:layout.rows - top, :layout.columns - left]  # edge tiles are padded past the matrix
        if factor > 1:
            tile, top, left = _area_averaged(tile, top, left, factor)
        region = picture[top:top + tile.shape[0], left:left + tile.shape[1]]
        region[...] = tile[:region.shape[0], :region.shape[1]]
    if picture is None:
        raise CorruptFile("no tile of the slide lies in its total pixel matrix")
    return picture


def _area_averaged(tile: np.ndarray, top: int, left: int, factor: int) -> tuple[np.ndarray, int, int]:
    """`tile` (at `top`, `left` in the matrix) as the output pixels it covers, each the mean of the
    tile's pixels in its `factor` x `factor` block; where the output lands."""
    import numpy as np

    above, before = top % factor, left % factor
    height = -(-(above + tile.shape[0]) // factor) * factor
    width = -(-(before + tile.shape[1]) // factor) * factor
    padded = np.zeros((height, width) + tile.shape[2:], dtype=np.float32)
    counts = np.zeros((height, width), dtype=np.float32)
    padded[above:above + tile.shape[0], before:before + tile.shape[1]] = tile
    counts[above:above + tile.shape[0], before:before + tile.shape[1]] = 1
    shape = (height // factor, factor, width // factor, factor)
    sums = padded.reshape(shape + tile.shape[2:]).sum(axis=(1, 3))
    weight = counts.reshape(shape).sum(axis=(1, 3))
    if tile.ndim == 3:
        weight = weight[..., None]
    mean = np.rint(sums / np.maximum(weight, 1)).astype(tile.dtype)
    return mean, top // factor, left // factor


def check_slide_memory(ds: Dataset, layout: SlideLayout, factor: int, limit: int) -> None:
    """Refuse a stitched picture (plus a tile) larger than `limit` bytes."""
    samples, depth = int(ds.get("SamplesPerPixel") or 1), max(1, int(ds.BitsAllocated) // 8)
    declared = (-(-layout.rows // factor) * -(-layout.columns // factor) + int(ds.Rows) * int(ds.Columns) * 4) * samples * depth
    if declared > limit:
        raise Unsupported(f"a stitched slide of {declared / 2**20:,.0f} MB exceeds the memory limit of "
                          f"{limit / 2**20:,.0f} MB (see --max-memory)")


# =============================================================================
# Encapsulated documents: the document itself, byte for byte
# =============================================================================

# PS3.3 A.45.1 (PDF), A.45.2 (CDA), A.85.1 (STL), A.85.2 (OBJ), A.85.3 (MTL): the file each
# becomes.  Never an extension a browser would run (.html, .svg, .js), whatever the file says.
DOCUMENT_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.104.1": (".pdf", "PDF"), "1.2.840.10008.5.1.4.1.1.104.2": (".xml", "CDA"),
    "1.2.840.10008.5.1.4.1.1.104.3": (".stl", "STL"), "1.2.840.10008.5.1.4.1.1.104.4": (".obj", "OBJ"),
    "1.2.840.10008.5.1.4.1.1.104.5": (".mtl", "MTL"),
}
DOCUMENT_SUFFIXES = tuple(suffix for suffix, _ in DOCUMENT_CLASSES.values())
ENCAPSULATED_DOCUMENT = 0x00420011


def document_bytes(ds: Dataset) -> bytes:
    """The encapsulated document as it was encapsulated (PS3.3 C.24.2.1): trimmed to Encapsulated
    Document Length (0042,0015) when given, else without the pad byte an odd-length document
    gets (a trailing NUL; DCMTK's pdf2dcm pads so), binary STL to the length its count gives."""
    if ENCAPSULATED_DOCUMENT not in ds:
        raise CorruptFile("no Encapsulated Document (0042,0011)")
    data = bytes(ds[ENCAPSULATED_DOCUMENT].value or b"")
    length = ds.get("EncapsulatedDocumentLength")
    if length is not None and 0 < int(length) <= len(data):
        return data[:int(length)]
    suffix, _ = DOCUMENT_CLASSES[str(ds.SOPClassUID)]
    if suffix == ".stl" and len(data) >= 84 and not data.startswith(b"solid"):
        return data[:84 + 50 * int.from_bytes(data[80:84], "little")]
    return data[:-1] if data.endswith(b"\x00") else data


def document_is_what_it_claims(data: bytes, kind: str) -> bool:
    """Whether the bytes are the kind of document the SOP class says (the MIME type is only a claim)."""
    head = data[:4096]
    if kind == "PDF":
        return head.startswith(b"%PDF-")
    if kind == "CDA":
        return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") and b"ClinicalDocument" in head
    if kind == "STL":
        return len(data) >= 84 and len(data) == 84 + 50 * int.from_bytes(data[80:84], "little")
    return b"\x00" not in head  # OBJ and MTL are text


def write_document(job: Conversion, kind: str) -> None:
    """An encapsulated document: ``STEM.pdf`` (or .xml, .stl, .obj, .mtl), byte for byte."""
    ds = job.ds
    suffix, name = DOCUMENT_CLASSES[str(ds.SOPClassUID)]
    title = text_of(ds.get("DocumentTitle", ""))
    if job.options.redact_salt:  # a document's text and images cannot be de-identified here
        job.rendering["Display"] = f"metadata only (--redact: the {name} document is withheld)"
        return
    data = document_bytes(ds)
    if not document_is_what_it_claims(data, name):
        raise CorruptFile(f"its Encapsulated Document is not the {name} its class claims "
                          f"(begins {data[:8]!r}, MIME type {text_of(ds.get('MIMETypeOfEncapsulatedDocument', ''))!r})")
    with open(job.output(suffix), "wb") as f:
        f.write(data)
    job.rendering["Display"] = f"{name} document, {len(data):,} bytes" + (f": {title}" if title else "")
    job.rendering["Output"] = f"{name} as {suffix}"


# =============================================================================
# Structured reports: the content tree as a page and an outline
# =============================================================================

# A conformant report is a few levels deep (TID 1500 measurement reports reach
# about 8); a fuzzed file can nest without end, and each level is a Python frame.
SR_MAX_DEPTH = 64

KEY_OBJECT_SELECTION_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"  # PS3.3 A.35.4
DOSE_REPORT_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.88.67",  # X-Ray Radiation Dose SR, A.35.8
    "1.2.840.10008.5.1.4.1.1.88.76",  # Enhanced X-Ray Radiation Dose SR, A.35.24
    "1.2.840.10008.5.1.4.1.1.88.73",  # Patient Radiation Dose SR, A.35.18
})

# PS3.15 E.3.4 Clean Structured Content: the value types whose values can name or
# date a patient.  Codes, numbers, units, structure and SOP classes stay.
WITHHELD_VALUE_TYPES = frozenset({"TEXT", "PNAME", "DATE", "TIME", "DATETIME", "UIDREF"})
WITHHELD = "withheld (--redact)"

# PS3.3 C.17.3.2.4 Relationship Type; CONTAINS is the tree itself and is not shown.
# PS3.3 C.17.3.2 Table C.17-5: Concept Name Code Sequence is Type 1C, required for
# these value types only (and the root); without one these show their value alone.
CONCEPT_NAME_OPTIONAL = frozenset({"CONTAINER", "IMAGE", "COMPOSITE", "WAVEFORM", "SCOORD", "SCOORD3D", "TCOORD", ""})
NO_CONCEPT_NAME = "(no concept name)"

RELATIONSHIP_LABELS = {
    "CONTAINS": "",
    "HAS PROPERTIES": "Has properties",
    "HAS OBS CONTEXT": "Has observation context",
    "HAS ACQ CONTEXT": "Has acquisition context",
    "HAS CONCEPT MOD": "Has concept modifier",
    "INFERRED FROM": "Inferred from",
    "SELECTED FROM": "Selected from",
}

# What link_of's URL is, by its ending: shown inline rather than only linked.
PICTURE_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg", ".webp")
VIDEO_SUFFIXES = (".mp4",)

KEY_OBJECT_DESCRIPTION = ("DCM", "113012")  # TID 2010

# Headline values of a dose report: (title, irradiation event container, columns
# of (label, NUM concept) read from within each event, accumulated totals).
DOSE_HEADLINES = (
    ("CT irradiation events", ("DCM", "113819"),  # TID 10013 CT Irradiation Event Data
     (("CTDIvol", ("DCM", "113830")), ("DLP", ("DCM", "113838"))),
     (("DCM", "113813"),)),  # TID 10012 CT Dose Length Product Total
    ("Projection X-ray irradiation events", ("DCM", "113706"),  # TID 10003
     (("Dose area product", ("DCM", "122130")), ("Dose (RP)", ("DCM", "113738"))),
     (("DCM", "113722"), ("DCM", "113725"))),  # TID 10002 DAP Total, Dose (RP) Total
)
EVENT_PROTOCOL = ("DCM", "125203")  # Acquisition Protocol, TID 10013 / 10003
EVENT_TARGET_REGION = ("DCM", "123014")


@dataclasses.dataclass
class Shown:
    """One value as the page and the outline show it.

    `kind` says how it is marked up: ``value`` (plain text), ``code`` (a
    CodeMeaning, `detail` its designator:value), ``object`` (a referenced
    instance, `detail` its UID, `href` this run's output of it), ``reference``
    (a by-reference item, `href` its anchor), ``missing``, ``withheld``.
    """

    text: str
    kind: str = "value"
    detail: str = ""
    href: str | None = None
    title: str = ""  # a tooltip: a unit's meaning
    picture: bool = False  # an IMAGE reference: its output is shown inline when it is a picture or video


@dataclasses.dataclass
class ContentItem:
    """One content item of PS3.3 C.17.3, read into plain values."""

    position: str  # "1.2.3": the path of ordinals that ReferencedContentItemIdentifier uses
    relationship: str
    value_type: str
    concept: str
    concept_code: tuple[str, str] | None
    values: list[Shown]
    children: list[ContentItem]
    continuous: bool = False
    observed: Shown | None = None
    reference: str | None = None  # by-reference: the position of the item it points to


@dataclasses.dataclass
class Report:
    """An SR document read: its header, its tree, and what the page shows above the tree."""

    sop_class: str
    title: str
    header: list[tuple[str, list[Shown]]]
    root: ContentItem
    by_position: dict[str, ContentItem]
    withheld: int
    withhold: bool


def structured_report(ds: Dataset, link_of: Callable[[str], str | None], withhold: bool) -> tuple[str, str]:
    """(HTML page, plain text) of an SR document (PS3.3 C.17.3 SR Document Content).

    `link_of` maps a referenced SOP Instance UID to a relative URL of this
    run's output for it, or None.  With `withhold` (``--redact``, PS3.15 E.3.4)
    the values of TEXT, PNAME, DATE, TIME, DATETIME and UIDREF items, the items'
    observation date-times and the UIDs of referenced instances are never
    output; the header shows `ds` as given.  Raises CorruptFile for a tree
    that cannot be walked (nested beyond SR_MAX_DEPTH, a Content Sequence that
    is not a sequence).
    """
    report = read_report(ds, link_of, withhold)
    return report_html(report), report_text(report)


def read_report(ds: Dataset, link_of: Callable[[str], str | None], withhold: bool) -> Report:
    """The document's header (C.17.2 SR Document General) and content tree (C.17.3), read once."""
    reading = _Reading(link_of, withhold)
    root = reading.item(ds, "1", 0)
    return Report(
        sop_class=string_value(_get(ds, "SOPClassUID")), title=root.concept, header=document_header(ds, reading),
        root=root, by_position=reading.by_position, withheld=reading.withheld, withhold=withhold,
    )


# -----------------------------------------------------------------------------
# Reading the tree
# -----------------------------------------------------------------------------

class _Reading:
    """The state of one walk over a tree: the link lookup, the redaction switch, what was found."""

    def __init__(self, link_of: Callable[[str], str | None], withhold: bool):
        self.link_of = link_of
        self.withhold = withhold
        self.withheld = 0
        self.by_position: dict[str, ContentItem] = {}

    def item(self, ds: Dataset, position: str, depth: int) -> ContentItem:
        """One content item and, depth first, its children (PS3.3 C.17.3.2)."""
        if depth > SR_MAX_DEPTH:
            raise CorruptFile(f"SR content nested deeper than {SR_MAX_DEPTH} levels")
        children = [self.item(child, f"{position}.{number}", depth + 1)
                    for number, child in enumerate(content_sequence(ds), 1)]
        relationship = string_value(_get(ds, "RelationshipType")).upper()
        value_type = string_value(_get(ds, "ValueType")).upper()
        concept_item = _first(ds, "ConceptNameCodeSequence")
        concept_code = _code_key(concept_item)
        concept = _code_meaning(concept_item)
        if not concept and (depth == 0 or value_type not in CONCEPT_NAME_OPTIONAL):
            concept = NO_CONCEPT_NAME
        reference = None
        if not value_type and "ReferencedContentItemIdentifier" in ds:
            reference = referenced_position(_get(ds, "ReferencedContentItemIdentifier"))
            values = []
        else:
            values = self.values(ds, value_type, children)
        item = ContentItem(
            position=position, relationship=relationship, value_type=value_type,
            concept=concept, concept_code=concept_code, values=values, children=children,
            continuous=string_value(_get(ds, "ContinuityOfContent")).upper() == "CONTINUOUS",
            observed=self.observed(ds), reference=reference,
        )
        self.by_position[position] = item
        return item

    def values(self, ds: Dataset, value_type: str, children: list[ContentItem]) -> list[Shown]:
        """The item's value, by its Value Type (PS3.3 C.17.3.2.1, Table C.17-5)."""
        if self.withhold and value_type in WITHHELD_VALUE_TYPES:
            self.withheld += 1
            return [Shown(WITHHELD, "withheld")]
        if value_type == "CONTAINER":
            return []
        if value_type == "TEXT":
            return [_plain(string_value(_get(ds, "TextValue"), strip=False).strip())]
        if value_type == "CODE":
            return [code_shown(_first(ds, "ConceptCodeSequence"))]
        if value_type == "NUM":
            return numeric_values(ds)
        if value_type == "DATE":
            return [_plain(date_text(_get(ds, "Date")))]
        if value_type == "TIME":
            return [_plain(time_text(_get(ds, "Time")))]
        if value_type == "DATETIME":
            return [_plain(datetime_text(_get(ds, "DateTime")))]
        if value_type == "PNAME":
            return [_plain(person_name_text(_get(ds, "PersonName")))]
        if value_type == "UIDREF":
            return [_plain(uid_text(_get(ds, "UID")))]
        if value_type in ("IMAGE", "COMPOSITE", "WAVEFORM"):
            return self.referenced_objects(ds, value_type)
        if value_type == "SCOORD":
            return self.spatial_coordinates(ds, children, 2)
        if value_type == "SCOORD3D":
            return self.spatial_coordinates(ds, children, 3)
        if value_type == "TCOORD":
            return self.temporal_coordinates(ds)
        if not value_type:
            return [Shown("(no value type)", "missing")]
        return [Shown(value_type, "missing")]  # a type this program does not know: named as is

    def observed(self, ds: Dataset) -> Shown | None:
        """Observation DateTime (C.17.3.2.1), which dates the report like a DATETIME item does."""
        if "ObservationDateTime" not in ds:
            return None
        if self.withhold:
            self.withheld += 1
            return Shown(WITHHELD, "withheld")
        return Shown(datetime_text(_get(ds, "ObservationDateTime")))

    def referenced_objects(self, ds: Dataset, value_type: str) -> list[Shown]:
        """IMAGE, COMPOSITE, WAVEFORM (C.18.3-C.18.5): the instance, linked when this run converted it."""
        referenced = _first(ds, "ReferencedSOPSequence")
        if referenced is None:
            return [Shown("(no referenced instance)", "missing")]
        shown = [self.object_shown(referenced, value_type == "IMAGE")]
        frames = _numbers_text(_get(referenced, "ReferencedFrameNumber"))
        if frames:
            shown.append(Shown(f"frames {frames}"))
        segments = _numbers_text(_get(referenced, "ReferencedSegmentNumber"))
        if segments:
            shown.append(Shown(f"segments {segments}"))
        channels = _numbers(_get(referenced, "ReferencedWaveformChannels"))
        if channels:  # pairs of (multiplex group, channel), C.18.5.1.1
            pairs = ", ".join(f"{_number_text(m)}/{_number_text(c)}" for m, c in zip(channels[::2], channels[1::2]))
            shown.append(Shown(f"channels {pairs}"))
        state = _first(referenced, "ReferencedSOPSequence")  # a presentation state, C.18.4
        if state is not None:
            shown.append(Shown("with"))
            shown.append(self.object_shown(state, False))
        return shown

    def object_shown(self, referenced: Dataset, picture: bool) -> Shown:
        """One referenced instance: its SOP class by name, linked to this run's output when known."""
        sop_class = string_value(_get(referenced, "ReferencedSOPClassUID"))
        instance = string_value(_get(referenced, "ReferencedSOPInstanceUID"))
        href = _relative_url(self.link_of(instance)) if instance else None
        return Shown(
            sop_class_name(sop_class), "object", href=href,
            detail="" if self.withhold else instance, picture=picture,
        )

    def spatial_coordinates(self, ds: Dataset, children: list[ContentItem], dimensions: int) -> list[Shown]:
        """SCOORD (C.18.6) and SCOORD3D (C.18.9): graphic type, points, where they lie."""
        graphic = string_value(_get(ds, "GraphicType")).capitalize() or "(no graphic type)"
        data = _numbers(_get(ds, "GraphicData"))
        count = len(data) // dimensions
        text = f"{graphic}, {count} point{'s' if count != 1 else ''}"
        if 0 < count <= 4:  # a handful of coordinates reads; a contour's hundreds do not
            points = [data[i:i + dimensions] for i in range(0, count * dimensions, dimensions)]
            text += ": " + " ".join("(" + ", ".join(_number_text(v) for v in p) + ")" for p in points)
        shown = [Shown(text)]
        if dimensions == 3:
            frame = string_value(_get(ds, "ReferencedFrameOfReferenceUID"))
            if frame and not self.withhold:
                shown.append(Shown("in frame of reference", detail=frame))
        # PS3.3 C.18.6: the image an SCOORD lies on is its SELECTED FROM child.
        for child in children:
            if child.relationship == "SELECTED FROM" and child.value_type == "IMAGE" and child.values:
                shown += [Shown("on"), child.values[0]]
                break
        return shown

    def temporal_coordinates(self, ds: Dataset) -> list[Shown]:
        """TCOORD (C.18.7): the range type and how many samples, offsets or date-times it names."""
        text = string_value(_get(ds, "TemporalRangeType")).capitalize() or "(no temporal range type)"
        samples = _numbers(_get(ds, "ReferencedSamplePositions"))
        offsets = _numbers(_get(ds, "ReferencedTimeOffsets"))
        moments = _get(ds, "ReferencedDateTime")
        if samples:
            text += f", sample positions {_numbers_text(samples)}"
        elif offsets:
            text += f", time offsets {_numbers_text(offsets)} s"
        elif moments:
            if self.withhold:
                self.withheld += 1
                return [Shown(text + ", date-times"), Shown(WITHHELD, "withheld")]
            listed = moments if is_multi(moments) else [moments]
            text += ", " + ", ".join(datetime_text(m) for m in listed)
        return [Shown(text)]


def content_sequence(ds: Dataset) -> list[Dataset]:
    """The items of a Content Sequence (0040,A730); CorruptFile if it is not a sequence of items."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    if "ContentSequence" not in ds:
        return []
    try:
        value = ds["ContentSequence"].value
    except Exception as exc:
        raise CorruptFile(f"unreadable SR Content Sequence: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if value is None or value == "":
        return []
    if not isinstance(value, (Sequence, list)) or not all(isinstance(item, Dataset) for item in value):
        raise CorruptFile("SR Content Sequence is not a sequence of items")
    return list(value)


def referenced_position(identifier) -> str | None:
    """The position a by-reference item points to (C.17.3.2.5: ordinals from the root, 1-based)."""
    numbers = _numbers(identifier)
    return ".".join(str(int(n)) for n in numbers) if numbers else None


def numeric_values(ds: Dataset) -> list[Shown]:
    """NUM (C.18.1): the value with its unit, or why there is none (Numeric Value Qualifier)."""
    measured = _first(ds, "MeasuredValueSequence")
    qualifier = code_shown(_first(ds, "NumericValueQualifierCodeSequence"))
    if measured is None:
        return [qualifier if qualifier.kind == "code" else Shown("no value", "missing")]
    number = string_value(_get(measured, "NumericValue"))
    if is_multi(_get(measured, "NumericValue")):
        number = ", ".join(string_value(v) for v in _get(measured, "NumericValue"))
    if not number and "FloatingPointValue" in measured:
        number = _number_text(_get(measured, "FloatingPointValue"))
    shown = [Shown(f"{number} {unit_text(_first(measured, 'MeasurementUnitsCodeSequence'))}".strip(),
                   title=_code_title(_first(measured, "MeasurementUnitsCodeSequence")))]
    if not number:
        shown = [Shown("no value", "missing")]
    if qualifier.kind == "code":
        shown.append(qualifier)
    return shown


def unit_text(unit: Dataset | None) -> str:
    """A unit as it is written: its UCUM code (``mm``, ``mGy.cm``), as dsr2html shows it.

    UCUM's unity ``1`` and its annotations (``{ratio}``) are no symbol a reader
    knows: those show their Code Meaning instead.
    """
    if unit is None:
        return ""
    value = string_value(_get(unit, "CodeValue"))
    meaning = string_value(_get(unit, "CodeMeaning"))
    if value == "1" or value.startswith("{") or not value:
        return meaning or value
    return value


def code_shown(code: Dataset | None) -> Shown:
    """A coded entry (PS3.3 8.8 Code Sequence Macro): its meaning, its designator:value beside it."""
    if code is None:
        return Shown("(no code)", "missing")
    key = _code_key(code)
    detail = f"{key[0]}:{key[1]}" if key else ""
    return Shown(_code_meaning(code) or detail or "(no code meaning)", "code", detail=detail)


def sop_class_name(uid: str) -> str:
    """A SOP class by its registered name; an unknown one as its UID."""
    from pydicom.uid import UID

    if not uid:
        return "(no SOP class)"
    name = UID(uid).name
    return name if name and name != uid else f"SOP class {uid}"


# -----------------------------------------------------------------------------
# Values as people read them
# -----------------------------------------------------------------------------

def date_text(value) -> str:
    """DA (PS3.5 6.2) YYYYMMDD as YYYY-MM-DD; anything else as stored."""
    text = string_value(value)
    match = re.fullmatch(r"(\d{4})\.?(\d{2})\.?(\d{2})", text)  # the dots: ACR-NEMA dates
    return "-".join(match.groups()) if match else text


def time_text(value) -> str:
    """TM (PS3.5 6.2) HHMMSS.FFFFFF as HH:MM:SS.FFFFFF (minutes and seconds are optional)."""
    text = string_value(value)
    match = re.fullmatch(r"(\d{2}):?(\d{2})?:?(\d{2})?(\.\d+)?", text)
    if not match:
        return text
    hours, minutes, seconds, fraction = match.groups()
    return ":".join(p for p in (hours, minutes, seconds) if p) + (fraction or "")


def datetime_text(value) -> str:
    """DT (PS3.5 6.2) YYYYMMDDHHMMSS.FFFFFF&ZZXX as ``YYYY-MM-DD HH:MM:SS.FFFFFF +ZZ:XX``."""
    text = string_value(value)
    match = re.fullmatch(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d+)?([+-]\d{4})?", text)
    if not match:
        return text
    year, month, day, hours, minutes, seconds, fraction, offset = match.groups()
    shown = "-".join(p for p in (year, month, day) if p)
    if hours:
        shown += " " + ":".join(p for p in (hours, minutes, seconds) if p) + (fraction or "")
    if offset:
        shown += f" {offset[:3]}:{offset[3:]}"
    return shown


def person_name_text(value) -> str:
    """PN (PS3.5 6.2.1) as a name is written: "Given Middle Family, Suffix" with its prefix."""
    from pydicom.valuerep import PersonName

    if value is None or value == "":
        return ""
    if is_multi(value):
        return "; ".join(person_name_text(v) for v in value)
    name = value if isinstance(value, PersonName) else PersonName(str(value))
    try:
        parts = [name.name_prefix, name.given_name, name.middle_name, name.family_name]
        shown = " ".join(string_value(p) for p in parts if string_value(p))
        if string_value(name.name_suffix):
            shown += f", {string_value(name.name_suffix)}"
    except Exception:  # a value pydicom cannot split: as stored
        shown = ""
    return shown or string_value(str(name)).replace("^", " ").strip()


def uid_text(value) -> str:
    """A UID with its registered name when it has one (a SOP class, a transfer syntax)."""
    from pydicom.uid import UID

    uid = string_value(value)
    name = UID(uid).name if uid else ""
    return f"{uid} ({name})" if uid and name and name != uid else uid


def sex_text(value) -> str:
    """Patient's Sex (PS3.3 C.7.1.1) in words."""
    code = string_value(value).upper()
    return {"M": "male", "F": "female", "O": "other"}.get(code, code)


# -----------------------------------------------------------------------------
# The header (PS3.3 C.17.2 SR Document General, C.7.1.1 Patient, C.7.2.1 General Study)
# -----------------------------------------------------------------------------

def document_header(ds: Dataset, reading: _Reading) -> list[tuple[str, list[Shown]]]:
    """The facts above the tree, as dsr2html lists them; empty ones left out, but for the patient."""
    def text(keyword: str, format_value=string_value) -> str:
        return format_value(_get(ds, keyword))

    def row(label: str, *parts: str, separator: str = ", ") -> tuple[str, list[Shown]]:
        shown = separator.join(p for p in parts if p)
        return label, [Shown(shown)] if shown else []

    series_number, study_id, model = text("SeriesNumber"), text("StudyID"), text("ManufacturerModelName")
    rows = [
        ("Document", [Shown(sop_class_name(text("SOPClassUID")))]),
        ("Patient", [_plain(text("PatientName", person_name_text))] if text("PatientName", person_name_text)
         else [Shown("(no name)", "missing")]),
        row("Patient ID", text("PatientID")),
        row("Birth date", text("PatientBirthDate", date_text)),
        row("Sex", text("PatientSex", sex_text)),
        row("Referring physician", text("ReferringPhysicianName", person_name_text)),
        row("Study", text("StudyDescription"), f"(#{study_id})" if study_id else "", separator=" "),
        row("Study date", text("StudyDate", date_text), text("StudyTime", time_text), separator=" "),
        row("Accession number", text("AccessionNumber")),
        row("Series", text("SeriesDescription"), f"(#{series_number})" if series_number else "", separator=" "),
        row("Protocol", text("ProtocolName")),
        row("Manufacturer", text("Manufacturer"), f"({model})" if model else "", separator=" "),
        row("Completion", text("CompletionFlag"), text("CompletionFlagDescription"), separator=" — "),
        row("Verification", text("VerificationFlag")),
    ]
    for observer in _items(ds, "VerifyingObserverSequence"):  # C.17.2.1: name, organisation, when
        rows.append(row("Verifying observer", person_name_text(_get(observer, "VerifyingObserverName")),
                        string_value(_get(observer, "VerifyingOrganization")),
                        datetime_text(_get(observer, "VerificationDateTime"))))
    rows.append(row("Content date/time", text("ContentDate", date_text), text("ContentTime", time_text), separator=" "))
    for study in _items(ds, "PredecessorDocumentsSequence"):  # C.17.2.3 Hierarchical SOP Instance Reference
        for series in _items(study, "ReferencedSeriesSequence"):
            for instance in _items(series, "ReferencedSOPSequence"):
                rows.append(("Predecessor document", [reading.object_shown(instance, False)]))
    return [(label, shown) for label, shown in rows if shown]


# -----------------------------------------------------------------------------
# What the page shows above the tree: key objects, dose headlines
# -----------------------------------------------------------------------------

def walk(item: ContentItem) -> Iterator[ContentItem]:
    """`item` and every item below it, depth first, in document order."""
    yield item
    for child in item.children:
        yield from walk(child)


def key_objects(report: Report) -> list[ContentItem]:
    """The instances a Key Object Selection document selects (PS3.3 A.35.4, TID 2010)."""
    if report.sop_class != KEY_OBJECT_SELECTION_CLASS:
        return []
    return [item for item in walk(report.root) if item.value_type in ("IMAGE", "COMPOSITE", "WAVEFORM")]


def key_object_description(report: Report) -> list[Shown]:
    """TID 2010's Key Object Description (DCM 113012), the reason the images were chosen."""
    for item in walk(report.root):
        if item.concept_code == KEY_OBJECT_DESCRIPTION and item.value_type == "TEXT":
            return item.values
    return []


@dataclasses.dataclass
class DoseTable:
    """Headline values of one kind of irradiation event in a dose report."""

    title: str
    columns: list[str]
    rows: list[tuple[str, list[list[Shown]]]]  # (anchor position, one cell per column)
    totals: list[tuple[str, list[Shown]]]  # (concept name, value)


def dose_tables(report: Report) -> list[DoseTable]:
    """Per irradiation event: protocol, target region and the dose values its template records.

    TID 10013 CT Irradiation Event Data gives Mean CTDIvol (DCM 113830) and DLP
    (113838); TID 10012 the CT Dose Length Product Total (113813); TID 10003 and
    10002 the projection X-ray equivalents.  Only the values the report holds
    are shown; the whole tree follows below.
    """
    if report.sop_class not in DOSE_REPORT_CLASSES:
        return []
    tables = []
    for title, event_code, columns, total_codes in DOSE_HEADLINES:
        rows = []
        for event in walk(report.root):
            if event.value_type != "CONTAINER" or event.concept_code != event_code:
                continue
            cells = [_value_of(event, EVENT_PROTOCOL), _value_of(event, EVENT_TARGET_REGION)]
            cells += [_value_of(event, code) for _, code in columns]
            rows.append((event.position, cells))
        totals = [(item.concept, item.values) for item in walk(report.root)
                  if item.value_type == "NUM" and item.concept_code in total_codes]
        if rows or totals:
            tables.append(DoseTable(title, ["Protocol", "Target region", *(label for label, _ in columns)],
                                    rows, totals))
    return tables


def _value_of(event: ContentItem, code: tuple[str, str]) -> list[Shown]:
    for item in walk(event):
        if item.concept_code == code and item.values:
            return item.values
    return []


# -----------------------------------------------------------------------------
# The HTML page
# -----------------------------------------------------------------------------

REPORT_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:1em auto;max-width:60em;padding:0 1em;color:#222;background:#fafafa;overflow-wrap:anywhere}
h1{font-size:1.45em}h2{font-size:1.25em;border-bottom:1px solid #ccc}h3{font-size:1.1em}h4,h5,h6{font-size:1em}
table{border-collapse:collapse;margin:.5em 0}th,td{text-align:left;vertical-align:top;padding:.15em .6em .15em 0}
table.dose th,table.dose td{border:1px solid #ccc;padding:.2em .5em}
ul.items{list-style:none;padding-left:1.2em;margin:.2em 0}li{margin:.15em 0}
.rel{font-size:.85em;color:#666;font-style:italic}.concept{font-weight:600}
.coded,.uid,.observed{font-size:.8em;color:#777}.value{white-space:pre-line}
.missing,.withheld{color:#888;font-style:italic}
.notice{background:#fff3cd;border:1px solid #e0c060;padding:.5em}
p.prose span[id]{border-bottom:1px dotted #aaa}
img.thumb{max-width:160px;max-height:160px;display:block;margin:.2em 0}
section.keys{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;background:#fff;border:1px solid #ddd;padding:8px;max-width:272px}
figure img,figure video{max-width:256px;max-height:256px;display:block;background:#000}
figcaption{font-size:13px}:target{background:#ffef9f}
"""


def report_html(report: Report) -> str:
    """The page: header, then the key objects or dose headlines, then the tree (dsr2html's order)."""
    title = escape(report.title)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{title}</title>",
             '<link rel="icon" href="data:,">',  # no favicon request: the page needs no server
             f"<style>{REPORT_STYLE}</style></head><body>"]
    if report.withhold:
        parts.append(f'<p class="notice">{escape(withheld_notice(report))}</p>')
    parts.append(f'<h1 id="item-1">{title}</h1>')
    parts.append('<table class="header">')
    parts += [f"<tr><th>{escape(label)}</th><td>{_html_values(values)}</td></tr>" for label, values in report.header]
    parts.append("</table>")
    parts += _html_key_objects(report)
    for table in dose_tables(report):
        parts += _html_dose_table(table)
    parts.append("<hr>")
    root = report.root
    notes = [_html_observed(root)] if root.observed else []
    parts += [n for n in notes if n]
    parts += _html_children(root, 1, report)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def withheld_notice(report: Report) -> str:
    """The sentence at the top of a redacted report: how much was withheld, and why."""
    count = report.withheld
    return (f"--redact: {count} content item value{'s' if count != 1 else ''} withheld "
            "(text, person names, dates, times and UIDs can identify the patient; "
            "DICOM PS3.15 E.3.4 Clean Structured Content). Codes, numbers, units and "
            "the document's structure are shown as recorded.")


def _html_children(item: ContentItem, depth: int, report: Report) -> list[str]:
    """The children of a container: headings for containers, list items for the rest.

    A CONTINUOUS container (C.18.8.1.1) is running text: its children read
    as one paragraph, each with its own anchor, their own children after it.
    """
    parts: list[str] = []
    run: list[ContentItem] = []

    def flush():
        if not run:
            return
        if item.continuous:
            parts.append('<p class="prose">' + " ".join(_html_prose(child) for child in run) + "</p>")
            with_notes = [child for child in run if child.children or child.relationship not in ("", "CONTAINS")]
            if with_notes:
                # the anchor is the phrase's; the note repeats the item without one
                parts.append('<ul class="items">' + "".join(_html_item(child, depth, report, anchored=False)
                                                            for child in with_notes) + "</ul>")
        else:
            parts.append('<ul class="items">' + "".join(_html_item(child, depth, report) for child in run) + "</ul>")
        run.clear()

    for child in item.children:
        if child.value_type == "CONTAINER":
            flush()
            parts += _html_container(child, depth + 1, report)
        else:
            run.append(child)
    flush()
    return parts


def _html_container(item: ContentItem, depth: int, report: Report) -> list[str]:
    """A CONTAINER (C.18.8) as a section; nameless ones (allowed below the root) get no heading."""
    level = min(depth, 6)
    parts = [f'<section id="item-{escape(item.position)}">']
    relationship = _relationship_label(item.relationship)
    if item.concept:
        rel = f'<span class="rel">{escape(relationship)}</span> ' if relationship else ""
        parts.append(f"<h{level}>{rel}{escape(item.concept)}</h{level}>")
    elif relationship:
        parts.append(f'<p class="rel">{escape(relationship)}</p>')
    observed = _html_observed(item)
    if observed:
        parts.append(observed)
    parts += _html_children(item, depth, report)
    parts.append("</section>")
    return parts


def _html_item(item: ContentItem, depth: int, report: Report, anchored: bool = True) -> str:
    """One item: "relationship concept: value", its children nested below."""
    if item.value_type == "CONTAINER":
        return "<li>" + "\n".join(_html_container(item, depth + 1, report)) + "</li>"
    relationship = _relationship_label(item.relationship)
    parts = [f'<li id="item-{escape(item.position)}">' if anchored else "<li>"]
    if relationship:
        parts.append(f'<span class="rel">{escape(relationship)}</span> ')
    if item.reference is not None:
        parts.append(_html_reference(item, report))
    else:
        concept = f'<span class="concept">{escape(item.concept)}</span>: ' if item.concept else ""
        parts.append(concept + _html_values(item.values))
        parts.append(_html_pictures(item.values, "thumb"))
    observed = _html_observed(item)
    if observed:
        parts.append(" " + observed)
    if item.children:
        parts.append('<ul class="items">' + "".join(_html_item(child, depth, report) for child in item.children) + "</ul>")
    parts.append("</li>")
    return "".join(parts)


def _html_prose(item: ContentItem) -> str:
    """A child of a continuous container as a phrase of its paragraph, its concept name as a tooltip."""
    return f'<span id="item-{escape(item.position)}" title="{escape(item.concept)}">{_html_values(item.values)}</span>'


def _html_reference(item: ContentItem, report: Report) -> str:
    """A by-reference item (C.17.3.2.5): a link to the item it names, never that item again.

    Following the reference would loop on a tree that refers to its own
    ancestors; the anchor link is the whole rendering.
    """
    target = report.by_position.get(item.reference or "")
    if target is None:
        return f'<span class="missing">reference to item {escape(item.reference or "(none)")}, not in the document</span>'
    return (f'<a class="ref" href="#item-{escape(target.position)}">item {escape(target.position)}'
            f"</a>{f' ({escape(target.concept)})' if target.concept else ''}")


def _html_observed(item: ContentItem) -> str:
    if item.observed is None:
        return ""
    return f'<span class="observed">(observed {_html_values([item.observed])})</span>'


def _html_values(values: list[Shown]) -> str:
    return " ".join(_html_shown(shown) for shown in values)


def _html_shown(shown: Shown) -> str:
    """One value, escaped; codes with their designator:value, instances with their UID."""
    text = escape(shown.text)
    if shown.kind == "code":
        coded = f' <small class="coded">({escape(shown.detail)})</small>' if shown.detail and shown.detail != shown.text else ""
        return f'<span class="code" title="{escape(shown.detail)}">{text}</span>{coded}'
    if shown.kind == "object":
        label = f'<a href="{escape(shown.href)}">{text}</a>' if shown.href else text
        uid = f' <small class="uid">{escape(shown.detail)}</small>' if shown.detail else ""
        return label + uid
    if shown.kind in ("missing", "withheld"):
        return f'<span class="{shown.kind}">{text}</span>'
    tip = f' title="{escape(shown.title)}"' if shown.title else ""
    detail = f' <small class="uid">{escape(shown.detail)}</small>' if shown.detail else ""
    return f'<span class="value"{tip}>{text}</span>{detail}'


def _html_pictures(values: list[Shown], css: str) -> str:
    """Thumbnails of the referenced images this run converted to a picture or a video."""
    parts = []
    for shown in values:
        if shown.kind != "object" or not shown.href or not shown.picture:
            continue
        media = _media_of(shown.href)
        if media == "img":
            parts.append(f'<a href="{escape(shown.href)}"><img class="{css}" loading="lazy" '
                         f'src="{escape(shown.href)}" alt="{escape(shown.text)}"></a>')
        elif media == "video":
            parts.append(f'<video class="{css}" controls muted preload="metadata" src="{escape(shown.href)}"></video>')
    return "".join(parts)


def _html_key_objects(report: Report) -> list[str]:
    """A Key Object Selection's title, description and selected instances, pictures first."""
    keys = key_objects(report)
    if report.sop_class != KEY_OBJECT_SELECTION_CLASS:
        return []
    title = code_shown_of(report.root)
    parts = ["<h2>Key objects</h2>", f"<p><b>Selection:</b> {_html_values([title])}</p>"]
    description = key_object_description(report)
    if description:
        parts.append(f"<p><b>Description:</b> {_html_values(description)}</p>")
    parts.append('<section class="keys">')
    for item in keys:
        objects = [shown for shown in item.values if shown.kind == "object"]
        figure = objects[0] if objects else None
        media = ""
        if figure is not None and figure.href:
            kind = _media_of(figure.href)
            if kind == "img":
                media = f'<a href="{escape(figure.href)}"><img loading="lazy" src="{escape(figure.href)}" alt="{escape(figure.text)}"></a>'
            elif kind == "video":
                media = f'<video controls muted loop preload="metadata" src="{escape(figure.href)}"></video>'
        parts.append(f'<figure>{media}<figcaption><a href="#item-{escape(item.position)}">{escape(item.position)}</a> '
                     f"{_html_values(item.values)}</figcaption></figure>")
    parts.append("</section>")
    return parts


def _html_dose_table(table: DoseTable) -> list[str]:
    parts = [f"<h2>{escape(table.title)}</h2>"]
    if table.rows:
        parts.append('<table class="dose"><tr><th>Event</th>' + "".join(f"<th>{escape(c)}</th>" for c in table.columns) + "</tr>")
        for number, (position, cells) in enumerate(table.rows, 1):
            row = "".join(f"<td>{_html_values(cell)}</td>" for cell in cells)
            parts.append(f'<tr><td><a href="#item-{escape(position)}">{number}</a></td>{row}</tr>')
        parts.append("</table>")
    for concept, values in table.totals:
        parts.append(f'<p><span class="concept">{escape(concept)}</span>: {_html_values(values)}</p>')
    return parts


def code_shown_of(item: ContentItem) -> Shown:
    """An item's concept name as a code (a KOS title, CID 7010)."""
    key = item.concept_code
    return Shown(item.concept, "code", detail=f"{key[0]}:{key[1]}" if key else "")


# -----------------------------------------------------------------------------
# The plain text
# -----------------------------------------------------------------------------

def report_text(report: Report) -> str:
    """The same content as the page, as an indented outline of "Concept: value" lines."""
    lines = []
    if report.withhold:
        lines += [withheld_notice(report), ""]
    lines += [report.title, "=" * max(len(report.title), 3)]
    width = max((len(label) for label, _ in report.header), default=0)
    lines += [f"{label + ':':<{width + 1}} {_text_values(values)}" for label, values in report.header]
    if report.sop_class == KEY_OBJECT_SELECTION_CLASS:
        lines += ["", "Key objects", "-----------", f"Selection: {_text_values([code_shown_of(report.root)])}"]
        description = key_object_description(report)
        if description:
            lines.append(f"Description: {_text_values(description)}")
        lines += [f"  [{item.position}] {_text_values(item.values)}" for item in key_objects(report)]
    for table in dose_tables(report):
        lines += ["", table.title, "-" * len(table.title)]
        lines += _text_dose_table(table)
    lines.append("")
    if report.root.observed:
        lines.append(f"(observed {_text_values([report.root.observed])})")
    lines += _text_children(report.root, 1, report)
    return "\n".join(lines).rstrip() + "\n"


def _text_children(item: ContentItem, indent: int, report: Report) -> list[str]:
    lines: list[str] = []
    pad = "  " * indent
    if item.continuous:
        phrases = [_text_values(child.values) for child in item.children if child.value_type != "CONTAINER"]
        if phrases:
            lines.append(pad + _indented(" ".join(phrases), pad))
    for child in item.children:
        if child.value_type == "CONTAINER":
            lines += _text_container(child, indent, report)
        elif not item.continuous or child.children or child.relationship not in ("", "CONTAINS"):
            lines += _text_item(child, indent, report)
    return lines


def _text_container(item: ContentItem, indent: int, report: Report) -> list[str]:
    pad = "  " * indent
    relationship = _relationship_label(item.relationship)
    heading = " ".join(p for p in (f"[{relationship}]" if relationship else "", item.concept) if p)
    lines = [""]
    if heading:
        lines += [f"{pad}{heading}", f"{pad}{'-' * len(heading)}"]
    if item.observed:
        lines.append(f"{pad}(observed {_text_values([item.observed])})")
    return lines + _text_children(item, indent + 1, report)


def _text_item(item: ContentItem, indent: int, report: Report) -> list[str]:
    pad = "  " * indent
    if item.value_type == "CONTAINER":
        return _text_container(item, indent, report)
    relationship = _relationship_label(item.relationship)
    prefix = f"[{relationship}] " if relationship else ""
    if item.reference is not None:
        target = report.by_position.get(item.reference)
        body = (f"-> item {target.position}" + f" ({target.concept})" * bool(target.concept) if target
                else f"reference to item {item.reference}, not in the document")
    else:
        body = f"{item.concept}: " * bool(item.concept) + _text_values(item.values)
    observed = f" (observed {_text_values([item.observed])})" if item.observed else ""
    lines = [pad + _indented(f"{prefix}{body}{observed}", pad + "    ")]
    for child in item.children:
        lines += _text_item(child, indent + 1, report)
    return lines


def _text_dose_table(table: DoseTable) -> list[str]:
    header = ["Event", *table.columns]
    rows = [[str(n), *(_text_values(cell) for cell in cells)] for n, (_, cells) in enumerate(table.rows, 1)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]] if rows else []
    lines += [f"{concept}: {_text_values(values)}" for concept, values in table.totals]
    return lines


def _text_values(values: list[Shown]) -> str:
    return " ".join(_text_shown(shown) for shown in values)


def _text_shown(shown: Shown) -> str:
    if shown.kind == "code" and shown.detail and shown.detail != shown.text:
        return f"{shown.text} ({shown.detail})"
    if shown.kind == "object":
        return " ".join(p for p in (shown.text, shown.detail, f"<{shown.href}>" if shown.href else "") if p)
    if shown.detail:
        return f"{shown.text} {shown.detail}"
    return shown.text


def _indented(text: str, pad: str) -> str:
    """Continuation lines of a multi-line value, indented under their item."""
    return "\n".join(line.rstrip() for line in text.replace("\n", "\n" + pad).split("\n"))


# -----------------------------------------------------------------------------
# Reading values safely: a damaged element shows as missing, never aborts the report
# -----------------------------------------------------------------------------

def _get(ds: Dataset, keyword: str):
    try:
        return ds.get(keyword)
    except Exception:
        return None


def _items(ds: Dataset, keyword: str) -> list[Dataset]:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    value = _get(ds, keyword)
    if not isinstance(value, (Sequence, list)):
        return []
    return [item for item in value if isinstance(item, Dataset)]


def _first(ds: Dataset, keyword: str) -> Dataset | None:
    items = _items(ds, keyword)
    return items[0] if items else None


def string_value(value, strip: bool = True) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("latin-1")
    if is_multi(value):  # a single-valued attribute stored with a backslash: every value, as DICOM writes them
        value = "\\".join(str(v) for v in value)
    text = str(value).replace("\x00", "")
    # PS3.5 6.2: UT and ST lines end in CR LF; lone CRs occur too (test-SR.dcm has all three).
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.strip() if strip else text


def _plain(text: str) -> Shown:
    return Shown(text) if text else Shown("(no value)", "missing")


def _code_key(code: Dataset | None) -> tuple[str, str] | None:
    """(designator, value) of a code; Long Code Value and URN Code Value stand in for Code Value (8.8)."""
    if code is None:
        return None
    value = string_value(_get(code, "CodeValue")) or string_value(_get(code, "LongCodeValue")) or string_value(_get(code, "URNCodeValue"))
    designator = string_value(_get(code, "CodingSchemeDesignator"))
    return (designator, value) if value or designator else None


def _code_meaning(code: Dataset | None) -> str:
    return string_value(_get(code, "CodeMeaning")) if code is not None else ""


def _code_title(code: Dataset | None) -> str:
    key = _code_key(code)
    meaning = _code_meaning(code)
    return f"{meaning} ({key[0]}:{key[1]})" if key else meaning


def _relationship_label(relationship: str) -> str:
    if relationship in RELATIONSHIP_LABELS:
        return RELATIONSHIP_LABELS[relationship]
    return relationship.capitalize()  # an unknown type, shown as recorded


def _numbers(value) -> list[float]:
    if value is None or value == "":
        return []
    listed = value if is_multi(value) else [value]
    numbers = []
    for v in listed:
        try:
            numbers.append(float(v))
        except (TypeError, ValueError):
            continue
    return numbers


def _number_text(value) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return string_value(value)
    return f"{number:g}"


def _numbers_text(value) -> str:
    return ", ".join(_number_text(v) for v in _numbers(value))


def _relative_url(url: str | None) -> str | None:
    """link_of's answer when it is a relative URL; anything with a scheme (``javascript:``) is dropped."""
    if not url:
        return None
    return None if urlsplit(url).scheme or url.startswith("//") else url


def _media_of(url: str) -> str | None:
    path = urlsplit(url).path.lower()
    if path.endswith(PICTURE_SUFFIXES):
        return "img"
    if path.endswith(VIDEO_SUFFIXES):
        return "video"
    return None


SR_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."  # PS3.4 B.5: every SR Storage class (Basic Text, Enhanced, …)


def write_report(job: Conversion, kind: str) -> None:
    """A structured report: ``STEM.html`` (a page a phone shows) and its text in the ``.txt``
    after the summary.  Its references link to this run's outputs of them (`job.links`, given
    on a second pass once the images are done).  Under --redact the page is made from the
    de-identified dataset, with Clean Structured Content's withholding (PS3.15 E.3.4)."""
    from urllib.parse import quote

    from pydicom.uid import UID

    shown = job.shown
    page_path = job.output(".html")  # staged in the folder the page ends up in
    links = dict(job.links)
    linked = set()

    def link_of(uid: str) -> str | None:
        target = links.get(uid)
        if target is None:
            return None
        linked.add(uid)
        return quote(Path(os.path.relpath(target, page_path.parent)).as_posix())

    page, job.report = structured_report(shown, link_of, withhold=bool(job.options.redact_salt))
    write_text(page, page_path)
    sop_class = str(job.ds.get("SOPClassUID", ""))
    title = _code_meaning(_first(job.ds, "ConceptNameCodeSequence"))
    job.rendering["Display"] = (f"{UID(sop_class).name if sop_class else 'structured report'}"
                                + (f": {title}" if title else "")
                                + (f", {len(linked)} reference(s) linked to this run's outputs" if linked else ""))
    job.rendering["Output"] = "HTML page, and the report's text in the .txt"


def report_excerpt(text: str, lines: int = 3, length: int = 240) -> str:
    """The first lines of a report's content (after its header block), for the index page."""
    body = text.split("\n\n", 1)[1] if "\n\n" in text else ""
    excerpt = " · ".join(line.strip() for line in body.splitlines() if line.strip())
    shown = " · ".join(excerpt.split(" · ")[:lines])
    return shown if len(shown) <= length else shown[:length - 1] + "…"


# =============================================================================
# Waveforms: ECGs on ECG paper, other waveforms as strips, CSV, WAV audio
# =============================================================================

ECG_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.3": "Ambulatory ECG",
}
AUDIO_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.4.1": "Basic Voice Audio",
    "1.2.840.10008.5.1.4.1.1.9.4.2": "General Audio",
}
# The other waveform classes (PS3.4 B.5), named in the header; any of them draws as strips.
WAVEFORM_CLASSES = {
    **ECG_CLASSES, **AUDIO_CLASSES,
    "1.2.840.10008.5.1.4.1.1.9.1.4": "General 32-bit ECG",
    "1.2.840.10008.5.1.4.1.1.9.2.1": "Hemodynamic Waveform",
    "1.2.840.10008.5.1.4.1.1.9.3.1": "Basic Cardiac Electrophysiology",
    "1.2.840.10008.5.1.4.1.1.9.5.1": "Arterial Pulse Waveform",
    "1.2.840.10008.5.1.4.1.1.9.6.1": "Respiratory Waveform",
    "1.2.840.10008.5.1.4.1.1.9.6.2": "Multi-channel Respiratory Waveform",
    "1.2.840.10008.5.1.4.1.1.9.7.1": "Routine Scalp EEG",
    "1.2.840.10008.5.1.4.1.1.9.7.2": "Electromyogram",
    "1.2.840.10008.5.1.4.1.1.9.7.3": "Electrooculogram",
    "1.2.840.10008.5.1.4.1.1.9.7.4": "Sleep EEG",
    "1.2.840.10008.5.1.4.1.1.9.8.1": "Body Position Waveform",
}

# The leads of a standard 12-lead ECG, in the order of the 3 x 4 page (read down each column).
STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
# MDC (ISO/IEEE 11073-10101, DICOM CID 3001: "2:1" Lead I ...) and SCP-ECG (EN 1064,
# "5.6.3-9-1" ...) number the leads alike, so one table of lead numbers serves both.
LEAD_NUMBERS = {1: "I", 2: "II", 61: "III", 62: "aVR", 63: "aVL", 64: "aVF",
                3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6"}
LEAD_CODE_PREFIXES = ("2:", "5.6.3-9-", "MDC_ECG_LEAD_")

# UCUM code values (Channel Sensitivity Units, Measurement Units) as people write them.
UNIT_NAMES = {"uV": "µV", "mm[Hg]": "mmHg", "cm[H2O]": "cmH2O", "Cel": "°C", "deg": "°",
              "{beats}/min": "/min", "/min": "/min", "1": ""}
MILLIVOLTS_PER = {"µV": 1e-3, "mV": 1.0, "V": 1e3}  # ECG leads are drawn in mV

# ECG paper: the conventions of IEC 60601-2-25 and every ECG cart.  12 px/mm (304.8 dpi)
# rather than 300 dpi's 11.81: an integer keeps every 1 mm line exactly 12 px from the next,
# and the page (285 x 205 mm) still prints on A4 landscape at its true scale.
PX_PER_MM = 12
PAPER_SPEED = 25.0  # mm/s
GAIN = 10.0  # mm/mV
ECG_COLUMN_SECONDS = 2.5  # each column of the 3 x 4 layout: the next 2.5 s of its leads
ECG_SECONDS = 10.0  # the rhythm strip, and the most of a recording one page shows
ECG_ROW_MM = 40  # between baselines: +-2 mV before a trace reaches the next row
ECG_MARGIN_MM = 10
ECG_CALIBRATION_MM = 10  # room left of the traces for the 1 mV x 200 ms pulse
PAPER_WHITE = (255, 255, 255)
GRID_MINOR = (255, 208, 214)  # 1 mm lines
GRID_MAJOR = (236, 128, 142)  # 5 mm lines, drawn 2 px wide as paper prints them thicker
INK = (0, 0, 0)
TRACE_PX = 3  # 0.25 mm, a thermal printer's trace
TEXT_PX = 30  # 2.5 mm tall
LABEL_PX = 36

# Strips of other waveforms: not paper, so sized in pixels.
STRIP_WIDTH = 2400  # pixels of time axis: a whole recording, however long
STRIP_HEIGHT = 300
STRIP_LEFT = 280  # label, unit and the value ticks
STRIP_GAP = 90  # the time ticks below each strip, and air
STRIP_GRID = (225, 225, 225)


@dataclasses.dataclass
class WaveformGroup:
    """One multiplex group (an item of Waveform Sequence, PS3.3 C.10.9.1) in physical units."""

    index: int  # in Waveform Sequence, from 0 (annotations count from 1)
    originality: str  # ORIGINAL or DERIVED (C.10.9.1.1)
    rate: float  # Sampling Frequency, Hz
    labels: list[str]
    units: list[str]  # as shown: "µV", "mmHg"; "" for arbitrary units
    values: np.ndarray  # float64, (samples, channels)
    label: str = ""  # Multiplex Group Label: RHYTHM, MEDIAN BEAT ...
    filters: list[tuple[float | None, float | None, float | None]] = dataclasses.field(default_factory=list)
    # (low, high, notch) Hz of each channel, None where not given (C.10.9.1.4.1)

    @property
    def duration(self) -> float:
        return self.values.shape[0] / self.rate


def waveform_groups(ds: Dataset) -> list[WaveformGroup]:
    """Every multiplex group of the Waveform module (PS3.3 C.10.9) in physical units.

    Stored samples come from pydicom's `multiplex_array(as_raw=True)` once their sizes are
    checked here (pydicom itself would cut or fail on a reshape).  The scaling is done here,
    with pydicom's formula (C.10.9.1.4.3-4, Channel Sensitivity x Channel Sensitivity
    Correction Factor + Channel Baseline, each defaulting to 1, 1, 0), because pydicom's
    `waveform_array` scales mu-law and A-law codes as if they were linear and fails on an
    empty sensitivity.  Those are decoded to linear (ITU-T G.711, on the 16-bit scale) first.
    """
    sequence = ds.get("WaveformSequence")
    if not sequence:
        raise CorruptFile("it has no Waveform Sequence (5400,0100)")
    return [_waveform_group(ds, item, index) for index, item in enumerate(sequence)]


def _waveform_group(ds: Dataset, item: Dataset, index: int) -> WaveformGroup:
    import numpy as np

    raw = stored_samples(ds, item, index)
    channels = item.ChannelDefinitionSequence
    sensitivity = np.array([_number(c, "ChannelSensitivity", 1.0) for c in channels])
    correction = np.array([_number(c, "ChannelSensitivityCorrectionFactor", 1.0) for c in channels])
    baseline = np.array([_number(c, "ChannelBaseline", 0.0) for c in channels])
    if item.WaveformSampleInterpretation in ("MB", "AB"):
        raw = g711_to_linear(raw, item.WaveformSampleInterpretation)
    # the order of pydicom's arithmetic, so that values equal its waveform_array bit for bit
    values = raw.astype(np.float64) * sensitivity * correction + baseline
    return WaveformGroup(
        index=index,
        originality=str(item.get("WaveformOriginality", "") or ""),
        rate=float(item.SamplingFrequency),
        labels=[channel_label(c, k) for k, c in enumerate(channels)],
        units=[channel_unit(c) for c in channels],
        values=values,
        label=str(item.get("MultiplexGroupLabel", "") or ""),
        filters=[tuple(_number(c, k, None) for k in ("FilterLowFrequency", "FilterHighFrequency",
                                                      "NotchFilterFrequency")) for c in channels],
    )


def stored_samples(ds: Dataset, item: Dataset, index: int) -> np.ndarray:
    """The stored samples of multiplex group `index` (`item`), (samples, channels), after
    checking that its counts, sample format and rate agree with each other and its data
    (PS3.3 C.10.9.1.2-5); raises CorruptFile where they do not."""
    import math

    from pydicom.waveforms import numpy_handler

    where = f"waveform group {index + 1}"
    for keyword in ("NumberOfWaveformChannels", "NumberOfWaveformSamples", "SamplingFrequency",
                    "WaveformBitsAllocated", "WaveformSampleInterpretation", "WaveformData",
                    "ChannelDefinitionSequence"):
        if item.get(keyword) in (None, ""):
            raise CorruptFile(f"{where} has no {keyword}")
    channels, samples = int(item.NumberOfWaveformChannels), int(item.NumberOfWaveformSamples)
    bits, interpretation = int(item.WaveformBitsAllocated), str(item.WaveformSampleInterpretation)
    rate = float(item.SamplingFrequency)
    if channels < 1 or samples < 1:
        raise CorruptFile(f"{where} claims {channels} channels of {samples} samples")
    if len(item.ChannelDefinitionSequence) != channels:
        raise CorruptFile(f"{where} claims {channels} channels but defines "
                          f"{len(item.ChannelDefinitionSequence)} (Channel Definition Sequence)")
    if (bits, interpretation) not in numpy_handler.WAVEFORM_DTYPES:
        raise CorruptFile(f"{where} has {bits} bits allocated with sample interpretation "
                          f"{interpretation!r}, which PS3.3 C.10.9.1.5 does not define")
    if not math.isfinite(rate) or rate <= 0:
        raise CorruptFile(f"{where} has a sampling frequency of {rate:g} Hz")
    expected = samples * channels * bits // 8
    length = len(item.WaveformData)
    if length < expected:
        raise CorruptFile(f"{where} has {length} bytes of Waveform Data, fewer than its "
                          f"{samples} samples x {channels} channels x {bits // 8} bytes ({expected})")
    if length > expected + expected % 2:  # the one pad byte to an even length (PS3.5 7.1) is allowed
        raise CorruptFile(f"{where} has {length} bytes of Waveform Data, more than its "
                          f"{samples} samples x {channels} channels x {bits // 8} bytes ({expected}): "
                          f"its counts are wrong")
    return numpy_handler.multiplex_array(ds, index, as_raw=True)


def _number(item: Dataset, keyword: str, default):
    value = item.get(keyword)
    try:
        return default if value in (None, "") else float(value)
    except (TypeError, ValueError):
        raise CorruptFile(f"its {keyword} {str(value)[:20]!r} is not a number") from None


def g711_to_linear(codes: np.ndarray, interpretation: str) -> np.ndarray:
    """mu-law (``MB``) or A-law (``AB``) codes (PS3.3 C.10.9.1.5) as linear int16 samples,
    the ITU-T G.711 expansion on the 16-bit scale (mu-law +-32124, A-law +-32256) that
    G.191's reference decoder and every WAV player use."""
    table = _mu_law_table() if interpretation == "MB" else _a_law_table()
    return table[codes.astype("uint8")]


@functools.lru_cache(maxsize=1)
def _mu_law_table() -> np.ndarray:
    import numpy as np

    u = ~np.arange(256, dtype=np.int32) & 0xFF  # codes are sent inverted (G.711 table 2a)
    magnitude = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


@functools.lru_cache(maxsize=1)
def _a_law_table() -> np.ndarray:
    import numpy as np

    a = np.arange(256, dtype=np.int32) ^ 0x55  # even bits are sent inverted (G.711 table 1a)
    segment = (a & 0x70) >> 4
    mantissa = (a & 0x0F) << 4
    magnitude = np.where(segment == 0, mantissa + 8, (mantissa + 0x108) << np.maximum(segment - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


def channel_label(channel: Dataset, number: int) -> str:
    """A channel's name: Channel Label (PS3.3 C.10.9.1.4), else its Channel Source as a
    standard lead name (I ... V6), else the source's code meaning less a leading "Lead "."""
    label = str(channel.get("ChannelLabel", "") or "").strip()
    if label:
        return label
    source = (channel.get("ChannelSourceSequence") or [None])[0]
    if source is None:
        return f"channel {number + 1}"
    code = str(source.get("CodeValue", "") or "")
    for prefix in LEAD_CODE_PREFIXES:
        tail = code[len(prefix):]
        if code.startswith(prefix) and tail.isdigit() and int(tail) in LEAD_NUMBERS:
            return LEAD_NUMBERS[int(tail)]
    meaning = str(source.get("CodeMeaning", "") or code).strip()
    return meaning[5:] if meaning.startswith("Lead ") else (meaning or f"channel {number + 1}")


def channel_unit(channel: Dataset) -> str:
    """The unit of a channel's values (Channel Sensitivity Units Sequence, PS3.3 C.10.9.1.4.3)
    as people write it; "" when the file gives none (arbitrary units)."""
    units = channel.get("ChannelSensitivityUnitsSequence")
    return unit_name(units[0]) if units else ""


def unit_name(code: Dataset) -> str:
    value = str(code.get("CodeValue", "") or "")
    return UNIT_NAMES.get(value, value)


def main_and_median(groups: list[WaveformGroup]) -> tuple[WaveformGroup, WaveformGroup | None]:
    """The group to show (the longest ORIGINAL one, else the longest; C.10.9.1.1) and, if
    there is one, the derived representative beat (a DERIVED group labelled a median or
    average beat, or any DERIVED group of one column's length or less), drawn on its own page."""
    originals = [g for g in groups if g.originality == "ORIGINAL"] or groups
    main = max(originals, key=lambda g: g.duration)
    for group in groups:
        if group is main or group.originality != "DERIVED":
            continue
        label = group.label.upper()
        if any(word in label for word in ("MEDIAN", "BEAT", "AVERAGE", "REPRESENTATIVE")) \
                or group.duration <= ECG_COLUMN_SECONDS:
            return main, group
    return main, None


def is_ecg(ds: Dataset, group: WaveformGroup) -> bool:
    """Whether `group` goes on ECG paper: it is of an ECG class (PS3.3 A.34.3-5) or holds the
    12 standard leads."""
    return str(ds.get("SOPClassUID", "")) in ECG_CLASSES or has_standard_leads(group)


def has_standard_leads(group: WaveformGroup) -> bool:
    return set(STANDARD_LEADS) <= set(group.labels)


def is_audio(ds: Dataset) -> bool:
    """Whether `ds` is Basic Voice Audio or General Audio (PS3.3 A.34.2, A.34.10): a WAV, not a picture."""
    return str(ds.get("SOPClassUID", "")) in AUDIO_CLASSES


# -----------------------------------------------------------------------------
# The header: what an ECG cart prints above the traces
# -----------------------------------------------------------------------------

def waveform_header(ds: Dataset, group: WaveformGroup) -> str:
    """The lines printed above the traces: when it was recorded, the group and its sampling,
    the channels' filters (PS3.3 C.10.9.1.4.1) and the annotations of the group
    (Waveform Annotation Sequence, C.10.10): texts, coded findings and measurements."""
    first = [WAVEFORM_CLASSES.get(str(ds.get("SOPClassUID", "")), "Waveform"), recording_time(ds)]
    first.append(f"{group.label} ({group.originality})" if group.label else group.originality)
    first.append(f"{group.rate:g} Hz, {group.values.shape[1]} channels x {group.duration:g} s")
    lines = [" · ".join(part for part in first if part), filter_text(group)]
    annotations = annotation_texts(ds, group)
    if annotations:
        lines.append("; ".join(annotations))
    return "\n".join(line for line in lines if line)


def recording_time(ds: Dataset) -> str:
    """Acquisition DateTime, else Content Date/Time, else Study Date/Time, as 2013-01-25 10:59:19."""
    stamp = str(ds.get("AcquisitionDateTime", "") or "")
    if not stamp:
        for date, time in (("ContentDate", "ContentTime"), ("StudyDate", "StudyTime")):
            if ds.get(date):
                stamp = str(ds.get(date)) + str(ds.get(time, "") or "")
                break
    stamp = stamp.split("+")[0].split("-")[0]  # a UTC offset is not worth the room
    if len(stamp) < 8:
        return ""
    text = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}"
    clock = stamp[8:14]
    if len(clock) >= 4:
        text += " " + ":".join(clock[k:k + 2] for k in range(0, len(clock), 2))
    return text


def filter_text(group: WaveformGroup) -> str:
    """The filters as one line: one setting for all channels, else each setting with its channels."""
    settings: dict[tuple, list[str]] = {}
    for label, setting in zip(group.labels, group.filters):
        settings.setdefault(setting, []).append(label)
    described = [(_filter_setting(*s), labels) for s, labels in settings.items() if any(v is not None for v in s)]
    if not described:
        return ""
    if len(described) == 1 and len(described[0][1]) == len(group.labels):
        return "filters " + described[0][0]
    return "filters " + "; ".join(f"{text} ({', '.join(labels)})" for text, labels in described)


def _filter_setting(low: float | None, high: float | None, notch: float | None) -> str:
    band = f"{'?' if low is None else f'{low:g}'}-{'?' if high is None else f'{high:g}'} Hz"
    # Notch Filter Frequency 0 is how carts (and pydicom's sample) say no notch was applied
    return band + (", no notch" if not notch else f", notch {notch:g} Hz")


def annotation_texts(ds: Dataset, group: WaveformGroup) -> list[str]:
    """The annotations (PS3.3 C.10.10) that refer to `group` (Referenced Waveform Channels
    pairs count groups from 1; channel 0 is the whole group) or to no group: Unformatted Text
    Value, Concept Name + Concept Code ("Rhythm: sinus"), Concept Name + Numeric Value +
    Measurement Units ("QT Interval 368 ms").  Markers of a sample position alone (fiducial
    points, without a value) are not text and are left out."""
    texts = []
    for item in ds.get("WaveformAnnotationSequence") or []:
        referenced = [int(v) for v in (item.get("ReferencedWaveformChannels") or [])]
        if referenced and group.index + 1 not in referenced[0::2]:
            continue
        text = annotation_text(item)
        if text:
            texts.append(text)
    return texts


def annotation_text(item: Dataset) -> str:
    from pydicom.multival import MultiValue

    unformatted = str(item.get("UnformattedTextValue", "") or "").strip()
    if unformatted:
        return unformatted
    name = _meaning(item.get("ConceptNameCodeSequence"))
    concept = _meaning(item.get("ConceptCodeSequence"))
    if concept:
        return f"{name}: {concept}" if name else concept
    if item.get("NumericValue") not in (None, ""):
        value = item.NumericValue
        values = list(value) if isinstance(value, MultiValue) else [value]
        units = item.get("MeasurementUnitsCodeSequence")
        unit = unit_name(units[0]) if units else ""
        number = ", ".join(f"{float(v):g}" for v in values)
        return f"{name} {number}{'' if unit in ('°', '') else ' '}{unit}".strip()
    return ""


def _meaning(sequence) -> str:
    return str(sequence[0].get("CodeMeaning", "") or "").strip() if sequence else ""


# -----------------------------------------------------------------------------
# ECG paper
# -----------------------------------------------------------------------------

def ecg_page(group: WaveformGroup, header: str) -> np.ndarray:
    """`group` on ECG paper as an RGB uint8 image, 12 px/mm: 25 mm/s, 10 mm/mV, the 1 mm and
    5 mm grid, a 1 mV x 200 ms calibration pulse at the start of each row, `header` above.

    With the 12 standard leads: the 3 x 4 layout (I, II, III | aVR, aVL, aVF | V1-V3 | V4-V6),
    each column its leads' own 2.5 s (as carts print it; a sample at t s is at
    x0 + t x 25 mm/s), and a 10 s lead II rhythm strip below.  A group of 2.5 s or less (a
    median beat) shows its whole length in every column and has no rhythm strip.  Otherwise
    one row per channel.  At most the first 10 s are drawn; the CSV has every sample.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    shown = min(group.duration, ECG_SECONDS)
    notes = [f"{PAPER_SPEED:g} mm/s · {GAIN:g} mm/mV"]
    if group.duration > ECG_SECONDS + 1e-9:
        notes.append(f"first {ECG_SECONDS:g} s of {group.duration:g} s shown")
    rows, width_s = ecg_layout(group, shown)
    extra = [label for label in group.labels if label not in STANDARD_LEADS] if has_standard_leads(group) else []
    if extra:
        notes.append(f"also recorded: {', '.join(extra)} (in the CSV)")
    drawn = group.values[:round(shown * group.rate) + 1]  # a day-long Holter: convert 10 s, not 24 h
    millivolts = drawn * np.array([MILLIVOLTS_PER.get(unit, 1.0) for unit in group.units])
    mm = PX_PER_MM
    page_w_mm = ECG_MARGIN_MM + ECG_CALIBRATION_MM + width_s * PAPER_SPEED + 5 + ECG_MARGIN_MM
    lines, font, line_h = _wrapped(header + "\n" + " · ".join(notes), round(page_w_mm * mm) - 2 * ECG_MARGIN_MM * mm)
    header_h = ECG_MARGIN_MM * mm // 2 + len(lines) * line_h + 3 * mm
    grid_top = header_h
    grid_h = round((len(rows) * ECG_ROW_MM + 10) * mm)
    height, width = grid_top + grid_h + ECG_MARGIN_MM * mm // 2, round(page_w_mm * mm)
    page = np.empty((height, width, 3), np.uint8)
    page[:] = PAPER_WHITE
    grid_left = ECG_MARGIN_MM * mm
    draw_ecg_grid(page, grid_top, grid_left, height - ECG_MARGIN_MM * mm // 2, width - ECG_MARGIN_MM * mm)
    image = Image.fromarray(page)
    draw = ImageDraw.Draw(image)
    for k, line in enumerate(lines):
        draw.text((ECG_MARGIN_MM * mm, ECG_MARGIN_MM * mm // 2 + k * line_h), line, fill=INK, font=font)
    label_font = ImageFont.load_default(size=LABEL_PX)
    x0 = ecg_x0()
    for r, row in enumerate(rows):
        baseline = ecg_baseline(grid_top, r)
        draw_calibration(draw, grid_left + 2 * mm, baseline)
        for column, (channel, start, end, left) in enumerate(row):
            x = x0 + left * PAPER_SPEED * mm
            if column:  # the cart's mark where one lead's window ends and the next begins
                draw.line([(x, baseline - 3 * mm), (x, baseline + 3 * mm)], fill=INK, width=2)
            draw.text((x + mm, baseline - 12 * mm), drawable(group.labels[channel]), fill=INK, font=label_font, anchor="ls")
            first, last = round(start * group.rate), min(round(end * group.rate), millivolts.shape[0])
            t = np.arange(first, last) / group.rate - start
            xs = x + t * PAPER_SPEED * mm
            ys = baseline - millivolts[first:last, channel] * GAIN * mm
            draw_trace(draw, xs, ys)
    return np.asarray(image)


def ecg_layout(group: WaveformGroup, shown: float) -> tuple[list[list[tuple[int, float, float, float]]], float]:
    """The rows of the page, each a list of (channel, start s, end s, left s) segments, and
    the width of the traces in seconds."""
    if has_standard_leads(group):
        index = {label: k for k, label in reversed(list(enumerate(group.labels)))}  # first of a name
        if shown <= ECG_COLUMN_SECONDS:  # a representative beat: all of it in every column
            windows = [(0.0, shown, c * shown) for c in range(4)]
        else:
            step = shown / 4 if shown < ECG_SECONDS else ECG_COLUMN_SECONDS
            windows = [(c * step, (c + 1) * step, c * step) for c in range(4)]
        rows = [[(index[STANDARD_LEADS[3 * c + r]], *windows[c]) for c in range(4)] for r in range(3)]
        width = 4 * shown if shown <= ECG_COLUMN_SECONDS else 4 * windows[0][1]
        if shown > ECG_COLUMN_SECONDS:
            rows.append([(index["II"], 0.0, width, 0.0)])
        return rows, width
    return [[(k, 0.0, shown, 0.0)] for k in range(group.values.shape[1])], shown


def ecg_baseline(grid_top: int, row: int) -> int:
    """The pixel row of row `row`'s 0 mV line: on a 5 mm line, 25 mm into the grid and then
    every ECG_ROW_MM."""
    return grid_top + (25 + row * ECG_ROW_MM) * PX_PER_MM


def ecg_x0() -> int:
    """The pixel column of t = 0 on every row."""
    return (ECG_MARGIN_MM + ECG_CALIBRATION_MM) * PX_PER_MM


def draw_ecg_grid(page: np.ndarray, top: int, left: int, bottom: int, right: int) -> None:
    """ECG paper: 1 mm lines, every fifth (5 mm, 0.2 s, 0.5 mV) darker and 2 px wide, from
    (`left`, `top`) every PX_PER_MM pixels."""
    import numpy as np

    xs = np.arange(left, right + 1, PX_PER_MM)
    ys = np.arange(top, bottom + 1, PX_PER_MM)
    right, bottom = xs[-1], ys[-1]
    page[top:bottom + 1, xs] = GRID_MINOR
    page[ys, left:right + 1] = GRID_MINOR
    major_xs, major_ys = xs[::5], ys[::5]
    page[top:bottom + 1, np.concatenate([major_xs, np.minimum(major_xs + 1, right)])] = GRID_MAJOR
    page[np.concatenate([major_ys, np.minimum(major_ys + 1, bottom)]), left:right + 1] = GRID_MAJOR


def draw_calibration(draw, x: float, baseline: int) -> None:
    """The standardisation pulse: 1 mV (10 mm) high for 200 ms (5 mm), with 1 mm of baseline either side."""
    mm = PX_PER_MM
    top = baseline - GAIN * mm
    draw.line([(x, baseline), (x + mm, baseline), (x + mm, top), (x + 6 * mm, top),
               (x + 6 * mm, baseline), (x + 7 * mm, baseline)], fill=INK, width=TRACE_PX)


def draw_trace(draw, xs: np.ndarray, ys: np.ndarray, width: int = TRACE_PX) -> None:
    """One polyline through the points; more than two samples to a pixel column are first
    reduced to each column's lowest and highest value, which draws the same ink in far
    fewer segments (a whole day of a 1 kHz Holter lead, say)."""
    import numpy as np

    finite = np.isfinite(ys)
    xs, ys = xs[finite], ys[finite]
    if len(xs) < 2:
        return
    columns = np.floor(xs).astype(np.int64)
    if len(xs) > 2 * (columns[-1] - columns[0] + 1):
        starts = np.flatnonzero(np.diff(columns, prepend=columns[0] - 1))
        low, high = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
        xs = np.repeat(columns[starts] + 0.5, 2)
        ys = np.column_stack([low, high]).ravel()
    draw.line(list(zip(xs.tolist(), ys.tolist())), fill=INK, width=width)


def drawable(text: str) -> str:
    """`text` in glyphs Pillow's default font (Aileron) has: it lacks the micro sign."""
    return text.replace("µ", "u").replace("μ", "u")


def _wrapped(text: str, width: int, size: int = TEXT_PX):
    """`text` broken into lines no wider than `width` px in Pillow's default font at `size`
    (needs Pillow >= 10.1), the font, and the line pitch."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = []
    for paragraph in drawable(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and measure.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines, font, round(size * 1.25)


# -----------------------------------------------------------------------------
# Strips: pressures, pulse, respiration, anything not on ECG paper
# -----------------------------------------------------------------------------

def strips_page(group: WaveformGroup, header: str) -> np.ndarray:
    """One strip per channel of `group`, each in its own unit and scale (the range of its
    values, ticked at 1-2-5 steps), over a time axis in seconds spanning the whole
    recording; `header` above.  RGB uint8."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    width = STRIP_LEFT + STRIP_WIDTH + 60
    lines, font, line_h = _wrapped(header, width - 80)
    top = 40 + len(lines) * line_h + 30
    channels = group.values.shape[1]
    height = top + channels * (STRIP_HEIGHT + STRIP_GAP) + 20
    page = np.full((height, width, 3), 255, np.uint8)
    duration = group.duration
    times = nice_ticks(0.0, duration)
    tick_xs = np.rint(STRIP_LEFT + times / duration * STRIP_WIDTH).astype(int)
    strips = []
    for k in range(channels):
        y0 = top + k * (STRIP_HEIGHT + STRIP_GAP)
        low, high = value_range(group.values[:, k])
        ticks = nice_ticks(low, high)
        tick_ys = np.rint(y0 + (high - ticks) / (high - low) * STRIP_HEIGHT).astype(int)
        page[y0:y0 + STRIP_HEIGHT + 1, tick_xs] = STRIP_GRID
        page[tick_ys, STRIP_LEFT:STRIP_LEFT + STRIP_WIDTH + 1] = STRIP_GRID
        strips.append((y0, low, high, ticks, tick_ys))
    image = Image.fromarray(page)
    draw = ImageDraw.Draw(image)
    small = ImageFont.load_default(size=22)
    big = ImageFont.load_default(size=28)
    for k, line in enumerate(lines):
        draw.text((40, 40 + k * line_h), line, fill=INK, font=font)
    t = np.arange(group.values.shape[0]) / group.rate
    for k, (y0, low, high, ticks, tick_ys) in enumerate(strips):
        draw.rectangle([STRIP_LEFT, y0, STRIP_LEFT + STRIP_WIDTH, y0 + STRIP_HEIGHT], outline=(128, 128, 128))
        unit = group.units[k]
        draw.text((20, y0 + STRIP_HEIGHT // 2), drawable(group.labels[k]), fill=INK, font=big, anchor="lb")
        draw.text((20, y0 + STRIP_HEIGHT // 2 + 8), drawable(unit) or "(no unit)", fill=INK, font=small, anchor="lt")
        for value, y in zip(ticks.tolist(), tick_ys.tolist()):
            draw.text((STRIP_LEFT - 8, y), f"{value:g}", fill=INK, font=small, anchor="rm")
        for value, x in zip(times.tolist(), tick_xs.tolist()):
            draw.text((x, y0 + STRIP_HEIGHT + 6), f"{value:g}", fill=INK, font=small, anchor="mt")
        draw.text((STRIP_LEFT + STRIP_WIDTH, y0 + STRIP_HEIGHT + 34), "time (s)", fill=INK, font=small, anchor="rt")
        xs = STRIP_LEFT + t / duration * STRIP_WIDTH
        ys = y0 + (high - group.values[:, k]) / (high - low) * STRIP_HEIGHT
        draw_trace(draw, xs, ys, width=2)
    return np.asarray(image)


def value_range(values: np.ndarray) -> tuple[float, float]:
    """The range a strip shows: its values' range and 5% more either side (1 either side of a flat line)."""
    import numpy as np

    finite = values[np.isfinite(values)]
    if not finite.size:
        return -1.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if high - low <= 1e-12 * max(1.0, abs(high)):
        return low - 1.0, high + 1.0
    pad = (high - low) * 0.05
    return low - pad, high + pad


def nice_ticks(low: float, high: float, count: int = 5) -> np.ndarray:
    """Ticks at a 1, 2 or 5 x 10^n step, about `count` of them, within [low, high]."""
    import math

    import numpy as np

    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    ticks = np.arange(first, math.floor(high / step + 1e-9) + 1) * step
    return np.round(ticks, 12)


# -----------------------------------------------------------------------------
# CSV and WAV
# -----------------------------------------------------------------------------

def write_waveform_csv(group: WaveformGroup, path: Path) -> None:
    """Every sample of `group`: a ``time (s)`` column (sample number / Sampling Frequency,
    from the group's first sample) and one column per channel in its physical unit, headed
    ``I (µV)``; values as Python's shortest exact repr; UTF-8, "\\n" line ends everywhere."""
    import csv

    import numpy as np

    heads = ["time (s)"] + [f"{label} ({unit})" if unit else label for label, unit in zip(group.labels, group.units)]
    times = np.arange(group.values.shape[0]) / group.rate
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(heads)
        writer.writerows(np.column_stack([times, group.values]).tolist())


def write_audio(ds: Dataset, path: Path) -> None:
    """The audio of `ds` (its longest original multiplex group) as a 16-bit PCM WAV: channels
    interleaved, at its Sampling Frequency rounded to whole Hz (WAV has no fractions).
    Samples are the stored ones on the 16-bit scale: mu-law and A-law expanded (G.711),
    8-bit shifted up, unsigned made signed, 32/64-bit cut to their top 16 bits; the Channel
    Sensitivity of audio names no physical level a player could use, so it is not applied."""
    import wave

    import numpy as np

    sequence = ds.get("WaveformSequence")
    if not sequence:
        raise CorruptFile("it has no Waveform Sequence (5400,0100)")
    groups = [(index, item, stored_samples(ds, item, index)) for index, item in enumerate(sequence)]
    originals = [g for g in groups if g[1].get("WaveformOriginality") == "ORIGINAL"] or groups
    index, item, raw = max(originals, key=lambda g: g[2].shape[0] / float(g[1].SamplingFrequency))
    pcm = pcm16(raw, str(item.WaveformSampleInterpretation))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(pcm.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(max(1, round(float(item.SamplingFrequency))))
        wav.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())  # C order: interleaved


def pcm16(raw: np.ndarray, interpretation: str) -> np.ndarray:
    """Stored samples (PS3.3 C.10.9.1.5) as signed 16-bit linear PCM."""
    import numpy as np

    if interpretation in ("MB", "AB"):
        return g711_to_linear(raw, interpretation)
    bits = raw.dtype.itemsize * 8
    signed = raw.astype(np.int64)
    if raw.dtype.kind == "u":  # offset binary: the middle code is silence
        signed -= 1 << (bits - 1)
    shift = bits - 16
    return (signed << -shift if shift < 0 else signed >> shift).astype(np.int16)


MEDIAN_SUFFIX = "_median.png"  # the representative beat of an ECG, beside its page


def write_waveform(job: Conversion, kind: str) -> None:
    """A waveform object (PS3.3 A.34): audio as ``STEM.wav``; anything else as ``STEM.png``
    (an ECG on ECG paper, other waveforms as strips), its representative beat as
    ``STEM_median.png``, and every sample of the group shown in ``STEM.csv``.  Under --redact
    the page's header comes from the de-identified dataset, so no date or free text the
    profile removes is drawn, and audio is withheld (speech names people)."""
    ds, options = job.ds, job.options
    name = WAVEFORM_CLASSES.get(str(ds.get("SOPClassUID", "")), "waveform")
    if is_audio(ds):
        if options.redact_salt:
            job.rendering["Display"] = f"metadata only (--redact: the {name} is withheld, speech names people)"
            return
        write_audio(ds, job.output(".wav"))
        job.rendering["Display"] = f"{name} as WAV"
        job.rendering["Output"] = "WAV 16-bit PCM"
        return
    shown = job.shown
    main, median = main_and_median(waveform_groups(ds))
    on_paper = is_ecg(ds, main)
    channels = main.values.shape[1]
    job.rendering["Display"] = (f"{name}, {channels} channel{'s' if channels != 1 else ''} x {main.duration:g} s at "
                                f"{main.rate:g} Hz, " + ("on ECG paper (25 mm/s, 10 mm/mV)" if on_paper else "as strips"))
    if options.write_png:
        page = (ecg_page if on_paper else strips_page)(main, waveform_header(shown, main))
        write_png(page, job.output(".png"))
        job.thumbnail(page)
        if median is not None:
            write_png(ecg_page(median, waveform_header(shown, median)), job.output(MEDIAN_SUFFIX))
            job.rendering["Display"] += f", its {median.label.lower() or 'derived'} group on a page of its own"
    write_waveform_csv(main, job.output(".csv"))
    job.rendering["Output"] = "PNG 8-bit and CSV" if options.write_png else "CSV"


# =============================================================================
# DICOM video: the stream itself in an MP4
# =============================================================================

# PS3.5 8.2.5-8.2.8: the transfer syntaxes that carry a whole video bit stream (the
# Fragmentable ones split it over fragments).  H.264 and HEVC are copied into an MP4
# without re-encoding; browsers do not play MPEG-2, so it is decoded and re-encoded.
VIDEO_SYNTAXES = {
    "1.2.840.10008.1.2.4.100": "mpeg2", "1.2.840.10008.1.2.4.100.1": "mpeg2",
    "1.2.840.10008.1.2.4.101": "mpeg2", "1.2.840.10008.1.2.4.101.1": "mpeg2",
    **{f"1.2.840.10008.1.2.4.{n}{part}": "h264" for n in range(102, 107) for part in ("", ".1")},
    "1.2.840.10008.1.2.4.107": "hevc", "1.2.840.10008.1.2.4.108": "hevc",
}


VIDEO_CODECS = {"mpeg2": "mpeg2video", "h264": "h264", "hevc": "hevc"}  # FFmpeg's decoder of each


@contextlib.contextmanager
def video_bit_stream(source: Path, ds: Dataset):
    """The video bit stream of `source` (its fragments joined, the Basic Offset Table left
    out) in an anonymous temporary file, which the demuxer can seek (an MP4 inside DICOM keeps
    its index at the end); the stream is copied fragment by fragment, never held whole."""
    import io
    import tempfile

    from pydicom.encaps import generate_fragments

    raw = ds.get_item(0x7FE00010, keep_deferred=True)
    with contextlib.ExitStack() as stack:
        if is_deferred(raw) and raw.value_tell is not None:
            buffer = stack.enter_context(open(source, "rb"))
            buffer.seek(raw.value_tell)
        else:
            buffer = io.BytesIO(bytes(ds.PixelData))
        spool = stack.enter_context(tempfile.TemporaryFile())
        try:
            for number, fragment in enumerate(generate_fragments(buffer)):
                if number:  # the first item is the Basic Offset Table
                    spool.write(fragment)
        except (ValueError, EOFError, OSError) as exc:
            raise CorruptFile(f"cannot read the video's fragments: {first_line(exc)}") from None
        if not spool.tell():
            raise CorruptFile("the video bit stream is empty")
        spool.seek(0)
        yield spool


# Video longer than this gets no GIF: measured on 90 frames of full-motion 1280 x 720 video
# (FFmpeg's mandelbrot source), each GIF frame fitted within 512 px costs ~130 ms and ~90 KiB,
# so 300 frames (10 s at 30 fps) are ~40 s and ~27 MB; the MP4 and the poster stay.
GIF_MAX_VIDEO_FRAMES = 300

RAW_VIDEO_FORMATS = ("h264", "hevc", "mpegvideo")  # FFmpeg's demuxers of bare streams: no timestamps
MP4_AUDIO_CODECS = frozenset({"aac", "mp3", "mp2", "ac3", "eac3", "opus", "alac", "flac"})  # what MP4 holds
TRANSCODED_SUFFIX = ".h264.mp4"  # from HEVC, for the browsers that do not play it (see --no-transcode)


@dataclasses.dataclass
class VideoPlan:
    """What becomes of one DICOM video stream (see `video_plan`)."""

    family: str  # "h264", "hevc", "mpeg2": VIDEO_SYNTAXES
    raw: bool  # a bare elementary stream, not a transport stream or MP4 with timestamps
    rate: Fraction
    rate_source: str
    audio: list[int]  # the indices of the audio streams kept (a closed container's streams forget theirs)
    copy: bool  # the coded stream goes into STEM.mp4 as it is (else decoded and re-encoded)
    transcode: bool  # HEVC copied, and also re-encoded to H.264 in STEM.h264.mp4
    gif: bool


def video_plan(container, video, job: Conversion, family: str) -> VideoPlan:
    """Decide, from the stream and the options, which outputs a video gets and how.

    H.264 and HEVC are copied (PS3.5 8.2.6-8.2.8 keep the coded stream whole), unless
    --redact has rectangles to blank: those frames must be decoded, blanked and re-encoded,
    as MPEG-2 always is.  Audio is kept when MP4 can hold its codec, and never under --redact
    (speech names people)."""
    options, ds = job.options, job.ds
    raw = container.format.name.split(",")[0] in RAW_VIDEO_FORMATS
    rate, rate_source = video_rate(ds, video, raw, options.fps)
    audio, kept = [], []
    for stream in container.streams.audio:
        name = stream.codec_context.name
        if options.redact_salt:
            job.rendering["Audio"] = "audio left out (--redact: speech can name people)"
        elif name in MP4_AUDIO_CODECS:
            audio.append(stream)
            kept.append(stream.index)
        else:
            warnings.warn(f"its {name} audio is left out: an MP4 cannot hold it")
    if audio:
        job.rendering["Audio"] = ", ".join(f"{s.codec_context.name} {s.rate} Hz {s.codec_context.channels} channel(s)"
                                           for s in audio)
    blanking = job.plan is not None and job.plan.action == "blank"
    copy = family != "mpeg2" and not blanking
    declared = number_of_frames(ds) if ds.get("NumberOfFrames") else int(video.frames or 0)
    gif = options.write_gif and declared <= GIF_MAX_VIDEO_FRAMES  # 0: not said; the GIF stops at the limit
    if options.write_gif and not gif:
        job.rendering["Gif"] = f"no GIF: longer than {GIF_MAX_VIDEO_FRAMES} frames (the MP4 is the video)"
    return VideoPlan(family, raw, rate, rate_source, kept, copy,
                     copy and family == "hevc" and options.transcode and options.write_mp4, gif)


def video_rate(ds: Dataset, video, raw: bool, fps: Fraction | None) -> tuple[Fraction, str]:
    """The frame rate: --fps, else for a bare stream the DICOM timing (Frame Time, Cine Rate…,
    as for any cine), else the stream's own (H.264/HEVC VUI, the MPEG-2 sequence header).
    PyAV's `average_rate` of a bare stream is the demuxer's default 25, so the decoder's
    `framerate` is asked.  A transport stream or MP4 keeps its own timestamps (PS3.5 8.2.8):
    its rate is only what the poster, GIF and transcode use.  When the file and the stream
    disagree, the line says so."""
    own = video.codec_context.framerate if raw else video.average_rate
    own = Fraction(own) if own else None
    timing = frame_timing(ds, max(1, number_of_frames(ds)), fps)
    if timing.source != "default" and (raw or fps):
        if own and fps is None and abs(float(timing.rate) - float(own)) > 0.01 * float(own):
            warnings.warn(f"the file says {float(timing.rate):.4g} fps, its stream {float(own):.4g} fps; "
                          f"the file's rate is used")
        return timing.rate, timing.source
    if own:
        if timing.source != "default" and abs(float(timing.rate) - float(own)) > 0.01 * float(own):
            warnings.warn(f"the file says {float(timing.rate):.4g} fps, its stream's timestamps "
                          f"{float(own):.4g} fps; the stream's are kept")
        return own, "the stream's own"
    return timing.rate, timing.source


def write_video(job: Conversion, kind: str) -> None:
    """A DICOM video: H.264 or HEVC copied into ``STEM.mp4`` as it is (HEVC tagged hvc1 for
    Safari, and also re-encoded to ``STEM.h264.mp4`` for the other browsers), MPEG-2 decoded and
    re-encoded to H.264; audio kept; a poster ``STEM.png`` and, for short videos, a GIF."""
    import tempfile

    import av
    from pydicom.uid import UID

    ds, options = job.ds, job.options
    family = VIDEO_SYNTAXES[transfer_syntax_of(ds)]
    with video_bit_stream(job.source, ds) as stream, contextlib.ExitStack() as scratch:
        try:
            with av.open(stream, "r") as container:
                video = _video_stream_of(container)
                codec = video.codec_context
                if codec.name != VIDEO_CODECS[family]:
                    raise CorruptFile(f"its video stream is {codec.name}, not the {VIDEO_CODECS[family]} its "
                                      f"transfer syntax says")
                video.thread_type = "AUTO"  # frame threads: the decode pass runs on every core
                plan = video_plan(container, video, job, family)
                described = f"{codec.name} {codec.profile or ''}".strip() + f" {codec.width}x{codec.height}"
                reencode_to = None
                if not plan.copy and options.write_mp4:  # with audio, the H.264 is muxed with it afterwards
                    reencode_to = job.output(".mp4") if not plan.audio else \
                        Path(scratch.enter_context(tempfile.TemporaryDirectory())) / "video.mp4"
                decoded = decode_pass(container, video, job, plan, reencode_to)
            stream.seek(0)
            if plan.copy and options.write_mp4:
                copy_into_mp4(stream, job.output(".mp4"), plan, decoded.positions)
            elif reencode_to is not None and plan.audio:
                with_audio(reencode_to, stream, plan, job.output(".mp4"))
        except av.error.FFmpegError as exc:
            syntax = transfer_syntax_of(ds)
            raise CorruptFile(f"cannot read the {UID(syntax).name} ({syntax}) video stream: {first_line(exc)}") from None
    declared = int(ds.get("NumberOfFrames") or decoded.count)
    if declared != decoded.count:
        warnings.warn(f"the file says {declared} frames, its stream has {decoded.count}; the stream's are used")
    how = ("copied into the MP4 without re-encoding" if plan.copy else "decoded and re-encoded to H.264") \
        if options.write_mp4 else "decoded"
    if plan.transcode:
        how += f", and re-encoded to H.264 in {TRANSCODED_SUFFIX}"
    seconds = decoded.seconds if decoded.seconds is not None else decoded.count / float(plan.rate)
    job.rendering["Display"] = f"{described}, {decoded.count} frames, {seconds:.2f} s, {how}"
    job.rendering["FrameRate"] = f"{float(plan.rate):.4g} fps ({plan.rate_source})"
    job.rendering["Output"] = ", ".join(
        name for name, wanted in (("MP4", options.write_mp4), ("H.264 MP4", plan.transcode),
                                  ("GIF", plan.gif), ("poster PNG 8-bit", options.write_png)) if wanted) or "none"


def _video_stream_of(container):
    if not container.streams.video:
        raise CorruptFile("the video bit stream holds no video")
    return container.streams.video[0]


@dataclasses.dataclass
class DecodedVideo:
    """What the decode pass learnt of the stream."""

    count: int = 0  # frames decoded (or, when only the poster was decoded, packets counted)
    shown: list[int] = dataclasses.field(default_factory=list)  # bare streams: packet numbers in display order
    first_pts: int | None = None
    end_pts: int | None = None
    seconds: float | None = None  # the stream's own duration, when its timestamps give one

    @property
    def positions(self) -> dict[int, int]:
        """Packet number -> display position, for a bare stream."""
        return {packet: index for index, packet in enumerate(self.shown)}


def decode_pass(container, video, job: Conversion, plan: VideoPlan, reencode_to: Path | None) -> DecodedVideo:
    """One pass over the stream, each frame decoded once and shown in display order to the
    poster, the GIF and the H.264 encoders (`reencode_to`, and the transcode of HEVC)."""
    options = job.options
    decoded = DecodedVideo()
    with contextlib.ExitStack() as stack:
        writers = []
        if reencode_to is not None:
            writers.append(stack.enter_context(in_own_thread(mp4_writer(reencode_to, plan.rate, options.crf))))
        if plan.transcode:
            writers.append(stack.enter_context(in_own_thread(
                mp4_writer(job.output(TRANSCODED_SUFFIX), plan.rate, options.crf))))
        if plan.gif:
            writers.append(stack.enter_context(
                gif_writer(job.output(".gif"), itertools.repeat(1000 / float(plan.rate)), options.gif_max_size)))
        everything = bool(writers) or plan.raw
        for number, frame in enumerate(job.blanked(_display_frames(container, video, plan, decoded, everything))):
            if number == 0 and options.write_png:
                write_png(frame, job.output(".png"))
            if number == 0:
                job.thumbnail(frame)
            if plan.gif and number == GIF_MAX_VIDEO_FRAMES:  # NumberOfFrames said short, the stream is not
                writers.pop()
                job.rendering["Gif"] = f"the GIF holds the first {GIF_MAX_VIDEO_FRAMES} frames only"
            for write in writers:
                write(frame)
    if not decoded.count:
        raise CorruptFile("no frame of the video could be decoded")
    if decoded.first_pts is not None and not plan.raw:
        decoded.seconds = float((decoded.end_pts - decoded.first_pts) * video.time_base)
    return decoded


def _display_frames(container, video, plan: VideoPlan, decoded: DecodedVideo, everything: bool
                    ) -> Iterator[np.ndarray]:
    """The frames in display order (RGB), noting what `decoded` keeps of the stream.

    A bare stream's packets have no timestamps, and numbering them in decode order would
    show B-frame streams out of order: each packet is numbered as it is fed, and the decoder
    hands the numbers back in display order.  When nothing needs more than the poster (an
    MP4 or transport stream copied, no GIF), only the first frame is decoded and the rest of
    the packets counted."""
    packets = 0
    for number, packet in enumerate(p for p in container.demux(video) if p.size):
        packets += 1
        if packet.pts is not None:
            end = packet.pts + (packet.duration or 0)
            decoded.first_pts = packet.pts if decoded.first_pts is None else min(decoded.first_pts, packet.pts)
            decoded.end_pts = end if decoded.end_pts is None else max(decoded.end_pts, end)
        if plan.raw:
            packet.pts = packet.dts = number
        if decoded.count and not everything:
            continue
        for frame in video.codec_context.decode(packet):
            decoded.count += 1
            decoded.shown.append(frame.pts)
            yield frame.to_ndarray(format="rgb24")
    if everything or not decoded.count:
        for frame in video.codec_context.decode(None):
            decoded.count += 1
            decoded.shown.append(frame.pts)
            yield frame.to_ndarray(format="rgb24")
    if not everything and decoded.count:
        decoded.count = packets


def copy_into_mp4(stream, path: Path, plan: VideoPlan, positions: dict[int, int]) -> None:
    """The coded video (and the audio kept) into an MP4, packet for packet.

    A transport stream or MP4 keeps its own timestamps, moved together so that the first
    stream starts at zero (a transport stream's clock starts anywhere, and a player would
    show its first frame late by that much).  A bare stream gets each packet's
    display position as its presentation time and its decode number, less the decoder's
    reordering delay, as its decode time; HEVC is tagged hvc1, which Safari asks for."""
    import av

    with av.open(stream, "r") as source, av.open(str(path), "w", format="mp4",
                                                   options={"movflags": "+faststart"}) as mp4:
        video = _video_stream_of(source)
        audio = [source.streams[index] for index in plan.audio]
        copied = {video.index: mp4.add_stream_from_template(video)}
        copied.update({s.index: mp4.add_stream_from_template(s) for s in audio})
        if video.codec_context.name == "hevc":
            copied[video.index].codec_tag = "hvc1"
        tick = Fraction(1) / plan.rate
        delay = max((number - position for number, position in positions.items()), default=0)
        starts = [s.start_time * s.time_base for s in (video, *audio) if s.start_time is not None]
        start = min(starts) if starts and not plan.raw else 0
        number = 0
        for packet in source.demux(video, *audio):
            if not packet.size:
                continue
            if plan.raw and packet.stream.index == video.index:
                packet.time_base = tick
                packet.pts, packet.dts, packet.duration = positions.get(number, number), number - delay, 1
                number += 1
            elif start and packet.pts is not None:
                moved = round(start / packet.time_base)
                packet.pts -= moved
                packet.dts = packet.dts - moved if packet.dts is not None else None
            packet.stream = copied[packet.stream.index]
            mp4.mux(packet)


def with_audio(video_mp4: Path, stream, plan: VideoPlan, path: Path) -> None:
    """The re-encoded H.264 `video_mp4` and the kept audio of the input `stream`, muxed into
    one MP4 in time order (the audio moved by the input video's start, which the re-encode
    starts at zero)."""
    import heapq

    import av

    with av.open(str(video_mp4), "r") as encoded, av.open(stream, "r") as source, \
            av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as mp4:
        video = encoded.streams.video[0]
        audio = [source.streams[index] for index in plan.audio]
        start = source.streams.video[0].start_time
        offset = float(start * source.streams.video[0].time_base) if start is not None else 0.0
        out_video = mp4.add_stream_from_template(video)
        out_audio = {s.index: mp4.add_stream_from_template(s) for s in audio}

        def timed(packets, order: int):
            for packet in packets:
                if packet.size and packet.pts is not None:
                    if order:  # audio: moved to the re-encoded video's clock
                        moved = round(offset / packet.time_base)
                        packet.pts -= moved
                        packet.dts = packet.dts - moved if packet.dts is not None else None
                    when = packet.dts if packet.dts is not None else packet.pts
                    yield float(when * packet.time_base), order, packet

        for _, order, packet in heapq.merge(timed(encoded.demux(video), 0), timed(source.demux(*audio), 1),
                                            key=lambda item: item[0]):
            packet.stream = out_audio[packet.stream.index] if order else out_video
            mp4.mux(packet)


# =============================================================================
# Converting one file
# =============================================================================

@dataclasses.dataclass
class Result:
    """What happened to one input; `status` is converted/metadata/skipped/failed."""

    source: Path
    status: str
    outputs: list[Path] = dataclasses.field(default_factory=list)
    message: str = ""
    record: dict = dataclasses.field(default_factory=dict)

    def frame_pngs(self) -> list[Path]:
        """The outputs in this file's ``STEM_frames`` folder (the .txt, always the last output, gives STEM)."""
        if not self.outputs:
            return []
        folder = self.outputs[-1].with_name(self.outputs[-1].stem + FRAMES_SUFFIX)
        return [path for path in self.outputs if path.parent == folder]


def convert_file(source: Path, stem: Path, options: Options, images: tuple[Path, ...] = (),
                 links: tuple[tuple[str, Path], ...] = ()) -> Result:
    """Convert one DICOM file (see `_caught` for how failures become results); a segmentation
    or an RT Dose is drawn over `images` (the series it segments, the CT of its frame of
    reference), and a structured report links its references to `links` (SOP Instance UID,
    this run's output of it), when they are given."""
    def work() -> Result:
        outputs, message, record = _convert(source, stem, options, images, links)
        status = "metadata" if record.get("Display", "").startswith("metadata only") else "converted"
        return Result(source, status, outputs, message, record)

    return _caught(source, work, bool(options.redact_salt))


def _caught(source: Path, work, redact: bool = False) -> Result:
    """Run one file's (or series') `work`: the one place where its errors are caught.

    Every failure becomes a `Result` with a one-line reason, and pydicom's
    warnings are appended to the line instead of printed (under ``--redact``
    without the values they quote: "Invalid value for VR DA: '19510829'").
    """
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = work()
        result.message = _with_warnings(result.message, caught, redact)
        return result
    except Skipped as exc:
        return Result(source, "skipped", message=str(exc))
    except ConversionError as exc:
        return Result(source, "failed", message=_with_warnings(str(exc), caught, redact))
    except MemoryError:
        return Result(source, "failed", message="not enough memory to convert this file")
    except OSError as exc:
        name = f" {exc.filename}" if exc.filename and not str(exc.filename).endswith(".part") else ""
        return Result(source, "failed", message=f"cannot write output{name}: {exc.strerror or exc}")
    except Exception as exc:  # a library bug on odd input must not stop the batch
        return Result(source, "failed", message=f"unexpected {type(exc).__name__}: {first_line(exc)}")
    except BaseException as exc:  # a Rust decoder's panic (pyo3's PanicException) is no Exception,
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):  # and cannot be pickled
            raise
        return Result(source, "failed", message=f"the decoder crashed on this file: {first_line(exc)}")


def _with_warnings(message: str, caught: list, redact: bool = False) -> str:
    """`message` with the distinct warnings pydicom raised while reading, kept short."""
    import re

    texts: list[str] = []
    for w in caught or []:
        text = re.sub(r"\s*Please see <[^>]*>.*$", "", first_line(w.message))
        if redact:
            text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
        text = text if len(text) <= 120 else text[:117] + "..."
        if text not in texts:
            texts.append(text)
    if not texts:
        return message
    more = f" (+{len(texts) - 2} more)" if len(texts) > 2 else ""
    warning = f"warning: {'; '.join(texts[:2])}{more}"
    return f"{message}; {warning}" if message else warning


def _convert(source: Path, stem: Path, options: Options, images: tuple[Path, ...] = (),
             links: tuple[tuple[str, Path], ...] = ()) -> tuple[list[Path], str, dict]:
    ds = read_dataset(source)
    rendering: dict[str, str] = {}
    if options.redact_salt:
        rendering["Deidentified"] = DEIDENTIFIED
    plan = pixel_plan(ds, options) if has_pixel_data(ds) else None
    if plan is not None:
        rendering["Redaction"] = plan.describe()
    elif options.redact_salt and has_pixel_data(ds):
        rendering["Redaction"] = "pixels kept as they are (--redact-pixels keep)"
    if has_pixel_data(ds):
        check_image_attributes(ds)
    kind = object_kind(ds)
    with staged_outputs(stem) as (output, finals):
        shown = as_shown(ds, options)  # de-identified once, for the writers and the text outputs
        job = Conversion(source, ds, options, plan, output, rendering, images, links, stem=stem, shown=shown)
        if plan is not None and plan.action == "withhold":
            rendering["Display"] = f"metadata only (--redact: image withheld, {plan.reason})"
        else:
            WRITERS[kind](job, kind)
        if options.write_json:
            write_text(json.dumps(json_dataset(shown), indent=1, ensure_ascii=False, allow_nan=False),
                       output(".json"))
        write_text(metadata_text(shown, rendering, job.report), output(".txt"))
        # everything that can fail happens before the outputs take their final names
        record = {**index_record(shown), **rendering, "kind": kind, "excerpt": report_excerpt(job.report),
                  "thumbnail": str(job.thumbnail_file or "")}
    summary = ", ".join(v for k, v in rendering.items() if k in ("Display", "FrameRate", "Slide"))
    if plan is not None and plan.action == "blank":
        summary += f", burned-in text blanked ({plan.reason})"
    return [path for path in finals if path != job.thumbnail_file], summary, record


@dataclasses.dataclass
class Conversion:
    """One file being converted: what the writers of each kind need."""

    source: Path
    ds: Dataset
    options: Options
    plan: PixelPlan | None  # --redact's plan for the pixels
    output: object  # `staged_outputs`' stager
    rendering: dict[str, str]  # what the .txt summary and the log line say of the rendering
    images: tuple[Path, ...] = ()  # images to draw a segmentation or a dose over
    links: tuple[tuple[str, Path], ...] = ()  # a report's references: (SOP Instance UID, this run's output)
    report: str = ""  # a structured report's text, for the .txt
    stem: Path | None = None  # where the outputs go: OUTPUT/sub/STEM
    shown: Dataset | None = None  # `ds` as the outputs show it (de-identified under --redact)
    thumbnail_file: Path | None = None  # the index page's picture of it, once written

    def thumbnail(self, frame: np.ndarray) -> None:
        """The index page's picture of this file, from the first frame offered (see THUMBS_FOLDER)."""
        if self.options.thumbnails is not None and self.stem is not None and self.thumbnail_file is None:
            self.thumbnail_file = thumbnail_path(self.stem, self.options.thumbnails)
            write_thumbnail(frame, self.output("", self.thumbnail_file))

    def blanked(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """`frames` with --redact's rectangles blanked, when the plan has any."""
        import itertools

        if self.plan is None or self.plan.action != "blank":
            return frames
        return blanked(frames, itertools.repeat(blank_mask(self.plan, int(self.ds.Rows), int(self.ds.Columns))))


def write_metadata_only(job: Conversion, kind: str) -> None:
    job.rendering["Display"] = "metadata only (no pixel data)"


def write_image(job: Conversion, kind: str) -> None:
    """One frame: a PNG, 16-bit for greyscale unless --8bit."""
    options, ds = job.options, job.ds
    check_memory(ds, 1, options.max_memory)
    check_pixel_data_length(ds)
    sixteen = not options.eight_bit and not is_colour(ds)
    frames, job.rendering["Display"] = rendered_frames(job.source, ds, 65535 if sixteen else 255, options.window,
                                                       not options.redact_salt)
    write_one_frame(job, job.blanked(frames), sixteen)


def write_one_frame(job: Conversion, frames: Iterator[np.ndarray], sixteen: bool) -> None:
    frame = next(frames, None)
    if frame is None:
        raise CorruptFile("no frame could be decoded")
    if job.options.write_png:
        write_png(frame, job.output(".png"))
    job.thumbnail(frame)
    job.rendering["Output"] = f"PNG {'16' if sixteen else '8'}-bit" if job.options.write_png else "none"


def check_frames(job: Conversion) -> int:
    """How many frames `job`'s file holds, once it is known that they fit in memory and in the file."""
    frames_total = number_of_frames(job.ds)
    check_memory(job.ds, frames_total, job.options.max_memory)
    check_pixel_data_length(job.ds)
    return frames_total


def display_frames(job: Conversion, order: list[int] | None = None) -> Iterator[np.ndarray]:
    """The frames of a cine or a volume through the display pipeline (in `order`, when given),
    16-bit when per-frame PNGs want full precision, blanked under --redact; large clips are
    decoded in a helper process (`decode_in_helper`)."""
    ds, options = job.ds, job.options
    sixteen = not options.eight_bit and not is_colour(ds) and options.frame_pngs
    render = rendered_frames_in_helper if decode_in_helper(ds, number_of_frames(ds)) else rendered_frames
    frames, job.rendering["Display"] = render(job.source, ds, 65535 if sixteen else 255, options.window,
                                              not options.redact_salt, order)
    return job.blanked(frames)


def write_slices(job: Conversion, frames: Iterator[np.ndarray], frames_total: int, ordered_by: str) -> None:
    """Frames that are places, not moments: scrolled at --fps or 10 fps ("slices, not time"),
    with a contact sheet as the PNG and the middle slice as the index page's picture."""
    options = job.options
    timing = _constant_timing(Fraction(options.fps or DEFAULT_FPS), frames_total, "slices, not time")
    job.rendering["Slices"] = f"{frames_total}, {ordered_by}"
    job.rendering["FrameRate"] = timing.describe()
    written = write_cine(frames, job.output, timing, options, sheet=options.write_png,
                         thumbnail=(frames_total // 2, job.thumbnail))
    if written != frames_total:
        raise CorruptFile(f"decoded {written} of {frames_total} frames")


def write_clip(job: Conversion, kind: str) -> None:
    """Frames that are moments: a GIF and an MP4 at the file's own rate, pictured by its first frame."""
    frames_total = check_frames(job)
    frames = display_frames(job)
    timing = frame_timing(job.ds, frames_total, job.options.fps)
    job.rendering["FrameRate"] = timing.describe()
    written = write_cine(frames, job.output, timing, job.options, thumbnail=(0, job.thumbnail))
    if written != frames_total:
        raise CorruptFile(f"decoded {written} of {frames_total} frames")


def write_volume(job: Conversion, kind: str) -> None:
    """Frames that are slices of a volume, in anatomical order (`volume_order`)."""
    frames_total = check_frames(job)
    order, ordered_by = volume_order(job.ds)
    write_slices(job, display_frames(job, order), frames_total, ordered_by)


def write_dose(job: Conversion, kind: str) -> None:
    """An RT Dose: its planes in colour with a scale in Gy, drawn over the images of its frame of
    reference when this run has them (`job.images`), else plane by plane in grid order."""
    source, ds, options = job.source, job.ds, job.options
    frames_total = check_frames(job)
    order, ordered_by = volume_order(ds)
    if job.plan is not None and job.plan.action == "blank":
        raise Unsupported("--redact found rectangles to blank in a dose grid, which it cannot do")
    if job.images:
        frames, job.rendering["Display"], frames_total = dose_over_images(source, ds, job.images, options)
        if not frames_total:
            raise CorruptFile("none of the images of its frame of reference lies within the dose grid")
        ordered_by = "the images' positions in z"
    else:
        frames, job.rendering["Display"] = dose_frames(source, ds, order)
    write_slices(job, frames, frames_total, ordered_by)


def write_segmentation(job: Conversion, kind: str) -> None:
    """A segmentation: each segment in its colour, slice by slice, over the images it segments
    when this run has them (`job.images`)."""
    source, ds, options = job.source, job.ds, job.options
    check_frames(job)
    slices = segmentation_slices(ds)
    backgrounds = segmented_images(ds, slices, job.images, options) if job.images else None
    frames, job.rendering["Display"] = segmentation_frames(source, ds, slices, backgrounds)
    frames = job.blanked(frames)
    if len(slices) == 1:
        return write_one_frame(job, frames, False)
    write_slices(job, frames, len(slices), "by position along the slice normal")


def write_slide(job: Conversion, kind: str) -> None:
    """A whole-slide image level: its tiles stitched into one PNG."""
    ds, options = job.ds, job.options
    layout = slide_layout(ds)
    factor = layout.factor()
    check_slide_memory(ds, layout, factor, options.max_memory)
    check_pixel_data_length(ds)
    frames, job.rendering["Display"] = rendered_frames(job.source, ds, 255, options.window, not options.redact_salt)
    picture = stitched_slide(job.blanked(frames), layout, factor)
    drawn = sum(place is not None for place in layout.tiles)
    job.rendering["Slide"] = (f"{layout.columns} x {layout.rows} pixels from {drawn} of {len(layout.tiles)} tiles "
                              f"({layout.organization})" + (f", written at 1/{factor}" if factor > 1 else ""))
    if options.write_png:
        write_png(picture, job.output(".png"))
    job.thumbnail(picture)
    job.rendering["Output"] = "PNG 8-bit" if options.write_png else "none"


# What each kind of object (`object_kind`) becomes: the one dispatch.
WRITERS = {"metadata": write_metadata_only, "image": write_image, "cine": write_clip, "volume": write_volume,
           "dose": write_dose, "segmentation": write_segmentation, "slide": write_slide, "document": write_document,
           "video": write_video, "waveform": write_waveform, "report": write_report}


def write_cine(frames, output, timing: Timing, options: Options, sheet: bool = False,
               thumbnail: tuple[int, Callable] | None = None) -> int:
    """GIF, MP4, (with --frames) a PNG per frame and (with `sheet`) a contact sheet as the
    PNG, all fed as each frame is decoded.

    `output` is `staged_outputs`' stager for this file's outputs; `thumbnail` is
    (frame number, a function to give that frame for the index page's picture).

    Frames arrive 16-bit when per-frame PNGs want full precision; the GIF and
    MP4 then get the same pixels reduced to 8 bits.
    """
    import numpy as np

    with contextlib.ExitStack() as stack:
        writers = []
        if options.write_mp4:
            writers.append(stack.enter_context(in_own_thread(mp4_writer(output(".mp4"), timing.rate, options.crf))))
        if options.write_gif:
            writers.append(stack.enter_context(gif_writer(output(".gif"), timing.durations_ms, options.gif_max_size)))
        if sheet:
            writers.append(stack.enter_context(contact_sheet_writer(output(".png"), len(timing.durations_ms))))
        count = 0
        for frame in frames:
            count += 1
            if options.frame_pngs:
                write_png(frame, output(f"{FRAMES_SUFFIX}/{count:04d}.png"))
            if frame.dtype == np.uint16:
                frame = to_eight_bit(frame, 16)
            if thumbnail is not None and count - 1 == thumbnail[0]:
                thumbnail[1](frame)
            for write in writers:
                write(frame)
    return count


# x264 runs on threads of its own, but its encode call blocks until one is free;
# the GIF was then waiting behind it.  Fed through a short queue from a thread
# of its own, the MP4 encodes while this thread builds the GIF (PyAV lets go of
# the GIL while it waits for x264): 7.4 s -> 6.6 s for a 1024^2 x 100 run.
WRITER_QUEUE_FRAMES = 4


@contextlib.contextmanager
def in_own_thread(writer):
    """Run the frame writer `writer` (a context manager yielding ``write``) in a thread of its own.

    Yields a ``write(frame)`` that queues the frame; an error in the thread
    comes back on the next call or at the end.  Frames must not be changed
    after they are queued.
    """
    import queue
    import threading

    frames: queue.Queue = queue.Queue(maxsize=WRITER_QUEUE_FRAMES)
    failures: list[BaseException] = []

    with writer as write:
        def run() -> None:
            try:
                while (frame := frames.get()) is not None:
                    write(frame)
            except BaseException as exc:
                failures.append(exc)
                while frames.get() is not None:  # keep taking, so the producer never blocks
                    pass

        thread = threading.Thread(target=run, name="writer", daemon=True)
        thread.start()

        def put(frame) -> None:
            if failures:
                raise failures[0]
            frames.put(frame)

        try:
            yield put
        finally:
            frames.put(None)
            thread.join()
        if failures:
            raise failures[0]


# =============================================================================
# Series: single-slice files as one cine
# =============================================================================

def series_groups(results: list[Result]) -> list[list[Result]]:
    """Single-frame images grouped by series, orientation and size, in slice order.

    A CT or MR study on a CD is one file per slice.  Slices of one Series
    Instance UID are split where the orientation or image size changes (a
    scout among axial slices); multi-frame files are never mixed in.
    """
    groups: dict[tuple, list[Result]] = {}
    for result in results:
        record = result.record
        if result.status != "converted" or record.get("kind") != "image" or not record.get("series_uid"):
            continue
        orientation = record.get("orientation")
        orientation = tuple(round(v, 3) for v in orientation) if orientation and len(orientation) == 6 else None
        key = (record["series_uid"], orientation, record["rows"], record["columns"])
        groups.setdefault(key, []).append(result)
    return [sorted(group, key=slice_order) for group in groups.values() if len(group) > 1]


def slice_order(result: Result) -> tuple:
    """Position along the slice normal (Image Position · (row × column cosines), PS3.3
    C.7.6.2.1.1), else Instance Number, else file name."""
    record = result.record
    along = along_normal(record.get("position"), record.get("orientation"))
    if along is not None:
        return (0, along, result.source.name)
    instance = record.get("instance", "")
    if str(instance).lstrip("-").isdigit():
        return (1, int(instance), result.source.name)
    return (2, 0, result.source.name)


def series_stem(group: list[Result], taken: set[str]) -> Path:
    """``OUTPUT/<folder of the first slice>/<SeriesNumber>_<description>``, portable and unique."""
    import re

    record = group[0].record
    number = record.get("series_number") or "0"
    description = record.get("series_description") or "series"
    name = re.sub(r"[^\w.-]+", "_", f"{number}_{description}", flags=re.UNICODE).strip("._") or "series"
    folder = group[0].outputs[-1].parent  # where the first slice's outputs went (names redacted if asked)
    candidate, n = output_stem(name), 1
    while name_key(folder / candidate) in taken:
        n += 1
        candidate = f"{output_stem(name)}_{n}"
    taken.add(name_key(folder / candidate))
    return folder / candidate


def convert_series(slices: list[tuple[Path, str]], stem: Path, options: Options) -> Result:
    """One GIF + MP4 (and .txt) of a series of single-frame files, with one window for all.

    The window is ``--window``, else the first slice's, else the min–max of
    the whole series, so the loop does not flicker.
    """
    def work() -> Result:
        outputs, message, record = _convert_series(slices, stem, options)
        return Result(stem, "series", outputs, message, record)

    return _caught(stem, work, bool(options.redact_salt))


def _convert_series(slices: list[tuple[Path, str]], stem: Path, options: Options) -> tuple[list[Path], str, dict]:
    """`slices` are (input file, output stem name) in display order."""
    import itertools

    sources = [path for path, _ in slices]
    datasets = [read_dataset(path) for path in sources]
    plans = [pixel_plan(ds, options) for ds in datasets]
    if any(plan is not None and plan.action == "withhold" for plan in plans):
        raise Skipped("--redact withholds one of its slices")
    masks = [blank_mask(plan, int(ds.Rows), int(ds.Columns)) if plan is not None and plan.action == "blank"
             else None for plan, ds in zip(plans, datasets)]

    def first_frames():
        for path, ds in zip(sources, datasets):
            yield from itertools.islice(decode_frames(path, ds), 1)

    first = datasets[0]
    if is_colour(first):
        frames = itertools.chain.from_iterable(render_colour(decode_frames(p, d), d) for p, d in zip(sources, datasets))
        display = "colour"
    else:
        voi = choose_voi(first, options.window)
        kept = None
        if voi is None:
            kept, low, high = clip_stored_range(first_frames(), lambda i: datasets[i])
            voi = Voi("range", low, high, source="no window in series")
        frames = render_grayscale(iter(kept) if kept is not None else first_frames(),
                                  lambda i: datasets[i], lambda attrs: voi, 255)
        display = voi.describe()
    frames = blanked(frames, masks)
    if any(mask is not None for mask in masks):
        display += f", burned-in text blanked in {sum(m is not None for m in masks)} of {len(masks)} slices"
    timing = _constant_timing(Fraction(options.fps or DEFAULT_FPS), len(sources),
                              "--fps" if options.fps else "default for a series")
    with staged_outputs(stem) as (output, finals):
        written = write_cine(frames, output, timing, dataclasses.replace(options, frame_pngs=False))
        if written != len(sources):
            raise CorruptFile(f"decoded {written} of {len(sources)} slices")
        shown_first = as_shown(first, options)
        write_text(series_text([name for _, name in slices], shown_first, datasets, display, timing),
                   output(".txt"))
    record = index_record(shown_first)
    record.update(frames=str(len(sources)), Display=display, FrameRate=timing.describe())
    return finals, f"{len(sources)} slices, {display}, {timing.describe()}", record


def series_text(names: list[str], first: Dataset, datasets: list, display: str, timing: Timing) -> str:
    """The series summary (from `first`, redacted if asked) and its slices in display order."""
    lines = ["# Series", f"  {'SeriesNumber':<22} {text_of(first.get('SeriesNumber', ''))}",
             f"  {'SeriesDescription':<22} {text_of(first.get('SeriesDescription', ''))}",
             f"  {'Modality':<22} {text_of(first.get('Modality', ''))}",
             f"  {'Slices':<22} {len(names)}", f"  {'Display':<22} {display}",
             f"  {'FrameRate':<22} {timing.describe()}", "", "# Slices in display order",
             "  #     output name  (InstanceNumber, ImagePositionPatient)"]
    for number, (name, ds) in enumerate(zip(names, datasets), 1):
        position = "\\".join(f"{float(v):g}" for v in ds.get("ImagePositionPatient") or [])
        lines.append(f"  {number:<5} {name}  ({text_of(ds.get('InstanceNumber', ''))}, {position})")
    return "\n".join(lines) + "\n"


# =============================================================================
# The index page
# =============================================================================

INDEX_STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
h3{font-size:1em;color:#555}
.cards{list-style:none;margin:0;padding:0;display:grid;gap:12px;
  grid-template-columns:repeat(auto-fill,minmax(170px,1fr))}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;display:flex;flex-direction:column;min-width:0}
.card button{font:inherit;color:inherit;text-align:left;background:none;border:0;border-radius:6px;
  padding:8px;margin:0;cursor:pointer;display:flex;flex-direction:column;gap:2px;width:100%}
.card button:hover{background:#f0f4fa}
.card button:focus-visible{outline:3px solid #1a5fb4;outline-offset:-3px}
.thumb{display:block;width:100%;max-width:256px;height:auto;aspect-ratio:1;object-fit:contain;
  background:#000;margin:0 auto 4px}
.thumb.none{display:flex;align-items:center;justify-content:center;color:#bbb;font-weight:600;font-size:1.3em}
.card .title{font-weight:600;overflow-wrap:anywhere}.card .meta{font-size:13px;color:#555}
.card .files{font-size:13px;color:#555;padding:0 8px 8px;margin:auto 0 0}
@media (max-width:480px){body{margin:.75em}.cards{grid-template-columns:repeat(2,minmax(0,1fr));gap:8px}}
.vh{position:absolute;width:1px;height:1px;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
body:has(dialog[open]){overflow:hidden}
.viewer{position:fixed;inset:0;width:100%;height:100%;max-width:none;max-height:none;margin:0;padding:0;
  border:0;background:#111;color:#eee;color-scheme:dark;accent-color:#8cf;box-sizing:border-box}
.viewer:not([open]){display:none}
.viewer[open]{display:grid;grid-template-columns:minmax(0,1fr) minmax(14em,22em);
  grid-template-rows:auto minmax(0,1fr) auto;grid-template-areas:"head head" "stage info" "move info"}
.viewer::backdrop{background:#000c}
.viewer header{grid-area:head;display:flex;align-items:center;gap:12px;padding:6px 10px;background:#222}
.viewer header h2{font-size:1em;margin:0;border:0;flex:1;min-width:0;overflow-wrap:anywhere}
.viewer button.close{font:inherit;padding:4px 14px;border-radius:4px;border:1px solid #888;background:#333;
  color:#fff;cursor:pointer}
.viewer .stage{grid-area:stage;display:flex;flex-direction:column;align-items:center;justify-content:center;
  min-height:0;overflow:hidden;touch-action:pinch-zoom;background:#000}
.viewer .stage img,.viewer .stage video{flex:1 1 0;min-height:0;width:100%;max-width:100%;max-height:100%;
  object-fit:contain}
.viewer .stage audio{flex:none;width:min(100%,30em);margin:8px}
.viewer .stage p{color:#aaa}
.viewer .move{grid-area:move;display:flex;align-items:center;gap:10px;padding:6px 10px;background:#222}
.viewer .move input{flex:1;min-width:0}
.viewer .info{grid-area:info;overflow:auto;padding:10px;background:#1a1a1a;font-size:14px}
.viewer .info h3{color:#fff;margin:0 0 6px;overflow-wrap:anywhere}
.viewer dl{margin:0 0 8px;display:grid;grid-template-columns:auto 1fr;gap:2px 8px}
.viewer dt{font-weight:600;color:#bbb}.viewer dd{margin:0;overflow-wrap:anywhere}
.viewer a{color:#8cf}.viewer ul{list-style:none;padding:0;margin:0 0 8px;display:flex;flex-wrap:wrap;gap:4px 12px}
.viewer pre{white-space:pre-wrap;font:inherit;background:#222;padding:6px;margin:0}
.viewer [hidden]{display:none!important}
@media (max-width:700px){.viewer[open]{grid-template-columns:minmax(0,1fr);
  grid-template-rows:auto minmax(0,1fr) auto minmax(0,30%);grid-template-areas:"head" "stage" "move" "info"}}
"""

# The viewer's frame, with no data and no media element in it: the script
# fills it in, and creates the <img>, <video> and <audio> on first use, so the
# closed page requests nothing but thumbnails.
INDEX_VIEWER = """<dialog class="viewer" id="viewer" aria-label="Viewer" aria-modal="true">
<header><h2 id="viewer-series"></h2><span id="viewer-counter" aria-hidden="true"></span>
<button type="button" class="close" id="viewer-close">Close</button></header>
<div class="stage" id="viewer-stage"></div>
<div class="move"><label for="viewer-slider" class="vh">Image</label>
<input type="range" id="viewer-slider" min="1" max="1" step="1" value="1"></div>
<div class="info"><h3 id="viewer-title"></h3><dl id="viewer-facts"></dl><ul id="viewer-links"></ul>
<pre id="viewer-excerpt" hidden></pre></div>
<p class="vh" id="viewer-live" aria-live="polite"></p>
</dialog>"""

INDEX_DATA_ID = "index-data"

# Plain JS for every browser of the last few years: no modules, no fetch (a
# file:// page may not fetch its neighbours), data from the JSON block only,
# and every string from it set with textContent or as an attribute value.
INDEX_SCRIPT = r"""
(function () {
  'use strict';
  var SERIES = JSON.parse(document.getElementById('index-data').textContent);
  var PAGE = 10;      // PageUp/PageDown step, in items
  var WHEEL = 50;     // px of wheel per item: a mouse notch is 100-120, a trackpad sends a few at a time
  var SWIPE = 24;     // px of finger travel per item
  var CONTROLS = 64;  // px at the foot of a <video> left to its own controls when swiping
  var SPEAK_MS = 250; // a wheel spun through 100 slices should not queue 100 announcements

  var $ = function (id) { return document.getElementById(id); };
  var viewer = $('viewer'), stage = $('viewer-stage'), slider = $('viewer-slider');
  var live = $('viewer-live'), modal = typeof viewer.showModal === 'function';
  var series = null, at = 0, opener = null, wheel = 0, touch = null, speakTimer = 0;
  var img = null, video = null, audio = null, none = null;
  var prefetched = [new Image(), new Image()];  // the next and previous image, no more

  // A relative URL whose first segment holds a colon would be read as a
  // scheme (javascript:, data:), and one starting with / leaves the folder:
  // "./" keeps either a path inside it.
  function relative(url) { return /^([^\/?#]*:|\/)/.test(url) ? './' + url : url; }

  function make(tag, props) {
    var el = document.createElement(tag);
    for (var key in props) el[key] = props[key];
    return el;
  }

  function media() {
    if (img) return;
    img = make('img', { alt: '', decoding: 'async', hidden: true });
    video = make('video', { controls: true, muted: true, loop: true, playsInline: true, hidden: true });
    video.preload = 'auto';
    audio = make('audio', { controls: true, hidden: true });
    audio.preload = 'metadata';
    none = make('p', { textContent: 'No picture for this item.', hidden: true });
    stage.append(img, video, none, audio);
  }

  function setSource(el, url) {
    if (url) {
      url = relative(url);
      if (el.getAttribute('src') !== url) el.src = url;
    } else if (el.hasAttribute('src')) {
      if (el.pause) el.pause();
      el.removeAttribute('src');
      if (el.load) el.load();  // stops the download of what was playing
    }
    el.hidden = !url;
  }

  function show(i) {
    var items = series.items, n = items.length, item = items[i];
    at = i;
    var picture = item.video ? null : item.image;
    setSource(img, picture);
    img.alt = item.title || '';
    setSource(video, item.video);
    if (item.video) video.play().catch(function () {});  // muted autoplay; refusal only leaves it paused
    setSource(audio, item.audio);
    none.hidden = !!(picture || item.video || item.audio);

    $('viewer-title').textContent = item.title || '';
    $('viewer-counter').textContent = (i + 1) + ' / ' + n;
    slider.value = String(i + 1);
    slider.setAttribute('aria-valuetext', 'image ' + (i + 1) + ' of ' + n);

    var facts = $('viewer-facts');
    facts.textContent = '';
    (item.facts || []).forEach(function (fact) {
      facts.append(make('dt', { textContent: fact[0] }), make('dd', { textContent: fact[1] }));
    });
    var links = $('viewer-links');
    links.textContent = '';
    (item.links || []).forEach(function (link) {
      var li = make('li');
      li.append(make('a', { textContent: link[0], href: relative(link[1]) }));
      links.append(li);
    });
    var excerpt = $('viewer-excerpt');
    excerpt.textContent = item.excerpt || '';
    excerpt.hidden = !item.excerpt;

    clearTimeout(speakTimer);
    speakTimer = setTimeout(function () { live.textContent = 'image ' + (at + 1) + ' of ' + n; }, SPEAK_MS);
    prefetch(i);
  }

  function prefetch(i) {
    [i + 1, i - 1].forEach(function (j, k) {
      var item = series.items[j];
      if (item && item.image && !item.video) prefetched[k].src = relative(item.image);
    });
  }

  function go(i) {
    i = Math.max(0, Math.min(series.items.length - 1, i));
    if (i !== at) show(i);
  }

  function open(index, button) {
    series = SERIES[index];
    opener = button;
    media();
    $('viewer-series').textContent = series.title;
    viewer.setAttribute('aria-label', series.title);
    slider.max = String(series.items.length);
    slider.parentNode.hidden = series.items.length < 2;
    live.textContent = '';
    if (modal) viewer.showModal(); else viewer.setAttribute('open', '');
    show(0);
    (series.items.length > 1 ? slider : $('viewer-close')).focus();
  }

  function close() {
    if (modal) viewer.close(); else { viewer.removeAttribute('open'); closed(); }
  }

  function closed() {
    [img, video, audio].concat(prefetched).forEach(function (el) { setSource(el, null); });
    clearTimeout(speakTimer);
    if (opener) opener.focus();
  }

  document.querySelectorAll('button[data-series]').forEach(function (button) {
    button.addEventListener('click', function () { open(Number(button.dataset.series), button); });
  });
  viewer.addEventListener('close', closed);
  $('viewer-close').addEventListener('click', close);
  slider.addEventListener('input', function () { go(Number(slider.value) - 1); });

  var KEYS = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: PAGE, PageUp: -PAGE };
  viewer.addEventListener('keydown', function (e) {
    if (!series || e.altKey || e.ctrlKey || e.metaKey) return;
    // the same keys on the slider, the video or a link: the viewer's meaning, one step each
    if (e.key in KEYS) go(at + KEYS[e.key]);
    else if (e.key === 'Home') go(0);
    else if (e.key === 'End') go(series.items.length - 1);
    else if (e.key === 'Escape' && !modal) close();  // a modal <dialog> closes itself
    else return;
    e.preventDefault();
  });

  stage.addEventListener('wheel', function (e) {
    e.preventDefault();
    wheel += e.deltaMode === 1 ? e.deltaY * 40 : e.deltaY;  // lines (Firefox's mouse) to px
    if (Math.abs(wheel) >= WHEEL) { go(at + (wheel > 0 ? 1 : -1)); wheel = 0; }
  }, { passive: false });

  // A drag moves one item per SWIPE px along its main axis; up or left is forward,
  // as when scrolling a page.  Two fingers are a pinch-zoom (touch-action allows it).
  stage.addEventListener('touchstart', function (e) {
    var t = e.touches[0], target = e.target;
    var onControls = target === audio ||
      (target === video && t.clientY > video.getBoundingClientRect().bottom - CONTROLS);
    touch = e.touches.length === 1 && !onControls ? { x: t.clientX, y: t.clientY, done: 0 } : null;
  }, { passive: true });
  stage.addEventListener('touchmove', function (e) {
    if (!touch || e.touches.length !== 1) { touch = null; return; }
    var t = e.touches[0], dx = t.clientX - touch.x, dy = t.clientY - touch.y;
    var steps = Math.trunc((Math.abs(dy) >= Math.abs(dx) ? -dy : -dx) / SWIPE);
    if (steps !== touch.done) { go(at + steps - touch.done); touch.done = steps; }
    e.preventDefault();
  }, { passive: false });
  stage.addEventListener('touchend', function () { touch = null; });
})();
"""

# The one script may run (by its hash, which works from file:// where 'self'
# is unreliable); nothing may be fetched by script, posted, or embedded.
_CSP = ("script-src '{hash}'; connect-src 'none'; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-src 'none'")


def index_page(patients: list[dict]) -> str:
    """The whole ``index.html`` text for `patients` (Patient -> Study -> Series -> items)."""
    return "".join(index_page_parts(patients))


def index_page_parts(patients: list[dict]) -> Iterator[str]:
    """``index.html`` piece by piece, for `patients` (Patient -> Study -> Series -> items).

    Cards appear in the order given; the viewer's data is the series in card
    order, so card N's button opens ``data-series="N"``.  A series may be given
    as ``{"count": N, "make": function}``, made when its card is written, so
    that one series' items are held at a time; their viewer data waits in a
    temporary file until the cards are done.
    """
    import tempfile

    digest = base64.b64encode(hashlib.sha256(INDEX_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    head = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP.format(hash="sha256-" + digest)}">',
            '<meta name="viewport" content="width=device-width">', "<title>DICOM conversion</title>",
            '<link rel="icon" href="data:,">',  # no favicon request: the page needs no server
            f"<style>{INDEX_STYLE}</style></head><body>", "<h1>DICOM conversion</h1>", _totals(patients)]
    yield "\n".join(head)
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as viewer_data:
        number = 0
        for patient in patients:
            yield "\n" + _patient_heading(patient)
            for study in patient.get("studies", []):
                yield "\n" + _study_heading(study) + '\n<ul class="cards">'
                for series in study.get("series", []):
                    series = series["make"]() if "make" in series else series
                    yield "\n" + _series_card(series, number)
                    viewer_data.write("," * (number > 0) + script_json(_viewer_series(series)))
                    number += 1
                yield "\n</ul>"
        yield f'\n{INDEX_VIEWER}\n<script type="application/json" id="{INDEX_DATA_ID}">['
        viewer_data.seek(0)
        while chunk := viewer_data.read(1 << 20):
            yield chunk
    yield f"]</script>\n<script>{INDEX_SCRIPT}</script>\n</body></html>\n"


def _totals(patients: list[dict]) -> str:
    series = [s for p in patients for st in p.get("studies", []) for s in st.get("series", [])]
    items = sum(s["count"] if "make" in s else len(s.get("items", [])) for s in series)
    return f"<p>{len(series)} series, {items} item{'s' * (items != 1)}.</p>"


def _patient_heading(patient: dict) -> str:
    name, patient_id = patient.get("name") or "(no name)", patient.get("id") or ""
    return f"<h2>Patient {escape(name)}{' — ' + escape(patient_id) if patient_id else ''}</h2>"


def _study_heading(study: dict) -> str:
    words = " ".join(w for w in (study.get("date") or "", study.get("description") or "") if w)
    return f"<h3>Study {escape(words)}</h3>"


def _series_card(series: dict, index: int) -> str:
    """One series: a button (thumbnail, title, modality, count, size) that opens the viewer,
    and a plain link to its first item's first file for a browser without script."""
    title, modality = series.get("title") or "(untitled series)", series.get("modality") or ""
    if series.get("thumb"):
        # width/height reserve the box before the file arrives; CSS scales it to the card
        picture = (f'<img class="thumb" loading="lazy" decoding="async" width="256" height="256" alt="" '
                   f'src="{escape(_relative(series["thumb"]))}">')
    else:
        picture = f'<span class="thumb none" aria-hidden="true">{escape(modality or "?")}</span>'
    count = int(series.get("count") or len(series.get("items", [])))
    meta = " · ".join(w for w in (modality, f"{count} image{'s' * (count != 1)}", series.get("size") or "") if w)
    fallback = _first_file(series)
    files = (f'<p class="files">First item: <a href="{escape(_relative(fallback[1]))}">{escape(fallback[0])}</a></p>'
             if fallback else "")
    return (f'<li class="card"><button type="button" data-series="{index}" aria-haspopup="dialog">'
            f'{picture}<span class="title">{escape(title)}</span><span class="meta">{escape(meta)}</span>'
            f"</button>{files}</li>")


def _first_file(series: dict) -> tuple[str, str] | None:
    """(label, URL) of the first item's first link, else of its picture, video or sound."""
    items = series.get("items") or [{}]
    first = items[0]
    if first.get("links"):
        label, url = first["links"][0]
        return label, url
    return next(((kind, first[kind]) for kind in ("image", "video", "audio") if first.get(kind)), None)


def _viewer_series(series: dict) -> dict:
    """What the viewer needs of a series, without empty values (3,000 items add up)."""
    keys = ("title", "image", "video", "audio", "facts", "links", "excerpt")
    items = [{k: item[k] for k in keys if item.get(k)} for item in series.get("items", [])]
    return {"title": series.get("title") or "(untitled series)", "items": items}


def _relative(url: str) -> str:
    """`url` as a path inside the output folder: see `relative` in INDEX_SCRIPT."""
    return "./" + url if re.match(r"([^/?#]*:|/)", url) else url


def script_json(value) -> str:
    """`value` as JSON safe inside ``<script type="application/json">``.

    ``<`` (so no ``</script>`` or ``<!--``), ``>`` and ``&`` become \\u escapes,
    and so do U+2028 and U+2029, which end a line in older JavaScript.  They
    can appear only inside strings, where the escape means the same character.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def write_index(output: Path, results) -> Path:
    """``OUTPUT/index.html``: a card per series (Patient -> Study -> Series), and a viewer that
    shows its items at full size, built by `index_page_parts` from what the results recorded.

    Items are ordered by slice position within a series, and series, studies and patients by
    their numbers, dates and names; ties by output name, so a single run and the merge of
    its shards (in any order) write the same page.  `results` is read by position (a
    `LineStore` or a list): the tree holds each item's first output and place, a series'
    results are read back only to make its card, and the page is written as it is made.
    """
    tree: dict = {}
    for number, result in enumerate(results):
        if result.status not in SHOWN_STATUSES:
            continue
        r = result.record
        patient = (r.get("patient_name") or "(no name)", r.get("patient_id") or "")
        study = (r.get("study_uid", ""), r.get("study_date", ""), r.get("study_description", ""))
        series = (r.get("series_number", ""), r.get("series_description", ""), r.get("series_uid", ""))
        place = (result.outputs[0].as_posix() if result.outputs else "", number)  # first outputs are unique
        tree.setdefault(patient, {}).setdefault(study, {}).setdefault(series, []).append(place)

    def first_output(series_map: dict) -> str:  # ties broken by output name, not by arrival
        return min(min(places)[0] for places in series_map.values())

    def series_card(number: str, description: str, places: list) -> dict:
        def make() -> dict:
            return _index_series(number, description, [results[place] for _, place in sorted(places)], output)

        return {"count": len(places), "make": make}

    patients = []
    for (name, patient_id), studies in sorted(tree.items()):
        studies_model = []
        for (_, date, description), series_map in sorted(
                studies.items(), key=lambda kv: (kv[0][1:], first_output(kv[1]))):
            series_model = [series_card(number, series_description, places)
                            for (number, series_description, _), places in sorted(
                                series_map.items(), key=lambda kv: (_series_sort_key(kv), min(kv[1])[0]))]
            studies_model.append({"date": date, "description": description, "series": series_model})
        patients.append({"name": name, "id": patient_id, "studies": studies_model})
    with staged_outputs(output / "index") as (stage, finals):
        with open(stage(".html"), "w", encoding="utf-8", newline="\n") as f:
            f.writelines(index_page_parts(patients))
    return finals[0]


def _series_sort_key(item) -> tuple:
    number = str(item[0][0])
    return (int(number) if number.lstrip("-").isdigit() else 0, number, item[0][1])


def _index_series(number: str, description: str, results: list[Result], output: Path) -> dict:
    """One series card: its --series cine first, then its items in slice order; the middle
    one's thumbnail as its picture."""
    results = sorted(results, key=lambda result: (result.status != "series", slice_order(result)))
    pictured = [r for r in results if r.record.get("thumbnail")]
    middle = pictured[len(pictured) // 2] if pictured else None
    first = results[0].record
    sizes = [f"{r.record['columns']}×{r.record['rows']}" for r in results if r.record.get("columns")]
    return {"title": " ".join(w for w in ("Series", str(number), description) if w) if number or description
            else "Series (unnumbered)",
            "modality": first.get("modality", ""), "count": len(results),
            "size": sizes[0] if sizes and len(set(sizes)) == 1 else ("mixed sizes" if sizes else ""),
            "thumb": _index_link(Path(middle.record["thumbnail"]), output) if middle else None,
            "items": [_index_item(result, output) for result in results]}


def _index_link(path: Path, output: Path) -> str:
    from urllib.parse import quote

    return quote(path.relative_to(output).as_posix())


def _index_item(result: Result, output: Path) -> dict:
    """What the viewer shows of one result: its picture, video or sound, the summary facts of
    its .txt, and a link to each of its files (per-frame PNGs excepted)."""
    by_suffix: dict[str, Path] = {}
    frame_pngs = set(result.frame_pngs())
    files = [path for path in result.outputs if path not in frame_pngs]
    for path in files:
        kind = next((s for s in (TRANSCODED_SUFFIX, MEDIAN_SUFFIX) if path.name.endswith(s)), path.suffix)
        by_suffix.setdefault(kind, path)
    r = result.record
    picture = by_suffix.get(".png", by_suffix.get(".gif"))
    playable = by_suffix.get(TRANSCODED_SUFFIX, by_suffix.get(".mp4"))  # H.264 plays in every browser, HEVC not
    pictured = bool(r.get("columns"))  # no size or frame count for reports, waveforms, documents
    facts = [("Modality", r.get("modality", "")), ("Size", f"{r.get('columns', '')}×{r.get('rows', '')}" * pictured),
             ("Frames", r.get("frames", "") * pictured), ("Display", r.get("Display", "")), ("Rate", r.get("FrameRate", "")),
             ("Slices", r.get("Slices", "")), ("Slide", r.get("Slide", "")), ("Audio", r.get("Audio", ""))]
    names = {".html": "report", MEDIAN_SUFFIX: "median beat", TRANSCODED_SUFFIX: "H.264 mp4",
             **({".mp4": "HEVC mp4"} if TRANSCODED_SUFFIX in by_suffix else {})}
    links = [[names.get(kind, kind[1:]), _index_link(path, output)]
             for kind, path in sorted(by_suffix.items(), key=lambda kv: _link_order(kv[0]))]
    return {"title": files[0].relative_to(output).with_suffix("").as_posix() if files else result.source.name,
            "image": _index_link(picture, output) if picture else None,
            "video": _index_link(playable, output) if playable else None,
            "audio": _index_link(by_suffix[".wav"], output) if ".wav" in by_suffix else None,
            "facts": [[label, str(value)] for label, value in facts if value], "links": links,
            "excerpt": r.get("excerpt") or None}


def _link_order(kind: str) -> tuple:
    """Reports and documents first, then pictures and media, the .txt and .json last."""
    order = (".html", *DOCUMENT_SUFFIXES, ".png", MEDIAN_SUFFIX, ".gif", TRANSCODED_SUFFIX, ".mp4", ".csv", ".wav",
             ".txt", ".json")
    return (order.index(kind) if kind in order else len(order), kind)


# =============================================================================
# The batch
# =============================================================================

def display_name(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def outputs_are_current(source: Path, stem: Path, redacted: bool = False) -> bool:
    """True when `stem`'s .txt and its image outputs exist and are newer than `source`,
    and were written with ``--redact`` when this run is `redacted` and without it when not.

    The .txt is written last, in the same rename step as the images, so its
    presence means the conversion finished; multi-frame files need a GIF or an
    MP4 beside it, single frames a PNG, metadata-only files nothing more.
    """
    text = stem.with_name(stem.name + ".txt")
    try:
        newer = text.stat().st_mtime >= source.stat().st_mtime
    except OSError:
        return False
    images = [stem.with_name(stem.name + ext) for ext in (".png", ".gif", ".mp4", ".html", ".csv", ".wav",
                                                           *DOCUMENT_SUFFIXES)]
    head = _head(text)
    if (DEIDENTIFIED in head) != redacted:  # never pass an earlier run's names off as redacted
        return False
    return newer and (any(p.exists() for p in images) or "metadata only" in head)


def _head(path: Path, size: int = 4096) -> str:
    with path.open("rb") as f:
        return f.read(size).decode("utf-8", "replace")


def process_context():
    """The multiprocessing context for the worker pool: the platform's default start method.

    That is fork on Linux up to Python 3.13 (a worker starts in milliseconds,
    where a spawned one imports numpy and pydicom again), forkserver from 3.14,
    spawn on macOS (Apple's frameworks, which PyAV's wheel links, do not
    survive a fork) and Windows (which has nothing else).  Nothing a worker
    needs is inherited: `_worker_init` sets its signals, and decoders and LUT
    caches are set up on first use in each process.  ENV_START_METHOD chooses
    another, so that tests run the pool under each.
    """
    import multiprocessing

    return multiprocessing.get_context(environment_setting(ENV_START_METHOD))


def default_jobs() -> int:
    """The cores this process may use, as many as the platform's pool takes (`pool_size`)."""
    return pool_size(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def pool_size(jobs: int) -> int:
    """`jobs`, at most 61 on Windows, where a process pool takes no more."""
    return min(jobs, WINDOWS_MAX_WORKERS) if sys.platform == "win32" else jobs


# concurrent.futures refuses more workers on Windows (WaitForMultipleObjects
# waits on at most 64 handles, 3 of which the pool needs itself).
WINDOWS_MAX_WORKERS = 61


def _worker_init() -> None:
    """In pool workers: leave Ctrl-C to the parent, and turn SIGTERM into a clean exit.

    On POSIX the parent stops the batch by terminating its workers (SIGTERM):
    `Terminated` unwinds through `staged_outputs`, which deletes the worker's
    temporary files.  On Windows, where termination cannot be caught, the
    parent sweeps them (`remove_orphaned_temporaries`).
    """
    import faulthandler
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    faulthandler.disable()  # a crashing decoder is reported by the batch, not as a C stack dump


class Terminated(SystemExit):
    """SIGTERM in a worker: unwinds the conversion (deleting its temporaries), then exits.

    A SystemExit, so that an idle worker stopped at the end of a batch exits
    with status 143 and no traceback.
    """

    def __init__(self):
        super().__init__(143)


def _exit_on_signal(signum, frame) -> None:
    import signal

    # One SIGTERM is enough, and a second must not cut short the clean-up the first
    # starts: when one worker exits, the pool's manager thread terminates the others
    # again, and a Terminated raised inside `staged_outputs`' unlinking left a .part.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


def _interrupt_on_signal(signum, frame) -> None:
    raise KeyboardInterrupt


def _convert_tasks(chunk: list[tuple]) -> list[Result]:
    """Run a few tasks in a worker, each ``(file, stem, options)``, or ``([(slice file, name)],
    stem, options)`` for a series: one hand-over to the pool for several small files."""
    try:
        return [convert_series(*task) if isinstance(task[0], list) else convert_file(*task) for task in chunk]
    except Terminated:  # the temporaries are gone by now; leave before taking another task
        import multiprocessing

        end_processes(multiprocessing.active_children())  # a decoding helper must not outlive us
        os._exit(143)


CRASHED = "the converter crashed on this file (a decoder failed on damaged data)"
TASKS_AHEAD = 4  # chunks handed to the pool per worker: enough to keep it busy, not 100,000 tasks at once
CHUNK_TASKS = 16  # tasks at most in one hand-over to a worker (each costs 2-5 ms of pickling and waking)


class TaskQueue:
    """Tasks waiting to run: those put back after a crash first, then the next ones from
    `source`, read only as the pool needs them (planning streams into converting).  Keeps
    only the tasks read and not yet finished."""

    def __init__(self, source: Iterable[tuple] = ()):
        self._source = iter(source)
        self._back: collections.deque[int] = collections.deque()
        self._ahead: collections.deque[int] = collections.deque()
        self.tasks: dict[int, tuple] = {}
        self._count = 0
        self.root: str | None = None  # the folder every output seen so far is under

    def read_ahead(self, count: int) -> int:
        """Read tasks from the source until `count` are waiting (or it ends); how many wait."""
        while len(self._ahead) + len(self._back) < count:
            task = next(self._source, None)
            if task is None:
                break
            self.tasks[self._count] = task
            self._ahead.append(self._count)
            self._count += 1
            folder = str(task[1].parent)
            self.root = folder if self.root is None else os.path.commonpath([self.root, folder])
        return len(self._ahead) + len(self._back)

    def take(self, count: int) -> list[int]:
        self.read_ahead(count)
        taken = []
        while len(taken) < count and (self._back or self._ahead):
            taken.append((self._back or self._ahead).popleft())
        return taken

    def put_back(self, indices: list[int]) -> None:
        self._back.extendleft(reversed(sorted(indices)))

    def __bool__(self) -> bool:
        return self.read_ahead(1) > 0

    def __len__(self) -> int:  # the tasks waiting now, not what the source has still to give
        return len(self._ahead) + len(self._back)


def convert_all(tasks: Iterable[tuple[Path, Path, Options]], jobs: int) -> Iterator[Result]:
    """Convert every task in worker processes, `jobs` at a time, yielding results in order.

    Each file is converted in a worker process, even with one job, so a
    decoder that crashes on a damaged file (a C library, beyond Python's
    reach) takes down only that worker.  The tasks that may have been running
    with it are run again one at a time in a single worker, which finds the
    file that crashes; the rest go back to the pool.  Workers stream frame by
    frame, so memory grows with the number of jobs, not with the size of the
    files; `tasks` is read as the pool needs them, so not with their number either.
    """
    done: dict[int, Result] = {}
    emitted = 0
    waiting, suspects = TaskQueue(tasks), TaskQueue()
    suspects.tasks = waiting.tasks
    while waiting or suspects:
        isolating = bool(suspects)
        lost = []
        for index, result in _run_in_pool(suspects if isolating else waiting, 1 if isolating else jobs,
                                          1 if isolating else CHUNK_TASKS):
            if result is None:
                lost.append(index)
                continue
            done[index] = result
            while emitted in done:
                del waiting.tasks[emitted]
                yield done.pop(emitted)
                emitted += 1
        if not lost:
            continue
        lost.sort()
        if isolating:  # one task at a time: the first one lost was running
            done[lost[0]] = Result(waiting.tasks[lost[0]][0], "failed", message=CRASHED)
            suspects.put_back(lost[1:])
            while emitted in done:
                del waiting.tasks[emitted]
                yield done.pop(emitted)
                emitted += 1
        else:  # what may have been running: the first chunks not finished, at most 2 per worker plus one
            reach = (2 * jobs + 1) * CHUNK_TASKS
            suspects.put_back(lost[:reach])
            waiting.put_back(lost[reach:])
        if waiting.root:
            remove_orphaned_temporaries(Path(waiting.root))


def _run_in_pool(waiting: TaskQueue, jobs: int, chunk: int) -> Iterator[tuple[int, Result | None]]:
    """Run the tasks `waiting` holds (taken from it as they are handed over) in a process
    pool, up to `chunk` at a time, yielding (index, result) as chunks finish (`convert_all`
    puts them back in order); (index, None) for tasks lost to a crash.  What is left in
    `waiting` afterwards was never started.

    A few chunks per worker are handed over at a time, each as another finishes,
    so a run of 100,000 files holds neither 100,000 pending tasks nor their results.
    Chunks shrink as the tasks run out, so that the last ones still spread over every worker.
    """
    import multiprocessing
    import signal
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    workers = pool_size(min(jobs, waiting.read_ahead(jobs)))
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, mp_context=process_context())
    running: dict = {}  # future -> the indices of its chunk
    in_flight = workers * TASKS_AHEAD

    def submit(count: int) -> None:
        for _ in range(count):
            size = max(1, min(chunk, waiting.read_ahead(in_flight * chunk) // in_flight))
            indices = waiting.take(size)
            if not indices:
                return
            try:
                running[pool.submit(_convert_tasks, [waiting.tasks[index] for index in indices])] = indices
            except BrokenProcessPool:
                waiting.put_back(indices)
                raise

    try:
        # The pool starts its workers as the first tasks are submitted.  A spawned
        # worker takes a moment to reach `_worker_init`; started with Ctrl-C
        # ignored, it keeps ignoring it from its first instruction (a disposition
        # that survives exec), so a Ctrl-C then prints no traceback from it.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            submit(workers)
        finally:
            signal.signal(signal.SIGINT, previous_int)
        broken = False
        while True:
            if not broken:
                try:
                    submit(in_flight - len(running))
                except BrokenProcessPool:
                    broken = True
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda future: running[future][0]):
                indices = running.pop(future)
                try:
                    results = future.result()
                except BrokenProcessPool:  # lost with the worker that died, or with the pool after it
                    broken, results = True, [None] * len(indices)
                yield from zip(indices, results)
        pool.shutdown()
    finally:  # Ctrl-C or SIGTERM: stop the workers now; they delete their temporary files
        pool.shutdown(wait=False, cancel_futures=True)
        end_processes(multiprocessing.active_children())
        # then wait for the pool's own thread: a pool forked after a crash while it still held
        # a queue's lock would start workers that wait on that lock for ever
        pool.shutdown(wait=True)


def end_processes(processes) -> None:
    """Stop `processes` (multiprocessing children) and whatever they started, and wait for them.

    `terminate` is SIGTERM on POSIX, which a worker turns into a clean exit,
    and TerminateProcess on Windows, which nothing survives; a decoding
    helper still running after its worker has gone is killed.
    """
    import psutil

    processes = [process for process in processes if process.pid is not None]
    family = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            family.extend(psutil.Process(process.pid).children(recursive=True))
        process.terminate()
    for process in processes:
        process.join()
    _, alive = psutil.wait_procs(family, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def remove_orphaned_temporaries(root: Path) -> None:
    """Delete temporary files left by processes of ours that died (see TEMPORARY_NAME).

    Only names exactly as `staged_outputs` makes them: the output folder may be
    the input folder, and a file of the user's is never ours to delete; and
    only when no process with that pid and start time runs, so the temporaries
    of another run writing into the same folder are left alone.
    """
    import re

    for path in root.rglob(f"{TEMPORARY_PREFIX}*.part"):
        match = re.fullmatch(TEMPORARY_NAME, path.name)
        if match and not _process_alive(int(match[1]), int(match[2])):
            with contextlib.suppress(OSError):
                path.unlink()


def _process_alive(pid: int, started: int) -> bool:
    """Whether process `pid` runs and is the one that started at `started` (centiseconds)."""
    import psutil

    try:
        return abs(round(psutil.Process(pid).create_time() * 100) - started) <= 1
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # it exists, but we may not look at it: not ours to judge
        return True


class Log:
    """Where the run reports: one line per file, or a progress bar on a terminal.

    On a terminal the bar counts files and only problems are printed above it;
    otherwise (a pipe, a log file) every file gets its line.  ``quiet`` keeps
    just the failures and the summary.
    """

    def __init__(self, total: int, quiet: bool):
        self.quiet = quiet
        self.bar = None
        if self.shows_bar(quiet) and total > 1:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, unit="file", file=sys.stderr, leave=False)

    @staticmethod
    def shows_bar(quiet: bool) -> bool:
        return not quiet and sys.stderr.isatty()

    def line(self, text: str, problem: bool = False) -> None:
        if self.quiet and not problem:
            return
        if self.bar is not None and not problem:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr if problem else sys.stdout, flush=True)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def summary(self, text: str) -> None:
        if self.bar is not None:
            self.bar.close()
        print(text, flush=True)


class LineStore:
    """Values kept on disk, one JSON line each in an unnamed temporary file, read back by
    position: the main process keeps 8 bytes a value, not the value (a run's results held
    ~10 KB a file in memory, 1 GB at 100,000 files).  The OS removes the file when it is
    closed, whatever ends the run."""

    def __init__(self, encode: Callable = lambda value: value, decode: Callable = lambda value: value):
        import array
        import tempfile

        self._file = tempfile.TemporaryFile()
        self._starts = array.array("q")
        self._encode, self._decode = encode, decode

    def _write(self, value) -> int:
        start = self._file.seek(0, os.SEEK_END)
        self._file.write(json.dumps(self._encode(value), ensure_ascii=False, default=str).encode("utf-8") + b"\n")
        return start

    def append(self, value) -> None:
        self._starts.append(self._write(value))

    def __setitem__(self, number: int, value) -> None:
        self._starts[number] = self._write(value)  # the old line stays, unread

    def __getitem__(self, number: int):
        self._file.seek(self._starts[number])
        return self._decode(json.loads(self._file.readline()))

    def __len__(self) -> int:
        return len(self._starts)

    def __iter__(self) -> Iterator:
        return (self[number] for number in range(len(self)))

    def close(self) -> None:
        self._file.close()


def result_json(result: Result) -> dict:
    return {"source": str(result.source), "status": result.status, "outputs": [str(path) for path in result.outputs],
            "message": result.message, "record": result.record}


def result_from_json(item: dict) -> Result:
    return Result(Path(item["source"]), item["status"], [Path(path) for path in item["outputs"]], item["message"],
                  item["record"])


SHOWN_STATUSES = ("converted", "metadata", "series")  # what the index, the overlays and the links see


def run_batch(input_path: Path, output: Path, options: Options, batch: Batch = Batch()) -> int:
    """Convert every DICOM file under `input_path` (with --shard, this run's share of them);
    report each; return the exit status.

    Then, with `batch.series`, each series of single-frame files becomes one cine, and
    OUTPUT/manifest.csv and OUTPUT/index.html are written (a shard writes its part of the
    manifest, and the last shard to finish joins the parts).  Exit status: 0 all converted,
    1 some failed, 130 interrupted (Ctrl-C or SIGTERM), after deleting temporary files and
    printing what was done.
    """
    import signal

    input_path, output = input_path.resolve(), output.resolve()
    base = input_path if input_path.is_dir() else input_path.parent
    counts = dict.fromkeys(("converted", "metadata", "skipped", "failed", "not_dicom", "current", "series", "dicom"), 0)
    made = {".png": 0, ".gif": 0, ".mp4": 0}
    mine = (lambda path: True) if batch.shard is None else (lambda path: in_shard(path, base, batch.shard))
    total = sum(mine(path) for group in walk_groups(input_path, output, output) for path, _ in group.files) \
        if Log.shows_bar(batch.quiet) else 0  # a second walk, only to size a terminal's progress bar
    log = Log(total, batch.quiet)
    previous_term = signal.signal(signal.SIGTERM, _interrupt_on_signal)
    interrupted = False
    results = LineStore(result_json, result_from_json)  # every input's, for the manifest, the index, the links
    taken: set[str] = set()  # with --series: every stem planned, which a series' cine must not take

    def report(result: Result) -> None:
        counts[result.status] += 1
        for out in result.outputs:
            made[out.suffix] = made.get(out.suffix, 0) + 1
        results.append(result)
        log.line(result_line(result, base, output), problem=result.status == "failed")
        log.advance()

    def planned_tasks() -> Iterator[tuple]:
        """The walk, one output folder at a time, planned and handed to the pool as it goes."""
        for group in walk_groups(input_path, output, output):
            if not any(mine(path) for path, _ in group.files):
                continue  # another shard's: its names cannot touch ours
            dicom = []
            for path, folder in group.files:
                if looks_like_dicom(path):
                    dicom.append((path, folder))
                elif mine(path):
                    counts["not_dicom"] += 1
                    results.append(Result(path, "skipped", message="not a DICOM file"))
                    log.line(f"skipped    {display_name(path, base)}: not a DICOM file")
                    log.advance()
            planned = plan_group(dicom, group.present, output)  # every file of the folder, as one run names them
            if options.redact_salt:
                planned = redact_names(planned, output, options.redact_salt)
            for source, stem, note in planned:
                if batch.series:
                    taken.add(name_key(stem))
                if not mine(source):
                    continue
                counts["dicom"] += 1
                if note:
                    log.line(f"note       {display_name(source, base)}: {note}")
                if batch.skip_existing and outputs_are_current(source, stem, bool(options.redact_salt)):
                    counts["current"] += 1
                    results.append(existing_result(source, stem, options))
                    log.line(f"up to date {display_name(source, base)}")
                    log.advance()
                    continue
                yield source, stem, options

    try:
        for result in convert_all(planned_tasks(), batch.jobs):
            report(result)
        overlays, reports = overlay_tasks(results, options), report_tasks(results, options)
        again = overlays + reports
        # the same outputs again, now over their images, or linked to them
        for number, result in enumerate(convert_all([task for _, task in again], batch.jobs)):
            overlaid = number < len(overlays)
            if result.status == "converted":
                results[again[number][0]] = result
            else:  # the first pass's outputs stay
                result.message = (f"not drawn over its images (its outputs on black stay): {result.message}" if overlaid
                                  else f"not linked to its references (its page stays): {result.message}")
            log.line(result_line(result, base, output).replace("converted  ", "overlaid   " if overlaid else
                                                                "linked     ", 1), problem=result.status == "failed")
        if batch.series:
            groups = series_groups(results)
            series_tasks = [([(r.source, r.outputs[-1].stem) for r in group], series_stem(group, taken), options)
                            for group in groups]
            for result in convert_all(series_tasks, batch.jobs):
                report(result)
    except KeyboardInterrupt:
        interrupted = True
        if output.is_dir():  # the workers are gone: sweep what a worker killed mid-clean-up left
            remove_orphaned_temporaries(output)
    finally:
        signal.signal(signal.SIGTERM, previous_term)
    if not counts["dicom"] and not interrupted:
        log.line(f"no DICOM files found in {input_path}")
    if not interrupted:
        # rows made one at a time, in order: no second copy of every file's state
        redacted = bool(options.redact_salt)
        order = sorted((manifest_key(result, base, output, redacted), number) for number, result in enumerate(results))
        rows = (manifest_row(results[number], base, output, redacted) for _, number in order)
        if batch.shard is None:
            log.line(f"manifest   {display_name(write_manifest(output, rows), output)}")
            if batch.index and any(result.status in SHOWN_STATUSES for result in results):
                log.line(f"index      {display_name(write_index(output, results), output)}")
        else:
            write_shard_part(output, batch.shard, rows, results)
            if all(shard_part(output, (k, batch.shard[1])).exists() for k in range(1, batch.shard[1] + 1)):
                merge_shards(output, batch.shard[1], quiet=True, index=batch.index)  # the last shard to finish
                log.line(f"merged     {batch.shard[1]} shards into manifest.csv and index.html")
    results.close()
    log.summary(
        f"{'Interrupted' if interrupted else 'Done'}: {counts['converted']} converted "
        f"({made['.png']} PNG, {made['.gif']} GIF, {made['.mp4']} MP4), "
        + (f"{counts['series']} series, " if batch.series else "")
        + f"{counts['metadata']} metadata only, {counts['not_dicom'] + counts['skipped']} skipped, "
        + (f"{counts['current']} already up to date, " if batch.skip_existing else "")
        + f"{counts['failed']} failed."
        + (f" (shard {batch.shard[0]} of {batch.shard[1]})" if batch.shard else "")
    )
    if interrupted:
        return 130
    return 1 if counts["failed"] else 0


# -----------------------------------------------------------------------------
# Shards and the manifest: one run split over machines, one table of what was converted
# -----------------------------------------------------------------------------

SHARDS_FOLDER = ".shards"  # OUTPUT/.shards/part-K-of-N.jsonl: what each shard converted
MANIFEST_COLUMNS = (
    "input", "status", "reason", "outputs", "sop_class", "modality", "study_uid", "series_uid", "instance_uid",
    "rows", "columns", "frames", "bits", "photometric", "display", "frame_rate", "body_part", "manufacturer",
    "model",
)


def in_shard(path: Path, base: Path, shard: tuple[int, int]) -> bool:
    """Whether `path` falls to shard K of N: by its folder, so that the files of a series
    (a CD or an archive keeps one per folder), a report and the images beside it, and
    names that could collide stay in one run.  SHA-256 of the folder's path, so every
    machine and Python agrees (``hash`` is salted per process)."""
    import hashlib

    folder = path.parent.relative_to(base).as_posix() if path.parent != base else ""
    number = int.from_bytes(hashlib.sha256(folder.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    return number % shard[1] == shard[0] - 1


def manifest_row(result: Result, base: Path, output: Path, redacted: bool) -> dict[str, str]:
    """One input's row of the manifest.  Under --redact the input is named by its output
    stem (whose folders `redact_names` cleaned), and every attribute comes from the
    de-identified record, so the manifest holds nothing the outputs do not."""
    record = result.record
    name, outputs = manifest_key(result, base, output, redacted)
    reason = result.message if result.status in ("failed", "skipped") else ""
    values = {
        "input": name, "status": result.status, "reason": reason, "outputs": json.dumps(outputs, ensure_ascii=False),
        "sop_class": record.get("sop_class", ""), "modality": record.get("modality", ""),
        "study_uid": record.get("study_uid", ""), "series_uid": record.get("series_uid", ""),
        "instance_uid": record.get("instance_uid", ""), "rows": record.get("rows", "") or "",
        "columns": record.get("columns", "") or "", "frames": record.get("frames", "") if result.record else "",
        "bits": record.get("bits", ""), "photometric": record.get("photometric", ""),
        "display": record.get("Display", ""), "frame_rate": record.get("FrameRate", ""),
        "body_part": record.get("body_part", ""), "manufacturer": record.get("manufacturer", ""),
        "model": record.get("model", ""),
    }
    return {column: str(values[column]) for column in MANIFEST_COLUMNS}


def manifest_key(result: Result, base: Path, output: Path, redacted: bool) -> tuple[str, list[str]]:
    """How the manifest names an input, and its outputs (relative to OUTPUT): the rows' order."""
    outputs = [path.relative_to(output).as_posix() for path in result.outputs]
    if result.status == "series" or (redacted and result.outputs):
        return outputs[-1].rsplit(".", 1)[0], outputs
    if redacted:
        return "(input name withheld under --redact)", outputs
    return display_name(result.source, base).replace(os.sep, "/"), outputs


def write_manifest(output: Path, rows: Iterable[dict[str, str]]) -> Path:
    """``OUTPUT/manifest.csv``: a row per input, in the order given (by input), written atomically.  CSV
    rather than JSON Lines: a researcher filters it in a spreadsheet or with pandas, and
    every value is flat (the outputs column is a JSON list, since names may hold any
    character)."""
    import csv

    with staged_outputs(output / "manifest") as (stage, finals):
        with open(stage(".csv"), "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    return finals[0]


REDACT_SECRET = "redact-secret"  # OUTPUT/.shards/redact-secret: the one secret of a --redact run's shards


def shard_secret(output: Path, shard: tuple[int, int]) -> str:
    """The secret every shard of a ``--redact`` run replaces UIDs with, so that their
    stand-ins agree.  The first shard to start writes it into the shared output folder
    (an exclusive create: two starting at once cannot both write one), the others read it,
    and the merge deletes it, so it never leaves with the outputs."""
    import time

    folder = output / SHARDS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REDACT_SECRET
    if not path.exists() and any(folder.glob(f"part-*-of-{shard[1]}.jsonl")):
        raise Unsupported(f"the shards in {output} were merged and their --redact secret deleted; another shard now "
                          "would replace UIDs differently: convert into a new output folder")
    with contextlib.suppress(FileExistsError):
        with open(path, "x", encoding="ascii") as f:
            os.chmod(path, 0o600)
            f.write(secrets.token_hex(16) + "\n")
    for _ in range(100):  # the shard that created it a moment ago may still be writing it
        text = path.read_text(encoding="ascii").strip()
        if re.fullmatch(r"[0-9a-f]{32}", text):
            return text
        time.sleep(0.1)
    raise Unsupported(f"{path} does not hold a --redact secret: delete it and start the shards again")


def shard_part(output: Path, shard: tuple[int, int]) -> Path:
    return output / SHARDS_FOLDER / f"part-{shard[0]}-of-{shard[1]}.jsonl"


def write_shard_part(output: Path, shard: tuple[int, int], rows: Iterable[dict], results: Iterable[Result]) -> None:
    """This shard's manifest rows and what the index needs of its results, one JSON object a
    line, renamed into place only when whole (a shard that dies leaves no part)."""
    part = shard_part(output, shard)
    with staged_outputs(part.with_suffix("")) as (stage, _):
        with open(stage(".jsonl"), "w", encoding="utf-8", newline="\n") as f:
            for row in rows:
                f.write(json.dumps({"manifest": row}, ensure_ascii=False) + "\n")
            for result in results:
                if result.status in SHOWN_STATUSES:  # outputs relative: the merge may run on another machine
                    item = {**result_json(result), "outputs": [p.relative_to(output).as_posix() for p in result.outputs]}
                    f.write(json.dumps({"index": item}, ensure_ascii=False, default=str) + "\n")


def merge_shards(output: Path, count: int, quiet: bool = False, index: bool = True) -> int:
    """``--merge-shards N``: join the parts of N shards into ``manifest.csv`` and
    ``index.html``, as a single run writes them.  Any shard may do it (the last to finish
    does); doing it twice writes the same files."""
    output = output.resolve()
    parts = [shard_part(output, (k, count)) for k in range(1, count + 1)]
    missing = [part.name for part in parts if not part.exists()]
    if missing:
        print(f"error: cannot merge {count} shards: {', '.join(missing)} not written yet in "
              f"{output / SHARDS_FOLDER}", file=sys.stderr)
        return 1
    rows, results, order = LineStore(), LineStore(result_json, result_from_json), []
    for part in parts:
        with open(part, encoding="utf-8", newline="\n") as f:
            for line in f:
                entry = json.loads(line)
                if "manifest" in entry:
                    row = entry["manifest"]
                    order.append(((row["input"], json.loads(row["outputs"])), len(rows)))
                    rows.append(row)
                else:
                    item = entry["index"]
                    results.append(result_from_json({**item, "outputs": [output / name for name in item["outputs"]]}))
    write_manifest(output, (rows[number] for _, number in sorted(order)))
    if index and len(results):
        write_index(output, results)
    with contextlib.suppress(FileNotFoundError):  # every shard is done with it
        (output / SHARDS_FOLDER / REDACT_SECRET).unlink()
    rows.close()
    results.close()
    if not quiet:
        print(f"merged {count} shards: {len(order)} inputs in manifest.csv" + (", index.html" if index else ""))
    return 0


def overlay_tasks(results: LineStore, options: Options) -> list[tuple[int, tuple]]:
    """Objects to draw again over images this run converted, with their place in `results`:
    a segmentation over the single-frame images of its Referenced Series (PS3.3 C.8.20.1), an
    RT Dose over those of its Frame of Reference (the planning CT).  UIDs are matched as the
    outputs show them, so --redact's stand-ins match too.  Two passes, so that only the
    images of a series or frame something refers to are collected."""
    def overlaid(result: Result) -> tuple[str, str] | None:
        record = result.record
        if result.status != "converted":
            return None
        if record.get("sop_class") == SEGMENTATION_CLASS and record.get("referenced_series"):
            return "series", record["referenced_series"]
        if record.get("sop_class") == RT_DOSE_CLASS and record.get("frames") != "1" and record.get("frame_of_reference"):
            return "frame", record["frame_of_reference"]
        return None

    wanted = {key for key in map(overlaid, results) if key}
    if not wanted:
        return []
    images: dict[tuple[str, str], list[Path]] = {}
    overlays = []
    for number, result in enumerate(results):
        record = result.record
        key = overlaid(result)
        if key:
            overlays.append((number, result, key))
        elif result.status == "converted" and record.get("kind") == "image" and record.get("sop_class") not in (
                SEGMENTATION_CLASS, RT_DOSE_CLASS):
            for key in (("series", record.get("series_uid")), ("frame", record.get("frame_of_reference"))):
                if key in wanted:
                    images.setdefault(key, []).append(result.source)
    return [(number, (result.source, result.outputs[-1].with_suffix(""), options, tuple(images[key])))
            for number, result, key in overlays if key in images]


def report_tasks(results: LineStore, options: Options) -> list[tuple[int, tuple]]:
    """Structured reports to convert again with links, with their place in `results`: each to
    this run's outputs of the instances of its study (the picture a viewer shows first: PNG,
    GIF, then MP4, or the document, the ECG page).  UIDs are matched as the outputs show them,
    so --redact's stand-ins match too.  Two passes: only the studies that hold a report are
    collected."""
    def is_report(result: Result) -> bool:
        return result.status == "converted" and result.record.get("kind") == "report"

    studies = {result.record.get("study_uid", "") for result in results if is_report(result)}
    if not studies:
        return []
    preference = (".png", ".gif", TRANSCODED_SUFFIX, ".mp4", *DOCUMENT_SUFFIXES, ".wav", ".html")
    by_study: dict[str, list[tuple[str, Path]]] = {}
    reports = []
    for number, result in enumerate(results):
        record = result.record
        if is_report(result):
            reports.append((number, result))
            continue
        uid = record.get("instance_uid")
        if result.status != "converted" or not uid or record.get("study_uid", "") not in studies:
            continue
        frame_pngs = set(result.frame_pngs())
        kept = [path for path in result.outputs if path not in frame_pngs]
        shown = [path for suffix in preference for path in kept if path.name.endswith(suffix)]
        if shown:
            by_study.setdefault(record.get("study_uid", ""), []).append((uid, shown[0]))
    return [(number, (result.source, result.outputs[-1].with_suffix(""), options, (),
                      tuple(by_study[result.record.get("study_uid", "")])))
            for number, result in reports if by_study.get(result.record.get("study_uid", ""))]


def redact_names(planned: list[tuple[Path, Path, str]], output: Path, salt: str) -> list[tuple[Path, Path, str]]:
    """Output paths with no folder or file name that holds a patient's name, ID or birth date.

    Hospital exports often name folders after the patient (``DOE^JOHN/``).
    Each such name becomes ``redacted-`` and 16 hex digits of an HMAC of it
    under the run's secret: the same name gives the same stand-in throughout
    the run and in every shard of it, so the tree keeps its shape, and without
    the secret the stand-in tells nothing of the name.
    """
    import hmac

    result = []
    for source, stem, note in planned:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the file's own line reports them, without values
                tokens = identifying_strings(_dcmread(source, stop_before_pixels=True))
        except Exception:
            tokens = []
        parts = []
        for part in stem.relative_to(output).parts:
            if any(token in part.casefold() for token in tokens):
                part = "redacted-" + hmac.new(salt.encode(), part.encode("utf-8", "surrogatepass"),
                                              "sha256").hexdigest()[:16]
            parts.append(part)
        result.append((source, output.joinpath(*parts), "" if parts != list(stem.relative_to(output).parts) else note))
    return result


def existing_result(source: Path, stem: Path, options: Options) -> Result:
    """What the index needs about a file converted by an earlier run (--skip-existing)."""
    outputs = [p for p in (stem.with_name(stem.name + ext) for ext in OUTPUT_SUFFIXES) if p.exists()]
    try:
        ds = read_dataset(source)
        record = {**index_record(as_shown(ds, options)), "kind": object_kind(ds)}
        if options.thumbnails is not None and thumbnail_path(stem, options.thumbnails).exists():
            record["thumbnail"] = str(thumbnail_path(stem, options.thumbnails))
    except ConversionError:
        record = {}
    return Result(source, "converted", outputs, "up to date", record)


def result_line(result: Result, base: Path, output: Path) -> str:
    """The one line a file gets in the log."""
    is_series = result.source.is_relative_to(output) and not result.source.is_relative_to(base)
    name = display_name(result.source, output if is_series or result.status == "series" else base)
    if result.status == "failed":
        return f"FAILED     {name}: {result.message}"
    if result.status == "skipped":
        return f"skipped    {name}: {result.message}"
    label = {"converted": "converted ", "metadata": "metadata  ", "series": "series    "}[result.status]
    frame_pngs = set(result.frame_pngs())
    made = " ".join(display_name(p, output) for p in result.outputs if p not in frame_pngs)
    frames = len(frame_pngs)
    made += f" +{frames} frame PNGs" if frames else ""
    detail = f"  [{result.message}]" if result.message else ""
    return f"{label} {name} -> {made}{detail}"


# =============================================================================
# Command line
# =============================================================================

def positive_fps(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert DICOM files to PNG (single frame) or GIF + MP4 (multi-frame), "
        "with a metadata .txt beside each, following the DICOM display pipeline.",
        epilog="PNGs are written with the Up row filter and libdeflate level 1: measured on CT, MR, CR and "
        "ultrasound images, 2-6x faster than Pillow (level 1 or its default 6) for files of about the same "
        "size.  Exit status: 0 every DICOM file converted, 1 some failed, "
        "2 usage error, 130 interrupted (Ctrl-C or SIGTERM; no partial file is left).",
    )
    parser.add_argument("input_path", nargs="?", default=DEFAULT_INPUT,
                        help=f"DICOM file or directory, walked recursively (default: {DEFAULT_INPUT})")
    parser.add_argument("-o", "--output", default=DEFAULT_OUTPUT,
                        help=f"output directory (default: {DEFAULT_OUTPUT})")

    image = parser.add_argument_group("image")
    image.add_argument("--8bit", dest="eight_bit", action="store_true",
                       help="8-bit output (default is 16-bit PNG for full precision)")
    image.add_argument("--window", nargs=2, type=float, metavar=("CENTER", "WIDTH"),
                       help="VOI window in modality units (e.g. --window 40 400 for CT soft tissue); "
                       "overrides the file's window")

    cine = parser.add_argument_group("cine loops (multi-frame files)")
    cine.add_argument("--no-mp4", action="store_true", help="no MP4 for multi-frame files (GIF only)")
    cine.add_argument("--no-gif", action="store_true", help="no GIF for multi-frame files (MP4 only)")
    cine.add_argument("--fps", type=positive_fps, default=None,
                      help="frames per second for GIF and MP4 (default: the file's own rate, else 10)")
    cine.add_argument("--crf", type=int, default=DEFAULT_CRF, choices=range(0, 52), metavar="0-51",
                      help=f"H.264 quality: lower is better and larger (default {DEFAULT_CRF}: "
                      "worst frame 40.7 dB PSNR or better on the grey test clips, visually lossless; each +6 roughly halves the size)")
    cine.add_argument("--no-transcode", action="store_true",
                      help="HEVC videos: only the stream copied into STEM.mp4 (Safari, Edge), not also re-encoded "
                      f"to H.264 in STEM{TRANSCODED_SUFFIX} for Chrome and Firefox")
    cine.add_argument("--gif-max-size", type=int, default=DEFAULT_GIF_MAX_SIZE, metavar="PIXELS",
                      help="scale GIF frames down so the longer side is at most PIXELS "
                      f"(default {DEFAULT_GIF_MAX_SIZE}; 0 keeps full size); PNG and MP4 keep full size")

    extras = parser.add_argument_group("more outputs")
    extras.add_argument("--series", action="store_true",
                        help="also join the single-frame images of each series (CT/MR slices) into one "
                        "GIF + MP4, ordered along the slice normal, named SERIESNUMBER_DESCRIPTION")
    extras.add_argument("--no-png", action="store_true",
                        help="no PNG per single-frame image (with --series: only the series cines)")
    extras.add_argument("--frames", action="store_true",
                        help="for multi-frame files also write every frame as STEM_frames/0001.png … "
                        "(16-bit unless --8bit)")
    extras.add_argument("--json", action="store_true",
                        help="also write STEM.json: the DICOM JSON Model (PS3.18 F.2), bulk data left out")
    extras.add_argument("--no-index", action="store_true",
                        help="do not write OUTPUT/index.html (a page to browse everything converted)")
    extras.add_argument("--redact", action="store_true",
                        help="for sharing, under the DICOM basic de-identification profile (PS3.15 "
                        "Table E.1-1): names, IDs, dates, institutions, free text and private tags are left "
                        "out of every output, UIDs replaced, output names never contain them, and "
                        "burned-in text is blanked; an image whose text no rule locates is withheld")
    extras.add_argument("--redact-pixels", choices=("blank", "keep"), default=None,
                        help="with --redact: blank burned-in text and withhold what no rule covers "
                        "(default), or keep the pixels as they are (you have checked the images)")

    batch = parser.add_argument_group("batch")
    batch.add_argument("-j", "--jobs", type=int, default=default_jobs(), metavar="N",
                       help="files converted at once (default: the number of cores this process may use, "
                       "at most 61 on Windows)")
    batch.add_argument("--max-memory", type=megabytes, default=None, metavar="MB",
                       help="refuse files whose declared pixel data exceeds MB megabytes "
                       "(default: the memory available when the run starts)")
    batch.add_argument("--skip-existing", action="store_true",
                       help="skip files whose outputs are all present and newer than the input "
                       "(to resume an interrupted batch)")
    batch.add_argument("--shard", type=shard_spec, default=None, metavar="K/N",
                       help="convert only share K of N (by folder), for N runs on N machines into one shared "
                       "OUTPUT; each writes OUTPUT/.shards/part-K-of-N.jsonl and the last to finish writes "
                       "manifest.csv and index.html (see the README for Slurm, Kubernetes and GNU parallel)")
    batch.add_argument("--merge-shards", type=int, default=None, metavar="N",
                       help="only join the parts of N shards in OUTPUT into manifest.csv and index.html")
    batch.add_argument("-q", "--quiet", action="store_true",
                       help="print only failures and the summary")
    return parser


def shard_spec(text: str) -> tuple[int, int]:
    """``K/N`` with 1 <= K <= N."""
    share, _, count = text.partition("/")
    if not (share.isdigit() and count.isdigit() and 1 <= int(share) <= int(count)):
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N, got {text!r}")
    return int(share), int(count)


def megabytes(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return int(value * 1024 * 1024)


def available_memory() -> int:
    """Bytes of memory available now, as the platform counts it (psutil)."""
    import psutil

    return psutil.virtual_memory().available


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    input_path, output = Path(args.input_path), Path(args.output)
    if args.no_mp4 and args.no_gif:
        parser.error("--no-mp4 and --no-gif together leave nothing to write for multi-frame files")
    if args.window is not None and args.window[1] <= 0:
        parser.error("--window WIDTH must be greater than 0")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.redact_pixels and not args.redact:
        parser.error("--redact-pixels only applies with --redact")
    if args.merge_shards is not None and args.merge_shards < 1:
        parser.error("--merge-shards N needs N >= 1")
    if not input_path.exists() and args.merge_shards is None:  # a merge reads only OUTPUT
        parser.error(f"input path does not exist: {input_path}")
    options = Options(
        eight_bit=args.eight_bit,
        write_gif=not args.no_gif,
        write_mp4=not args.no_mp4,
        transcode=not args.no_transcode,
        fps=args.fps,
        window=tuple(args.window) if args.window else None,
        crf=args.crf,
        gif_max_size=args.gif_max_size or None,
        max_memory=args.max_memory or available_memory(),
        write_png=not args.no_png,
        frame_pngs=args.frames,
        write_json=args.json,
        redact_salt=secrets.token_hex(16) if args.redact else None,
        redact_pixels=args.redact_pixels or "blank",
        thumbnails=None if args.no_index else output.resolve() / THUMBS_FOLDER,
    )
    for stream in (sys.stdout, sys.stderr):  # file names may not be valid in the locale
        stream.reconfigure(errors="backslashreplace")
    try:
        output.mkdir(parents=True, exist_ok=True)
        if not os.access(output, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        print(f"error: cannot write to output directory {output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.shard and args.redact:  # the shards must replace UIDs alike
        try:
            options = dataclasses.replace(options, redact_salt=shard_secret(output.resolve(), args.shard))
        except (Unsupported, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    try:
        if args.merge_shards:
            return merge_shards(output, args.merge_shards)
        batch = Batch(jobs=args.jobs, quiet=args.quiet, skip_existing=args.skip_existing, series=args.series,
                      index=not args.no_index, shard=args.shard)
        return run_batch(input_path, output, options, batch)
    except BrokenPipeError:  # `... | head`: the reader left; stop quietly like other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
