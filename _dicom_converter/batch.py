"""The batch: every file under the input converted, then series, the manifest and the index
page; the exit status.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from _dicom_converter.base import Batch, ConversionError, display_name
from _dicom_converter.classify import object_kind
from _dicom_converter.index_page import write_index
from _dicom_converter.inputs import OUTPUT_SUFFIXES, looks_like_dicom, name_key, plan_group, walk_groups
from _dicom_converter.kinds.documents import DOCUMENT_SUFFIXES
from _dicom_converter.kinds.video import TRANSCODED_SUFFIX
from _dicom_converter.job import later_thumbnail, pictured_later
from _dicom_converter.layout import plan_study_layout
from _dicom_converter.manifest import (
    earlier_outputs,
    in_shard,
    manifest_key,
    manifest_row,
    merge_shards,
    shard_part,
    write_manifest,
    write_shard_part,
)
from _dicom_converter.pool import _interrupt_on_signal, convert_all, remove_orphaned_temporaries
from _dicom_converter.reading import _dcmread, read_dataset
from _dicom_converter.redaction import DEIDENTIFIED, as_shown, identifying_strings, patient_stand_in
from _dicom_converter.results import SHOWN_STATUSES, LineStore, Log, Result, result_from_json, result_json
from _dicom_converter.series import series_groups, series_stem
from _dicom_converter.sop import RT_DOSE_CLASS, SEGMENTATION_CLASS
from _dicom_converter.text import index_record
from _dicom_converter.writers import thumbnail_path

if TYPE_CHECKING:
    from _dicom_converter.base import Options


def outputs_are_current(source: Path, stem: Path, redacted: bool = False) -> bool:
    """True when `stem`'s .txt and its image outputs exist and are newer than `source`,
    and were written with ``--redact`` when this run is `redacted` and without it when not.

    The .txt is written last, in the same rename step as the images, so its
    presence means the conversion finished; multi-frame files need a GIF or an
    MP4 beside it, single frames a PNG, metadata-only files nothing more.
    """
    text = stem.with_name(stem.name + ".txt")
    try:
        newer = text.stat().st_mtime >= source.stat().st_mtime
    except OSError:
        return False
    images = [stem.with_name(stem.name + ext) for ext in (".png", ".gif", ".mp4", ".html", ".csv", ".wav",
                                                           *DOCUMENT_SUFFIXES)]
    head = _head(text)
    if (DEIDENTIFIED in head) != redacted:  # never pass an earlier run's names off as redacted
        return False
    return newer and (any(p.exists() for p in images) or "metadata only" in head)


def _head(path: Path, size: int = 4096) -> str:
    with path.open("rb") as f:
        return f.read(size).decode("utf-8", "replace")


def run_batch(input_path: Path, output: Path, options: Options, batch: Batch = Batch()) -> int:
    """Convert every DICOM file under `input_path` (with --shard, this run's share of them);
    report each; return the exit status.

    Then, with `batch.series`, each series of single-frame files becomes one cine, and
    OUTPUT/manifest.csv and OUTPUT/index.html are written (a shard writes its part of the
    manifest, and the last shard to finish joins the parts).  Exit status: 0 all converted,
    1 some failed, 130 interrupted (Ctrl-C or SIGTERM), after deleting temporary files and
    printing what was done.
    """
    import signal

    input_path, output = input_path.resolve(), output.resolve()
    base = input_path if input_path.is_dir() else input_path.parent
    counts = dict.fromkeys(("converted", "metadata", "skipped", "failed", "not_dicom", "current", "series", "dicom"), 0)
    made = {".png": 0, ".gif": 0, ".mp4": 0}
    mine = (lambda path: True) if batch.shard is None else (lambda path: in_shard(path, base, batch.shard))
    # OUTPUT is the input folder (or holds it): what earlier runs wrote there is no input
    earlier = earlier_outputs(output) if input_path.is_dir() and input_path.is_relative_to(output) else set()
    log = Log(batch.quiet)  # a terminal's bar shows at once; its size once a second walk has counted
    if log.bar is not None:
        log.sized(sum(mine(path) for group in walk_groups(input_path, output, output, earlier)
                      for path, _ in group.files))
    previous_term = signal.signal(signal.SIGTERM, _interrupt_on_signal)
    interrupted = False
    results = LineStore(result_json, result_from_json)  # every input's, for the manifest, the index, the links
    second_passes: set[str] = set()  # "overlays", "reports": whether any result may need one

    def keep(result: Result) -> None:
        results.append(result)
        if result.record.get("sop_class") in (SEGMENTATION_CLASS, RT_DOSE_CLASS):
            second_passes.add("overlays")
        if result.record.get("kind") == "report":
            second_passes.add("reports")
    taken: set[str] = set()  # with --series: every stem planned, which a series' cine must not take

    def finished(result: Result) -> None:
        """A file's line, as soon as it is done (the pool calls it in the order files finish)."""
        problem = result.status == "failed"
        if log.shows(problem):  # made only to be shown: 0.1 ms a file of the main process's time
            log.line(result_line(result, base, output), problem=problem)
        log.advance()

    def report(result: Result) -> None:
        counts[result.status] += 1
        for out in result.outputs:
            made[out.suffix] = made.get(out.suffix, 0) + 1
        keep(result)

    def dicom_of(group) -> list[tuple[Path, Path]]:
        """The group's DICOM files; the others are reported (this shard's) as skipped."""
        dicom = []
        for path, folder in group.files:
            if looks_like_dicom(path):
                dicom.append((path, folder))
            elif mine(path):
                counts["not_dicom"] += 1
                keep(Result(path, "skipped", message="not a DICOM file"))
                log.line(f"skipped    {display_name(path, base)}: not a DICOM file")
                log.advance()
        return dicom

    def tasks_of(planned: list[tuple[Path, Path, str]]) -> Iterator[tuple]:
        for source, stem, note in planned:
            if batch.series:
                taken.add(name_key(stem))
            if not mine(source):
                continue
            counts["dicom"] += 1
            if note:
                log.line(f"note       {display_name(source, base)}: {note}")
            if batch.skip_existing and outputs_are_current(source, stem, bool(options.redact_salt)):
                counts["current"] += 1
                keep(existing_result(source, stem, options))
                log.line(f"up to date {display_name(source, base)}")
                log.advance()
                continue
            yield source, stem, options

    def planned_tasks() -> Iterator[tuple]:
        """The walk, one output folder at a time, planned and handed to the pool as it goes."""
        if batch.layout == "study":  # names from the files' values: every header first, every shard alike
            dicom = [path for group in walk_groups(input_path, output, output, earlier) for path, _ in dicom_of(group)]
            yield from tasks_of(plan_study_layout(dicom, output, bool(options.redact_salt)))
            return
        for group in walk_groups(input_path, output, output, earlier):
            if not any(mine(path) for path, _ in group.files):
                continue  # another shard's: its names cannot touch ours
            dicom = dicom_of(group)
            planned = plan_group(dicom, group.present, output)  # every file of the folder, as one run names them
            if options.redact_salt:
                planned = redact_names(planned, output, options.redact_salt)
            yield from tasks_of(planned)

    try:
        for result in convert_all(planned_tasks(), batch.jobs, finished):
            report(result)
        # each a pass over every result, made only when a result it looks for is among them
        overlays = overlay_tasks(results, options) if "overlays" in second_passes else []
        reports = report_tasks(results, options) if "reports" in second_passes else []
        again = overlays + reports
        # the same outputs again, now over their images, or linked to them
        for number, result in enumerate(convert_all([task for _, task in again], batch.jobs)):
            overlaid = number < len(overlays)
            if result.status == "converted":
                results[again[number][0]] = result
            else:  # the first pass's outputs stay
                result.message = (f"not drawn over its images (its outputs on black stay): {result.message}" if overlaid
                                  else f"not linked to its references (its page stays): {result.message}")
            log.line(result_line(result, base, output).replace("converted  ", "overlaid   " if overlaid else
                                                                "linked     ", 1), problem=result.status == "failed")
        if batch.series:
            groups = series_groups(results)
            series_tasks = [([(r.source, r.outputs[-1].stem) for r in group], series_stem(group, taken), options)
                            for group in groups]
            for result in convert_all(series_tasks, batch.jobs, finished):
                report(result)
    except KeyboardInterrupt:
        interrupted = True
        if output.is_dir():  # the workers are gone: sweep what a worker killed mid-clean-up left
            remove_orphaned_temporaries(output)
    finally:
        signal.signal(signal.SIGTERM, previous_term)
    if not counts["dicom"] and not interrupted:
        if batch.shard is None:  # nothing to list or show: say so, and write no empty manifest
            results.close()
            log.error(no_dicom_message(input_path, counts["not_dicom"]))
            return 1
        log.line(f"no DICOM files found in {input_path} for shard {batch.shard[0]} of {batch.shard[1]}")
    index_page = None
    if not interrupted:
        # rows made one at a time, in order: no second copy of every file's state
        redacted = bool(options.redact_salt)
        order = sorted((manifest_key(result, base, output, redacted), number) for number, result in enumerate(results))
        rows = (manifest_row(results[number], base, output, redacted) for _, number in order)
        if batch.shard is None:
            log.line(f"manifest   {display_name(write_manifest(output, rows), output)}")
            if batch.index and any(result.status in SHOWN_STATUSES for result in results):
                index_page = write_index(output, results)
        else:
            write_shard_part(output, batch.shard, rows, results)
            if all(shard_part(output, (k, batch.shard[1])).exists() for k in range(1, batch.shard[1] + 1)):
                merge_shards(output, batch.shard[1], quiet=True, index=batch.index)  # the last shard to finish
                log.line(f"merged     {batch.shard[1]} shards into manifest.csv and index.html")
                index_page = output / "index.html" if batch.index and (output / "index.html").exists() else None
    results.close()
    log.summary(
        f"{'Interrupted' if interrupted else 'Done'}: {counts['converted']} converted ({output_counts(made)}), "
        + (f"{counts['series']} series, " if batch.series else "")
        + f"{counts['metadata']} metadata only, {counts['not_dicom'] + counts['skipped']} skipped, "
        + (f"{counts['current']} already up to date, " if batch.skip_existing else "")
        + f"{counts['failed']} failed."
        + (f" (shard {batch.shard[0]} of {batch.shard[1]})" if batch.shard else ""),
        last=f"index      {index_page}" if index_page else None,  # where to look: the full path, last
    )
    if interrupted:
        return 130
    return 1 if counts["failed"] else 0


# The summary's order of output kinds: pictures, then pages and documents, then data; any other
# suffix (an .obj's .mtl, --json's .json) follows by name.  The .txt every file gets is not counted.
SUMMARY_SUFFIXES = (".png", ".gif", ".mp4", ".html", ".pdf", ".xml", ".stl", ".obj", ".csv", ".wav")


def output_counts(made: dict[str, int]) -> str:
    """``24 PNG, 3 GIF, 3 MP4`` and every other kind of output written, by suffix (PNG, GIF
    and MP4 always, so a run without cines still says it made none)."""
    order = [*SUMMARY_SUFFIXES, *sorted(set(made) - set(SUMMARY_SUFFIXES) - {".txt"})]
    return ", ".join(f"{made.get(suffix, 0)} {suffix[1:].upper()}" for suffix in order
                     if made.get(suffix) or suffix in (".png", ".gif", ".mp4"))


def no_dicom_message(input_path: Path, looked_at: int) -> str:
    """The one line for an input with no DICOM file in it (exit status 1)."""
    if input_path.is_file():
        return f"error: {input_path} is not a DICOM file"
    if not looked_at:
        return f"error: no DICOM files found in {input_path}: the folder holds no files"
    return (f"error: no DICOM files found in {input_path}: {looked_at} file{'s' if looked_at != 1 else ''} "
            f"looked at, {'none' if looked_at != 1 else 'not'} DICOM")


def overlay_tasks(results: LineStore, options: Options) -> list[tuple[int, tuple]]:
    """Objects to draw again over images this run converted, with their place in `results`:
    a segmentation over the single-frame images of its Referenced Series (PS3.3 C.8.20.1), an
    RT Dose over those of its Frame of Reference (the planning CT).  UIDs are matched as the
    outputs show them, so --redact's stand-ins match too.  Two passes, so that only the
    images of a series or frame something refers to are collected."""
    def overlaid(result: Result) -> tuple[str, str] | None:
        record = result.record
        if result.status != "converted":
            return None
        if record.get("sop_class") == SEGMENTATION_CLASS and record.get("referenced_series"):
            return "series", record["referenced_series"]
        if record.get("sop_class") == RT_DOSE_CLASS and record.get("frames") != "1" and record.get("frame_of_reference"):
            return "frame", record["frame_of_reference"]
        return None

    wanted = {key for key in map(overlaid, results) if key}
    if not wanted:
        return []
    images: dict[tuple[str, str], list[Path]] = {}
    overlays = []
    for number, result in enumerate(results):
        record = result.record
        key = overlaid(result)
        if key:
            overlays.append((number, result, key))
        elif result.status == "converted" and record.get("kind") == "image" and record.get("sop_class") not in (
                SEGMENTATION_CLASS, RT_DOSE_CLASS):
            for key in (("series", record.get("series_uid")), ("frame", record.get("frame_of_reference"))):
                if key in wanted:
                    images.setdefault(key, []).append(result.source)
    return [(number, (result.source, result.outputs[-1].with_suffix(""), options, tuple(images[key])))
            for number, result, key in overlays if key in images]


def report_tasks(results: LineStore, options: Options) -> list[tuple[int, tuple]]:
    """Structured reports to convert again with links, with their place in `results`: each to
    this run's outputs of the instances of its study (the picture a viewer shows first: PNG,
    GIF, then MP4, or the document, the ECG page).  UIDs are matched as the outputs show them,
    so --redact's stand-ins match too.  Two passes: only the studies that hold a report are
    collected."""
    def is_report(result: Result) -> bool:
        return result.status == "converted" and result.record.get("kind") == "report"

    studies = {result.record.get("study_uid", "") for result in results if is_report(result)}
    if not studies:
        return []
    preference = (".png", ".gif", TRANSCODED_SUFFIX, ".mp4", *DOCUMENT_SUFFIXES, ".wav", ".html")
    by_study: dict[str, list[tuple[str, Path]]] = {}
    reports = []
    for number, result in enumerate(results):
        record = result.record
        if is_report(result):
            reports.append((number, result))
            continue
        uid = record.get("instance_uid")
        if result.status != "converted" or not uid or record.get("study_uid", "") not in studies:
            continue
        frame_pngs = set(result.frame_pngs())
        kept = [path for path in result.outputs if path not in frame_pngs]
        shown = [path for suffix in preference for path in kept if path.name.endswith(suffix)]
        if shown:
            by_study.setdefault(record.get("study_uid", ""), []).append((uid, shown[0]))
    return [(number, (result.source, result.outputs[-1].with_suffix(""), options, (),
                      tuple(by_study[result.record.get("study_uid", "")])))
            for number, result in reports if by_study.get(result.record.get("study_uid", ""))]


def redact_names(planned: list[tuple[Path, Path, str]], output: Path, salt: str) -> list[tuple[Path, Path, str]]:
    """Output paths with no folder or file name that holds a patient's name, ID or birth date.

    Hospital exports often name folders after the patient (``DOE^JOHN/``).
    Each such name becomes ``redacted-`` and 16 hex digits of an HMAC of it
    under the run's secret: the same name gives the same stand-in throughout
    the run and in every shard of it, so the tree keeps its shape, and without
    the secret the stand-in tells nothing of the name.
    """
    import hmac

    result = []
    for source, stem, note in planned:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the file's own line reports them, without values
                tokens = identifying_strings(_dcmread(source, stop_before_pixels=True))
        except Exception:
            tokens = []
        parts = []
        for part in stem.relative_to(output).parts:
            if any(token in part.casefold() for token in tokens):
                part = "redacted-" + hmac.new(salt.encode(), part.encode("utf-8", "surrogatepass"),
                                              "sha256").hexdigest()[:16]
            parts.append(part)
        result.append((source, output.joinpath(*parts), "" if parts != list(stem.relative_to(output).parts) else note))
    return result


def existing_result(source: Path, stem: Path, options: Options) -> Result:
    """What the index needs about a file converted by an earlier run (--skip-existing)."""
    outputs = [p for p in (stem.with_name(stem.name + ext) for ext in OUTPUT_SUFFIXES) if p.exists()]
    try:
        ds = read_dataset(source)
        record = {**index_record(as_shown(ds, options)), **patient_stand_in(ds, options), "kind": object_kind(ds)}
        if options.thumbnails is not None and thumbnail_path(stem, options.thumbnails).exists():
            record["thumbnail"] = str(thumbnail_path(stem, options.thumbnails))
        elif options.thumbnails is not None and pictured_later(ds):
            thumbnail, png = later_thumbnail(stem, options.thumbnails)
            if png.exists():
                record.update(thumbnail=str(thumbnail), thumbnail_from=str(png))
    except ConversionError:
        record = {}
    return Result(source, "converted", outputs, "up to date", record)


def result_line(result: Result, base: Path, output: Path) -> str:
    """The one line a file gets in the log."""
    is_series = result.source.is_relative_to(output) and not result.source.is_relative_to(base)
    name = display_name(result.source, output if is_series or result.status == "series" else base)
    if result.status == "failed":
        return f"FAILED     {name}: {result.message}"
    if result.status == "skipped":
        return f"skipped    {name}: {result.message}"
    label = {"converted": "converted ", "metadata": "metadata  ", "series": "series    "}[result.status]
    frame_pngs = set(result.frame_pngs())
    made = " ".join(display_name(p, output) for p in result.outputs if p not in frame_pngs)
    frames = len(frame_pngs)
    made += f" +{frames} frame PNGs" if frames else ""
    detail = f"  [{result.message}]" if result.message else ""
    return f"{label} {name} -> {made}{detail}"
