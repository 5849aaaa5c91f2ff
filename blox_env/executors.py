"""Executors: run independent tasks serially, in a local process pool, or on a Ray cluster.

One interface, :meth:`Executor.map_unordered`, yields ``(task, result)`` pairs as
they finish, so the caller (the single writer of a store) records every result
as soon as it exists. Workers run one torch thread each (two threads on a busy
2-core machine made training up to 8x slower). Ray is optional:
``pip install blox-env[distributed]``; ``address="auto"`` joins a running cluster,
and a task asks for one GPU when the cluster has GPUs.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar

from blox_env.errors import InvalidArgumentError

__all__ = ["EXECUTORS", "Executor", "ProcessExecutor", "RayExecutor", "SerialExecutor", "make_executor"]

T = TypeVar("T")
R = TypeVar("R")
EXECUTORS = ("serial", "process", "ray")


def worker_init() -> None:
    """Per-worker setup: one torch thread (set before torch does any work)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


class Executor(Protocol):
    """Runs ``fn`` over tasks; results arrive in completion order."""

    def map_unordered(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[tuple[T, R]]: ...

    def close(self) -> None: ...


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


class ProcessExecutor:
    """A local pool of worker processes (``spawn`` start method: safe with torch and threads).

    At most ``2 * workers`` tasks are in flight, so an interrupted run has little
    work in progress to lose.
    """

    def __init__(self, workers: int = 2) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise InvalidArgumentError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=worker_init)

    def map_unordered(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[tuple[T, R]]:
        def finished(handles: list[Future]) -> Iterable[Future]:
            return wait(handles, return_when=FIRST_COMPLETED)[0]

        yield from _bounded(tasks, submit=lambda task: self._pool.submit(fn, task), finished=finished,
                            result=lambda fut: fut.result(), cancel=lambda fut: fut.cancel(),
                            limit=2 * self.workers)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Tasks as Ray remote functions; ``address=None`` starts a local Ray, ``"auto"`` joins a cluster."""

    def __init__(self, address: str | None = None, *, workers: int | None = None, gpus_per_task: float | None = None,
                 ray_init_kwargs: dict[str, Any] | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise InvalidArgumentError("the Ray executor needs Ray: pip install 'blox-env[distributed]'") from exc
        self._ray = ray
        if not ray.is_initialized():
            kwargs = {"address": address, "include_dashboard": False, "log_to_driver": False,
                      **({"num_cpus": workers} if workers and address is None else {}), **(ray_init_kwargs or {})}
            ray.init(**kwargs)
        gpus = ray.cluster_resources().get("GPU", 0)
        self.gpus_per_task = gpus_per_task if gpus_per_task is not None else (1.0 if gpus >= 1 else 0.0)
        self.workers = int(ray.cluster_resources().get("CPU", 1))

    def map_unordered(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[tuple[T, R]]:
        ray = self._ray

        def run(task: Any) -> Any:
            worker_init()
            return fn(task)

        remote = ray.remote(num_cpus=1, num_gpus=self.gpus_per_task)(run)
        yield from _bounded(tasks, submit=remote.remote, finished=lambda refs: ray.wait(refs, num_returns=1)[0],
                            result=ray.get, cancel=ray.cancel, limit=2 * self.workers)

    def close(self) -> None:
        return None


def make_executor(kind: str = "serial", *, workers: int = 2, address: str | None = None) -> Executor:
    """``serial`` | ``process`` (``workers`` processes) | ``ray`` (``address`` of a cluster or None)."""
    if kind == "serial":
        return SerialExecutor()
    if kind == "process":
        return ProcessExecutor(workers)
    if kind == "ray":
        return RayExecutor(address, workers=workers)
    raise InvalidArgumentError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
