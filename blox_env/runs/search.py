"""A search run: evaluate -> charge -> record -> best-so-far -> trace row, under one budget.

Everything that evaluates models for a search goes through a :class:`SearchRun`
(Blox-v0, BloxOneShot-v0, the harness, the blockwise strategies, the simulated workers)
or its batched sibling :class:`BatchedRuns` (the vector envs: one run per sub-env).
The rule they apply is :mod:`blox_env.runs.budget`'s: an evaluation starts only while
budget is left; the one that crosses the budget completes, is charged in full and
returned; later ones are refused without evaluating anything (:meth:`SearchRun.evaluate`
returns None). Shared work is charged once per run: the run hands every backend it uses
one :class:`~blox_env.runs.budget.SharedCharges` record (``backend.new_run``). A missing
cost is resolved by the run's ``missing_cost`` rule before it reaches the ledger.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from blox_env.checks import check_bool, check_budget, check_choice
from blox_env.errors import InvalidArgumentError
from blox_env.runs.budget import (
    COST_UNITS,
    PROXY_FIDELITY,
    CostLedger,
    SharedCharges,
    charge_amount,
    check_missing_cost,
    cost_is_missing,
    resolve_missing,
)
from blox_env.space import Arch

if TYPE_CHECKING:
    from blox_env.rewards.base import Evaluation, RewardBackend
    from blox_env.rewards.tabular import TabularReward

__all__ = ["BatchOutcome", "BatchedRuns", "Outcome", "SearchRun"]


class Outcome(NamedTuple):
    """One evaluation of a run: the evaluation (its cost chargeable), what it cost the run, its score."""

    evaluation: Evaluation
    charged: float
    value: float


class SearchRun:
    """One search under one budget (see the module docstring for the rule).

    ``metric`` is the objective of trace rows and of the default score; ``seed`` seeds :attr:`rng`, the generator
    used by :meth:`evaluate` when no ``rng`` is given. ``trace`` holds the rows :meth:`record` wrote.
    """

    def __init__(self, *, budget: float | None = None, cost_unit: str = "seconds", charge_repeats: bool = False,
                 missing_cost: str = "error", metric: str = "val_top1", seed: int | None = None) -> None:
        self.ledger = CostLedger(budget, cost_unit, charge_repeats)
        self.missing_cost = check_missing_cost(missing_cost)
        self.metric = metric
        self.rng = np.random.default_rng(seed)
        self.shared = SharedCharges()
        self.trace: list[dict[str, Any]] = []
        self.start = time.perf_counter()
        self._joined: dict[int, RewardBackend] = {}

    # ------------------------------------------------------------------ state
    @property
    def budget(self) -> float | None:
        return self.ledger.budget

    @property
    def cost_unit(self) -> str:
        return self.ledger.cost_unit

    @property
    def spent(self) -> float:
        return self.ledger.spent

    @property
    def exhausted(self) -> bool:
        return self.ledger.exhausted

    def state(self) -> dict[str, Any]:
        """Cumulative state of the run (the envs put it in every ``info``: on the step hot path, so the
        ledger's ``left``/``exhausted`` are computed here in one go rather than through its properties)."""
        led = self.ledger
        budget, spent = led.budget, led.spent
        exhausted = budget is not None and spent >= budget
        left = math.inf if budget is None else max(0.0, budget - spent)
        return {"cumulative_cost": spent, "budget_left": left, "evaluations": led.evaluations,
                "best_so_far": led.best, "best_index": led.best_index, "budget_exhausted": exhausted}

    def new_run(self) -> None:
        """Start over: nothing spent, nothing paid, shared work charged again (the trace is kept)."""
        self.ledger.new_run()
        self.shared = SharedCharges()
        self._joined.clear()

    # ------------------------------------------------------------------ evaluating
    def evaluate(self, backend: RewardBackend, arch: Arch, fidelity: int | None = None, *,
                 rng: np.random.Generator | None = None, key: Hashable = None,
                 score: Callable[[Evaluation], float] | None = None) -> Outcome | None:
        """Evaluate ``arch`` through ``backend`` and charge it; None (nothing evaluated) once the budget is spent.

        ``score(evaluation)`` (default: the ``metric``, NaN if absent) is computed before anything is charged, so
        a score that raises leaves the run unchanged; finite scores feed the best-so-far. ``key`` tags the ledger
        entry (the same model fine-tuned with another teacher is another entry).
        """
        if self.ledger.exhausted:
            return None
        if id(backend) not in self._joined:
            backend.new_run(self.shared)
            self._joined[id(backend)] = backend
        ev = backend.evaluate(arch, fidelity, cost_unit=self.ledger.cost_unit, rng=rng if rng is not None else self.rng)
        ev = self.resolve(ev, backend)
        proxy = ev.fidelity == PROXY_FIDELITY
        if self.metric not in ev.metrics and not proxy:
            raise InvalidArgumentError(f"the search metric {self.metric!r} is not among the metrics "
                                       f"{type(backend).__name__} returns ({', '.join(sorted(ev.metrics))}): choose "
                                       "one of those; nothing was charged")
        value = score(ev) if score is not None else float(ev.metrics.get(self.metric, math.nan))
        charged = self.ledger.charge(self.ledger_key(ev, key), ev.fidelity, ev.cost,
                                     imputed=ev.cost_imputed is not None)
        if math.isfinite(value) and self.metric in ev.metrics:  # a proxy screen in an accuracy search is no answer
            self.ledger.observe(arch.index, value)
        return Outcome(ev, charged, value)

    @staticmethod
    def ledger_key(ev: Evaluation, key: Hashable = None) -> Hashable:
        """The ledger entry an evaluation is charged to: its model (tagged with ``key``, e.g. a teacher); a proxy
        is its own work (paid once per model and proxy), never a step towards training the model."""
        entry = ev.arch.index if key is None else (key, ev.arch.index)
        return (ev.source, entry) if ev.fidelity == PROXY_FIDELITY else entry

    def prepay(self, backend: RewardBackend, blocks: Iterable[tuple[int, int]]) -> float:
        """Charge, once per run and before any prediction, the distillation of every ``(stage, block)`` a method
        reads (its signatures) plus the backend's teacher if charged; returns what the run was charged.

        The budget rule's shared work (:meth:`~blox_env.runs.budget.SharedWork.pending_blocks`): blocks paid here
        are never charged again by the run's evaluations; missing times follow the run's ``missing_cost`` rule;
        in ``epochs`` / ``evaluations`` the work is marked paid and costs nothing (those units count fine-tuning).
        """
        if id(backend) not in self._joined:
            backend.new_run(self.shared)
            self._joined[id(backend)] = backend
        work = backend.shared_work()
        if work is None:
            return 0.0
        items = work.pending_blocks(blocks, self.shared)
        if self.cost_unit != "seconds":
            self.shared.commit(items)
            return 0.0
        seconds, _ = work.seconds(items, model="(paid up front: the blocks whose signatures the method reads)")
        cost = float(sum(seconds.values()))
        self.ledger.prepay(cost)
        self.shared.commit(items)
        return cost

    def resolve(self, ev: Evaluation, backend: RewardBackend) -> Evaluation:
        """``ev`` with a chargeable cost: as recorded, replaced by the ``missing_cost`` rule (flagged), or refused."""
        if ev.cost_imputed is not None or not cost_is_missing(ev.cost):
            return ev
        known = backend.known_costs(ev.fidelity, ev.cost_unit)
        column = backend.describe_cost(ev.fidelity, ev.seed)
        if known is None:
            known = np.asarray(self.ledger.recorded, dtype=np.float64)
            column = f"{column} ({ev.cost_unit}; reference: this run's recorded costs)"
        arch = ev.arch
        cost, _ = resolve_missing(np.array([ev.cost]), rule=self.missing_cost, known=lambda: known, unit=ev.cost_unit,
                                  describe=lambda k, n: (f"{arch.index} (hash {arch.hash}, blocks {arch.blocks})",
                                                         column))
        return ev._replace(cost=float(cost[0]), cost_imputed=self.missing_cost)

    def record(self, outcome: Outcome, *, fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Append the trace row of ``outcome`` (``select`` says whether the model may be the search's answer: not a
        proxy screen of a search whose metric the proxy is not, whose ``objective`` is NaN)."""
        ev = outcome.evaluation
        scored = self.metric in ev.metrics
        row = {"step": len(self.trace) + 1, "arch_index": ev.arch.index, "fidelity": ev.fidelity,
               "metrics": dict(ev.metrics), "objective": float(ev.metrics[self.metric]) if scored else math.nan,
               "cost": outcome.charged, "full_cost": ev.cost, "cumulative_cost": self.ledger.spent,
               "wall_time_s": time.perf_counter() - self.start, "select": scored, **(fields or {})}
        self.trace.append(row)
        return row


class BatchOutcome(NamedTuple):
    """Evaluations of many sub-env runs at once: metrics (arrays), costs charged, where imputed, scores."""

    metrics: dict[str, np.ndarray]
    charged: np.ndarray
    imputed: np.ndarray
    values: np.ndarray


class BatchedRuns:
    """``num_envs`` independent search runs over one tabular backend's rows, evaluated with array operations.

    The same rule as :class:`SearchRun` (:func:`charge_amount`, :func:`~blox_env.runs.budget.resolve_missing`);
    repeat tracking keeps one byte per (run, row) once a repeat can be free.
    """

    def __init__(self, num_envs: int, *, n_rows: int, budget: float | None = None, cost_unit: str = "seconds",
                 charge_repeats: bool = False, missing_cost: str = "error") -> None:
        self.cost_unit = check_choice("cost_unit", cost_unit, COST_UNITS)
        self.budget = check_budget(budget, self.cost_unit)
        self.charge_repeats = check_bool("charge_repeats", charge_repeats)
        self.missing_cost = check_missing_cost(missing_cost)
        self.num_envs, self.n_rows = int(num_envs), int(n_rows)
        self.spent = np.zeros(self.num_envs)
        self.evaluations = np.zeros(self.num_envs, dtype=np.int64)
        self.best = np.full(self.num_envs, -np.inf)
        self.best_index = np.full(self.num_envs, -1, dtype=np.int64)
        self.paid: np.ndarray | None = None  # [num_envs, n_rows] epochs paid, allocated on the first charge

    def new_runs(self, which: np.ndarray) -> None:
        """Start the runs selected by the boolean mask ``which`` over."""
        self.spent[which], self.evaluations[which], self.best[which], self.best_index[which] = 0.0, 0, -np.inf, -1
        if self.paid is not None:
            self.paid[which] = 0

    def exhausted(self) -> np.ndarray:
        if self.budget is None:
            return np.zeros(self.num_envs, dtype=bool)
        return self.spent >= self.budget

    def left(self) -> np.ndarray:
        if self.budget is None:
            return np.full(self.num_envs, np.inf)
        return np.maximum(0.0, self.budget - self.spent)

    def state(self) -> dict[str, Any]:
        """Cumulative state of every run (arrays; the vector envs' ``info``)."""
        return {"cumulative_cost": self.spent.copy(), "evaluations": self.evaluations.copy(),
                "best_so_far": self.best.copy(), "budget_exhausted": self.exhausted(), "budget_left": self.left()}

    def evaluate(self, backend: TabularReward, envs: np.ndarray, rows: np.ndarray, index: np.ndarray, fidelity: int, *,
                 rng: np.random.Generator | None, score: Callable[[dict[str, np.ndarray], int], Any]) -> BatchOutcome:
        """Evaluate store row ``rows[k]`` (model ``index[k]``) for run ``envs[k]`` (distinct, not exhausted).

        ``score(metrics, n)`` (arrays of ``n``) runs before anything is charged; a missing cost under
        ``missing_cost="error"`` raises :class:`MissingCostError` naming the first model and changes no run.
        """
        n = len(envs)
        pos = backend.seed_positions(n, rng, fidelity)
        metrics = backend.batch(rows, fidelity, pos)
        full = np.broadcast_to(np.asarray(backend.cost_of(metrics, fidelity, self.cost_unit), float), (n,))

        def describe(k: int, n_missing: int) -> tuple[str, str]:
            i = int(index[k])
            more = f" (and {n_missing - 1} more in this step)" if n_missing > 1 else ""
            seed = "mean" if pos is None else backend.seed_label(int(pos[k]), fidelity)
            return f"{i} (hash {Arch.from_index(i).hash}){more}", backend.describe_cost(fidelity, seed)

        full, imputed = resolve_missing(full, rule=self.missing_cost, unit=self.cost_unit, describe=describe,
                                        known=lambda: backend.known_costs(fidelity, self.cost_unit))
        values = np.broadcast_to(np.asarray(score(metrics, n), dtype=np.float64), (n,))
        cost = self.charge(envs, rows, fidelity, full)
        better = values > self.best[envs]
        self.best[envs[better]], self.best_index[envs[better]] = values[better], index[better]
        return BatchOutcome(metrics, cost, imputed, values)

    def charge(self, envs: np.ndarray, rows: np.ndarray, fidelity: int, full: np.ndarray) -> np.ndarray:
        """Charge run ``envs[k]`` for row ``rows[k]`` at ``fidelity`` (cost from scratch ``full[k]``; a vector env
        evaluates at one fidelity, so a row's proxy never meets its training in ``paid``)."""
        if self.charge_repeats:
            cost = np.array(full, dtype=float)
        else:
            if self.paid is None:
                self.paid = np.zeros((self.num_envs, self.n_rows), dtype=np.uint8 if fidelity < 256 else np.uint16)
            prev = self.paid[envs, rows].astype(np.int64)
            cost, self.paid[envs, rows] = charge_amount(full, fidelity, prev, cost_unit=self.cost_unit,
                                                        charge_repeats=False)
        np.add.at(self.spent, envs, cost)
        np.add.at(self.evaluations, envs, 1)
        return cost
