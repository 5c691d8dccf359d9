"""Values as people read them: dates, times, names, UIDs and sexes from their DICOM
forms (PS3.5 6.2), shown as they are when they do not parse, never a crash.
"""

from __future__ import annotations

import re

from _dicom_converter.reading import is_multi


# -----------------------------------------------------------------------------
# Values as people read them
# -----------------------------------------------------------------------------
def date_text(value) -> str:
    """DA (PS3.5 6.2) YYYYMMDD as YYYY-MM-DD; anything else as stored."""
    text = string_value(value)
    match = re.fullmatch(r"(\d{4})\.?(\d{2})\.?(\d{2})", text)  # the dots: ACR-NEMA dates
    return "-".join(match.groups()) if match else text


def time_text(value) -> str:
    """TM (PS3.5 6.2) HHMMSS.FFFFFF as HH:MM:SS.FFFFFF (minutes and seconds are optional)."""
    text = string_value(value)
    match = re.fullmatch(r"(\d{2}):?(\d{2})?:?(\d{2})?(\.\d+)?", text)
    if not match:
        return text
    hours, minutes, seconds, fraction = match.groups()
    return ":".join(p for p in (hours, minutes, seconds) if p) + (fraction or "")


def datetime_text(value) -> str:
    """DT (PS3.5 6.2) YYYYMMDDHHMMSS.FFFFFF&ZZXX as ``YYYY-MM-DD HH:MM:SS.FFFFFF +ZZ:XX``."""
    text = string_value(value)
    match = re.fullmatch(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d+)?([+-]\d{4})?", text)
    if not match:
        return text
    year, month, day, hours, minutes, seconds, fraction, offset = match.groups()
    shown = "-".join(p for p in (year, month, day) if p)
    if hours:
        shown += " " + ":".join(p for p in (hours, minutes, seconds) if p) + (fraction or "")
    if offset:
        shown += f" {offset[:3]}:{offset[3:]}"
    return shown


def person_name_text(value) -> str:
    """PN (PS3.5 6.2.1) as a name is written: "Given Middle Family, Suffix" with its prefix."""
    from pydicom.valuerep import PersonName

    if value is None or value == "":
        return ""
    if is_multi(value):
        return "; ".join(person_name_text(v) for v in value)
    name = value if isinstance(value, PersonName) else PersonName(str(value))
    try:
        parts = [name.name_prefix, name.given_name, name.middle_name, name.family_name]
        shown = " ".join(string_value(p) for p in parts if string_value(p))
        if string_value(name.name_suffix):
            shown += f", {string_value(name.name_suffix)}"
    except Exception:  # a value pydicom cannot split: as stored
        shown = ""
    return shown or string_value(str(name)).replace("^", " ").strip()


def uid_text(value) -> str:
    """A UID with its registered name when it has one (a SOP class, a transfer syntax)."""
    from pydicom.uid import UID

    uid = string_value(value)
    name = UID(uid).name if uid else ""
    return f"{uid} ({name})" if uid and name and name != uid else uid


def sex_text(value) -> str:
    """Patient's Sex (PS3.3 C.7.1.1) in words."""
    code = string_value(value).upper()
    return {"M": "male", "F": "female", "O": "other"}.get(code, code)


def string_value(value, strip: bool = True) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("latin-1")
    if is_multi(value):  # a single-valued attribute stored with a backslash: every value, as DICOM writes them
        value = "\\".join(str(v) for v in value)
    text = str(value).replace("\x00", "")
    # PS3.5 6.2: UT and ST lines end in CR LF; lone CRs occur too (test-SR.dcm has all three).
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.strip() if strip else text


def person_name_listed(value) -> str:
    """PN (PS3.5 6.2.1) as a viewer lists a patient: "FAMILY, Given Middle", prefix and suffix
    around it, then the ideographic and phonetic groups, when present, in parentheses
    ("YAMADA, Tarou (山田, 太郎; やまだ, たろう)").  A value pydicom cannot split is shown as stored."""
    from pydicom.valuerep import PersonName

    if value is None or value == "":
        return ""
    if is_multi(value):
        return "; ".join(person_name_listed(v) for v in value)
    try:
        name = value if isinstance(value, PersonName) else PersonName(str(value))
        groups = [_listed_group(group) for group in name.components]
    except Exception:
        return string_value(str(value)).replace("^", " ").strip()
    first, others = groups[0], [g for g in groups[1:] if g]
    if not first:
        return "; ".join(others)
    return first + (f" ({'; '.join(others)})" if others else "")


