"""Machinery shared by the BLOX environments: backend construction, the cost ledger, rewards, masks.

A *search run* spans episodes: the :class:`CostLedger` holds its cumulative
cost, evaluation count and best-so-far, and is reset only by
``reset(options={"new_run": True})``. Budget rule (documented in the env
docstrings): an evaluation is started only while budget is left; the one that
crosses the budget completes, is charged in full and returned, and its step
reports ``truncated=True`` with ``info["budget_exhausted"] = True``; every later
step returns ``truncated=True`` without evaluating anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blox_env.errors import InvalidArgumentError
from blox_env.rewards import COST_UNITS, Evaluation, RewardBackend, TabularReward

__all__ = ["BackendSpec", "CostLedger", "make_backend", "reward_value"]

REWARD_SOURCES = ("tabular", "surrogate", "live")


@dataclass
class CostLedger:
    """Cumulative cost of one search run, with free repeats unless ``charge_repeats``.

    Without ``charge_repeats``, a model is charged only for epochs beyond the
    highest fidelity already paid for it (a repeat at the same fidelity is free;
    a longer run continues from the checkpoint).
    """

    budget: float | None
    cost_unit: str
    charge_repeats: bool = False
    spent: float = 0.0
    evaluations: int = 0
    best: float = -math.inf
    best_index: int = -1
    paid: dict[Any, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cost_unit not in COST_UNITS:
            raise InvalidArgumentError(f"cost_unit must be one of {', '.join(COST_UNITS)}, got {self.cost_unit!r}")
        if self.budget is not None and not (isinstance(self.budget, (int, float)) and self.budget > 0):
            raise InvalidArgumentError(f"budget must be a positive number of {self.cost_unit} or None, "
                                       f"got {self.budget!r}")

    @property
    def exhausted(self) -> bool:
        return self.budget is not None and self.spent >= self.budget

    @property
    def left(self) -> float:
        return math.inf if self.budget is None else max(0.0, self.budget - self.spent)

    def charge(self, index: Any, fidelity: int, full_cost: float) -> float:
        """Record one evaluation of model ``index`` (any hashable key); returns what it costs this run."""
        prev = self.paid.get(index, 0)
        if self.charge_repeats:
            cost = full_cost
        elif fidelity <= prev:
            cost = 0.0
        elif self.cost_unit == "evaluations":
            cost = full_cost
        else:
            cost = full_cost * (fidelity - prev) / fidelity
        self.paid[index] = max(prev, fidelity)
        self.spent += cost
        self.evaluations += 1
        return cost

    def observe(self, index: int, value: float) -> None:
        if value > self.best:
            self.best, self.best_index = value, index

    def new_run(self) -> None:
        self.spent, self.evaluations, self.best, self.best_index = 0.0, 0, -math.inf, -1
        self.paid.clear()


@dataclass(frozen=True)
class BackendSpec:
    """Keyword arguments the envs pass through to build a reward backend."""

    benchmark: Any = None
    reward: str = "tabular"
    metric: str = "val_top1"
    run: str | None = None
    seed_mode: int | str = "random"
    extra: Mapping[str, Any] = field(default_factory=dict)


def make_backend(spec: BackendSpec) -> RewardBackend:
    """Build the reward backend an env asked for (``backend=`` objects are used as they are)."""
    if spec.reward not in REWARD_SOURCES:
        raise InvalidArgumentError(f"reward must be one of {', '.join(REWARD_SOURCES)}, got {spec.reward!r}")
    if spec.reward == "live":
        from blox_env.training.live import LiveReward

        return LiveReward(store=spec.benchmark, **dict(spec.extra))
    if spec.reward == "surrogate":
        if "predictor" not in spec.extra:
            raise InvalidArgumentError("reward='surrogate' needs predictor=<a fitted predictor> (or backend=...)")
        from blox_env.predictors.surrogate import SurrogateReward

        return SurrogateReward(**dict(spec.extra), metric=spec.metric)
    from blox_env.datasets.store import BloxStore, open_store

    store = spec.benchmark if isinstance(spec.benchmark, BloxStore) else open_store(spec.benchmark)
    if spec.benchmark is None:
        announce_default_store(store)
    from blox_env.rewards_blockwise import make_tabular_backend

    return make_tabular_backend(store, metric=spec.metric, run=spec.run, seed_mode=spec.seed_mode, **spec.extra)


_ANNOUNCED: set[str] = set()


def announce_default_store(store: Any) -> None:
    """Say in one line (once per process) which benchmark a default ``gym.make`` uses."""
    import sys

    if store.location in _ANNOUNCED:
        return
    _ANNOUNCED.add(store.location)
    if store.name == "blox-mini":
        print(f"blox-env: using the bundled Blox-mini ({len(store):,} models trained on digits); "
              "import the full BLOX benchmark with `blox data import` to use it instead", file=sys.stderr)
    else:
        print(f"blox-env: using the benchmark store {store.name!r} at {store.location} ({len(store):,} models)",
              file=sys.stderr)


def reward_value(metrics: Mapping[str, Any], metric: str, *, normalize: bool,
                 reward_fn: Callable[[dict[str, Any]], Any] | None) -> Any:
    """Reward of an evaluation: ``reward_fn(metrics)`` if given, else the metric (accuracy as a fraction,
    losses negated so that higher is better). Scalars in, float out; arrays in, array out."""
    if reward_fn is not None:
        out = reward_fn(dict(metrics))
        return float(out) if np.ndim(out) == 0 else np.asarray(out, dtype=np.float64)
    value = metrics[metric]
    if "loss" in metric:
        return -value
    if normalize and ("top1" in metric or "top5" in metric):
        return value / 100.0
    return value


def constraint_grid(backend: Any, constraint: Mapping[str, float] | None) -> np.ndarray | None:
    """Boolean ``[K2, K1, K0]`` grid over local coordinates: allowed (present and within limits)."""
    if not isinstance(backend, TabularReward):
        return None
    sizes = backend.space.sizes
    grid_local = np.stack(np.meshgrid(*(np.arange(k) for k in reversed(sizes)), indexing="ij"), axis=-1)[..., ::-1]
    rows = backend.rows(backend.arch_of_local(grid_local))
    allowed = rows >= 0
    for metric, limit in (constraint or {}).items():
        static = backend._static.get(metric)  # noqa: SLF001 - the backend's materialised static columns
        if static is None:
            raise InvalidArgumentError(f"constraint metric {metric!r} unknown: allowed {sorted(backend._static)}")
        allowed &= np.where(rows >= 0, static[np.maximum(rows, 0)] <= limit, False)
    return allowed


def evaluation_info(ev: Evaluation, *, charged: float, ledger: CostLedger, local: tuple[int, ...],
                    model_hash: str) -> dict[str, Any]:
    """The ``info`` dict of a step that evaluated a model."""
    return {
        "arch_index": ev.arch.index,
        "arch_hash": model_hash,
        "blocks": ev.arch.blocks,
        "local_blocks": local,
        "metrics": ev.metrics,
        "source": ev.source,
        "fidelity": ev.fidelity,
        "seed": ev.seed,
        "cost": charged,
        "full_cost": ev.cost,
        "cost_unit": ev.cost_unit,
        "cumulative_cost": ledger.spent,
        "budget_left": ledger.left,
        "evaluations": ledger.evaluations,
        "best_so_far": ledger.best,
        "best_index": ledger.best_index,
        "budget_exhausted": ledger.exhausted,
    }
