"""Reading an SR's content tree (PS3.3 C.17.3) into plain items, and the small helpers
the report's page and outline share.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

from _dicom_converter.base import CorruptFile
from _dicom_converter.reading import is_multi
from _dicom_converter.values import date_text, datetime_text, person_name_text, string_value, time_text, uid_text

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


# A conformant report is a few levels deep (TID 1500 measurement reports reach
# about 8); a fuzzed file can nest without end, and each level is a Python frame.
SR_MAX_DEPTH = 64

KEY_OBJECT_SELECTION_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"  # PS3.3 A.35.4
DOSE_REPORT_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.88.67",  # X-Ray Radiation Dose SR, A.35.8
    "1.2.840.10008.5.1.4.1.1.88.76",  # Enhanced X-Ray Radiation Dose SR, A.35.24
    "1.2.840.10008.5.1.4.1.1.88.73",  # Patient Radiation Dose SR, A.35.18
})

# PS3.15 E.3.4 Clean Structured Content: the value types whose values can name or
# date a patient.  Codes, numbers, units, structure and SOP classes stay.
WITHHELD_VALUE_TYPES = frozenset({"TEXT", "PNAME", "DATE", "TIME", "DATETIME", "UIDREF"})
WITHHELD = "withheld (--redact)"

# PS3.3 C.17.3.2.4 Relationship Type; CONTAINS is the tree itself and is not shown.
# PS3.3 C.17.3.2 Table C.17-5: Concept Name Code Sequence is Type 1C, required for
# these value types only (and the root); without one these show their value alone.
CONCEPT_NAME_OPTIONAL = frozenset({"CONTAINER", "IMAGE", "COMPOSITE", "WAVEFORM", "SCOORD", "SCOORD3D", "TCOORD", ""})
NO_CONCEPT_NAME = "(no concept name)"

RELATIONSHIP_LABELS = {
    "CONTAINS": "",
    "HAS PROPERTIES": "Has properties",
    "HAS OBS CONTEXT": "Has observation context",
    "HAS ACQ CONTEXT": "Has acquisition context",
    "HAS CONCEPT MOD": "Has concept modifier",
    "INFERRED FROM": "Inferred from",
    "SELECTED FROM": "Selected from",
}

# What link_of's URL is, by its ending: shown inline rather than only linked.
PICTURE_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg", ".webp")
VIDEO_SUFFIXES = (".mp4",)

KEY_OBJECT_DESCRIPTION = ("DCM", "113012")  # TID 2010

# Headline values of a dose report: (title, irradiation event container, columns
# of (label, NUM concept) read from within each event, accumulated totals).
DOSE_HEADLINES = (
    ("CT irradiation events", ("DCM", "113819"),  # TID 10013 CT Irradiation Event Data
     (("CTDIvol", ("DCM", "113830")), ("DLP", ("DCM", "113838"))),
     (("DCM", "113813"),)),  # TID 10012 CT Dose Length Product Total
    ("Projection X-ray irradiation events", ("DCM", "113706"),  # TID 10003
     (("Dose area product", ("DCM", "122130")), ("Dose (RP)", ("DCM", "113738"))),
     (("DCM", "113722"), ("DCM", "113725"))),  # TID 10002 DAP Total, Dose (RP) Total
)
EVENT_PROTOCOL = ("DCM", "125203")  # Acquisition Protocol, TID 10013 / 10003
EVENT_TARGET_REGION = ("DCM", "123014")


@dataclasses.dataclass
class Shown:
    """One value as the page and the outline show it.

    `kind` says how it is marked up: ``value`` (plain text), ``code`` (a
    CodeMeaning, `detail` its designator:value), ``object`` (a referenced
    instance, `detail` its UID, `href` this run's output of it), ``reference``
    (a by-reference item, `href` its anchor), ``missing``, ``withheld``.
    """

    text: str
    kind: str = "value"
    detail: str = ""
    href: str | None = None
    title: str = ""  # a tooltip: a unit's meaning
    picture: bool = False  # an IMAGE reference: its output is shown inline when it is a picture or video


@dataclasses.dataclass
class ContentItem:
    """One content item of PS3.3 C.17.3, read into plain values."""

    position: str  # "1.2.3": the path of ordinals that ReferencedContentItemIdentifier uses
    relationship: str
    value_type: str
    concept: str
    concept_code: tuple[str, str] | None
    values: list[Shown]
    children: list[ContentItem]
    continuous: bool = False
    observed: Shown | None = None
    reference: str | None = None  # by-reference: the position of the item it points to


@dataclasses.dataclass
class Report:
    """An SR document read: its header, its tree, and what the page shows above the tree."""

    sop_class: str
    title: str
    header: list[tuple[str, list[Shown]]]
    root: ContentItem
    by_position: dict[str, ContentItem]
    withheld: int
    withhold: bool


# -----------------------------------------------------------------------------
# Reading the tree
# -----------------------------------------------------------------------------
class _Reading:
    """The state of one walk over a tree: the link lookup, the redaction switch, what was found."""

    def __init__(self, link_of: Callable[[str], str | None], withhold: bool):
        self.link_of = link_of
        self.withhold = withhold
        self.withheld = 0
        self.by_position: dict[str, ContentItem] = {}

    def item(self, ds: Dataset, position: str, depth: int) -> ContentItem:
        """One content item and, depth first, its children (PS3.3 C.17.3.2)."""
        if depth > SR_MAX_DEPTH:
            raise CorruptFile(f"SR content nested deeper than {SR_MAX_DEPTH} levels")
        children = [self.item(child, f"{position}.{number}", depth + 1)
                    for number, child in enumerate(content_sequence(ds), 1)]
        relationship = string_value(_get(ds, "RelationshipType")).upper()
        value_type = string_value(_get(ds, "ValueType")).upper()
        concept_item = _first(ds, "ConceptNameCodeSequence")
        concept_code = _code_key(concept_item)
        concept = _code_meaning(concept_item)
        if not concept and (depth == 0 or value_type not in CONCEPT_NAME_OPTIONAL):
            concept = NO_CONCEPT_NAME
        reference = None
        if not value_type and "ReferencedContentItemIdentifier" in ds:
            reference = referenced_position(_get(ds, "ReferencedContentItemIdentifier"))
            values = []
        else:
            values = self.values(ds, value_type, children)
        item = ContentItem(
            position=position, relationship=relationship, value_type=value_type,
            concept=concept, concept_code=concept_code, values=values, children=children,
            continuous=string_value(_get(ds, "ContinuityOfContent")).upper() == "CONTINUOUS",
            observed=self.observed(ds), reference=reference,
        )
        self.by_position[position] = item
        return item

    def values(self, ds: Dataset, value_type: str, children: list[ContentItem]) -> list[Shown]:
        """The item's value, by its Value Type (PS3.3 C.17.3.2.1, Table C.17-5)."""
        if self.withhold and value_type in WITHHELD_VALUE_TYPES:
            self.withheld += 1
            return [Shown(WITHHELD, "withheld")]
        if value_type == "CONTAINER":
            return []
        if value_type == "TEXT":
            return [_plain(string_value(_get(ds, "TextValue"), strip=False).strip())]
        if value_type == "CODE":
            return [code_shown(_first(ds, "ConceptCodeSequence"))]
        if value_type == "NUM":
            return numeric_values(ds)
        if value_type == "DATE":
            return [_plain(date_text(_get(ds, "Date")))]
        if value_type == "TIME":
            return [_plain(time_text(_get(ds, "Time")))]
        if value_type == "DATETIME":
            return [_plain(datetime_text(_get(ds, "DateTime")))]
        if value_type == "PNAME":
            return [_plain(person_name_text(_get(ds, "PersonName")))]
        if value_type == "UIDREF":
            return [_plain(uid_text(_get(ds, "UID")))]
        if value_type in ("IMAGE", "COMPOSITE", "WAVEFORM"):
            return self.referenced_objects(ds, value_type)
        if value_type == "SCOORD":
            return self.spatial_coordinates(ds, children, 2)
        if value_type == "SCOORD3D":
            return self.spatial_coordinates(ds, children, 3)
        if value_type == "TCOORD":
            return self.temporal_coordinates(ds)
        if not value_type:
            return [Shown("(no value type)", "missing")]
        return [Shown(value_type, "missing")]  # a type this program does not know: named as is

    def observed(self, ds: Dataset) -> Shown | None:
        """Observation DateTime (C.17.3.2.1), which dates the report like a DATETIME item does."""
        if "ObservationDateTime" not in ds:
            return None
        if self.withhold:
            self.withheld += 1
            return Shown(WITHHELD, "withheld")
        return Shown(datetime_text(_get(ds, "ObservationDateTime")))

    def referenced_objects(self, ds: Dataset, value_type: str) -> list[Shown]:
        """IMAGE, COMPOSITE, WAVEFORM (C.18.3-C.18.5): the instance, linked when this run converted it."""
        referenced = _first(ds, "ReferencedSOPSequence")
        if referenced is None:
            return [Shown("(no referenced instance)", "missing")]
        shown = [self.object_shown(referenced, value_type == "IMAGE")]
        frames = _numbers_text(_get(referenced, "ReferencedFrameNumber"))
        if frames:
            shown.append(Shown(f"frames {frames}"))
        segments = _numbers_text(_get(referenced, "ReferencedSegmentNumber"))
        if segments:
            shown.append(Shown(f"segments {segments}"))
        channels = _numbers(_get(referenced, "ReferencedWaveformChannels"))
        if channels:  # pairs of (multiplex group, channel), C.18.5.1.1
            pairs = ", ".join(f"{_number_text(m)}/{_number_text(c)}" for m, c in zip(channels[::2], channels[1::2]))
            shown.append(Shown(f"channels {pairs}"))
        state = _first(referenced, "ReferencedSOPSequence")  # a presentation state, C.18.4
        if state is not None:
            shown.append(Shown("with"))
            shown.append(self.object_shown(state, False))
        return shown

    def object_shown(self, referenced: Dataset, picture: bool) -> Shown:
        """One referenced instance: its SOP class by name, linked to this run's output when known."""
        sop_class = string_value(_get(referenced, "ReferencedSOPClassUID"))
        instance = string_value(_get(referenced, "ReferencedSOPInstanceUID"))
        href = _relative_url(self.link_of(instance)) if instance else None
        return Shown(
            sop_class_name(sop_class), "object", href=href,
            detail="" if self.withhold else instance, picture=picture,
        )

    def spatial_coordinates(self, ds: Dataset, children: list[ContentItem], dimensions: int) -> list[Shown]:
        """SCOORD (C.18.6) and SCOORD3D (C.18.9): graphic type, points, where they lie."""
        graphic = string_value(_get(ds, "GraphicType")).capitalize() or "(no graphic type)"
        data = _numbers(_get(ds, "GraphicData"))
        count = len(data) // dimensions
        text = f"{graphic}, {count} point{'s' if count != 1 else ''}"
        if 0 < count <= 4:  # a handful of coordinates reads; a contour's hundreds do not
            points = [data[i:i + dimensions] for i in range(0, count * dimensions, dimensions)]
            text += ": " + " ".join("(" + ", ".join(_number_text(v) for v in p) + ")" for p in points)
        shown = [Shown(text)]
        if dimensions == 3:
            frame = string_value(_get(ds, "ReferencedFrameOfReferenceUID"))
            if frame and not self.withhold:
                shown.append(Shown("in frame of reference", detail=frame))
        # PS3.3 C.18.6: the image an SCOORD lies on is its SELECTED FROM child.
        for child in children:
            if child.relationship == "SELECTED FROM" and child.value_type == "IMAGE" and child.values:
                shown += [Shown("on"), child.values[0]]
                break
        return shown

    def temporal_coordinates(self, ds: Dataset) -> list[Shown]:
        """TCOORD (C.18.7): the range type and how many samples, offsets or date-times it names."""
        text = string_value(_get(ds, "TemporalRangeType")).capitalize() or "(no temporal range type)"
        samples = _numbers(_get(ds, "ReferencedSamplePositions"))
        offsets = _numbers(_get(ds, "ReferencedTimeOffsets"))
        moments = _get(ds, "ReferencedDateTime")
        if samples:
            text += f", sample positions {_numbers_text(samples)}"
        elif offsets:
            text += f", time offsets {_numbers_text(offsets)} s"
        elif moments:
            if self.withhold:
                self.withheld += 1
                return [Shown(text + ", date-times"), Shown(WITHHELD, "withheld")]
            listed = moments if is_multi(moments) else [moments]
            text += ", " + ", ".join(datetime_text(m) for m in listed)
        return [Shown(text)]


def content_sequence(ds: Dataset) -> list[Dataset]:
    """The items of a Content Sequence (0040,A730); CorruptFile if it is not a sequence of items."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    if "ContentSequence" not in ds:
        return []
    try:
        value = ds["ContentSequence"].value
    except Exception as exc:
        raise CorruptFile(f"unreadable SR Content Sequence: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if value is None or value == "":
        return []
    if not isinstance(value, (Sequence, list)) or not all(isinstance(item, Dataset) for item in value):
        raise CorruptFile("SR Content Sequence is not a sequence of items")
    return list(value)


def referenced_position(identifier) -> str | None:
    """The position a by-reference item points to (C.17.3.2.5: ordinals from the root, 1-based)."""
    numbers = _numbers(identifier)
    return ".".join(str(int(n)) for n in numbers) if numbers else None


def numeric_values(ds: Dataset) -> list[Shown]:
    """NUM (C.18.1): the value with its unit, or why there is none (Numeric Value Qualifier)."""
    measured = _first(ds, "MeasuredValueSequence")
    qualifier = code_shown(_first(ds, "NumericValueQualifierCodeSequence"))
    if measured is None:
        return [qualifier if qualifier.kind == "code" else Shown("no value", "missing")]
    number = string_value(_get(measured, "NumericValue"))
    if is_multi(_get(measured, "NumericValue")):
        number = ", ".join(string_value(v) for v in _get(measured, "NumericValue"))
    if not number and "FloatingPointValue" in measured:
        number = _number_text(_get(measured, "FloatingPointValue"))
    shown = [Shown(f"{number} {unit_text(_first(measured, 'MeasurementUnitsCodeSequence'))}".strip(),
                   title=_code_title(_first(measured, "MeasurementUnitsCodeSequence")))]
    if not number:
        shown = [Shown("no value", "missing")]
    if qualifier.kind == "code":
        shown.append(qualifier)
    return shown


def unit_text(unit: Dataset | None) -> str:
    """A unit as it is written: its UCUM code (``mm``, ``mGy.cm``), as dsr2html shows it.

    UCUM's unity ``1`` and its annotations (``{ratio}``) are no symbol a reader
    knows: those show their Code Meaning instead.
    """
    if unit is None:
        return ""
    value = string_value(_get(unit, "CodeValue"))
    meaning = string_value(_get(unit, "CodeMeaning"))
    if value == "1" or value.startswith("{") or not value:
        return meaning or value
    return value


def code_shown(code: Dataset | None) -> Shown:
    """A coded entry (PS3.3 8.8 Code Sequence Macro): its meaning, its designator:value beside it."""
    if code is None:
        return Shown("(no code)", "missing")
    key = _code_key(code)
    detail = f"{key[0]}:{key[1]}" if key else ""
    return Shown(_code_meaning(code) or detail or "(no code meaning)", "code", detail=detail)


def sop_class_name(uid: str) -> str:
    """A SOP class by its registered name; an unknown one as its UID."""
    from pydicom.uid import UID

    if not uid:
        return "(no SOP class)"
    name = UID(uid).name
    return name if name and name != uid else f"SOP class {uid}"


# -----------------------------------------------------------------------------
# Reading values safely: a damaged element shows as missing, never aborts the report
# -----------------------------------------------------------------------------
def _get(ds: Dataset, keyword: str):
    try:
        return ds.get(keyword)
    except Exception:
        return None


def _items(ds: Dataset, keyword: str) -> list[Dataset]:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    value = _get(ds, keyword)
    if not isinstance(value, (Sequence, list)):
        return []
    return [item for item in value if isinstance(item, Dataset)]


def _first(ds: Dataset, keyword: str) -> Dataset | None:
    items = _items(ds, keyword)
    return items[0] if items else None


def _plain(text: str) -> Shown:
    return Shown(text) if text else Shown("(no value)", "missing")


def _code_key(code: Dataset | None) -> tuple[str, str] | None:
    """(designator, value) of a code; Long Code Value and URN Code Value stand in for Code Value (8.8)."""
    if code is None:
        return None
    value = string_value(_get(code, "CodeValue")) or string_value(_get(code, "LongCodeValue")) or string_value(_get(code, "URNCodeValue"))
    designator = string_value(_get(code, "CodingSchemeDesignator"))
    return (designator, value) if value or designator else None


def _code_meaning(code: Dataset | None) -> str:
    return string_value(_get(code, "CodeMeaning")) if code is not None else ""


def _code_title(code: Dataset | None) -> str:
    key = _code_key(code)
    meaning = _code_meaning(code)
    return f"{meaning} ({key[0]}:{key[1]})" if key else meaning


def _relationship_label(relationship: str) -> str:
    if relationship in RELATIONSHIP_LABELS:
        return RELATIONSHIP_LABELS[relationship]
    return relationship.capitalize()  # an unknown type, shown as recorded


def _numbers(value) -> list[float]:
    if value is None or value == "":
        return []
    listed = value if is_multi(value) else [value]
    numbers = []
    for v in listed:
        try:
            numbers.append(float(v))
        except (TypeError, ValueError):
            continue
    return numbers


def _number_text(value) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return string_value(value)
    return f"{number:g}"


def _numbers_text(value) -> str:
    return ", ".join(_number_text(v) for v in _numbers(value))


def _relative_url(url: str | None) -> str | None:
    """link_of's answer when it is a relative URL; anything with a scheme (``javascript:``) is dropped."""
    if not url:
        return None
    return None if urlsplit(url).scheme or url.startswith("//") else url


def _media_of(url: str) -> str | None:
    path = urlsplit(url).path.lower()
    if path.endswith(PICTURE_SUFFIXES):
        return "img"
    if path.endswith(VIDEO_SUFFIXES):
        return "video"
    return None
