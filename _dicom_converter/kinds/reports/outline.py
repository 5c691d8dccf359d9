"""What a report says at a glance: the document header, key object selections
(PS3.3 C.17.6) and radiation dose tables (TID 10001).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Iterator

from _dicom_converter.kinds.reports.content import (
    DOSE_HEADLINES,
    DOSE_REPORT_CLASSES,
    EVENT_PROTOCOL,
    EVENT_TARGET_REGION,
    KEY_OBJECT_DESCRIPTION,
    KEY_OBJECT_SELECTION_CLASS,
    Shown,
    _get,
    _items,
    _plain,
    sop_class_name,
)
from _dicom_converter.values import date_text, datetime_text, person_name_text, sex_text, string_value, time_text

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from _dicom_converter.kinds.reports.content import ContentItem, Report, _Reading


# -----------------------------------------------------------------------------
# The header (PS3.3 C.17.2 SR Document General, C.7.1.1 Patient, C.7.2.1 General Study)
# -----------------------------------------------------------------------------
def document_header(ds: Dataset, reading: _Reading) -> list[tuple[str, list[Shown]]]:
    """The facts above the tree, as dsr2html lists them; empty ones left out, but for the patient."""
    def text(keyword: str, format_value=string_value) -> str:
        return format_value(_get(ds, keyword))

    def row(label: str, *parts: str, separator: str = ", ") -> tuple[str, list[Shown]]:
        shown = separator.join(p for p in parts if p)
        return label, [Shown(shown)] if shown else []

    series_number, study_id, model = text("SeriesNumber"), text("StudyID"), text("ManufacturerModelName")
    rows = [
        ("Document", [Shown(sop_class_name(text("SOPClassUID")))]),
        ("Patient", [_plain(text("PatientName", person_name_text))] if text("PatientName", person_name_text)
         else [Shown("(no name)", "missing")]),
        row("Patient ID", text("PatientID")),
        row("Birth date", text("PatientBirthDate", date_text)),
        row("Sex", text("PatientSex", sex_text)),
        row("Referring physician", text("ReferringPhysicianName", person_name_text)),
        row("Study", text("StudyDescription"), f"(#{study_id})" if study_id else "", separator=" "),
        row("Study date", text("StudyDate", date_text), text("StudyTime", time_text), separator=" "),
        row("Accession number", text("AccessionNumber")),
        row("Series", text("SeriesDescription"), f"(#{series_number})" if series_number else "", separator=" "),
        row("Protocol", text("ProtocolName")),
        row("Manufacturer", text("Manufacturer"), f"({model})" if model else "", separator=" "),
        row("Completion", text("CompletionFlag"), text("CompletionFlagDescription"), separator=" — "),
        row("Verification", text("VerificationFlag")),
    ]
    for observer in _items(ds, "VerifyingObserverSequence"):  # C.17.2.1: name, organisation, when
        rows.append(row("Verifying observer", person_name_text(_get(observer, "VerifyingObserverName")),
                        string_value(_get(observer, "VerifyingOrganization")),
                        datetime_text(_get(observer, "VerificationDateTime"))))
    rows.append(row("Content date/time", text("ContentDate", date_text), text("ContentTime", time_text), separator=" "))
    for study in _items(ds, "PredecessorDocumentsSequence"):  # C.17.2.3 Hierarchical SOP Instance Reference
        for series in _items(study, "ReferencedSeriesSequence"):
            for instance in _items(series, "ReferencedSOPSequence"):
                rows.append(("Predecessor document", [reading.object_shown(instance, False)]))
    return [(label, shown) for label, shown in rows if shown]


# -----------------------------------------------------------------------------
# What the page shows above the tree: key objects, dose headlines
# -----------------------------------------------------------------------------

def walk(item: ContentItem) -> Iterator[ContentItem]:
    """`item` and every item below it, depth first, in document order."""
    yield item
    for child in item.children:
        yield from walk(child)


def key_objects(report: Report) -> list[ContentItem]:
    """The instances a Key Object Selection document selects (PS3.3 A.35.4, TID 2010)."""
    if report.sop_class != KEY_OBJECT_SELECTION_CLASS:
        return []
    return [item for item in walk(report.root) if item.value_type in ("IMAGE", "COMPOSITE", "WAVEFORM")]


def key_object_description(report: Report) -> list[Shown]:
    """TID 2010's Key Object Description (DCM 113012), the reason the images were chosen."""
    for item in walk(report.root):
        if item.concept_code == KEY_OBJECT_DESCRIPTION and item.value_type == "TEXT":
            return item.values
    return []


@dataclasses.dataclass
class DoseTable:
    """Headline values of one kind of irradiation event in a dose report."""

    title: str
    columns: list[str]
    rows: list[tuple[str, list[list[Shown]]]]  # (anchor position, one cell per column)
    totals: list[tuple[str, list[Shown]]]  # (concept name, value)


def dose_tables(report: Report) -> list[DoseTable]:
    """Per irradiation event: protocol, target region and the dose values its template records.

    TID 10013 CT Irradiation Event Data gives Mean CTDIvol (DCM 113830) and DLP
    (113838); TID 10012 the CT Dose Length Product Total (113813); TID 10003 and
    10002 the projection X-ray equivalents.  Only the values the report holds
    are shown; the whole tree follows below.
    """
    if report.sop_class not in DOSE_REPORT_CLASSES:
        return []
    tables = []
    for title, event_code, columns, total_codes in DOSE_HEADLINES:
        rows = []
        for event in walk(report.root):
            if event.value_type != "CONTAINER" or event.concept_code != event_code:
                continue
            cells = [_value_of(event, EVENT_PROTOCOL), _value_of(event, EVENT_TARGET_REGION)]
            cells += [_value_of(event, code) for _, code in columns]
            rows.append((event.position, cells))
        totals = [(item.concept, item.values) for item in walk(report.root)
                  if item.value_type == "NUM" and item.concept_code in total_codes]
        if rows or totals:
            tables.append(DoseTable(title, ["Protocol", "Target region", *(label for label, _ in columns)],
                                    rows, totals))
    return tables


def _value_of(event: ContentItem, code: tuple[str, str]) -> list[Shown]:
    for item in walk(event):
        if item.concept_code == code and item.values:
            return item.values
    return []
