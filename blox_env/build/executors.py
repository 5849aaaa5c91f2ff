"""Executors: run independent tasks serially, in a local process pool, or on a Ray cluster.

One interface, :meth:`Executor.map_unordered`, yields ``(task, result)`` pairs as
they finish, so the caller (the single writer of a store) records every result
as soon as it exists (the builders batch the writes: :mod:`.writer`). Workers run
one thread each in every thread pool they hold (torch intra- and inter-op,
OpenMP, BLAS through threadpoolctl, and the ``*_NUM_THREADS`` variables for
libraries loaded later): two threads on a busy 2-core machine made training up
to 8x slower. A process pool given ``warm`` starts all its workers at once and
runs ``warm`` in each (imports, data) before their first task. Ray is optional:
``pip install blox-env[distributed]``; ``address="auto"`` joins a running cluster,
and a task asks for one GPU when the cluster has GPUs.

Workers never outlive their driver: a pool worker arms the parent-death signal
(Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``) and runs a watchdog thread that
exits when its parent changes (every platform), so killing the driver, even
with SIGKILL, stops its workers. The signal is tied to the thread that started
the worker: drive a pool from a thread that outlives it (normally the main
one). Ray tasks still in flight are cancelled (``force=True``) when the driver
stops consuming results, raises, is interrupted or closes the executor.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar

from blox_env.errors import InvalidArgumentError, MissingDependencyError

__all__ = ["EXECUTORS", "Executor", "ProcessExecutor", "RayExecutor", "SerialExecutor", "check_executor",
           "make_executor"]

T = TypeVar("T")
R = TypeVar("R")
EXECUTORS = ("serial", "process", "ray")


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")
_limited: list[bool] = []  # this process's thread pools are already limited


def worker_init() -> None:
    """In-process (serial) setup: one torch thread; the caller's other thread pools are left alone."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def limit_threads() -> None:
    """Worker-process setup: one thread in every pool (torch intra- and inter-op, OpenMP, BLAS, and the
    ``*_NUM_THREADS`` variables for libraries loaded later). The library scan runs once per process."""
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    if not _limited:
        _limited.append(True)
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(1)  # pools already loaded (numpy's OpenBLAS starts one thread per core)
        except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
            pass
        try:
            import torch

            with contextlib.suppress(RuntimeError):  # refused once the inter-op pool has run work
                torch.set_num_interop_threads(1)
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
    worker_init()


def _ready() -> int:
    """A no-op task: submitted once per worker, it makes a pool start every worker now."""
    return os.getpid()


PR_SET_PDEATHSIG = 1
WATCHDOG_INTERVAL_S = 0.5


