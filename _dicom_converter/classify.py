"""Kinds of object: what a file is decides what it becomes (`object_kind`), the key of
the dispatch table in `convert`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from _dicom_converter.geometry import frame_positions
from _dicom_converter.reading import has_pixel_data, number_of_frames, transfer_syntax_of
from _dicom_converter.sop import (
    CINE_POINTERS,
    DOCUMENT_CLASSES,
    RT_DOSE_CLASS,
    SEGMENTATION_CLASS,
    SR_CLASS_PREFIX,
    VIDEO_SYNTAXES,
    VOLUME_POINTERS,
    WHOLE_SLIDE_CLASS,
)
from _dicom_converter.timing import frame_increment_keywords

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


def object_kind(ds: Dataset) -> str:
    """What `ds` is: a ``document`` (an encapsulated PDF, CDA, STL, OBJ or MTL), a ``waveform``
    (ECG, pressures, audio: PS3.3 C.10.9), a ``report`` (an SR document, C.17), ``metadata``
    (no pixel data), ``segmentation`` (PS3.3 A.51, one frame or many), ``image`` (one frame),
    or what `multiframe_kind` says of several frames."""
    if str(ds.get("SOPClassUID", "")) in DOCUMENT_CLASSES:
        return "document"
    if "WaveformSequence" in ds and not has_pixel_data(ds):
        return "waveform"
    if not has_pixel_data(ds) and (str(ds.get("SOPClassUID", "")).startswith(SR_CLASS_PREFIX) or (
            ds.get("ValueType") == "CONTAINER" and "ContentSequence" in ds)):
        return "report"
    if not has_pixel_data(ds):
        return "metadata"
    if transfer_syntax_of(ds) in VIDEO_SYNTAXES:
        return "video"
    if str(ds.get("SOPClassUID", "")) == SEGMENTATION_CLASS:
        return "segmentation"
    if number_of_frames(ds) == 1:
        return "image"
    return multiframe_kind(ds)


def multiframe_kind(ds: Dataset) -> str:
    """Whether the frames of `ds` are moments (``cine``) or places (``volume``, ``slide``,
    ``segmentation``), from the standard's signals.

    The rules, in order:
    1. Frame Increment Pointer (PS3.3 C.7.6.6) names Frame Time or Frame Time
       Vector: a cine (angiography, ultrasound, cardiac cines).
    2. It names Grid Frame Offset Vector (RT Dose planes, C.8.8.3.2) or Slice
       Vector (NM, C.8.4.8.1): a volume, or a ``dose`` for the RT Dose class
       (C.8.8.3), whose planes are drawn in colour with a scale.
    3. The frames' Plane Position (Patient) (C.7.6.16.2.3, per-frame
       functional groups) moves along the slice normal: a volume (Enhanced
       CT, MR, PET, tomosynthesis).  A temporal dimension over one position
       is a cine.
    4. Dimension Organization Type TILED_FULL or TILED_SPARSE (C.7.6.17), or
       the VL Whole Slide Microscopy class (C.8.12.4): a ``slide``, its tiles
       stitched.
    5. The Segmentation class (C.8.20): a ``segmentation``, its segments
       coloured slice by slice.
    6. Anything else stays a cine, the behaviour for files with no signal.
    """
    keywords = set(frame_increment_keywords(ds))
    sop_class = str(ds.get("SOPClassUID", ""))
    if keywords & set(CINE_POINTERS):
        return "cine"
    if keywords & set(VOLUME_POINTERS):
        return "dose" if sop_class == RT_DOSE_CLASS else "volume"
    if sop_class == WHOLE_SLIDE_CLASS or str(ds.get("DimensionOrganizationType", "")).startswith("TILED"):
        return "slide"
    if sop_class == SEGMENTATION_CLASS:
        return "segmentation"
    if len({position for position in frame_positions(ds) if position is not None}) > 1:
        return "dose" if sop_class == RT_DOSE_CLASS else "volume"
    return "cine"
