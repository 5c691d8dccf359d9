"""The element dump of the `.txt`: every element of a dataset, one per line, formatted from
its raw bytes where that is safe (the same text as pydicom's, several times faster).
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
from typing import TYPE_CHECKING, Callable, Iterator

from _dicom_converter.base import BULK_DATA_KEYWORDS, LONG_BINARY_BYTES, LONG_MULTI_VALUES, first_line
from _dicom_converter.reading import is_multi
from _dicom_converter.timing import _keyword_of

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


def text_of(value) -> str:
    return "" if value is None else str(value).replace("\x00", "").strip()


def dump_dataset(ds: Dataset, depth: int = 0) -> Iterator[str]:
    """Every element like ``dcmdump`` shows it: tag, VR, keyword, value.

    Sequences are indented item by item; private tags are included; bulk and
    long binary values are summarised by their size, never dumped.

    A value pydicom has not converted yet (a raw element) is formatted from
    its bytes when `_raw_line` can prove the text is the one its conversion
    would give; any other goes through pydicom (`ds[tag]`) as always.  Raw
    elements formatted so are left raw: whoever reads them later gets
    pydicom's own conversion.
    """
    from pydicom.dataelem import RawDataElement

    indent = "  " * depth
    fast = _raw_formatting_allowed() and _raw_charset_read(ds)
    encoding = _raw_text_encoding(ds) if fast else None
    creators: dict[int, object] = {}  # what `_raw_line` has read of private creators, by tag
    for tag in ds.keys():
        raw = ds.get_item(tag, keep_deferred=True)
        if fast and isinstance(raw, RawDataElement):
            line = _raw_line(ds, int(tag), raw, encoding, creators)
            if line is not None:
                yield indent + line
                continue
        tag_text, keyword, _ = _tag_info(tag)
        keyword = keyword or _private_name(ds, tag)
        size = _bulk_size(raw, keyword, getattr(ds, "filename", None) if depth == 0 else None)
        if size is not None:
            yield f"{indent}{tag_text} {raw.VR or '??'} {keyword:<32} <{size}, not dumped>"
            continue
        try:
            element = ds[tag]
        except Exception as exc:  # a single bad value must not lose the rest of the dump
            yield f"{indent}{tag_text} {getattr(raw, 'VR', '??')} {keyword:<32} <unreadable: {first_line(exc)}>"
            continue
        if element.VR == "SQ":
            yield f"{indent}{tag_text} SQ {keyword:<32} ({len(element.value)} items)"
            for number, item in enumerate(element.value, 1):
                yield f"{indent}  item {number}"
                yield from dump_dataset(item, depth + 2)
            continue
        yield f"{indent}{tag_text} {element.VR} {keyword:<32} {_value_text(element)}"


def value_texts(ds: Dataset, falsy_empty: bool = False) -> Callable[[str], str]:
    """A reader of ``text_of(ds.get(keyword, ""))`` by keyword (with `falsy_empty`, of
    ``text_of(ds.get(keyword, "") or "")``: a number 0 reads as ""), for the .txt's summary
    and the index record: an element pydicom has not converted yet whose value the formatters
    below can tell (one value, on one line) is read from its bytes and left raw, as the dump
    leaves it; any other is converted.  Converting the twenty-odd elements those two read was
    a tenth of a 512^2 CT slice's conversion."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import RawDataElement

    fast = _raw_formatting_allowed() and _raw_charset_read(ds)
    encoding = _raw_text_encoding(ds) if fast else None
    creators: dict[int, object] = {}

    def text(keyword: str) -> str:
        tag = tag_for_keyword(keyword)
        raw = ds.get_item(tag, keep_deferred=True) if fast and tag is not None else None
        if fast and tag is not None and raw is None:
            return ""  # not in the dataset
        if isinstance(raw, RawDataElement):
            found = _raw_value(ds, tag, raw, encoding, creators)
            if found is not None and found[0] not in _NOT_PLAIN_TEXT_VRS:
                vr, value, _ = found
                if value == "(empty)" and not (raw.value or b"").strip(b" \x00"):
                    return ""
                if "\\" not in value and " ⏎ " not in value:  # one value, one line: text_of's
                    return "" if falsy_empty and vr in _NUMBER_VRS and float(value) == 0 else value
        return text_of(ds.get(keyword, "") or "") if falsy_empty else text_of(ds.get(keyword, ""))

    return text


