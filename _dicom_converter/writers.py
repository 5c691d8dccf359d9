"""File writers: PNG (libdeflate, the Up filter), the index page's thumbnails, H.264 MP4
(PyAV's libx264), contact sheets, text files, and `staged_outputs`, which gives each output a
temporary name and renames them all only when the file's conversion succeeded.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import sys
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from _dicom_converter.base import X264_PARAMS, X264_PRESET, X264_TUNE, OutputPathTooLong
from _dicom_converter.pixels.display import to_eight_bit

if TYPE_CHECKING:
    import numpy as np


# PNG is written here rather than through Pillow, whose writer tries four row
# filters per row (libpng's heuristic) with no option to skip the search; that
# search was over half its time.  Every row gets the "Up" filter, then libdeflate
# (bundled by imagecodecs) at level 1.  Measured on 16- and 8-bit CT, MR and CR
# images and an RGB ultrasound, against Python's zlib at level 1 (level 6 took
# twice as long for files 3-6% larger; 9 was 5x for 1%): faster on every image
# (a 512^2 CT 2.0 ms against 2.3 ms, a 1955x1841 CR 58 ms against 91 ms, the
# ultrasound 3.3 ms against 6.6 ms), with 16-bit files 0-25% smaller; 8-bit
# CRs came out up to 24% larger.  zlib-ng at level 1 was faster again but made
# CR files 30-70% larger.  Pillow with its filter search took 6.3 ms for the CT.
PNG_COMPRESS_LEVEL = 1
PNG_FILTER_UP = 2  # filter type byte (PNG 9.2): each byte minus the byte above it


def write_png(frame: np.ndarray, path: Path) -> None:
    """A PNG (ISO/IEC 15948) of one frame: 8/16-bit grey or 8-bit RGB, as the array's dtype and shape say."""
    import struct
    import zlib

    import imagecodecs
    import numpy as np

    height, width = frame.shape[:2]
    big_endian, rows = _png_buffers(frame)
    np.copyto(big_endian, frame)  # PNG is big-endian
    samples = big_endian.view(np.uint8).reshape(height, -1)
    rows[:, 0] = PNG_FILTER_UP
    rows[0, 1:] = samples[0]  # the row above the first counts as zeros
    np.subtract(samples[1:], samples[:-1], out=rows[1:, 1:])
    colour_type = 0 if frame.ndim == 2 else 2  # grey or RGB
    chunks = (
        (b"IHDR", struct.pack(">IIBBBBB", width, height, 8 * frame.dtype.itemsize, colour_type, 0, 0, 0)),
        (b"IDAT", imagecodecs.deflate_encode(rows, level=PNG_COMPRESS_LEVEL)),  # a zlib stream, as PNG wants
        (b"IEND", b""),
    )
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        for kind, body in chunks:
            f.write(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))


# write_png's two working copies of a frame, kept for the next frame of the same shape: a
# fresh megabyte for every 512^2 slice was 240 page faults (glibc gives freed memory of that
# size back to the system), a sixth of the slice's PNG time.  Frames larger than this get
# buffers of their own, which are not kept.
PNG_BUFFERS_KEPT_BYTES = 16 * 2**20
_png_buffers_kept: dict[tuple, tuple] = {}


