#!/usr/bin/env python3
"""Where a worker's time goes on one CT slice (#27): `convert_file` on copies of one slice, in
one process, each stage's CPU time and page faults per slice.

    python3 bench/worker_stages.py [--repo CHECKOUT] [--copies 300] [--passes 3] [--out DIR]

The stages are timed by wrapping the functions `convert._convert` calls (so the numbers add up
to its time): reading the dataset, rendering (decoding and the display LUT: what `write_image`
spends beside the PNG and the thumbnail), the PNG, the thumbnail, the .txt's text, the index
record, and the rest (staging, renaming, classification, checks).  Outputs go to --out
(default: a folder in /dev/shm where there is one, so that the file system's own cost, which
varies a lot between machines, stays out).  The best of --passes passes over the copies is
shown.  --repo measures another checkout (a `git worktree` of an older commit) for a before
and after; a stage the checkout does not have is left out.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (module, function, stage): the functions wrapped, by the name `_convert` and the writers look them up
STAGES = [
    ("convert", "read_dataset", "read the dataset"),
    ("kinds.images", "write_image", "image (render + PNG + thumbnail)"),
    ("job", "write_png", "PNG"),
    ("job", "write_thumbnail", "thumbnail"),
    ("convert", "metadata_text", ".txt text (summary and dump)"),
    ("convert", "write_text", ".txt write"),
    ("convert", "index_record", "index record"),
    ("convert", "_convert", "whole conversion"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    parser.add_argument("--copies", type=int, default=300)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--out", type=Path, help="where the outputs go (default: a temporary folder, in RAM if possible)")
    args = parser.parse_args()
    sys.path.insert(0, str(args.repo.resolve()))
    import importlib

    from pydicom.data import get_testdata_file

    convert = importlib.import_module("_dicom_converter.convert")
    options_class = importlib.import_module("_dicom_converter.base").Options
    seconds: collections.Counter = collections.Counter()
    faults: collections.Counter = collections.Counter()

    def wrapped(function, stage):
        @functools.wraps(function)
        def measured(*a, **k):
            start, faulted = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            try:
                return function(*a, **k)
            finally:
                seconds[stage] += time.process_time() - start
                faults[stage] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faulted
        return measured

    for module_name, name, stage in STAGES:
        module = importlib.import_module(f"_dicom_converter.{module_name}")
        if hasattr(module, name):
            setattr(module, name, wrapped(getattr(module, name), stage))
    convert.WRITERS["image"] = importlib.import_module("_dicom_converter.kinds.images").write_image

    source = Path(get_testdata_file("693_UNCR.dcm", download=False))
    base = args.out or Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        inputs, out = base / "in", base / "out"
        inputs.mkdir(parents=True, exist_ok=True)
        files = []
        for n in range(args.copies):
            files.append(inputs / f"ct{n:04d}.dcm")
            shutil.copy(source, files[-1])
        options = options_class(thumbnails=out / ".thumbs")
        for path in files[:5]:  # first use: imports, the display LUT, buffers
            convert.convert_file(path, out / path.stem, options)
        best = None
        for _ in range(args.passes):
            shutil.rmtree(out, ignore_errors=True)
            seconds.clear()
            faults.clear()
            for path in files:
                convert.convert_file(path, out / path.stem, options)
            if best is None or seconds["whole conversion"] < best[0]["whole conversion"]:
                best = (collections.Counter(seconds), collections.Counter(faults))
    finally:
        if args.out is None:
            shutil.rmtree(base, ignore_errors=True)
    spent, faulted = best
    count = len(files)
    image = spent.pop("image (render + PNG + thumbnail)", 0)
    image_faults = faulted.pop("image (render + PNG + thumbnail)", 0)
    rows = dict(spent)
    rows["render (decode, display LUT)"] = image - spent["PNG"] - spent.get("thumbnail", 0)
    whole = rows.pop("whole conversion")
    rows["rest (staging, checks, kind)"] = whole - sum(rows.values())
    faulted["render (decode, display LUT)"] = image_faults - faulted["PNG"] - faulted.get("thumbnail", 0)
    print(f"{args.repo.resolve().name}: {whole / count * 1e3:.2f} ms and "
          f"{faulted['whole conversion'] / count:.0f} page faults per 512^2 slice (best of {args.passes} passes "
          f"over {count})\n")
    print("| stage | ms per slice | page faults per slice |\n|---|---:|---:|")
    for stage, value in sorted(rows.items(), key=lambda item: -item[1]):
        print(f"| {stage} | {value / count * 1e3:.2f} | {faulted.get(stage, 0) / count:.0f} |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.exit(main())
