"""Where frames lie in the patient: each frame's position along the slice normal
(PS3.3 C.7.6.2, C.7.6.16.2.3) and the anatomical order of a volume's frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from _dicom_converter.reading import is_multi, number_of_frames

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


def frame_positions(ds: Dataset) -> list[float | None]:
    """Each frame's position along the slice normal (Plane Position and Orientation (Patient),
    C.7.6.16.2.3-4, per frame or shared), None where the file does not say."""
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    frames = ds.get("PerFrameFunctionalGroupsSequence") or []
    positions = []
    for item in frames:
        position = _group_value(item, shared, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _group_value(item, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
        positions.append(along_normal(position, orientation))
    return positions


def _group_value(item, shared, macro: str, keyword: str):
    for group in (item, shared):
        if group is not None and group.get(macro):
            value = group.get(macro)[0].get(keyword)
            if value is not None:
                return value
    return None


def slice_normal(orientation) -> tuple[float, float, float] | None:
    """The slice normal, row × column direction cosines of Image Orientation (Patient)
    (PS3.3 C.7.6.2.1.1); None when `orientation` is not six numbers."""
    try:
        r, c = [float(v) for v in orientation[:3]], [float(v) for v in orientation[3:6]]
    except (TypeError, ValueError, IndexError):
        return None
    if len(r) != 3 or len(c) != 3 or len(orientation) != 6:
        return None
    return (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])


def along_normal(position, orientation) -> float | None:
    """Image Position · (row × column direction cosines), as `slice_order` orders a series."""
    try:
        p = [float(v) for v in position]
    except (TypeError, ValueError):
        return None
    normal = slice_normal(orientation)
    if len(p) != 3 or normal is None:
        return None
    return sum(a * b for a, b in zip(p, normal))


def frame_orientation(ds: Dataset):
    """Image Orientation (Patient) of a multi-frame object: shared (C.7.6.16.2.4), else its
    first frame's, else the top-level attribute; None when it has none."""
    frames = ds.get("PerFrameFunctionalGroupsSequence") or [None]
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    found = _group_value(shared, frames[0], "PlaneOrientationSequence", "ImageOrientationPatient")
    return found if found is not None else ds.get("ImageOrientationPatient")


def volume_order(ds: Dataset) -> tuple[list[int], str]:
    """The frame numbers of a volume in anatomical order, and how they were ordered.

    By stack (Stack ID) and temporal position (Temporal Position Index) of the
    Frame Content (C.7.6.16.2.2), then by position along the slice normal; an
    RT Dose by its Grid Frame Offset Vector (C.8.8.3.2); without positions, by
    the Dimension Index Values (C.7.6.17.1); else as stored.
    """
    count = number_of_frames(ds)
    offsets = ds.get("GridFrameOffsetVector")
    if offsets is not None and is_multi(offsets) and len(offsets) == count:
        return sorted(range(count), key=lambda n: float(offsets[n])), "by Grid Frame Offset Vector"
    positions = frame_positions(ds)
    frames = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(positions) == count and None not in positions:
        groups = [_frame_group(item) for item in frames]
        order = sorted(range(count), key=lambda n: (groups[n], positions[n], n))
        return order, "by position along the slice normal" + _groups_text([groups[n] for n in order])
    indices = [_frame_content(item).get("DimensionIndexValues") for item in frames]
    if len(indices) == count and None not in indices:
        keys = [tuple(int(v) for v in (i if is_multi(i) else [i])) for i in indices]
        return sorted(range(count), key=lambda n: (keys[n], n)), "by Dimension Index Values"
    return list(range(count)), "as stored (the file gives no slice positions)"


def _groups_text(groups: list[tuple]) -> str:
    """Where each stack or temporal position runs in the ordered slices, when there are several."""
    runs: list[list] = []
    for number, group in enumerate(groups, 1):
        if runs and runs[-1][0] == group:
            runs[-1][2] = number
        else:
            runs.append([group, number, number])
    if len(runs) < 2:
        return ""
    parts = [f"{'stack ' + stack + ' ' if stack else ''}{'time ' + str(time) + ' ' if time else ''}"
             f"slices {first}-{last}" for (stack, time), first, last in runs]
    return f"; {len(runs)} stacks or time points, one after another: " + ", ".join(parts)


def _frame_content(item) -> Dataset:
    from pydicom.dataset import Dataset

    content = item.get("FrameContentSequence")
    return content[0] if content else Dataset()


def _frame_group(item) -> tuple:
    content = _frame_content(item)
    return (str(content.get("StackID", "")), int(content.get("TemporalPositionIndex") or 0))


# A direction cosine counts toward an edge's letters from this size on (about 15 degrees
# off the axis); smaller ones are the tilt of a nearly straight slice, which viewers
# (Horos, Weasis) leave out rather than show "LPH" for an axial slice tilted by a degree.
ORIENTATION_MIN_COSINE = 0.25
_AXIS_LETTERS = (("R", "L"), ("A", "P"), ("F", "H"))  # patient -x/+x, -y/+y, -z/+z (PS3.3 C.7.6.2.1.1)
_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "F": "H", "H": "F"}


def direction_letters(vector) -> str:
    """The patient directions a direction cosine points to, strongest first ("L", "PH")."""
    ranked = sorted(range(3), key=lambda axis: -abs(vector[axis]))
    return "".join(_AXIS_LETTERS[axis][vector[axis] > 0] for axis in ranked
                   if abs(vector[axis]) >= ORIENTATION_MIN_COSINE)


def edge_letters(orientation=None, patient_orientation: str = "") -> list[str] | None:
    """The letters at the left, top, right and bottom edges of an image, as viewers show them.

    From Image Orientation (Patient) (PS3.3 C.7.6.2.1.1: the first three cosines point along a
    row, to the right, the last three down a column); else from Patient Orientation
    (C.7.6.1.1.1, the row and column directions as letters, for projection images).  None when
    the file gives neither, or values that are not directions.
    """
    try:
        cosines = [float(v) for v in orientation] if orientation is not None else []
    except (TypeError, ValueError):
        cosines = []
    if len(cosines) == 6:
        right, down = direction_letters(cosines[:3]), direction_letters(cosines[3:])
        if right and down:
            return [direction_letters([-c for c in cosines[:3]]), direction_letters([-c for c in cosines[3:]]),
                    right, down]
    parts = [p.strip().upper() for p in str(patient_orientation or "").split("\\")]
    if len(parts) == 2 and all(p and set(p) <= set(_OPPOSITE) for p in parts):
        right, down = parts
        return ["".join(_OPPOSITE[c] for c in right), "".join(_OPPOSITE[c] for c in down), right, down]
    return None
