"""The benchmark builder: train every (model, seed) of a set into a store, resumably, on any executor.

Only the driver writes to the store; workers train and return results, and the
driver records each one as soon as it arrives (``test_top1`` last, so a row
torn by a crash counts as unfinished). A rerun after a crash, a killed worker
or Ctrl-C skips finished rows and redoes only the others: no lost, duplicate or
torn rows. The store and each run are set up transactionally
(:mod:`.prepare`): a crash during setup is completed by the rerun too, and
a rerun with another spec is refused. Arguments are checked before anything is
written. Per-row provenance: wall time, training time and the worker (host:pid,
as codes into the run's ``workers`` attribute); per-run: code, torch and Python
versions, platform, recipe, data.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from blox_env.build.executors import make_executor
from blox_env.datasets.store.core import BloxStore
from blox_env.datasets.store.encoding import Encoding
from blox_env.errors import InvalidArgumentError
from blox_env.space import Arch, SubSpace

__all__ = ["BuildReport", "BuildTask", "build_benchmark", "run_task"]


@dataclass(frozen=True)
class BuildTask:
    """One (model, seed) to train; everything a worker needs, picklable."""

    arch_index: int
    seed: int
    recipe: Any  # blox_env.training.recipes.Recipe
    data: str
    data_kwargs: tuple[tuple[str, Any], ...] = ()
    device: str = "cpu"


class BuildReport(NamedTuple):
    """What a build call did."""

    store: str
    run: str
    total: int
    skipped: int
    trained: int
    seconds: float


@lru_cache(maxsize=4)
def cached_data(spec: str, kwargs: tuple[tuple[str, Any], ...]) -> Any:
    from blox_env.datasets.images import load_data

    return load_data(spec, **dict(kwargs))


def run_task(task: BuildTask) -> tuple[Any, str]:
    """Worker side: train one model; returns the result and ``host:pid``."""
    from blox_env.training.train import train_model

    result = train_model(Arch.from_index(task.arch_index), cached_data(task.data, task.data_kwargs), recipe=task.recipe,
                         seed=task.seed, device=task.device)
    return result, f"{socket.gethostname()}:{os.getpid()}"


def run_provenance() -> dict[str, Any]:
    from importlib.metadata import version

    import torch

    return {"code_version": f"blox-env {version('blox-env')}", "torch_version": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads_per_worker": 1}


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    """Seeds as distinct ints, refused before any work starts."""
    try:
        items = list(seeds)
    except TypeError:
        raise InvalidArgumentError(f"seeds must be a list of distinct integers, got {seeds!r}") from None
    if not items or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in items) \
            or len(set(map(int, items))) != len(items):
        raise InvalidArgumentError(f"seeds must be a non-empty list of distinct integers, got {items}")
    return [int(s) for s in items]


def _check_device(device: str, executor: str) -> None:
    """A device name the workers can use (CUDA only where this machine has it, unless Ray places the task)."""
    import torch

    from blox_env.training.train import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda" and executor != "ray" and not torch.cuda.is_available():
        raise InvalidArgumentError(f"device {device!r} asks for CUDA, which this machine does not have: use 'cpu' "
                                   "or 'auto'")


def _indices(archs: SubSpace | Sequence[Arch]) -> np.ndarray:
    if isinstance(archs, SubSpace):
        return archs.indices()
    if isinstance(archs, (str, bytes)) or not isinstance(archs, Sequence) \
            or not all(isinstance(a, Arch) for a in archs) or not archs:
        raise InvalidArgumentError("archs must be a SubSpace or a non-empty list of Arch")
    return np.unique([a.index for a in archs]).astype(np.int64)


def build_benchmark(store: str | Path, *, archs: SubSpace | Sequence[Arch], run: str, recipe: Any, data: str,
                    data_kwargs: dict[str, Any] | None = None, seeds: Sequence[int] = (0, 1),
                    executor: str = "serial", workers: int = 2, address: str | None = None, device: str = "cpu",
                    name: str | None = None, progress: bool = True) -> BuildReport:
    """Train every (arch, seed) not yet in ``store`` (created if missing) under ``runs/<run>``.

    Every argument is checked before the store is touched; the store and the run are set up
    transactionally (:mod:`.prepare`), so a rerun after a crash at any point completes them.
    """
    from blox_env.build.executors import check_executor
    from blox_env.build.prepare import prepare_run, prepare_store
    from blox_env.training.recipes import get_recipe
    from blox_env.training.results import finished_mask, record_result
    from blox_env.training.train import model_config_for

    recipe = get_recipe(recipe)
    seeds = _check_seeds(seeds)
    check_executor(executor, workers=workers)
    _check_device(device, executor)
    indices = _indices(archs)
    kwargs = tuple(sorted((data_kwargs or {}).items()))
    data_obj = cached_data(data, kwargs)
    config = model_config_for(data_obj, recipe)
    st = prepare_store(store, indices, name=name or f"blox-{data_obj.name}", config=config)
    prepare_run(st, run, seeds=seeds, recipe=recipe, data=data_obj,
                data_spec={"data": data_obj.name, "kwargs": dict(kwargs)},
                attrs={"provenance": run_provenance()}, extra={"worker": (Encoding("raw", "int32"), False)})
    info = st.run_info(run)
    workers_seen = list(info.attrs.get("workers", []))
    rows = st.rows(indices)
    todo = []
    for seed in seeds:
        done = finished_mask(st, run, seed)[rows]
        todo += [BuildTask(int(i), seed, recipe, data, kwargs, device) for i in indices[~done]]
    total = len(indices) * len(seeds)
    start = time.perf_counter()
    trained = 0
    if todo:
        ex = make_executor(executor, workers=workers, address=address)
        bar = _bar(len(todo), total - len(todo), progress)
        try:
            for task, (result, worker) in ex.map_unordered(run_task, todo):
                record_result(st, run, result, seed=task.seed)
                if worker not in workers_seen:
                    workers_seen.append(worker)
                    st.set_run_attrs(run, workers=workers_seen)
                st.write_rows(run, "worker", [task.arch_index], [workers_seen.index(worker)], seed=task.seed)
                trained += 1
                bar.update(1)
        finally:
            bar.close()
            ex.close()
    st.close()  # records the checksums of the arrays written (store.integrity)
    return BuildReport(str(store), run, total, total - len(todo), trained, time.perf_counter() - start)


def _bar(todo: int, done: int, enabled: bool) -> Any:
    from blox_env.progress import ProgressBar

    return ProgressBar(todo + done, initial=done, description="build (models)", enabled=enabled)


def iter_pending(store: BloxStore, run: str) -> Iterator[tuple[int, int]]:
    """(model index, seed) of every unfinished row of a run."""
    from blox_env.training.results import finished_mask

    info = store.run_info(run)
    for seed in info.seeds:
        for i in store.index[~finished_mask(store, run, seed)].tolist():
            yield int(i), seed
