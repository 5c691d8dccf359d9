"""Converting one file: the one dispatch table from kind to writer, and the one place
where a file's errors are caught and become a `Result`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from _dicom_converter.base import ConversionError, Skipped, first_line
from _dicom_converter.classify import object_kind
from _dicom_converter.job import Conversion
from _dicom_converter.kinds.documents import write_document
from _dicom_converter.kinds.dose import write_dose
from _dicom_converter.kinds.images import write_clip, write_image, write_metadata_only
from _dicom_converter.kinds.reports.writer import report_excerpt, write_report
from _dicom_converter.kinds.segmentations import write_segmentation
from _dicom_converter.kinds.slides import write_slide
from _dicom_converter.kinds.video import write_video
from _dicom_converter.kinds.volumes import write_volume
from _dicom_converter.kinds.waveforms import write_waveform
from _dicom_converter.reading import check_image_attributes, has_pixel_data, read_dataset
from _dicom_converter.redaction import DEIDENTIFIED, as_shown, patient_stand_in, pixel_plan
from _dicom_converter.results import Result
from _dicom_converter.text import index_record, json_dataset, metadata_text
from _dicom_converter.writers import staged_outputs, write_text

if TYPE_CHECKING:
    from _dicom_converter.base import Options


# What each kind of object (`classify.object_kind`) becomes: the one dispatch, as pydicom's
# decoder registry maps a transfer syntax to its plugins.  A new kind is a module in kinds/
# and a row here.
WRITERS: dict[str, Callable[[Conversion, str], None]] = {
    "metadata": write_metadata_only,     # no pixel data: the .txt alone
    "image": write_image,                # one frame: PNG
    "cine": write_clip,                  # frames that are moments: GIF + MP4 at the file's rate
    "volume": write_volume,              # frames that are slices: contact sheet, GIF + MP4
    "dose": write_dose,                  # RT Dose planes in colour with a scale in Gy
    "segmentation": write_segmentation,  # segments in colour over the images they segment
    "slide": write_slide,                # whole-slide tiles stitched into one PNG
    "document": write_document,          # the encapsulated PDF, CDA, STL, OBJ or MTL itself
    "video": write_video,                # MPEG-2, H.264, HEVC: the stream copied into an MP4
    "waveform": write_waveform,          # ECG paper PNG, CSV, WAV audio
    "report": write_report,              # structured report: HTML page and outline
}


def convert_file(source: Path, stem: Path, options: Options, images: tuple[Path, ...] = (),
                 links: tuple[tuple[str, Path], ...] = ()) -> Result:
    """Convert one DICOM file (see `_caught` for how failures become results); a segmentation
    or an RT Dose is drawn over `images` (the series it segments, the CT of its frame of
    reference), and a structured report links its references to `links` (SOP Instance UID,
    this run's output of it), when they are given."""
    def work() -> Result:
        outputs, message, record = _convert(source, stem, options, images, links)
        status = "metadata" if record.get("Display", "").startswith("metadata only") else "converted"
        return Result(source, status, outputs, message, record)

    return _caught(source, work, bool(options.redact_salt))


def _caught(source: Path, work, redact: bool = False) -> Result:
    """Run one file's (or series') `work`: the one place where its errors are caught.

    Every failure becomes a `Result` with a one-line reason, and pydicom's
    warnings are appended to the line instead of printed (under ``--redact``
    without the values they quote: "Invalid value for VR DA: '19510829'").
    """
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = work()
        result.message = _with_warnings(result.message, caught, redact)
        return result
    except Skipped as exc:
        return Result(source, "skipped", message=str(exc))
    except ConversionError as exc:
        return Result(source, "failed", message=_with_warnings(str(exc), caught, redact))
    except MemoryError:
        return Result(source, "failed", message="not enough memory to convert this file")
    except OSError as exc:
        name = f" {exc.filename}" if exc.filename and not str(exc.filename).endswith(".part") else ""
        return Result(source, "failed", message=f"cannot write output{name}: {exc.strerror or exc}")
    except Exception as exc:  # a library bug on odd input must not stop the batch
        return Result(source, "failed", message=f"unexpected {type(exc).__name__}: {first_line(exc)}")
    except BaseException as exc:  # a Rust decoder's panic (pyo3's PanicException) is no Exception,
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):  # and cannot be pickled
            raise
        return Result(source, "failed", message=f"the decoder crashed on this file: {first_line(exc)}")


def _with_warnings(message: str, caught: list, redact: bool = False) -> str:
    """`message` with the distinct warnings pydicom raised while reading, kept short."""
    import re

    texts: list[str] = []
    for w in caught or []:
        text = re.sub(r"\s*Please see <[^>]*>.*$", "", first_line(w.message))
        if redact:
            text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
        text = text if len(text) <= 120 else text[:117] + "..."
        if text not in texts:
            texts.append(text)
    if not texts:
        return message
    more = f" (+{len(texts) - 2} more)" if len(texts) > 2 else ""
    warning = f"warning: {'; '.join(texts[:2])}{more}"
    return f"{message}; {warning}" if message else warning


def _convert(source: Path, stem: Path, options: Options, images: tuple[Path, ...] = (),
             links: tuple[tuple[str, Path], ...] = ()) -> tuple[list[Path], str, dict]:
    ds = read_dataset(source)
    rendering: dict[str, str] = {}
    if options.redact_salt:
        rendering["Deidentified"] = DEIDENTIFIED
    plan = pixel_plan(ds, options) if has_pixel_data(ds) else None
    if plan is not None:
        rendering["Redaction"] = plan.describe()
    elif options.redact_salt and has_pixel_data(ds):
        rendering["Redaction"] = "pixels kept as they are (--redact-pixels keep)"
    if has_pixel_data(ds):
        check_image_attributes(ds)
    kind = object_kind(ds)
    with staged_outputs(stem) as (output, finals):
        shown = as_shown(ds, options)  # de-identified once, for the writers and the text outputs
        job = Conversion(source, ds, options, plan, output, rendering, images, links, stem=stem, shown=shown)
        if plan is not None and plan.action == "withhold":
            rendering["Display"] = f"metadata only (--redact: image withheld, {plan.reason})"
        else:
            WRITERS[kind](job, kind)
        if options.write_json:
            write_text(json.dumps(json_dataset(shown), indent=1, ensure_ascii=False, allow_nan=False),
                       output(".json"))
        write_text(metadata_text(shown, rendering, job.report), output(".txt"))
        # everything that can fail happens before the outputs take their final names
        record = {**index_record(shown), **patient_stand_in(ds, options), **rendering, "kind": kind,
                  "excerpt": report_excerpt(job.report),
                  "thumbnail": str(job.thumbnail_file or ""),
                  **({"thumbnail_from": str(job.thumbnail_source)} if job.thumbnail_source else {})}
    summary = ", ".join(v for k, v in rendering.items() if k in ("Display", "FrameRate", "Slide"))
    if plan is not None and plan.action == "blank":
        summary += f", burned-in text blanked ({plan.reason})"
    return [path for path in finals if path != job.thumbnail_file], summary, record

