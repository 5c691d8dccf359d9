"""Text outputs: the `.txt`'s summary, the `--json` dataset (PS3.18 F.2) and the record the
index page and the manifest keep of each file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from _dicom_converter.base import CorruptFile, first_line
from _dicom_converter.dump import _bulk_size, dump_dataset, text_of, value_texts
from _dicom_converter.reading import has_pixel_data, transfer_syntax_of
from _dicom_converter.timing import _keyword_of
from _dicom_converter.values import person_name_listed

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


SUMMARY_FIELDS = (
    ("Patient", ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")),
    ("Study", ("StudyDate", "StudyTime", "StudyDescription")),
    ("Series", ("SeriesNumber", "SeriesDescription", "Modality")),
    ("Equipment", ("Manufacturer", "ManufacturerModelName", "InstitutionName")),
)


def summary_text(ds: Dataset, rendering: dict[str, str]) -> str:
    """The short human summary at the top of the .txt."""
    lines = []
    text = value_texts(ds)
    for title, keywords in SUMMARY_FIELDS:
        lines.append(f"{title}:")
        for keyword in keywords:
            lines.append(f"  {keyword:<22} {text(keyword)}")
    lines.append("Image:")
    syntax = transfer_syntax_of(ds)
    from pydicom.uid import UID

    image_fields = {
        "Size": f"{ds.get('Rows', '?')} x {ds.get('Columns', '?')} (rows x columns)"
        if "Rows" in ds else "",
        "Frames": str(ds.get("NumberOfFrames", 1)) if has_pixel_data(ds) else "0",
        "Bits": f"{ds.get('BitsStored', '?')} stored of {ds.get('BitsAllocated', '?')}, "
        f"{'signed' if ds.get('PixelRepresentation') == 1 else 'unsigned'}" if "BitsAllocated" in ds else "",
        "Photometric": str(ds.get("PhotometricInterpretation", "")),
        "TransferSyntax": f"{UID(syntax).name} ({syntax})",
    }
    image_fields.update(rendering)
    for key, value in image_fields.items():
        lines.append(f"  {key:<22} {value}")
    return "\n".join(lines) + "\n"


def json_dataset(ds: Dataset) -> dict:
    """The dataset in the DICOM JSON Model (PS3.18 F.2), bulk data left out.

    pydicom's `to_json_dict` writes it; pixel data and binary values over
    1 KB are replaced by a BulkDataURI that names their size (there is no
    server to fetch them from), and values still on disk are never read.
    """
    from pydicom.dataset import Dataset

    def bulk(element) -> str:
        return f"not-included:{len(element.value)} bytes"

    light = Dataset()
    notes = {}
    try:  # a damaged element (an unknown VR) is found when read, here or in the JSON writer
        for tag in ds.keys():
            raw = ds.get_item(tag, keep_deferred=True)
            size = _bulk_size(raw, _keyword_of(tag), getattr(ds, "filename", None))
            if size is not None:
                notes[f"{tag:08X}"] = {"vr": raw.VR or "UN", "BulkDataURI": f"not-included:{size}"}
                continue
            light[tag] = ds[tag]
        data = light.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=bulk)
    except Exception as exc:
        raise CorruptFile(f"cannot express the dataset as DICOM JSON: {first_line(exc)}") from None
    data.update(notes)
    return _json_safe(dict(sorted(data.items())))


def _json_safe(value):
    """NaN and infinities as the strings PS3.18 F.2.3.1 prescribes; JSON has no such numbers."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def index_record(ds: Dataset) -> dict:
    """What the index page and series grouping need from one dataset (plain values).

    A value that cannot be read (a damaged element) is left empty: the index
    is a convenience and must not fail a file that converted.
    """
    texts = value_texts(ds, falsy_empty=True)

    def text(keyword: str) -> str:
        try:
            return texts(keyword)
        except Exception:
            return ""

    def numbers(keyword: str) -> list[float] | None:
        try:
            return [float(v) for v in ds[keyword].value] if keyword in ds else None
        except Exception:
            return None

    name = text("PatientName")
    return {
        "patient_name": name, "patient_id": text("PatientID"),
        # the page's heading, made here where pydicom (for PersonName) is loaded anyway: a
        # spawned pool's main process would import all of it for this one split (0.1-0.2 s)
        "patient_name_listed": person_name_listed(name),
        "study_uid": text("StudyInstanceUID"), "study_date": text("StudyDate"),
        "study_description": text("StudyDescription"),
        "series_uid": text("SeriesInstanceUID"), "series_number": text("SeriesNumber"),
        "series_description": text("SeriesDescription"), "modality": text("Modality"),
        "rows": int(text("Rows") or 0) if text("Rows").isdigit() else 0,
        "columns": int(text("Columns") or 0) if text("Columns").isdigit() else 0,
        "frames": text("NumberOfFrames") or "1", "photometric": text("PhotometricInterpretation"),
        "orientation": numbers("ImageOrientationPatient"), "position": numbers("ImagePositionPatient"),
        "patient_orientation": text("PatientOrientation"), "pixel_spacing": numbers("PixelSpacing"),
        "imager_pixel_spacing": numbers("ImagerPixelSpacing"),
        "instance": text("InstanceNumber"), "sop_class": text("SOPClassUID"),
        "instance_uid": text("SOPInstanceUID"), "bits": text("BitsStored"), "body_part": text("BodyPartExamined"),
        "manufacturer": text("Manufacturer"), "model": text("ManufacturerModelName"),
        "frame_of_reference": text("FrameOfReferenceUID"),
        "referenced_series": text_of(((ds.get("ReferencedSeriesSequence") or [{}])[0]).get("SeriesInstanceUID", "")),
        # for the index page's headings and counts
        "patient_sex": text("PatientSex"), "patient_age": text("PatientAge"),
        "patient_birth_date": text("PatientBirthDate"), "study_time": text("StudyTime"),
        "frame_time": text("FrameTime"), "segments": len(ds.get("SegmentSequence") or []),
        "slide_size": " ".join(text(k) for k in ("TotalPixelMatrixColumns", "TotalPixelMatrixRows")).strip(),
        **_waveform_extent(ds), **_shared_geometry(ds),
    }


