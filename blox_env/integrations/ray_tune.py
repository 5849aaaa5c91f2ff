"""BLOX searched on Ray Tune: live training (or tabular look-ups) as a Tune trainable, every trial in a trace store.

A researcher who runs Tune on a laptop or a Ray cluster searches BLOX with the usual pieces:

- :func:`search_space`: ``{"stage0": tune.choice([...]), "stage1": ..., "stage2": ...}``, the canonical block ids
  (0..44) of each stage a store covers (Blox-mini's 9 per stage), or of a :class:`~blox_env.space.SubSpace`
  (``space="full"``: all 45 per stage, 91,125 models; live mode only);
- :func:`trainable`: a Tune function trainable with its resources (``tune.with_resources``: ``cpus``, ``gpus``,
  fractional GPUs included). ``mode="live"`` builds the model of the trial's configuration and trains it with
  a recipe (``blox_env.training``; digits on CPU, CIFAR-100 from a local folder), ``mode="tabular"`` reads the
  benchmark's recorded curves (no training, no sleeping: for testing schedulers on the bundled space);
- :class:`TraceCallback`: a Tune ``Callback`` in the driver that records every reported result into a
  ``traces/`` entry of a trace store, with provenance;
- :func:`tune_search`: the three together (ASHA by default) -> :class:`TuneSearch`.

**What a trial reports**, once per epoch (``training_iteration`` = ``epoch``), under the store's names:
``val_top1`` (percent, the value *at* that epoch, as the store's curve), ``val_top1_best`` (best so far),
``val_loss``, ``val_top5``, ``train_loss``, ``train_top1``, ``train_top5``, ``train_time_s`` (cumulative
training seconds), ``params``, ``flops``, ``arch_index`` and ``epoch``; the report of the protocol's last epoch
adds ``test_top1``, ``test_top5``, ``test_loss`` (at the best epoch's weights), ``best_epoch`` and
``wall_time_s`` (tabular: those the run records). Tabular mode reports the store's values (``seed``: one of the
run's seeds), a truncated run (``epochs`` below the run's) no test values; live mode reports what it measures
(its ``train_time_s`` is this trial's own clock) and ``torch_threads``.

**Determinism and resources.** A live trial trains with ``seed`` (the model's initialisation, data order and
augmentation; the data split is the data spec's), so a configuration trains the same wherever Tune places it;
it sets ``torch.set_num_threads`` to the trial's CPUs (at least 1) and trains on the GPU Ray assigned it
(``device="auto"``: CUDA when the trial has a GPU share, else CPU). The search itself is seeded through
Tune's ``BasicVariantGenerator(random_state=seed)`` unless a ``search_alg`` is given.

**Which store the callback writes, and why.** A *trace store* opened with
``BloxStore.open_traces(path, benchmark=<the store whose space is searched>)``: the one writer is the driver
(Tune calls callbacks in the driver process only; trials never open a store for writing, so a Ray cluster
needs no shared writable file system, and the trace store's lock refuses a second writer). The benchmark's
identity is recorded with the traces, so a live search's traces are tied to the benchmark it can be compared
with (e.g. the same models' tabulated values in Blox-mini). A live store (``runs/live-...``) is not used: its
rows hold one finished training per model and seed, while a Tune search holds curves cut short by the
scheduler, and writing it from many trials would need many writers.

The trace (``traces/<name>``) has one record per reported result: ``trial`` (position in the trace attribute
``trials``), ``arch_index``, ``epoch``, ``seed``, ``cost`` (training seconds of that epoch), ``cumulative_cost``
(over the whole search, in arrival order), ``wall_s`` (driver seconds since the search started), ``trial_time_s``
(Tune's ``time_total_s``) and the reported metrics as ``metrics/<name>``. Its attributes hold the provenance:
mode, benchmark and run, recipe and data (live), seed, the search space, scheduler and search algorithm,
metric, resources per trial, Ray/Tune, torch and blox-env versions, the cluster's resources, and per trial its
Tune id, configuration, status and epochs reported. The trace is rewritten (all or nothing) each time a trial
ends, so an interrupted search keeps every finished trial; ``status`` is ``"running"`` until the experiment
ends, then ``"complete"``.

Ray is not started here: ``tune_search`` uses the Ray instance the caller started (``ray.init(...)``, or
``ray.init(address="auto")`` on a cluster) and otherwise lets Tune start a local one. Needs the ``ray-tune``
extra (``pip install "blox-env[ray-tune]"``); live mode also the ``train`` extra.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.checks import check_choice, check_seed, is_real, type_name
from blox_env.datasets.store.core import BloxStore
from blox_env.datasets.store.schema import CURVE_METRICS
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError, MissingMetricError
from blox_env.extras import require
from blox_env.integrations.configspace import STAGES, open_benchmark
from blox_env.space import FULL_SPACE, N_STAGES, Arch, SubSpace

require("ray-tune", feature="search on Ray Tune (blox_env.integrations.ray_tune)")

import ray  # noqa: E402 - after the clear error for a missing extra
from ray import tune  # noqa: E402

if TYPE_CHECKING:
    from ray.tune import ResultGrid

    from blox_env.training.recipes import Recipe

__all__ = ["METRICS", "MODES", "TraceCallback", "TrialSpec", "TuneSearch", "blox_trial", "search_space",
           "trainable", "trial_spec", "tune_search"]

#: ``live``: train each trial's model; ``tabular``: report the benchmark's recorded values.
MODES = ("live", "tabular")
#: Final values, reported with the protocol's last epoch.
FINAL = ("test_top1", "test_top5", "test_loss", "best_epoch", "wall_time_s")
#: Every metric a trial may report (the trace's ``metrics/<name>`` columns).
METRICS = (*CURVE_METRICS, "val_top1_best", "train_time_s", "params", "flops", "arch_index", "epoch", *FINAL,
           "torch_threads")
#: Direction of each metric a search may optimise (``metric=``).
DIRECTIONS = {"val_top1": "max", "val_top1_best": "max", "val_top5": "max", "train_top1": "max",
              "train_top5": "max", "val_loss": "min", "train_loss": "min"}
SCHEDULERS = ("asha", "fifo")


# ---------------------------------------------------------------------------------------------- the space
def _space_of(store: BloxStore) -> SubSpace:
    """The product sub-space a store's rows cover."""
    from blox_env.rewards.tabular import space_of_index

    return space_of_index(store.index)


