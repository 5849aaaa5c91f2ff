"""The benchmark builder: train every (model, seed) of a set into a store, resumably, on any executor.

Only the driver writes to the store; workers train and return results, and the
driver records each one as soon as it arrives (``test_top1`` last, so a row
torn by a crash counts as unfinished). A rerun after a crash, a killed worker
or Ctrl-C skips finished rows and redoes only the others: no lost, duplicate or
torn rows. Per-row provenance: wall time, training time and the worker
(host:pid, as codes into the run's ``workers`` attribute); per-run: code, torch
and Python versions, platform, recipe, data.
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

from blox_env.costs import macs_table, params_table
from blox_env.datasets.encoding import Encoding
from blox_env.datasets.store import BloxStore
from blox_env.errors import InvalidArgumentError
from blox_env.executors import make_executor
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
def _data(spec: str, kwargs: tuple[tuple[str, Any], ...]) -> Any:
    from blox_env.datasets.images import load_data

    return load_data(spec, **dict(kwargs))


def run_task(task: BuildTask) -> tuple[Any, str]:
    """Worker side: train one model; returns the result and ``host:pid``."""
    from blox_env.training.train import train_model

    result = train_model(Arch.from_index(task.arch_index), _data(task.data, task.data_kwargs), recipe=task.recipe,
                         seed=task.seed, device=task.device)
    return result, f"{socket.gethostname()}:{os.getpid()}"


def _run_provenance() -> dict[str, Any]:
    import torch

    from blox_env import __version__

    return {"code_version": f"blox-env {__version__}", "torch_version": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads_per_worker": 1}


def _open_or_create(location: str | Path, index: np.ndarray, *, name: str, config: Any) -> BloxStore:
    path = Path(location)
    if path.exists():
        store = BloxStore.open(path, mode="a")
        missing = np.setdiff1d(index, store.index)
        if len(missing):
            raise InvalidArgumentError(
                f"store {path} has no rows for {len(missing)} of the requested models (e.g. {int(missing[0])}): "
                "build into a new store"
            )
        return store
    store = BloxStore.create(path, index=index, name=name, provenance={"source": "blox-env builder"})
    store.write_static(params=params_table(config)[index], flops=macs_table(config)[index])
    store.set_attrs(model_config=vars(config))
    return store


def build_benchmark(store: str | Path, *, archs: SubSpace | Sequence[Arch], run: str, recipe: Any, data: str,
                    data_kwargs: dict[str, Any] | None = None, seeds: Sequence[int] = (0, 1),
                    executor: str = "serial", workers: int = 2, address: str | None = None, device: str = "cpu",
                    name: str | None = None, progress: bool = True) -> BuildReport:
    """Train every (arch, seed) not yet in ``store`` (created if missing) under ``runs/<run>``."""
    from blox_env.training.recipes import get_recipe
    from blox_env.training.results import ensure_run, finished_mask, record_result
    from blox_env.training.train import model_config_for

    recipe = get_recipe(recipe)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise InvalidArgumentError(f"seeds must be distinct integers, got {seeds}")
    kwargs = tuple(sorted((data_kwargs or {}).items()))
    data_obj = _data(data, kwargs)
    indices = archs.indices() if isinstance(archs, SubSpace) else np.unique([a.index for a in archs])
    config = model_config_for(data_obj, recipe)
    st = _open_or_create(store, indices, name=name or f"blox-{data_obj.name}", config=config)
    ensure_run(st, run, seeds=seeds, recipe=recipe, data=data_obj, attrs={"provenance": _run_provenance()})
    info = st.run_info(run)
    if "worker" not in info.metrics:
        st.allocate_metric(run, "worker", encoding=Encoding("raw", "int32"), per_epoch=False)
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
                    st._group[st.run_path(run)].attrs["workers"] = workers_seen  # noqa: SLF001
                st.write_rows(run, "worker", [task.arch_index], [workers_seen.index(worker)], seed=task.seed)
                trained += 1
                bar.update(1)
        finally:
            bar.close()
            ex.close()
    return BuildReport(str(store), run, total, total - len(todo), trained, time.perf_counter() - start)


def _bar(todo: int, done: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=todo + done, initial=done, desc="build", unit="model", disable=not enabled, smoothing=0.05)


def iter_pending(store: BloxStore, run: str) -> Iterator[tuple[int, int]]:
    """(model index, seed) of every unfinished row of a run."""
    from blox_env.training.results import finished_mask

    info = store.run_info(run)
    for seed in info.seeds:
        for i in store.index[~finished_mask(store, run, seed)].tolist():
            yield int(i), seed
