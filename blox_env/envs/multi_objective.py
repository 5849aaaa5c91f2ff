"""The vector reward of ``objectives=``: Blox-v0 and BloxOneShot-v0 as multi-objective (MO-Gymnasium) envs.

``gym.make("BloxOneShot-v0", objectives=("val_top1", "latency:cpu-amd-epyc", "params"))`` names store
columns as :func:`blox_env.objectives.parse_objectives` reads them (``column[@epoch][:max|:min]``). The
step reward is then a ``float32`` array of shape ``(k,)``, one component per objective in the order given,
in the MO-Gymnasium convention: every component is *higher is better*, so minimised objectives (params,
FLOPs, latency, times, losses) are negated; accuracies are fractions when ``normalize=True`` (as the scalar
reward). ``info["objectives"]`` holds the raw store values (unnegated, percent), keyed by objective name.
``env.unwrapped.reward_space`` is a ``Box(low, high, (k,), float32)`` whose finite bounds come from the
store's columns (every value the env can return, in the reward's orientation, widened to hold the zero
vector and ``violation_reward``); ``reward_dim`` is ``k``. A model outside the ``constraint`` gets, by default,
the low end of ``reward_space`` in every component: 1 % of each component's range below its worst allowed
value, so a violation is dominated by every allowed model and never reaches a Pareto front; a
``violation_reward`` given as one number per objective (or one number for all) replaces it.

Values are read from the tabular backend's columns for the evaluated model and seed: run metrics at the
env's fidelity (``epochs``) or at the objective's own ``@epoch`` (at most the env's fidelity: the run is
charged for the env's epochs, so an objective may not read later ones); static columns (``params``,
``flops``, ``latency/<device>``) from the backend's static costs, zero-cost proxies (``proxy:<name>``) from the
store's proxy table as the mean over its initialisation seeds. Only tabular backends (normal or
blockwise) have such columns; other backends are refused at construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from blox_env.checks import type_name
from blox_env.datasets.store.schema import is_accuracy
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError
from blox_env.objectives import Objective, parse_objectives
from blox_env.rewards.base import Evaluation, RewardBackend

__all__ = ["ObjectiveReward", "check_objectives", "make_objective_reward"]


def check_objectives(objectives: Any, reward_fn: Any) -> None:
    """``objectives``: None (the scalar reward), or store-column specs (str or Objective), never with ``reward_fn``.

    Checked before the backend is built; the columns are checked against its store by :func:`make_objective_reward`.
    """
    if objectives is None:
        return
    if reward_fn is not None:
        raise InvalidArgumentError("objectives= and reward_fn= both define the reward: pass one of them (objectives "
                                   "for a vector of store columns, reward_fn for a scalar from the metrics dict)")
    items = [objectives] if isinstance(objectives, (str, Objective)) else objectives
    if not isinstance(items, (list, tuple)) or not all(isinstance(o, (str, Objective)) for o in items):
        raise InvalidArgumentTypeError(f"objectives must be None, a str such as 'val_top1,params', or a list/tuple of "
                                       f"str or Objective such as ('val_top1', 'params:min'), got {objectives!r} "
                                       f"({type_name(objectives)})")
    if not items or (isinstance(objectives, str) and not objectives.strip()):
        raise InvalidArgumentError(f"objectives must name at least one store column, e.g. ('val_top1', 'params') or "
                                   f"('val_top1@4', 'latency:<device>'), or be None (the scalar reward); got "
                                   f"{objectives!r}")


class ObjectiveReward:
    """The vector reward of a tuple of objectives over one tabular backend (see the module docstring)."""

    def __init__(self, objectives: tuple[Objective, ...], backend: Any, *, fidelity: int,
                 normalize: bool, violation_reward: float | tuple[float, ...] | None) -> None:
        self.objectives = objectives
        self.backend = backend
        self._proxies: dict[str, np.ndarray] = {}
        self.names = tuple(o.name for o in objectives)
        self.epochs = tuple(o.epoch if o.epoch is not None else fidelity for o in objectives)
        scale = [0.01 if normalize and is_accuracy(o.column) else 1.0 for o in objectives]
        #: raw value * sign = reward component (negated when minimised, a fraction for a normalised accuracy)
        self.sign = np.array([s if o.maximise else -s for s, o in zip(scale, objectives)])
        given = None
        if violation_reward is not None:
            given = np.asarray(violation_reward, dtype=np.float64)
            if given.ndim == 0:
                given = np.full(len(objectives), float(given))
        if given is not None and given.shape != (len(objectives),):
            raise InvalidArgumentError(f"violation_reward must be one number or one per objective ({len(objectives)}: "
                                       f"{', '.join(o.name for o in objectives)}), got {list(violation_reward)}")
        low, high = self._bounds(given)
        #: the reward of a constraint violation: the given vector, or the low end of ``reward_space``
        self.violation = (low if given is None else given).astype(np.float32)
        self.reward_space = spaces.Box(low=low.astype(np.float32), high=high.astype(np.float32),
                                       shape=(len(objectives),), dtype=np.float32)

    def _static(self, column: str) -> np.ndarray:
        """One value per backend row: a static cost, or a zero-cost proxy (mean over init seeds; read once)."""
        if not column.startswith("proxy:"):
            return np.asarray(self.backend.static_costs()[column], dtype=np.float64)
        if column not in self._proxies:
            self._proxies[column] = self.backend.store.get(column)
        return self._proxies[column]

    @property
    def dim(self) -> int:
        return len(self.objectives)

    def _reachable(self, o: Objective, epoch: int) -> np.ndarray:
        """Every raw value of ``o`` the env can return (all models; the seeds its ``seed_mode`` can draw)."""
        b = self.backend
        if o.static:
            return self._static(o.column)
        col = b.column(o.column, epoch)
        if b.seed_mode == "mean":
            return col.mean(axis=0)
        if b.seed_mode == "random":
            return col.ravel()
        return col[b.seeds.index(b.seed_mode)]

    def _bounds(self, violation: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of every reachable reward, the zero vector and the violation reward (by default 1 % of each
        component's range, or 1 % of its magnitude if larger, below its lowest reachable value)."""
        low, high = np.empty(self.dim), np.empty(self.dim)
        for j, (o, epoch) in enumerate(zip(self.objectives, self.epochs)):
            values = self._reachable(o, epoch) * self.sign[j]
            values = values[np.isfinite(values)]
            if values.size == 0:
                raise InvalidArgumentError(f"objective {o.name!r} has no recorded value in store "
                                           f"{self.backend.store.name!r}: choose another column")
            lo, hi = float(values.min()), float(values.max())
            if violation is None:
                below = lo - 0.01 * max(hi - lo, abs(lo), 1e-6)
                # float32 must keep it strictly below the lowest reachable value
                below = min(below, float(np.nextafter(np.float32(lo), np.float32(-np.inf))))
                low[j], high[j] = min(below, 0.0), max(hi, 0.0)
            else:
                low[j] = min(lo, 0.0, float(violation[j]))
                high[j] = max(hi, 0.0, float(violation[j]))
        return low, high

    def zero(self) -> np.ndarray:
        """The reward of a step that evaluates nothing (a fresh zero vector)."""
        return np.zeros(self.dim, dtype=np.float32)

    def raw(self, ev: Evaluation) -> dict[str, float]:
        """The store values of every objective for the evaluated model and seed, keyed by objective name."""
        b = self.backend
        row = int(b.rows(np.array([ev.arch.index]))[0])
        out: dict[str, float] = {}
        for o, epoch in zip(self.objectives, self.epochs):
            if o.static:
                out[o.name] = float(self._static(o.column)[row])
                continue
            col = b.column(o.column, epoch)
            out[o.name] = float(col[:, row].mean() if ev.seed == "mean" else col[b.seeds.index(ev.seed), row])
        return out

    def reward(self, raw: dict[str, float]) -> np.ndarray:
        """The reward vector of raw values (higher is better in every component), float32."""
        return (np.array([raw[n] for n in self.names]) * self.sign).astype(np.float32)


def make_objective_reward(objectives: str | Sequence[Any], backend: RewardBackend, *, fidelity: int,
                          normalize: bool, violation_reward: float | tuple[float, ...] | None) -> ObjectiveReward:
    """Parse ``objectives`` against a tabular backend's store and run; the vector reward of the envs."""
    if not backend.tabular:
        raise InvalidArgumentError(f"objectives= reads each objective from a benchmark store's columns, which the "
                                   f"{type(backend).__name__} backend does not have: use reward='tabular' (normal or "
                                   "mode='blockwise'), or reward_fn= for a scalar reward from the evaluation's metrics")
    parsed = parse_objectives(objectives, store=backend.store, run=backend.info.name)
    late = [o.name for o in parsed if o.epoch is not None and o.epoch > fidelity]
    if late:
        raise InvalidArgumentError(f"objective(s) {', '.join(late)} read epochs beyond the env's fidelity of "
                                   f"{fidelity} epochs (what each evaluation is charged for): use an epoch in "
                                   f"1..{fidelity}, or raise epochs=")
    return ObjectiveReward(parsed, backend, fidelity=fidelity, normalize=normalize,
                           violation_reward=violation_reward)
