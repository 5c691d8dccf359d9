"""Writing a structured report: its page, its outline in the `.txt`, and the index page's excerpt.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from _dicom_converter.kinds.reports.content import Report, _code_meaning, _first, _get, _Reading
from _dicom_converter.kinds.reports.html import report_html
from _dicom_converter.kinds.reports.outline import document_header
from _dicom_converter.kinds.reports.text import report_text
from _dicom_converter.values import string_value
from _dicom_converter.writers import write_text

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from _dicom_converter.job import Conversion


def structured_report(ds: Dataset, link_of: Callable[[str], str | None], withhold: bool) -> tuple[str, str]:
    """(HTML page, plain text) of an SR document (PS3.3 C.17.3 SR Document Content).

    `link_of` maps a referenced SOP Instance UID to a relative URL of this
    run's output for it, or None.  With `withhold` (``--redact``, PS3.15 E.3.4)
    the values of TEXT, PNAME, DATE, TIME, DATETIME and UIDREF items, the items'
    observation date-times and the UIDs of referenced instances are never
    output; the header shows `ds` as given.  Raises CorruptFile for a tree
    that cannot be walked (nested beyond SR_MAX_DEPTH, a Content Sequence that
    is not a sequence).
    """
    report = read_report(ds, link_of, withhold)
    return report_html(report), report_text(report)


def read_report(ds: Dataset, link_of: Callable[[str], str | None], withhold: bool) -> Report:
    """The document's header (C.17.2 SR Document General) and content tree (C.17.3), read once."""
    reading = _Reading(link_of, withhold)
    root = reading.item(ds, "1", 0)
    return Report(
        sop_class=string_value(_get(ds, "SOPClassUID")), title=root.concept, header=document_header(ds, reading),
        root=root, by_position=reading.by_position, withheld=reading.withheld, withhold=withhold,
    )


def write_report(job: Conversion, kind: str) -> None:
    """A structured report: ``STEM.html`` (a page a phone shows) and its text in the ``.txt``
    after the summary.  Its references link to this run's outputs of them (`job.links`, given
    on a second pass once the images are done).  Under --redact the page is made from the
    de-identified dataset, with Clean Structured Content's withholding (PS3.15 E.3.4)."""
    from urllib.parse import quote

    from pydicom.uid import UID

    shown = job.shown
    page_path = job.output(".html")  # staged in the folder the page ends up in
    links = dict(job.links)
    linked = set()

    def link_of(uid: str) -> str | None:
        target = links.get(uid)
        if target is None:
            return None
        linked.add(uid)
        return quote(Path(os.path.relpath(target, page_path.parent)).as_posix())

    page, job.report = structured_report(shown, link_of, withhold=bool(job.options.redact_salt))
    write_text(page, page_path)
    sop_class = str(job.ds.get("SOPClassUID", ""))
    title = _code_meaning(_first(job.ds, "ConceptNameCodeSequence"))
    job.rendering["Display"] = (f"{UID(sop_class).name if sop_class else 'structured report'}"
                                + (f": {title}" if title else "")
                                + (f", {len(linked)} reference(s) linked to this run's outputs" if linked else ""))
    job.rendering["Output"] = "HTML page, and the report's text in the .txt"


def report_excerpt(text: str, lines: int = 3, length: int = 240) -> str:
    """The first lines of a report's content (after its header block), for the index page."""
    body = text.split("\n\n", 1)[1] if "\n\n" in text else ""
    excerpt = " · ".join(line.strip() for line in body.splitlines() if line.strip())
    shown = " · ".join(excerpt.split(" · ")[:lines])
    return shown if len(shown) <= length else shown[:length - 1] + "…"