def _png_buffers(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the frame's samples big-endian, its filtered rows with a filter byte each) to fill;
    a thread's own (frame writers may run in threads of their own, `job.in_own_thread`)."""
    import threading

    import numpy as np

    key = (threading.get_ident(), frame.shape, frame.dtype.str)
    buffers = _png_buffers_kept.get(key)
    if buffers is None:
        big_endian = np.empty(frame.shape, frame.dtype.newbyteorder(">"))
        buffers = (big_endian, np.empty((frame.shape[0], big_endian.nbytes // frame.shape[0] + 1), np.uint8))
        _png_buffers_kept.clear()
        if frame.nbytes <= PNG_BUFFERS_KEPT_BYTES:
            _png_buffers_kept[key] = buffers
    return buffers


# The index page's pictures: one JPEG of at most 256 px per picture it shows (a slice of a
# stack only when it is its series' middle one, `job.pictured_later`), beside nothing the user
# opens (OUTPUT/.thumbs mirrors the output tree).  Measured on a 256 px CT and ECG page:
# JPEG at quality 80 takes 0.3-0.4 ms and 6-9 KB, WebP 6-9 ms and 3-5 KB, so 3,000 slices
# cost 1 s of JPEG against 27 s of WebP; the page loads one thumbnail per series.
THUMBS_FOLDER = ".thumbs"
THUMB_SIZE = 256
THUMB_QUALITY = 80


def thumbnail_path(stem: Path, thumbs: Path) -> Path:
    """Where the thumbnail of the outputs of `stem` goes: `thumbs` mirrors the output tree."""
    return thumbs / Path(f"{stem.relative_to(thumbs.parent)}.jpg")


def write_thumbnail(frame: np.ndarray, path: Path) -> None:
    """`frame` (grey or RGB, 8 or 16 bits) as an 8-bit JPEG fitted within THUMB_SIZE."""
    path.write_bytes(thumbnail_jpeg(frame))


def thumbnail_jpeg(frame: np.ndarray) -> bytes:
    """`write_thumbnail`'s JPEG.  libjpeg-turbo through imagecodecs: the bytes Pillow's JPEG
    writer makes at the same quality (the same library and defaults; tested on grey and RGB
    of many sizes), without the image plugins Pillow loads before its first save (10 ms, the
    most of the one thumbnail the index page makes for a series of slices)."""
    import imagecodecs
    import numpy as np

    if frame.dtype != np.uint8:
        frame = to_eight_bit(frame, 8 * frame.dtype.itemsize)
    return imagecodecs.jpeg8_encode(np.ascontiguousarray(fit_within(frame, THUMB_SIZE)), level=THUMB_QUALITY)


def write_thumbnail_of_png(png: Path, path: Path) -> None:
    """The thumbnail of a PNG this run wrote (`pictured_later`), staged like any output: the
    PNG holds the frame exactly (16-bit grey, 8-bit grey or RGB), so this is the thumbnail
    `write_thumbnail` would have made of it."""
    import imagecodecs

    frame = imagecodecs.png_decode(png.read_bytes())
    with staged_outputs(path) as (output, _):
        write_thumbnail(frame, output("", path))


def fit_within(frame: np.ndarray, max_size: int | None) -> np.ndarray:
    """`frame` scaled down (never up) so its longer side is at most `max_size`."""
    import numpy as np
    from PIL import Image

    rows, cols = frame.shape[:2]
    if not max_size or max(rows, cols) <= max_size:
        return frame
    scale = max_size / max(rows, cols)
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    if (frame.dtype == np.uint8 and size == (cols // 2, rows // 2) and not rows % 2 and not cols % 2
            and cols >= rows):  # Pillow takes some taller frames' two passes the other way round
        return halved(frame)
    # area averaging: no ringing, and it averages noise down instead of aliasing it
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BOX))


def halved(frame: np.ndarray) -> np.ndarray:
    """An 8-bit frame of even size at half its size, as Pillow's BOX resize makes it, in numpy.

    Pillow averages two columns, rounding half up, then two rows of that (its fixed-point
    weights of 1/2 are exact), so for a frame at least as wide as it is tall this gives its
    bytes (tested against it on 400 random sizes, grey and RGB; for some taller frames Pillow
    takes the rows first, so those stay with Pillow): 0.1 ms for a 512^2 slice's thumbnail
    where Pillow took 0.4 ms, and every 1024^2 cine frame on its way to a GIF.
    """
    import numpy as np

    wide = frame.astype(np.uint16)
    columns = (wide[:, 0::2] + wide[:, 1::2] + 1) >> 1
    return ((columns[0::2] + columns[1::2] + 1) >> 1).astype(np.uint8)


@contextlib.contextmanager
def mp4_writer(path: Path, rate: Fraction, crf: int):
    """Stream frames into an H.264 MP4 that browsers play; yields ``write(frame)``.

    H.264 High profile, yuv420p, limited range: grey frames go in as ``gray``
    and colour as ``rgb24``; libswscale converts them to limited-range BT.601,
    and the stream is tagged so.  Odd sizes are padded by repeating the last
    row/column (4:2:0 needs even sizes), never cropped or scaled.
    ``+faststart`` puts the index first so playback starts before the
    download ends.
    """
    import av
    import numpy as np

    container = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
    state: dict = {"stream": None, "count": 0}

    def write(frame: np.ndarray) -> None:
        pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
        if pad_h or pad_w:
            pad = ((0, pad_h), (0, pad_w)) + (((0, 0),) if frame.ndim == 3 else ())
            frame = np.pad(frame, pad, mode="edge")
        stream = state["stream"]
        if stream is None:
            stream = state["stream"] = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = frame.shape[1], frame.shape[0]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": X264_PRESET, "tune": X264_TUNE, "profile": "high",
                              "x264-params": X264_PARAMS}
            stream.codec_context.colorspace = av.video.reformatter.Colorspace.ITU601
            stream.codec_context.color_range = av.video.reformatter.ColorRange.MPEG
        image = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(frame), format="gray" if frame.ndim == 2 else "rgb24"
        )
        image.pts = state["count"]
        container.mux(stream.encode(image))
        state["count"] += 1

    try:
        yield write
        if state["stream"] is not None:
            container.mux(state["stream"].encode(None))
    finally:
        container.close()


def write_text(text: str, path: Path) -> None:
    """UTF-8 with ``\\n`` line ends on every platform (Windows' text mode would write ``\\r\\n``)."""
    path.write_text(text, encoding="utf-8", newline="\n")


# Temporary outputs are named ``.dicom-converter-PID-STARTED-RANDOM.part``: the
# owner's process id and its start time (centiseconds since the epoch, psutil's
# create_time), so a sweep after a crash deletes only what a dead process of
# ours left, even when its pid has since been reused by another process.
TEMPORARY_PREFIX = ".dicom-converter-"
TEMPORARY_NAME = r"\.dicom-converter-(\d+)-(\d+)-[0-9a-f]{8}\.part"


@functools.lru_cache(maxsize=None)
def _process_tag(pid: int) -> str:
    """``PID-STARTED`` of process `pid`, cached by pid so a forked child computes its own."""
    import psutil

    return f"{pid}-{round(psutil.Process(pid).create_time() * 100)}"


@functools.lru_cache(maxsize=None)
def windows_path_limit() -> int | None:
    """The longest path Windows lets this process use, or None where there is no such limit.

    260 characters (MAX_PATH, the terminating NUL included) unless long paths
    are enabled in the registry, which Python (whose manifest opts in) then honours.
    """
    if sys.platform != "win32":
        return None
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SYSTEM\CurrentControlSet\Control\FileSystem") as key:
            if winreg.QueryValueEx(key, "LongPathsEnabled")[0] == 1:
                return None
    except OSError:
        pass
    return 259


@contextlib.contextmanager
def staged_outputs(stem: Path) -> Iterator:
    """Give out temporary paths for the outputs of `stem`; rename them all at the end, or none.

    Yields ``(output, finals)``: ``output(suffix)`` stages the output named
    `stem` + `suffix` (``".png"``, ``"_frames/0001.png"``), or `final` when
    given (a thumbnail), and returns the path to write; `finals` lists the
    final names in the order they were staged.

    Outputs are written as hidden ``.part`` files in their own folder (so the
    rename is atomic), and only when the whole file converted are they renamed
    to their final names.  If a rename fails (a folder in the way) or is
    interrupted, those already renamed are removed again: a failed or
    interrupted conversion leaves no file under a final name.
    """
    staged: list[tuple[Path, Path]] = []
    finals: list[Path] = []
    limit = windows_path_limit()

    def output(suffix: str, final: Path | None = None) -> Path:
        final = Path(f"{stem}{suffix}") if final is None else final
        if limit is not None and (length := len(str(final.absolute()))) > limit:
            raise OutputPathTooLong(f"output path {final.name} would be {length} characters, "
                                    f"more than Windows allows ({limit}): choose a shorter -o, or enable long "
                                    f"paths in Windows")
        folder, made = final.parent, False
        # a short name of its own: the final name may already be near the 255-byte limit
        while True:
            temp = folder / f"{TEMPORARY_PREFIX}{_process_tag(os.getpid())}-{secrets.token_hex(4)}.part"
            try:  # mode 0666 less the umask, as for any new file (mkstemp would make it 0600)
                os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
                break
            except FileExistsError:
                continue
            except FileNotFoundError:  # the folder is made when missing, not asked for every output
                if made:
                    raise
                folder.mkdir(parents=True, exist_ok=True)
                made = True
        staged.append((temp, final))
        finals.append(final)
        return temp

    renamed: list[Path] = []
    try:
        yield output, finals
        for temp, final in staged:
            try:
                os.replace(temp, final)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, final.name) from None
            renamed.append(final)
    except BaseException:
        for path in renamed + [temp for temp, _ in staged[len(renamed):]]:
            with contextlib.suppress(OSError):
                path.unlink()
        raise


