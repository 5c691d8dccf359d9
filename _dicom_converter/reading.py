"""Reading a dataset: pydicom's `dcmread` made strict about what a conversion needs,
and the checks (completeness, pixel data length, memory) that turn a damaged file into one
clear `CorruptFile` or `Unsupported` before any output is written.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from _dicom_converter.base import MEDIA_STORAGE_DIRECTORY, CorruptFile, NotDicom, Skipped, Unsupported, first_line

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


def import_pydicom() -> None:
    """Import pydicom for a worker, without what it loads only to download its test files.

    pydicom.data.download imports requests and tqdm when pydicom loads, to fetch pydicom's
    own test files with a progress bar, which the converter never does; it falls back to
    urllib, without a bar, when they are missing.  Neither is needed for converting, but
    many Pythons have requests (a system Python, a shared environment), and tqdm is ours,
    for the terminal's bar: each is hidden for that one import (a None in sys.modules makes
    ``import requests`` fail) and imports as before after it.  That takes 60 ms (requests)
    and 9 ms (tqdm, whose version lookup reads package metadata) out of the start of every
    process that converts.
    """
    import sys

    if "pydicom" in sys.modules:
        return
    hidden = [name for name in DOWNLOAD_ONLY_MODULES if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import pydicom  # noqa: F401
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


DOWNLOAD_ONLY_MODULES = ("requests", "tqdm")


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


def is_multi(value) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"