# VRs whose dump text is not ``str()`` of pydicom's value: bytes shown as hex, tags as (GGGG,EEEE)
_NOT_PLAIN_TEXT_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "AT"})
_NUMBER_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})  # 0 is falsy


def _bulk_size(raw, keyword: str, filename=None) -> str | None:
    """The size of a bulk value or of one still on disk (never read), or None for any other."""
    from pydicom.dataelem import RawDataElement

    deferred = isinstance(raw, RawDataElement) and raw.value is None and raw.length
    return _length_text(raw, filename) if keyword in BULK_DATA_KEYWORDS or deferred else None


def _length_text(raw, filename=None) -> str:
    """The size of a value, from the element header while the value is still on disk.

    Encapsulated pixel data has an undefined length; it runs to the end of the
    file but for its 8-byte sequence delimiter, which gives its size unread.
    """
    length = raw.length if hasattr(raw, "length") else len(raw.value or b"")
    if length != 0xFFFFFFFF:
        return f"{length} bytes"
    if filename and getattr(raw, "value_tell", None) is not None:
        with contextlib.suppress(OSError):
            return f"{os.path.getsize(filename) - raw.value_tell - 8} bytes (encapsulated)"
    return "undefined length (encapsulated)"


def _private_name(ds: Dataset, tag) -> str:
    from pydicom.tag import Tag

    tag = Tag(tag)
    if not tag.is_private:
        return "Unknown"
    if tag.is_private_creator:
        return "PrivateCreator"
    try:
        name = ds[tag].name
    except Exception:
        name = ""
    return f"Private {name}".strip() if name and "Private tag" not in name else "Private"


def _value_text(element) -> str:
    value = element.value
    if isinstance(value, (bytes, bytearray)):
        if len(value) > LONG_BINARY_BYTES:
            return f"<{len(value)} bytes of binary data>"
        return "\\".join(f"{b:02x}" for b in value) or "(empty)"
    if is_multi(value):
        items = [text_of(v) for v in value]
        shown = items[:LONG_MULTI_VALUES]
        more = f" … ({len(items)} values)" if len(items) > LONG_MULTI_VALUES else ""
        return "\\".join(shown) + more
    if value is None or value == "":
        return "(empty)"
    return text_of(value).replace("\r\n", "\n").replace("\n", " ⏎ ")


# -----------------------------------------------------------------------------
# Raw values formatted from their bytes (issue #18)
#
# pydicom converts an element when it is first read, building value objects
# (DSfloat, IS, UID, PersonName, MultiValue) and writing the element back into
# the dataset: for the .txt that was most of its cost.  The formatters below
# mirror, VR by VR, what pydicom 3's converters (pydicom.values) and
# `_value_text` make of the bytes.  Two things must not change: the text, and
# pydicom's warnings, which the log line quotes (`_with_warnings`).  So a
# formatter takes only values pydicom converts silently, and returns None for
# any other (too long, not matching the VR's pattern, not decodable, escape
# sequences, an odd length), which sends the element the old way.
# -----------------------------------------------------------------------------

_TAG_INFO: dict[int, tuple[str, str, str | None]] = {}
_PRIVATE_INFO: dict[tuple[int, str], tuple[str, str]] = {}
_INFO_LIMIT = 65536  # entries per cache; a file of random tags must not grow them without end
_UNKNOWN = object()  # a private creator that cannot be read without converting it
_LUT_DESCRIPTOR_TAGS = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})  # pydicom mends a negative first value
_RAW_TEXT_CODECS = frozenset({"ascii", "iso8859-1", "utf-8"})  # ISO_IR 6, ISO_IR 100, ISO_IR 192
_IS_PATTERN = re.compile(r" *[+\-]?[0-9]+ *")  # pydicom's IS pattern, ASCII digits only
_UI_PATTERN = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")  # pydicom's UI pattern


