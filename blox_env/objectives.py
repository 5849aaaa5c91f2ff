"""Objectives: store columns with a direction, the inputs of multi-objective search and Pareto reports.

An :class:`Objective` names one column of a :class:`~blox_env.datasets.store.core.BloxStore` and
whether it is maximised or minimised, optionally at a fidelity (epochs) for per-epoch run
metrics. Columns are named as :meth:`BloxStore.metrics` and the constraints of
:func:`blox_env.agents.make_constraint` name them: the run metrics (``val_top1``, ``test_top1``,
``train_time_s``, losses, ...), the static columns ``params`` and ``flops`` and the latency
tables ``latency/<device>``.

:func:`parse_objectives` reads specs such as ``("val_top1", "latency:cpu-amd-epyc", "params")``:
``column[@epoch][:max|:min]``, with ``latency:<device>`` (or ``latency/<device>``, or plain
``latency`` when the store has one device). Default directions: accuracies (``top1``/``top5``)
are maximised; losses, ``params``, ``flops``, latencies and times are minimised; any other
column needs an explicit ``:max`` / ``:min``. :func:`objective_matrix` returns the store's
values as one ``[N, k]`` array in a common *minimisation* convention (maximised columns
negated), the form :mod:`blox_env.pareto` works in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.datasets.store.proxies import PROXY_PREFIX
from blox_env.datasets.store.schema import CURVE_METRICS, STATIC_METRICS, is_accuracy
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["DIRECTIONS", "Objective", "default_direction", "directions", "metrics_matrix", "objective_matrix",
           "parse_objectives", "to_minimisation"]

DIRECTIONS = ("max", "min")
#: Run metrics that are costs (minimised by default); static columns and latencies are costs too.
_COST_METRICS = ("train_time_s", "wall_time_s")


def _is_static(column: str) -> bool:
    """One value per model: the static columns, latencies and zero-cost proxies (``proxy:<name>``, read as the
    mean over the store's initialisation seeds)."""
    return column in STATIC_METRICS or column.startswith(("latency/", PROXY_PREFIX))


@dataclass(frozen=True)
class Objective:
    """One store column to optimise: ``column``, ``direction`` ("max" | "min"), optional ``epoch`` (fidelity).

    ``epoch`` (per-epoch run metrics and ``train_time_s`` only) reads the value at that many
    epochs, as :meth:`BloxStore.get` does; None means the run's full protocol.
    """

    column: str
    direction: str
    epoch: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise InvalidArgumentTypeError(f"an objective's column must be a non-empty str, got {self.column!r}")
        if self.direction not in DIRECTIONS:
            raise InvalidArgumentError(f"direction of {self.column!r} must be 'max' or 'min', got {self.direction!r}")
        if self.epoch is not None:
            if isinstance(self.epoch, bool) or not isinstance(self.epoch, (int, np.integer)) or self.epoch < 1:
                raise InvalidArgumentError(f"epoch of {self.column!r} must be an integer >= 1 or None, "
                                           f"got {self.epoch!r}")
            if self.column not in CURVE_METRICS and self.column != "train_time_s":
                raise InvalidArgumentError(f"{self.column!r} has no per-epoch values: an epoch applies to "
                                           f"{', '.join(CURVE_METRICS)} and train_time_s")

    @property
    def maximise(self) -> bool:
        return self.direction == "max"

    @property
    def static(self) -> bool:
        """Whether the column is static (``params``, ``flops``, ``latency/<device>``): no seed, no epoch."""
        return _is_static(self.column)

    @property
    def name(self) -> str:
        """``column`` or ``column@epoch``: the label of the objective in reports."""
        return self.column if self.epoch is None else f"{self.column}@{self.epoch}"

    def __str__(self) -> str:
        return f"{self.name}:{self.direction}"


def default_direction(column: str) -> str | None:
    """The usual direction of a column: "max" for accuracies, "min" for losses and costs, None if unknown."""
    if is_accuracy(column) or column.startswith(PROXY_PREFIX):  # proxies score higher-is-better
        return "max"
    if "loss" in column or _is_static(column) or column in _COST_METRICS:
        return "min"
    return None


def directions(objectives: Sequence[Objective]) -> tuple[str, ...]:
    """The direction of each objective, in order (what :mod:`blox_env.pareto` takes as ``directions``)."""
    return tuple(o.direction for o in objectives)


def _allowed(store: BloxStore, run: str | None) -> list[str]:
    return [*store.metrics(run), *(f"{PROXY_PREFIX}{n}" for n in store.proxy_names())]


def _help(allowed: Sequence[str]) -> str:
    return (f"allowed columns: {', '.join(allowed)} (latency as 'latency:<device>'; 'name@epoch' for a fidelity; "
            "add ':max' or ':min' to set the direction)")


def _parse_one(spec: Any, store: BloxStore, run: str | None, allowed: list[str]) -> Objective:
    if isinstance(spec, Objective):
        column, direction, epoch = spec.column, spec.direction, spec.epoch
    elif isinstance(spec, str):
        text = spec.strip()
        direction = None
        head, sep, tail = text.rpartition(":")
        if sep and tail in DIRECTIONS:
            text, direction = head, tail
        epoch = None
        if "@" in text:
            text, _, ep = text.rpartition("@")
            if not (ep.isascii() and ep.isdigit()) or int(ep) < 1:
                raise InvalidArgumentError(f"objective {spec!r}: the epoch after '@' must be an integer >= 1")
            epoch = int(ep)
        column = text.strip()
        if column.startswith("latency:"):
            column = "latency/" + column.split(":", 1)[1]
        elif column == "latency":
            devices = store.latency_devices
            if len(devices) != 1:
                named = ", ".join(f"latency:{d}" for d in devices) or "(none: the store has no latency table)"
                raise InvalidArgumentError(f"objective {spec!r}: name the device, one of {named}")
            column = f"latency/{devices[0]}"
        if not column:
            raise InvalidArgumentError(f"empty objective {spec!r}: {_help(allowed)}")
    else:
        raise InvalidArgumentTypeError(f"an objective must be a str such as 'val_top1' or 'params:min' or an "
                                       f"Objective, got {spec!r} ({type(spec).__name__})")
    if column not in allowed:
        raise InvalidArgumentError(f"unknown objective column {column!r} (from {spec!r}); {_help(allowed)}")
    if direction is None:
        direction = default_direction(column)
        if direction is None:
            raise InvalidArgumentError(f"{column!r} has no default direction: write '{column}:max' or '{column}:min'")
    if epoch is not None:
        if _is_static(column):
            raise InvalidArgumentError(f"objective {spec!r}: static column {column!r} has no epochs")
        epochs = store.run_info(run).epochs
        if not 1 <= epoch <= epochs:
            raise InvalidArgumentError(f"objective {spec!r}: epoch must be in 1..{epochs} for this store's run")
    return Objective(column, direction, epoch)


def parse_objectives(specs: str | Sequence[str | Objective], *, store: BloxStore,
                     run: str | None = None) -> tuple[Objective, ...]:
    """Objectives from specs such as ``("val_top1", "latency:cpu-amd-epyc", "params")`` or ``"val_top1,params"``.

    Each is checked against ``store``'s columns (of ``run``, default the store's default run); an unknown
    column, a column without a default direction or a repeated objective raises :class:`InvalidArgumentError`.
    """
    if isinstance(specs, str):
        specs = specs.split(",")
    if isinstance(specs, Objective):
        specs = [specs]
    if not isinstance(specs, Sequence) or isinstance(specs, (bytes, Mapping)) or not specs:
        raise InvalidArgumentError(f"objectives must be a non-empty sequence such as ('val_top1', 'params'), "
                                   f"got {specs!r}")
    allowed = _allowed(store, run)
    out = tuple(_parse_one(s, store, run, allowed) for s in specs)
    names = [o.name for o in out]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidArgumentError(f"objective(s) {', '.join(repeated)} given more than once: {names}")
    return out


def to_minimisation(values: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """``values`` ``[n, k]`` with maximised columns negated (the common minimisation convention); a new array."""
    sign = np.array([-1.0 if o.maximise else 1.0 for o in objectives])
    return np.asarray(values, dtype=np.float64) * sign


def _check_objectives(objectives: Any) -> tuple[Objective, ...]:
    objs = tuple(objectives) if isinstance(objectives, Sequence) and not isinstance(objectives, str) else ()
    if not objs or not all(isinstance(o, Objective) for o in objs):
        raise InvalidArgumentError(f"objectives must be a non-empty sequence of Objective (see parse_objectives), "
                                   f"got {objectives!r}")
    return objs


def objective_matrix(store: BloxStore, objectives: Sequence[Objective], *, seed: int | str = "mean",
                     archs: Any = None, run: str | None = None) -> np.ndarray:
    """``[N, k]`` values of ``objectives`` for the store's rows (or ``archs``), maximised columns negated.

    Run metrics are read at ``seed`` (a seed label of the run, or ``"mean"``: the mean over seeds) and each
    objective's epoch; static columns have one value per model. Missing values stay NaN.
    """
    objs = _check_objectives(objectives)
    if seed is None or not (seed == "mean" or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool))):
        raise InvalidArgumentError(f"seed must be a seed label of the run or 'mean' (a reproducible value per "
                                   f"model), got {seed!r}")
    cols = []
    for o in objs:
        if o.static:
            cols.append(store.get(o.column, archs))
        else:
            cols.append(store.get(o.column, archs, seed=seed, epoch=o.epoch, run=run))
    return to_minimisation(np.stack(cols, axis=1), objs)


def metrics_matrix(records: Sequence[Mapping[str, Any]], objectives: Sequence[Objective]) -> np.ndarray:
    """``[n, k]`` values of ``objectives`` in evaluation metrics (``Evaluation.metrics``, a trace row's ``metrics``).

    Maximised columns negated, as :func:`objective_matrix`. Each value is read as the record holds it (the
    record's own fidelity; an objective's ``epoch`` is not applied). A missing column raises.
    """
    objs = _check_objectives(objectives)
    out = np.empty((len(records), len(objs)))
    for i, rec in enumerate(records):
        metrics = rec.get("metrics", rec) if isinstance(rec, Mapping) else None
        if not isinstance(metrics, Mapping):
            raise InvalidArgumentTypeError(f"record {i} must be a dict of metrics or a trace row, got {rec!r}")
        for j, o in enumerate(objs):
            if o.column not in metrics:
                raise InvalidArgumentError(f"record {i} has no {o.column!r}: it has {', '.join(sorted(metrics))}")
            out[i, j] = float(metrics[o.column])
    return to_minimisation(out, objs)
