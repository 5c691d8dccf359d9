"""The index page: OUTPUT/index.html, one self-contained page of series cards and a
viewer; its script and style are `index.js` and `index.css` beside this module.
"""

from __future__ import annotations

import base64
import collections
import functools
import hashlib
import json
import re
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from _dicom_converter.geometry import edge_letters
from _dicom_converter.kinds.documents import DOCUMENT_SUFFIXES
from _dicom_converter.kinds.video import TRANSCODED_SUFFIX
from _dicom_converter.kinds.waveforms import AUDIO_CLASSES, ECG_CLASSES, MEDIAN_SUFFIX
from _dicom_converter.results import SHOWN_STATUSES
from _dicom_converter.series import slice_order
from _dicom_converter.sop import DOCUMENT_CLASSES
from _dicom_converter.values import (
    MODALITY_NAMES,
    age_text,
    date_text,
    modality_text,
    sex_text,
    time_of_day,
)
from _dicom_converter.writers import staged_outputs, write_thumbnail_of_png

if TYPE_CHECKING:
    from _dicom_converter.results import Result


# The viewer's frame, with no data and no media element in it: the script
# fills it in, and creates the <img>, <video> and <audio> on first use, so the
# closed page requests nothing but thumbnails.
INDEX_VIEWER = """<dialog class="viewer" id="viewer" aria-label="Viewer" aria-modal="true">
<header><h2 id="viewer-series"></h2><span id="viewer-counter" aria-hidden="true"></span>
<div class="zoom" id="viewer-zoom" role="group" aria-label="Zoom">
<button type="button" id="viewer-zoom-out" aria-label="Zoom out" title="Zoom out (-)">−</button>
<button type="button" id="viewer-zoom-fit" title="Fit to the window (0)">Fit</button>
<button type="button" id="viewer-zoom-one" title="One image pixel per screen pixel (1)">1:1</button>
<button type="button" id="viewer-zoom-in" aria-label="Zoom in" title="Zoom in (+)">+</button></div>
<button type="button" class="close" id="viewer-close">Close</button></header>
<div class="stage" id="viewer-stage"><div class="overlay" id="viewer-overlay" aria-hidden="true" hidden>
<span class="edge left"></span><span class="edge top"></span><span class="edge right"></span>
<span class="edge bottom"></span><span class="scale"><span class="bar"></span><span class="label"></span></span>
<span class="window"></span>
</div></div>
<div class="move"><label for="viewer-slider">Image in series</label>
<input type="range" id="viewer-slider" min="1" max="1" step="1" value="1"></div>
<div class="info"><h3 id="viewer-title"></h3><dl id="viewer-facts"></dl><ul id="viewer-links"></ul>
<pre id="viewer-excerpt" hidden></pre></div>
<p class="vh" id="viewer-live" aria-live="polite"></p>
</dialog>"""

INDEX_DATA_ID = "index-data"


# index.js is plain JS for every browser of the last few years: no modules, no
# fetch (a file:// page may not fetch its neighbours), data from the JSON block
# only, and every string from it set with textContent or as an attribute value.
@functools.cache
def page_asset(name: str) -> str:
    """A file of this package that the page inlines: ``index.js`` (its script) or ``index.css`` (its style).

    Kept as files so that editors, linters and browsers' tools read them; read once per process,
    with CRLF line ends (a Windows checkout's) made LF, so every checkout gives the same page
    and the same CSP hash.
    """
    from importlib.resources import files

    return files(__package__).joinpath(name).read_bytes().decode("utf-8").replace("\r\n", "\n")


# The one script may run (by its hash, which works from file:// where 'self'
# is unreliable); nothing may be fetched by script, posted, or embedded but for
# the run's own reports and documents in the viewer's frame ('self' when served,
# file: when opened from disk, where a page has no origin of its own).
_CSP = ("script-src '{hash}'; connect-src 'none'; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-src 'self' file:")


def index_page(patients: list[dict]) -> str:
    """The whole ``index.html`` text for `patients` (Patient -> Study -> Series -> items)."""
    return "".join(index_page_parts(patients))


