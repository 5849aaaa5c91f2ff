"""A BLOX store as a Syne Tune blackbox: Syne Tune's schedulers on BLOX with simulated asynchronous workers.

:func:`blackbox` turns a store's run (Blox-mini, the full BLOX tables, any sub-space) into Syne Tune's own
tabular blackbox (``syne_tune.blackbox_repository.blackbox_tabular.BlackboxTabular``):

- configuration space: one ``choice`` per stage (``stage0``, ``stage1``, ``stage2``) over the canonical block
  ids the store covers, the names and choices of :func:`~blox_env.integrations.configspace.configuration_space`;
- fidelity space: ``epochs`` (``randint(1, E)``), fidelity values ``1..E`` of the run's protocol;
- seeds: Syne Tune's seed ``i`` is the run's ``i``-th seed label (``metadata["seeds"]``);
- objectives, with Syne Tune's ``metric_`` prefix, at each epoch: ``metric_valid_error`` (1 - validation
  top-1 as a fraction, the default metric, as Syne Tune's NAS-Bench-201 blackbox), ``metric_<column>`` for
  every per-epoch column the run records (``val_top1`` in percent, ``val_loss``, ``train_top1``, ...: the
  value at that epoch, not the best so far), ``metric_runtime`` (seconds of that epoch),
  ``metric_elapsed_time`` (cumulative training seconds up to that epoch, the store's ``train_time_s`` at
  that epoch; named as the elapsed-time objective in the metadata), ``metric_params`` and
  ``metric_flops`` (static, the same at every epoch).

Test-set columns are recorded once, after the last epoch, so they are left out: a fidelity table would repeat
the final value at every epoch. Models with a missing value in any objective are left out and counted in
``metadata["models_left_out"]`` (Syne Tune's simulator cannot report NaN metrics).

:func:`export` writes the blackbox in Syne Tune's on-disk tabular format (``serialize``: configspace JSON,
``hyperparameters.parquet``, ``objectives_evaluations.npy``, ``fidelities_values.npy``, ``metadata.json``),
which Syne Tune's own loader (``blackbox_tabular.deserialize``, used by ``load_blackbox``) reads back; that
format stores objectives as float32. :func:`simulator_backend` gives Syne Tune's ``UserBlackboxBackend``
over a blackbox (the simulated clock runs on ``metric_elapsed_time``), so every Syne Tune scheduler (random
search, ASHA, Hyperband, BO, MOBSTER, ...) runs on BLOX with simulated workers; :func:`simulate` runs one
such tuning and returns every reported result.

Blockwise tables: ``blackbox(store, teacher="M1")`` is the teacher's full-length fine-tuning run of
``blockwise/`` (every model assembled from the teacher's distilled blocks and fine-tuned with KD), with the
same objectives per fine-tuning epoch. Its ``metric_elapsed_time`` counts fine-tuning only: distilling a
block is shared work, paid once per search for every model that uses the block (as blox's own blockwise
runs charge it), which a per-trial table cannot express; ``metadata["distill_time_s"]`` gives each
distilled block's recorded seconds and ``metadata["teacher_train_time_s"]`` the teacher's training, to add
to a search's clock. Needs the ``syne-tune`` extra (``pip install "blox-env[syne-tune]"``).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.checks import type_name
from blox_env.datasets.store.schema import CURVE_METRICS
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError
from blox_env.extras import require
from blox_env.integrations.configspace import FIDELITY, STAGES, open_benchmark

if TYPE_CHECKING:
    import pandas as pd
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend

    from blox_env.datasets.store.core import BloxStore

__all__ = ["DEFAULT_METRIC", "ELAPSED_TIME", "RUNTIME", "blackbox", "export", "load", "simulate",
           "simulator_backend"]

#: The default metric (minimised): 1 - validation top-1 / 100 at the epoch.
DEFAULT_METRIC = "metric_valid_error"
#: Cumulative training seconds up to the epoch: the simulated clock of Syne Tune's simulator.
ELAPSED_TIME = "metric_elapsed_time"
#: Training seconds of the epoch itself.
RUNTIME = "metric_runtime"
#: Static columns (model properties, the same at every epoch and seed).
STATIC = ("params", "flops")


def _require() -> None:
    require("syne-tune", feature="the Syne Tune blackbox (blox_env.integrations.syne_tune)")


def _modes(names: Sequence[str]) -> dict[str, str]:
    """Syne Tune's ``mode`` per objective: accuracies are maximised, everything else minimised."""
    return {n: "max" if n.endswith(("_top1", "_top5")) else "min" for n in names}


