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

from blox_env.agents.base import check_agent, check_asked, check_search_budget
from blox_env.agents.parallel import run_parallel_search
from blox_env.checks import check_seed
from blox_env.rewards.base import RewardBackend
from blox_env.runs import FreeRepeatStop, SearchRun

__all__ = ["run_search"]


def run_search(agent: Any, backend: RewardBackend, *, budget: float, cost_unit: str, seed: int, metric: str,
               charge_repeats: bool = False, max_evaluations: int = 1_000_000, run: SearchRun | None = None,
               stop_at: float | None = None, fields: Mapping[str, Any] | None = None,
               key: Hashable = None, sim_workers: int = 1, mode: str = "async") -> list[dict[str, Any]]:
    """Drive ``agent`` against ``backend`` until ``budget`` is spent; returns the trace.

    With free repeats a search can run out of new models before it runs out of
    budget; it then stops by the free-repeat stop rule
    (:class:`~blox_env.runs.budget.FreeRepeatStop`).
    Strategies that chain searches pass a shared ``run`` (its budget and
    ``charge_repeats`` apply), stop a phase at cumulative cost ``stop_at``, tag
    rows with ``fields`` (e.g. ``{"select": False}``) and key the ledger with
    ``key`` (so the same model fine-tuned with another teacher is charged again).

    ``sim_workers > 1`` or ``mode="sync"`` runs the search on simulated parallel workers
    (:func:`~blox_env.agents.parallel.run_parallel_search`) with ``budget`` as the total compute
    (``budget_kind="compute"``); for a simulated wall-clock budget call that function directly.
    """
    check_agent(agent)
    budget = check_search_budget(budget, cost_unit)
    seed = check_seed("seed", seed)
    if type(sim_workers) is not int or sim_workers != 1 or mode != "async":
        return run_parallel_search(agent, backend, sim_workers=sim_workers, mode=mode, budget=budget,
                                   budget_kind="compute", cost_unit=cost_unit, seed=seed, metric=metric,
                                   charge_repeats=charge_repeats, max_evaluations=max_evaluations, run=run,
                                   stop_at=stop_at, fields=fields, key=key)
    if run is None:
        run = SearchRun(budget=budget, cost_unit=cost_unit, charge_repeats=charge_repeats, metric=metric, seed=seed)
    limit = budget if stop_at is None else min(stop_at, budget)
    rng = np.random.default_rng(seed)
    stop = FreeRepeatStop(
        len(agent.feasible_indices()), free_repeats=not run.ledger.charge_repeats, max_fidelity=backend.max_fidelity
    )
    n = 0
    try:
        while run.spent < limit and n < max_evaluations and not stop.done:
            arch = agent.ask()
            outcome = run.evaluate(backend, check_asked(agent, arch), agent.fidelity, rng=rng, key=key)
            if outcome is None:  # the run's budget is spent
                break
            agent.tell(arch, outcome.evaluation)
            stop.observe(arch.index, outcome.evaluation.fidelity, outcome.charged)
            n += 1
            run.record(outcome, fields=fields)
    finally:
        agent.close()  # e.g. SB3Agent's learner thread
    return run.trace