def _raw_formatting_allowed() -> bool:
    """Whether pydicom converts values the default way, the one the formatters mirror.

    Hooks, a data element callback, numpy or Decimal values, datetime objects
    or validation that raises all change what conversion gives or does.
    """
    import pydicom.hooks
    import pydicom.valuerep
    from pydicom import config

    hooks = pydicom.hooks.hooks
    return (
        config.data_element_callback is None
        and not hooks.raw_element_kwargs
        and hooks.raw_element_vr is pydicom.hooks.raw_element_vr
        and hooks.raw_element_value is pydicom.hooks.raw_element_value
        and pydicom.valuerep.DSclass is pydicom.valuerep.DSfloat
        and not (config.use_DS_numpy or config.use_IS_numpy or config.datetime_conversion)
        and not config.use_none_as_empty_text_VR_value
        and config.settings.reading_validation_mode != config.RAISE
    )


def _raw_charset_read(ds: Dataset) -> bool:
    """Whether converting an element of `ds` leaves its Specific Character Set alone.

    In a dataset without a character set from reading (one built in memory)
    pydicom reads (0008,0005) for every element it converts, and that read
    may warn or fail: such a dataset is dumped the old way.
    """
    return bool(ds.original_character_set) or 0x00080005 not in ds


def _raw_text_encoding(ds: Dataset) -> str | None:
    """The Python encoding pydicom decodes `ds`'s text values with (SH, LO, ST, LT, UT,
    UC, PN), when it is one the formatters handle; None sends those VRs the old way.

    pydicom uses the character set read with the dataset, else its own Specific
    Character Set, else its parent's; escape sequences (ISO 2022 code
    extensions) are refused value by value (`_decoded`).
    """
    charset = ds.original_character_set
    if not charset:  # and no Specific Character Set (`_raw_charset_read`)
        charset = getattr(ds, "_parent_encoding", None)  # what pydicom's `_character_set` falls back on
        if charset is None:
            return None
    encodings = [charset] if isinstance(charset, str) else list(charset or ())
    first = encodings[0] if encodings else "iso8859"  # pydicom's default when none is given
    try:
        codec = codecs.lookup(first).name
    except LookupError:  # pydicom warns, and decodes as ISO_IR 6
        return None
    return first if codec in _RAW_TEXT_CODECS else None


def _tag_info(tag: int) -> tuple[str, str, str | None]:
    """``(GGGG,EEEE)``, the keyword and the dictionary VR (None if pydicom has none) of `tag`.

    For a tag without a keyword the name is the one `_private_name` gives
    without looking at the dataset ("Unknown", "PrivateCreator"), or "" for a
    private tag, named after its creator.  Cached: the same tags recur in
    every file, and pydicom's dictionary lookups are slow.
    """
    info = _TAG_INFO.get(tag)
    if info is None:
        from pydicom.datadict import dictionary_VR

        group, element = tag >> 16, tag & 0xFFFF
        keyword = _keyword_of(tag)
        if not keyword and not group % 2:
            keyword = "Unknown"
        elif not keyword and 0x0010 <= element < 0x0100:
            keyword = "PrivateCreator"
        try:
            vr = dictionary_VR(tag)
        except Exception:
            vr = None
        if len(_TAG_INFO) >= _INFO_LIMIT:
            _TAG_INFO.clear()
        info = _TAG_INFO[tag] = (f"({group:04X},{element:04X})", keyword, vr)
    return info


def _raw_line(ds: Dataset, tag: int, raw, encoding: str | None, creators: dict) -> str | None:
    """The dump line of a raw element (without indent) formatted from its bytes, or None
    when only pydicom's conversion can tell: deferred, bulk or undefined-length
    values (sequences), ambiguous or unknown VRs, and values `_RAW_FORMATTERS` refuse.

    `tag` is a plain int (pydicom's BaseTag compares slowly); `creators` caches
    the private creators read for `ds` (`_private_creator`).
    """
    found = _raw_value(ds, tag, raw, encoding, creators)
    if found is None:
        return None
    vr, text, creator = found
    tag_text, keyword, _ = _tag_info(tag)
    if not keyword:
        keyword = _private_info(tag, creator)[1]
    return f"{tag_text} {vr} {keyword:<32} {text}"


