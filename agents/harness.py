"""The cost-budget harness: agents x seeds x budgets under one enforced simulated clock.

Every evaluation goes through a reward backend and a :class:`~blox_env.envs.base.CostLedger`
(the same accounting as the environments: repeats free unless ``charge_repeats``,
the evaluation that crosses the budget completes and counts). A search stops
once its budget is spent. Results are traces (one record per evaluation with
arch, metrics, cost, cumulative cost and wall time), written to a store's
``traces/`` when one is given, and summarised per agent:

- *best test accuracy at cost b*: test top-1 of the model with the best search
  metric (validation) among those evaluated within cumulative cost ``b`` — the
  usual "select on validation, report test" rule;
- *cost to reach a target*: the first cumulative cost at which such a model
  reaches ``target`` test accuracy ("not reached" otherwise), and the cost to
  evaluate the benchmark's best model;
- *regret*: the benchmark's best test accuracy (of its best-validation model)
  minus the agent's, and the evaluations used.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blox_env.envs.base import CostLedger
from blox_env.errors import InvalidArgumentError

__all__ = ["BenchSpec", "SearchTask", "run_benchmark", "run_search", "summarise_traces"]


@dataclass(frozen=True)
class BenchSpec:
    """What to run: agents, seeds, budgets (in ``cost_unit``), objective, reporting metric."""

    agents: tuple[str, ...] = ("random", "evolution", "local", "reinforce", "hyperband", "brpnas")
    seeds: int = 20
    budgets: tuple[float, ...] = (150.0, 400.0, 800.0)
    cost_unit: str = "seconds"
    metric: str = "val_top1"
    report_metric: str = "test_top1"
    target: float | None = None
    seed_mode: int | str = "random"
    charge_repeats: bool = False
    constraint: dict[str, float] | None = None
    agent_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from blox_env.agents import AGENTS

        unknown = [a for a in self.agents if a not in AGENTS]
        if unknown:
            raise InvalidArgumentError(f"unknown agent(s) {unknown}: allowed {', '.join(AGENTS)}")
        if self.seeds < 1 or not self.budgets or min(self.budgets) <= 0:
            raise InvalidArgumentError(f"need seeds >= 1 and positive budgets, got {self.seeds}, {self.budgets}")


@dataclass(frozen=True)
class SearchTask:
    """One search (agent x seed) at the largest budget; picklable for process pools."""

    store: str
    agent: str
    seed: int
    spec: BenchSpec


def run_search(agent: Any, backend: Any, *, budget: float, cost_unit: str, seed: int, metric: str,
               charge_repeats: bool = False, max_evaluations: int = 1_000_000) -> list[dict[str, Any]]:
    """Drive ``agent`` against ``backend`` until ``budget`` is spent; returns the trace.

    With free repeats a search can run out of new models before it runs out of
    budget; it then stops once every model it may evaluate has been evaluated at
    full fidelity (or after ``10 x`` that many evaluations in a row cost nothing).
    """
    ledger = CostLedger(budget, cost_unit, charge_repeats)
    rng = np.random.default_rng(seed)
    trace: list[dict[str, Any]] = []
    start = time.perf_counter()
    feasible = agent.feasible_indices() if hasattr(agent, "feasible_indices") else backend.space.indices()
    n_feasible = len(feasible)
    full_fidelity = getattr(backend, "max_fidelity", None)
    seen_full: set[int] = set()
    free_streak = 0
    try:
        while not ledger.exhausted and len(trace) < max_evaluations:
            if not charge_repeats and (len(seen_full) >= n_feasible or free_streak >= 10 * n_feasible):
                break
            arch = agent.ask()
            ev = backend.evaluate(arch, getattr(agent, "fidelity", None), cost_unit=cost_unit, rng=rng)
            charged = ledger.charge(arch.index, ev.fidelity, ev.cost)
            agent.tell(arch, ev)
            if ev.fidelity == full_fidelity:
                seen_full.add(arch.index)
            free_streak = free_streak + 1 if charged == 0 else 0
            trace.append({"step": len(trace) + 1, "arch_index": arch.index, "fidelity": ev.fidelity,
                          "metrics": dict(ev.metrics), "objective": float(ev.metrics[metric]), "cost": charged,
                          "full_cost": ev.cost, "cumulative_cost": ledger.spent,
                          "wall_time_s": time.perf_counter() - start})
    finally:
        if hasattr(agent, "close"):
            agent.close()  # e.g. SB3Agent's learner thread
    return trace


def _task(task: SearchTask) -> list[dict[str, Any]]:
    """Worker side: open the store read-only, build backend + agent, search at the largest budget."""
    from blox_env.agents import make_agent, make_constraint
    from blox_env.datasets.store import open_store
    from blox_env.rewards import TabularReward

    spec = task.spec
    backend = TabularReward(open_store(task.store), metric=spec.metric, seed_mode=spec.seed_mode)
    constraint = make_constraint(backend, spec.constraint) if spec.constraint else None
    kwargs = dict(spec.agent_kwargs.get(task.agent, {}))
    if task.agent in ("sh", "hyperband"):
        kwargs.setdefault("max_fidelity", backend.max_fidelity)
        kwargs.setdefault("min_fidelity", max(1, backend.max_fidelity // 9))
    agent = make_agent(task.agent, backend.space, seed=task.seed, metric=spec.metric, constraint=constraint, **kwargs)
    return run_search(agent, backend, budget=max(spec.budgets), cost_unit=spec.cost_unit, seed=task.seed,
                      metric=spec.metric, charge_repeats=spec.charge_repeats)


def run_benchmark(store: str, *, spec: BenchSpec, executor: str = "process", workers: int = 2,
                  progress: bool = True) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Every (agent, seed) search; parallel over searches on the chosen executor."""
    from blox_env.executors import make_executor

    tasks = [SearchTask(str(store), a, s, spec) for a in spec.agents for s in range(spec.seeds)]
    ex = make_executor(executor, workers=workers)
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc="searches", unit="search")
    try:
        for task, trace in ex.map_unordered(_task, tasks):
            out[(task.agent, task.seed)] = trace
            if bar is not None:
                bar.update(1)
    finally:
        ex.close()
        if bar is not None:
            bar.close()
    return out


