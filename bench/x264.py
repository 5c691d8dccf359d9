#!/usr/bin/env python3
"""x264 preset x CRF for the cine MP4s, the GIF's downscale, and where an XA run's time goes.

Three measurements, each printed as Markdown:

1. ``grid``: each clip's 8-bit frames, rendered once by the converter itself
   (``rendered_frames``), encoded as `mp4_writer` encodes them (libx264 through
   PyAV, High profile, grey fed as ``gray`` and converted to limited-range
   BT.601 yuv420p by libswscale, full size: `mp4_writer` only pads odd sizes)
   for every preset x CRF x tune asked for.  For each: the CPU seconds of the
   encode (user + system of this process, x264's threads included), its wall
   time (noisy on a shared machine), the file size, and the worst and mean
   frame PSNR of the decoded MP4.  PSNR is luma only (right for grey), in two
   colour handlings:

   - ``Y``: the decoded Y plane against the Y plane libswscale makes of the
     8-bit frame fed to the encoder (what x264 itself is asked to keep);
   - ``shown``: the decoded frame turned back into 8-bit grey by libswscale (as
     a player shows it) against the 8-bit frame fed to the encoder.  Includes
     the rounding of 256 grey levels to 220 luma steps (~57 dB by itself).

2. ``gif``: the GIF's downscale of a 1024^2 frame to 512^2: `fit_within`
   (Pillow BOX, what `gif_writer` does per frame) against a numpy 2x2 mean
   (exact halving), with the differences between them; the whole GIF writer
   on full-size frames against frames downscaled beforehand; and the index
   page's thumbnail (256 px) from the full frame against from the 512 px one.

3. ``stages``: where the CPU time of ``dicom_converter.py XA.dcm -o OUT -q``
   goes, measured stage by stage in this process (decode, decode + LUT, the
   GIF's downscale / quantise+PSNR / LZW, x264 at the converter's settings),
   next to the whole converter process's CPU time (``wait4``) and a bare
   ``import dicom_converter``.

    python3 bench/x264.py                          # all three, on the default clips
    python3 bench/x264.py --only grid --clips emri_small
    python3 bench/x264.py --presets veryfast faster --crfs 13 15 --tunes psnr

The XA clip is bench/run.py's ``xa1024x100`` (built with ``run.py --build-only``
if it is missing).  Judge by CPU seconds, sizes and PSNR (deterministic); wall
times move with whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CONVERTER = REPO / "dicom_converter.py"
PY = sys.executable
sys.path.insert(0, str(REPO))

import av  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from _dicom_converter import base as dc_base  # noqa: E402
from _dicom_converter import gif as dc_gif  # noqa: E402  (whose globals gif_writer reads: wrapped below)
from _dicom_converter.gif import gif_writer  # noqa: E402
from _dicom_converter.pixels.decode import decode_frames  # noqa: E402
from _dicom_converter.pixels.display import rendered_frames  # noqa: E402
from _dicom_converter.reading import number_of_frames, read_dataset  # noqa: E402
from _dicom_converter.timing import frame_timing  # noqa: E402
from _dicom_converter.writers import THUMB_SIZE, fit_within, mp4_writer  # noqa: E402

PRESETS = ["ultrafast", "superfast", "veryfast", "faster", "fast"]
CRFS = [13, 16, 18, 20, 23]
TUNES = ["psnr", "none"]
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "dicom_converter_bench"
PSNR_TARGET = 40.0


# =============================================================================
# Clips
# =============================================================================

def clip_paths(workdir: Path) -> dict[str, Path]:
    """name -> path of every clip this bench knows (missing ones are skipped)."""
    from pydicom.data import get_testdata_file

    clips = {"xa1024x100": workdir / "xa1024x100" / "XA.dcm",
             "xa512x100": workdir / "xa512x100" / "XA.dcm"}
    for name in ("emri_small.dcm", "eCT_Supplemental.dcm"):
        with contextlib.suppress(Exception):
            found = get_testdata_file(name, download=False)
            if found:
                clips[name.removesuffix(".dcm")] = Path(found)
    clips["XA_JPEG_LOSSLESS_SV1"] = REPO / "dicom_data" / "XA_JPEG_LOSSLESS_SV1.dcm"
    return clips


def ensure_bench_clip(name: str, path: Path, workdir: Path) -> None:
    if path.exists() or not name.startswith("xa"):
        return
    subprocess.run([PY, str(BENCH / "run.py"), "--build-only", "--workdir", str(workdir)]
                   + (["--scaling"] if name != "xa1024x100" else []), check=True)


def render(path: Path) -> tuple[list[np.ndarray], Fraction]:
    """The clip's 8-bit display frames as the converter renders them, and its frame rate."""
    ds = read_dataset(path)
    frames, _ = rendered_frames(path, ds, 255, None)
    frames = [np.ascontiguousarray(f) for f in frames]
    rate = frame_timing(ds, len(frames), None).rate
    return frames, rate


