"""Series: the single-slice files of a series as one cine (--series), in slice order.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from _dicom_converter.base import DEFAULT_FPS, CorruptFile, Skipped
from _dicom_converter.convert import _caught
from _dicom_converter.dump import text_of
from _dicom_converter.geometry import along_normal
from _dicom_converter.inputs import name_key, output_stem
from _dicom_converter.job import write_cine
from _dicom_converter.pixels.decode import decode_frames
from _dicom_converter.pixels.display import (
    Voi,
    choose_voi,
    clip_stored_range,
    is_colour,
    render_colour,
    render_grayscale,
)
from _dicom_converter.reading import read_dataset
from _dicom_converter.redaction import as_shown, blank_mask, blanked, patient_stand_in, pixel_plan
from _dicom_converter.results import Result
from _dicom_converter.text import index_record
from _dicom_converter.timing import _constant_timing
from _dicom_converter.writers import staged_outputs, write_text

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from _dicom_converter.base import Options
    from _dicom_converter.timing import Timing


def series_groups(results: list[Result]) -> list[list[Result]]:
    """Single-frame images grouped by series, orientation and size, in slice order.

    A CT or MR study on a CD is one file per slice.  Slices of one Series
    Instance UID are split where the orientation or image size changes (a
    scout among axial slices); multi-frame files are never mixed in.
    """
    groups: dict[tuple, list[Result]] = {}
    for result in results:
        record = result.record
        if result.status != "converted" or record.get("kind") != "image" or not record.get("series_uid"):
            continue
        orientation = record.get("orientation")
        orientation = tuple(round(v, 3) for v in orientation) if orientation and len(orientation) == 6 else None
        key = (record["series_uid"], orientation, record["rows"], record["columns"])
        groups.setdefault(key, []).append(result)
    return [sorted(group, key=slice_order) for group in groups.values() if len(group) > 1]


def slice_order(result: Result) -> tuple:
    """Position along the slice normal (Image Position · (row × column cosines), PS3.3
    C.7.6.2.1.1), else Instance Number, else file name."""
    record = result.record
    along = along_normal(record.get("position"), record.get("orientation"))
    if along is not None:
        return (0, along, result.source.name)
    instance = record.get("instance", "")
    if str(instance).lstrip("-").isdigit():
        return (1, int(instance), result.source.name)
    return (2, 0, result.source.name)


def series_stem(group: list[Result], taken: set[str]) -> Path:
    """``OUTPUT/<folder of the first slice>/<SeriesNumber>_<description>``, portable and unique."""
    import re

    record = group[0].record
    number = record.get("series_number") or "0"
    description = record.get("series_description") or "series"
    name = re.sub(r"[^\w.-]+", "_", f"{number}_{description}", flags=re.UNICODE).strip("._") or "series"
    folder = group[0].outputs[-1].parent  # where the first slice's outputs went (names redacted if asked)
    candidate, n = output_stem(name), 1
    while name_key(folder / candidate) in taken:
        n += 1
        candidate = f"{output_stem(name)}_{n}"
    taken.add(name_key(folder / candidate))
    return folder / candidate


def convert_series(slices: list[tuple[Path, str]], stem: Path, options: Options) -> Result:
    """One GIF + MP4 (and .txt) of a series of single-frame files, with one window for all.

    The window is ``--window``, else the first slice's, else the min–max of
    the whole series, so the loop does not flicker.
    """
    def work() -> Result:
        outputs, message, record = _convert_series(slices, stem, options)
        return Result(stem, "series", outputs, message, record)

    return _caught(stem, work, bool(options.redact_salt))


def _convert_series(slices: list[tuple[Path, str]], stem: Path, options: Options) -> tuple[list[Path], str, dict]:
    """`slices` are (input file, output stem name) in display order."""
    import itertools

    sources = [path for path, _ in slices]
    datasets = [read_dataset(path) for path in sources]
    plans = [pixel_plan(ds, options) for ds in datasets]
    if any(plan is not None and plan.action == "withhold" for plan in plans):
        raise Skipped("--redact withholds one of its slices")
    masks = [blank_mask(plan, int(ds.Rows), int(ds.Columns)) if plan is not None and plan.action == "blank"
             else None for plan, ds in zip(plans, datasets)]

    def first_frames():
        for path, ds in zip(sources, datasets):
            yield from itertools.islice(decode_frames(path, ds), 1)

    first = datasets[0]
    if is_colour(first):
        frames = itertools.chain.from_iterable(render_colour(decode_frames(p, d), d) for p, d in zip(sources, datasets))
        display = "colour"
    else:
        voi = choose_voi(first, options.window)
        kept = None
        if voi is None:
            kept, low, high = clip_stored_range(first_frames(), lambda i: datasets[i])
            voi = Voi("range", low, high, source="no window in series")
        frames = render_grayscale(iter(kept) if kept is not None else first_frames(),
                                  lambda i: datasets[i], lambda attrs: voi, 255)
        display = voi.describe()
    frames = blanked(frames, masks)
    if any(mask is not None for mask in masks):
        display += f", burned-in text blanked in {sum(m is not None for m in masks)} of {len(masks)} slices"
    timing = _constant_timing(Fraction(options.fps or DEFAULT_FPS), len(sources),
                              "--fps" if options.fps else "default for a series")
    with staged_outputs(stem) as (output, finals):
        written = write_cine(frames, output, timing, dataclasses.replace(options, frame_pngs=False))
        if written != len(sources):
            raise CorruptFile(f"decoded {written} of {len(sources)} slices")
        shown_first = as_shown(first, options)
        write_text(series_text([name for _, name in slices], shown_first, datasets, display, timing),
                   output(".txt"))
    record = {**index_record(shown_first), **patient_stand_in(first, options)}
    record.update(frames=str(len(sources)), Display=display, FrameRate=timing.describe(), kind="cine")
    return finals, f"{len(sources)} slices, {display}, {timing.describe()}", record


def series_text(names: list[str], first: Dataset, datasets: list, display: str, timing: Timing) -> str:
    """The series summary (from `first`, redacted if asked) and its slices in display order."""
    lines = ["# Series", f"  {'SeriesNumber':<22} {text_of(first.get('SeriesNumber', ''))}",
             f"  {'SeriesDescription':<22} {text_of(first.get('SeriesDescription', ''))}",
             f"  {'Modality':<22} {text_of(first.get('Modality', ''))}",
             f"  {'Slices':<22} {len(names)}", f"  {'Display':<22} {display}",
             f"  {'FrameRate':<22} {timing.describe()}", "", "# Slices in display order",
             "  #     output name  (InstanceNumber, ImagePositionPatient)"]
    for number, (name, ds) in enumerate(zip(names, datasets), 1):
        position = "\\".join(f"{float(v):g}" for v in ds.get("ImagePositionPatient") or [])
        lines.append(f"  {number:<5} {name}  ({text_of(ds.get('InstanceNumber', ''))}, {position})")
    return "\n".join(lines) + "\n"
