"""Results: what happened to each input, the log lines, and the store that keeps them on
disk so that a run's memory does not grow with the number of files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

from _dicom_converter.inputs import FRAMES_SUFFIX


@dataclasses.dataclass
class Result:
    """What happened to one input; `status` is converted/metadata/skipped/failed."""

    source: Path
    status: str
    outputs: list[Path] = dataclasses.field(default_factory=list)
    message: str = ""
    record: dict = dataclasses.field(default_factory=dict)

    def frame_pngs(self) -> list[Path]:
        """The outputs in this file's ``STEM_frames`` folder (the .txt, always the last output, gives STEM)."""
        if not self.outputs:
            return []
        folder = self.outputs[-1].with_name(self.outputs[-1].stem + FRAMES_SUFFIX)
        return [path for path in self.outputs if path.parent == folder]


class Log:
    """Where the run reports: one line per file, or a progress bar on a terminal.

    On a terminal the bar counts files and only problems are printed above it;
    otherwise (a pipe, a log file) every file gets its line.  ``quiet`` keeps
    just the failures and the summary.
    """

    # Until a file has finished there is no rate to tell the time left by: count and time only.
    FIRST_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}]"

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None
        if self.shows_bar(quiet):
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:  # shown at once; rate and time left from the files finished (smoothing=0)
                self.bar = tqdm(total=None, unit="file", file=sys.stderr, leave=False, smoothing=0,
                                bar_format="{n_fmt} files [{elapsed}]")

    def sized(self, total: int) -> None:
        """The number of files, once counted: the bar shows a share of them."""
        if self.bar is not None:
            self.bar.total = total
            self.bar.bar_format = self.FIRST_FORMAT if not self.bar.n else None
            self.bar.refresh()

    @staticmethod
    def shows_bar(quiet: bool) -> bool:
        return not quiet and sys.stderr.isatty()

    def shows(self, problem: bool = False) -> bool:
        """Whether `line` prints a line of this kind: problems always; the others only without
        --quiet and without a bar (the bar stands for them)."""
        return problem or (not self.quiet and self.bar is None)

    def line(self, text: str, problem: bool = False) -> None:
        if not self.shows(problem):
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr if problem else sys.stdout, flush=True)

    def advance(self) -> None:
        if self.bar is not None:
            if self.bar.total is not None:
                self.bar.bar_format = None  # a file has finished: tqdm's own, with rate and time left
            self.bar.update(1)

    def summary(self, text: str, last: str | None = None) -> None:
        """The run's closing lines, shown even with ``quiet``: `text`, then `last` (where to look)."""
        if self.bar is not None:
            self.bar.close()
        print(text, flush=True)
        if last:
            print(last, flush=True)

    def error(self, text: str) -> None:
        """A run that stops with one line on stderr (no summary)."""
        if self.bar is not None:
            self.bar.close()
        print(text, file=sys.stderr, flush=True)


class LineStore:
    """Values kept on disk, one JSON line each in an unnamed temporary file, read back by
    position: the main process keeps 8 bytes a value, not the value (a run's results held
    ~10 KB a file in memory, 1 GB at 100,000 files).  The OS removes the file when it is
    closed, whatever ends the run."""

    def __init__(self, encode: Callable = lambda value: value, decode: Callable = lambda value: value):
        import array
        import tempfile

        self._file = tempfile.TemporaryFile()
        self._starts = array.array("q")
        self._encode, self._decode = encode, decode

    def _write(self, value) -> int:
        start = self._file.seek(0, os.SEEK_END)
        self._file.write(json.dumps(self._encode(value), ensure_ascii=False, default=str).encode("utf-8") + b"\n")
        return start

    def append(self, value) -> None:
        self._starts.append(self._write(value))

    def __setitem__(self, number: int, value) -> None:
        self._starts[number] = self._write(value)  # the old line stays, unread

    def __getitem__(self, number: int):
        self._file.seek(self._starts[number])
        return self._decode(json.loads(self._file.readline()))

    def __len__(self) -> int:
        return len(self._starts)

    def __iter__(self) -> Iterator:
        return (self[number] for number in range(len(self)))

    def close(self) -> None:
        self._file.close()


def result_json(result: Result) -> dict:
    return {"source": str(result.source), "status": result.status, "outputs": [str(path) for path in result.outputs],
            "message": result.message, "record": result.record}


def result_from_json(item: dict) -> Result:
    return Result(Path(item["source"]), item["status"], [Path(path) for path in item["outputs"]], item["message"],
                  item["record"])


SHOWN_STATUSES = ("converted", "metadata", "series")  # what the index, the overlays and the links see
