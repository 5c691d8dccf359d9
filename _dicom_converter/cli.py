"""The command line: options, their checks, and `main`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
from fractions import Fraction
from pathlib import Path

from _dicom_converter.base import (
    DEFAULT_CRF,
    DEFAULT_GIF_MAX_SIZE,
    DEFAULT_INPUT,
    DEFAULT_OUTPUT,
    Batch,
    Options,
    Unsupported,
    __version__,
)
from _dicom_converter.batch import run_batch
from _dicom_converter.kinds.video import TRANSCODED_SUFFIX
from _dicom_converter.layout import LAYOUTS
from _dicom_converter.manifest import merge_shards, shard_secret
from _dicom_converter.pool import default_jobs
from _dicom_converter.writers import THUMBS_FOLDER


def positive_fps(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


DESCRIPTION = """\
Convert everything on a DICOM disc or folder into files anyone can open, following the DICOM
display pipeline.  What each kind of object becomes (STEM: the input's name):

  images (CT, MR, CR, DX, US, secondary capture ...)      STEM.png (16-bit grey unless --8bit)
  cines (multi-frame ultrasound, angiography ...)         STEM.gif + STEM.mp4
  volumes, segmentations, RT dose (frames as slices)      STEM.png contact sheet + STEM.gif + STEM.mp4
  whole-slide images                                      STEM.png (the tiles stitched)
  DICOM video (H.264, HEVC, MPEG-2)                       STEM.mp4 (its own stream) + STEM.png poster
  encapsulated PDF, CDA, STL, OBJ, MTL                    the document itself: STEM.pdf, .xml, .stl ...
  structured reports (SR, key objects, dose reports)      STEM.html
  waveforms (ECG, pressure, EEG ...)                      STEM.png on ECG paper / strips + STEM.csv
  audio (Basic Voice, General Audio)                      STEM.wav
  no pixels (RT plans ...)                                STEM.txt only ("metadata only")

Every DICOM file also gets STEM.txt (a summary and every element), and the run
OUTPUT/manifest.csv and OUTPUT/index.html (a page to browse everything converted).
Files are recognised by content, not by name; the input is only read."""

EPILOG = """\
exit status:
  0    every DICOM file converted
  1    some files failed, no DICOM file found in the input, or OUTPUT cannot be written
  2    usage error (a bad option, a missing input, -o naming a file)
  130  interrupted (Ctrl-C or SIGTERM): no partial file is left; --skip-existing goes on

Run again into the same OUTPUT (even the input folder itself): the outputs listed in its
manifest.csv are never taken for inputs, so the same files get the same names, never _2 copies.

examples:
  a hospital CD, everything into one folder with a page to browse:
    %(prog)s /media/cdrom -o ~/scans
  for sharing: no names, IDs, dates or burned-in text in any output:
    %(prog)s ~/scans/CD1 --redact -o ~/to_share
  on a cluster, share 3 of 16 (one Slurm array task each) into one shared folder:
    %(prog)s /data/archive -o /shared/out --shard 3/16 -q
  a single file:
    %(prog)s IM000001.dcm -o ."""


class VersionAction(argparse.Action):
    """``--version``, looked up only when asked: reading the package metadata takes ~20 ms,
    a quarter of ``--help``, which every run would otherwise pay."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog} {program_version()}")
        parser.exit()