def index_page_parts(patients: list[dict]) -> Iterator[str]:
    """``index.html`` piece by piece, for `patients` (Patient -> Study -> Series -> items).

    Cards appear in the order given; the viewer's data is the series in card
    order, so card N's button opens ``data-series="N"``.  A series may be given
    as ``{"count": N, "make": function}``, made when its card is written, so
    that one series' items are held at a time; their viewer data waits in a
    temporary file until the cards are done.
    """
    import tempfile

    digest = base64.b64encode(hashlib.sha256(page_asset("index.js").encode("utf-8")).digest()).decode("ascii")
    head = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP.format(hash="sha256-" + digest)}">',
            '<meta name="viewport" content="width=device-width">', "<title>DICOM conversion</title>",
            '<link rel="icon" href="data:,">',  # no favicon request: the page needs no server
            f"<style>{page_asset('index.css')}</style></head><body>", "<h1>DICOM conversion</h1>", _totals(patients)]
    yield "\n".join(head)
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as viewer_data:
        number = 0
        for patient in patients:
            yield "\n" + _patient_heading(patient)
            for study in patient.get("studies", []):
                yield "\n" + _study_heading(study) + '\n<ul class="cards">'
                for series in study.get("series", []):
                    series = series["make"]() if "make" in series else series
                    yield "\n" + _series_card(series, number)
                    viewer_data.write("," * (number > 0) + script_json(_viewer_series(series)))
                    number += 1
                yield "\n</ul>"
        yield f'\n{INDEX_VIEWER}\n<script type="application/json" id="{INDEX_DATA_ID}">['
        viewer_data.seek(0)
        while chunk := viewer_data.read(1 << 20):
            yield chunk
    yield f"]</script>\n<script>{page_asset('index.js')}</script>\n</body></html>\n"


def _totals(patients: list[dict]) -> str:
    series = [s for p in patients for st in p.get("studies", []) for s in st.get("series", [])]
    items = sum(s["count"] if "make" in s else len(s.get("items", [])) for s in series)
    return f"<p>{len(series)} series, {items} item{'s' * (items != 1)}.</p>"


def _patient_heading(patient: dict) -> str:
    """"PHANTOM, Sample · ID PHANTOM0001 · female · 54 years · born 1970-01-01" (the name from its
    PN components, as the worker listed it: `values.person_name_listed`; ISO dates), or under
    --redact "Patient 2", numbered in order of appearance."""
    if patient.get("number"):
        return f"<h2>Patient {patient['number']}</h2>"
    name = patient.get("name") or "Unknown patient"
    facts = [f"ID {patient['id']}" if patient.get("id") else "", sex_text(patient.get("sex") or ""),
             age_text(patient.get("age") or ""),
             f"born {date_text(patient['birth'])}" if patient.get("birth") else ""]
    return f"<h2>{escape(' · '.join(w for w in (name, *facts) if w))}</h2>"


def _study_heading(study: dict) -> str:
    """"2024-01-15 14:03 · CT HEAD WO CONTRAST · CT · 2 series", or under --redact "Study 1 · CT · 2 series"."""
    count = len(study.get("series", []))
    counted = f"{count} series"
    modalities = " ".join(study.get("modalities") or [])
    if study.get("number"):
        words = [f"Study {study['number']}", modalities, counted]
    else:
        when = " ".join(w for w in (date_text(study.get("date") or ""), time_of_day(study.get("time") or "")) if w)
        description = study.get("description") or ""
        if description.casefold() == modalities.casefold():  # "ECG · ECG": said once
            modalities = ""
        words = [when, description, modalities, counted]
        words[0] = words[0] or ("Study" if not words[1] else "")
    return f"<h3>{escape(' · '.join(w for w in words if w))}</h3>"


def _series_card(series: dict, index: int) -> str:
    """One series: a button (thumbnail, title, modality, count, size) that opens the viewer,
    and a plain link to its first item's first file for a browser without script."""
    title, modality = series.get("title") or "(untitled series)", series.get("modality") or ""
    if series.get("thumb"):
        # width/height reserve the box before the file arrives; CSS scales it to the card
        picture = (f'<img class="thumb" loading="lazy" decoding="async" width="256" height="256" alt="" '
                   f'src="{escape(_relative(series["thumb"]))}">')
    else:  # a kind without a picture is named, not shown as a black square
        named = series.get("placeholder") or modality or "?"
        picture = f'<span class="thumb none" aria-hidden="true">{escape(named)}</span>'
    count = series.get("count_text") or _plural(int(series.get("count") or len(series.get("items", []))), "item")
    meta = " · ".join(w for w in (modality_text(modality), count, series.get("size") or "") if w)
    fallback = _first_file(series)
    files = (f'<p class="files">First item: <a href="{escape(_relative(fallback[1]))}">{escape(fallback[0])}</a></p>'
             if fallback else "")
    return (f'<li class="card"><button type="button" data-series="{index}" aria-haspopup="dialog">'
            f'{picture}<span class="title">{escape(title)}</span><span class="meta">{escape(meta)}</span>'
            f"</button>{files}</li>")