def _tables(store: BloxStore, run: str | None) -> tuple[dict[str, np.ndarray], Any]:
    """Every objective as ``[S, N, E]`` float64 (seeds, models in store order, epochs) and the run's info."""
    info = store.run_info(run)
    seeds, epochs = tuple(info.seeds), int(info.epochs)
    if not seeds or epochs < 1:
        raise InvalidArgumentError(f"run {info.name!r} of store {store.name!r} has no seeds or epochs to tabulate")
    n = len(store.index)
    curves = [m for m in CURVE_METRICS if m in info.metrics]
    if "val_top1" not in curves or "train_time_s" not in info.metrics:
        raise InvalidArgumentError(f"run {info.name!r} of store {store.name!r} lacks val_top1 or train_time_s: a "
                                   "Syne Tune blackbox needs the validation curve and the training time")

    def per_epoch(metric: str, **kw: Any) -> np.ndarray:
        out = np.empty((len(seeds), n, epochs))
        for i, s in enumerate(seeds):
            for e in range(1, epochs + 1):
                out[i, :, e - 1] = store.get(metric, seed=s, epoch=e, run=info.name, **kw)
        return out

    tables: dict[str, np.ndarray] = {}
    val = per_epoch("val_top1", best=False)
    tables[DEFAULT_METRIC] = 1.0 - val / 100.0
    for m in curves:
        tables[f"metric_{m}"] = val if m == "val_top1" else per_epoch(m, best=False)
    elapsed = per_epoch("train_time_s")
    tables[RUNTIME] = np.diff(elapsed, axis=2, prepend=0.0)
    tables[ELAPSED_TIME] = elapsed
    for m in STATIC:
        tables[f"metric_{m}"] = np.broadcast_to(store.get(m)[None, :, None], (len(seeds), n, epochs)).copy()
    return tables, info