def padded(frame: np.ndarray) -> np.ndarray:
    """As `mp4_writer` pads: odd sizes get the last row/column repeated."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w)), mode="edge")
    return frame


# =============================================================================
# Encoding and measuring
# =============================================================================

def cpu_seconds() -> float:
    """User + system CPU time of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def encode(frames: list[np.ndarray], path: Path, rate: Fraction, crf: int, preset: str,
           tune: str | None, params: str | None = None) -> tuple[float, float]:
    """Encode as `mp4_writer` does, with this preset/crf/tune; returns (CPU s, wall s)."""
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    container = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
    try:
        stream = container.add_stream("libx264", rate=rate)
        first = padded(frames[0])
        stream.width, stream.height = first.shape[1], first.shape[0]
        stream.pix_fmt = "yuv420p"
        options = {"crf": str(crf), "preset": preset, "profile": "high"}
        if tune:
            options["tune"] = tune
        if params:
            options["x264-params"] = params
        # the same order of keys as mp4_writer (crf, preset, tune, profile, x264-params)
        stream.options = {k: options[k] for k in ("crf", "preset", "tune", "profile", "x264-params") if k in options}
        stream.codec_context.colorspace = av.video.reformatter.Colorspace.ITU601
        stream.codec_context.color_range = av.video.reformatter.ColorRange.MPEG
        for count, frame in enumerate(frames):
            image = av.VideoFrame.from_ndarray(padded(frame), format="gray")
            image.pts = count
            container.mux(stream.encode(image))
        container.mux(stream.encode(None))
    finally:
        container.close()
    return cpu_seconds() - cpu0, time.perf_counter() - wall0


def reference_luma(frame: np.ndarray) -> np.ndarray:
    """The Y plane libswscale makes of an 8-bit grey frame for the encoder (as PyAV's encode does)."""
    f = padded(frame)
    vf = av.VideoFrame.from_ndarray(f, format="gray").reformat(f.shape[1], f.shape[0], "yuv420p")
    return vf.to_ndarray()[: f.shape[0]]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def quality(path: Path, frames: list[np.ndarray], luma: list[np.ndarray]) -> dict:
    """Worst and mean frame PSNR of the MP4 at `path`, in Y and as shown."""
    y_psnr, shown_psnr = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for k, decoded in enumerate(container.decode(stream)):
            rows, cols = frames[k].shape
            y = decoded.to_ndarray(format="yuv420p")[: decoded.height]
            y_psnr.append(psnr(y[:rows, :cols], luma[k][:rows, :cols]))
            shown = decoded.to_ndarray(format="gray")
            shown_psnr.append(psnr(shown[:rows, :cols], frames[k]))
    if len(y_psnr) != len(frames):
        raise RuntimeError(f"{path}: decoded {len(y_psnr)} of {len(frames)} frames")
    return {"y_min": min(y_psnr), "y_mean": statistics.fmean(y_psnr),
            "shown_min": min(shown_psnr), "shown_mean": statistics.fmean(shown_psnr)}


def same_as_converter(frames: list[np.ndarray], rate: Fraction, scratch: Path, tries: int = 3) -> bool:
    """Whether `encode` at the converter's settings writes the bytes `mp4_writer` writes.

    x264's threads make a tiny clip's bytes differ now and then from run to run
    (seen on the 64^2 MR, with mp4_writer against itself too), so `mp4_writer`
    gets `tries` runs to match.
    """
    ours, theirs = scratch / "check_encode.mp4", scratch / "check_writer.mp4"
    encode(frames, ours, rate, dc_base.DEFAULT_CRF, dc_base.X264_PRESET, dc_base.X264_TUNE, getattr(dc_base, "X264_PARAMS", None))
    same = False
    for _ in range(tries):
        with mp4_writer(theirs, rate, dc_base.DEFAULT_CRF) as write:
            for frame in frames:
                write(frame)
        same = ours.read_bytes() == theirs.read_bytes()
        if same:
            break
    ours.unlink()
    theirs.unlink()
    return same


