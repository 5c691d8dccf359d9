"""The report as an HTML page.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from _dicom_converter.kinds.reports.content import KEY_OBJECT_SELECTION_CLASS, Shown, _media_of, _relationship_label
from _dicom_converter.kinds.reports.outline import dose_tables, key_object_description, key_objects

if TYPE_CHECKING:
    from _dicom_converter.kinds.reports.content import ContentItem, Report
    from _dicom_converter.kinds.reports.outline import DoseTable


REPORT_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:1em auto;max-width:60em;padding:0 1em;color:#222;background:#fafafa;overflow-wrap:anywhere}
h1{font-size:1.45em}h2{font-size:1.25em;border-bottom:1px solid #ccc}h3{font-size:1.1em}h4,h5,h6{font-size:1em}
table{border-collapse:collapse;margin:.5em 0}th,td{text-align:left;vertical-align:top;padding:.15em .6em .15em 0}
th{overflow-wrap:normal}
table.dose th,table.dose td{border:1px solid #ccc;padding:.2em .5em}
ul.items{list-style:none;padding-left:1.2em;margin:.2em 0}li{margin:.15em 0}
.rel{font-size:.85em;color:#666;font-style:italic}.concept{font-weight:600}
.coded,.uid,.observed{font-size:.8em;color:#777}.value{white-space:pre-line}
.missing,.withheld{color:#888;font-style:italic}
.notice{background:#fff3cd;border:1px solid #e0c060;padding:.5em}
p.prose span[id]{border-bottom:1px dotted #aaa}
img.thumb{max-width:160px;max-height:160px;display:block;margin:.2em 0}
section.keys{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;background:#fff;border:1px solid #ddd;padding:8px;max-width:272px}
figure img,figure video{max-width:256px;max-height:256px;display:block;background:#000}
figcaption{font-size:13px}:target{background:#ffef9f}
"""


def report_html(report: Report) -> str:
    """The page: header, then the key objects or dose headlines, then the tree (dsr2html's order)."""
    title = escape(report.title)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{title}</title>",
             '<link rel="icon" href="data:,">',  # no favicon request: the page needs no server
             f"<style>{REPORT_STYLE}</style></head><body>"]
    if report.withhold:
        parts.append(f'<p class="notice">{escape(withheld_notice(report))}</p>')
    parts.append(f'<h1 id="item-1">{title}</h1>')
    parts.append('<table class="header">')
    parts += [f"<tr><th>{escape(label)}</th><td>{_html_values(values)}</td></tr>" for label, values in report.header]
    parts.append("</table>")
    parts += _html_key_objects(report)
    for table in dose_tables(report):
        parts += _html_dose_table(table)
    parts.append("<hr>")
    root = report.root
    notes = [_html_observed(root)] if root.observed else []
    parts += [n for n in notes if n]
    parts += _html_children(root, 1, report)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def withheld_notice(report: Report) -> str:
    """The sentence at the top of a redacted report: how much was withheld, and why."""
    count = report.withheld
    return (f"--redact: {count} content item value{'s' if count != 1 else ''} withheld "
            "(text, person names, dates, times and UIDs can identify the patient; "
            "DICOM PS3.15 E.3.4 Clean Structured Content). Codes, numbers, units and "
            "the document's structure are shown as recorded.")


def _html_children(item: ContentItem, depth: int, report: Report) -> list[str]:
    """The children of a container: headings for containers, list items for the rest.

    A CONTINUOUS container (C.18.8.1.1) is running text: its children read
    as one paragraph, each with its own anchor, their own children after it.
    """
    parts: list[str] = []
    run: list[ContentItem] = []

    def flush():
        if not run:
            return
        if item.continuous:
            parts.append('<p class="prose">' + " ".join(_html_prose(child) for child in run) + "</p>")
            with_notes = [child for child in run if child.children or child.relationship not in ("", "CONTAINS")]
            if with_notes:
                # the anchor is the phrase's; the note repeats the item without one
                parts.append('<ul class="items">' + "".join(_html_item(child, depth, report, anchored=False)
                                                            for child in with_notes) + "</ul>")
        else:
            parts.append('<ul class="items">' + "".join(_html_item(child, depth, report) for child in run) + "</ul>")
        run.clear()

    for child in item.children:
        if child.value_type == "CONTAINER":
            flush()
            parts += _html_container(child, depth + 1, report)
        else:
            run.append(child)
    flush()
    return parts


def _html_container(item: ContentItem, depth: int, report: Report) -> list[str]:
    """A CONTAINER (C.18.8) as a section; nameless ones (allowed below the root) get no heading."""
    level = min(depth, 6)
    parts = [f'<section id="item-{escape(item.position)}">']
    relationship = _relationship_label(item.relationship)
    if item.concept:
        rel = f'<span class="rel">{escape(relationship)}</span> ' if relationship else ""
        parts.append(f"<h{level}>{rel}{escape(item.concept)}</h{level}>")
    elif relationship:
        parts.append(f'<p class="rel">{escape(relationship)}</p>')
    observed = _html_observed(item)
    if observed:
        parts.append(observed)
    parts += _html_children(item, depth, report)
    parts.append("</section>")
    return parts