def _raw_value(ds: Dataset, tag: int, raw, encoding: str | None, creators: dict) -> tuple[str, str, str | None] | None:
    """(VR, value text, private creator) of `_raw_line`, or None."""
    value = raw.value  # None when deferred (on disk), and for some empty values
    if (value is None and raw.length) or raw.length == 0xFFFFFFFF:
        return None
    _, keyword, vr = _tag_info(tag)
    if keyword in BULK_DATA_KEYWORDS:
        return None
    private = (tag >> 16) % 2 == 1
    creator = None  # a private tag's creator: its VR and name may depend on it
    if private:
        # Converting a private element makes pydicom read its creator (gggg,00xx)
        # into it, and converting a creator makes it read (gggg,0000) likewise:
        # those conversions may warn or fail, so they must be silent ones.
        element, group = tag & 0xFFFF, tag & 0xFFFF0000
        if element < 0x0010:  # (gggg,0000-000F): pydicom takes (gggg,0000) for their creator
            return None
        if group not in creators:
            creators[group] = ds.get_item(group, keep_deferred=True) is not None
        if creators[group]:  # a private group length: left to pydicom
            return None
        if element >= 0x0100:  # not a creator itself
            block = group | (element >> 8)
            creator = creators.get(block, creators)
            if creator is creators:
                creator = creators[block] = _private_creator(ds, block, encoding)
    if creator is _UNKNOWN:
        return None
    # the VR as pydicom's `raw_element_vr` hook finds it
    if raw.VR is None:  # implicit VR: the dictionary's
        if vr is None:
            if private:
                vr = _private_vr(tag, creator)
            elif tag & 0xFFFF == 0:  # a group length
                vr = "UL"
            else:
                return None  # pydicom warns, and reads it as UN
    elif raw.VR == "UN" and _replace_un():  # a VR a converter wrote as UN: the dictionary's
        if private:
            vr = _private_vr(tag, creator)
        else:
            vr = (vr if value is None or len(value) < 0xFFFF else None) or "UN"
    else:
        vr = raw.VR
    formatter = _RAW_FORMATTERS.get(vr)
    if formatter is None or (tag in _LUT_DESCRIPTOR_TAGS and vr != "US"):  # SQ, "US or SS", unknown VRs
        return None
    if not raw.length:
        text = "(empty)"  # pydicom's empty value for the VR: None, "" or an empty name
    else:
        text = formatter(value, raw.is_little_endian, encoding if tag != 0x00080005 else "iso8859")
        if text is None:
            return None
    return vr, text, creator


def _replace_un() -> bool:
    from pydicom import config

    return config.replace_un_with_known_vr


def _private_creator(ds: Dataset, block: int, encoding: str | None):
    """The private creator (gggg,00xx) `block` as pydicom reads it (a str), None if the
    dataset has none, or `_UNKNOWN` when it cannot be read without converting it.

    A raw creator is read like an LO value (`_raw_text_items`): pydicom gives
    creators the VR LO when the file does not say (implicit VR, UN).
    """
    from pydicom.dataelem import RawDataElement

    creator = ds.get_item(block, keep_deferred=True)
    if creator is None:
        return None
    if isinstance(creator, RawDataElement):
        if (creator.value is None and creator.length) or creator.VR not in (None, "UN", "LO"):
            return _UNKNOWN
        if (creator.VR == "UN" and not _replace_un()) or (creator.VR is None and _tag_info(block)[2]):
            return _UNKNOWN  # read as UN, or as the dictionary's VR
        values = _raw_text_items(creator.value, encoding, 64) if creator.length else [""]
        return values[0] if values is not None and len(values) == 1 else _UNKNOWN
    value = creator.value
    return value if type(value) is str else _UNKNOWN


