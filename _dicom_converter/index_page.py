"""The index page: OUTPUT/index.html, one self-contained page of series cards and a
viewer; its script and style are `index.js` and `index.css` beside this module.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from _dicom_converter.kinds.documents import DOCUMENT_SUFFIXES
from _dicom_converter.kinds.video import TRANSCODED_SUFFIX
from _dicom_converter.kinds.waveforms import MEDIAN_SUFFIX
from _dicom_converter.results import SHOWN_STATUSES
from _dicom_converter.series import slice_order
from _dicom_converter.writers import staged_outputs

if TYPE_CHECKING:
    from _dicom_converter.results import Result


# The viewer's frame, with no data and no media element in it: the script
# fills it in, and creates the <img>, <video> and <audio> on first use, so the
# closed page requests nothing but thumbnails.
INDEX_VIEWER = """<dialog class="viewer" id="viewer" aria-label="Viewer" aria-modal="true">
<header><h2 id="viewer-series"></h2><span id="viewer-counter" aria-hidden="true"></span>
<button type="button" class="close" id="viewer-close">Close</button></header>
<div class="stage" id="viewer-stage"></div>
<div class="move"><label for="viewer-slider" class="vh">Image</label>
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
# is unreliable); nothing may be fetched by script, posted, or embedded.
_CSP = ("script-src '{hash}'; connect-src 'none'; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-src 'none'")


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
    name, patient_id = patient.get("name") or "(no name)", patient.get("id") or ""
    return f"<h2>Patient {escape(name)}{' — ' + escape(patient_id) if patient_id else ''}</h2>"


def _study_heading(study: dict) -> str:
    words = " ".join(w for w in (study.get("date") or "", study.get("description") or "") if w)
    return f"<h3>Study {escape(words)}</h3>"


def _series_card(series: dict, index: int) -> str:
    """One series: a button (thumbnail, title, modality, count, size) that opens the viewer,
    and a plain link to its first item's first file for a browser without script."""
    title, modality = series.get("title") or "(untitled series)", series.get("modality") or ""
    if series.get("thumb"):
        # width/height reserve the box before the file arrives; CSS scales it to the card
        picture = (f'<img class="thumb" loading="lazy" decoding="async" width="256" height="256" alt="" '
                   f'src="{escape(_relative(series["thumb"]))}">')
    else:
        picture = f'<span class="thumb none" aria-hidden="true">{escape(modality or "?")}</span>'
    count = int(series.get("count") or len(series.get("items", [])))
    meta = " · ".join(w for w in (modality, f"{count} image{'s' * (count != 1)}", series.get("size") or "") if w)
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
    keys = ("title", "image", "video", "audio", "facts", "links", "excerpt")
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
    for number, result in enumerate(results):
        if result.status not in SHOWN_STATUSES:
            continue
        r = result.record
        patient = (r.get("patient_name") or "(no name)", r.get("patient_id") or "")
        study = (r.get("study_uid", ""), r.get("study_date", ""), r.get("study_description", ""))
        series = (r.get("series_number", ""), r.get("series_description", ""), r.get("series_uid", ""))
        place = (result.outputs[0].as_posix() if result.outputs else "", number)  # first outputs are unique
        tree.setdefault(patient, {}).setdefault(study, {}).setdefault(series, []).append(place)

    def first_output(series_map: dict) -> str:  # ties broken by output name, not by arrival
        return min(min(places)[0] for places in series_map.values())

    def series_card(number: str, description: str, places: list) -> dict:
        def make() -> dict:
            return _index_series(number, description, [results[place] for _, place in sorted(places)], output)

        return {"count": len(places), "make": make}

    patients = []
    for (name, patient_id), studies in sorted(tree.items()):
        studies_model = []
        for (_, date, description), series_map in sorted(
                studies.items(), key=lambda kv: (kv[0][1:], first_output(kv[1]))):
            series_model = [series_card(number, series_description, places)
                            for (number, series_description, _), places in sorted(
                                series_map.items(), key=lambda kv: (_series_sort_key(kv), min(kv[1])[0]))]
            studies_model.append({"date": date, "description": description, "series": series_model})
        patients.append({"name": name, "id": patient_id, "studies": studies_model})
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
    first = results[0].record
    sizes = [f"{r.record['columns']}×{r.record['rows']}" for r in results if r.record.get("columns")]
    return {"title": " ".join(w for w in ("Series", str(number), description) if w) if number or description
            else "Series (unnumbered)",
            "modality": first.get("modality", ""), "count": len(results),
            "size": sizes[0] if sizes and len(set(sizes)) == 1 else ("mixed sizes" if sizes else ""),
            "thumb": _index_link(Path(middle.record["thumbnail"]), output) if middle else None,
            "items": [_index_item(result, output) for result in results]}


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
    facts = [("Modality", r.get("modality", "")), ("Size", f"{r.get('columns', '')}×{r.get('rows', '')}" * pictured),
             ("Frames", r.get("frames", "") * pictured), ("Display", r.get("Display", "")), ("Rate", r.get("FrameRate", "")),
             ("Slices", r.get("Slices", "")), ("Slide", r.get("Slide", "")), ("Audio", r.get("Audio", ""))]
    names = {".html": "report", MEDIAN_SUFFIX: "median beat", TRANSCODED_SUFFIX: "H.264 mp4",
             **({".mp4": "HEVC mp4"} if TRANSCODED_SUFFIX in by_suffix else {})}
    links = [[names.get(kind, kind[1:]), _index_link(path, output)]
             for kind, path in sorted(by_suffix.items(), key=lambda kv: _link_order(kv[0]))]
    return {"title": files[0].relative_to(output).with_suffix("").as_posix() if files else result.source.name,
            "image": _index_link(picture, output) if picture else None,
            "video": _index_link(playable, output) if playable else None,
            "audio": _index_link(by_suffix[".wav"], output) if ".wav" in by_suffix else None,
            "facts": [[label, str(value)] for label, value in facts if value], "links": links,
            "excerpt": r.get("excerpt") or None}


def _link_order(kind: str) -> tuple:
    """Reports and documents first, then pictures and media, the .txt and .json last."""
    order = (".html", *DOCUMENT_SUFFIXES, ".png", MEDIAN_SUFFIX, ".gif", TRANSCODED_SUFFIX, ".mp4", ".csv", ".wav",
             ".txt", ".json")
    return (order.index(kind) if kind in order else len(order), kind)
