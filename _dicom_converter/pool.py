"""The worker pool: files converted in worker processes under fork, forkserver or spawn,
handed over in chunks, a crashed worker's files retried one at a time, temporary files
removed on every way out.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from _dicom_converter.base import ENV_START_METHOD, environment_setting
from _dicom_converter.convert import convert_file
from _dicom_converter.reading import import_pydicom
from _dicom_converter.results import Result
from _dicom_converter.series import convert_series
from _dicom_converter.writers import TEMPORARY_NAME, TEMPORARY_PREFIX

if TYPE_CHECKING:
    from _dicom_converter.base import Options


def process_context():
    """The multiprocessing context for the worker pool: the platform's default start method.

    That is fork on Linux up to Python 3.13 (a worker starts in milliseconds,
    where a spawned one imports numpy and pydicom again), forkserver from 3.14,
    spawn on macOS (Apple's frameworks, which PyAV's wheel links, do not
    survive a fork) and Windows (which has nothing else).  Nothing a worker
    needs is inherited: `_worker_init` sets its signals, and decoders and LUT
    caches are set up on first use in each process.  ENV_START_METHOD chooses
    another, so that tests run the pool under each.
    """
    import multiprocessing

    return multiprocessing.get_context(environment_setting(ENV_START_METHOD))


def default_jobs() -> int:
    """The cores this process may use, as many as the platform's pool takes (`pool_size`)."""
    return pool_size(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def pool_size(jobs: int) -> int:
    """`jobs`, at most 61 on Windows, where a process pool takes no more."""
    return min(jobs, WINDOWS_MAX_WORKERS) if sys.platform == "win32" else jobs


# concurrent.futures refuses more workers on Windows (WaitForMultipleObjects
# waits on at most 64 handles, 3 of which the pool needs itself).
WINDOWS_MAX_WORKERS = 61


# What every worker imports before its first file: pydicom alone took 0.15-0.3 s of CPU (its
# pixel plugins, numpy, Pillow; `import_pydicom` leaves out requests and tqdm).  Forked
# workers inherit what the parent has imported, and the parent needs most of it anyway (the
# index page's series thumbnails, --layout study's headers), so it imports them once, before
# the fork, rather than every worker and then itself again: 100 CT slices on 2 cores took
# 0.3 s less.  A forkserver imports them once for all its children; spawned workers import
# their own.
WORKER_MODULES = ("numpy", "pydicom", "pydicom.pixels", "PIL.Image", "imagecodecs")


def preload_worker_modules(context) -> None:
    import importlib

    method = context.get_start_method()
    if method == "fork":
        import gc

        first = "pydicom" not in sys.modules
        import_pydicom()
        for name in WORKER_MODULES:
            importlib.import_module(name)
        if first:
            # Python's advice for a fork without exec: what the imports made is kept out of
            # every later garbage collection, so a worker's collections neither walk it nor
            # copy its pages.  Once: a later pool (a run's second pass) finds it done.
            gc.freeze()
    elif method == "forkserver":
        context.set_forkserver_preload([*WORKER_MODULES, __name__])


def _worker_init() -> None:
    """In pool workers: leave Ctrl-C to the parent, and turn SIGTERM into a clean exit.

    On POSIX the parent stops the batch by terminating its workers (SIGTERM):
    `Terminated` unwinds through `staged_outputs`, which deletes the worker's
    temporary files.  On Windows, where termination cannot be caught, the
    parent sweeps them (`remove_orphaned_temporaries`).
    """
    import faulthandler
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    faulthandler.disable()  # a crashing decoder is reported by the batch, not as a C stack dump
    import_pydicom()  # a spawned worker's own import (forked ones have it already)


class Terminated(SystemExit):
    """SIGTERM in a worker: unwinds the conversion (deleting its temporaries), then exits.

    A SystemExit, so that an idle worker stopped at the end of a batch exits
    with status 143 and no traceback.
    """

    def __init__(self):
        super().__init__(143)


def _exit_on_signal(signum, frame) -> None:
    import signal

    # One SIGTERM is enough, and a second must not cut short the clean-up the first
    # starts: when one worker exits, the pool's manager thread terminates the others
    # again, and a Terminated raised inside `staged_outputs`' unlinking left a .part.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


def _interrupt_on_signal(signum, frame) -> None:
    raise KeyboardInterrupt


def _convert_tasks(chunk: list[tuple]) -> list[Result]:
    """Run a few tasks in a worker, each ``(file, stem, options)``, or ``([(slice file, name)],
    stem, options)`` for a series: one hand-over to the pool for several small files."""
    try:
        return [convert_series(*task) if isinstance(task[0], list) else convert_file(*task) for task in chunk]
    except Terminated:  # the temporaries are gone by now; leave before taking another task
        import multiprocessing

        end_processes(multiprocessing.active_children())  # a decoding helper must not outlive us
        os._exit(143)


CRASHED = "the converter crashed on this file (a decoder failed on damaged data)"
TASKS_AHEAD = 4  # chunks handed to the pool per worker: enough to keep it busy, not 100,000 tasks at once
CHUNK_TASKS = 16  # tasks at most in one hand-over to a worker (each costs 2-5 ms of pickling and waking)
# A chunk's results come back together, so a chunk is sized to take about this long, as measured on the
# tasks finished so far (one task each until the first finishes): a log line follows its file within it.
CHUNK_SECONDS = 0.2


class TaskQueue:
    """Tasks waiting to run: those put back after a crash first, then the next ones from
    `source`, read only as the pool needs them (planning streams into converting).  Keeps
    only the tasks read and not yet finished."""

    def __init__(self, source: Iterable[tuple] = ()):
        self._source = iter(source)
        self._back: collections.deque[int] = collections.deque()
        self._ahead: collections.deque[int] = collections.deque()
        self.tasks: dict[int, tuple] = {}
        self._count = 0
        self.root: str | None = None  # the folder every output seen so far is under

    def read_ahead(self, count: int) -> int:
        """Read tasks from the source until `count` are waiting (or it ends); how many wait."""
        while len(self._ahead) + len(self._back) < count:
            task = next(self._source, None)
            if task is None:
                break
            self.tasks[self._count] = task
            self._ahead.append(self._count)
            self._count += 1
            folder = str(task[1].parent)
            self.root = folder if self.root is None else os.path.commonpath([self.root, folder])
        return len(self._ahead) + len(self._back)

    def take(self, count: int) -> list[int]:
        self.read_ahead(count)
        taken = []
        while len(taken) < count and (self._back or self._ahead):
            taken.append((self._back or self._ahead).popleft())
        return taken

    def put_back(self, indices: list[int]) -> None:
        self._back.extendleft(reversed(sorted(indices)))

    def __bool__(self) -> bool:
        return self.read_ahead(1) > 0

    def __len__(self) -> int:  # the tasks waiting now, not what the source has still to give
        return len(self._ahead) + len(self._back)


def convert_all(tasks: Iterable[tuple[Path, Path, Options]], jobs: int,
                finished: Callable[[Result], None] | None = None) -> Iterator[Result]:
    """Convert every task in worker processes, `jobs` at a time, yielding results in order;
    `finished` is called with each result as soon as it arrives (the log's line for it), in
    the order the files finish.

    Each file is converted in a worker process, even with one job, so a
    decoder that crashes on a damaged file (a C library, beyond Python's
    reach) takes down only that worker.  The tasks that may have been running
    with it are run again one at a time in a single worker, which finds the
    file that crashes; the rest go back to the pool.  Workers stream frame by
    frame, so memory grows with the number of jobs, not with the size of the
    files; `tasks` is read as the pool needs them, so not with their number either.
    """
    done: dict[int, Result] = {}
    emitted = 0
    waiting, suspects = TaskQueue(tasks), TaskQueue()
    suspects.tasks = waiting.tasks
    while waiting or suspects:
        isolating = bool(suspects)
        lost = []
        for index, result in _run_in_pool(suspects if isolating else waiting, 1 if isolating else jobs,
                                          1 if isolating else CHUNK_TASKS):
            if result is None:
                lost.append(index)
                continue
            done[index] = result
            if finished is not None:
                finished(result)
            while emitted in done:
                del waiting.tasks[emitted]
                yield done.pop(emitted)
                emitted += 1
        if not lost:
            continue
        lost.sort()
        if isolating:  # one task at a time: the first one lost was running
            done[lost[0]] = Result(waiting.tasks[lost[0]][0], "failed", message=CRASHED)
            if finished is not None:
                finished(done[lost[0]])
            suspects.put_back(lost[1:])
            while emitted in done:
                del waiting.tasks[emitted]
                yield done.pop(emitted)
                emitted += 1
        else:  # what may have been running: the first chunks not finished, at most 2 per worker plus one
            reach = (2 * jobs + 1) * CHUNK_TASKS
            suspects.put_back(lost[:reach])
            waiting.put_back(lost[reach:])
        if waiting.root:
            remove_orphaned_temporaries(Path(waiting.root))


def _run_in_pool(waiting: TaskQueue, jobs: int, chunk: int) -> Iterator[tuple[int, Result | None]]:
    """Run the tasks `waiting` holds (taken from it as they are handed over) in a process
    pool, up to `chunk` at a time, yielding (index, result) as chunks finish (`convert_all`
    puts them back in order); (index, None) for tasks lost to a crash.  What is left in
    `waiting` afterwards was never started.

    A few chunks per worker are handed over at a time, each as another finishes,
    so a run of 100,000 files holds neither 100,000 pending tasks nor their results.
    Chunks shrink as the tasks run out, so that the last ones still spread over every worker.
    """
    import multiprocessing
    import signal
    import time
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    workers = pool_size(min(jobs, waiting.read_ahead(jobs)))
    context = process_context()
    preload_worker_modules(context)
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, mp_context=context)
    running: dict = {}  # future -> the indices of its chunk
    in_flight = workers * TASKS_AHEAD
    started, done = time.monotonic(), 0

    def submit(count: int) -> None:
        seconds = (time.monotonic() - started) * workers / done if done else 0  # a task's, so far
        most = max(1, min(chunk, int(CHUNK_SECONDS / seconds))) if seconds else 1
        for _ in range(count):
            size = max(1, min(most, waiting.read_ahead(in_flight * most) // in_flight))
            indices = waiting.take(size)
            if not indices:
                return
            try:
                running[pool.submit(_convert_tasks, [waiting.tasks[index] for index in indices])] = indices
            except BrokenProcessPool:
                waiting.put_back(indices)
                raise

    try:
        # The pool starts its workers as the first tasks are submitted.  A spawned
        # worker takes a moment to reach `_worker_init`; started with Ctrl-C
        # ignored, it keeps ignoring it from its first instruction (a disposition
        # that survives exec), so a Ctrl-C then prints no traceback from it.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            submit(workers)
        finally:
            signal.signal(signal.SIGINT, previous_int)
        broken = False
        while True:
            if not broken:
                try:
                    submit(in_flight - len(running))
                except BrokenProcessPool:
                    broken = True
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda future: running[future][0]):
                indices = running.pop(future)
                try:
                    results = future.result()
                except BrokenProcessPool:  # lost with the worker that died, or with the pool after it
                    broken, results = True, [None] * len(indices)
                done += len(indices)
                yield from zip(indices, results)
        pool.shutdown()
    finally:  # Ctrl-C or SIGTERM: stop the workers now; they delete their temporary files
        pool.shutdown(wait=False, cancel_futures=True)
        end_processes(multiprocessing.active_children())
        # then wait for the pool's own thread: a pool forked after a crash while it still held
        # a queue's lock would start workers that wait on that lock for ever
        pool.shutdown(wait=True)


def end_processes(processes) -> None:
    """Stop `processes` (multiprocessing children) and whatever they started, and wait for them.

    `terminate` is SIGTERM on POSIX, which a worker turns into a clean exit,
    and TerminateProcess on Windows, which nothing survives; a decoding
    helper still running after its worker has gone is killed.
    """
    import psutil

    processes = [process for process in processes if process.pid is not None]
    family = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            family.extend(psutil.Process(process.pid).children(recursive=True))
        process.terminate()
    for process in processes:
        process.join()
    _, alive = psutil.wait_procs(family, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def remove_orphaned_temporaries(root: Path) -> None:
    """Delete temporary files left by processes of ours that died (see TEMPORARY_NAME).

    Only names exactly as `staged_outputs` makes them: the output folder may be
    the input folder, and a file of the user's is never ours to delete; and
    only when no process with that pid and start time runs, so the temporaries
    of another run writing into the same folder are left alone.
    """
    import re

    for path in root.rglob(f"{TEMPORARY_PREFIX}*.part"):
        match = re.fullmatch(TEMPORARY_NAME, path.name)
        if match and not _process_alive(int(match[1]), int(match[2])):
            with contextlib.suppress(OSError):
                path.unlink()


def _process_alive(pid: int, started: int) -> bool:
    """Whether process `pid` runs and is the one that started at `started` (centiseconds)."""
    import psutil

    try:
        return abs(round(psutil.Process(pid).create_time() * 100) - started) <= 1
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # it exists, but we may not look at it: not ours to judge
        return True
