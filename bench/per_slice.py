#!/usr/bin/env python3
"""What each further CT slice costs (#27): ours against the floor (bench/floor.py), side by side.

    python3 bench/per_slice.py [--repeat 3] [--small 100] [--large 300]

Copies of one real 512^2 CT slice (pydicom-data's 693_UNCR.dcm), converted by each tool under
`perf stat -e task-clock,page-faults` (a pool's workers included: perf follows children);
ours with its default options and `-j 1`.  The marginal cost is the difference between the
large and the small run divided by the difference in slices, medians of `--repeat` runs, so
start-up (interpreter, imports, the pool) drops out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def counted(command: list[str]) -> tuple[float, float]:
    """(CPU ms, page faults) of `command` and its children."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    run = subprocess.run(["perf", "stat", "-x,", "-e", "task-clock,page-faults", *command], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    values = {}
    for line in run.stderr.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[2] in ("task-clock", "page-faults"):
            values[parts[2]] = float(parts[0])
    return values["task-clock"], values["page-faults"]


def main() -> int:
    from pydicom.data import get_testdata_file

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=300)
    args = parser.parse_args()
    source = Path(get_testdata_file("693_UNCR.dcm", download=False))
    tools = {
        "ours (default options, -j 1)": lambda i, o: [sys.executable, str(ROOT / "dicom_converter.py"), str(i),
                                                      "-o", str(o), "-q", "-j", "1"],
        "floor (read, decode, LUT, PNG, .txt)": lambda i, o: [sys.executable, str(ROOT / "bench" / "floor.py"),
                                                              str(i), "-o", str(o)],
        "floor without the .txt": lambda i, o: [sys.executable, str(ROOT / "bench" / "floor.py"), str(i),
                                                "-o", str(o), "--no-txt"],
    }
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        for count in (args.small, args.large):
            folder = work / f"in{count}"
            folder.mkdir()
            for n in range(count):
                shutil.copy(source, folder / f"ct{n:04d}.dcm")
        samples: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for _ in range(args.repeat):
            for name, command in tools.items():
                for count in (args.small, args.large):
                    out = work / "out"
                    shutil.rmtree(out, ignore_errors=True)
                    samples.setdefault((name, count), []).append(counted(command(work / f"in{count}", out)))
    slices = args.large - args.small
    print(f"| per further 512^2 CT slice, medians of {args.repeat} | CPU | page faults |")
    print("|---|---|---|")

    for name in tools:
        cpu = statistics.median(b[0] - a[0] for a, b in zip(samples[(name, args.small)], samples[(name, args.large)]))
        faults = statistics.median(b[1] - a[1] for a, b in zip(samples[(name, args.small)],
                                                               samples[(name, args.large)]))
        print(f"| {name} | {cpu / slices:.2f} ms | {faults / slices:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