def _best_at(trace: Sequence[dict[str, Any]], budget: float, report_metric: str) -> float:
    """Report metric of the best-objective model evaluated within ``budget`` (NaN if none).

    As in the environments, the evaluation that crosses the budget still counts. Only
    full-fidelity evaluations are eligible when the trace mixes fidelities.
    """
    full = max((r["fidelity"] for r in trace), default=0)
    best_obj, best_val = -np.inf, np.nan
    for r in trace:
        if r["fidelity"] == full and r["objective"] > best_obj:
            best_obj, best_val = r["objective"], r["metrics"].get(report_metric, np.nan)
        if r["cumulative_cost"] >= budget:
            break
    return float(best_val)


def summarise_traces(traces: dict[tuple[str, int], list[dict[str, Any]]], *, spec: BenchSpec,
                     best_index: int, best_report: float) -> list[dict[str, Any]]:
    """One summary row per agent (see the module docstring); numbers over seeds."""
    rows = []
    for agent in spec.agents:
        runs = [traces[(agent, s)] for s in range(spec.seeds) if (agent, s) in traces]
        row: dict[str, Any] = {"agent": agent, "seeds": len(runs)}
        for b in spec.budgets:
            vals = np.array([_best_at(t, b, spec.report_metric) for t in runs])
            row[f"best@{b:g}"] = (float(np.nanmean(vals)), float(np.nanstd(vals)))
            row[f"regret@{b:g}"] = float(best_report - np.nanmean(vals))
        reach_best = [next((r["cumulative_cost"] for r in t if r["arch_index"] == best_index), np.inf) for t in runs]
        row["cost_to_best_median"] = float(np.median(reach_best))
        row["found_best"] = int(np.isfinite(reach_best).sum())
        if spec.target is not None:
            reach = []
            for t in runs:
                hit = next((r["cumulative_cost"] for i, r in enumerate(t)
                            if _best_at(t[: i + 1], np.inf, spec.report_metric) >= spec.target), np.inf)
                reach.append(hit)
            row["cost_to_target_median"] = float(np.median(reach))
            row["reached_target"] = int(np.isfinite(reach).sum())
        row["evaluations_mean"] = float(np.mean([len(t) for t in runs]))
        rows.append(row)
    return rows