def _resolve_space(space: Any, store: BloxStore) -> SubSpace:
    if space is None:
        return _space_of(store)
    if isinstance(space, str) and space == "full":
        return FULL_SPACE
    if isinstance(space, SubSpace):
        return space
    raise InvalidArgumentTypeError(f"space must be None (the benchmark's sub-space), 'full' (all 45 blocks per "
                                   f"stage) or a SubSpace, got {space!r} ({type_name(space)})")


def search_space(benchmark: Any = None, *, space: Any = None) -> dict[str, Any]:
    """Tune's ``param_space``: one ``tune.choice`` of canonical block ids per stage (``stage0..2``).

    ``benchmark`` is what ``gym.make`` takes (name, path, URL, open store or None); ``space`` None uses its
    sub-space, ``"full"`` the whole BLOX space, or a :class:`~blox_env.space.SubSpace`.
    """
    chosen = _resolve_space(space, open_benchmark(benchmark)) if not isinstance(space, SubSpace) else space
    return {name: tune.choice(list(chosen.blocks[s])) for s, name in enumerate(STAGES)}


def _arch_of(config: Mapping[str, Any]) -> Arch:
    """The model of a trial's configuration (``stage0..2``: canonical block ids)."""
    if not isinstance(config, Mapping):
        raise InvalidArgumentTypeError(f"a trial's config must be a mapping, got {type_name(config)}")
    missing = [s for s in STAGES if s not in config]
    if missing:
        raise InvalidArgumentError(f"a trial's config needs {', '.join(STAGES)} (canonical block ids 0..44), "
                                   f"lacks {', '.join(missing)}: use search_space() as param_space")
    return Arch.from_blocks(*(int(config[s]) for s in STAGES))


