"""Models trained per hour on 2 cores: the pool and engine before the tuning against now, same run.

Run: ``python benchmarks/pool.py [--archs 24] [--seeds 2] [--rounds 2] [--seed 0] [--jobs 2] [--serial-plain]``.

Samples ``--archs`` Blox-mini models (seeded, the sample of ``benchmarks/engine.py``) and builds them (training
seeds 0..``--seeds``-1, ``digits_mini``) into a fresh store once per arm and round, the arms interleaved (order
reversed every round, so drift in the machine's load falls on all of them):

* ``serial``: ``build_benchmark(executor="serial")`` in this process (already warm: no start-up to pay), with the
  fast engine (and with the plain one, ``fast_kernels(False)``, under ``--serial-plain``);
* ``pool before``: the driver and pool as they were before the tuning, kept here as :func:`legacy_build` (workers
  spawned on demand with one torch thread, tasks in index order, each result written as it arrives with its worker
  code), with the plain engine (``BLOX_FAST_KERNELS=0`` in the workers) and with the fast one;
* ``pool now``: ``build_benchmark(executor="process")`` with the fast engine (batched writes, workers started at
  once and warmed with the code and the shipped data, one thread per pool, longest tasks first).

Each arm's time is the whole build call (store setup, pool start-up and shutdown included). Prints models/hour
per arm, the pool's speed-up over serial, the ratio to today's engine and pool, and where the pool's time goes
(the models' own training seconds from the store, the per-model slowdown when two run at once, start-up + tail).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import machine
from engine import BCONV_BLOCKS, sample

from blox_env.build.benchmark import BuildTask, build_benchmark, cached_data, estimated_cost, run_provenance, run_task
from blox_env.build.executors import worker_init
from blox_env.build.prepare import prepare_run, prepare_store
from blox_env.datasets.store.core import open_store
from blox_env.datasets.store.encoding import Encoding
from blox_env.kernels import fast_kernels
from blox_env.space import Arch
from blox_env.training.recipes import DIGITS_MINI
from blox_env.training.results import record_result
from blox_env.training.train import model_config_for

RUN = "digits"
TODAY = "pool before, plain engine (today)"


def _bounded(pool: ProcessPoolExecutor, fn: Callable[[Any], Any], tasks: Iterable[Any],
             limit: int) -> Iterator[tuple[Any, Any]]:
    """At most ``limit`` tasks in flight, results in completion order (the executor's loop, unchanged)."""
    pending: dict[Any, Any] = {}
    it = iter(tasks)
    while True:
        for task in it:
            pending[pool.submit(fn, task)] = task
            if len(pending) >= limit:
                break
        if not pending:
            return
        for fut in wait(list(pending), return_when=FIRST_COMPLETED)[0]:
            yield pending.pop(fut), fut.result()


def legacy_build(path: Path, archs: list[Arch], *, seeds: list[int], jobs: int) -> None:
    """The build loop and pool before the tuning (commit d2b7890's ``build_benchmark`` with ``ProcessExecutor``)."""
    data = cached_data("digits", ())
    indices = np.unique([a.index for a in archs]).astype(np.int64)
    st = prepare_store(path, indices, name="blox-digits", config=model_config_for(data, DIGITS_MINI))
    prepare_run(st, RUN, seeds=seeds, recipe=DIGITS_MINI, data=data, data_spec={"data": data.name, "kwargs": {}},
                attrs={"provenance": run_provenance()}, extra={"worker": (Encoding("raw", "int32"), False)})
    todo = [BuildTask(int(i), seed, DIGITS_MINI, "digits", (), "cpu") for seed in seeds for i in indices]
    workers_seen: list[str] = []
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=worker_init)
    try:
        for task, (result, worker) in _bounded(pool, run_task, todo, 2 * jobs):
            record_result(st, RUN, result, seed=task.seed)
            if worker not in workers_seen:
                workers_seen.append(worker)
                st.set_run_attrs(RUN, workers=workers_seen)
            st.write_rows(RUN, "worker", [task.arch_index], [workers_seen.index(worker)], seed=task.seed)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    st.close()


@contextlib.contextmanager
def engine(fast: bool) -> Iterator[None]:
    """The engine for this process (serial arms) and for workers spawned inside the block (pool arms)."""
    old = os.environ.get("BLOX_FAST_KERNELS")
    os.environ["BLOX_FAST_KERNELS"] = "1" if fast else "0"
    try:
        with fast_kernels(fast):
            yield
    finally:
        if old is None:
            os.environ.pop("BLOX_FAST_KERNELS", None)
        else:
            os.environ["BLOX_FAST_KERNELS"] = old


def arms(archs: list[Arch], seeds: list[int], jobs: int, serial_plain: bool) -> dict[str, Callable[[Path], None]]:
    def new(path: Path, executor: str) -> None:
        build_benchmark(path, archs=archs, run=RUN, recipe=DIGITS_MINI, data="digits", seeds=seeds, executor=executor,
                        jobs=jobs, progress=False)

    def old(path: Path) -> None:
        legacy_build(path, archs, seeds=seeds, jobs=jobs)

    out: dict[str, Callable[[Path], None]] = {}
    if serial_plain:
        out["serial, plain engine"] = lambda p: _with(False, new, p, "serial")
    out["serial, fast engine"] = lambda p: _with(True, new, p, "serial")
    out[TODAY] = lambda p: _with(False, old, p)
    out["pool before, fast engine"] = lambda p: _with(True, old, p)
    out["pool now, fast engine"] = lambda p: _with(True, new, p, "process")
    return out


