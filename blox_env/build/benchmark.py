"""The benchmark builder: train every (model, seed) of a set into a store, resumably, on any executor.

Only the driver writes to the store; workers train and return results, and the
driver records them in small batches as they arrive (:mod:`.writer`: ``test_top1``
last, so a row torn by a crash counts as unfinished; everything received is
written on an error or Ctrl-C). A rerun after a crash, a killed worker or Ctrl-C
skips finished rows and redoes only the others: no duplicate or torn rows, and
a crash of the driver itself loses at most the last batch. Tasks go out longest
first (an estimate from the model's layer count), so the last ones, run while a
worker may already be idle, are short; a process pool starts its workers at
once and loads the training code and the data in them before the first task.
The store and each run are set up transactionally (:mod:`.prepare`): a crash
during setup is completed by the rerun too, and a rerun with another spec is
refused. Arguments are checked before anything is
written. Per-row provenance: wall time, training time and the worker (host:pid,
as codes into the run's ``workers`` attribute); per-run: code, torch and Python
versions, platform, recipe, data.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import platform
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from blox_env.build.executors import make_executor
from blox_env.build.writer import WRITE_EVERY, WRITE_SECONDS, ResultWriter, check_batching
from blox_env.datasets.store.core import BloxStore
from blox_env.datasets.store.encoding import Encoding
from blox_env.errors import InvalidArgumentError
from blox_env.space import Arch, SubSpace

__all__ = ["BuildReport", "BuildTask", "block_layers", "build_benchmark", "cached_data", "estimated_cost", "run_task",
           "shipped_data", "warm_worker"]


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


BAR_REFRESH = 1.0  # progress-bar redraws per second in the driver (rich's default 10 costs ~1% of a core)
SHIP_BYTES = 32 * 2**20  # data sets up to this size go to the pool workers with their start-up
_DATA: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}
_DATA_SLOTS = 4


def cached_data(spec: str, kwargs: tuple[tuple[str, Any], ...]) -> Any:
    """The data set ``spec`` loaded with ``kwargs``, once per process (the last few are kept)."""
    from blox_env.datasets.images import load_data

    key = (spec, kwargs)
    if key not in _DATA:
        if len(_DATA) >= _DATA_SLOTS:
            _DATA.pop(next(iter(_DATA)))
        _DATA[key] = load_data(spec, **dict(kwargs))
    return _DATA[key]


@contextlib.contextmanager
def shipped_data(data: Any, *, enabled: bool = True) -> Iterator[str | None]:
    """A private file holding an image data set as plain arrays, for pool workers to read at start-up
    instead of loading it (digits: saves each worker scikit-learn's import, ~1 s of CPU); removed on exit.
    None when disabled, not image data, or over :data:`SHIP_BYTES` (the workers load it themselves).
    A file, not an argument of the workers' start-up: a large argument blocks the driver while each
    worker starts."""
    from blox_env.datasets.images import ImageData

    splits = ("train", "val", "test")
    if not enabled or not isinstance(data, ImageData) \
            or sum(getattr(data, n).x.nbytes + getattr(data, n).y.nbytes for n in splits) > SHIP_BYTES:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="blox-data-") as folder:  # mode 0700: only this user reads it
        path = Path(folder) / "data.pkl"
        plain = data._replace(**{n: tuple(t.numpy() for t in getattr(data, n)) for n in splits})
        path.write_bytes(pickle.dumps(plain, protocol=pickle.HIGHEST_PROTOCOL))
        yield str(path)


def warm_worker(data: str, kwargs: tuple[tuple[str, Any], ...], shipped: str | None = None) -> None:
    """Pool-worker start-up: import the training code, build a first optimizer (torch imports its compiler
    stack then, ~1.5 s once per process) and take the data set (the file written by :func:`shipped_data`,
    or loaded here), before the first task."""
    import torch

    import blox_env.training.train  # noqa: F401 - the import is the warm-up
    from blox_env.datasets.images import ImageSplit

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    if shipped is not None and (data, kwargs) not in _DATA:
        with contextlib.suppress(OSError, EOFError, pickle.UnpicklingError):  # then loaded below
            plain = pickle.loads(Path(shipped).read_bytes())  # our own private file
            _DATA[(data, kwargs)] = plain._replace(**{n: ImageSplit(*(torch.from_numpy(a) for a in getattr(plain, n)))
                                                      for n in ("train", "val", "test")})
    cached_data(data, kwargs)


@lru_cache(maxsize=1)
def block_layers() -> tuple[int, ...]:
    """Convolutions in each block (its training cost is mostly per-layer overhead at these sizes)."""
    from torch import nn

    from blox_env.model import BloxBlock
    from blox_env.space import N_BLOCKS

    return tuple(sum(isinstance(m, nn.Conv2d) for m in BloxBlock(b, 4).modules()) for b in range(N_BLOCKS))


def estimated_cost(arch_index: int) -> int:
    """A rough relative training cost of a model: its convolution count (Spearman 0.73 with the training
    time of the bundled Blox-mini rows, 0.8-0.9 with the fast engine's); used only to send long tasks first."""
    layers = block_layers()
    return sum(layers[b] for b in Arch.from_index(int(arch_index)).blocks)


def run_task(task: BuildTask) -> tuple[Any, str]:
    """Worker side: train one model; returns the result and ``host:pid``."""
    from blox_env.training.train import train_model

    result = train_model(Arch.from_index(task.arch_index), cached_data(task.data, task.data_kwargs), recipe=task.recipe,
                         seed=task.seed, device=task.device)
    return result, f"{socket.gethostname()}:{os.getpid()}"


def run_provenance() -> dict[str, Any]:
    from importlib.metadata import version

    import torch

    from blox_env.kernels import fast_kernels_enabled

    return {"code_version": f"blox-env {version('blox-env')}", "torch_version": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads_per_worker": 1, "fast_kernels": fast_kernels_enabled()}


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
                    executor: str = "serial", jobs: int = 2, address: str | None = None, device: str = "cpu",
                    name: str | None = None, progress: bool = True, write_every: int = WRITE_EVERY,
                    write_seconds: float = WRITE_SECONDS) -> BuildReport:
    """Train every (arch, seed) not yet in ``store`` (created if missing) under ``runs/<run>``.

    Every argument is checked before the store is touched; the store and the run are set up
    transactionally (:mod:`.prepare`), so a rerun after a crash at any point completes them.
    Results are written at most ``write_every`` at a time and about ``write_seconds`` apart
    (:class:`~.writer.ResultWriter`; ``write_every=1``: each as it arrives).
    """
    from blox_env.build.executors import check_executor
    from blox_env.build.prepare import prepare_run, prepare_store
    from blox_env.training.recipes import get_recipe
    from blox_env.training.results import finished_mask
    from blox_env.training.train import model_config_for

    recipe = get_recipe(recipe)
    seeds = _check_seeds(seeds)
    check_executor(executor, jobs=jobs)
    check_batching(write_every, write_seconds)
    _check_device(device, executor)
    indices = _indices(archs)
    kwargs = tuple(sorted((data_kwargs or {}).items()))
    data_obj = cached_data(data, kwargs)
    config = model_config_for(data_obj, recipe)
    st = prepare_store(store, indices, name=name or f"blox-{data_obj.name}", config=config)
    prepare_run(st, run, seeds=seeds, recipe=recipe, data=data_obj,
                data_spec={"data": data_obj.name, "kwargs": dict(kwargs)},
                attrs={"provenance": run_provenance()}, extra={"worker": (Encoding("raw", "int32"), False)})
    rows = st.rows(indices)
    todo = []
    for seed in seeds:
        done = finished_mask(st, run, seed)[rows]
        todo += [BuildTask(int(i), seed, recipe, data, kwargs, device) for i in indices[~done]]
    todo.sort(key=lambda t: -estimated_cost(t.arch_index))  # longest first (stable: seeds, indices within ties)
    total = len(indices) * len(seeds)
    start = time.perf_counter()
    trained = 0
    if todo:
        with shipped_data(data_obj, enabled=executor == "process") as shipped:
            ex = make_executor(executor, jobs=jobs, address=address,
                               warm=partial(warm_worker, data, kwargs, shipped))
            bar = _bar(len(todo), total - len(todo), progress)
            try:
                with ResultWriter(st, every=write_every, seconds=write_seconds, worker_column=lambda r: True) as w:
                    for task, (result, worker) in ex.map_unordered(run_task, todo):
                        w.add(run, result, seed=task.seed, worker=worker)
                        trained += 1
                        bar.update(1)
            finally:
                bar.close()
                ex.close()
    st.close()  # records the checksums of the arrays written (store.integrity)
    return BuildReport(str(store), run, total, total - len(todo), trained, time.perf_counter() - start)


def _bar(todo: int, done: int, enabled: bool) -> Any:
    from blox_env.progress import ProgressBar

    return ProgressBar(todo + done, initial=done, description="build (models)", enabled=enabled,
                       refresh_per_second=BAR_REFRESH)


def iter_pending(store: BloxStore, run: str) -> Iterator[tuple[int, int]]:
    """(model index, seed) of every unfinished row of a run."""
    from blox_env.training.results import finished_mask

    info = store.run_info(run)
    for seed in info.seeds:
        for i in store.index[~finished_mask(store, run, seed)].tolist():
            yield int(i), seed
