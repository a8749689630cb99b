"""Where the points of a sweep run: worker processes on this machine, or tasks on a Ray cluster.

An executor maps one picklable, module-level function over a list of tasks and yields
``(index, result)`` as each task finishes, in completion order. A task that produced no result
(its function raised, or the process running it died) yields a :class:`TaskFailure` instead, and
the other tasks carry on: one bad point never costs the rest of a sweep.

>>> from collapsekit.experiments.executors import LocalExecutor
>>> for index, result in LocalExecutor(workers=2).run(abs, [-1, -2]):   # doctest: +SKIP
...     print(index, result)

GPUs: ``gpus_per_point`` says how many GPUs one point gets. Ray tasks request that many
(``num_gpus``; a fraction shares a GPU) and Ray sets each task's ``CUDA_VISIBLE_DEVICES``. Local
workers are pinned round-robin: worker i sees GPU slot i (mod the slots) through its own
``CUDA_VISIBLE_DEVICES``, so every point's ``cuda:0`` is its own GPU; with GPUs, the default is one
worker per slot. ``gpus_per_point=0`` hides every GPU from the workers. See :func:`resolve_gpus_per_point`
for the default, and :func:`point_accelerator` for what a point's ``train.accelerator`` becomes.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import re
import signal
import sys
import traceback
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from collapsekit.errors import ParameterError

T = TypeVar("T")
R = TypeVar("R")

RAY_MISSING = "the Ray executor needs Ray: pip install 'collapsekit[ray]'"
_DIED = "its worker process died while running it (a crash, os._exit or the out-of-memory killer)"


@dataclass(frozen=True)
class TaskFailure:
    """A task that returned nothing: its function raised, or the process running it died.

    Attributes
    ----------
    message : str
        One line saying what happened.
    traceback : str
        The formatted traceback where there is one ("" when a process died without one).
    """

    message: str
    traceback: str = ""


class Executor(Protocol):
    """Runs ``fn`` on every task; yields ``(index into tasks, result or TaskFailure)`` as tasks finish."""

    def run(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R | TaskFailure]]: ...


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                        # macOS, Windows
        return os.cpu_count() or 1


# -- GPUs ----------------------------------------------------------------------------------------------
CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
#: ``train.accelerator`` values that ask for a GPU (Lightning Fabric's names).
GPU_ACCELERATORS = ("gpu", "cuda")


def visible_gpus() -> list[str]:
    """The CUDA devices this process sees, as ``CUDA_VISIBLE_DEVICES`` names them (their indices when it
    is not set): what local workers are pinned to. Empty without CUDA."""
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        return []
    names = [part.strip() for part in os.environ.get(CUDA_VISIBLE_DEVICES, "").split(",") if part.strip()]
    return names[:count] if len(names) >= count else [str(i) for i in range(count)]


def resolve_gpus_per_point(gpus_per_point: float | None, accelerator: str, *, executor: str = "local") -> float:
    """GPUs per point, checked; ``None`` gives the default: 1 when the points' ``train.accelerator`` asks
    for a GPU (``gpu``/``cuda``; ``auto`` too for local workers when this machine has one), else 0.
    Ray does not default to GPUs for ``auto``: a task asking for a GPU that no node has never starts."""
    if gpus_per_point is None:
        wants = accelerator in GPU_ACCELERATORS or (accelerator == "auto" and executor == "local"
                                                    and bool(visible_gpus()))
        return 1.0 if wants else 0.0
    if isinstance(gpus_per_point, bool) or not isinstance(gpus_per_point, (int, float)) \
            or not math.isfinite(gpus_per_point) or gpus_per_point < 0:
        raise ParameterError(f"--gpus-per-point must be a number ≥ 0, got {gpus_per_point!r}")
    if 0 < gpus_per_point < 1 and abs(1 / gpus_per_point - round(1 / gpus_per_point)) > 1e-9:
        raise ParameterError(f"--gpus-per-point {gpus_per_point:g}: a fraction must be 1/n (0.5, 0.25, ...), so "
                             "that n points share each GPU")
    if gpus_per_point > 1 and gpus_per_point != int(gpus_per_point):
        raise ParameterError(f"--gpus-per-point {gpus_per_point:g}: above 1 it must be a whole number")
    return float(gpus_per_point)


def point_accelerator(accelerator: str, gpus_per_point: float) -> str:
    """A point's ``train.accelerator`` for ``gpus_per_point``: ``cuda`` when it gets a GPU and its
    configuration said ``cpu``; ``cpu`` when it gets none and said ``gpu``/``cuda``; else unchanged
    (``auto`` finds the pinned GPU, or the CPU when none is visible)."""
    if gpus_per_point > 0 and accelerator == "cpu":
        return "cuda"
    if gpus_per_point == 0 and accelerator in GPU_ACCELERATORS:
        return "cpu"
    return accelerator


def gpu_slots(gpus: Sequence[str], gpus_per_point: float) -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` of each local worker slot: ``gpus_per_point`` whole GPUs each, or
    1/n of one (n slots per GPU, dealt round-robin so that the first slots get different GPUs)."""
    if gpus_per_point <= 0:
        return [""]
    if not gpus:
        raise ParameterError(f"--gpus-per-point {gpus_per_point:g}: no CUDA device is visible here (set it to 0, "
                             "or run where a GPU is)")
    if gpus_per_point < 1:
        return [gpu for _ in range(round(1 / gpus_per_point)) for gpu in gpus]
    per = int(gpus_per_point)
    if per > len(gpus):
        raise ParameterError(f"--gpus-per-point {per}: this machine shows {len(gpus)} GPU(s)")
    return [",".join(gpus[i * per:(i + 1) * per]) for i in range(len(gpus) // per)]


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` — what a summary table or status file can hold."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# -- local worker processes -----------------------------------------------------------------------
#: In a worker: one flag per task of its pool, shared with the parent (set by :func:`_init_worker`).
_started: Any = None


def _init_worker(threads: int, parent: int, started: Any, slots: Sequence[str] | None = None,
                 counter: Any = None) -> None:
    """Runs once in each worker process: bound its threads, die with the parent, keep the flags, and
    take the next GPU slot (``CUDA_VISIBLE_DEVICES``) when ``slots`` are given.

    ``threads`` = cores // workers, so that the workers together do not oversubscribe the machine
    (each torch would otherwise start one thread per core). On Linux the worker asks for SIGKILL
    when its parent dies: a sweep killed with ``kill -9`` must not leave workers writing into point
    directories that the next invocation is about to resume. CUDA reads ``CUDA_VISIBLE_DEVICES`` when
    it first starts in the process, which is later than this (a spawned worker has not used it).
    """
    global _started
    _started = started
    if slots is not None and counter is not None:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        os.environ[CUDA_VISIBLE_DEVICES] = slots[index % len(slots)]
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:                # the parent died before prctl took effect
            os._exit(1)
    # torch sizes its thread pool from these when it is first imported (no import here: a task that
    # never uses torch should not pay for it); if an import on the way here loaded torch already
    # (a package __init__, the parent's __main__ re-run by spawn), set its pool directly.
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _flagged_call(fn: Callable[[T], R], task: T, index: int) -> R:
    """Flag task ``index`` as started, then run it: after a pool breaks, the flags (shared memory,
    so a crash right after cannot lose them) tell the tasks that had started, the suspects, from
    those that were only queued."""
    _started[index] = 1
    return fn(task)


class LocalExecutor:
    """Worker processes on this machine (``ProcessPoolExecutor``, spawn context).

    Spawn, not fork: a forked child inherits torch's thread pools and locks in whatever state the
    parent left them, which deadlocks or corrupts at random.

    A worker that dies (segfault, ``os._exit``, the OOM killer) breaks the whole pool, and every
    task not yet finished reports ``BrokenProcessPool``. Only the tasks that had *started* can be
    the cause, and which of them it was cannot be told from the parent; so each is run again alone
    in a fresh one-worker pool, where a crash names its culprit, which is recorded as failed (the
    innocent ones are simply finished). Tasks that were only queued run again in a fresh pool of
    the full width; nothing that finished runs twice.

    Parameters
    ----------
    workers : int, optional
        Processes at once (default: the cores available, or with GPUs one per GPU slot). Each sets
        torch to ``max(1, cores // workers)`` threads.
    gpus_per_point : float, optional
        GPUs each worker sees (module docstring): workers are pinned round-robin to the slots of
        :func:`gpu_slots` through ``CUDA_VISIBLE_DEVICES``; 0 hides the GPUs. Default: 1 when this
        machine has a GPU, else 0 (:func:`resolve_gpus_per_point` with ``auto``).
    """

    def __init__(self, workers: int | None = None, gpus_per_point: float | None = None, *,
                 accelerator: str = "auto") -> None:
        if workers is not None and workers < 1:
            raise ParameterError(f"--workers must be ≥ 1, got {workers}")
        self.gpus_per_point = resolve_gpus_per_point(gpus_per_point, accelerator)
        gpus = visible_gpus()
        # Pinned only where it matters: with GPUs to share out, or to hide them from CPU points.
        self.slots: list[str] | None = gpu_slots(gpus, self.gpus_per_point) if gpus or self.gpus_per_point else None
        default = len(self.slots) if self.slots is not None and self.gpus_per_point > 0 else available_cores()
        self.workers = workers or default

    def run(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R | TaskFailure]]:
        if not tasks:
            return
        workers = min(self.workers, len(tasks))
        threads = max(1, available_cores() // workers)
        queued, suspects = list(range(len(tasks))), deque[int]()
        while queued or suspects:
            # Suspects run first, each alone in its own pool: a crash there names the culprit.
            if suspects:
                batch, width = [suspects.popleft()], 1
            else:
                batch, queued, width = queued, [], min(workers, len(queued))
            started, waiting = yield from self._run_pool(fn, tasks, batch, width, threads)
            if not started and waiting:
                # The pool broke before any task began: its workers cannot start; retrying would loop.
                for i in waiting:
                    yield i, TaskFailure("the worker processes died before running it (they could not start)")
            elif width == 1 and started:
                yield started[0], TaskFailure(_DIED)
                queued += waiting
            else:
                suspects.extend(started)
                queued += waiting

    def _run_pool(self, fn: Callable[[T], R], tasks: Sequence[T], batch: Sequence[int], width: int,
                  threads: int) -> Generator[tuple[int, R | TaskFailure], None, tuple[list[int], list[int]]]:
        """Run ``batch`` in one fresh pool, yielding outcomes; return the tasks a broken pool left
        without a result, as (those that had started, those that had not)."""
        context = multiprocessing.get_context("spawn")
        started = context.Array("b", len(tasks), lock=False)   # each worker writes only its own tasks' flags
        counter = context.Value("i", 0)                       # the next worker's GPU slot
        pool = ProcessPoolExecutor(max_workers=width, mp_context=context, initializer=_init_worker,
                                   initargs=(threads, os.getpid(), started, self.slots, counter))
        broken: list[int] = []
        try:
            futures: dict[Future[R], int] = {pool.submit(_flagged_call, fn, tasks[i], i): i for i in batch}
            for future in as_completed(futures):
                index = futures[future]
                outcome: R | TaskFailure
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    broken.append(index)
                    continue
                except Exception as exc:  # noqa: BLE001 — the task raised: its own failure, not the pool's
                    outcome = TaskFailure(one_line(exc), "".join(traceback.format_exception(exc)))
                yield index, outcome
        finally:
            # Never wait: after the last result the workers only have their interpreter teardown
            # left (seconds, for torch); on an interrupt, running tasks die with this process.
            pool.shutdown(wait=False, cancel_futures=True)
        broken.sort()
        return [i for i in broken if started[i]], [i for i in broken if not started[i]]


# -- Ray ------------------------------------------------------------------------------------------
def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ParameterError(RAY_MISSING) from None
    return ray


def _ray_call(fn: Callable[[T], R], task: T, threads: int) -> R:
    """What a Ray worker runs: bound torch's threads to the CPUs Ray reserved, then the task."""
    import torch

    torch.set_num_threads(threads)
    return fn(task)


_ADDRESS = re.compile(r"^(auto|ray://.+|\[?[A-Za-z0-9_.:-]+\]?:\d{1,5})$")


class RayExecutor:
    """Tasks on a Ray cluster: ``ray.init(address=...)``, one ``ray.remote`` task per point.

    The tasks run the same function as :class:`LocalExecutor`, so a sweep's results do not depend
    on the executor. Tasks are not retried by Ray (``max_retries=0``): a point whose worker died
    is recorded as failed, and rerunning the sweep resumes it from its last checkpoint, as with
    local workers. On a cluster of several machines, the sweep directory must be on a file system
    that every node sees (tasks write their point directories themselves).

    Parameters
    ----------
    address : str, optional
        ``HOST:PORT`` of the head's GCS, ``ray://HOST:PORT`` (Ray Client) or ``auto``; ``None``
        lets ``ray.init`` decide (``RAY_ADDRESS``, or a local Ray started for this sweep).
    workers : int, optional
        Points in flight at once (default: as many as Ray will schedule).
    cpus_per_point : int
        CPUs Ray reserves for each point; torch in the task uses that many threads.
    gpus_per_point : float, optional
        GPUs Ray reserves for each point (``num_gpus``; 0.5 puts two points on a GPU); Ray sets the
        task's ``CUDA_VISIBLE_DEVICES``. Default: 1 when the points' accelerator is ``gpu``/``cuda``,
        else 0.
    """

    def __init__(self, address: str | None = None, *, workers: int | None = None, cpus_per_point: int = 1,
                 gpus_per_point: float | None = None, accelerator: str = "auto") -> None:
        if address is not None and not _ADDRESS.match(address):
            raise ParameterError(f"--address must be HOST:PORT (or ray://HOST:PORT, auto), got {address!r}")
        if workers is not None and workers < 1:
            raise ParameterError(f"--workers must be ≥ 1, got {workers}")
        if cpus_per_point < 1:
            raise ParameterError(f"cpus_per_point must be ≥ 1, got {cpus_per_point}")
        self.gpus_per_point = resolve_gpus_per_point(gpus_per_point, accelerator, executor="ray")
        _import_ray()                           # fail at once, before any point is planned
        self.address, self.workers, self.cpus_per_point = address, workers, cpus_per_point

    def run(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R | TaskFailure]]:
        if not tasks:
            return
        ray = _import_ray()
        owns_connection = not ray.is_initialized()
        if owns_connection:
            try:
                ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)
            except ConnectionError as exc:
                raise ParameterError(f"--address {self.address}: no Ray cluster answers there "
                                     f"({str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r})") from None
        remote = ray.remote(num_cpus=self.cpus_per_point, num_gpus=self.gpus_per_point, max_retries=0)(_ray_call)
        limit = self.workers or len(tasks)
        waiting = deque(range(len(tasks)))
        in_flight: dict[Any, int] = {}
        try:
            while waiting or in_flight:
                while waiting and len(in_flight) < limit:
                    index = waiting.popleft()
                    in_flight[remote.remote(fn, tasks[index], self.cpus_per_point)] = index
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                index = in_flight.pop(ready[0])
                outcome: R | TaskFailure
                try:
                    outcome = ray.get(ready[0])
                except ray.exceptions.RayTaskError as exc:     # the function raised in the task
                    cause = getattr(exc, "cause", None) or exc
                    outcome = TaskFailure(one_line(cause), str(exc))
                except ray.exceptions.RayError as exc:         # the worker or its node died
                    outcome = TaskFailure(f"its Ray worker died while running it ({one_line(exc)})")
                yield index, outcome
        finally:
            for ref in in_flight:
                ray.cancel(ref, force=True)
            if owns_connection:
                ray.shutdown()


#: Executors by the name ``--executor`` takes.
EXECUTORS: dict[str, Callable[..., Executor]] = {
    "local": lambda *, workers=None, address=None, gpus_per_point=None, accelerator="auto":
        LocalExecutor(workers, gpus_per_point, accelerator=accelerator),
    "ray": lambda *, workers=None, address=None, gpus_per_point=None, accelerator="auto":
        RayExecutor(address, workers=workers, gpus_per_point=gpus_per_point, accelerator=accelerator),
}


def make_executor(name: str, *, workers: int | None = None, address: str | None = None,
                  gpus_per_point: float | None = None, accelerator: str = "auto") -> Executor:
    """The executor called ``name`` (``"local"`` or ``"ray"``); ``address`` is for Ray only.
    ``gpus_per_point`` and the points' ``accelerator`` (for its default) as the executors take them;
    the executor's ``gpus_per_point`` attribute holds the value it uses."""
    if name not in EXECUTORS:
        raise ParameterError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if address is not None and name != "ray":
        raise ParameterError("--address is for --executor ray (the local executor runs on this machine)")
    return EXECUTORS[name](workers=workers, address=address, gpus_per_point=gpus_per_point, accelerator=accelerator)