def _arm_parent_death_signal() -> bool:
    """Linux: ask the kernel to SIGKILL this process when its parent dies; False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(WATCHDOG_INTERVAL_S)
        if os.getppid() != parent:
            os._exit(1)


def pool_worker_init(parent: int, warm: Callable[[], Any] | None = None) -> None:
    """Pool-worker setup: die with the driver ``parent`` (death signal + watchdog), one thread per pool,
    then ``warm()`` (imports, data); a failing ``warm`` is ignored: the task that needs it reports the error."""
    _arm_parent_death_signal()
    if os.getppid() != parent:  # the driver died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="blox-parent-watchdog", daemon=True).start()
    limit_threads()
    if warm is not None:
        with contextlib.suppress(Exception):
            warm()


class Executor(Protocol):
    """Runs ``fn`` over tasks; results arrive in completion order."""

    def map_unordered(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[tuple[T, R]]: ...

    def close(self) -> None: ...

    def cancel(self) -> None:
        """Stop at once (Ctrl-C): drop queued tasks and kill running ones."""
        ...


def _bounded(tasks: Iterable[T], *, submit: Callable[[T], Any], finished: Callable[[list[Any]], Iterable[Any]],
             result: Callable[[Any], R], cancel: Callable[[Any], Any], limit: int) -> Iterator[tuple[T, R]]:
    """Keep at most ``limit`` tasks in flight; yield ``(task, result)`` as handles finish; cancel the rest on exit."""
    pending: dict[Any, T] = {}
    it = iter(tasks)
    try:
        while True:
            for task in it:
                pending[submit(task)] = task
                if len(pending) >= limit:
                    break
            if not pending:
                return
            for handle in finished(list(pending)):
                yield pending.pop(handle), result(handle)
    finally:
        for handle in pending:
            cancel(handle)


class SerialExecutor:
    """Everything in the calling process, in order (debugging, tiny jobs)."""

    workers = 1

    def map_unordered(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[tuple[T, R]]:
        worker_init()
        for task in tasks:
            yield task, fn(task)

    def close(self) -> None:
        return None

    def cancel(self) -> None:
        """Nothing runs in the background."""


class _KillableSpawn(multiprocessing.context.SpawnContext):
    """The ``spawn`` start method, remembering the processes it started (so Ctrl-C can stop them at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.processes: list[multiprocessing.context.SpawnProcess] = []

    def Process(self, *args: Any, **kwargs: Any) -> multiprocessing.context.SpawnProcess:  # noqa: N802 - the API
        process = multiprocessing.context.SpawnProcess(*args, **kwargs)
        self.processes.append(process)
        return process


class ProcessExecutor:
    """A local pool of worker processes (``spawn`` start method: safe with torch and threads).

    At most ``2 * workers`` tasks are in flight, so an interrupted run has little
    work in progress to lose. ``warm`` (picklable, e.g. a module-level function or a
    ``functools.partial`` of one) runs in every worker as it starts, and then all
    ``workers`` are started at once instead of on demand.
    """

    def __init__(self, jobs: int = 2, *, warm: Callable[[], Any] | None = None) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise InvalidArgumentError(f"jobs (worker processes) must be a positive integer, got {jobs!r}")
        workers = jobs
        if warm is not None and not callable(warm):
            raise InvalidArgumentError(f"warm must be None or a callable, got {type(warm).__name__}")
        self.workers = workers
        self._context = _KillableSpawn()
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=self._context,
                                         initializer=pool_worker_init, initargs=(os.getpid(), warm))
        if warm is not None:  # one no-op per worker: the pool spawns (and warms) them all now
            for _ in range(workers):
                self._pool.submit(_ready)

    def map_unordered(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[tuple[T, R]]:
        def finished(handles: list[Future]) -> Iterable[Future]:
            return wait(handles, return_when=FIRST_COMPLETED)[0]

        yield from _bounded(tasks, submit=lambda task: self._pool.submit(fn, task), finished=finished,
                            result=lambda fut: fut.result(), cancel=lambda fut: fut.cancel(),
                            limit=2 * self.workers)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def cancel(self) -> None:
        """Stop now: queued tasks are dropped and running ones killed (Ctrl-C; finished results were handed out)."""
        processes = list(self._context.processes)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            p.terminate()
        for p in processes:
            p.join(timeout=5)


class RayExecutor:
    """Tasks as Ray remote functions; ``address=None`` starts a local Ray, ``"auto"`` joins a cluster."""

    def __init__(self, address: str | None = None, *, jobs: int | None = None, gpus_per_task: float | None = None,
                 ray_init_kwargs: dict[str, Any] | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise MissingDependencyError("the Ray executor needs Ray: pip install 'blox-env[distributed]'") from exc
        self._ray = ray
        self._in_flight: set[Any] = set()
        if not ray.is_initialized():
            kwargs = {"address": address, "include_dashboard": False, "log_to_driver": False,
                      **({"num_cpus": jobs} if jobs and address is None else {}), **(ray_init_kwargs or {})}
            ray.init(**kwargs)
        gpus = ray.cluster_resources().get("GPU", 0)
        self.gpus_per_task = gpus_per_task if gpus_per_task is not None else (1.0 if gpus >= 1 else 0.0)
        self.workers = int(ray.cluster_resources().get("CPU", 1))

    def map_unordered(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[tuple[T, R]]:
        ray = self._ray

        def run(task: Any) -> Any:
            limit_threads()
            return fn(task)

        def submit(task: Any) -> Any:
            ref = remote.remote(task)
            self._in_flight.add(ref)
            return ref

        def result(ref: Any) -> Any:
            self._in_flight.discard(ref)
            return ray.get(ref)

        remote = ray.remote(num_cpus=1, num_gpus=self.gpus_per_task)(run)
        yield from _bounded(tasks, submit=submit, finished=lambda refs: ray.wait(refs, num_returns=1)[0],
                            result=result, cancel=self._cancel, limit=2 * self.workers)

    def _cancel(self, ref: Any) -> None:
        """Stop a task for good (``force=True`` kills its worker process), never masking the caller's error."""
        self._in_flight.discard(ref)
        with contextlib.suppress(Exception):  # already finished or the cluster is gone: nothing left to stop
            self._ray.cancel(ref, force=True)

    def close(self) -> None:
        """Cancel every task still in flight."""
        for ref in list(self._in_flight):
            self._cancel(ref)

    def cancel(self) -> None:
        """Cancel every task still in flight (as :meth:`close`)."""
        self.close()


def check_executor(kind: str, *, jobs: int = 2) -> None:
    """Refuse a bad executor choice before any work starts: the name, the worker count, Ray installed."""
    if not isinstance(kind, str) or kind not in EXECUTORS:
        raise InvalidArgumentError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    if kind != "serial" and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise InvalidArgumentError(f"jobs (worker processes) must be a positive integer, got {jobs!r}")
    if kind == "ray" and importlib.util.find_spec("ray") is None:
        raise MissingDependencyError("the Ray executor needs Ray: pip install 'blox-env[distributed]'")


def make_executor(kind: str = "serial", *, jobs: int = 2, address: str | None = None,
                  warm: Callable[[], Any] | None = None) -> Executor:
    """``serial`` | ``process`` (``jobs`` processes, started at once and warmed with ``warm`` when given)
    | ``ray`` (``address`` of a cluster or None)."""
    check_executor(kind, jobs=jobs)
    if kind == "serial":
        return SerialExecutor()
    if kind == "process":
        return ProcessExecutor(jobs, warm=warm)
    return RayExecutor(address, jobs=jobs)
