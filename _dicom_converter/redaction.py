"""Redaction (--redact): PS3.15 Annex E, the Basic Application Level Confidentiality Profile.

Attributes follow Table E.1-1 (dicom-anonymizer's copy of it); UIDs become stand-ins keyed by
the run's secret; burned-in text is found by deid's CTP recipes and blanked or withheld.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from _dicom_converter.base import CorruptFile
from _dicom_converter.dump import text_of
from _dicom_converter.pixels.display import rendered_frames
from _dicom_converter.reading import is_multi, read_dataset
from _dicom_converter.sop import WHOLE_SLIDE_CLASS

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset

    from _dicom_converter.base import Options


# Table E.1-1 comes from dicom-anonymizer (Kitware): of the maintained packages it
# is the one that carries the whole table, 655 rows of the 2026c edition with the
# retired attributes and the overlay and curve repeating groups, each under its
# basic-profile action.  deid ships ~70 header actions of its own choosing, and
# dicognito decides by VR, with no table (compared 2026-12).  The module is data:
# lists of (group, element) or (group, element, group mask, element mask) per action.
PROFILE_TABLE = "dicomanonymizer.dicom_anonymization_databases.dicomfields_2026c"
PROFILE_ACTIONS = {"D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D",
                   "X_Z_TAGS": "X/Z", "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*"}
REMOVED_ACTIONS = ("X", "X/Z", "X/D", "X/Z/D")  # "remove" is allowed by each: the outputs are not DICOM files
EMPTIED_ACTIONS = ("Z", "D", "Z/D")  # a dummy value is shown as no value: there is no IOD to keep valid
FILE_META_REMOVED = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)  # AE titles, private info
CONTENT_SEQUENCE = 0x0040A730
DEIDENTIFIED = "PS3.15 basic profile, Table E.1-1 (--redact)"  # in the .txt: --skip-existing tells runs apart
TEXT_VALUE = 0x0040A160


@functools.lru_cache(maxsize=None)
def profile_table() -> tuple[dict[int, str], tuple[tuple[int, int, str], ...]]:
    """Table E.1-1 as {tag: action} and its repeating-group rows as (tag, mask, action)."""
    import importlib

    table = importlib.import_module(PROFILE_TABLE)
    exact: dict[int, str] = {}
    masked: list[tuple[int, int, str]] = []
    for name, action in PROFILE_ACTIONS.items():
        for row in getattr(table, name):
            if len(row) == 2:
                exact[row[0] << 16 | row[1]] = action
            else:
                group, element, group_mask, element_mask = row
                masked.append((group << 16 | element, group_mask << 16 | element_mask, action))
    return exact, tuple(masked)


def profile_action(tag: int) -> str | None:
    """The basic profile's action for `tag` (X, Z, D, U or a combination), None to keep it."""
    exact, masked = profile_table()
    action = exact.get(tag)
    if action is None:
        action = next((action for value, mask, action in masked if tag & mask == value), None)
    return action


def deidentified(ds: Dataset, salt: str) -> Dataset:
    """A copy of `ds` under the basic de-identification profile (PS3.15 E.1, Table E.1-1).

    Every element at every depth gets its table action by tag, whatever its
    VR or keyword: removed (X), emptied (Z, D), or its instance UID replaced
    (U) by one derived from it and this run's secret `salt`, so references
    between files still match within the run but cannot be traced back.
    Private tags and the file meta's AE titles are removed, and so is any
    person name (PN) the table does not list (2026c misses Evaluator Name and
    Secondary Reviewer Name); what else the table does not list stays
    (modality, sizes, windows, timing).  Structured
    content follows the Clean Structured Content option (`clean_content_items`).
    """
    import copy

    out = copy.deepcopy(ds)  # values still on disk are copied unread
    _apply_profile(out, salt)
    meta = getattr(out, "file_meta", None)
    if meta is not None:
        for tag in FILE_META_REMOVED:
            meta.pop(tag, None)
        _apply_profile(meta, salt)
    return out