# ---------------------------------------------------------------------------------------------- the trial
@dataclass(frozen=True)
class TrialSpec:
    """What every trial of one search shares (small and picklable: it travels to the Ray workers).

    ``benchmark`` is the store's location (workers open it read-only), ``run`` its run (tabular: the values;
    live: the protocol read when no recipe or data is given), ``epochs`` the epochs each trial reports.
    """

    mode: str
    benchmark: str
    run: str
    seed: int
    epochs: int
    space: tuple[tuple[int, ...], ...]
    recipe: dict[str, Any] | None = None
    data: str | None = None
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    cpus: float = 1.0
    gpus: float = 0.0

    def provenance(self) -> dict[str, Any]:
        """JSON-friendly attributes for the trace."""
        out: dict[str, Any] = {"mode": self.mode, "run": self.run, "seed": self.seed, "epochs": self.epochs,
                               "space": {name: list(self.space[s]) for s, name in enumerate(STAGES)},
                               "resources_per_trial": {"cpu": self.cpus, "gpu": self.gpus}, "device": self.device}
        if self.mode == "live":
            out.update(recipe=self.recipe, data=self.data, data_kwargs=dict(self.data_kwargs))
        return out


def _check_resources(cpus: Any, gpus: Any) -> tuple[float, float]:
    for name, value in (("cpus", cpus), ("gpus", gpus)):
        if not is_real(value) or not math.isfinite(float(value)):
            raise InvalidArgumentTypeError(f"{name} must be a number, got {value!r} ({type_name(value)})")
    c, g = float(cpus), float(gpus)
    if c <= 0:
        raise InvalidArgumentError(f"cpus must be positive (Ray's CPU share of one trial, e.g. 1 or 0.5), got {cpus!r}")
    if g < 0 or (g > 1 and not g.is_integer()):
        raise InvalidArgumentError(f"gpus must be 0, a fraction in (0, 1) (trials sharing one GPU) or a whole "
                                   f"number of GPUs, got {gpus!r}")
    return c, g


def _check_epochs(epochs: Any, limit: int | None) -> int | None:
    if epochs is None:
        return None
    if isinstance(epochs, (bool, np.bool_)) or not isinstance(epochs, (int, np.integer)):
        raise InvalidArgumentTypeError(f"epochs must be a positive integer or None, got {epochs!r} "
                                       f"({type_name(epochs)})")
    top = limit if limit is not None else 10_000
    if not 1 <= int(epochs) <= top:
        what = f"the run's {limit} recorded epochs" if limit is not None else "10000"
        raise InvalidArgumentError(f"epochs must be in 1..{top} ({what}), got {epochs!r}")
    return int(epochs)


