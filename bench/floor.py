#!/usr/bin/env python3
"""The floor for one CT slice (#27): only what any converter must do, in one process, no pool.

    python3 bench/floor.py INPUT_FOLDER -o OUTPUT [--no-txt]

For each file, one after another: pydicom reads it and decodes its pixels; the stored values
go through one lookup table (built once per rescale and window) straight to 16-bit display
values; the PNG is written with the Up filter and libdeflate at level 1 (as ours); and, unless
--no-txt, a .txt of the top-level elements (``str`` of each).  No thumbnail, no manifest, no
index, no staging, no error handling: a yardstick to measure our per-slice cost against.
"""

from __future__ import annotations

import argparse
import struct
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom

_LUTS: dict[tuple, np.ndarray] = {}


def lookup_table(ds, dtype: np.dtype) -> np.ndarray:
    """Stored value -> 16-bit display value: rescale, then the file's first window (PS3.3 C.11.2.1.2)."""
    first = (lambda v: float(v[0]) if isinstance(v, pydicom.multival.MultiValue) else float(v))
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    center, width = first(ds.WindowCenter), first(ds.WindowWidth)
    key = (dtype.str, slope, intercept, center, width)
    if key not in _LUTS:
        info = np.iinfo(dtype)
        stored = np.arange(info.min, info.max + 1, dtype=np.float64)
        value = stored * slope + intercept
        shown = np.clip(((value - (center - 0.5)) / (width - 1) + 0.5), 0, 1)
        _LUTS[key] = np.round(shown * 65535).astype(np.uint16)
    return _LUTS[key]


def write_png(frame: np.ndarray, path: Path) -> None:
    height, width = frame.shape
    samples = frame.astype(">u2").view(np.uint8).reshape(height, -1)
    rows = np.empty((height, samples.shape[1] + 1), np.uint8)
    rows[:, 0] = 2  # Up
    rows[0, 1:] = samples[0]
    np.subtract(samples[1:], samples[:-1], out=rows[1:, 1:])
    body = imagecodecs.deflate_encode(rows, level=1)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        for kind, data in ((b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)), (b"IDAT", body),
                           (b"IEND", b"")):
            f.write(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--no-txt", action="store_true")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    for path in sorted(args.input.iterdir()):
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array
        offset = -np.iinfo(stored.dtype).min  # signed stored values index from the table's start
        table = lookup_table(ds, stored.dtype)
        shown = table[stored.astype(np.int32) + offset] if offset else table[stored]
        write_png(shown, args.output / f"{path.name}.png")
        if not args.no_txt:
            text = "\n".join(str(element) for element in ds if element.tag != 0x7FE00010)
            (args.output / f"{path.name}.txt").write_bytes(text.encode("utf-8", "backslashreplace"))


if __name__ == "__main__":
    main()