CONTACT_SHEET_WIDTH = 2048  # pixels at most: one picture of the whole volume, light enough to open
# A mid-grey line between tiles reads against black air and white bone alike, so where one
# slice ends and the next begins is never a guess; 2 px stays visible once a viewer scales
# the sheet down by half.
SHEET_BORDER_PX = 2
SHEET_BORDER_GREY = 128
# Tile labels: a 14th of the tile's height, at least 9 px (the smallest size at which the
# default font's digits stay apart) and at most 16 (small beside a 512 px slice); white with
# a 1 px black outline, which reads on any pixel beneath it.
SHEET_LABEL_PX = (9, 16)
SHEET_LABEL_MARGIN = 3


@contextlib.contextmanager
def contact_sheet_writer(path: Path, count: int, max_width: int = CONTACT_SHEET_WIDTH,
                         labels: list[str] | None = None, legend=None, trim_right: int = 0):
    """Collect `count` frames into one PNG grid (``write(frame)``), written when done.

    The grid is about square, a SHEET_BORDER_PX grey line between tiles; each slice is
    scaled down (area averaging) to fit its cell, so the grid is at most `max_width` wide,
    and the sheet holds only itself.  Each tile is labelled in its top left corner with its
    number (from 1, in the order frames come) and `labels[n]` after it ("z -149 mm") when
    given and not empty; a label wider than its tile or taller than a third of it is cut
    to the number, or left out, so that none reaches into the next tile or hides its slice.
    `trim_right` columns are cut off each frame first (a per-frame legend), and
    `legend(height)`, an image of the grid's height with the frames' channels, stands once
    at the grid's right, past another grey line.
    """
    import math

    columns = max(1, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / columns)
    state: dict = {"sheet": None, "written": 0}

    def write(frame: np.ndarray) -> None:
        if trim_right:
            frame = frame[:, :max(1, frame.shape[1] - trim_right)]
        rows_px, cols_px = frame.shape[:2]
        cell = min(cols_px, max(1, (max_width - (columns - 1) * SHEET_BORDER_PX) // columns))
        tile = fit_within(frame, max(1, round(max(rows_px, cols_px) * cell / cols_px)))
        if state["sheet"] is None:
            state["cell"] = height, width = tile.shape[:2]
            state["sheet"] = _empty_sheet(rows, columns, height, width, frame.shape[2:], frame.dtype, legend)
        height, width = state["cell"]
        n = state["written"]
        top, left = (n // columns) * (height + SHEET_BORDER_PX), (n % columns) * (width + SHEET_BORDER_PX)
        tile = tile[:height, :width]
        state["sheet"][top:top + tile.shape[0], left:left + tile.shape[1]] = tile
        extra = labels[n] if labels is not None and n < len(labels) else ""
        _label_tile(state["sheet"][top:top + height, left:left + width], [f"{n + 1}  {extra}", str(n + 1)]
                    if extra else [str(n + 1)])
        state["written"] += 1

    yield write
    if state["sheet"] is not None:
        write_png(state["sheet"], path)


def _empty_sheet(rows: int, columns: int, height: int, width: int, channels: tuple, dtype, legend) -> np.ndarray:
    """The black grid with its grey lines between cells, and `legend` at its right."""
    import numpy as np

    grid_h = rows * height + (rows - 1) * SHEET_BORDER_PX
    grid_w = columns * width + (columns - 1) * SHEET_BORDER_PX
    side = None if legend is None else np.asarray(legend(grid_h))
    extra = 0 if side is None else SHEET_BORDER_PX + side.shape[1]
    sheet = np.zeros((grid_h, grid_w + extra) + channels, dtype=dtype)
    lines = np.arange(SHEET_BORDER_PX)
    across = (np.arange(1, rows)[:, None] * (height + SHEET_BORDER_PX) - SHEET_BORDER_PX + lines).ravel()
    down = (np.arange(1, columns)[:, None] * (width + SHEET_BORDER_PX) - SHEET_BORDER_PX + lines).ravel()
    sheet[across, :grid_w] = SHEET_BORDER_GREY
    sheet[:, down] = SHEET_BORDER_GREY
    if side is not None:
        sheet[:, grid_w:grid_w + SHEET_BORDER_PX] = SHEET_BORDER_GREY
        sheet[:side.shape[0], grid_w + SHEET_BORDER_PX:] = side[:grid_h].reshape(side[:grid_h].shape[:2] + channels)
    return sheet


@functools.lru_cache(maxsize=8)
def _label_font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # Pillow >= 10.1: the scalable default font


def _label_tile(tile: np.ndarray, texts: list[str]) -> None:
    """The first of `texts` that fits inside `tile` (its width, a third of its height) drawn into
    its top left corner, in place: white outlined in black.  Only the label's own corner goes
    through Pillow."""
    import numpy as np
    from PIL import Image, ImageDraw

    height, width = tile.shape[:2]
    font = _label_font(min(SHEET_LABEL_PX[1], max(SHEET_LABEL_PX[0], round(height / 14))))
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    for text in texts:
        _, _, right, bottom = measure.textbbox((SHEET_LABEL_MARGIN, SHEET_LABEL_MARGIN), text, font=font,
                                                    anchor="lt", stroke_width=1)
        if right + 1 <= width and 3 * (bottom + 1) <= height:  # a third of a tile at most: the slice shows
            break
    else:
        return
    corner = tile[:bottom + 1, :right + 1]
    image = Image.fromarray(np.ascontiguousarray(corner))
    white, black = (255, 0) if corner.ndim == 2 else ((255,) * corner.shape[2], (0,) * corner.shape[2])
    ImageDraw.Draw(image).text((SHEET_LABEL_MARGIN, SHEET_LABEL_MARGIN), text, font=font, anchor="lt",
                               fill=white, stroke_width=1, stroke_fill=black)
    corner[...] = np.asarray(image).reshape(corner.shape)