def _live_protocol(info: Any, recipe: Any, data: Any, data_kwargs: Mapping[str, Any] | None,
                   epochs: int | None) -> tuple[Recipe, str, dict[str, Any]]:
    """Recipe and data of a live search: as given, else the benchmark run's recorded protocol."""
    from blox_env.training.recipes import Recipe, get_recipe

    if recipe is None:
        recorded = info.attrs.get("recipe")
        if not isinstance(recorded, dict):
            raise InvalidArgumentError(f"run {info.name!r} records no recipe: give recipe= (one of the recipe names "
                                       "or a Recipe) for a live search")
        chosen = Recipe(**recorded)
    elif isinstance(recipe, (str, Recipe)):
        chosen = get_recipe(recipe)
    else:
        raise InvalidArgumentTypeError(f"recipe must be a recipe name, a Recipe or None, got {type_name(recipe)}")
    if epochs is not None:
        chosen = chosen.with_(epochs=epochs)
    if data is None:
        spec = info.attrs.get("data_spec")
        if not isinstance(spec, dict) or not isinstance(spec.get("data"), str):
            raise InvalidArgumentError(f"run {info.name!r} records no data spec: give data= ('digits', "
                                       "'cifar100:PATH', ...) for a live search")
        return chosen, spec["data"], {**dict(spec.get("kwargs") or {}), **dict(data_kwargs or {})}
    if not isinstance(data, str) or not data.strip():
        raise InvalidArgumentTypeError(f"data must be a data spec string ('digits', 'synthetic', 'cifar100:PATH', "
                                       f"'cifar10:PATH' or a folder), got {data!r}")
    return chosen, data, dict(data_kwargs or {})


def _worker_location(store: BloxStore) -> str:
    """How a worker opens the benchmark: the bundled Blox-mini by name (its path differs between installs), any
    other store by its location."""
    from blox_env.datasets.store.location import bundled_mini_path

    mini = bundled_mini_path()
    if mini is not None and "://" not in store.location and Path(store.location).resolve() == mini.resolve():
        return "blox-mini"
    return store.location


def trial_spec(*, benchmark: Any = None, mode: str = "tabular", run: str | None = None, space: Any = None,
               recipe: Any = None, data: str | None = None, data_kwargs: Mapping[str, Any] | None = None,
               epochs: int | None = None, seed: int = 0, device: str = "auto", cpus: float = 1,
               gpus: float = 0) -> TrialSpec:
    """Check a search's options once, in the driver, and fix them as a :class:`TrialSpec`."""
    check_choice("mode", mode, MODES)
    seed = check_seed("seed", seed)
    check_choice("device", device, ("auto", "cpu", "cuda"))
    cpus_f, gpus_f = _check_resources(cpus, gpus)
    if device == "cuda" and gpus_f == 0:
        raise InvalidArgumentError("device='cuda' needs gpus > 0: Ray gives a trial only the GPUs it asks for")
    if run is not None and not isinstance(run, str):
        raise InvalidArgumentTypeError(f"run must be a run name or None, got {run!r} ({type_name(run)})")
    store = open_benchmark(benchmark)
    info = store.run_info(run)
    chosen = _resolve_space(space, store)
    location = _worker_location(store)
    if mode == "tabular":
        if recipe is not None or data is not None or data_kwargs:
            raise InvalidArgumentError("recipe=, data= and data_kwargs= are for mode='live'; a tabular search "
                                       "reads the benchmark's recorded values")
        covered = _space_of(store)
        outside = [f"stage{s}: {sorted(set(chosen.blocks[s]) - set(covered.blocks[s]))}" for s in range(N_STAGES)
                   if not set(chosen.blocks[s]) <= set(covered.blocks[s])]
        if outside:
            raise InvalidArgumentError(f"a tabular search stays inside benchmark {store.name!r}'s space; blocks "
                                       f"outside it: {'; '.join(outside)} (use mode='live' to train them)")
        if seed not in info.seeds:
            raise InvalidArgumentError(f"seed must be one of run {info.name!r}'s seeds {list(info.seeds)} in a "
                                       f"tabular search, got {seed}")
        n = _check_epochs(epochs, int(info.epochs)) or int(info.epochs)
        return TrialSpec("tabular", location, info.name, seed, n, chosen.blocks, cpus=cpus_f, gpus=gpus_f)
    require("train", feature="live trials on Ray Tune (mode='live')")
    rec, data_spec, kwargs = _live_protocol(info, recipe, data, data_kwargs, _check_epochs(epochs, None))
    return TrialSpec("live", location, info.name, seed, rec.epochs, chosen.blocks, recipe=rec.to_dict(),
                     data=data_spec, data_kwargs=kwargs, device=device, cpus=cpus_f, gpus=gpus_f)


