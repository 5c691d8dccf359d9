#!/usr/bin/env python3
"""The "seed" yardstick for bench/run.py: the repository's first commit, run as it was.

The seed is commit d6e8119, dicom_converter.py's first version.  Its code
still runs on these inputs with today's requirements, so this runs that code
itself, taken from git, rather than a re-implementation of it:

- single frame (the CT slices): the display pipeline as one LUT, a 16-bit
  PNG through Pillow (compress_level 6) and a .txt (summary + full dump);
- multi-frame (the XA run): every frame rendered to 8 bits, encoded as it is
  decoded into an H.264 MP4 through PyAV (libx264, preset medium, crf 18,
  High profile, yuv420p) while all of them are kept for a full-size Pillow
  GIF written at the end (``save_all``, ``optimize=False``), and the .txt;
- one process, one file after another; JPEG decoded by pydicom's own plugins
  (pylibjpeg).

``--opencv`` runs the same seed code with its MP4 writer swapped for OpenCV's
``cv2.VideoWriter`` with fourcc ``mp4v`` (MPEG-4 Part 2, OpenCV's defaults),
the design issue #18 describes for the seed; everything else (decode, LUT,
GIF, .txt) is the seed's own.  It needs ``pip install opencv-python-headless``.

    python3 bench/seed.py INPUT -o OUTPUT            # the seed's code, as committed
    python3 bench/seed.py --opencv INPUT -o OUTPUT   # ... with an OpenCV mp4v MP4
    python3 bench/seed.py --prepare                  # extract it only; exit 1 if it can't be

The code is read with ``git show d6e8119:dicom_converter.py`` from this
repository once and kept in ``--cache`` (default: the temp folder).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEED_COMMIT = "d6e8119e565d5f99065d6df07b5b26ecf2ddd91a"
SEED_PATH = "dicom_converter.py"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "dicom_converter_seed"


def seed_source(cache: Path) -> Path:
    """The seed's dicom_converter.py, extracted from git into `cache` (once)."""
    target = cache / f"seed_{SEED_COMMIT[:7]}.py"
    if target.exists():
        return target
    try:
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{SEED_COMMIT}:{SEED_PATH}"],
                              capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.decode(errors="replace").strip() if hasattr(exc, "stderr") and exc.stderr else exc
        raise SystemExit(f"seed: cannot read {SEED_COMMIT[:7]}:{SEED_PATH} from git in {REPO} "
                         f"(a shallow clone or an exported tree?): {detail}") from None
    cache.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}")
    temp.write_bytes(text)
    os.replace(temp, target)
    return target


def load_seed(path: Path):
    """The seed's module, imported under a name of its own (not run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("seed_dicom_converter", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def opencv_write_mp4(frames, path: Path, rate, crf: int) -> int:
    """The seed's `write_mp4` contract, written with cv2.VideoWriter (fourcc mp4v).

    OpenCV picks the container by the file's extension, and the seed stages
    outputs as ``.NAME.PID.part``: the video is written as ``PATH.mp4`` and
    renamed to `path`.  Grey frames go in as grey (``isColor=False``), colour
    as BGR.  `crf` has no meaning for OpenCV's writer (its quality is FFmpeg's
    default for mpeg4) and is ignored.
    """
    import cv2

    temp = path.with_name(path.name + ".mp4")
    writer = None
    count = 0
    try:
        for frame in frames:
            if writer is None:
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(str(temp), cv2.VideoWriter_fourcc(*"mp4v"), float(rate),
                                         (width, height), isColor=frame.ndim == 3)
                if not writer.isOpened():
                    raise OSError(f"cv2.VideoWriter could not open {temp}")
            writer.write(frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            count += 1
    finally:
        if writer is not None:
            writer.release()
    if count:
        os.replace(temp, path)
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opencv", action="store_true", help="MP4 through cv2.VideoWriter (mp4v)")
    parser.add_argument("--prepare", action="store_true", help="only extract the seed's code (and check cv2 "
                        "with --opencv); exit status 1 if that fails")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the seed's code is kept")
    args, seed_args = parser.parse_known_args()
    try:
        source = seed_source(args.cache)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.opencv:
        try:
            import cv2  # noqa: F401
        except ImportError:
            print("seed: --opencv needs OpenCV (pip install opencv-python-headless)", file=sys.stderr)
            return 1
    if args.prepare:
        print(source)
        return 0
    seed = load_seed(source)
    if args.opencv:
        seed.write_mp4 = opencv_write_mp4
    return seed.main(seed_args)


if __name__ == "__main__":
    sys.exit(main())