def _first_file(series: dict) -> tuple[str, str] | None:
    """(label, URL) of the first item's first link, else of its picture, video or sound."""
    items = series.get("items") or [{}]
    first = items[0]
    if first.get("links"):
        label, url = first["links"][0]
        return label, url
    return next(((kind, first[kind]) for kind in ("image", "video", "audio") if first.get(kind)), None)


def _viewer_series(series: dict) -> dict:
    """What the viewer needs of a series, without empty values (3,000 items add up)."""
    keys = ("title", "image", "video", "audio", "facts", "links", "excerpt", "page", "orient", "mm", "mm_note",
            "columns", "window")
    items = [{k: item[k] for k in keys if item.get(k)} for item in series.get("items", [])]
    return {"title": series.get("title") or "(untitled series)", "items": items}


def _relative(url: str) -> str:
    """`url` as a path inside the output folder: see `relative` in index.js."""
    return "./" + url if re.match(r"([^/?#]*:|/)", url) else url


def script_json(value) -> str:
    """`value` as JSON safe inside ``<script type="application/json">``.

    ``<`` (so no ``</script>`` or ``<!--``), ``>`` and ``&`` become \\u escapes,
    and so do U+2028 and U+2029, which end a line in older JavaScript.  They
    can appear only inside strings, where the escape means the same character.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def write_index(output: Path, results) -> Path:
    """``OUTPUT/index.html``: a card per series (Patient -> Study -> Series), and a viewer that
    shows its items at full size, built by `index_page_parts` from what the results recorded.

    Items are ordered by slice position within a series, and series, studies and patients by
    their numbers, dates and names; ties by output name, so a single run and the merge of
    its shards (in any order) write the same page.  `results` is read by position (a
    `LineStore` or a list): the tree holds each item's first output and place, a series'
    results are read back only to make its card, and the page is written as it is made.
    """
    tree: dict = {}
    facts: dict = {}  # each patient's and study's headings, from the first of its files
    first_input: dict = {}  # each patient's and study's first input file: --redact numbers them in that order
    for number, result in enumerate(results):
        if result.status not in SHOWN_STATUSES:
            continue
        r = result.record
        # under --redact the names are gone: a keyed hash of who it was keeps patients apart
        patient = (r.get("patient_name") or "", r.get("patient_id") or "", r.get("patient_key") or "")
        study = (r.get("study_uid", ""), r.get("study_date", ""), r.get("study_description", ""))
        series = (r.get("series_number", ""), r.get("series_description", ""), r.get("series_uid", ""))
        place = (result.outputs[0].as_posix() if result.outputs else "", number)  # first outputs are unique
        tree.setdefault(patient, {}).setdefault(study, {}).setdefault(series, []).append(place)
        facts.setdefault(patient, {"name": r.get("patient_name_listed") or "", "sex": r.get("patient_sex"),
                                   "age": r.get("patient_age"), "birth": r.get("patient_birth_date")})
        facts.setdefault((patient, study), {"time": r.get("study_time"), "modalities": set()})
        if result.status != "series":  # a series cine's source is an output
            for key in (patient, (patient, study)):
                first_input[key] = min(first_input.get(key, result.source), result.source)
        if r.get("modality"):
            facts[(patient, study)]["modalities"].add(r["modality"])

    def first_output(series_map: dict) -> str:  # ties broken by output name, not by arrival
        return min(min(places)[0] for places in series_map.values())

    def series_card(number: str, description: str, places: list) -> dict:
        def make() -> dict:
            return _index_series(number, description, [results[place] for _, place in sorted(places)], output)

        return {"count": len(places), "make": make}

    def patient_first_output(studies: dict) -> str:
        return min(first_output(series_map) for series_map in studies.values())

    def appearance(key) -> tuple:  # --redact's order: the first input file, as --layout study numbers them
        return (0, first_input[key]) if key in first_input else (1, Path())

    patients = []
    # by name and ID; under --redact, where both are empty, in order of appearance in the input
    for number, (patient, studies) in enumerate(sorted(tree.items(), key=lambda kv: (
            kv[0][:2], appearance(kv[0]) if kv[0][2] else (), patient_first_output(kv[1]), kv[0][2])), 1):
        redacted = bool(patient[2])
        studies_model = []
        for study_number, (study, series_map) in enumerate(sorted(studies.items(), key=lambda kv: (
                appearance((patient, kv[0])) if redacted else (), kv[0][1], facts[(patient, kv[0])]["time"] or "",
                kv[0][2], first_output(kv[1]))), 1):
            series_model = [series_card(series_number, series_description, places)
                            for (series_number, series_description, _), places in sorted(
                                series_map.items(), key=lambda kv: (_series_sort_key(kv), min(kv[1])[0]))]
            study_facts = facts[(patient, study)]
            studies_model.append({"date": study[1], "description": study[2], "time": study_facts["time"],
                                  "modalities": sorted(study_facts["modalities"]), "series": series_model,
                                  **({"number": study_number} if redacted else {})})
        patients.append({"id": patient[1], **facts[patient], "studies": studies_model,
                         **({"number": number} if redacted else {})})
    with staged_outputs(output / "index") as (stage, finals):
        with open(stage(".html"), "w", encoding="utf-8", newline="\n") as f:
            f.writelines(index_page_parts(patients))
    return finals[0]


def _series_sort_key(item) -> tuple:
    number = str(item[0][0])
    return (int(number) if number.lstrip("-").isdigit() else 0, number, item[0][1])


def _index_series(number: str, description: str, results: list[Result], output: Path) -> dict:
    """One series card: its --series cine first, then its items in slice order; the middle
    one's thumbnail as its picture."""
    results = sorted(results, key=lambda result: (result.status != "series", slice_order(result)))
    pictured = [r for r in results if r.record.get("thumbnail")]
    middle = pictured[len(pictured) // 2] if pictured else None
    if middle and middle.record.get("thumbnail_from") and not _picture_made(middle.record):
        middle = None
    first = results[0].record
    sizes = [f"{r.record['columns']}×{r.record['rows']}" for r in results
             if r.record.get("columns") and r.record.get("kind") != "slide"]  # a slide's are its tiles
    title = " · ".join(w for w in (f"Series {number}" if number else "", description) if w)
    return {"title": title or "Series (unnumbered)",
            "modality": first.get("modality", ""), "count": len(results), "count_text": series_count_text(results),
            "placeholder": placeholder_text(first),
            "size": sizes[0] if sizes and len(set(sizes)) == 1 else ("mixed sizes" if sizes else ""),
            "thumb": _index_link(Path(middle.record["thumbnail"]), output) if middle else None,
            "items": [_index_item(result, output) for result in results]}


def _picture_made(record: dict) -> bool:
    """Make a thumbnail the worker left to the page (`job.pictured_later`) from its PNG; whether
    it could be (a PNG deleted or damaged since leaves the card without a picture)."""
    try:
        write_thumbnail_of_png(Path(record["thumbnail_from"]), Path(record["thumbnail"]))
    except (OSError, ValueError, RuntimeError):  # imagecodecs' PngError is a RuntimeError
        return False
    return True


def _index_link(path: Path, output: Path) -> str:
    from urllib.parse import quote

    return quote(path.relative_to(output).as_posix())


def _index_item(result: Result, output: Path) -> dict:
    """What the viewer shows of one result: its picture, video or sound, the summary facts of
    its .txt, and a link to each of its files (per-frame PNGs excepted)."""
    by_suffix: dict[str, Path] = {}
    frame_pngs = set(result.frame_pngs())
    files = [path for path in result.outputs if path not in frame_pngs]
    for path in files:
        kind = next((s for s in (TRANSCODED_SUFFIX, MEDIAN_SUFFIX) if path.name.endswith(s)), path.suffix)
        by_suffix.setdefault(kind, path)
    r = result.record
    picture = by_suffix.get(".png", by_suffix.get(".gif"))
    playable = by_suffix.get(TRANSCODED_SUFFIX, by_suffix.get(".mp4"))  # H.264 plays in every browser, HEVC not
    pictured = bool(r.get("columns"))  # no size or frame count for reports, waveforms, documents
    facts = [("Modality", modality_text(r.get("modality", ""))), ("Contents", count_text(r)), ("Size", f"{r.get('columns', '')}×{r.get('rows', '')}" * pictured),
             ("Frames", r.get("frames", "") * pictured), ("Display", r.get("Display", "")), ("Rate", r.get("FrameRate", "")),
             ("Slices", r.get("Slices", "")), ("Slide", r.get("Slide", "")), ("Audio", r.get("Audio", ""))]
    names = {**LINK_LABELS, **({".mp4": "MP4 video (HEVC)"} if TRANSCODED_SUFFIX in by_suffix else {})}
    links = [[names.get(kind, kind[1:]), _index_link(path, output)]
             for kind, path in sorted(by_suffix.items(), key=lambda kv: _link_order(kv[0]))]
    page = by_suffix.get(".html") or next((by_suffix[s] for s in DOCUMENT_SUFFIXES if s in by_suffix), None)
    return {"title": files[0].relative_to(output).with_suffix("").as_posix() if files else result.source.name,
            "image": _index_link(picture, output) if picture else None,
            "video": _index_link(playable, output) if playable else None,
            "audio": _index_link(by_suffix[".wav"], output) if ".wav" in by_suffix else None,
            "facts": [[label, str(value)] for label, value in facts if value], "links": links,
            "excerpt": r.get("excerpt") or None,
            # a report or document is shown in place, in a frame of the viewer
            "page": _index_link(page, output) if page and not picture and not playable else None,
            **_overlays(r)}


def _overlays(record: dict) -> dict:
    """What the viewer draws over a picture as a radiology viewer does: the patient direction at
    each edge (left, top, right, bottom) and the size of a pixel in mm for a scale bar, from
    Pixel Spacing, else Imager Pixel Spacing (PS3.3 10.7.1.3: at the detector, so an object in
    the patient looks larger by the geometric magnification, which the bar says).  Only for
    pictures that are the file's own frames; nothing where the file gives no basis."""
    if record.get("kind") not in ("image", "cine", "volume"):
        return {}
    found: dict = {}
    window = re.match(r"window (-?[\d.]+)/(-?[\d.]+)", record.get("Display", ""))
    if window:  # the window as used, as viewers print it
        found["window"] = f"W {window.group(2)} L {window.group(1)}"
    letters = edge_letters(record.get("orientation"), record.get("patient_orientation", ""))
    if letters:
        found["orient"] = letters
    for key, note in (("pixel_spacing", ""), ("imager_pixel_spacing", "at the detector")):
        spacing = record.get(key)
        if spacing and len(spacing) == 2 and all(v > 0 for v in spacing):
            # per output pixel: the frame's columns, which the picture may show scaled
            found.update(mm=[float(spacing[0]), float(spacing[1])], columns=int(record.get("columns") or 0),
                         **({"mm_note": note} if note else {}))
            break
    return found


# What a link is, in words (not its extension alone).
LINK_LABELS = {".html": "report", ".pdf": "PDF", ".xml": "CDA document", ".stl": "STL model", ".obj": "OBJ model",
               ".mtl": "MTL materials", ".png": "PNG image", MEDIAN_SUFFIX: "median beat", ".gif": "GIF",
               TRANSCODED_SUFFIX: "MP4 video (H.264)", ".mp4": "MP4 video", ".csv": "CSV data", ".wav": "WAV audio",
               ".txt": "details", ".json": "JSON"}


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'s' * (count != 1)}"