def _tabular_trial(arch: Arch, spec: TrialSpec) -> None:
    """Report the store's values of ``arch`` epoch by epoch (no training, no sleeping)."""
    from blox_env.datasets.store.core import open_store

    store = open_store(spec.benchmark)
    try:
        info = store.run_info(spec.run)
        curves = [m for m in CURVE_METRICS if m in info.metrics]
        static = {m: float(store.get(m, [arch])[0]) for m in ("params", "flops") if m in store.metrics()}

        def at(metric: str, epoch: int | None = None, **kw: Any) -> float:
            return float(store.get(metric, [arch], seed=spec.seed, epoch=epoch, run=info.name, **kw)[0])

        rows = []
        for e in range(1, spec.epochs + 1):
            row = {m: at(m, e, best=False) for m in curves}
            row.update(val_top1_best=at("val_top1", e, best=True), train_time_s=at("train_time_s", e), **static,
                       arch_index=float(arch.index), epoch=float(e))
            if e == int(info.epochs):
                row.update({m: at(m) for m in FINAL if m in info.metrics and m != "best_epoch"})
            rows.append(row)
    finally:
        store.close()
    bad = sorted({k for row in rows for k, v in row.items() if not math.isfinite(v)})
    if bad:
        raise MissingMetricError(f"benchmark run {spec.run!r} has no value of {', '.join(bad)} for model "
                                 f"{arch.index} (blocks {arch.blocks}, seed {spec.seed}): search a space it covers")
    for row in rows:
        tune.report(row)


def _trial_resources() -> tuple[float, float]:
    """CPUs and GPUs Tune gave this trial."""
    required = tune.get_context().get_trial_resources().required_resources
    return float(required.get("CPU", 1.0)), float(required.get("GPU", 0.0))


