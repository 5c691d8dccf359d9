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