def _apply_profile(ds: Dataset, salt: str) -> None:
    from pydicom.dataelem import DataElement

    for tag in list(ds.keys()):
        action = profile_action(int(tag))
        if action in REMOVED_ACTIONS or (action is None and tag.is_private):
            del ds[tag]
            continue
        raw = ds.get_item(tag, keep_deferred=True)
        if is_deferred(raw):  # a bulk value, never a sequence: act on it unread
            if action is not None:
                ds[tag] = DataElement(tag, raw.VR or _dictionary_vr(tag), None)
            continue
        element = ds[tag]
        if action is None and element.VR == "PN":  # a person's name the table misses (Evaluator Name)
            action = "Z"
        if tag == CONTENT_SEQUENCE and element.VR == "SQ":
            clean_content_items(element.value, salt)
        elif action in EMPTIED_ACTIONS:
            element.value = [] if element.VR == "SQ" else None
        elif action == "U":
            element.value = _replaced_uids(element.value, salt)
        elif element.VR == "SQ":  # kept, or X/Z/U*: kept with the instance UIDs inside replaced
            for item in element.value:
                _apply_profile(item, salt)


def clean_content_items(items, salt: str) -> None:
    """PS3.15 E.3.4 Clean Structured Content: a report keeps its codes, numbers and structure.

    The basic profile would remove the Content Sequence whole; instead each
    content item gets the table's actions (its person names, dates, times and
    date-times emptied, its UIDs replaced, nested items likewise) and TEXT
    items lose their text, which can name anyone.
    """
    for item in items:
        _apply_profile(item, salt)
        if TEXT_VALUE in item:
            item[TEXT_VALUE].value = None


def is_deferred(raw) -> bool:
    from pydicom.dataelem import RawDataElement

    return isinstance(raw, RawDataElement) and raw.value is None and bool(raw.length)


def _dictionary_vr(tag: int) -> str:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


def _replaced_uids(value, salt: str):
    if isinstance(value, (bytes, bytearray)):  # a UID stored with VR UN: no use shown as bytes
        return None
    if is_multi(value):
        return [replace_uid(str(v), salt) for v in value]
    return replace_uid(str(value), salt) if value else value


def as_shown(ds: Dataset, options: Options) -> Dataset:
    """`ds` as the outputs show it: de-identified under ``--redact``, else itself."""
    return deidentified(ds, options.redact_salt) if options.redact_salt else ds


def patient_stand_in(ds: Dataset, options: Options) -> dict:
    """Under ``--redact``, who the patient is as a keyed hash of Patient ID, Issuer, Name and
    Birth Date (with the run's secret, which shards share), so that the index page tells
    patients apart ("Patient 1", "Patient 2") while showing nothing identifying; else nothing."""
    if not options.redact_salt:
        return {}
    import hashlib
    import hmac

    identity = patient_identity(ds).encode("utf-8", "backslashreplace")
    return {"patient_key": hmac.new(options.redact_salt.encode("ascii"), identity, hashlib.sha256).hexdigest()[:16]}


def patient_identity(ds: Dataset) -> str:
    """Who the patient is, as the values that tell two patients apart (Patient ID, Issuer, Name,
    Birth Date): never shown, only compared (`patient_stand_in`, --layout study's folders)."""
    def value(keyword: str) -> str:
        try:
            return text_of(ds.get(keyword, "") or "").strip()
        except Exception:  # a damaged element tells nothing
            return ""

    return "\\".join(value(keyword) for keyword in ("PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate"))


def replace_uid(uid: str, salt: str) -> str:
    """A stand-in for an instance UID (a 2.25 UUID-derived UID); registered DICOM UIDs stay."""
    import hashlib

    from pydicom.uid import UID

    if not uid or UID(uid).name != uid:  # a registered UID (SOP class, transfer syntax…)
        return uid
    digest = hashlib.sha256(f"{salt}:{uid}".encode()).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


