#!/usr/bin/env python3
"""DICOM video: the cost of copying a stream into an MP4 against decoding and re-encoding it.

Builds a 1920 x 1080, 300-frame clip (FFmpeg's testsrc2 pattern, through PyAV) as a bare
H.264 stream, as an MP4, and as MPEG-2, each wrapped as a Video Endoscopic Image, then times
``dicom_converter.py --no-gif`` on each (best of --repeat runs, wall time of the whole process):

- H.264 in an MP4: the packets copied, only the poster frame decoded;
- bare H.264: copied too, but every frame decoded once, since a bare stream carries no
  timestamps and display order is only known from the decoder;
- MPEG-2: decoded and re-encoded with x264, which is what any copy saves.

    python3 bench/video.py [--frames 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid

HERE = Path(__file__).resolve().parent
SYNTAXES = {"h264": "1.2.840.10008.1.2.4.102", "mpeg2video": "1.2.840.10008.1.2.4.101"}


def clip(codec: str, container_format: str, frames: int) -> bytes:
    """`frames` of testsrc2 at 30 fps, 1080p, encoded with `codec` into `container_format`."""
    buffer = io.BytesIO()
    with av.open(f"testsrc2=size=1920x1080:rate=30:duration={frames / 30}", format="lavfi") as pattern, \
            av.open(buffer, "w", format=container_format) as out:
        stream = out.add_stream("libx264" if codec == "h264" else codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        if codec == "h264":
            stream.options = {"preset": "veryfast", "bf": "2"}
        else:
            stream.codec_context.bit_rate, stream.codec_context.max_b_frames = 20_000_000, 2
        for frame in pattern.decode(video=0):
            frame.pts = None
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode())
    return buffer.getvalue()


def video_dicom(path: Path, data: bytes, syntax: str, frames: int) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality, ds.Rows, ds.Columns, ds.NumberOfFrames = "ES", 1080, 1920, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_PARTIAL_420", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([data])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def best_time(source: Path, work: Path, repeat: int) -> float:
    times = []
    for n in range(repeat):
        out = work / f"out-{source.stem}-{n}"
        start = time.perf_counter()
        subprocess.run([sys.executable, str(HERE.parent / "dicom_converter.py"), str(source), "-o", str(out),
                        "--no-gif"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        inputs = {
            "H.264 in an MP4: copied, poster decoded": ("h264", "mp4"),
            "bare H.264: copied, every frame decoded for display order": ("h264", "h264"),
            "MPEG-2: decoded and re-encoded with x264": ("mpeg2video", "mpeg2video"),
        }
        print(f"| {args.frames} frames, 1920 x 1080, `--no-gif` | seconds (best of {args.repeat}) |\n|---|---|")
        for n, (label, (codec, container_format)) in enumerate(inputs.items()):
            source = video_dicom(work / f"v{n}.dcm", clip(codec, container_format, args.frames),
                                 SYNTAXES[codec], args.frames)
            print(f"| {label} | {best_time(source, work, args.repeat):.2f} |", flush=True)


if __name__ == "__main__":
    main()
