"""Where the points of a sweep run: worker processes on this machine, or tasks on a Ray cluster.

An executor maps one picklable, module-level function over a list of tasks and yields
``(index, result)`` as each task finishes, in completion order. A task that produced no result
(its function raised, or the process running it died) yields a :class:`TaskFailure` instead, and
the other tasks carry on: one bad point never costs the rest of a sweep.

>>> from collapsekit.experiments.executors import LocalExecutor
>>> for index, result in LocalExecutor(workers=2).run(abs, [-1, -2]):   # doctest: +SKIP
...     print(index, result)
"""

from __future__ import annotations

import logging
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


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` — what a summary table or status file can hold."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# -- local worker processes -----------------------------------------------------------------------
#: In a worker: one flag per task of its pool, shared with the parent (set by :func:`_init_worker`).
_started: Any = None


def _init_worker(threads: int, parent: int, started: Any) -> None:
    """Runs once in each worker process: bound its threads, die with the parent, keep the flags.

    ``threads`` = cores // workers, so that the workers together do not oversubscribe the machine
    (each torch would otherwise start one thread per core). On Linux the worker asks for SIGKILL
    when its parent dies: a sweep killed with ``kill -9`` must not leave workers writing into point
    directories that the next invocation is about to resume.
    """
    global _started
    _started = started
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
        Processes at once (default: the cores available). Each sets torch to
        ``max(1, cores // workers)`` threads.
    """

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ParameterError(f"--workers must be ≥ 1, got {workers}")
        self.workers = workers or available_cores()

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
        pool = ProcessPoolExecutor(max_workers=width, mp_context=context, initializer=_init_worker,
                                   initargs=(threads, os.getpid(), started))
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
    """

    def __init__(self, address: str | None = None, *, workers: int | None = None, cpus_per_point: int = 1) -> None:
        if address is not None and not _ADDRESS.match(address):
            raise ParameterError(f"--address must be HOST:PORT (or ray://HOST:PORT, auto), got {address!r}")
        if workers is not None and workers < 1:
            raise ParameterError(f"--workers must be ≥ 1, got {workers}")
        if cpus_per_point < 1:
            raise ParameterError(f"cpus_per_point must be ≥ 1, got {cpus_per_point}")
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
        remote = ray.remote(num_cpus=self.cpus_per_point, max_retries=0)(_ray_call)
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
    "local": lambda *, workers=None, address=None: LocalExecutor(workers),
    "ray": lambda *, workers=None, address=None: RayExecutor(address, workers=workers),
}


def make_executor(name: str, *, workers: int | None = None, address: str | None = None) -> Executor:
    """The executor called ``name`` (``"local"`` or ``"ray"``); ``address`` is for Ray only."""
    if name not in EXECUTORS:
        raise ParameterError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if address is not None and name != "ray":
        raise ParameterError("--address is for --executor ray (the local executor runs on this machine)")
    return EXECUTORS[name](workers=workers, address=address)