NAME_OR_IDENTIFIER = r"(Name|Names|ID|IDs|Number|Numbers|BirthDate|Address)$"  # by keyword, of the table's rows


def identifying_strings(ds: Dataset) -> list[str]:
    """Parts of the values that must not appear in output names under ``--redact``.

    Hospital exports name folders and files after the patient, an ID or an
    accession number: the top-level values of the table's rows that are a
    person name (by VR or by keyword: an operator's name stored as LO), an
    identifier, a number, a birth date or an address, split into words.
    """
    import re

    found = []
    for tag in ds.keys():
        action = profile_action(int(tag))
        raw = ds.get_item(tag, keep_deferred=True)
        if action in (None, "U") or is_deferred(raw):
            continue
        try:
            element = ds[tag]
        except Exception:
            continue
        if element.VR == "SQ" or not (element.VR == "PN" or re.search(NAME_OR_IDENTIFIER, element.keyword)):
            continue
        for item in (element.value if is_multi(element.value) else [element.value]):
            for part in re.split(r"[\s^=,]+", text_of(item)):
                if len(part) >= 3:
                    found.append(part.casefold())
    return found


# Burned-in text.  The rules are CTP's DicomPixelAnonymizer library of where
# devices burn text in, by manufacturer, model and image type, as deid ships and
# keeps it (its data file `deid.dicom`, read by deid's own recipe parser).  deid
# brings matplotlib into the environment (78 MB installed), which this program
# never imports: deid's own matcher lives in `deid.dicom`, whose import pulls in
# pyplot (about 1 s a process, and a font cache written on first use), so the
# labels are matched by `label_matches`, after deid's `deid.dicom.filter`.  One
# difference, on purpose: deid 0.4.13 ANDs every line of a label and ignores a
# line's leading `||`; this applies `||` as written (CTP's meaning), which can
# only flag more images, never fewer.
BURNED_IN_RECIPE = "dicom"
SECONDARY_CAPTURE_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.1",
                                       "1.2.840.10008.5.1.4.1.1.7.2", "1.2.840.10008.5.1.4.1.1.7.3",
                                       "1.2.840.10008.5.1.4.1.1.7.4"})
VISIBLE_LIGHT_CLASSES = "1.2.840.10008.5.1.4.1.1.77.1."  # endoscopy, microscopy, photography (prefix)
TEXT_BEARING_MODALITIES = frozenset({"US", "IVUS", "XC", "ES", "GM", "OT", "DOC"})


@functools.lru_cache(maxsize=None)
def burned_in_rules() -> dict[str, list[dict]]:
    """deid's filter sections: ``whitelist``, ``graylist``, ``blacklist``, each a list of labels."""
    from deid.logger import bot

    bot.level = 0  # QUIET: deid logs every line it parses at DEBUG on stderr
    from deid.config import DeidRecipe

    return DeidRecipe(BURNED_IN_RECIPE).get_filters()


def _filter_holds(ds: Dataset, action: str, field: str, value: str) -> bool:
    """One line of a label, as `deid.dicom.filter` means it: case-insensitive, over the value's text."""
    import re

    content = ds.get(int(field, 0) if field.startswith("0x") else field)
    content = getattr(content, "value", content)
    action = action.lower().strip()
    if action == "missing":
        return content is None
    if action == "present":
        return content is not None
    if action == "empty":
        return content is not None and not content
    texts = [str(c).lower().strip() for c in (content if isinstance(content, list) else [content]) if c is not None]
    term = str(value).lower().strip()
    if action in ("equals", "notequals"):
        return any(text == term for text in texts) == (action == "equals")
    if action in ("contains", "notcontains"):
        try:
            return any(re.search(term, text) for text in texts) == (action == "contains")
        except re.error:
            return False
    return False