def _listed_group(group: str) -> str:
    """One component group of a PN ("Family^Given^Middle^Prefix^Suffix") as "Family, Given Middle"."""
    parts = [part.strip() for part in string_value(group).split("^")]
    if len(parts) > 5:  # not a PN: shown as stored, nothing dropped
        return " ".join(p for p in parts if p)
    family, given, middle, prefix, suffix = (parts + [""] * 5)[:5]
    given_names = " ".join(p for p in (prefix, given, middle) if p)
    shown = ", ".join(p for p in (family, given_names) if p)
    return f"{shown}, {suffix}" if shown and suffix else shown


def time_of_day(value) -> str:
    """TM (PS3.5 6.2) as hours and minutes ("14:03"), as a viewer's study list shows it; else as stored."""
    text = string_value(value)
    match = re.fullmatch(r"(\d{2}):?(\d{2})(?::?\d{2}(?:\.\d*)?)?", text)
    return f"{match.group(1)}:{match.group(2)}" if match else text


def age_text(value) -> str:
    """AS (PS3.5 6.2) "nnnD/W/M/Y" in words ("45 years", "3 months"); else as stored."""
    text = string_value(value)
    match = re.fullmatch(r"(\d{3})([DWMY])", text.upper())
    if not match:
        return text
    number = int(match.group(1))
    unit = {"D": "day", "W": "week", "M": "month", "Y": "year"}[match.group(2)]
    return f"{number} {unit}{'s' * (number != 1)}"


# Modality (0008,0060), the defined terms of PS3.3 C.7.3.1.1.1 as a viewer spells them out.
MODALITY_NAMES = {
    "AR": "autorefraction", "AU": "audio", "BDUS": "bone densitometry (ultrasound)", "BI": "biomagnetic imaging",
    "BMD": "bone densitometry (X-ray)", "CR": "computed radiography", "CT": "computed tomography",
    "DG": "diaphanography", "DOC": "document", "DX": "digital radiography", "ECG": "electrocardiography",
    "EPS": "cardiac electrophysiology", "ES": "endoscopy", "GM": "general microscopy",
    "HC": "hard copy", "HD": "hemodynamic waveform", "IO": "intra-oral radiography", "IVOCT": "intravascular OCT",
    "IVUS": "intravascular ultrasound", "KER": "keratometry", "KO": "key object selection",
    "LS": "laser surface scan", "MG": "mammography", "MR": "magnetic resonance", "NM": "nuclear medicine",
    "OAM": "ophthalmic axial measurements", "OCT": "optical coherence tomography", "OP": "ophthalmic photography",
    "OPT": "ophthalmic tomography", "OPV": "ophthalmic visual field", "OSS": "optical surface scan",
    "OT": "other", "PLAN": "plan", "PR": "presentation state", "PT": "positron emission tomography",
    "PX": "panoramic X-ray", "REG": "registration", "RESP": "respiratory waveform", "RF": "radiofluoroscopy",
    "RG": "radiographic imaging", "RTDOSE": "RT dose", "RTIMAGE": "RT image", "RTPLAN": "RT plan",
    "RTRECORD": "RT treatment record", "RTSTRUCT": "RT structure set", "RWV": "real world value map",
    "SEG": "segmentation", "SM": "slide microscopy", "SMR": "stereometric relationship", "SR": "structured report",
    "SRF": "subjective refraction", "STAIN": "automated slide stainer", "TG": "thermography",
    "US": "ultrasound", "VA": "visual acuity", "XA": "X-ray angiography", "XC": "external-camera photography",
}


def modality_text(value) -> str:
    """Modality with its code spelled out ("XA · X-ray angiography"); an unknown code as it is."""
    code = string_value(value).upper()
    name = MODALITY_NAMES.get(code)
    return f"{code} · {name}" if name else code