def _live_trial(arch: Arch, spec: TrialSpec) -> None:
    """Train ``arch`` with the spec's recipe, reporting every epoch (the last with the test values)."""
    import torch

    from blox_env.costs import static_costs
    from blox_env.datasets.images import load_data
    from blox_env.training.recipes import Recipe
    from blox_env.training.train import model_config_for, train_model

    cpus, gpus = _trial_resources()
    threads = max(1, int(cpus))
    torch.set_num_threads(threads)
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError(f"device='cuda' but this trial sees no CUDA device (Ray gave it {gpus:g} GPU(s), "
                                   f"torch {torch.__version__}): use device='auto' or a CUDA build of torch")
    use_cuda = spec.device == "cuda" or (spec.device == "auto" and gpus > 0 and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")  # Ray sets CUDA_VISIBLE_DEVICES to this trial's GPU(s)
    recipe = Recipe(**spec.recipe)  # type: ignore[arg-type]
    data = load_data(spec.data, **spec.data_kwargs)  # type: ignore[arg-type]
    cost = static_costs(arch, model_config_for(data, recipe))
    static = {"params": float(cost.params), "flops": float(cost.macs), "arch_index": float(arch.index),
              "torch_threads": float(threads)}
    best = -math.inf
    last: dict[str, float] = {}

    def on_epoch(epoch: int, values: dict[str, float]) -> None:
        nonlocal best, last
        best = max(best, values["val_top1"])
        row = {**{k: float(v) for k, v in values.items()}, "val_top1_best": best, **static, "epoch": float(epoch)}
        if epoch < recipe.epochs:
            tune.report(row)
        else:
            last = row  # the last epoch is reported with the test values, measured after the loop

    result = train_model(arch, data, recipe=recipe, seed=spec.seed, device=device, on_epoch=on_epoch)
    tune.report({**last, "test_top1": result.test_top1, "test_top5": result.test_top5,
                 "test_loss": result.test_loss, "best_epoch": float(result.best_epoch),
                 "wall_time_s": result.wall_time_s})


def blox_trial(config: dict[str, Any], spec: TrialSpec) -> None:
    """The Tune function trainable: the model of ``config`` (``stage0..2``), live or tabular per ``spec``."""
    arch = _arch_of(config)
    if arch not in SubSpace(spec.space):  # type: ignore[arg-type]
        raise InvalidArgumentError(f"model {arch.index} (blocks {arch.blocks}) is outside the search's space")
    (_live_trial if spec.mode == "live" else _tabular_trial)(arch, spec)


def trainable(spec: TrialSpec) -> Any:
    """:func:`blox_trial` bound to ``spec``, with Tune resources ``{"cpu": spec.cpus, "gpu": spec.gpus}``."""
    if not isinstance(spec, TrialSpec):
        raise InvalidArgumentTypeError(f"spec must be a TrialSpec (from trial_spec()), got {type_name(spec)}")
    return tune.with_resources(tune.with_parameters(blox_trial, spec=spec), {"cpu": spec.cpus, "gpu": spec.gpus})


# ---------------------------------------------------------------------------------------------- the recorder
def _versions() -> dict[str, str]:
    out = {"ray": ray.__version__, "tune": ray.__version__}
    for dist in ("blox-env", "torch"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    return out


class TraceCallback(tune.Callback):
    """Records every reported result of a Tune run into ``traces/<name>`` of a trace store (driver side).

    ``traces`` must be a trace store open for writing (``BloxStore.open_traces``), of ``benchmark`` when given;
    ``attrs`` is provenance added to the trace's attributes. The trace is rewritten each time a trial ends and
    when the experiment ends (see the module docstring). ``records`` holds what was written.
    """

    def __init__(self, traces: BloxStore, name: str, *, benchmark: BloxStore | None = None,
                 attrs: Mapping[str, Any] | None = None) -> None:
        if not isinstance(traces, BloxStore):
            raise InvalidArgumentTypeError(f"traces must be a trace store (BloxStore.open_traces), got "
                                           f"{type_name(traces)}")
        if benchmark is not None:
            traces.check_traces_of(benchmark)
        elif not traces.is_trace_store or traces.mode == "r":
            raise InvalidArgumentError(f"{traces.location} is not a trace store open for writing: open it with "
                                       "BloxStore.open_traces(path, benchmark=store)")
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise InvalidArgumentError(f"trace name must be non-empty, without '/' or a leading '.', got {name!r}")
        if name in traces.traces:
            raise InvalidArgumentError(f"trace store {traces.location} already has a trace {name!r}: choose another "
                                       "name")
        self.traces, self.name = traces, name
        self.attrs = dict(attrs or {})
        self.records: list[dict[str, Any]] = []
        self.trials: dict[str, dict[str, Any]] = {}
        self._last_time: dict[str, float] = {}
        self._cumulative = 0.0
        self._start = time.perf_counter()
        self.status = "running"

    def setup(self, **info: Any) -> None:
        self._start = time.perf_counter()
        if ray.is_initialized():
            self.attrs["cluster_resources"] = {k: float(v) for k, v in ray.cluster_resources().items()
                                               if k in ("CPU", "GPU", "memory")}

    def _trial(self, trial: Any) -> dict[str, Any]:
        entry = self.trials.get(trial.trial_id)
        if entry is None:
            config = {k: int(trial.config[k]) for k in STAGES if k in trial.config}
            index = _arch_of(config).index if len(config) == N_STAGES else -1
            entry = {"index": len(self.trials), "trial_id": trial.trial_id, "config": config, "arch_index": index,
                     "status": "RUNNING", "epochs_reported": 0}
            self.trials[trial.trial_id] = entry
        return entry

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        entry = self._trial(trial)
        metrics = {k: float(result[k]) for k in METRICS if k in result and is_real(result[k])}
        elapsed = metrics.get("train_time_s", math.nan)
        cost = elapsed - self._last_time.get(trial.trial_id, 0.0)
        self._last_time[trial.trial_id] = elapsed
        if math.isfinite(cost):
            self._cumulative += cost
        entry["epochs_reported"] += 1
        self.records.append({"trial": entry["index"], "arch_index": entry["arch_index"],
                             "epoch": int(result.get("training_iteration", entry["epochs_reported"])),
                             "seed": self.attrs.get("seed", math.nan), "cost": cost,
                             "cumulative_cost": self._cumulative, "wall_s": time.perf_counter() - self._start,
                             "trial_time_s": float(result.get("time_total_s", math.nan)), "metrics": metrics})

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._trial(trial)["status"] = "TERMINATED"
        self.write()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._trial(trial)["status"] = "ERROR"
        self.write()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.status = "complete"
        self.write()

    def write(self) -> None:
        """Write the trace as it stands (all or nothing; replaces this search's earlier version)."""
        trials = sorted(self.trials.values(), key=lambda t: t["index"])
        attrs = {**self.attrs, "kind": "ray-tune", "status": self.status, "trials": trials,
                 "n_trials": len(trials), "versions": _versions()}
        self.traces.write_trace(self.name, self.records, attrs=attrs, replace=self.name in self.traces.traces)


# ---------------------------------------------------------------------------------------------- the search
@dataclass(frozen=True)
class TuneSearch:
    """A finished Tune search: Tune's ``ResultGrid``, the trace written and where, the driver's wall seconds."""

    results: ResultGrid
    trace: str
    traces: str
    wall_s: float
    records: list[dict[str, Any]]


def _scheduler(scheduler: Any, *, max_t: int, grace_period: int, reduction_factor: float) -> tuple[Any, dict]:
    """Tune's scheduler for ``scheduler`` and its description for the trace."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

    if isinstance(scheduler, TrialScheduler):
        return scheduler, {"class": f"{type(scheduler).__module__}.{type(scheduler).__qualname__}"}
    if not isinstance(scheduler, str):
        raise InvalidArgumentTypeError(f"scheduler must be 'asha', 'fifo' or a ray.tune TrialScheduler, got "
                                       f"{type_name(scheduler)}")
    check_choice("scheduler", scheduler, SCHEDULERS)
    if scheduler == "fifo":
        return FIFOScheduler(), {"class": "FIFOScheduler"}
    if isinstance(grace_period, (bool, np.bool_)) or not isinstance(grace_period, (int, np.integer)) \
            or not 1 <= int(grace_period) <= max_t:
        raise InvalidArgumentError(f"grace_period must be an integer in 1..{max_t} (the epochs), got {grace_period!r}")
    if not is_real(reduction_factor) or not float(reduction_factor) > 1:
        raise InvalidArgumentError(f"reduction_factor must be a number above 1, got {reduction_factor!r}")
    asha = ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=int(grace_period),
                         reduction_factor=float(reduction_factor))
    return asha, {"class": "ASHAScheduler", "time_attr": "training_iteration", "max_t": max_t,
                  "grace_period": int(grace_period), "reduction_factor": float(reduction_factor)}


def tune_search(*, traces: str | Path | BloxStore, benchmark: Any = None, mode: str = "tabular",
                name: str | None = None, num_samples: int = 8, metric: str = "val_top1", scheduler: Any = "asha",
                grace_period: int = 1, reduction_factor: float = 2, search_alg: Any = None, space: Any = None,
                run: str | None = None, recipe: Any = None, data: str | None = None,
                data_kwargs: Mapping[str, Any] | None = None, epochs: int | None = None, seed: int = 0,
                device: str = "auto", cpus: float = 1, gpus: float = 0, max_concurrent_trials: int | None = None,
                storage_path: str | Path | None = None, reuse_actors: bool = False, verbose: int = 0) -> TuneSearch:
    """Search ``benchmark``'s space (or ``space``) on Ray Tune and record every trial in a trace store.

    ``traces``: a trace store folder (opened with ``BloxStore.open_traces(traces, benchmark=...)`` and closed at
    the end) or an open trace store of the benchmark. ``name``: the trace and Tune experiment name (default
    ``blox-<mode>-s<seed>``; refused if the trace exists). ``num_samples`` trials are sampled from
    :func:`search_space` by ``search_alg`` (default ``BasicVariantGenerator(random_state=seed)``) and
    scheduled by ``scheduler`` (``"asha"``: ``ASHAScheduler`` on ``training_iteration`` up to the epochs,
    ``grace_period``, ``reduction_factor``; ``"fifo"``; or any Tune scheduler) optimising ``metric``
    (direction from the metric). The trial options are :func:`trial_spec`'s. ``storage_path`` receives
    Tune's own experiment files (default Tune's, ``~/ray_results``).
    """
    store = open_benchmark(benchmark)
    spec = trial_spec(benchmark=store, mode=mode, run=run, space=space, recipe=recipe, data=data,
                      data_kwargs=data_kwargs, epochs=epochs, seed=seed, device=device, cpus=cpus, gpus=gpus)
    check_choice("metric", metric, tuple(DIRECTIONS))
    if isinstance(num_samples, (bool, np.bool_)) or not isinstance(num_samples, (int, np.integer)) \
            or not 1 <= int(num_samples) <= 1_000_000:
        raise InvalidArgumentError(f"num_samples must be an integer in 1..1000000, got {num_samples!r}")
    if max_concurrent_trials is not None and (isinstance(max_concurrent_trials, bool) or
                                              not isinstance(max_concurrent_trials, int) or max_concurrent_trials < 1):
        raise InvalidArgumentError(f"max_concurrent_trials must be a positive integer or None, got "
                                   f"{max_concurrent_trials!r}")
    name = name if name is not None else f"blox-{spec.mode}-s{spec.seed}"
    sched, sched_info = _scheduler(scheduler, max_t=spec.epochs, grace_period=grace_period,
                                   reduction_factor=reduction_factor)
    seeded = search_alg is None
    if search_alg is None:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        search_alg = BasicVariantGenerator(random_state=spec.seed)
    if isinstance(traces, BloxStore):
        trace_store, owned = traces, False
    elif isinstance(traces, (str, Path)):
        trace_store, owned = BloxStore.open_traces(traces, benchmark=store), True
    else:
        raise InvalidArgumentTypeError(f"traces must be a trace store folder or an open trace store, got "
                                       f"{type_name(traces)}")
    try:
        attrs = {**spec.provenance(), "benchmark": store.name, "benchmark_location": store.location,
                 "scheduler": sched_info, "metric": metric, "metric_mode": DIRECTIONS[metric],
                 "num_samples": int(num_samples),
                 "search_alg": f"{type(search_alg).__module__}.{type(search_alg).__qualname__}",
                 "search_alg_seeded": seeded}
        callback = TraceCallback(trace_store, name, benchmark=store, attrs=attrs)
        storage = str(Path(storage_path).expanduser().resolve()) if storage_path is not None else None
        tuner = tune.Tuner(
            trainable(spec), param_space=search_space(space=SubSpace(spec.space)),  # type: ignore[arg-type]
            tune_config=tune.TuneConfig(metric=metric, mode=DIRECTIONS[metric], scheduler=sched,
                                        search_alg=search_alg, num_samples=int(num_samples),
                                        max_concurrent_trials=max_concurrent_trials, reuse_actors=reuse_actors),
            run_config=tune.RunConfig(name=name, storage_path=storage, callbacks=[callback], verbose=verbose),
        )
        start = time.perf_counter()
        results = tuner.fit()
        wall = time.perf_counter() - start
    finally:
        if owned:
            trace_store.close()
    return TuneSearch(results, name, trace_store.location, wall, list(callback.records))
