"""Large clips decoded in a helper process while this one writes, the frames handed over
through a pipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from _dicom_converter.base import ENV_HELPER_PIXELS, ConversionError, CorruptFile, environment_setting, first_line
from _dicom_converter.pixels.display import rendered_frames
from _dicom_converter.pixels.libjpeg_turbo import TURBO_SYNTAXES
from _dicom_converter.reading import read_dataset, transfer_syntax_of

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset


# Clips with more pixels than this are decoded in a helper process while this one
# encodes: measured on a 1024^2 x 100 JPEG Lossless angiography run when pylibjpeg
# decoded it, decoding (~6 s) and encoding (~8 s) each held one core, and
# pylibjpeg keeps the GIL, so a thread would not overlap them.  libjpeg-turbo now
# decodes that run in 1 s (see `use_libjpeg_turbo`) and the helper gained it
# nothing but 80 MB of memory, so what libjpeg-turbo decodes stays in process;
# the helper still pays for the syntaxes pylibjpeg decodes (JPEG-LS, JPEG 2000,
# RLE).  Small clips are not worth starting a process for (see `rendered_frames_in_helper`).
PARALLEL_DECODE_PIXELS = 16 * 1024 * 1024


def decode_in_helper(ds: Dataset, frames: int) -> bool:
    """Whether to decode this clip in a helper process (see `PARALLEL_DECODE_PIXELS`)."""
    threshold = int(environment_setting(ENV_HELPER_PIXELS) or PARALLEL_DECODE_PIXELS)
    if frames < 2 or frames * int(ds.Rows) * int(ds.Columns) < threshold:
        return False
    return transfer_syntax_of(ds) not in TURBO_SYNTAXES


def rendered_frames_in_helper(
    path: Path, ds: Dataset, out_max: int, window: tuple[float, float] | None, draw_overlays: bool = True,
    order: list[int] | None = None,
) -> tuple[Iterator[np.ndarray], str]:
    """`rendered_frames`, run in a helper process that sends frames through a pipe.

    The helper is always spawned, whatever the pool's start method: a forked
    helper inherits every descriptor of its worker, the pool's pipes among
    them, so a worker killed while its helper ran (the OOM killer) stayed
    "alive" to the pool and the batch hung (2 of 4 tries), the helper blocked
    on a pipe no one read.  A spawned helper holds only its end of its pipe:
    when the worker dies, its next write fails and it exits.  Spawning costs
    about 0.24 s a clip here (measured on 10-frame RLE clips forced through
    it), against the seconds a clip of PARALLEL_DECODE_PIXELS takes to decode.

    The helper reads the dataset itself (plain values cross the process
    boundary); its errors come back as the same `ConversionError`; if this
    process stops (an error in an encoder, Ctrl-C), the helper is ended.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    helper = context.Process(target=_render_into_pipe, args=(send, path, out_max, window, draw_overlays, order),
                             daemon=True)
    helper.start()
    send.close()
    try:
        kind, payload = receive.recv()
    except EOFError:
        helper.join()
        raise CorruptFile(f"the decoding process stopped (exit status {helper.exitcode})") from None
    if kind == "error":
        helper.join()
        raise payload

    def frames() -> Iterator[np.ndarray]:
        import numpy as np

        try:
            while True:
                kind, value = receive.recv()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                shape, dtype = value
                yield np.frombuffer(receive.recv_bytes(), dtype=dtype).reshape(shape)
        except EOFError:
            raise CorruptFile(f"the decoding process stopped (exit status {helper.exitcode})") from None
        finally:
            receive.close()
            if helper.is_alive():
                helper.terminate()
            helper.join()

    return frames(), payload


def _render_into_pipe(send, path: Path, out_max: int, window, draw_overlays: bool, order) -> None:
    """In the helper: render every frame and send it; errors are sent, not raised."""
    import signal

    import numpy as np

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the converting process decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        try:
            frames, description = rendered_frames(path, read_dataset(path), out_max, window, draw_overlays, order)
            send.send(("description", description))
            for frame in frames:
                send.send(("frame", (frame.shape, frame.dtype.str)))
                send.send_bytes(np.ascontiguousarray(frame).reshape(-1).view(np.uint8))
            send.send(("end", None))
        except ConnectionError:
            raise
        except ConversionError as exc:
            send.send(("error", exc))
        except Exception as exc:
            send.send(("error", CorruptFile(f"cannot decode pixel data: {first_line(exc)}")))
    except ConnectionError:  # the worker is gone (killed): there is no one to tell
        pass
    finally:
        send.close()
