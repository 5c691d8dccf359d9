"""The manifest (OUTPUT/manifest.csv) and shards (--shard K/N, --merge-shards).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from _dicom_converter.base import Unsupported, display_name
from _dicom_converter.index_page import write_index
from _dicom_converter.inputs import name_key
from _dicom_converter.results import SHOWN_STATUSES, LineStore, result_from_json, result_json
from _dicom_converter.writers import THUMBS_FOLDER, staged_outputs

if TYPE_CHECKING:
    from _dicom_converter.results import Result


# -----------------------------------------------------------------------------
# Shards and the manifest: one run split over machines, one table of what was converted
# -----------------------------------------------------------------------------
SHARDS_FOLDER = ".shards"  # OUTPUT/.shards/part-K-of-N.jsonl: what each shard converted
MANIFEST_COLUMNS = (
    "input", "status", "reason", "outputs", "sop_class", "modality", "study_uid", "series_uid", "instance_uid",
    "rows", "columns", "frames", "bits", "photometric", "display", "frame_rate", "body_part", "manufacturer",
    "model",
)


def in_shard(path: Path, base: Path, shard: tuple[int, int]) -> bool:
    """Whether `path` falls to shard K of N: by its folder, so that the files of a series
    (a CD or an archive keeps one per folder), a report and the images beside it, and
    names that could collide stay in one run.  SHA-256 of the folder's path, so every
    machine and Python agrees (``hash`` is salted per process)."""
    import hashlib

    folder = path.parent.relative_to(base).as_posix() if path.parent != base else ""
    number = int.from_bytes(hashlib.sha256(folder.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    return number % shard[1] == shard[0] - 1


def manifest_row(result: Result, base: Path, output: Path, redacted: bool) -> dict[str, str]:
    """One input's row of the manifest.  Under --redact the input is named by its output
    stem (whose folders `redact_names` cleaned), and every attribute comes from the
    de-identified record, so the manifest holds nothing the outputs do not."""
    record = result.record
    name, outputs = manifest_key(result, base, output, redacted)
    reason = result.message if result.status in ("failed", "skipped") else ""
    values = {
        "input": name, "status": result.status, "reason": reason, "outputs": json.dumps(outputs, ensure_ascii=False),
        "sop_class": record.get("sop_class", ""), "modality": record.get("modality", ""),
        "study_uid": record.get("study_uid", ""), "series_uid": record.get("series_uid", ""),
        "instance_uid": record.get("instance_uid", ""), "rows": record.get("rows", "") or "",
        "columns": record.get("columns", "") or "", "frames": record.get("frames", "") if result.record else "",
        "bits": record.get("bits", ""), "photometric": record.get("photometric", ""),
        "display": record.get("Display", ""), "frame_rate": record.get("FrameRate", ""),
        "body_part": record.get("body_part", ""), "manufacturer": record.get("manufacturer", ""),
        "model": record.get("model", ""),
    }
    return {column: str(values[column]) for column in MANIFEST_COLUMNS}


def manifest_key(result: Result, base: Path, output: Path, redacted: bool) -> tuple[str, list[str]]:
    """How the manifest names an input, and its outputs (relative to OUTPUT): the rows' order."""
    outputs = [path.relative_to(output).as_posix() for path in result.outputs]
    if result.status == "series" or (redacted and result.outputs):
        return outputs[-1].rsplit(".", 1)[0], outputs
    if redacted:
        return "(input name withheld under --redact)", outputs
    return display_name(result.source, base).replace(os.sep, "/"), outputs


