#!/usr/bin/env python3
"""Do two versions of the converter write the same bytes?  The check for a move of code.

    python3 bench/same_outputs.py [--base REV] [--work DIR]

converts the same inputs with the option sets the tests use, once with the converter at
git revision REV (default HEAD, checked out into a temporary worktree) and once with the
working tree, and compares every output byte for byte (index.html, manifest.csv and the
thumbnails included), plus each run's console lines (sorted, timings masked) and exit
status.  Prints each difference and exits 1 if there is any.

Inputs: `dicom_data/`, pydicom's own test files and `tests/data/`.  Option sets: default,
``--8bit``, ``--frames --json --series`` and ``--redact``.  ``--redact`` draws a random
secret for its UID stand-ins each run; both sides run with that secret (the one 16-byte
``secrets.token_hex``) fixed, so their stand-ins agree.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPTION_SETS = {"default": [], "8bit": ["--8bit"], "frames-json-series": ["--frames", "--json", "--series"],
               "redact": ["--redact"]}

# Runs the converter's own entry point as a user would (`python3 dicom_converter.py ...`),
# with the --redact secret fixed (fork is Linux's default start method, so workers share it).
DRIVER = ("import runpy, secrets, sys\n"
          "random_hex = secrets.token_hex  # temporary names stay random: they are created exclusively\n"
          "secrets.token_hex = lambda n=32: '5a' * n if n == 16 else random_hex(n)\n"
          "script = sys.argv.pop(1)\n"
          "sys.argv[0] = script\n"
          "runpy.run_path(script, run_name='__main__')\n")


def input_sets(repo: Path) -> dict[str, Path]:
    import pydicom

    return {"dicom_data": repo / "dicom_data", "pydicom": Path(pydicom.__file__).parent / "data" / "test_files",
            "tests_data": repo / "tests" / "data"}


def masked(text: str, output: Path) -> list[str]:
    """Console lines that should not differ between versions: the output folder's path
    replaced and elapsed times masked, sorted (workers finish in any order)."""
    text = text.replace(str(output), "OUTPUT")
    text = re.sub(r"\d+(\.\d+)? ?(s|ms|min)\b", "T", text)
    return sorted(text.splitlines())


def snapshot(repo: Path, inputs: dict[str, Path], work: Path) -> dict[str, tuple[int, list[str]]]:
    """Convert every input set with every option set using `repo`'s converter, into `work`."""
    console = {}
    for input_name, folder in inputs.items():
        for option_name, options in OPTION_SETS.items():
            output = work / f"{input_name}.{option_name}"
            run = subprocess.run([sys.executable, "-c", DRIVER, str(repo / "dicom_converter.py"), str(folder),
                                  "-o", str(output), *options], capture_output=True, text=True, cwd=repo,
                                 env={**os.environ, "PYTHONHASHSEED": "0"})
            console[output.name] = (run.returncode, masked(run.stdout + run.stderr, output))
    return console


def tree_differences(a: Path, b: Path) -> list[str]:
    """Files only on one side or with different bytes, as relative paths."""
    differences = []
    names_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    names_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    differences += [f"only before: {n}" for n in sorted(names_a - names_b)]
    differences += [f"only after: {n}" for n in sorted(names_b - names_a)]
    for name in sorted(names_a & names_b):
        if not filecmp.cmp(a / name, b / name, shallow=False):
            differences.append(f"bytes differ: {name}")
    return differences


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD", help="git revision to compare against (default HEAD)")
    parser.add_argument("--work", type=Path, help="keep the trees here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        work = args.work or Path(temporary)
        base = work / "base-checkout"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(base), args.base],
                       check=True, capture_output=True)
        try:
            inputs = input_sets(ROOT)  # the same input files for both sides
            before = snapshot(base, inputs, work / "before")
            after = snapshot(ROOT, inputs, work / "after")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
        problems = []
        for name in sorted(before):
            if before[name][0] != after[name][0]:
                problems.append(f"{name}: exit status {before[name][0]} before, {after[name][0]} after")
            if before[name][1] != after[name][1]:
                lines_a, lines_b = set(before[name][1]), set(after[name][1])
                problems += [f"{name}: console before only: {line}" for line in sorted(lines_a - lines_b)]
                problems += [f"{name}: console after only: {line}" for line in sorted(lines_b - lines_a)]
            problems += [f"{name}: {d}" for d in tree_differences(work / "before" / name, work / "after" / name)]
        files = sum(1 for _ in (work / "after").rglob("*") if _.is_file())
        for problem in problems:
            print(problem)
        print(f"{len(before)} runs, {files} output files compared with {args.base}: "
              f"{'the same' if not problems else f'{len(problems)} differences'}")
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