def label_matches(ds: Dataset, label: dict) -> bool:
    """Whether a deid label's lines hold for `ds`: ``+`` is and, ``||`` or, left to right."""
    result = None
    for group in label["filters"]:
        values = group["value"]
        flags = [_filter_holds(ds, action, field, values[n] if n < len(values) else "")
                 for n, (action, field) in enumerate(zip(group["action"], group["field"]))]
        held = flags[0]
        for n, flag in enumerate(flags[1:]):
            inner = group["InnerOperators"][n] if n < len(group["InnerOperators"]) else "and"
            held = (held or flag) if inner == "or" else (held and flag)
        result = held if result is None else (result or held) if group["operator"] == "or" else (result and held)
    return bool(result) if label["filters"] else bool(label["coordinates"])


@dataclasses.dataclass(frozen=True)
class PixelPlan:
    """What ``--redact`` does to an image's pixels: show them, blank rectangles, or withhold the image.

    `steps` are (blank, (x0, y0, x1, y1)) applied in order, ends exclusive:
    blank=False keeps a rectangle an earlier step blanked (deid's keep
    coordinates), so "all, then keep each ultrasound region" blanks the rest.
    """

    action: str  # "show" | "blank" | "withhold"
    reason: str
    steps: tuple[tuple[bool, tuple[int, int, int, int]], ...] = ()

    def describe(self) -> str:
        if self.action != "blank":
            return f"{'shown' if self.action == 'show' else 'withheld'}: {self.reason}"
        blanked = "; ".join(f"{'blanked' if blank else 'kept'} x {x0}-{x1}, y {y0}-{y1}"
                            for blank, (x0, y0, x1, y1) in self.steps)
        return f"{blanked} ({self.reason})"


def burned_in_text_plan(ds: Dataset) -> PixelPlan:
    """How ``--redact`` keeps burned-in text out of this image's outputs.

    The basic profile leaves pixel data to its Clean Pixel Data Option
    (PS3.15 E.3.1); this applies it and fails safe, in this order:
    1. a deid whitelist label (Burned In Annotation NO, a known clean device)
       and no device rectangles: shown as it is;
    2. an image with a Sequence of Ultrasound Regions (PS3.3 C.8.5.5), not
       marked NO: everything outside the union of its regions is blanked;
    3. the rectangles of every matching deid graylist label are blanked;
    4. else withheld: a blacklist label matches, Burned In Annotation is YES,
       the image is a whole slide's label (C.8.12.4.1.1, Image Type LABEL: checked first),
       or the flag is absent on a kind that carries text (ultrasound,
       secondary capture, endoscopy, photography) and no rule says where it is.
    """
    rules = burned_in_rules()
    matched = {name: [label for label in rules.get(name, []) if label_matches(ds, label)]
               for name in ("whitelist", "graylist", "blacklist")}
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    device_steps, devices = [], []
    for label in matched["graylist"]:
        for keep, coordinates in label["coordinates"]:
            rectangles = _rectangles(ds, str(coordinates), rows, columns)
            device_steps += [(not keep, rectangle) for rectangle in rectangles]
            if rectangles:
                devices.append(_label_name(label))
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    image_type = [str(value).upper() for value in (ds.get("ImageType") or [])]
    if str(ds.get("SOPClassUID", "")) == WHOLE_SLIDE_CLASS and "LABEL" in image_type[2:3]:
        return PixelPlan("withhold", "a slide's label image, which carries the patient's name and barcode")
    if matched["whitelist"] and not device_steps:
        return PixelPlan("show", f"deid rule '{_label_name(matched['whitelist'][0])}'")
    steps, reasons = [], []
    regions = _rectangles(ds, "from:SequenceOfUltrasoundRegions", rows, columns)
    if regions and flag != "NO":
        steps = [(True, (0, 0, columns, rows))] + [(False, region) for region in regions]
        reasons.append("outside the ultrasound regions")
    if device_steps:
        steps += device_steps
        reasons.append("deid rule " + ", ".join(f"'{name}'" for name in dict.fromkeys(devices)))
    if steps:
        return PixelPlan("blank", " and ".join(reasons), tuple(steps))
    if matched["blacklist"]:
        return PixelPlan("withhold", f"deid rule '{_label_name(matched['blacklist'][0])}' flags burned-in "
                         "text that no rule locates")
    if flag == "YES":
        return PixelPlan("withhold", "Burned In Annotation is YES and no rule says where the text is")
    sop_class = str(ds.get("SOPClassUID", ""))
    if not flag and (str(ds.get("Modality", "")).upper() in TEXT_BEARING_MODALITIES
                     or sop_class in SECONDARY_CAPTURE_CLASSES or sop_class.startswith(VISIBLE_LIGHT_CLASSES)):
        return PixelPlan("withhold", "a kind of image that carries burned-in text, no Burned In Annotation "
                         "flag, and no rule says where the text is")
    return PixelPlan("show", "no rule flags burned-in text")


