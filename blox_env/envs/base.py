"""Machinery shared by the BLOX environments: backend construction, the cost ledger, rewards, masks.

A *search run* spans episodes: the :class:`CostLedger` holds its cumulative
cost, evaluation count and best-so-far, and is reset only by
``reset(options={"new_run": True})``. Budget rule (documented in the env
docstrings): an evaluation is started only while budget is left; the one that
crosses the budget completes, is charged in full and returned, and its step
reports ``truncated=True`` with ``info["budget_exhausted"] = True``; every later
step returns ``truncated=True`` without evaluating anything.

Missing costs (NaN, infinite or negative, e.g. a partially built store's
``train_time_s``) never reach the ledger: by default the evaluation is refused
with :class:`~blox_env.errors.MissingCostError` naming the model; with
``missing_cost="median" | "max"`` it is charged the median/max recorded cost of
the run's column at that fidelity (backends without a column: of the costs
recorded so far in the search run), and ``info["cost_imputed"]`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blox_env.envs.checks import check_benchmark, check_budget, check_choice, check_reward_output
from blox_env.errors import InvalidArgumentError, MissingCostError
from blox_env.rewards.tabular import (
    COST_UNITS,
    Evaluation,
    RewardBackend,
    TabularReward,
    cost_is_missing,
    impute_cost,
    missing_cost_error,
)

__all__ = ["BackendSpec", "CostLedger", "make_backend", "resolve_cost", "reward_value"]

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
    recorded: list[float] = field(default_factory=list)  # full costs charged as recorded (not imputed) this run

    def __post_init__(self) -> None:
        self.cost_unit = check_choice("cost_unit", self.cost_unit, COST_UNITS)
        self.budget = check_budget(self.budget, self.cost_unit)

    @property
    def exhausted(self) -> bool:
        return self.budget is not None and self.spent >= self.budget

    @property
    def left(self) -> float:
        return math.inf if self.budget is None else max(0.0, self.budget - self.spent)

    def charge(self, index: Any, fidelity: int, full_cost: float, *, imputed: bool = False) -> float:
        """Record one evaluation of model ``index`` (any hashable key); returns what it costs this run.

        A missing ``full_cost`` (NaN, infinite, negative) raises :class:`MissingCostError` and changes nothing:
        the run's spent budget can never become NaN (resolve a missing cost first, see :func:`resolve_cost`).
        """
        if cost_is_missing(full_cost):
            raise MissingCostError(f"model {index} has no recorded cost ({full_cost!r} {self.cost_unit}): a budget "
                                   "cannot be charged for it; refuse the evaluation or charge a stated replacement "
                                   "(the envs' missing_cost='median' | 'max')")
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
        if not imputed:
            self.recorded.append(float(full_cost))
        return cost

    def observe(self, index: int, value: float) -> None:
        if value > self.best:
            self.best, self.best_index = value, index

    def new_run(self) -> None:
        self.spent, self.evaluations, self.best, self.best_index = 0.0, 0, -math.inf, -1
        self.paid.clear()
        self.recorded.clear()


@dataclass(frozen=True)
class BackendSpec:
    """Keyword arguments the envs pass through to build a reward backend."""

    benchmark: Any = None
    reward: str = "tabular"
    metric: str = "val_top1"
    run: str | None = None
    seed_mode: int | str = "random"
    extra: Mapping[str, Any] = field(default_factory=dict)
    missing_cost: str = "error"


def make_backend(spec: BackendSpec) -> RewardBackend:
    """Build the reward backend an env asked for (``backend=`` objects are used as they are)."""
    check_choice("reward", spec.reward, REWARD_SOURCES)
    check_benchmark(spec.benchmark)
    if spec.reward == "live":
        from blox_env.rewards.live import LiveReward

        return LiveReward(store=spec.benchmark, **dict(spec.extra))
    if spec.reward == "surrogate":
        if "predictor" not in spec.extra:
            raise InvalidArgumentError("reward='surrogate' needs predictor=<a fitted predictor> (or backend=...)")
        from blox_env.rewards.surrogate import SurrogateReward

        return SurrogateReward(**dict(spec.extra), metric=spec.metric)
    from blox_env.datasets.store.core import BloxStore, open_store

    store = spec.benchmark if isinstance(spec.benchmark, BloxStore) else open_store(spec.benchmark)
    if spec.benchmark is None:
        announce_default_store(store)
    from blox_env.rewards.blockwise import make_tabular_backend

    return make_tabular_backend(store, metric=spec.metric, run=spec.run, seed_mode=spec.seed_mode,
                                missing_cost=spec.missing_cost, **spec.extra)


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
                 reward_fn: Callable[[dict[str, Any]], Any] | None, batch: int | None = None) -> Any:
    """Reward of an evaluation: ``reward_fn(metrics)`` if given, else the metric (accuracy as a fraction,
    losses negated so that higher is better). Scalars in, float out; arrays (``batch`` sub-envs) in, array out.
    A ``reward_fn`` must return finite real numbers (InvalidArgumentError otherwise)."""
    if reward_fn is not None:
        return check_reward_output(reward_fn(dict(metrics)), metrics, batch=batch)
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
            raise InvalidArgumentError(f"constraint key {metric!r} is not a static cost of this benchmark: allowed "
                                       f"{', '.join(map(repr, sorted(backend._static)))}")  # noqa: SLF001
        allowed &= np.where(rows >= 0, static[np.maximum(rows, 0)] <= limit, False)
    return allowed


def resolve_cost(ev: Evaluation, *, rule: str, backend: Any, ledger: CostLedger, model: str) -> Evaluation:
    """``ev`` with a chargeable cost: as recorded, replaced by the ``missing_cost`` rule (flagged), or refused.

    The rule's reference is the backend's recorded costs at that fidelity (``known_costs``) or, for backends
    without a cost column, the costs recorded so far in this search run. Raises :class:`MissingCostError`.
    """
    if ev.cost_imputed is not None or not cost_is_missing(ev.cost):
        return ev
    if hasattr(backend, "known_costs"):
        known = np.asarray(backend.known_costs(ev.fidelity, ev.cost_unit), dtype=np.float64)
        column = backend.describe_cost(ev.fidelity, ev.seed)
    else:
        known = np.asarray(ledger.recorded, dtype=np.float64)
        column = f"the cost {type(backend).__name__} reported ({ev.cost_unit}; reference: this run's recorded costs)"
    value = impute_cost(rule, known)
    if value is None:
        raise missing_cost_error(model, column, ev.cost, known, ev.cost_unit)
    return ev._replace(cost=value, cost_imputed=rule)


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
        "cost_imputed": ev.cost_imputed is not None,
        "cost_rule": ev.cost_imputed or "recorded",
        "cumulative_cost": ledger.spent,
        "budget_left": ledger.left,
        "evaluations": ledger.evaluations,
        "best_so_far": ledger.best,
        "best_index": ledger.best_index,
        "budget_exhausted": ledger.exhausted,
    }
