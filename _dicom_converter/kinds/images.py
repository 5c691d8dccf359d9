"""Images and cines: one frame as a PNG, frames that are moments as a GIF and an MP4 at
the file's own rate, and files with no pixels as metadata only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from _dicom_converter.base import CorruptFile
from _dicom_converter.job import check_frames, display_frames, write_cine, write_one_frame
from _dicom_converter.pixels.display import is_colour, rendered_frames
from _dicom_converter.reading import check_memory, check_pixel_data_length
from _dicom_converter.timing import frame_timing

if TYPE_CHECKING:
    from _dicom_converter.job import Conversion


def write_metadata_only(job: Conversion, kind: str) -> None:
    job.rendering["Display"] = "metadata only (no pixel data)"


def write_image(job: Conversion, kind: str) -> None:
    """One frame: a PNG, 16-bit for greyscale unless --8bit."""
    options, ds = job.options, job.ds
    check_memory(ds, 1, options.max_memory)
    check_pixel_data_length(ds)
    sixteen = not options.eight_bit and not is_colour(ds)
    frames, job.rendering["Display"] = rendered_frames(job.source, ds, 65535 if sixteen else 255, options.window,
                                                       not options.redact_salt)
    write_one_frame(job, job.blanked(frames), sixteen)


def write_clip(job: Conversion, kind: str) -> None:
    """Frames that are moments: a GIF and an MP4 at the file's own rate, pictured by its middle frame."""
    frames_total = check_frames(job)
    frames = display_frames(job)
    timing = frame_timing(job.ds, frames_total, job.options.fps)
    job.rendering["FrameRate"] = timing.describe()
    # Pictured by its middle frame: an angiography run's first frames come before the contrast
    # (a grey disc), and a loop's middle is as good as any of its frames; the frame that shows
    # most would need every frame before the first is written, which streaming does not keep.
    written = write_cine(frames, job.output, timing, job.options, thumbnail=(frames_total // 2, job.thumbnail))
    if written != frames_total:
        raise CorruptFile(f"decoded {written} of {frames_total} frames")