def blackbox(benchmark: Any = None, *, run: str | None = None, teacher: Any = None) -> BlackboxTabular:
    """The store's run as Syne Tune's ``BlackboxTabular`` (see the module docstring); ``.metadata`` added.

    ``benchmark`` is what ``gym.make`` takes (a name, path, URL, open store, or None for the default
    store); ``run`` one of its runs (default: the store's default run); ``teacher`` (``"M1"``.., or the
    teacher's arch) the blockwise tables' fine-tuning of that teacher instead.
    """
    _require()
    import pandas as pd
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
    from syne_tune.blackbox_repository.conversion_scripts.scripts import (
        default_metric,
        metric_elapsed_time,
        time_attr,
    )
    from syne_tune.config_space import choice, randint

    if run is not None and not isinstance(run, str):
        raise InvalidArgumentTypeError(f"run must be a run name or None, got {run!r} ({type_name(run)})")
    store = open_benchmark(benchmark)
    blockwise: dict[str, Any] = {"mode": "normal"}
    if teacher is not None:
        if run is not None:
            raise InvalidArgumentError(f"give run= (a normal run) or teacher= (the blockwise fine-tuning with that "
                                       f"teacher), not both: got run={run!r}, teacher={teacher!r}")
        blockwise, run = _blockwise(store, teacher)
    tables, info = _tables(store, run)
    names = list(tables)
    values = np.stack([tables[k] for k in names], axis=-1)  # [S, N, E, K]
    values = np.moveaxis(values, 0, 1)  # [N, S, E, K], Syne Tune's (num_evals, num_seeds, num_fidelities, num_obj)
    ok = np.isfinite(values).reshape(len(values), -1).all(axis=1)
    if not ok.any():
        raise InvalidArgumentError(f"no model of store {store.name!r} (run {info.name!r}) has every value")
    index = np.asarray(store.index, dtype=np.int64)[ok]
    blocks = np.stack([index % 45, (index // 45) % 45, index // 2025], axis=1)
    hyperparameters = pd.DataFrame({name: blocks[:, s] for s, name in enumerate(STAGES)})
    space = sorted({int(b) for b in blocks[:, 0]}), sorted({int(b) for b in blocks[:, 1]}), \
        sorted({int(b) for b in blocks[:, 2]})
    epochs = int(info.epochs)
    bb = BlackboxTabular(
        hyperparameters=hyperparameters,
        configuration_space={name: choice(list(space[s])) for s, name in enumerate(STAGES)},
        fidelity_space={FIDELITY: randint(lower=1, upper=epochs)},
        objectives_evaluations=values[ok],
        fidelity_values=np.arange(1, epochs + 1),
        objectives_names=names,
    )
    bb.metadata = {  # type: ignore[attr-defined]
        metric_elapsed_time: ELAPSED_TIME, default_metric: DEFAULT_METRIC, time_attr: FIDELITY,
        "modes": _modes(names), "benchmark": store.name, "run": info.name, "dataset": info.attrs.get("dataset"),
        "seeds": [int(s) for s in info.seeds], "epochs": epochs, "models": int(ok.sum()),
        "models_left_out": int((~ok).sum()), "model_index": index.tolist(),
        "units": {"metric_val_top1": "percent", RUNTIME: "seconds", ELAPSED_TIME: "seconds (cumulative)",
                  DEFAULT_METRIC: "fraction", "metric_params": "count", "metric_flops": "MACs"},
        "source": "blox_env.integrations.syne_tune", **blockwise,
    }
    return bb


def _blockwise(store: BloxStore, teacher: Any) -> tuple[dict[str, Any], str]:
    """The metadata of a teacher's blockwise fine-tuning and the store run that holds it."""
    from blox_env.datasets.store.blockwise import BlockwiseTables

    tables = BlockwiseTables(store)
    name = tables.teacher_name(teacher)
    if name not in tables.full_teachers():
        raise InvalidArgumentError(f"teacher {name} is fine-tuned only for the 5 x 5 student/teacher matrix, not "
                                   f"over the whole space; teachers with full tables: "
                                   f"{', '.join(tables.full_teachers()) or 'none'}")
    seconds = tables.signatures(name)["distill_time_s"]
    distill = {f"stage{s}": {str(b): float(v) for b, v in enumerate(seconds[s]) if np.isfinite(v)}
               for s in range(len(seconds))}
    arch = tables.teachers[name]
    normal = store.run_info(tables.normal_run)
    teacher_time = float(np.nanmean([store.get("train_time_s", [arch.index], seed=s, run=normal.name)[0]
                                     for s in normal.seeds]))
    meta = {"mode": "blockwise", "teacher": name, "teacher_index": arch.index, "distill_time_s": distill,
            "teacher_train_time_s": teacher_time,
            "elapsed_time_counts": "fine-tuning only (distillation and the teacher are shared, once per search)"}
    return meta, tables.ft_run(name)


def export(path: str | os.PathLike[str], benchmark: Any = None, *, run: str | None = None, teacher: Any = None,
           task: str | None = None) -> Path:
    """Write the blackbox in Syne Tune's on-disk tabular format into folder ``path``; returns the folder.

    ``task`` names the task inside (default: the run's dataset, as Syne Tune names NAS-Bench-201's tasks by
    data set; ``<dataset>-blockwise-<teacher>`` for ``teacher=``). The folder must not exist or be empty;
    read it back with :func:`load` or Syne Tune's own ``blackbox_tabular.deserialize``.
    """
    _require()
    from syne_tune.blackbox_repository.blackbox_tabular import serialize

    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise InvalidArgumentTypeError(f"path must be a folder path, got {path!r} ({type_name(path)})")
    out = Path(path)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidArgumentError(f"path {str(out)!r} exists and is not an empty folder: export writes a new "
                                   "blackbox folder (choose a new path or remove the old one)")
    if not out.parent.is_dir():
        raise InvalidArgumentError(f"path {str(out)!r}: its parent folder does not exist")
    bb = blackbox(benchmark, run=run, teacher=teacher)
    meta = dict(bb.metadata)  # type: ignore[attr-defined]
    name = task if task is not None else str(meta.get("dataset") or meta["run"])
    if task is None and meta.get("mode") == "blockwise":
        name = f"{name}-blockwise-{meta['teacher']}"
    if not isinstance(name, str) or not name or "/" in name:
        raise InvalidArgumentError(f"task must be a non-empty name without '/', got {task!r}")
    serialize({name: bb}, str(out), metadata=meta)
    return out


def load(path: str | os.PathLike[str]) -> dict[str, BlackboxTabular]:
    """An exported blackbox folder read by Syne Tune's own loader: task name -> blackbox (``.metadata`` added)."""
    _require()
    from syne_tune.blackbox_repository.blackbox_tabular import deserialize
    from syne_tune.blackbox_repository.serialize import deserialize_metadata

    folder = Path(path)
    if not (folder / "metadata.json").is_file():
        raise InvalidArgumentError(f"path {str(folder)!r} is not an exported blackbox folder (no metadata.json)")
    tasks = deserialize(str(folder))
    meta = deserialize_metadata(str(folder))
    for bb in tasks.values():
        bb.metadata = meta  # type: ignore[attr-defined]
    return tasks


def simulator_backend(bb: Any, *, seed: int | None = None, **kwargs: Any) -> UserBlackboxBackend:
    """Syne Tune's ``UserBlackboxBackend`` over a blackbox, its clock on ``metric_elapsed_time``.

    ``seed`` fixes the blackbox seed (index into ``metadata["seeds"]``) of every trial; None lets the backend
    draw one per trial, as Syne Tune does for its own tabular blackboxes. ``kwargs`` go to the backend.
    """
    _require()
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend

    n_seeds = int(getattr(bb, "num_seeds", 1))
    if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer))
                             or not 0 <= int(seed) < n_seeds):
        raise InvalidArgumentError(f"seed must be None or a blackbox seed in 0..{n_seeds - 1} (the i-th of the "
                                   f"run's seeds), got {seed!r}")
    return UserBlackboxBackend(blackbox=bb, elapsed_time_attr=ELAPSED_TIME,
                               seed=None if seed is None else int(seed), **kwargs)


