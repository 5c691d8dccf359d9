"""Finding inputs and naming outputs: the walk over an input tree (DICOM recognised by
content), and output names that are portable to every file system (Windows reserved names, FAT
and exFAT characters, case and Unicode folding) and never collide.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Collection, Iterator

from _dicom_converter.base import DICOM_SUFFIXES, MAX_STEM_BYTES
from _dicom_converter.reading import _dcmread


@dataclasses.dataclass
class FolderGroup:
    """The input files whose outputs go to one output folder, as a case- and
    normalisation-insensitive file system sees it: the files of every input folder that
    mirrors to it (``A/`` and ``a/``, ``a:`` and ``a_``), and what outputs there must not land on."""

    files: list[tuple[Path, Path]]  # (input file, the output folder it mirrors to), sorted by input
    present: set[str]  # name keys of the input files and the output subfolders here


def walk_groups(root: Path, output: Path, exclude: Path | None = None,
                earlier: Collection[str] = frozenset()) -> Iterator[FolderGroup]:
    """The input tree under `root` (or `root` itself), one output folder at a time, in sorted order.

    Names can collide only within one output folder, so planning one group
    after another needs no state from the others, and the walk holds one
    folder's listing, not the whole tree.  Symbolic links to directories are
    not followed, so link loops cannot hang the walk; `exclude` (the output
    folder, when it lies inside the input) is not entered, so a second run
    does not pick up its own outputs.  When the output folder is the input
    folder, `earlier` (name keys of what earlier runs wrote there, as their
    manifest lists it) does that: those files are neither inputs nor names
    taken, and a folder holding nothing else (``STEM_frames/``) is not entered.
    """
    if root.is_file():
        yield FolderGroup([(root, output)], {name_key(root)})
    else:
        holders = {os.path.dirname(key) for key in earlier}  # the folders that hold earlier outputs ...
        for key in list(holders):
            while (key := os.path.dirname(key)) not in holders and key != os.path.dirname(key):
                holders.add(key)  # ... and those above them
        yield from _walk_group([(root, output)], exclude, earlier, holders)


def _only_earlier(folder: str, earlier: Collection[str]) -> bool:
    """Whether `folder` holds nothing but earlier outputs (an empty folder among them)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    return all(name_key(entry.path) in earlier
               or (entry.is_dir(follow_symlinks=False) and _only_earlier(entry.path, earlier)) for entry in entries)


def _walk_group(folders: list[tuple[Path, Path]], exclude: Path | None, earlier: Collection[str] = frozenset(),
                holders: Collection[str] = frozenset()) -> Iterator[FolderGroup]:
    files: list[tuple[Path, Path]] = []
    subfolders: dict[str, list[tuple[Path, Path]]] = {}
    present: set[str] = set()
    for folder, mirrored in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:  # unreadable: as os.walk, the rest of the tree goes on
            continue
        for entry in entries:
            path = Path(entry.path)
            if earlier and (name_key(path) in earlier or (name_key(path) in holders and entry.is_dir(
                    follow_symlinks=False) and _only_earlier(entry.path, earlier))):
                continue  # an earlier run's output: not an input, and its name is ours to write again
            if entry.is_dir(follow_symlinks=False):
                if exclude is None or path.resolve() != exclude:
                    out = mirrored / portable_name(entry.name)
                    present.add(name_key(out))
                    subfolders.setdefault(name_key(out), []).append((path, out))
            elif entry.is_file():  # a link to a file counts, a link to a folder not
                files.append((path, mirrored))
                present.add(name_key(path))
    if files:
        yield FolderGroup(sorted(files), present)
    for group in sorted(subfolders.values(), key=min):
        yield from _walk_group(sorted(group), exclude, earlier, holders)


def find_files(root: Path, exclude: Path | None = None) -> list[Path]:
    """Every regular file under `root` (or `root` itself), in the walk's order."""
    return [path for group in walk_groups(root, root, exclude) for path, _ in group.files]


def looks_like_dicom(path: Path) -> bool:
    """True when the content of `path` is a DICOM dataset (PS3.10 7.1).

    Files with the 128-byte preamble and ``DICM`` prefix are DICOM.  Older files
    without the preamble start directly with a group 0x0002/0x0008 element, in
    either byte order; anything else (text, images, JSON) is not DICOM,
    whatever its name.
    """
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    little = int.from_bytes(head[0:2], "little")
    big = int.from_bytes(head[0:2], "big")
    if not ({little, big} & {0x0002, 0x0008}):
        return False
    try:
        ds = _dcmread(path, stop_before_pixels=True)
    except Exception:
        return False
    return any(
        keyword in ds for keyword in ("SOPClassUID", "Modality", "StudyInstanceUID", "Rows")
    )


# Names must be valid on every file system a CD's outputs are copied to; Windows'
# rules are the strictest (Microsoft's "Naming Files, Paths, and Namespaces"):
# these device names are reserved with or without an extension (``CON.png``),
# as are the superscript-digit ports Windows 11 added; no name may hold
# ``<>:"/\|?*`` or a control character, or end in a dot or space.  Undecodable
# bytes (surrogate escapes of a Linux file name) are no name on macOS or Windows.
WINDOWS_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{port}{n}" for port in ("COM", "LPT") for n in "123456789\u00b9\u00b2\u00b3"}
)
UNPORTABLE_CHARACTERS = r'[<>:"/\\|?*\x00-\x1f\x7f\ud800-\udfff]'