def grid(clips: dict[str, Path], presets, crfs, tunes, scratch: Path, results: dict) -> None:
    for name, path in clips.items():
        frames, rate = render(path)
        luma = [reference_luma(f) for f in frames]
        rows, cols = frames[0].shape
        print(f"[grid] {name}: {len(frames)} frames {cols}x{rows} at {float(rate):.3g} fps",
              file=sys.stderr, flush=True)
        entry = results.setdefault(name, {"frames": len(frames), "size": [cols, rows], "rows": []})
        entry["encode_matches_mp4_writer"] = same_as_converter(frames[:10], rate, scratch)
        for tune in tunes:
            for preset in presets:
                for crf in crfs:
                    out = scratch / f"{name}_{preset}_{crf}_{tune}.mp4"
                    cpu, wall = encode(frames, out, rate, crf, preset, None if tune == "none" else tune)
                    row = {"preset": preset, "crf": crf, "tune": tune, "cpu_s": cpu, "wall_s": wall,
                           "bytes": out.stat().st_size, **quality(out, frames, luma)}
                    out.unlink()
                    entry["rows"].append(row)
                    print(f"  {name} {preset:9} crf {crf:2} tune {tune:4}: CPU {cpu:6.2f} s, wall {wall:6.2f} s, "
                          f"{row['bytes'] / 1e6:7.2f} MB, Y min {row['y_min']:.2f} mean {row['y_mean']:.2f}, "
                          f"shown min {row['shown_min']:.2f}", file=sys.stderr, flush=True)


def grid_tables(results: dict) -> str:
    current = (dc_base.X264_PRESET, dc_base.DEFAULT_CRF, dc_base.X264_TUNE or "none")
    out = []
    for name, entry in results.items():
        cols, rows = entry["size"]
        out.append(f"### {name}: {entry['frames']} frames, {cols}x{rows}\n")
        out.append(f"`encode` here writes the same bytes as the converter's `mp4_writer` at its settings: "
                   f"{'yes' if entry['encode_matches_mp4_writer'] else '**NO**'}. "
                   f"Current default: {current[0]} / crf {current[1]} / tune {current[2]} (marked **).\n")
        base = next((r for r in entry["rows"] if (r["preset"], r["crf"], r["tune"]) == current), None)
        out.append("| preset | crf | tune | CPU s | CPU / now | wall s (noisy) | MB | Y worst dB | Y mean dB "
                   "| shown worst dB | shown mean dB | >= 40 dB worst (Y) |")
        out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in entry["rows"]:
            mark = "**" if (r["preset"], r["crf"], r["tune"]) == current else ""
            ratio = f"{r['cpu_s'] / base['cpu_s']:.2f}" if base and base["cpu_s"] > 0 else ""
            out.append(f"| {mark}{r['preset']}{mark} | {r['crf']} | {r['tune']} | {r['cpu_s']:.2f} | {ratio} "
                       f"| {r['wall_s']:.2f} | {r['bytes'] / 1e6:.2f} | {r['y_min']:.2f} | {r['y_mean']:.2f} "
                       f"| {r['shown_min']:.2f} | {r['shown_mean']:.2f} | {'yes' if r['y_min'] >= PSNR_TARGET else 'no'} |")
        out.append("")
    return "\n".join(out)


# =============================================================================
# The GIF's downscale
# =============================================================================

def halve_mean(frame: np.ndarray) -> np.ndarray:
    """Exact 2x2 mean of an even-sized 8-bit frame, rounded half up."""
    f = frame.astype(np.uint16)
    s = f[0::2, 0::2] + f[1::2, 0::2] + f[0::2, 1::2] + f[1::2, 1::2]
    return ((s + 2) >> 2).astype(np.uint8)