@contextlib.contextmanager
def _results_folder(folder: Path) -> Iterator[None]:
    """Syne Tune writes a tuning's files under ``$SYNETUNE_FOLDER``: point it at ``folder`` for the run."""
    from syne_tune.constants import SYNE_TUNE_ENV_FOLDER

    old = os.environ.get(SYNE_TUNE_ENV_FOLDER)
    os.environ[SYNE_TUNE_ENV_FOLDER] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(SYNE_TUNE_ENV_FOLDER, None)
        else:
            os.environ[SYNE_TUNE_ENV_FOLDER] = old


@contextlib.contextmanager
def _at_most(scheduler: Any, n: int) -> Iterator[None]:
    """The scheduler suggests at most ``n`` new trials (resumes are unaffected), then nothing.

    Syne Tune's Tuner starts trials in batches of free workers and checks its stopping criterion between
    batches, so ``max_num_trials_started`` can be overshot by up to ``n_workers - 1``; a scheduler with nothing
    left to suggest makes the Tuner wait for the running trials and stop, so exactly ``n`` trials run.
    """
    original = scheduler.suggest
    started = 0

    def suggest(*args: Any, **kwargs: Any) -> Any:
        nonlocal started
        suggestion = original(*args, **kwargs)
        if suggestion is not None and suggestion.spawn_new_trial_id:
            if started >= n:
                return None
            started += 1
        return suggestion

    scheduler.suggest = suggest
    try:
        yield
    finally:
        del scheduler.suggest  # the instance attribute: the class's method is back


def simulate(bb: Any, scheduler: Any, *, n_workers: int = 4, max_trials: int = 20, seed: int | None = None,
             output_dir: str | os.PathLike[str], tuner_name: str = "blox", verbose: bool = False,
             **backend_kwargs: Any) -> pd.DataFrame:
    """Run ``scheduler`` on the blackbox with Syne Tune's simulator: ``n_workers`` simulated workers, exactly
    ``max_trials`` trials started, each run until it completes or the scheduler stops it. Returns every
    reported result (one row per trial and epoch: the blackbox's metrics, ``epochs``, ``trial_id``, the
    config as ``config_stage0..2`` and Syne Tune's ``st_*`` columns, ``st_tuner_time`` on the simulated clock).

    ``output_dir`` receives Syne Tune's tuning files (``$SYNETUNE_FOLDER`` for the run); Syne Tune's console
    output is shown only with ``verbose``. Reproducibility is the scheduler's: Syne Tune 0.16's
    ``RandomSearch`` samples from numpy's global RNG whatever its ``random_seed`` (seed it with
    ``np.random.seed`` before the call), as does the backend's per-trial seed when ``seed`` is None.
    ``backend_kwargs`` go to :func:`simulator_backend`, e.g. ``tuner_sleep_time`` (Syne Tune's default: the
    tuner polls every 5 simulated seconds, an overhead that matters for trials of seconds, as on Blox-mini)
    or ``simulator_config`` (Syne Tune's simulated delays).
    """
    _require()
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback

    for name, value, low in (("n_workers", n_workers, 1), ("max_trials", max_trials, 1)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or int(value) < low \
                or int(value) > 100_000:
            raise InvalidArgumentError(f"{name} must be an integer in {low}..100000, got {value!r}")
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    callback = SimulatorCallback()
    with _results_folder(folder):
        tuner = Tuner(trial_backend=simulator_backend(bb, seed=seed, **backend_kwargs), scheduler=scheduler,
                      stop_criterion=StoppingCriterion(max_num_trials_started=int(max_trials) - 1),
                      n_workers=int(n_workers), sleep_time=0, callbacks=[callback], tuner_name=tuner_name,
                      print_update_interval=10**9, results_update_interval=10**9, save_tuner=False,
                      wait_trial_completion_when_stopping=True)
        with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO()), \
                _at_most(scheduler, int(max_trials)):
            tuner.run()
    return callback.dataframe()