def _leading_number(text: str) -> float | None:
    match = re.match(r"\s*(\d+(?:\.\d+)?)", text or "")
    return float(match.group(1)) if match else None


def _clock(seconds: float) -> str:
    """A playing time as a player shows it: "0:02", "1:30", "1:02:03"."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def count_text(record: dict) -> str:
    """What one file holds, counted as its kind counts ("40 frames · 2.7 s at 15 fps", "120 slices",
    "12 leads · 10 s", "1:30"), never "1 image" for a clip."""
    kind, frames = record.get("kind", ""), int(_leading_number(record.get("frames", "")) or 1)
    slices = int(_leading_number(record.get("Slices", "")) or frames)
    fps = _leading_number(record.get("FrameRate", ""))
    if kind == "cine":
        return _plural(frames, "frame") + (f" · {frames / fps:.1f} s at {fps:g} fps" if fps else "")
    if kind == "volume":
        return _plural(slices, "slice")
    if kind == "dose":
        return _plural(slices, "plane")
    if kind == "segmentation":
        return " · ".join(w for w in (_plural(int(record.get("segments") or 0), "segment") if record.get("segments")
                                      else "", _plural(slices, "slice")) if w)
    if kind == "slide":
        size = (record.get("slide_size") or "").split()
        return f"{int(size[0]):,} × {int(size[1]):,} px" if len(size) == 2 and all(map(str.isdigit, size)) else "slide"
    if kind == "document":
        name = DOCUMENT_CLASSES.get(record.get("sop_class", ""), ("", "encapsulated"))[1]
        return f"{name} {'model' if name in ('STL', 'OBJ') else 'document'}"
    if kind == "report":
        return "report"
    if kind == "video":
        frame_time = _leading_number(record.get("frame_time", ""))
        return _clock(frames * frame_time / 1000) if frame_time else _plural(frames, "frame")
    if kind == "waveform":
        channels, seconds = int(record.get("channels") or 0), float(record.get("seconds") or 0)
        if record.get("sop_class") in AUDIO_CLASSES:
            return _clock(seconds)
        noun = "lead" if record.get("sop_class") in ECG_CLASSES else "channel"
        return " · ".join(w for w in (_plural(channels, noun) if channels else "", f"{seconds:g} s" if seconds else "")
                          if w) or "waveform"
    if kind == "metadata":
        modality = MODALITY_NAMES.get(record.get("modality", ""), "")
        return f"{modality[:1].upper() + modality[1:] + ' · ' if modality else ''}details only"
    return _plural(frames, "image") if frames > 1 else "1 image"


def series_count_text(results: list[Result]) -> str:
    """What a series card holds: its files counted as their kind counts ("5 images", "3 clips"),
    a --series cine said once beside them, never counted as one more image."""
    files = [r for r in results if r.status != "series"]
    cine = " + cine" if len(files) < len(results) else ""
    kinds = {r.record.get("kind", "") for r in files}
    if len(files) == 1:
        return count_text(files[0].record) + cine
    if len(kinds) == 1 and next(iter(kinds)) == "image":
        return _plural(len(files), "image") + cine
    if kinds == {"metadata"}:
        return f"{_plural(len(files), 'file')} · details only"
    counted = collections.Counter(_noun(r.record) for r in files)
    return " · ".join(_plural(n, noun) for noun, n in sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))) + cine


def placeholder_text(record: dict) -> str:
    """What a card without a picture shows in its place: the kind of object, in words."""
    kind, sop_class = record.get("kind", ""), record.get("sop_class", "")
    if kind == "document":
        return DOCUMENT_CLASSES.get(sop_class, ("", "Document"))[1]
    if kind == "waveform":
        return "Audio" if sop_class in AUDIO_CLASSES else "ECG" if sop_class in ECG_CLASSES else "Waveform"
    if kind == "metadata":
        name = MODALITY_NAMES.get(record.get("modality", ""), "")
        return (name[:1].upper() + name[1:]) if name else "No image"
    return {"report": "Report", "video": "Video"}.get(kind, "")


def _noun(record: dict) -> str:
    """What one file of a series is called when a card counts several."""
    kind = record.get("kind", "")
    if kind == "waveform":
        sop_class = record.get("sop_class", "")
        return "recording" if sop_class in AUDIO_CLASSES else "ECG" if sop_class in ECG_CLASSES else "waveform"
    return {"cine": "clip", "dose": "dose grid", "metadata": "object"}.get(kind, kind or "file")


def _link_order(kind: str) -> tuple:
    """Reports and documents first, then pictures and media, the .txt and .json last."""
    order = (".html", *DOCUMENT_SUFFIXES, ".png", MEDIAN_SUFFIX, ".gif", TRANSCODED_SUFFIX, ".mp4", ".csv", ".wav",
             ".txt", ".json")
    return (order.index(kind) if kind in order else len(order), kind)