def write_manifest(output: Path, rows: Iterable[dict[str, str]]) -> Path:
    """``OUTPUT/manifest.csv``: a row per input, in the order given (by input), written atomically.  CSV
    rather than JSON Lines: a researcher filters it in a spreadsheet or with pandas, and
    every value is flat (the outputs column is a JSON list, since names may hold any
    character)."""
    import csv

    with staged_outputs(output / "manifest") as (stage, finals):
        with open(stage(".csv"), "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    return finals[0]


def earlier_outputs(output: Path) -> set[str]:
    """Name keys of what earlier runs wrote in `output`, by their own record: every output
    path in its manifest.csv (and in shards' parts not merged yet), and the run's own files
    (the manifest, index.html, the thumbnails, the shards' folder).  A run whose output
    folder is its input folder walks past them (`walk_groups`): earlier outputs are never
    inputs and never hold a name, whatever they are called, so a re-run writes the same names."""
    import csv

    own = [output / "manifest.csv", output / "index.html", output / THUMBS_FOLDER, output / SHARDS_FOLDER]
    keys = {name_key(path) for path in own}

    def add(listed: str) -> None:
        with contextlib.suppress(ValueError, TypeError):
            keys.update(name_key(output.joinpath(*name.split("/"))) for name in json.loads(listed)
                        if name and not name.startswith("/") and ".." not in name.split("/"))  # inside OUTPUT only

    with contextlib.suppress(OSError, csv.Error):
        with open(output / "manifest.csv", encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                add(row.get("outputs") or "[]")
    for part in (output / SHARDS_FOLDER).glob("part-*-of-*.jsonl"):
        with contextlib.suppress(OSError, ValueError):
            with open(part, "rb") as f:  # bytes: json reads UTF-8 itself, and text-mode opens are for writing
                for line in f:
                    add(json.loads(line).get("manifest", {}).get("outputs", "[]"))
    return keys


REDACT_SECRET = "redact-secret"  # OUTPUT/.shards/redact-secret: the one secret of a --redact run's shards


def shard_secret(output: Path, shard: tuple[int, int]) -> str:
    """The secret every shard of a ``--redact`` run replaces UIDs with, so that their
    stand-ins agree.  The first shard to start writes it into the shared output folder
    (an exclusive create: two starting at once cannot both write one), the others read it,
    and the merge deletes it, so it never leaves with the outputs."""
    import time

    folder = output / SHARDS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REDACT_SECRET
    if not path.exists() and any(folder.glob(f"part-*-of-{shard[1]}.jsonl")):
        raise Unsupported(f"the shards in {output} were merged and their --redact secret deleted; another shard now "
                          "would replace UIDs differently: convert into a new output folder")
    with contextlib.suppress(FileExistsError):
        with open(path, "x", encoding="ascii") as f:
            os.chmod(path, 0o600)
            f.write(secrets.token_hex(16) + "\n")
    for _ in range(100):  # the shard that created it a moment ago may still be writing it
        text = path.read_text(encoding="ascii").strip()
        if re.fullmatch(r"[0-9a-f]{32}", text):
            return text
        time.sleep(0.1)
    raise Unsupported(f"{path} does not hold a --redact secret: delete it and start the shards again")


def shard_part(output: Path, shard: tuple[int, int]) -> Path:
    return output / SHARDS_FOLDER / f"part-{shard[0]}-of-{shard[1]}.jsonl"


def write_shard_part(output: Path, shard: tuple[int, int], rows: Iterable[dict], results: Iterable[Result]) -> None:
    """This shard's manifest rows and what the index needs of its results, one JSON object a
    line, renamed into place only when whole (a shard that dies leaves no part)."""
    part = shard_part(output, shard)
    with staged_outputs(part.with_suffix("")) as (stage, _):
        with open(stage(".jsonl"), "w", encoding="utf-8", newline="\n") as f:
            for row in rows:
                f.write(json.dumps({"manifest": row}, ensure_ascii=False) + "\n")
            for result in results:
                if result.status in SHOWN_STATUSES:  # outputs relative: the merge may run on another machine
                    item = {**result_json(result), "outputs": [p.relative_to(output).as_posix() for p in result.outputs]}
                    f.write(json.dumps({"index": item}, ensure_ascii=False, default=str) + "\n")


def merge_shards(output: Path, count: int, quiet: bool = False, index: bool = True) -> int:
    """``--merge-shards N``: join the parts of N shards into ``manifest.csv`` and
    ``index.html``, as a single run writes them.  Any shard may do it (the last to finish
    does); doing it twice writes the same files."""
    output = output.resolve()
    parts = [shard_part(output, (k, count)) for k in range(1, count + 1)]
    missing = [part.name for part in parts if not part.exists()]
    if missing:
        print(f"error: cannot merge {count} shards: {', '.join(missing)} not written yet in "
              f"{output / SHARDS_FOLDER}", file=sys.stderr)
        return 1
    rows, results, order = LineStore(), LineStore(result_json, result_from_json), []
    for part in parts:
        with open(part, encoding="utf-8", newline="\n") as f:
            for line in f:
                entry = json.loads(line)
                if "manifest" in entry:
                    row = entry["manifest"]
                    order.append(((row["input"], json.loads(row["outputs"])), len(rows)))
                    rows.append(row)
                else:
                    item = entry["index"]
                    results.append(result_from_json({**item, "outputs": [output / name for name in item["outputs"]]}))
    write_manifest(output, (rows[number] for _, number in sorted(order)))
    if index and len(results):
        write_index(output, results)
    with contextlib.suppress(FileNotFoundError):  # every shard is done with it
        (output / SHARDS_FOLDER / REDACT_SECRET).unlink()
    rows.close()
    results.close()
    if not quiet:
        print(f"merged {count} shards: {len(order)} inputs in manifest.csv" + (", index.html" if index else ""))
    return 0