def _label_name(label: dict) -> str:
    return label.get("name", "").removeprefix("LABEL").split("#")[0].strip()


def _rectangles(ds: Dataset, coordinates: str, rows: int, columns: int) -> list[tuple[int, int, int, int]]:
    """A deid coordinate ("x0,y0,x1,y1", "all", "from:<sequence of regions>") as rectangles in the image."""
    if coordinates.strip().lower() == "all":
        return [(0, 0, columns, rows)]
    if coordinates.startswith("from:"):  # PS3.3 C.8.5.5.1: region corners, inclusive
        found = []
        for region in ds.get(coordinates[5:].strip()) or []:
            try:
                corners = [int(region[keyword].value) for keyword in
                           ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1", "RegionLocationMaxY1")]
            except (KeyError, TypeError, ValueError):
                continue
            found.append((corners[0], corners[1], corners[2] + 1, corners[3] + 1))
        return found
    try:
        x0, y0, x1, y1 = (int(part) for part in coordinates.split(",") if part.strip())
    except ValueError:
        return []
    return [(x0, y0, x1, y1)]


def pixel_plan(ds: Dataset, options: Options) -> PixelPlan | None:
    """The plan for this image's pixels, None when they are shown as they are (no --redact, or
    ``--redact-pixels keep``)."""
    if not options.redact_salt or options.redact_pixels == "keep":
        return None
    return burned_in_text_plan(ds)


def blank_mask(plan: PixelPlan, rows: int, columns: int) -> np.ndarray:
    """True where `plan` blanks a frame of `rows` x `columns`."""
    import numpy as np

    mask = np.zeros((rows, columns), dtype=bool)
    for blank, (x0, y0, x1, y1) in plan.steps:
        mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = blank
    return mask


def shown_image(path: Path, options: Options, image: Dataset | None = None) -> tuple[Dataset, np.ndarray | None]:
    """A single-frame image's dataset (read unless given) and its 8-bit display frame as its own
    outputs show it (``--redact``'s plan applied): what a segmentation or a dose is drawn over.
    None: withheld."""
    image = image if image is not None else read_dataset(path)
    plan = pixel_plan(image, options)
    if plan is not None and plan.action == "withhold":
        return image, None
    frames, _ = rendered_frames(path, image, 255, options.window, not options.redact_salt)
    if plan is not None and plan.action == "blank":
        frames = blanked(frames, [blank_mask(plan, int(image.Rows), int(image.Columns))])
    return image, next(frames, None)


def blanked(frames: Iterable[np.ndarray], masks: Iterable[np.ndarray | None]) -> Iterator[np.ndarray]:
    """Each display frame with its mask's pixels set to black (before any downscaling)."""
    for frame, mask in zip(frames, masks):
        if mask is not None and mask.any():
            if mask.shape != frame.shape[:2]:
                raise CorruptFile(f"a frame of {frame.shape[1]} x {frame.shape[0]} where the file says "
                                  f"{mask.shape[1]} x {mask.shape[0]}: cannot place the blanking")
            if not frame.flags.writeable:
                frame = frame.copy()
            frame[mask] = 0
        yield frame