def program_version() -> str:
    """The version an installed copy's metadata gives, else this checkout's (`__version__`)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("dicom-converter")
    except importlib.metadata.PackageNotFoundError:
        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=VersionAction, help="show the version and exit")
    parser.add_argument("input_path", nargs="?", default=DEFAULT_INPUT,
                        help=f"DICOM file or directory, walked recursively (default: {DEFAULT_INPUT})")
    parser.add_argument("-o", "--output", default=DEFAULT_OUTPUT,
                        help=f"output directory (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--layout", choices=LAYOUTS, default="mirror",
                        help="mirror: the input's folders (default); study: PATIENT/STUDY/SERIES/ named from "
                        "each file's values, e.g. 'DOE, Jane (123)/2024-01-15 CT HEAD/003 AXIAL/0007.png' "
                        "('Patient 1/Study 1 CT/003 CT/0007.png' with --redact)")

    image = parser.add_argument_group("image")
    image.add_argument("--8bit", dest="eight_bit", action="store_true",
                       help="8-bit output (default is 16-bit PNG for full precision)")
    image.add_argument("--window", nargs=2, type=float, metavar=("CENTER", "WIDTH"),
                       help="VOI window in modality units (e.g. --window 40 400 for CT soft tissue); "
                       "overrides the file's window")

    cine = parser.add_argument_group("cine loops (multi-frame files)")
    cine.add_argument("--no-mp4", action="store_true", help="no MP4 for multi-frame files (GIF only)")
    cine.add_argument("--no-gif", action="store_true", help="no GIF for multi-frame files (MP4 only)")
    cine.add_argument("--fps", type=positive_fps, default=None,
                      help="frames per second for GIF and MP4 (default: the file's own rate, else 10)")
    cine.add_argument("--crf", type=int, default=DEFAULT_CRF, choices=range(0, 52), metavar="0-51",
                      help=f"H.264 quality: lower is better and larger (default {DEFAULT_CRF}: "
                      "worst frame 40.7 dB PSNR or better on the grey test clips, visually lossless; each +6 roughly halves the size)")
    cine.add_argument("--no-transcode", action="store_true",
                      help="HEVC videos: only the stream copied into STEM.mp4 (Safari, Edge), not also re-encoded "
                      f"to H.264 in STEM{TRANSCODED_SUFFIX} for Chrome and Firefox")
    cine.add_argument("--gif-max-size", type=int, default=DEFAULT_GIF_MAX_SIZE, metavar="PIXELS",
                      help="scale GIF frames down so the longer side is at most PIXELS "
                      f"(default {DEFAULT_GIF_MAX_SIZE}; 0 keeps full size); PNG and MP4 keep full size")

    extras = parser.add_argument_group("more outputs")
    extras.add_argument("--series", action="store_true",
                        help="also join the single-frame images of each series (CT/MR slices) into one "
                        "GIF + MP4, ordered along the slice normal, named SERIESNUMBER_DESCRIPTION")
    extras.add_argument("--no-png", action="store_true",
                        help="no PNG per single-frame image (with --series: only the series cines)")
    extras.add_argument("--frames", action="store_true",
                        help="for multi-frame files also write every frame as STEM_frames/0001.png … "
                        "(16-bit unless --8bit)")
    extras.add_argument("--json", action="store_true",
                        help="also write STEM.json: the DICOM JSON Model (PS3.18 F.2), bulk data left out")
    extras.add_argument("--no-index", action="store_true",
                        help="do not write OUTPUT/index.html (a page to browse everything converted)")
    extras.add_argument("--redact", action="store_true",
                        help="for sharing, under the DICOM basic de-identification profile (PS3.15 "
                        "Table E.1-1): names, IDs, dates, institutions, free text and private tags are left "
                        "out of every output, UIDs replaced, output names never contain them, and "
                        "burned-in text is blanked; an image whose text no rule locates is withheld")
    extras.add_argument("--redact-pixels", choices=("blank", "keep"), default=None,
                        help="with --redact: blank burned-in text and withhold what no rule covers "
                        "(default), or keep the pixels as they are (you have checked the images)")

    batch = parser.add_argument_group("batch")
    batch.add_argument("-j", "--jobs", type=int, default=default_jobs(), metavar="N",
                       help="files converted at once (default: the number of cores this process may use, "
                       "at most 61 on Windows)")
    batch.add_argument("--max-memory", type=megabytes, default=None, metavar="MB",
                       help="refuse files whose declared pixel data exceeds MB megabytes "
                       "(default: the memory available when the run starts)")
    batch.add_argument("--skip-existing", action="store_true",
                       help="skip files whose outputs are all present and newer than the input "
                       "(to resume an interrupted batch)")
    batch.add_argument("--shard", type=shard_spec, default=None, metavar="K/N",
                       help="convert only share K of N (by folder), for N runs on N machines into one shared "
                       "OUTPUT; each writes OUTPUT/.shards/part-K-of-N.jsonl and the last to finish writes "
                       "manifest.csv and index.html (see the README for Slurm, Kubernetes and GNU parallel)")
    batch.add_argument("--merge-shards", type=int, default=None, metavar="N",
                       help="only join the parts of N shards in OUTPUT into manifest.csv and index.html")
    batch.add_argument("-q", "--quiet", action="store_true",
                       help="print only failures and the summary")
    return parser


def shard_spec(text: str) -> tuple[int, int]:
    """``K/N`` with 1 <= K <= N."""
    share, _, count = text.partition("/")
    if not (share.isdigit() and count.isdigit() and 1 <= int(share) <= int(count)):
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N, got {text!r}")
    return int(share), int(count)


def megabytes(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return int(value * 1024 * 1024)


def available_memory() -> int:
    """Bytes of memory available now, as the platform counts it (psutil)."""
    import psutil

    return psutil.virtual_memory().available


def run(argv: list[str] | None = None) -> int:
    """`main` as the whole life of a process: the script, ``python3 -m dicom_converter`` and the
    ``dicom-converter`` command."""
    import gc

    # numpy's OpenBLAS starts a thread per core when it loads (0.05 s of CPU in every process
    # that imports numpy), for linear algebra the converter never does.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    status = main(argv)
    # All that is left is the interpreter's exit, whose last garbage collection walks every
    # object numpy and pydicom made (50-70 ms, a tenth of converting 100 CT slices); every
    # file is closed and every worker joined by now, so nothing waits on those objects.
    gc.freeze()
    return status


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    input_path, output = Path(args.input_path), Path(args.output)
    if args.no_mp4 and args.no_gif:
        parser.error("--no-mp4 and --no-gif together leave nothing to write for multi-frame files")
    if args.window is not None and args.window[1] <= 0:
        parser.error("--window WIDTH must be greater than 0")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.redact_pixels and not args.redact:
        parser.error("--redact-pixels only applies with --redact")
    if args.merge_shards is not None and args.merge_shards < 1:
        parser.error("--merge-shards N needs N >= 1")
    if not input_path.exists() and args.merge_shards is None:  # a merge reads only OUTPUT
        parser.error(f"input path does not exist: {input_path}")
    if output.exists() and not output.is_dir():
        parser.error(f"-o {output} is a file; OUTPUT must be a folder (it is created if missing)")
    options = Options(
        eight_bit=args.eight_bit,
        write_gif=not args.no_gif,
        write_mp4=not args.no_mp4,
        transcode=not args.no_transcode,
        fps=args.fps,
        window=tuple(args.window) if args.window else None,
        crf=args.crf,
        gif_max_size=args.gif_max_size or None,
        max_memory=args.max_memory or available_memory(),
        write_png=not args.no_png,
        frame_pngs=args.frames,
        write_json=args.json,
        redact_salt=secrets.token_hex(16) if args.redact else None,
        redact_pixels=args.redact_pixels or "blank",
        thumbnails=None if args.no_index else output.resolve() / THUMBS_FOLDER,
    )
    for stream in (sys.stdout, sys.stderr):  # file names may not be valid in the locale
        stream.reconfigure(errors="backslashreplace")
    try:
        output.mkdir(parents=True, exist_ok=True)
        if not os.access(output, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        print(f"error: cannot write to output directory {output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.shard and args.redact:  # the shards must replace UIDs alike
        try:
            options = dataclasses.replace(options, redact_salt=shard_secret(output.resolve(), args.shard))
        except (Unsupported, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    try:
        if args.merge_shards:
            return merge_shards(output, args.merge_shards)
        batch = Batch(jobs=args.jobs, quiet=args.quiet, skip_existing=args.skip_existing, series=args.series,
                      index=not args.no_index, shard=args.shard, layout=args.layout)
        return run_batch(input_path, output, options, batch)
    except BrokenPipeError:  # `... | head`: the reader left; stop quietly like other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
