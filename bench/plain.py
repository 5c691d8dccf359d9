#!/usr/bin/env python3
"""The "plain approach" baseline for bench/run.py.

What a typical DICOM-to-image script does, written plainly: one process, one
file after another; read the whole dataset, take the whole `pixel_array`,
rescale and window it in float64, then

- single frame: a 16-bit PNG with Pillow, and a .txt of ``str(ds)``;
- multi-frame: 8-bit frames, a Pillow GIF (``save_all``, ``loop=0``, full
  size) and an H.264 MP4 through PyAV (libx264, yuv420p, by default crf 18,
  preset medium; ``--crf/--preset/--tune`` set others), and the .txt.

It is a yardstick, not a converter: no VOI LUT sequences, palettes, overlays,
per-frame functional groups or error handling beyond skipping non-DICOM files.

    python3 bench/plain.py INPUT -o OUTPUT [--crf 18] [--preset medium] [--tune TUNE] [--x264-params K=V:...]
"""

import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pydicom
from PIL import Image
from pydicom.errors import InvalidDicomError


def first(value):
    """The first of a multi-valued element, or the value itself."""
    if isinstance(value, pydicom.multival.MultiValue):
        return value[0]
    return value


def to_unit_range(ds, arr):
    """Rescale then window `arr` into 0..1, in float64."""
    slope = float(ds.get("RescaleSlope", 1))
    intercept = float(ds.get("RescaleIntercept", 0))
    arr = arr * slope + intercept
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center = float(first(ds.WindowCenter))
        width = float(first(ds.WindowWidth))
        low, high = center - width / 2, center + width / 2
    else:
        low, high = float(arr.min()), float(arr.max())
    arr = (arr - low) / max(high - low, 1e-9)
    arr = np.clip(arr, 0.0, 1.0)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        arr = 1.0 - arr
    return arr


def frame_rate(ds):
    if "FrameTime" in ds and float(ds.FrameTime) > 0:
        return Fraction(1000 / float(ds.FrameTime)).limit_denominator(1001)
    if "CineRate" in ds:
        return Fraction(int(ds.CineRate))
    return Fraction(10)


def save_png16(arr, path):
    image = Image.fromarray(np.round(arr * 65535).astype(np.uint16))
    image.save(path)


def save_gif(frames, path, rate):
    images = [Image.fromarray(frame) for frame in frames]
    duration = round(1000 / float(rate))
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)


def save_mp4(frames, path, rate, x264):
    container = av.open(str(path), mode="w")
    stream = container.add_stream("libx264", rate=rate)
    stream.height, stream.width = frames.shape[1], frames.shape[2]
    stream.pix_fmt = "yuv420p"
    stream.options = x264
    for frame in frames:
        video_frame = av.VideoFrame.from_ndarray(frame, format="gray")
        for packet in stream.encode(video_frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def convert(path, out_dir, x264):
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        print(f"skipped (not DICOM): {path}")
        return
    stem = out_dir / path.name.removesuffix(".dcm")
    arr = ds.pixel_array
    arr = to_unit_range(ds, arr)
    frames = int(ds.get("NumberOfFrames", 1))
    if frames == 1:
        save_png16(arr, stem.with_suffix(".png"))
    else:
        frames8 = np.round(arr * 255).astype(np.uint8)
        rate = frame_rate(ds)
        save_gif(frames8, stem.with_suffix(".gif"), rate)
        save_mp4(frames8, stem.with_suffix(".mp4"), rate, x264)
    stem.with_suffix(".txt").write_text(str(ds), encoding="utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="a DICOM file or a folder of them")
    parser.add_argument("-o", "--output", default="output_plain")
    parser.add_argument("--crf", default="18")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--tune", help="x264 tune (default none)")
    parser.add_argument("--x264-params", help="x264 options (default none)")
    args = parser.parse_args()
    x264 = {"crf": args.crf, "preset": args.preset}
    if args.tune:
        x264["tune"] = args.tune
    if args.x264_params:
        x264["x264-params"] = args.x264_params

    source = Path(args.input)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    for path in files:
        convert(path, out_dir, x264)


if __name__ == "__main__":
    main()
