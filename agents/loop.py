"""The plain search loop: one agent against one reward backend through a :class:`~blox_env.runs.SearchRun`.

The harness (:mod:`.harness`) runs it per (agent, seed); the blockwise
strategies (:mod:`.strategies`) chain it with further phases on one shared run.
Every evaluation is charged by the run (the budget rule lives in
:mod:`blox_env.runs`); each appends a trace row (arch, metrics, objective,
cost, cumulative cost, wall time) to ``run.trace``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from blox_env.agents.parallel import run_parallel_search
from blox_env.rewards.base import RewardBackend
from blox_env.runs import SearchRun

__all__ = ["run_search"]


def run_search(agent: Any, backend: RewardBackend, *, budget: float, cost_unit: str, seed: int, metric: str,
               charge_repeats: bool = False, max_evaluations: int = 1_000_000, run: SearchRun | None = None,
               stop_at: float | None = None, fields: Mapping[str, Any] | None = None,
               key: Hashable = None, workers: int = 1, mode: str = "async") -> list[dict[str, Any]]:
    """Drive ``agent`` against ``backend`` until ``budget`` is spent; returns the trace.

    With free repeats a search can run out of new models before it runs out of
    budget; it then stops once every model it may evaluate has been evaluated at
    full fidelity (or after ``10 x`` that many evaluations in a row cost nothing).
    Strategies that chain searches pass a shared ``run`` (its budget and
    ``charge_repeats`` apply), stop a phase at cumulative cost ``stop_at``, tag
    rows with ``fields`` (e.g. ``{"select": False}``) and key the ledger with
    ``key`` (so the same model fine-tuned with another teacher is charged again).

    ``workers > 1`` or ``mode="sync"`` runs the search on simulated parallel workers
    (:func:`~blox_env.agents.parallel.run_parallel_search`) with ``budget`` as the total compute
    (``budget_kind="compute"``); for a simulated wall-clock budget call that function directly.
    """
    if type(workers) is not int or workers != 1 or mode != "async":
        return run_parallel_search(agent, backend, workers=workers, mode=mode, budget=budget, budget_kind="compute",
                                   cost_unit=cost_unit, seed=seed, metric=metric, charge_repeats=charge_repeats,
                                   max_evaluations=max_evaluations, run=run, stop_at=stop_at, fields=fields, key=key)
    if run is None:
        run = SearchRun(budget=budget, cost_unit=cost_unit, charge_repeats=charge_repeats, metric=metric, seed=seed)
    limit = budget if stop_at is None else min(stop_at, budget)
    rng = np.random.default_rng(seed)
    free_repeats = not run.ledger.charge_repeats
    feasible = agent.feasible_indices() if hasattr(agent, "feasible_indices") else backend.space.indices()
    n_feasible = len(feasible)
    seen_full: set[int] = set()
    free_streak = 0
    n = 0
    try:
        while run.spent < limit and n < max_evaluations:
            if free_repeats and (len(seen_full) >= n_feasible or free_streak >= 10 * n_feasible):
                break
            arch = agent.ask()
            outcome = run.evaluate(backend, arch, getattr(agent, "fidelity", None), rng=rng, key=key)
            if outcome is None:  # the run's budget is spent
                break
            agent.tell(arch, outcome.evaluation)
            if outcome.evaluation.fidelity == backend.max_fidelity:
                seen_full.add(arch.index)
            free_streak = free_streak + 1 if outcome.charged == 0 else 0
            n += 1
            run.record(outcome, fields=fields)
    finally:
        if hasattr(agent, "close"):
            agent.close()  # e.g. SB3Agent's learner thread
    return run.trace