def portable_name(name: str, max_bytes: int = MAX_STEM_BYTES) -> str:
    """`name` as NTFS, APFS, HFS+, FAT and ext4 all accept it, at most `max_bytes` of UTF-8.

    Unportable characters become ``_``; a long name is cut between characters,
    never inside one; a reserved device name gets ``_`` after its base
    (``CON.tar`` -> ``CON_.tar``).
    """
    import re

    name = re.sub(UNPORTABLE_CHARACTERS, "_", name)
    name = name.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")  # a cut character is dropped whole
    name = name.rstrip(" .") or "_"
    base, dot, rest = name.partition(".")
    if base.rstrip(" ").upper() in WINDOWS_RESERVED_NAMES:
        name = f"{base.rstrip(' ')}_{dot}{rest}"
    return name


def name_key(path: Path | str) -> str:
    """What two paths are compared by: the same key means the same file on some file system.

    APFS and NTFS ignore case, and APFS (like HFS+) also Unicode normalisation:
    ``IM1``/``im1`` and ``café`` in NFC/NFD must never be two outputs.
    """
    import unicodedata

    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", str(path)).casefold())


def output_stem(name: str) -> str:
    """The output stem for an input file name: `name` less a DICOM suffix, made portable.

    Names near the file system's 255-byte limit are shortened so that ``_2``
    and ``.mp4`` still fit.  Only the input's name is used, never a DICOM
    value, so a dataset cannot steer where its outputs go.
    """
    lowered = name.lower()
    for suffix in DICOM_SUFFIXES:
        if lowered.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return portable_name(name)


OUTPUT_SUFFIXES = (".png", "_median.png", ".gif", ".mp4", ".h264.mp4", ".csv", ".wav", ".html",
                   ".pdf", ".xml", ".stl", ".obj", ".mtl", ".json", ".txt")  # the .txt last
FRAMES_SUFFIX = "_frames"  # --frames writes STEM_frames/0001.png …
# What one output suffix holds more than another that it ends with (".h264" of ".h264.mp4" and
# ".mp4"): the stems whose outputs could be another stem's.  Checked per stem, so planning keeps
# one key per file, not one per output.
OUTPUT_INFIXES = tuple(sorted({a[:-len(b)] for a in OUTPUT_SUFFIXES for b in OUTPUT_SUFFIXES
                               if a != b and a.endswith(b)}))


def plan_outputs(files: list[Path], root: Path, output: Path) -> list[tuple[Path, Path, str]]:
    """`plan_group` for a list of DICOM files under `root`, grouped by the output folder they mirror to."""
    base = root if root.is_dir() else root.parent
    groups: dict[str, list[tuple[Path, Path]]] = {}
    present = {name_key(path) for path in files}
    for path in files:
        folder = output.joinpath(*(portable_name(part) for part in path.parent.relative_to(base).parts))
        groups.setdefault(name_key(folder), []).append((path, folder))
        present.update(name_key(out) for out in (folder, *folder.parents))
    planned = [entry for group in groups.values() for entry in plan_group(sorted(group), present, output)]
    return sorted(planned)


def plan_group(files: list[tuple[Path, Path]], present: set[str], output: Path,
               stem_of: Callable[[Path], str] | None = None) -> list[tuple[Path, Path, str]]:
    """Pair each DICOM input of one output folder (input, output folder) with a unique output stem.

    The input tree is mirrored, each folder name made portable.  Two inputs
    whose stems coincide (``a`` and ``a.dcm``), or whose outputs do (``a.h264``'s
    MP4 and ``a``'s H.264 MP4), do not overwrite each other: the later one in
    sorted order gets ``STEM_2`` (``_3``…).  A stem is
    also moved aside when one of its outputs (``STEM.png``, the folder
    ``STEM_frames``) would land on something `present`: an input file
    (possible when OUTPUT is the input folder: a DICOM file named ``IM1.txt``
    beside ``IM1``) or a folder the mirrored tree needs.  Names are compared by
    `name_key`, since outputs are often copied to case- and
    normalisation-insensitive file systems.  Returns ``(input, stem path,
    note)``; the note tells of a rename.  `stem_of` names a file's outputs
    (default: its own name less a DICOM suffix, `output_stem`).
    """
    taken: set[str] = set()
    reserved = {name_key(output / "index.html"), name_key(output / "manifest.csv")}  # the run's own

    def clashes(stem: Path) -> bool:
        frames = name_key(f"{stem}{FRAMES_SUFFIX}")
        key = name_key(stem)
        outputs = [name_key(f"{stem}{suffix}") for suffix in OUTPUT_SUFFIXES]
        return (key in taken or frames in present
                or any(out in present or out in reserved for out in outputs)
                # another stem's outputs on ours: ``a`` + ``.h264.mp4`` is ``a.h264`` + ``.mp4``
                or any(name_key(f"{stem}{infix}") in taken or (key.endswith(infix.casefold())
                                                                and key[:-len(infix)] in taken)
                       for infix in OUTPUT_INFIXES))

    planned = []
    for path, folder in files:
        stem = stem_of(path) if stem_of is not None else output_stem(path.name)
        candidate, n = stem, 1
        while clashes(folder / candidate):
            n += 1
            candidate = f"{stem}_{n}"
        taken.add(name_key(folder / candidate))
        note = f"output renamed to {candidate} (name {stem} already taken)" if n > 1 else ""
        planned.append((path, folder / candidate, note))
    return planned
