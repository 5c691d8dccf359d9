"""Volumes: frames that are slices, in anatomical order, with a contact sheet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from _dicom_converter.geometry import frame_orientation, frame_positions, volume_order
from _dicom_converter.job import (
    check_frames,
    display_frames,
    write_slices,
)

if TYPE_CHECKING:
    from _dicom_converter.job import Conversion


def write_volume(job: Conversion, kind: str) -> None:
    """Frames that are slices of a volume, in anatomical order (`volume_order`), each tile of
    the contact sheet labelled with its position along the slice normal where the file gives it."""
    frames_total = check_frames(job)
    order, ordered_by = volume_order(job.ds)
    positions = frame_positions(job.ds)
    shown = [positions[n] if n < len(positions) else None for n in order]
    write_slices(job, display_frames(job, order), frames_total, ordered_by, shown, frame_orientation(job.ds))