def _html_item(item: ContentItem, depth: int, report: Report, anchored: bool = True) -> str:
    """One item: "relationship concept: value", its children nested below."""
    if item.value_type == "CONTAINER":
        return "<li>" + "\n".join(_html_container(item, depth + 1, report)) + "</li>"
    relationship = _relationship_label(item.relationship)
    parts = [f'<li id="item-{escape(item.position)}">' if anchored else "<li>"]
    if relationship:
        parts.append(f'<span class="rel">{escape(relationship)}</span> ')
    if item.reference is not None:
        parts.append(_html_reference(item, report))
    else:
        concept = f'<span class="concept">{escape(item.concept)}</span>: ' if item.concept else ""
        parts.append(concept + _html_values(item.values))
        parts.append(_html_pictures(item.values, "thumb"))
    observed = _html_observed(item)
    if observed:
        parts.append(" " + observed)
    if item.children:
        parts.append('<ul class="items">' + "".join(_html_item(child, depth, report) for child in item.children) + "</ul>")
    parts.append("</li>")
    return "".join(parts)


def _html_prose(item: ContentItem) -> str:
    """A child of a continuous container as a phrase of its paragraph, its concept name as a tooltip."""
    return f'<span id="item-{escape(item.position)}" title="{escape(item.concept)}">{_html_values(item.values)}</span>'


def _html_reference(item: ContentItem, report: Report) -> str:
    """A by-reference item (C.17.3.2.5): a link to the item it names, never that item again.

    Following the reference would loop on a tree that refers to its own
    ancestors; the anchor link is the whole rendering.
    """
    target = report.by_position.get(item.reference or "")
    if target is None:
        return f'<span class="missing">reference to item {escape(item.reference or "(none)")}, not in the document</span>'
    return (f'<a class="ref" href="#item-{escape(target.position)}">item {escape(target.position)}'
            f"</a>{f' ({escape(target.concept)})' if target.concept else ''}")


def _html_observed(item: ContentItem) -> str:
    if item.observed is None:
        return ""
    return f'<span class="observed">(observed {_html_values([item.observed])})</span>'


def _html_values(values: list[Shown]) -> str:
    return " ".join(_html_shown(shown) for shown in values)


def _html_shown(shown: Shown) -> str:
    """One value, escaped; codes with their designator:value, instances with their UID."""
    text = escape(shown.text)
    if shown.kind == "code":
        coded = f' <small class="coded">({escape(shown.detail)})</small>' if shown.detail and shown.detail != shown.text else ""
        return f'<span class="code" title="{escape(shown.detail)}">{text}</span>{coded}'
    if shown.kind == "object":
        label = f'<a href="{escape(shown.href)}">{text}</a>' if shown.href else text
        uid = f' <small class="uid">{escape(shown.detail)}</small>' if shown.detail else ""
        return label + uid
    if shown.kind in ("missing", "withheld"):
        return f'<span class="{shown.kind}">{text}</span>'
    tip = f' title="{escape(shown.title)}"' if shown.title else ""
    detail = f' <small class="uid">{escape(shown.detail)}</small>' if shown.detail else ""
    return f'<span class="value"{tip}>{text}</span>{detail}'


def _html_pictures(values: list[Shown], css: str) -> str:
    """Thumbnails of the referenced images this run converted to a picture or a video."""
    parts = []
    for shown in values:
        if shown.kind != "object" or not shown.href or not shown.picture:
            continue
        media = _media_of(shown.href)
        if media == "img":
            parts.append(f'<a href="{escape(shown.href)}"><img class="{css}" loading="lazy" '
                         f'src="{escape(shown.href)}" alt="{escape(shown.text)}"></a>')
        elif media == "video":
            parts.append(f'<video class="{css}" controls muted preload="metadata" src="{escape(shown.href)}"></video>')
    return "".join(parts)


def _html_key_objects(report: Report) -> list[str]:
    """A Key Object Selection's title, description and selected instances, pictures first."""
    keys = key_objects(report)
    if report.sop_class != KEY_OBJECT_SELECTION_CLASS:
        return []
    title = code_shown_of(report.root)
    parts = ["<h2>Key objects</h2>", f"<p><b>Selection:</b> {_html_values([title])}</p>"]
    description = key_object_description(report)
    if description:
        parts.append(f"<p><b>Description:</b> {_html_values(description)}</p>")
    parts.append('<section class="keys">')
    for item in keys:
        objects = [shown for shown in item.values if shown.kind == "object"]
        figure = objects[0] if objects else None
        media = ""
        if figure is not None and figure.href:
            kind = _media_of(figure.href)
            if kind == "img":
                media = f'<a href="{escape(figure.href)}"><img loading="lazy" src="{escape(figure.href)}" alt="{escape(figure.text)}"></a>'
            elif kind == "video":
                media = f'<video controls muted loop preload="metadata" src="{escape(figure.href)}"></video>'
        parts.append(f'<figure>{media}<figcaption><a href="#item-{escape(item.position)}">{escape(item.position)}</a> '
                     f"{_html_values(item.values)}</figcaption></figure>")
    parts.append("</section>")
    return parts


def _html_dose_table(table: DoseTable) -> list[str]:
    parts = [f"<h2>{escape(table.title)}</h2>"]
    if table.rows:
        parts.append('<table class="dose"><tr><th>Event</th>' + "".join(f"<th>{escape(c)}</th>" for c in table.columns) + "</tr>")
        for number, (position, cells) in enumerate(table.rows, 1):
            row = "".join(f"<td>{_html_values(cell)}</td>" for cell in cells)
            parts.append(f'<tr><td><a href="#item-{escape(position)}">{number}</a></td>{row}</tr>')
        parts.append("</table>")
    for concept, values in table.totals:
        parts.append(f'<p><span class="concept">{escape(concept)}</span>: {_html_values(values)}</p>')
    return parts


def code_shown_of(item: ContentItem) -> Shown:
    """An item's concept name as a code (a KOS title, CID 7010)."""
    key = item.concept_code
    return Shown(item.concept, "code", detail=f"{key[0]}:{key[1]}" if key else "")
