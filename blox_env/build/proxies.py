"""``blox build-proxies``: fill a store's ``proxies/`` columns (the 13 zero-cost proxies, several init seeds).

Any store (Blox-mini, a sub-space, the full 91,125), local folder only (it is written in place). The
models' shape comes from the store's ``model_config`` attribute (the full benchmark's default otherwise).
Data: digits, a CIFAR folder, or ``gaussian`` (N(0, 1) images, uniform labels; see
:func:`blox_env.proxies.proxy_batch`). One task = one model, all its pending init seeds; workers rebuild the
batch once per process from the task's small spec. The driver, the store's only writer (it holds the
writer lock), writes finished models in batches of ``every`` through
:meth:`~blox_env.datasets.store.proxies.ProxyMixin.write_proxies` (values, then times), so after kill -9 a
rerun redoes only the models whose times are missing: no row is lost or written twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.errors import InvalidArgumentError

__all__ = ["ProxyBuildReport", "build_proxies"]

BATCH_SOURCE = "blox_env.build.proxies"


@dataclass(frozen=True)
class ProxyBuildReport:
    """What one call did: rows of the store, (model, seed) pairs already done before, computed now, seconds."""

    store: str
    models: int
    pairs_before: int
    pairs_computed: int
    seconds: float


@lru_cache(maxsize=2)
def _batch(spec: tuple[Any, ...]) -> Any:
    """The proxy batch of a task's spec, built once per process."""
    from blox_env.proxies import proxy_batch

    data, batch_size, data_seed, shape, num_classes = spec
    return proxy_batch(data, batch_size=batch_size, seed=data_seed, shape=shape, num_classes=num_classes)


def _run_task(task: tuple[int, tuple[int, ...], tuple[str, ...], tuple[Any, ...], tuple[tuple[str, int], ...]]
              ) -> dict[int, dict[str, tuple[float, float]]]:
    """One model, all its pending seeds: ``{init_seed: {proxy: (value, seconds)}}``."""
    from blox_env.proxies import compute_proxies
    from blox_env.shapes import ModelConfig
    from blox_env.space import Arch

    index, seeds, names, spec, config = task
    batch = _batch(spec)
    cfg = ModelConfig(**dict(config))
    return {s: {k: (r.value, r.seconds) for k, r in
                compute_proxies(Arch.from_index(index), batch, init_seed=s, proxies=names, config=cfg).items()}
            for s in seeds}


def _versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        own = version("blox-env")
    except PackageNotFoundError:  # pragma: no cover - the checkout is installed in development mode
        own = "unknown"
    return {"blox-env": own, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "processor": platform.processor() or platform.machine()}


def build_proxies(store: str | Path, *, data: str = "digits", proxies: Any = None, init_seeds: Any = (0, 1, 2),
                  batch_size: int = 64, data_seed: int = 0, executor: str = "serial", jobs: int = 2,
                  every: int = 32, limit: int | None = None, archs: Any = None,
                  progress: bool = True) -> ProxyBuildReport:
    """Compute every missing (model, init seed) of ``store``'s proxies and write them; reruns resume.

    ``archs`` restricts the job to those models of the store (e.g. a random sample for a quick study);
    ``limit`` stops after that many models (for timing or tests). Every argument is checked before the
    store is touched.
    """
    from blox_env.build.executors import check_executor, limit_threads, make_executor
    from blox_env.datasets.store.core import BloxStore
    from blox_env.progress import ProgressBar
    from blox_env.proxies import CONVENTIONS, check_proxies
    from blox_env.shapes import ModelConfig

    names = check_proxies(proxies)
    seeds = [int(s) for s in init_seeds] if not isinstance(init_seeds, int | str) else None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise InvalidArgumentError(f"init_seeds must be a non-empty list of distinct integers >= 0, got {init_seeds!r}")
    check_executor(executor, jobs=jobs)
    for name, value, low in (("every", every, 1), ("batch_size", batch_size, 2), ("data_seed", data_seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidArgumentError(f"{name} must be an integer >= {low}, got {value!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidArgumentError(f"limit must be a positive integer or None, got {limit!r}")
    path = Path(store).expanduser()
    if isinstance(store, str) and "://" in store or path.suffix == ".zip":
        raise InvalidArgumentError(f"store must be a local folder (it is written in place), got {store!r}: "
                                   "build into a folder copy, then package it")
    st = BloxStore.open(path, mode="r")
    cfg_attrs = dict(st.attrs.get("model_config") or vars(ModelConfig()))
    only = None if archs is None else np.unique(st.rows(archs))
    st.close(checksums=False)
    cfg = ModelConfig(**cfg_attrs)
    is_gaussian = data.strip().lower() == "gaussian"
    spec = (data, batch_size, data_seed, (cfg.in_channels, cfg.image_size, cfg.image_size) if is_gaussian else None,
            cfg.num_classes if is_gaussian else None)
    batch = _batch(spec)  # checks the data (and its shape) before the store is written
    if batch.shape != (cfg.in_channels, cfg.image_size, cfg.image_size) or batch.num_classes != cfg.num_classes:
        raise InvalidArgumentError(f"data {data!r} gives {batch.shape} images and {batch.num_classes} classes; the "
                                   f"store's models take {(cfg.in_channels, cfg.image_size, cfg.image_size)} and "
                                   f"{cfg.num_classes}")
    attrs = {"data": data, "batch_size": batch_size, "data_seed": data_seed, "model_config": cfg_attrs,
             "conventions": CONVENTIONS, "versions": _versions(), "source": BATCH_SOURCE,
             "batch": {k: v for k, v in batch.provenance.items() if k != "data_provenance"},
             "time_s": "wall seconds of each proxy (its model copy and passes), one process, 1 torch thread"}

    start = time.perf_counter()
    st = BloxStore.open(path, mode="a").lock()
    try:
        st.create_proxies(list(names), init_seeds=seeds, attrs=attrs)
        done = st.proxy_done(list(names))
        before = int(done.sum())
        pending = np.flatnonzero(~done.all(axis=0))
        if only is not None:
            pending = np.intersect1d(pending, only)
        if limit is not None:
            pending = pending[:limit]
        config = tuple(sorted(cfg_attrs.items()))
        tasks = [(int(st.index[r]), tuple(s for p, s in enumerate(seeds) if not done[p, r]), names, spec, config)
                 for r in pending.tolist()]
        computed = 0
        buffer: list[tuple[int, dict[int, dict[str, tuple[float, float]]]]] = []

        def flush() -> None:
            for s in seeds:
                rows = [(i, res[s]) for i, res in buffer if s in res]
                if rows:
                    st.write_proxies([i for i, _ in rows], init_seed=s,
                                     values={n: [r[n][0] for _, r in rows] for n in names},
                                     seconds={n: [r[n][1] for _, r in rows] for n in names})
            buffer.clear()

        if executor == "serial":
            limit_threads()
        ex = make_executor(executor, jobs=jobs)
        try:
            with ProgressBar(len(tasks), description="proxies", enabled=progress) as bar:
                for task, result in ex.map_unordered(_run_task, tasks):
                    buffer.append((task[0], result))
                    computed += len(result)
                    bar.update()
                    if len(buffer) >= every:
                        flush()
        finally:
            try:
                flush()  # keep every finished model, also on Ctrl-C or an error
            finally:
                ex.close()
    finally:
        st.close()
    return ProxyBuildReport(str(path), len(done[0]), before, computed, time.perf_counter() - start)
