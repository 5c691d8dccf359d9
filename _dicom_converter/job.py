"""One file being converted (`Conversion`), and what the kinds share to write frames: the
display frames of a cine or volume, a single frame as PNG, and every frame into GIF, MP4,
per-frame PNGs and a contact sheet at once (`write_cine`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from _dicom_converter.base import DEFAULT_FPS, CorruptFile
from _dicom_converter.geometry import slice_normal
from _dicom_converter.gif import gif_writer
from _dicom_converter.inputs import FRAMES_SUFFIX
from _dicom_converter.pixels.display import is_colour, rendered_frames, to_eight_bit
from _dicom_converter.pixels.helper import decode_in_helper, rendered_frames_in_helper
from _dicom_converter.reading import check_memory, check_pixel_data_length, number_of_frames
from _dicom_converter.redaction import blank_mask, blanked
from _dicom_converter.timing import _constant_timing
from _dicom_converter.writers import contact_sheet_writer, mp4_writer, thumbnail_path, write_png, write_thumbnail

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset

    from _dicom_converter.base import Options
    from _dicom_converter.redaction import PixelPlan
    from _dicom_converter.timing import Timing


@dataclasses.dataclass
class Conversion:
    """One file being converted: what the writers of each kind need."""

    source: Path
    ds: Dataset
    options: Options
    plan: PixelPlan | None  # --redact's plan for the pixels
    output: object  # `staged_outputs`' stager
    rendering: dict[str, str]  # what the .txt summary and the log line say of the rendering
    images: tuple[Path, ...] = ()  # images to draw a segmentation or a dose over
    links: tuple[tuple[str, Path], ...] = ()  # a report's references: (SOP Instance UID, this run's output)
    report: str = ""  # a structured report's text, for the .txt
    stem: Path | None = None  # where the outputs go: OUTPUT/sub/STEM
    shown: Dataset | None = None  # `ds` as the outputs show it (de-identified under --redact)
    thumbnail_file: Path | None = None  # the index page's picture of it, once written (or planned)
    thumbnail_source: Path | None = None  # the output to make that picture from, if the page needs it

    def thumbnail(self, frame: np.ndarray) -> None:
        """The index page's picture of this file, from the first frame offered (see THUMBS_FOLDER)."""
        if self.options.thumbnails is not None and self.stem is not None and self.thumbnail_file is None:
            self.thumbnail_file = thumbnail_path(self.stem, self.options.thumbnails)
            write_thumbnail(frame, self.output("", self.thumbnail_file))

    def thumbnail_later(self) -> None:
        """Leave this file's picture to the index page, which makes it from the file's PNG (of
        the frame `thumbnail` would have been given) if it pictures the series."""
        if self.options.thumbnails is not None and self.stem is not None and self.thumbnail_file is None:
            self.thumbnail_file, self.thumbnail_source = later_thumbnail(self.stem, self.options.thumbnails)

    def blanked(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """`frames` with --redact's rectangles blanked, when the plan has any."""
        import itertools

        if self.plan is None or self.plan.action != "blank":
            return frames
        return blanked(frames, itertools.repeat(blank_mask(self.plan, int(self.ds.Rows), int(self.ds.Columns))))


def write_one_frame(job: Conversion, frames: Iterator[np.ndarray], sixteen: bool) -> None:
    frame = next(frames, None)
    if frame is None:
        raise CorruptFile("no frame could be decoded")
    if job.options.write_png:
        write_png(frame, job.output(".png"))
    if job.options.write_png and pictured_later(job.ds):
        job.thumbnail_later()
    else:
        job.thumbnail(frame)
    job.rendering["Output"] = f"PNG {'16' if sixteen else '8'}-bit" if job.options.write_png else "none"


def pictured_later(ds: Dataset) -> bool:
    """Whether a single-frame file's thumbnail waits for the index page: a slice of a stack
    (it has an Image Position (Patient), PS3.3 C.7.6.2) is one of many in its series, of which
    the page pictures only the middle one.  Making every slice's thumbnail cost a 512^2 CT
    slice a fifth of its conversion (8-bit copy, halving, JPEG, one more file); the page
    makes the one it shows from that slice's PNG, whose pixels are the same frame.  A file
    more likely to be alone in its series (CR, DX, MG, US, a secondary capture) keeps its
    thumbnail now, from the frame in memory, in the worker."""
    return "ImagePositionPatient" in ds


def later_thumbnail(stem: Path, thumbs: Path) -> tuple[Path, Path]:
    """(where the index page puts a picture left to it, the PNG it makes it from) for the
    outputs of `stem` (`pictured_later`)."""
    return thumbnail_path(stem, thumbs), Path(f"{stem}.png")


def check_frames(job: Conversion) -> int:
    """How many frames `job`'s file holds, once it is known that they fit in memory and in the file."""
    frames_total = number_of_frames(job.ds)
    check_memory(job.ds, frames_total, job.options.max_memory)
    check_pixel_data_length(job.ds)
    return frames_total


def display_frames(job: Conversion, order: list[int] | None = None) -> Iterator[np.ndarray]:
    """The frames of a cine or a volume through the display pipeline (in `order`, when given),
    16-bit when per-frame PNGs want full precision, blanked under --redact; large clips are
    decoded in a helper process (`decode_in_helper`)."""
    ds, options = job.ds, job.options
    sixteen = not options.eight_bit and not is_colour(ds) and options.frame_pngs
    render = rendered_frames_in_helper if decode_in_helper(ds, number_of_frames(ds)) else rendered_frames
    frames, job.rendering["Display"] = render(job.source, ds, 65535 if sixteen else 255, options.window,
                                              not options.redact_salt, order)
    return job.blanked(frames)


def write_slices(job: Conversion, frames: Iterator[np.ndarray], frames_total: int, ordered_by: str,
                 positions: list[float | None] | None = None, orientation=None, legend=None,
                 trim_right: int = 0) -> None:
    """Frames that are places, not moments: scrolled at --fps or 10 fps ("slices, not time"),
    with a contact sheet as the PNG and the middle slice as the index page's picture.

    The sheet labels each tile with its slice number and, from `positions` (along the slice
    normal, in the frames' order) and `orientation` (Image Orientation (Patient)), where it
    lies (`slice_labels`); `legend` and `trim_right` go to `contact_sheet_writer`."""
    options = job.options
    timing = _constant_timing(Fraction(options.fps or DEFAULT_FPS), frames_total, "slices, not time")
    job.rendering["Slices"] = f"{frames_total}, {ordered_by}"
    job.rendering["FrameRate"] = timing.describe()
    sheet = {"labels": slice_labels(positions or [], orientation), "legend": legend, "trim_right": trim_right}
    written = write_cine(frames, job.output, timing, options, sheet=sheet if options.write_png else None,
                         thumbnail=(frames_total // 2, job.thumbnail))
    if written != frames_total:
        raise CorruptFile(f"decoded {written} of {frames_total} frames")


# A slice normal within 0.01 degrees of a patient axis is that axis: its labels say "z -149 mm"
# (the patient coordinate, PS3.3 C.7.6.2.1.1) rather than a distance along an oblique normal.
AXIS_COSINE = 0.99999998


def slice_labels(positions: list[float | None], orientation) -> list[str]:
    """Where each slice lies, for its tile on the contact sheet: "z -149 mm" when the slice
    normal (`slice_normal` of `orientation`) is a patient axis, else "152.3 mm" along the
    normal; "" where the position is unknown."""
    normal = slice_normal(orientation) or (0.0, 0.0, 0.0)
    axis = max(range(3), key=lambda k: abs(normal[k]))
    on_axis = abs(normal[axis]) >= AXIS_COSINE
    labels = []
    for position in positions:
        if position is None:
            labels.append("")
        elif on_axis:
            labels.append(f"{'xyz'[axis]} {round(position * (1 if normal[axis] > 0 else -1), 2):g} mm")
        else:
            labels.append(f"{round(position, 2):g} mm")
    return labels


def write_cine(frames, output, timing: Timing, options: Options, sheet: dict | None = None,
               thumbnail: tuple[int, Callable] | None = None) -> int:
    """GIF, MP4, (with --frames) a PNG per frame and (with `sheet`, `contact_sheet_writer`'s
    labels, legend and trim) a contact sheet as the PNG, all fed as each frame is decoded.

    `output` is `staged_outputs`' stager for this file's outputs; `thumbnail` is
    (frame number, a function to give that frame for the index page's picture).

    Frames arrive 16-bit when per-frame PNGs want full precision; the GIF and
    MP4 then get the same pixels reduced to 8 bits.
    """
    import numpy as np

    with contextlib.ExitStack() as stack:
        writers = []
        if options.write_mp4:
            writers.append(stack.enter_context(in_own_thread(mp4_writer(output(".mp4"), timing.rate, options.crf))))
        if options.write_gif:
            writers.append(stack.enter_context(gif_writer(output(".gif"), timing.durations_ms, options.gif_max_size)))
        if sheet is not None:
            writers.append(stack.enter_context(contact_sheet_writer(output(".png"), len(timing.durations_ms), **sheet)))
        count = 0
        for frame in frames:
            count += 1
            if options.frame_pngs:
                write_png(frame, output(f"{FRAMES_SUFFIX}/{count:04d}.png"))
            if frame.dtype == np.uint16:
                frame = to_eight_bit(frame, 16)
            if thumbnail is not None and count - 1 == thumbnail[0]:
                thumbnail[1](frame)
            for write in writers:
                write(frame)
    return count


# x264 runs on threads of its own, but its encode call blocks until one is free;
# the GIF was then waiting behind it.  Fed through a short queue from a thread
# of its own, the MP4 encodes while this thread builds the GIF (PyAV lets go of
# the GIL while it waits for x264): 7.4 s -> 6.6 s for a 1024^2 x 100 run.
WRITER_QUEUE_FRAMES = 4
WRITER_WAKE_SECONDS = 0.5  # the writer thread looks again this often while it waits for a frame


@contextlib.contextmanager
def in_own_thread(writer):
    """Run the frame writer `writer` (a context manager yielding ``write``) in a thread of its own.

    Yields a ``write(frame)`` that queues the frame; an error in the thread
    comes back on the next call or at the end.  Frames must not be changed
    after they are queued.
    """
    import queue
    import threading

    frames: queue.Queue = queue.Queue(maxsize=WRITER_QUEUE_FRAMES)
    failures: list[BaseException] = []
    ended = threading.Event()  # every frame has been queued (or the producer gave up)

    def next_frame():
        """The next frame queued, or None at the end.  Waits in short steps: a SIGTERM that
        interrupts the producer inside the queue's notify (a worker being stopped) could
        leave this thread asleep beside a queued end, and the worker hung joining it
        (caught once in 40 interrupted runs under load)."""
        while True:
            try:
                return frames.get(timeout=WRITER_WAKE_SECONDS)
            except queue.Empty:
                if ended.is_set() and frames.empty():
                    return None

    with writer as write:
        def run() -> None:
            try:
                while (frame := next_frame()) is not None:
                    write(frame)
            except BaseException as exc:
                failures.append(exc)
                while next_frame() is not None:  # keep taking, so the producer never blocks
                    pass

        thread = threading.Thread(target=run, name="writer", daemon=True)
        thread.start()

        def put(frame) -> None:
            if failures:
                raise failures[0]
            frames.put(frame)

        try:
            yield put
        finally:
            ended.set()
            frames.put(None)
            thread.join()
        if failures:
            raise failures[0]