def halve_reshape(frame: np.ndarray) -> np.ndarray:
    """The same 2x2 mean through a reshape (one sum over two axes)."""
    rows, cols = frame.shape
    s = frame.reshape(rows // 2, 2, cols // 2, 2).sum(axis=(1, 3), dtype=np.uint16)
    return ((s + 2) >> 2).astype(np.uint8)


def timed(function, *args, repeat: int = 3) -> tuple[float, object]:
    """Best-of-`repeat` thread CPU seconds of function(*args), and its last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.thread_time()
        result = function(*args)
        best = min(best, time.thread_time() - t0)
    return best, result


def gif_size_of(frames, durations, max_size, scratch: Path, name: str) -> tuple[float, int]:
    path = scratch / name
    t0 = time.thread_time()
    with gif_writer(path, durations, max_size) as write:
        for frame in frames:
            write(frame)
    cpu = time.thread_time() - t0
    size = path.stat().st_size
    path.unlink()
    return cpu, size


def gif_section(xa: Path, scratch: Path, results: dict) -> str:
    frames, rate = render(xa)
    durations = [1000 / float(rate)] * len(frames)
    size = dc_base.DEFAULT_GIF_MAX_SIZE
    n = len(frames)

    def all_frames(fn):
        return [fn(f) for f in frames]

    box_s, box = timed(all_frames, lambda f: fit_within(f, size))
    mean_s, mean = timed(all_frames, halve_mean)
    resh_s, resh = timed(all_frames, halve_reshape)
    diff = np.concatenate([(b.astype(np.int16) - m).ravel() for b, m in zip(box, mean)])
    same_reshape = all(np.array_equal(a, b) for a, b in zip(mean, resh))
    pil_vs_mean = {"max_abs": int(np.abs(diff).max()), "share_differing": float(np.mean(diff != 0)),
                   "mean": float(diff.mean())}
    # the whole GIF writer: on full-size frames (fit_within inside) and on frames halved beforehand
    full_cpu, full_bytes = gif_size_of(frames, durations, size, scratch, "full.gif")
    pre_cpu, pre_bytes = gif_size_of(box, durations, size, scratch, "pre_box.gif")
    pre_mean_cpu, pre_mean_bytes = gif_size_of(mean, durations, size, scratch, "pre_mean.gif")
    # the index page's thumbnail: from the full frame, or from the 512 px GIF frame
    middle = n // 2
    thumb_full_s, thumb_full = timed(lambda: fit_within(frames[middle], THUMB_SIZE), repeat=20)
    thumb_half_s, thumb_half = timed(lambda: fit_within(box[middle], THUMB_SIZE), repeat=20)
    thumb_diff = int(np.abs(thumb_full.astype(np.int16) - thumb_half).max())
    results["gif"] = {"frames": n, "box_s": box_s, "mean_s": mean_s, "reshape_s": resh_s,
                      "pil_vs_mean": pil_vs_mean, "reshape_equals_mean": same_reshape,
                      "gif_full_cpu": full_cpu, "gif_full_bytes": full_bytes,
                      "gif_pre_box_cpu": pre_cpu, "gif_pre_box_bytes": pre_bytes,
                      "gif_pre_mean_cpu": pre_mean_cpu, "gif_pre_mean_bytes": pre_mean_bytes,
                      "thumb_full_ms": thumb_full_s * 1e3, "thumb_half_ms": thumb_half_s * 1e3,
                      "thumb_max_diff": thumb_diff}
    return "\n".join([
        f"XA clip, {n} frames {frames[0].shape[1]}x{frames[0].shape[0]} -> {size} px. "
        "Thread CPU seconds for all frames, best of 3.\n",
        "| downscale to 512^2 | CPU s, 100 frames | ms a frame |",
        "|---|---:|---:|",
        f"| `fit_within` (Pillow BOX, today) | {box_s:.3f} | {box_s / n * 1e3:.2f} |",
        f"| numpy 2x2 mean (strided adds, uint16) | {mean_s:.3f} | {mean_s / n * 1e3:.2f} |",
        f"| numpy 2x2 mean (reshape + sum) | {resh_s:.3f} | {resh_s / n * 1e3:.2f} |",
        "",
        f"Pillow BOX against the exact 2x2 mean (rounded half up): max |difference| {pil_vs_mean['max_abs']} "
        f"level(s), {pil_vs_mean['share_differing'] * 100:.2f}% of pixels differ, mean difference "
        f"{pil_vs_mean['mean']:+.4f}; the two numpy forms agree exactly: {same_reshape}.\n",
        "| GIF writer (`gif_writer`, 512 px) | CPU s | bytes |",
        "|---|---:|---:|",
        f"| full-size frames in (downscale inside, today) | {full_cpu:.2f} | {full_bytes:,} |",
        f"| frames downscaled beforehand by Pillow BOX (same pixels) | {pre_cpu:.2f} | {pre_bytes:,} |",
        f"| frames downscaled beforehand by the 2x2 mean | {pre_mean_cpu:.2f} | {pre_mean_bytes:,} |",
        "",
        f"Thumbnail (256 px, middle frame): from the 1024 px frame {thumb_full_s * 1e3:.2f} ms, from the 512 px "
        f"GIF frame {thumb_half_s * 1e3:.2f} ms (best of 20); max |difference| of the two {thumb_diff} level(s).\n",
    ])


# =============================================================================
# Where the XA conversion's time goes
# =============================================================================

def stages_section(xa: Path, scratch: Path, results: dict) -> str:
    """CPU seconds of each stage of the XA conversion, measured alone in this process."""
    ds = read_dataset(xa)
    n = number_of_frames(ds)

    t0 = cpu_seconds()
    for _ in decode_frames(xa, ds):
        pass
    decode = cpu_seconds() - t0

    t0 = cpu_seconds()
    frames, _ = rendered_frames(xa, ds, 255, None)
    frames = [np.ascontiguousarray(f) for f in frames]
    render_total = cpu_seconds() - t0
    rate = frame_timing(ds, n, None).rate
    durations = [1000 / float(rate)] * n

    # the GIF, split by wrapping the functions gif_writer calls (one thread: thread CPU time)
    spent = {"fit_within": 0.0, "gif_frame_update": 0.0}
    originals = {name: getattr(dc_gif, name) for name in spent}

    def wrap(name):
        def timed_call(*args, **kwargs):
            t = time.thread_time()
            try:
                return originals[name](*args, **kwargs)
            finally:
                spent[name] += time.thread_time() - t
        return timed_call

    for name in spent:
        setattr(dc_gif, name, wrap(name))
    try:
        gif_cpu, gif_bytes = gif_size_of(frames, durations, dc_base.DEFAULT_GIF_MAX_SIZE, scratch, "stage.gif")
    finally:
        for name, fn in originals.items():
            setattr(dc_gif, name, fn)
    # within gif_frame_update: the quantise step (grey frames' PSNR is worked out on the histogram, inside it)
    sub = {"quantise_grey": 0.0, "psnr": 0.0}
    sub_originals = {name: getattr(dc_gif, name) for name in sub}

    def wrap_sub(name):
        def timed_call(*args, **kwargs):
            t = time.thread_time()
            try:
                return sub_originals[name](*args, **kwargs)
            finally:
                sub[name] += time.thread_time() - t
        return timed_call

    for name in sub:
        setattr(dc_gif, name, wrap_sub(name))
    try:
        gif_cpu2, _ = gif_size_of(frames, durations, dc_base.DEFAULT_GIF_MAX_SIZE, scratch, "stage2.gif")
    finally:
        for name, fn in sub_originals.items():
            setattr(dc_gif, name, fn)

    mp4 = scratch / "stage.mp4"
    x264_cpu, x264_wall = encode(frames, mp4, rate, dc_base.DEFAULT_CRF, dc_base.X264_PRESET, dc_base.X264_TUNE,
                                 getattr(dc_base, "X264_PARAMS", None))
    mp4.unlink()

    # the whole converter, and a bare start-up + import, as processes (wait4)
    def process_cpu(cmd) -> tuple[float, float]:
        wall0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"failed: {cmd}")
        return usage.ru_utime + usage.ru_stime, time.perf_counter() - wall0

    out = scratch / "whole"
    whole_cpu, whole_wall = process_cpu([PY, str(CONVERTER), str(xa), "-o", str(out), "-q"])
    import_cpu, import_wall = process_cpu([PY, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                                           "import dicom_converter, _dicom_converter.batch, numpy, pydicom, PIL.Image, av",
                                           str(REPO)])
    lut = render_total - decode
    lzw = gif_cpu - spent["fit_within"] - spent["gif_frame_update"]
    update_rest = spent["gif_frame_update"] - sub["quantise_grey"] - sub["psnr"]
    parts = [
        ("decode (pydicom iter_pixels, libjpeg-turbo)", decode),
        ("LUT: stored values -> 8-bit display (render_grayscale; decode subtracted)", lut),
        ("GIF: downscale 1024 -> 512 (fit_within, Pillow BOX)", spent["fit_within"]),
        ("GIF: quantise_grey (bin width from the histogram + index take)", sub["quantise_grey"]),
        ("GIF: PSNR checks (colour frames only)", sub["psnr"]),
        ("GIF: rest of gif_frame_update (histogram, unchanged runs)", update_rest),
        ("GIF: LZW + crop + writing (GifImagePlugin.getdata, the rest of write)", lzw),
        (f"x264 encode ({dc_base.X264_PRESET}, crf {dc_base.DEFAULT_CRF}, tune {dc_base.X264_TUNE}), incl. gray->yuv420p", x264_cpu),
        ("interpreter start-up + imports (python3 -c 'import dicom_converter, numpy, pydicom, PIL, av')", import_cpu),
    ]
    total = sum(v for _, v in parts)
    results["stages"] = {"parts": dict(parts), "sum": total, "whole_cpu": whole_cpu, "whole_wall": whole_wall,
                         "gif_bytes": gif_bytes, "x264_wall": x264_wall, "gif_cpu_check": gif_cpu2}
    lines = [f"XA clip (`{xa.parent.name}`), each stage alone in one process, CPU seconds "
             "(user + system; x264 counts all its threads).\n",
             "| stage | CPU s | share of the sum |", "|---|---:|---:|"]
    for label, value in parts:
        lines.append(f"| {label} | {value:.2f} | {value / total * 100:.0f}% |")
    lines.append(f"| **sum of the stages** | **{total:.2f}** | 100% |")
    lines.append(f"| whole `dicom_converter.py XA.dcm -o OUT -q` (wait4, its pool worker included) "
                 f"| {whole_cpu:.2f} | {whole_cpu / total * 100:.0f}% |")
    lines.append("")
    lines.append(f"The whole run took {whole_wall:.2f} s wall (noisy). The rest of the whole run over the sum "
                 f"({whole_cpu - total:+.2f} s) is the pool worker's own start-up and imports, reading the "
                 "dataset, the .txt, the thumbnail, the index page and the manifest, and the threads' hand-offs.\n")
    return "\n".join(lines)


# =============================================================================

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["grid", "gif", "stages"], nargs="+",
                        default=["stages", "gif", "grid"])
    parser.add_argument("--clips", nargs="+",
                        default=["xa1024x100", "emri_small", "XA_JPEG_LOSSLESS_SV1", "eCT_Supplemental"],
                        help="clips for the grid (default: %(default)s; also xa512x100)")
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--crfs", nargs="+", type=int, default=CRFS)
    parser.add_argument("--tunes", nargs="+", default=TUNES, help="x264 tunes; 'none' for no tune")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--json", type=Path, help="also write every number to this JSON file")
    args = parser.parse_args()

    known = clip_paths(args.workdir)
    for name in ["xa1024x100"] + args.clips:
        if name in known:
            ensure_bench_clip(name, known[name], args.workdir)
    clips = {name: known[name] for name in args.clips if name in known and known[name].exists()}
    missing = [name for name in args.clips if name not in clips]
    xa = known["xa1024x100"]
    results: dict = {}
    out = ["# x264 presets, the GIF's downscale, and the XA run's time\n",
           f"- software: Python {sys.version.split()[0]}, numpy {np.__version__}, Pillow {Image.__version__}, "
           f"av {av.__version__} ({av.codec.Codec('libx264', 'w').long_name}), "
           f"`nproc` = {os.cpu_count()}\n"]
    if missing:
        out.append(f"- clips skipped (not found): {', '.join(missing)}\n")
    with tempfile.TemporaryDirectory(prefix="x264_", dir=args.workdir) as tmp:
        scratch = Path(tmp)
        if "stages" in args.only:
            out += ["## Where the XA conversion's CPU time goes\n", stages_section(xa, scratch, results)]
        if "gif" in args.only:
            out += ["## The GIF's downscale\n", gif_section(xa, scratch, results)]
        if "grid" in args.only:
            grid_results: dict = {}
            grid(clips, args.presets, args.crfs, args.tunes, scratch, grid_results)
            results["grid"] = grid_results
            out += ["## x264 preset x CRF\n", grid_tables(grid_results)]
    print("\n".join(out))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