def _private_info(tag: int, creator: str | None) -> tuple[str, str]:
    """The VR pydicom gives the private `tag` (a creator, or in the block of `creator`:
    None if the dataset has none) when the file does not say, and its name as
    `_private_name` shows it; cached per tag and creator.

    pydicom's `_private_vr_for_tag` and `DataElement.name`, without converting
    the element (which is how `_private_name` gets the name).
    """
    key = (tag, creator)
    info = _PRIVATE_INFO.get(key)
    if info is None:
        from pydicom.datadict import private_dictionary_description, private_dictionary_VR

        if 0x0010 <= tag & 0xFFFF < 0x0100:
            info = ("LO", "PrivateCreator")
        else:
            vr, name = "UN", "Private tag data"
            if creator is not None:
                with contextlib.suppress(KeyError):
                    vr = private_dictionary_VR(tag, creator)
            if creator:
                with contextlib.suppress(KeyError):
                    name = f"[{private_dictionary_description(tag, creator)}]"
            info = (vr, f"Private {name}".strip() if name and "Private tag" not in name else "Private")
        if len(_PRIVATE_INFO) >= _INFO_LIMIT:
            _PRIVATE_INFO.clear()
        _PRIVATE_INFO[key] = info
    return info


def _private_vr(tag: int, creator: str | None) -> str:
    return _private_info(tag, creator)[0]


def _values_text(values) -> str:
    """`_value_text` of a value pydicom holds as `values`: one value, or a MultiValue of them.

    `values` are the strings (or numbers) whose ``str()`` the converted items
    give; a blank item stays as it is, as pydicom keeps it.
    """
    if len(values) == 1:
        value = values[0]
        if value == "":
            return "(empty)"
        return text_of(value).replace("\r\n", "\n").replace("\n", " ⏎ ")
    shown = [text_of(v) for v in values[:LONG_MULTI_VALUES]]
    more = f" … ({len(values)} values)" if len(values) > LONG_MULTI_VALUES else ""
    return "\\".join(shown) + more


def _decoded(value: bytes, encoding: str | None) -> str | None:
    """`value` decoded as pydicom's `decode_bytes` does when it holds no escape sequence,
    or None where pydicom would warn (not decodable) or switch character sets (ESC)."""
    if encoding is None or b"\x1b" in value:
        return None
    try:
        return value.decode(encoding)
    except (UnicodeError, LookupError):
        return None


def _raw_text_items(value: bytes, encoding: str | None, max_length: int) -> list[str] | None:
    """SH, LO, UC (`convert_text`): split at backslashes, each item checked against the
    VR's maximum length (pydicom warns past it) and stripped of trailing spaces and NULs."""
    decoded = _decoded(value, encoding)
    if decoded is None:
        return None
    items = decoded.split("\\")
    if max_length and any(len(item) > max_length for item in items):
        return None
    return [item.rstrip("\0 ") for item in items]


def _text_formatter(max_length: int):
    def text(value: bytes, little: bool, encoding: str | None) -> str | None:
        items = _raw_text_items(value, encoding, max_length)
        return None if items is None else _values_text(items)

    return text


def _single_text_formatter(max_length: int):
    """ST, LT, UT (`convert_single_string`): one value, backslashes and all."""
    def text(value: bytes, little: bool, encoding: str | None) -> str | None:
        decoded = _decoded(value, encoding)
        if decoded is None or (max_length and len(decoded) > max_length):
            return None
        return _values_text([decoded.rstrip("\0 ")])

    return text


def _person_names_text(value: bytes, little: bool, encoding: str | None) -> str | None:
    """PN (`convert_PN`): names without component groups ("="), each at most 64
    characters (pydicom warns past it); `str(PersonName)` is then the name itself."""
    if b"=" in value:  # pydicom drops empty trailing groups and checks each group: left to it
        return None
    decoded = _decoded(value.rstrip(b"\x00 "), encoding)
    if decoded is None:
        return None
    items = decoded.split("\\")
    if any(len(item) > 64 for item in items):
        return None
    return _values_text(items)


def _strings_text(value: bytes, little: bool, encoding: str | None) -> str:
    """AS, CS, DA, DT, TM (`convert_string`, dates and times kept as strings)."""
    return _values_text(value.decode("latin-1").rstrip(" \x00").split("\\"))


def _application_entities_text(value: bytes, little: bool, encoding: str | None) -> str:
    """AE (`convert_AE_string`): each item stripped of spaces at both ends."""
    return _values_text([item.strip() for item in value.decode("latin-1").split("\\")])


def _uri_text(value: bytes, little: bool, encoding: str | None) -> str:
    """UR (`convert_UR_string`): one value, trailing spaces dropped."""
    return _values_text([value.decode("latin-1").rstrip()])