def _shared_geometry(ds: Dataset) -> dict:
    """An enhanced multi-frame file's orientation and pixel spacing, which it keeps in the Shared
    Functional Groups (PS3.3 C.7.6.16.2.1 Pixel Measures, C.7.6.16.2.4 Plane Orientation)."""
    try:
        shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
        if shared is None or "ImageOrientationPatient" in ds:
            return {}
        found = {}
        measures = (shared.get("PixelMeasuresSequence") or [None])[0]
        if measures is not None and measures.get("PixelSpacing"):
            found["pixel_spacing"] = [float(v) for v in measures.PixelSpacing]
        plane = (shared.get("PlaneOrientationSequence") or [None])[0]
        if plane is not None and plane.get("ImageOrientationPatient"):
            found["orientation"] = [float(v) for v in plane.ImageOrientationPatient]
        return found
    except Exception:  # the index is a convenience
        return {}


def _waveform_extent(ds: Dataset) -> dict:
    """Channels and seconds of the first multiplex group of a waveform (PS3.3 C.10.9), for its card."""
    try:
        group = (ds.get("WaveformSequence") or [None])[0]
        if group is None:
            return {}
        samples, frequency = int(group.NumberOfWaveformSamples), float(group.SamplingFrequency)
        return {"channels": int(group.NumberOfWaveformChannels), "seconds": samples / frequency if frequency else 0}
    except Exception:  # the index is a convenience: a damaged group gives no count
        return {}


def metadata_text(ds: Dataset, rendering: dict[str, str], report: str = "") -> str:
    """Summary, then a structured report's text (the summary stays first: `outputs_are_current`
    reads the head), then File Meta, then the dataset."""
    parts = ["# Summary", summary_text(ds, rendering)]
    if report:
        parts += ["# Report", report.rstrip("\n") + "\n"]
    meta = getattr(ds, "file_meta", None)
    if meta is not None and len(meta):
        parts += ["# File Meta Information", "\n".join(dump_dataset(meta)) + "\n"]
    parts += ["# Dataset", "\n".join(dump_dataset(ds)) + "\n"]
    return "\n".join(parts)
