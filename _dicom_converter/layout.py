"""``--layout study``: outputs under PATIENT/STUDY/SERIES/, named from each file's own values,
as viewers' export dialogs (Horos, OsiriX, Weasis) name them, instead of the disc's
``DICOM/PA000000/ST000000/SE000000/IM000000``.

    Sample, Phantom (PHANTOM0001)/2024-01-15 CT HEAD WO CONTRAST/003 HEAD 5mm AXIAL/0007.png

Every name goes through `portable_name`, so no value can leave OUTPUT or trip a file system;
a missing value gets a stated stand-in ("Unknown patient", "Series 3").  Under ``--redact``
only de-identified values name anything: "Patient 1/Study 1 CT/003 CT/0007.png", patients and
studies numbered in the order they first appear in the input, as the index page numbers them.
The plan is made from every file's header, in sorted input order, so each shard of a run
makes the same plan as a single run would.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

from _dicom_converter.classify import object_kind
from _dicom_converter.dump import text_of
from _dicom_converter.inputs import name_key, output_stem, plan_group, portable_name
from _dicom_converter.reading import read_dataset
from _dicom_converter.redaction import patient_identity
from _dicom_converter.values import date_text, person_name_listed

LAYOUTS = ("mirror", "study")
UNREADABLE_FOLDER = "Unreadable"  # a file whose header cannot be read keeps its own name here

# What an object without a frame of its own is called in its series folder (its kind).
KIND_FILE_NAMES = {"report": "report", "document": "document", "waveform": "waveform", "video": "video",
                   "metadata": "object", "segmentation": "segmentation", "dose": "dose", "slide": "slide"}


@dataclasses.dataclass(frozen=True)
class Place:
    """Where one file goes: each level's identity (what tells two apart) and its name."""

    patient: tuple[str, str]  # (identity, name)
    study: tuple[str, str]
    series: tuple[str, str]
    item: str  # the file's name in its series folder, before any ``_2``
    modality: str


def place_of(path: Path, redacted: bool) -> Place | None:
    """`path`'s place in the study layout from its header alone; None when it cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the file's own conversion reports them
            ds = read_dataset(path)
            kind = object_kind(ds)
    except Exception:
        return None

    def value(keyword: str) -> str:
        try:
            return text_of(ds.get(keyword, "") or "").strip()
        except Exception:
            return ""

    modality = value("Modality") or kind
    number = value("SeriesNumber")
    series_number = f"{int(number):03d}" if number.lstrip("-").isdigit() else ""
    if redacted:
        patient, study = "", ""  # numbered by `plan_study_layout`
        series = " ".join(w for w in (series_number, modality) if w)
    else:
        name, patient_id = person_name_listed(value("PatientName")), value("PatientID")
        patient = f"{name or 'Unknown patient'}{f' ({patient_id})' if patient_id else ''}"
        study = " ".join(w for w in (date_text(value("StudyDate")), value("StudyDescription")) if w) or "Study"
        series = " ".join(w for w in (series_number, value("SeriesDescription") or modality) if w)
    series = series or f"Series {value('SeriesNumber')}".strip()
    instance = value("InstanceNumber")
    if kind in KIND_FILE_NAMES:
        item = KIND_FILE_NAMES[kind] if kind != "waveform" or modality not in ("ECG", "AU") else modality
    else:
        item = f"{int(instance):04d}" if instance.lstrip("-").isdigit() else "image"
    return Place((patient_identity(ds), patient), (value("StudyInstanceUID"), study),
                 (value("SeriesInstanceUID"), series), item, modality)


def plan_study_layout(files: list[Path], output: Path, redacted: bool) -> list[tuple[Path, Path, str]]:
    """Pair each DICOM file with its output stem under PATIENT/STUDY/SERIES/, as `plan_group` pairs
    them in the mirrored layout: ``(input, stem path, note)``, sorted by input.

    Two patients, studies or series whose names coincide get `` 2``, `` 3`` … in the order they
    first appear; two files of one series with the same name get ``_2`` as in the mirrored tree.
    """
    places = [(path, place_of(path, redacted)) for path in sorted(files)]
    folders: dict[Path, list[tuple[Path, Path]]] = {}
    names: dict[tuple, str] = {}  # (parent folder, level identity) -> the folder's name
    used: dict[tuple, set[str]] = {}  # names taken in a parent folder, by name_key
    numbers: dict[tuple, int] = {}

    def folder_name(parent: tuple, identity: str, name: str) -> str:
        """`name`, made portable and unique among its parent folder's other identities."""
        key = (parent, identity)
        if key not in names:
            base = portable_name(name.lstrip(". "))  # no hidden folder from a value that starts with a dot
            taken = used.setdefault(parent, set())
            candidate, n = base, 1
            while name_key(candidate) in taken:
                n += 1
                candidate = f"{base} {n}"
            taken.add(name_key(candidate))
            names[key] = candidate
        return names[key]

    def numbered(parent: tuple, identity: str, word: str) -> str:
        if (parent, identity) not in names:
            numbers[parent] = numbers.get(parent, 0) + 1
            return f"{word} {numbers[parent]}"
        return ""

    for path, place in places:
        if place is None:
            folder = output / UNREADABLE_FOLDER
            folders.setdefault(folder, []).append((path, folder))
            continue
        patient_name = place.patient[1] or numbered(("patients",), place.patient[0], "Patient")
        patient = folder_name(("patients",), place.patient[0], patient_name)
        study_name = place.study[1]
        if redacted:  # "Study 1 CT": its number, and the modality it was first seen with
            study_name = numbered((patient,), place.study[0], "Study")
            study_name = f"{study_name} {place.modality}" if study_name else ""
        study = folder_name((patient,), place.study[0], study_name)
        series = folder_name((patient, study), place.series[0], place.series[1])
        folder = output / patient / study / series
        folders.setdefault(folder, []).append((path, folder))
    lookup = dict(places)

    def stem_of(path: Path) -> str:
        return portable_name(lookup[path].item) if lookup[path] else output_stem(path.name)

    planned = []
    for entries in folders.values():  # names can collide only within a folder
        planned += plan_group(entries, set(), output, stem_of=stem_of)
    return sorted(planned)
