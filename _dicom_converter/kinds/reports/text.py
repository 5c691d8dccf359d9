"""The report as plain text, for the `.txt`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from _dicom_converter.kinds.reports.content import KEY_OBJECT_SELECTION_CLASS, _relationship_label
from _dicom_converter.kinds.reports.html import code_shown_of, withheld_notice
from _dicom_converter.kinds.reports.outline import dose_tables, key_object_description, key_objects

if TYPE_CHECKING:
    from _dicom_converter.kinds.reports.content import ContentItem, Report, Shown
    from _dicom_converter.kinds.reports.outline import DoseTable


def report_text(report: Report) -> str:
    """The same content as the page, as an indented outline of "Concept: value" lines."""
    lines = []
    if report.withhold:
        lines += [withheld_notice(report), ""]
    lines += [report.title, "=" * max(len(report.title), 3)]
    width = max((len(label) for label, _ in report.header), default=0)
    lines += [f"{label + ':':<{width + 1}} {_text_values(values)}" for label, values in report.header]
    if report.sop_class == KEY_OBJECT_SELECTION_CLASS:
        lines += ["", "Key objects", "-----------", f"Selection: {_text_values([code_shown_of(report.root)])}"]
        description = key_object_description(report)
        if description:
            lines.append(f"Description: {_text_values(description)}")
        lines += [f"  [{item.position}] {_text_values(item.values)}" for item in key_objects(report)]
    for table in dose_tables(report):
        lines += ["", table.title, "-" * len(table.title)]
        lines += _text_dose_table(table)
    lines.append("")
    if report.root.observed:
        lines.append(f"(observed {_text_values([report.root.observed])})")
    lines += _text_children(report.root, 1, report)
    return "\n".join(lines).rstrip() + "\n"


def _text_children(item: ContentItem, indent: int, report: Report) -> list[str]:
    lines: list[str] = []
    pad = "  " * indent
    if item.continuous:
        phrases = [_text_values(child.values) for child in item.children if child.value_type != "CONTAINER"]
        if phrases:
            lines.append(pad + _indented(" ".join(phrases), pad))
    for child in item.children:
        if child.value_type == "CONTAINER":
            lines += _text_container(child, indent, report)
        elif not item.continuous or child.children or child.relationship not in ("", "CONTAINS"):
            lines += _text_item(child, indent, report)
    return lines


def _text_container(item: ContentItem, indent: int, report: Report) -> list[str]:
    pad = "  " * indent
    relationship = _relationship_label(item.relationship)
    heading = " ".join(p for p in (f"[{relationship}]" if relationship else "", item.concept) if p)
    lines = [""]
    if heading:
        lines += [f"{pad}{heading}", f"{pad}{'-' * len(heading)}"]
    if item.observed:
        lines.append(f"{pad}(observed {_text_values([item.observed])})")
    return lines + _text_children(item, indent + 1, report)


def _text_item(item: ContentItem, indent: int, report: Report) -> list[str]:
    pad = "  " * indent
    if item.value_type == "CONTAINER":
        return _text_container(item, indent, report)
    relationship = _relationship_label(item.relationship)
    prefix = f"[{relationship}] " if relationship else ""
    if item.reference is not None:
        target = report.by_position.get(item.reference)
        body = (f"-> item {target.position}" + f" ({target.concept})" * bool(target.concept) if target
                else f"reference to item {item.reference}, not in the document")
    else:
        body = f"{item.concept}: " * bool(item.concept) + _text_values(item.values)
    observed = f" (observed {_text_values([item.observed])})" if item.observed else ""
    lines = [pad + _indented(f"{prefix}{body}{observed}", pad + "    ")]
    for child in item.children:
        lines += _text_item(child, indent + 1, report)
    return lines


def _text_dose_table(table: DoseTable) -> list[str]:
    header = ["Event", *table.columns]
    rows = [[str(n), *(_text_values(cell) for cell in cells)] for n, (_, cells) in enumerate(table.rows, 1)]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]] if rows else []
    lines += [f"{concept}: {_text_values(values)}" for concept, values in table.totals]
    return lines


def _text_values(values: list[Shown]) -> str:
    return " ".join(_text_shown(shown) for shown in values)


def _text_shown(shown: Shown) -> str:
    if shown.kind == "code" and shown.detail and shown.detail != shown.text:
        return f"{shown.text} ({shown.detail})"
    if shown.kind == "object":
        return " ".join(p for p in (shown.text, shown.detail, f"<{shown.href}>" if shown.href else "") if p)
    if shown.detail:
        return f"{shown.text} {shown.detail}"
    return shown.text


def _indented(text: str, pad: str) -> str:
    """Continuation lines of a multi-line value, indented under their item."""
    return "\n".join(line.rstrip() for line in text.replace("\n", "\n" + pad).split("\n"))