def _uids_text(value: bytes, little: bool, encoding: str | None) -> str | None:
    """UI (`convert_UI`): only valid UIDs (pydicom validates each, and warns)."""
    items = value.decode("latin-1").rstrip("\0 ").split("\\")
    if any(item and (len(item) > 64 or not _UI_PATTERN.fullmatch(item)) for item in items):
        return None
    return _values_text(items)


def _decimals_text(value: bytes, little: bool, encoding: str | None) -> str | None:
    """DS (`convert_DS_string`): `str(DSfloat)` is the item stripped; an item `float()`
    refuses makes pydicom retry the value as other VRs, so it goes the old way."""
    items = value.decode("latin-1").strip().rstrip(" \x00").split("\\")
    for item in items:
        if item.strip():
            try:
                float(item)
            except ValueError:
                return None
    return _values_text(items)


def _integers_text(value: bytes, little: bool, encoding: str | None) -> str | None:
    """IS (`convert_IS_string`): only items pydicom accepts silently (at most 12
    characters of an optional sign and digits); `str(IS)` is then the item stripped."""
    items = value.decode("latin-1").rstrip(" \x00").split("\\")
    for item in items:
        if item.strip() and (len(item) > 12 or not _IS_PATTERN.fullmatch(item)):
            return None
    return _values_text(items)


def _binary_text(value: bytes, little: bool, encoding: str | None) -> str:
    """OB, OD, OF, OL, OV, OW, UN: the bytes as they are (pydicom never swaps them)."""
    if len(value) > LONG_BINARY_BYTES:
        return f"<{len(value)} bytes of binary data>"
    return value.hex("\\")


def _numbers_formatter(code: str):
    """US, SS, UL, SL, UV, SV, FL, FD (`convert_numbers`): only the values shown are unpacked."""
    import struct

    size = struct.calcsize("=" + code)

    def text(value: bytes, little: bool, encoding: str | None) -> str | None:
        count, odd = divmod(len(value), size)
        if odd:  # pydicom raises (or makes it UN): the old path says which
            return None
        shown = min(count, LONG_MULTI_VALUES)
        numbers = struct.unpack_from(f"{'<' if little else '>'}{shown}{code}", value)
        if count == 1:
            return str(numbers[0])
        more = f" … ({count} values)" if count > LONG_MULTI_VALUES else ""
        return "\\".join(map(str, numbers)) + more

    return text


def _tags_text(value: bytes, little: bool, encoding: str | None) -> str | None:
    """AT (`convert_ATvalue`): each pair of 16-bit numbers as ``(GGGG,EEEE)``."""
    import struct

    count, odd = divmod(len(value), 4)
    if odd:  # pydicom logs it and drops the rest
        return None
    shown = min(count, LONG_MULTI_VALUES)
    numbers = struct.unpack_from(f"{'<' if little else '>'}{2 * shown}H", value)
    tags = [f"({numbers[i]:04X},{numbers[i + 1]:04X})" for i in range(0, 2 * shown, 2)]
    if count == 1:
        return tags[0]
    more = f" … ({count} values)" if count > LONG_MULTI_VALUES else ""
    return "\\".join(tags) + more


_RAW_FORMATTERS = {
    "AE": _application_entities_text, "AS": _strings_text, "CS": _strings_text, "DA": _strings_text,
    "DT": _strings_text, "TM": _strings_text, "UR": _uri_text, "UI": _uids_text,
    "DS": _decimals_text, "IS": _integers_text, "PN": _person_names_text,
    "SH": _text_formatter(16), "LO": _text_formatter(64), "UC": _text_formatter(0),
    "ST": _single_text_formatter(1024), "LT": _single_text_formatter(10240), "UT": _single_text_formatter(0),
    **dict.fromkeys(("OB", "OD", "OF", "OL", "OV", "OW", "UN"), _binary_text),
    **{vr: _numbers_formatter(code) for vr, code in
       (("US", "H"), ("SS", "h"), ("UL", "L"), ("SL", "l"), ("UV", "Q"), ("SV", "q"), ("FL", "f"), ("FD", "d"))},
    "AT": _tags_text,
}