def _with(fast: bool, fn: Callable[..., None], *args: Any) -> None:
    with engine(fast):
        fn(*args)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archs", type=int, default=24, help="models sampled from the Blox-mini space")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds per model (0, 1, ...)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all arms (order reversed every round)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model sample")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of the pools")
    parser.add_argument("--serial-plain", action="store_true", help="also the serial plain-engine arm")
    parser.add_argument("--no-today", action="store_true", help="skip the plain-engine pool arm (today's)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    archs = sample(args.archs, args.seed)
    seeds = list(range(args.seeds))
    todo = arms(archs, seeds, args.jobs, args.serial_plain)
    if args.no_today:
        del todo[TODAY]
    data = cached_data("digits", ())
    from blox_env.training.train import train_model

    for fast in (False, True):  # warm this process (the serial arms): oneDNN primitives, tap matrices
        with engine(fast):
            train_model(archs[0], data, recipe=DIGITS_MINI, seed=0, device="cpu")
    wall: dict[str, list[float]] = {k: [] for k in todo}
    driver_cpu: dict[str, list[float]] = {k: [] for k in todo}
    fit_s: dict[str, list[float]] = {k: [] for k in todo}
    per_model: dict[str, dict[int, list[float]]] = {k: {} for k in todo}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            names = list(todo) if r % 2 == 0 else list(reversed(todo))
            for k, name in enumerate(names):
                path = Path(tmp) / f"r{r}-{k}.zarr"
                c, t = time.process_time(), time.perf_counter()
                todo[name](path)
                wall[name].append(time.perf_counter() - t)
                driver_cpu[name].append(time.process_time() - c)
                st = open_store(path)
                ws = np.stack([st.get("wall_time_s", seed=s, run=RUN) for s in seeds])
                assert np.isfinite(ws).all(), f"{name}: unfinished rows"
                fit_s[name].append(float(ws.sum()))
                for i, w in zip(st.index.tolist(), ws.mean(axis=0).tolist(), strict=True):
                    per_model[name].setdefault(int(i), []).append(w)
                print(f"round {r} {name}: {wall[name][-1]:.1f} s", flush=True)
    total = time.perf_counter() - start
    n = len(archs) * len(seeds)
    per_hour = {k: 3600.0 * n * len(v) / sum(v) for k, v in wall.items()}
    bconv = sum(any(b in BCONV_BLOCKS for b in a.blocks) for a in archs)
    print(f"\n{time.strftime('%Y-%m-%d')}, {machine()}, torch {torch.__version__}; recipe digits_mini, {n} models of "
          f"Blox-mini (sample seed {args.seed}, {bconv} with a bottleneck block) x {len(seeds)} seeds, {args.jobs} "
          f"workers, "
          f"{args.rounds} rounds interleaved; {total:.0f} s in all\n")
    today = per_hour.get(TODAY, float("nan"))
    serial_fast = per_hour["serial, fast engine"]
    print(f"| arm | models/hour | s per build of {n} (median) | driver CPU s (median) | vs today's pool |")
    print("| --- | --- | --- | --- | --- |")
    for k in todo:
        print(f"| {k} | {per_hour[k]:.0f} | {statistics.median(wall[k]):.1f} | "
              f"{statistics.median(driver_cpu[k]):.2f} | {per_hour[k] / today:.2f}x |")
    now = "pool now, fast engine"
    before = "pool before, fast engine"
    print(f"\npool speed-up over serial (fast engine): before {per_hour[before] / serial_fast:.2f}x, "
          f"now **{per_hour[now] / serial_fast:.2f}x**")
    print(f"models/hour on {args.jobs} cores, now vs today's engine and pool: **{per_hour[now] / today:.2f}x**")
    # where each pool's time goes, against a perfect split of the serial build's training time over the workers
    fit_serial = sum(fit_s["serial, fast engine"]) / len(fit_s["serial, fast engine"])
    per_model_serial = statistics.median(wall["serial, fast engine"]) / n
    big = 2187  # the Blox-mini v2 normal runs: 729 models x 3 seeds
    print("\n| pool | workers busy training | per-model training time vs serial | start-up + tail + driver, "
          "s per build | steady-state speed-up | projected for 2187 trainings |\n| --- | --- | --- | --- | --- | --- |")
    for k in (before, now):
        w, fit = statistics.median(wall[k]), sum(fit_s[k]) / len(fit_s[k])
        overhead = w - fit / args.jobs
        steady = args.jobs * fit_serial / fit
        projected = big * per_model_serial / (big * per_model_serial / steady + overhead)
        print(f"| {k} | {fit / (args.jobs * w):.1%} | {fit / fit_serial:.3f}x | {overhead:.1f} | {steady:.2f}x | "
              f"{projected:.2f}x |")
    from scipy.stats import spearmanr

    cost = [estimated_cost(a.index) for a in archs]
    measured = [statistics.median(per_model["serial, fast engine"][a.index]) for a in archs]
    print(f"estimated cost (convolutions) vs measured fast-engine training time: Spearman "
          f"{spearmanr(cost, measured).statistic:.2f}")


if __name__ == "__main__":
    main()
