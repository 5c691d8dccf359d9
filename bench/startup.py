#!/usr/bin/env python3
"""What a run costs before it converts anything: this checkout against an earlier commit.

    python3 bench/startup.py --base REV [--repeat N]

Times, as medians of N wall-clock runs (alternating the two versions, so that a busy
moment costs both alike), `python3 dicom_converter.py --help`, one 512^2 CT file, 100
copies of it (default options, -j 2), and the start of one worker process under spawn
(the default start method on Windows and macOS): one CT file with -j 1 under spawn, less
the same under fork.  Bytecode caches are warm: PYTHONDONTWRITEBYTECODE is removed from
the environment and each command runs once before it is timed.  A script run as
`python3 file.py` is compiled from source every time, however warm the cache; a package's
modules are not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CT_SLICE = ROOT / "dicom_data" / "DCM00000"  # 512x512 CT head phantom


def timed(command: list[str], env: dict, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="git revision to compare with")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        base = work / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(base), args.base],
                       check=True, capture_output=True)
        try:
            one, hundred = work / "one", work / "hundred"
            one.mkdir()
            hundred.mkdir()
            shutil.copy(CT_SLICE, one / "ct.dcm")
            for n in range(100):
                shutil.copy(CT_SLICE, hundred / f"ct{n:03d}.dcm")
            cases = {
                "--help": (["--help"], {}),
                "one CT file": ([str(one), "-o", str(work / "out"), "-q"], {}),
                "100 CT files (-j 2)": ([str(hundred), "-o", str(work / "out"), "-q", "-j", "2"], {}),
                "one CT file, -j 1, spawn": ([str(one), "-o", str(work / "out"), "-q", "-j", "1"],
                                             {"DICOM_CONVERTER_START_METHOD": "spawn"}),
                "one CT file, -j 1, fork": ([str(one), "-o", str(work / "out"), "-q", "-j", "1"],
                                            {"DICOM_CONVERTER_START_METHOD": "fork"}),
            }
            versions = {args.base: base, "this checkout": ROOT}
            samples: dict[tuple[str, str], list[float]] = {}
            for case, (options, extra) in cases.items():
                for version, folder in versions.items():
                    command = [sys.executable, str(folder / "dicom_converter.py"), *options]
                    shutil.rmtree(work / "out", ignore_errors=True)
                    timed(command, {**env, **extra}, work)  # warms the bytecode cache
                for _ in range(args.repeat):
                    for version, folder in versions.items():
                        command = [sys.executable, str(folder / "dicom_converter.py"), *options]
                        shutil.rmtree(work / "out", ignore_errors=True)
                        samples.setdefault((case, version), []).append(timed(command, {**env, **extra}, work))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
    medians = {key: statistics.median(values) for key, values in samples.items()}
    for version in versions:
        medians[("spawned worker's start (spawn - fork)", version)] = (
            medians[("one CT file, -j 1, spawn", version)] - medians[("one CT file, -j 1, fork", version)])
    names = list(versions)
    print(f"| wall time, median of {args.repeat} | {names[0]} | {names[1]} |")
    print("|---|---|---|")
    for case in [*cases, "spawned worker's start (spawn - fork)"]:
        print(f"| {case} | {medians[(case, names[0])] * 1000:.0f} ms | {medians[(case, names[1])] * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
