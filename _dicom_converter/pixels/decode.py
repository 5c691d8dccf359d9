"""Decoding frames: the stored values of each frame, one at a time, through pydicom's
decoders (libjpeg-turbo first for JPEG), with decoder failures as one clear error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from _dicom_converter.base import ENV_CRASH_ON, CorruptFile, Unsupported, environment_setting, first_line
from _dicom_converter.pixels.libjpeg_turbo import TURBO_SYNTAXES, use_libjpeg_turbo
from _dicom_converter.reading import _dcmread, transfer_syntax_of

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset


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
