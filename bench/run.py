#!/usr/bin/env python3
"""Benchmark dicom_converter.py against a DCMTK loop, the plain approach and the seed.

Builds its own inputs (deterministic) in a work folder, then runs each tool
alternately, several times, each into a fresh output folder, and records the
wall time and the peak memory of the whole process tree.  Prints Markdown.

    python3 bench/run.py               # targets 1 and 2, 3 repetitions (the seed rows want
                                       # git history, and cv2 for the OpenCV one)
    python3 bench/run.py --quick       # 1 repetition
    python3 bench/run.py --scaling     # also: how time and memory grow

See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONVERTER = REPO / "dicom_converter.py"
PLAIN = Path(__file__).resolve().parent / "plain.py"
SEED = Path(__file__).resolve().parent / "seed.py"
SEED_NAME = "seed (d6e8119)"
SEED_OPENCV_NAME = "seed, MP4 by OpenCV mp4v"
PY = sys.executable

INPUTS_VERSION = 2  # bump when the generated inputs change
CT_SOURCE = "693_UNCR.dcm"  # pydicom-data: a real 512x512 CT slice, window 40/100
CT_FALLBACK = REPO / "dicom_data" / "DCM00000"  # 512x512 CT head phantom, window 40/400
XA_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.12.1"  # X-Ray Angiographic Image Storage
XA_TIMELINE = 100  # frames in the full clip; shorter clips are a window of it
SAMPLE_SECONDS = 0.02

DECODE_ONLY = (
    "import sys\n"
    "from pydicom.pixels import iter_pixels\n"
    "if len(sys.argv) > 2:  # the converter's own decoder order: libjpeg-turbo first\n"
    "    sys.path.insert(0, sys.argv[2])\n"
    "    from _dicom_converter.pixels.libjpeg_turbo import use_libjpeg_turbo\n"
    "    use_libjpeg_turbo()\n"
    "n = 0\n"
    "for frame in iter_pixels(sys.argv[1]):\n"
    "    n += 1\n"
    "print(n)\n"
)
DECODE_PYDICOM = "decode only (iter_pixels)"
DECODE_TURBO = "decode only (iter_pixels, libjpeg-turbo first)"


# =============================================================================
# Inputs
# =============================================================================

def uid(*parts) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["dicom_converter bench", *map(str, parts)])


def ct_source() -> Path:
    try:
        from pydicom.data import get_testdata_file

        path = get_testdata_file(CT_SOURCE)
        if path:
            return Path(path)
    except Exception:
        pass
    return CT_FALLBACK


def make_ct_series(folder: Path, count: int) -> None:
    """`count` copies of one real CT slice, each with its own SOP Instance UID."""
    import pydicom

    folder.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(ct_source())
    series = uid("ct series")
    for i in range(count):
        ds.SOPInstanceUID = uid("ct", i)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series
        ds.InstanceNumber = i + 1
        ds.save_as(folder / f"ct_{i:03d}.dcm", enforce_file_format=True)


def _box_blur(image, radius: int):
    """Separable box blur (edges clamped), twice: close enough to a Gaussian."""
    import numpy as np

    out = image.astype(np.float32)
    for _ in range(2):
        for axis in (0, 1):
            pad = [(0, 0), (0, 0)]
            pad[axis] = (radius + 1, radius)
            c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis, dtype=np.float64)
            n = out.shape[axis]
            hi = np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
            lo = np.take(c, np.arange(0, n), axis=axis)
            out = ((hi - lo) / (2 * radius + 1)).astype(np.float32)
    return out


def _vessel_tree(size: int, rng):
    """Centre lines of a coronary-like tree: list of (x, y, radius, distance from the root)."""
    import numpy as np

    scale = size / 1024
    points = []
    stack = [(0.30 * size, 0.10 * size, 1.25, 7.0 * scale, 0.0, 0)]
    while stack:
        x, y, angle, radius, dist, depth = stack.pop()
        length = rng.uniform(0.5, 0.8) * size / (1 + 1.2 * depth)
        step = max(1.0, 1.5 * scale)
        bend = rng.normal(0, 0.004)
        for _ in range(int(length / step)):
            angle += bend + rng.normal(0, 0.025)
            x += step * np.cos(angle)
            y += step * np.sin(angle)
            dist += step
            if not (0 <= x < size and 0 <= y < size):
                break
            points.append((x, y, radius, dist))
            if depth < 4 and rng.random() < 0.015:
                side = rng.choice((-1, 1))
                stack.append((x, y, angle + side * rng.uniform(0.4, 1.1), radius * 0.72, dist, depth + 1))
            radius = max(radius * 0.9995, 1.2 * scale)
    return points


def xa_scene(size: int, seed: int = 20240521):
    """The static parts of the clip: background attenuation, vessel opacity, arrival distance."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    # soft anatomy: smooth random field + a spine-like band + a diaphragm-like edge
    coarse = rng.normal(0, 1, (12, 12)).astype(np.float32)
    field = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC))
    spine = np.exp(-(((xx - 0.62) / 0.07) ** 2)) * 0.5
    diaphragm = 0.6 / (1 + np.exp(-(yy - 0.78 - 0.08 * np.sin(6 * xx)) / 0.02))
    attenuation = 1.0 + 0.15 * field + spine + diaphragm
    # fine texture (lung markings, bone trabeculae): blurred noise
    attenuation += 0.08 * _box_blur(rng.normal(0, 1, (size, size)), max(1, size // 256))
    background = 3600 * np.exp(-0.9 * attenuation)
    # circular collimator: little signal outside it
    r = np.hypot(xx - 0.5, yy - 0.5)
    background = np.where(r < 0.47, background, 180 + 40 * np.clip((r - 0.47) / 0.1, 0, 1)).astype(np.float32)
    background = _box_blur(background, max(1, size // 512))

    opacity = np.zeros((size, size), np.float32)
    arrival = np.full((size, size), np.inf, np.float32)
    for x, y, radius, dist in _vessel_tree(size, rng):
        r_ = radius + 1
        x0, x1 = max(0, int(x - r_)), min(size, int(x + r_) + 2)
        y0, y1 = max(0, int(y - r_)), min(size, int(y + r_) + 2)
        gy, gx = np.mgrid[y0:y1, x0:x1]
        d2 = ((gx - x) ** 2 + (gy - y) ** 2) / radius**2
        # projected thickness of a cylinder: 2r sqrt(1 - d^2)
        thick = (radius * np.sqrt(np.clip(1 - d2, 0, 1))).astype(np.float32)
        patch = opacity[y0:y1, x0:x1]
        np.maximum(patch, thick, out=patch)
        inside = d2 <= 1
        a = arrival[y0:y1, x0:x1]
        a[inside] = np.minimum(a[inside], dist)
    opacity /= max(float(opacity.max()), 1e-6)
    return background, opacity, arrival


def xa_frame(scene, index: int, size: int, rng):
    """Frame `index` of the 100-frame timeline: contrast fills, stays, washes out; the heart moves."""
    import numpy as np

    background, opacity, arrival = scene
    t = index / XA_TIMELINE
    front = max(0.0, (t - 0.1) / 0.5) * 1.2 * size  # bolus front, in path length
    washout = 1.0 if t < 0.75 else max(0.15, 1 - (t - 0.75) / 0.3)
    fill = 1 / (1 + np.exp(-(front - arrival) / (0.03 * size)))
    iodine = opacity * fill.astype(np.float32) * washout
    # cardiac motion: the vessels move (about 1 Hz at 15 fps), the background breathes slowly
    dy = round(0.012 * size * np.sin(2 * np.pi * index / 15))
    dx = round(0.006 * size * np.sin(2 * np.pi * index / 15 + 1.0))
    iodine = np.roll(iodine, (dy, dx), axis=(0, 1))
    by = round(0.004 * size * np.sin(2 * np.pi * index / 60))
    image = np.roll(background, by, axis=0) * np.exp(-1.4 * iodine)
    # quantum noise (Poisson-like, std ~ sqrt(signal)) plus a little electronic noise
    image += rng.normal(0, 1, image.shape).astype(np.float32) * (0.9 * np.sqrt(image) + 4)
    return np.clip(np.rint(image), 0, 4095).astype(np.uint16)


def make_xa(path: Path, size: int, frame_indices: range, work: Path) -> None:
    """A 12-bit XA clip, written uncompressed with pydicom, then JPEG Lossless SV1 by dcmcjpeg."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    scene = xa_scene(size)
    rng = np.random.default_rng(size * 1000 + frame_indices.start)
    pixels = b"".join(xa_frame(scene, i, size, rng).tobytes() for i in frame_indices)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = XA_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = uid("xa", size, len(frame_indices))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    ds.SOPClassUID = XA_SOP_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240521"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.Modality = "XA"
    ds.Manufacturer = "dicom_converter bench (synthetic)"
    ds.PatientName = "Bench^Angio"
    ds.PatientID = "BENCH-XA"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = uid("xa study")
    ds.SeriesInstanceUID = uid("xa series", size, len(frame_indices))
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.KVP = 80
    ds.PositionerPrimaryAngle = 30
    ds.PositionerSecondaryAngle = 20
    ds.CineRate = 15
    ds.FrameTime = "66.66666666667"  # 1000/15 within the 16 characters of a DS
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.NumberOfFrames = len(frame_indices)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LIN"
    ds.WindowCenter = 1100
    ds.WindowWidth = 1800
    ds.PixelData = pixels
    ds["PixelData"].VR = "OW"
    raw = work / (path.name + ".raw.dcm")
    ds.save_as(raw, enforce_file_format=True)
    subprocess.run(["dcmcjpeg", "+e1", "+un", str(raw), str(path)], check=True)
    raw.unlink()


def input_paths(work: Path, scaling: bool) -> dict[str, Path]:
    inputs = {
        "ct100": work / "ct100",
        "xa1024x100": work / "xa1024x100" / "XA.dcm",
    }
    if scaling:
        inputs |= {
            "ct10": work / "ct10",
            "xa1024x10": work / "xa1024x10" / "XA.dcm",
            "xa512x100": work / "xa512x100" / "XA.dcm",
        }
    return inputs


def build_inputs(work: Path, scaling: bool, rebuild: bool) -> None:
    """Create the inputs, or reuse those already built by this INPUTS_VERSION."""
    work.mkdir(parents=True, exist_ok=True)
    inputs = input_paths(work, scaling)
    stamp_path = work / "inputs.json"
    stamp = json.loads(stamp_path.read_text()) if stamp_path.exists() and not rebuild else {}
    if stamp.get("version") != INPUTS_VERSION:
        stamp = {"version": INPUTS_VERSION, "built": []}
    for name, path in inputs.items():
        if name in stamp["built"] and path.exists():
            continue
        started = time.perf_counter()
        print(f"building input {name} ...", file=sys.stderr, flush=True)
        shutil.rmtree(path if name.startswith("ct") else path.parent, ignore_errors=True)
        if name.startswith("ct"):
            make_ct_series(path, int(name[2:]))
        else:
            size, frames = (int(v) for v in name[2:].split("x"))
            first = (XA_TIMELINE - frames) // 2  # a short clip is the middle of the timeline
            path.parent.mkdir(parents=True)
            make_xa(path, size, range(first, first + frames), work)
        stamp["built"].append(name)
        stamp_path.write_text(json.dumps(stamp))
        print(f"  done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


# =============================================================================
# Measuring
# =============================================================================

@dataclasses.dataclass
class Sample:
    seconds: float
    tree_mb: float      # peak of the summed RSS of the process and all its descendants
    process_mb: float   # peak RSS of any single process of the tree
    cpu_seconds: float  # user + system CPU time of the process and its reaped descendants
    other_load: float   # cores busy with other processes on the machine meanwhile


PAGE = os.sysconf("SC_PAGE_SIZE")


class TreeRss:
    """The RSS of a process and all its descendants, read cheaply from /proc.

    psutil's ``children(recursive=True)`` reads every process on the machine
    (several ms of CPU per sample); here only the PIDs not seen before are
    read once for their parent, and only the tree's members for their RSS.
    New processes get higher PIDs than their parents (barring PID wrap-around),
    so one ascending pass finds the whole tree.
    """

    def __init__(self, root: int):
        self.root = root
        self.parent: dict[int, int] = {}

    def sample(self) -> tuple[int, int]:
        """(sum of RSS over the tree, largest single RSS) in bytes."""
        live = sorted(int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) >= self.root)
        for pid in live:
            if pid not in self.parent:
                try:
                    with open(f"/proc/{pid}/stat", "rb") as f:
                        self.parent[pid] = int(f.read().rsplit(b")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    pass
        alive = set(live)
        for pid in [p for p in self.parent if p not in alive]:
            del self.parent[pid]
        members = {self.root}
        for pid in live:
            if self.parent.get(pid) in members:
                members.add(pid)
        total = largest = 0
        for pid in members:
            try:
                with open(f"/proc/{pid}/statm", "rb") as f:
                    rss = int(f.read().split()[1]) * PAGE
            except (OSError, IndexError, ValueError):
                continue
            total += rss
            largest = max(largest, rss)
        return total, largest


def busy_cpu_seconds() -> float:
    """CPU time used by the whole machine so far (all processes), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def measure(cmd: list[str], out_dir: Path) -> Sample:
    """Run `cmd`, timing it and polling the RSS of its whole process tree every 20 ms.

    The wall time runs from just before the process is started until it is
    reaped (the sampler runs in a thread and delays neither end).  The CPU
    time is the child's and its reaped descendants' (wait4).  `other_load` is
    the CPU the rest of the machine used meanwhile, in cores.
    """
    log = out_dir.parent / (out_dir.name + ".log")
    peak = {"tree": 0, "process": 0}
    stop = threading.Event()

    def poll(pid: int) -> None:
        tree = TreeRss(pid)
        while not stop.is_set():
            total, largest = tree.sample()
            peak["tree"] = max(peak["tree"], total)
            peak["process"] = max(peak["process"], largest)
            stop.wait(SAMPLE_SECONDS)

    with open(log, "wb") as log_file:
        busy_before, own_before = busy_cpu_seconds(), time.process_time()
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO)
        sampler = threading.Thread(target=poll, args=(proc.pid,), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        sampler.join()
        cpu = usage.ru_utime + usage.ru_stime
        others = busy_cpu_seconds() - busy_before - cpu - (time.process_time() - own_before)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{log.read_text(errors='replace')[-3000:]}")
    log.unlink()
    return Sample(seconds, peak["tree"] / 2**20, peak["process"] / 2**20, cpu, max(0.0, others) / seconds)


def dcmtk_loop(folder: Path, out: Path) -> list[str]:
    script = (
        'for f in "$1"/*; do dcmj2pnm +on2 +Wi 1 "$f" "$2/$(basename "$f").png" || exit 1; done'
    )
    return ["bash", "-c", script, "dcmtk-loop", str(folder), str(out)]


PLAIN_X264 = ("18", "medium", None, None)  # plain.py's defaults: crf, preset, tune, x264-params


def ours_x264() -> tuple[str, str, str | None, str | None]:
    """Ours' default x264 crf, preset and tune, read from its source (no import)."""
    import re

    text = (REPO / "_dicom_converter" / "base.py").read_text(encoding="utf-8")  

    def constant(pattern: str, default):
        found = re.search(pattern, text, re.M)
        return found.group(1) if found else default

    return (constant(r"^DEFAULT_CRF\s*=\s*(\d+)", "18"),
            constant(r"^X264_PRESET\s*=\s*[\"'](\w+)", "medium"),
            constant(r"^X264_TUNE\s*=\s*[\"'](\w+)", None),
            constant(r"^X264_PARAMS\s*=\s*[\"']([^\"']+)", None))


def plain_as_ours_name() -> str | None:
    """The name of the 'plain with ours' x264 settings' row, or None when plain's already match."""
    crf, preset, tune, params = ours_x264()
    if (crf, preset, tune, params) == PLAIN_X264:
        return None
    return f"plain, x264 as ours (crf {crf}, {preset}{', tune ' + tune if tune else ''}{', ' + params if params else ''})"


SEED_NOTES: dict[str, str | None] = {}  # seed tool -> why it is skipped (None: it runs)


def check_seed() -> None:
    """Whether the seed rows can run: the first commit's code from git, and cv2 for the OpenCV one."""
    for name, extra in ((SEED_NAME, []), (SEED_OPENCV_NAME, ["--opencv"])):
        done = subprocess.run([PY, str(SEED), "--prepare", *extra], capture_output=True, text=True)
        SEED_NOTES[name] = None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[-1]


def seed_notes() -> str:
    """A line per skipped seed row, for under the tables."""
    return "".join(f"- `{name}` skipped: {note}\n" for name, note in SEED_NOTES.items() if note)


def tools_for(kind: str, source: Path) -> dict[str, object]:
    """name -> function(out_dir) giving the command for that tool on `source`."""
    tools: dict[str, object] = {
        "ours": lambda out: [PY, str(CONVERTER), str(source), "-o", str(out), "-q"],
    }
    if kind == "ct":
        tools["DCMTK loop"] = lambda out: dcmtk_loop(source, out)
    tools["plain"] = lambda out: [PY, str(PLAIN), str(source), "-o", str(out)]
    if SEED_NOTES.get(SEED_NAME) is None:
        tools[SEED_NAME] = lambda out: [PY, str(SEED), str(source), "-o", str(out)]
    if kind == "xa" and SEED_NOTES.get(SEED_OPENCV_NAME) is None:
        tools[SEED_OPENCV_NAME] = lambda out: [PY, str(SEED), "--opencv", str(source), "-o", str(out)]
    as_ours = plain_as_ours_name()
    if kind == "xa" and as_ours:
        crf, preset, tune, params = ours_x264()
        tools[as_ours] = lambda out: [PY, str(PLAIN), str(source), "-o", str(out), "--crf", crf,
                                      "--preset", preset] + (["--tune", tune] if tune else []) + (
                                      ["--x264-params", params] if params else [])
    if kind == "xa":
        tools["ours --gif-max-size 0"] = lambda out: [
            PY, str(CONVERTER), str(source), "-o", str(out), "-q", "--gif-max-size", "0"]
        tools[DECODE_PYDICOM] = lambda out: [PY, "-c", DECODE_ONLY, str(source)]
        tools[DECODE_TURBO] = lambda out: [PY, "-c", DECODE_ONLY, str(source), str(REPO)]
    return tools


def check_outputs(kind: str, name: str, source: Path, out: Path) -> None:
    if name.startswith("decode"):
        return
    if kind == "ct":
        want = len(list(source.iterdir()))
        got = len(list(out.rglob("*.png")))
        if got != want:
            sys.exit(f"{name}: {got} PNGs for {want} inputs in {out}")
    else:
        for ext in (".gif", ".mp4"):
            if not list(out.rglob("*" + ext)):
                sys.exit(f"{name}: no {ext} in {out}")


def bench(kind: str, source: Path, repeat: int, scratch: Path, only: list[str] | None = None):
    """Run each tool `repeat` times, alternating; returns name -> list of samples."""
    tools = tools_for(kind, source)
    if only is not None:
        tools = {k: v for k, v in tools.items() if k in only}
    results: dict[str, list[Sample]] = {name: [] for name in tools}
    for rep in range(repeat):
        for name, command in tools.items():
            out = Path(tempfile.mkdtemp(prefix="out_", dir=scratch))
            sample = measure(command(out), out)
            check_outputs(kind, name, source, out)
            shutil.rmtree(out)
            results[name].append(sample)
            print(f"  [{source.parent.name if kind == 'xa' else source.name}] run {rep + 1}/{repeat} "
                  f"{name}: {sample.seconds:.2f} s, CPU {sample.cpu_seconds:.1f} s, "
                  f"tree {sample.tree_mb:.0f} MB, other load {sample.other_load:.2f}",
                  file=sys.stderr, flush=True)
    return results


# =============================================================================
# Reporting
# =============================================================================

def median(samples: list[Sample], field: str) -> float:
    return statistics.median(getattr(s, field) for s in samples)


CODE = [CONVERTER.name, "_dicom_converter"]  # the entry point and its package


def converter_digest() -> str:
    """One hash of the converter's code: the entry point and every file of its package, by path."""
    import hashlib

    digest = hashlib.sha256()
    for path in [CONVERTER, *sorted(p for p in (REPO / "_dicom_converter").rglob("*")
                                    if p.is_file() and "__pycache__" not in p.parts)]:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


STARTING_DIGEST = ""


def machine() -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    versions = []
    for module in ("pydicom", "numpy", "PIL", "av"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except Exception:
            pass
    dcmtk = subprocess.run(["dcmj2pnm", "--version"], capture_output=True, text=True).stdout
    dcmtk = next((w for w in dcmtk.split() if w.startswith("v3")), "?")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *CODE], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    digest = converter_digest()
    code = (f"commit {head.stdout.strip() or '?'}"
            + (", with uncommitted changes to the converter" if dirty else "")
            + f" (dicom_converter.py + _dicom_converter/ sha256 {digest})")
    if digest != STARTING_DIGEST:
        code += (f" -- **the converter changed during the runs** (sha256 {STARTING_DIGEST} at the start):"
                 " the samples mix two versions")
    return (
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}\n"
        f"- code: {code}\n"
        f"- machine: `nproc` = {nproc}, CPU: {cpu}, RAM: {ram}, {platform.system()} {platform.release()}\n"
        f"- software: Python {platform.python_version()}, {', '.join(versions)}, DCMTK dcmj2pnm {dcmtk}"
    )


def table(results: dict[str, list[Sample]], reference: str = "ours") -> str:
    ref = median(results[reference], "seconds")
    lines = [
        "| tool | median s | min s | max s | median / ours | CPU s | peak tree MB | "
        "peak 1 process MB | other load (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, samples in results.items():
        secs = [s.seconds for s in samples]
        lines.append(
            f"| {name} | {median(samples, 'seconds'):.2f} | {min(secs):.2f} | {max(secs):.2f} "
            f"| {median(samples, 'seconds') / ref:.2f}x | {median(samples, 'cpu_seconds'):.1f} "
            f"| {max(s.tree_mb for s in samples):.0f} | {max(s.process_mb for s in samples):.0f} "
            f"| {median(samples, 'other_load'):.2f} |"
        )
    return "\n".join(lines)


def ratio_line(results: dict[str, list[Sample]], slow: str, target: float | None) -> str:
    """`slow` / ours by median, best-of and CPU time; judged against `target` (None: shown only)."""
    if slow not in results:
        return f"- {slow} / ours: not run"
    ours, other = results["ours"], results[slow]
    by_median = median(other, "seconds") / median(ours, "seconds")
    by_best = min(s.seconds for s in other) / min(s.seconds for s in ours)
    by_cpu = median(other, "cpu_seconds") / median(ours, "cpu_seconds")
    return (f"- {slow} / ours: **{by_median:.2f}x** by median wall time, {by_best:.2f}x best-of-runs, "
            f"{by_cpu:.2f}x by CPU time"
            + (f" (target >= {target:g}x: {verdict(by_median >= target)})" if target is not None else ""))


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def scaling_table(rows: list[tuple[str, str, list[Sample], list[Sample]]]) -> str:
    lines = [
        "| growth | tool | small s | large s | time ratio | small CPU s | large CPU s | "
        "CPU ratio | small MB | large MB | memory ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for axis, tool, small, large in rows:
        ts, tl = median(small, "seconds"), median(large, "seconds")
        cs, cl = median(small, "cpu_seconds"), median(large, "cpu_seconds")
        ms, ml = max(s.tree_mb for s in small), max(s.tree_mb for s in large)
        lines.append(f"| {axis} | {tool} | {ts:.2f} | {tl:.2f} | {tl / ts:.2f}x | {cs:.1f} | {cl:.1f} "
                     f"| {cl / cs:.2f}x | {ms:.0f} | {ml:.0f} | {ml / ms:.2f}x |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each tool (default 3)")
    parser.add_argument("--quick", action="store_true", help="one run of each tool")
    parser.add_argument("--scaling", action="store_true",
                        help="also measure growth: files x10, frames x10, frame size x4")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dicom_converter_bench",
                        help="where inputs are built and kept (default: %(default)s)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the inputs")
    parser.add_argument("--json", type=Path, help="also write every sample to this JSON file")
    parser.add_argument("--only", choices=("ct", "xa"), help="run one target's input only")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    if args.scaling and args.only:
        parser.error("--scaling compares against both targets' inputs: leave out --only")

    if args.build_only:
        build_inputs(args.workdir, args.scaling, args.rebuild)
        return 0
    # built in a child process, so that this one stays small while it measures
    subprocess.run([PY, __file__, "--build-only", "--workdir", str(args.workdir)]
                   + ["--scaling"] * args.scaling + ["--rebuild"] * args.rebuild, check=True)
    inputs = input_paths(args.workdir, args.scaling)
    # A user's runs after the first find the package's bytecode cached; where nothing writes
    # it (PYTHONDONTWRITEBYTECODE, set in some CI images and sandboxes) or a module changed
    # since, every run would compile those modules again (up to 0.1 s for the whole package).
    subprocess.run([PY, "-m", "compileall", "-q", str(REPO / "_dicom_converter")], check=True,
                   stdout=subprocess.DEVNULL)
    global STARTING_DIGEST
    STARTING_DIGEST = converter_digest()
    check_seed()
    for name, note in SEED_NOTES.items():
        if note:
            print(f"{name}: skipped ({note})", file=sys.stderr)
    scratch = Path(tempfile.mkdtemp(prefix="runs_", dir=args.workdir))
    try:
        ct = bench("ct", inputs["ct100"], repeat, scratch) if args.only != "xa" else None
        xa = bench("xa", inputs["xa1024x100"], repeat, scratch) if args.only != "ct" else None
        scaling = None
        if args.scaling:
            scaling = {
                "ct10": bench("ct", inputs["ct10"], repeat, scratch),
                "xa1024x10": bench("xa", inputs["xa1024x10"], repeat, scratch, ["ours", "plain", SEED_NAME]),
                "xa512x100": bench("xa", inputs["xa512x100"], repeat, scratch, ["ours", "plain", SEED_NAME]),
            }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    if args.json:
        groups = {"ct100": ct, "xa1024x100": xa, **(scaling or {})}
        args.json.write_text(json.dumps(
            {g: {tool: [dataclasses.asdict(x) for x in v] for tool, v in r.items()} for g, r in groups.items()},
            indent=1))
    all_samples = [x for group in (ct, xa, *(scaling or {}).values()) if group for v in group.values() for x in v]
    load = statistics.mean(x.other_load for x in all_samples)
    print(f"# dicom_converter benchmark ({repeat} run{'s' if repeat > 1 else ''} of each tool)\n")
    print(machine())
    print(f"- other load: the rest of the machine kept {load:.2f} cores busy on average during the runs"
          + (" -- **the machine was shared: wall times are inflated and noisy; compare CPU s and best-of**"
             if load > 0.2 else "") + "\n")
    if ct:
        print_ct(ct)
    if xa:
        print_xa(xa)
    if scaling:
        print_scaling(scaling, ct, xa)
    return 0


def print_ct(ct: dict) -> None:
    ct_src = ct_source()
    print("## Target 1: 100 single-frame CT slices (512x512, 16-bit, window) -> 16-bit PNG\n")
    print(f"Input: 100 copies of `{ct_src.name}` ({'pydicom-data' if ct_src != CT_FALLBACK else 'repo'}), "
          "each with its own SOP Instance UID. ours and plain also write a .txt per file; "
          "the DCMTK loop writes PNGs only.\n")
    print(table(ct) + "\n")
    # issue #18 asked 6x the DCMTK loop and 4x plain; #27 set 5x the loop and 3.5x the seed
    print(ratio_line(ct, "DCMTK loop", 5) + " (#27)")
    print(ratio_line(ct, "plain", None))
    print(ratio_line(ct, SEED_NAME, 3.5) + " (#27)")
    print(seed_notes())


def print_xa(xa: dict) -> None:
    print("## Target 2: one XA cine, 1024x1024 x 100 frames, 12-bit, JPEG Lossless SV1 -> GIF + MP4\n")
    crf, preset, tune, params = ours_x264()
    print("ours scales the GIF to 512 px (its default); plain writes a full-size GIF; "
          "`ours --gif-max-size 0` is ours with a full-size GIF, for a like-for-like output. "
          f"ours encodes H.264 with crf {crf}, preset {preset}{', tune ' + tune if tune else ''}"
          f"{', x264-params ' + params if params else ''}; "
          "plain with crf 18, preset medium"
          + (f" (and with ours' settings in the `{plain_as_ours_name()}` row)" if plain_as_ours_name() else "")
          + ". The decode-only rows are `pydicom.pixels.iter_pixels` over all frames, with pydicom's "
          "own decoders (pylibjpeg here) and with libjpeg-turbo first as the converter sets it up: "
          "the floor for anything built on pydicom's decoders. "
          f"`{SEED_NAME}` is the first commit's converter run from git (bench/seed.py): a full-size GIF "
          "and H.264 crf 18, preset medium, decoded by pylibjpeg; "
          f"`{SEED_OPENCV_NAME}` is the same code with its MP4 written by OpenCV's "
          "`cv2.VideoWriter` (fourcc mp4v, MPEG-4 Part 2 at OpenCV's default quality).\n")
    print(table(xa) + "\n")
    print(ratio_line(xa, SEED_NAME, 3))
    print(ratio_line(xa, SEED_OPENCV_NAME, None))
    print(ratio_line(xa, "plain", None))
    if plain_as_ours_name():
        print(ratio_line(xa, plain_as_ours_name(), None))
    xa_mem = max(s.tree_mb for s in xa["ours"])
    print(f"- ours peak tree memory: **{xa_mem:.0f} MB** (largest of the runs; "
          f"target <= 300 MB: {verdict(xa_mem <= 300)})")
    if seed_notes():
        print(seed_notes().rstrip("\n"))
    for name in (DECODE_PYDICOM, DECODE_TURBO):
        floor = xa[name]
        print(f"- {name}: {median(floor, 'seconds'):.2f} s, {max(s.tree_mb for s in floor):.0f} MB; "
              f"ours takes {median(xa['ours'], 'seconds') / median(floor, 'seconds'):.2f}x its time")
    print()


def print_scaling(scaling: dict, ct: dict, xa: dict) -> None:
    if scaling:
        print("## Scaling (medians; memory = peak tree MB, largest of the runs)\n")
        rows = []
        for tool in ("ours", "DCMTK loop", "plain", SEED_NAME):
            if tool in ct:
                rows.append(("files x10 (10 -> 100 CT)", tool, scaling["ct10"][tool], ct[tool]))
        for tool in ("ours", "plain", SEED_NAME):
            if tool in xa:
                rows.append(("frames x10 (10 -> 100 frames, 1024^2 XA)", tool, scaling["xa1024x10"][tool], xa[tool]))
        for tool in ("ours", "plain", SEED_NAME):
            if tool in xa:
                rows.append(("frame size x4 (512^2 -> 1024^2, 100-frame XA)", tool, scaling["xa512x100"][tool],
                             xa[tool]))
        print(scaling_table(rows) + "\n")


if __name__ == "__main__":
    sys.exit(main())
