"""The cost-budget harness: agents x seeds x budgets under one enforced simulated clock.

Every search is :func:`~blox_env.agents.loop.run_search` (or a blockwise strategy of
:mod:`~blox_env.agents.strategies`) through a :class:`~blox_env.runs.SearchRun`: the same
accounting as the environments (repeats free unless ``charge_repeats``, the evaluation that
crosses the budget completes and counts). A search stops once its budget is spent. Results are
traces (one record per evaluation with arch, metrics, cost, cumulative cost and wall time),
written to a store's ``traces/`` when one is given, and summarised per agent:

- *best test accuracy at cost b*: test top-1 of the model with the best search
  metric (validation) among those evaluated within cumulative cost ``b`` — the
  usual "select on validation, report test" rule;
- *cost to reach a target*: the first cumulative cost after which the search's
  answer (that model) stays at or above ``target`` test accuracy for the rest of
  the search ("not reached" otherwise; a transient hit does not count), and the
  cost to evaluate the benchmark's best model;
- in blockwise mode also the *fine-tuned* test accuracy of the answer (the
  record's own ``report_metric``: what the paper's Table 2 reports for blockwise
  methods) next to its normal test accuracy, and the cost to reach the target
  on that score;
- *regret*: the benchmark's best test accuracy (of its best-validation model)
  minus the agent's, and the evaluations used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blox_env.agents.loop import run_search
from blox_env.agents.strategies import STRATEGIES, iterative_teacher_search, two_stage_search
from blox_env.errors import InvalidArgumentError
from blox_env.rewards.base import RewardBackend

__all__ = ["BenchSpec", "SearchTask", "answers", "best_at", "best_at_each", "cost_to_reach", "make_search_agent",
           "plan_for", "planned", "run_benchmark", "summarise_traces"]


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
    mode: str = "normal"  # "blockwise": rewards from the store's blockwise tables
    teacher: str = "M1"
    ft_epochs: int | None = None  # blockwise fine-tuning length (default: the full one)
    strategy: str = "plain"  # "two-stage" (FT-short + FT-full) | "iterative" (iterative teacher)
    strategy_kwargs: dict[str, Any] = field(default_factory=dict)
    full_teacher: str | None = None  # two-stage: the teacher of the full fine-tuning (default: ``teacher``)
    stop_at_target: bool = False  # strategies stop fine-tuning once an answer's objective reaches ``target``
    live_store: str | None = None  # iterative: promoted teachers run live in this writable store (else stand-ins)

    def __post_init__(self) -> None:
        from blox_env.agents import AGENTS

        unknown = [a for a in self.agents if a not in AGENTS]
        if unknown:
            raise InvalidArgumentError(f"unknown agent(s) {unknown}: allowed {', '.join(AGENTS)}")
        if self.seeds < 1 or not self.budgets or min(self.budgets) <= 0:
            raise InvalidArgumentError(f"need seeds >= 1 and positive budgets, got {self.seeds}, {self.budgets}")
        if self.mode not in ("normal", "blockwise"):
            raise InvalidArgumentError(f"mode must be 'normal' or 'blockwise', got {self.mode!r}")
        if self.strategy not in STRATEGIES:
            raise InvalidArgumentError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.strategy != "plain" and self.mode != "blockwise":
            raise InvalidArgumentError(f"strategy {self.strategy!r} is a blockwise strategy: use mode='blockwise'")
        if self.full_teacher is not None and self.strategy != "two-stage":
            raise InvalidArgumentError(f"full_teacher is an option of the two-stage strategy, not {self.strategy!r}")
        if self.live_store is not None and self.strategy != "iterative":
            raise InvalidArgumentError(f"live_store is an option of the iterative strategy, not {self.strategy!r}")
        if self.stop_at_target and self.target is None:
            raise InvalidArgumentError("stop_at_target needs a target")


@dataclass(frozen=True)
class SearchTask:
    """One search (agent x seed) at the largest budget; picklable for process pools."""

    store: str
    agent: str
    seed: int
    spec: BenchSpec


def make_search_agent(name: str, backend: RewardBackend, *, seed: int, spec: BenchSpec) -> Any:
    """The agent ``name`` for one search on ``backend``, with the spec's options.

    Multi-fidelity agents get the backend's epoch range; ``donna`` and ``lana`` get the
    blockwise backend's signatures (distillation loss; minus the accuracy change).
    """
    from blox_env.agents import make_agent, make_constraint
    from blox_env.rewards.blockwise import BlockwiseTabularReward

    constraint = make_constraint(backend, spec.constraint) if spec.constraint else None
    kwargs = dict(spec.agent_kwargs.get(name, {}))
    if name in ("sh", "hyperband", "asha"):
        kwargs.setdefault("max_fidelity", backend.max_fidelity)
        kwargs.setdefault("min_fidelity", max(1, backend.max_fidelity // 9))
    if name in ("donna", "lana") and "signatures" not in kwargs:
        if not isinstance(backend, BlockwiseTabularReward):
            raise InvalidArgumentError(f"agent {name!r} needs block signatures: run it with mode='blockwise' on a "
                                       "store with blockwise tables (or pass signatures= in agent_kwargs)")
        sig = backend.signatures
        kwargs["signatures"] = sig["distill_loss"] if name == "donna" else -sig["lana_delta"]
    return make_agent(name, backend.space, seed=seed, metric=spec.metric, constraint=constraint, **kwargs)


def _task(task: SearchTask) -> list[dict[str, Any]]:
    """Worker side: open the store read-only, build backend(s) + agent, search at the largest budget."""
    from blox_env.datasets.store.core import open_store
    from blox_env.rewards.factory import make_tabular_backend

    spec = task.spec
    store = open_store(task.store)
    budget = max(spec.budgets)
    blockwise = {"mode": "blockwise", "teacher": spec.teacher} if spec.mode == "blockwise" else {}

    def backend_at(ft_epochs: int | None) -> Any:
        extra = {**blockwise, "ft_epochs": ft_epochs} if blockwise else {}
        return make_tabular_backend(store, metric=spec.metric, seed_mode=spec.seed_mode, **extra)

    if spec.strategy == "plain":
        backend = backend_at(spec.ft_epochs)
        agent = make_search_agent(task.agent, backend, seed=task.seed, spec=spec)
        return run_search(agent, backend, budget=budget, cost_unit=spec.cost_unit, seed=task.seed,
                          metric=spec.metric, charge_repeats=spec.charge_repeats)
    # strategies plan their phases for a budget: one run per budget, records tagged with ``plan_budget``;
    # the backends are made once (each plan's SearchRun starts their shared charges anew)
    target = spec.target if spec.stop_at_target else None
    trace: list[dict[str, Any]] = []
    if spec.strategy == "two-stage":
        full = make_tabular_backend(store, metric=spec.metric, seed_mode=spec.seed_mode, mode="blockwise",
                                    teacher=spec.full_teacher or spec.teacher, ft_epochs=None)
        short = backend_at(min(full.tables.ft_epochs))
        for plan in sorted(spec.budgets):
            agent = make_search_agent(task.agent, short, seed=task.seed, spec=spec)
            part = two_stage_search(agent, short, full, budget=plan, cost_unit=spec.cost_unit, seed=task.seed,
                                    metric=spec.metric, target=target, **spec.strategy_kwargs)
            trace += [{**r, "plan_budget": plan} for r in part]
        return trace
    from blox_env.rewards.blockwise import TeacherBackends

    live_store = live = None
    if spec.live_store is not None:  # promoted teachers trained live, recorded beside the tables
        from blox_env.datasets.store.core import BloxStore
        from blox_env.rewards.live import live_teacher_backends

        live_store = BloxStore.open(spec.live_store, mode="a")
        live = live_teacher_backends(live_store)
    try:
        teachers = TeacherBackends(live_store or store, metric=spec.metric, live=live)
        for plan in sorted(spec.budgets):
            part = iterative_teacher_search(
                lambda s, short: make_search_agent(task.agent, short, seed=s, spec=spec), teachers,
                start_teacher=teachers.tables.teachers[spec.teacher], budget=plan, cost_unit=spec.cost_unit,
                seed=task.seed, metric=spec.metric, target=target, **spec.strategy_kwargs)
            trace += [{**r, "plan_budget": plan} for r in part]
    finally:
        if live_store is not None:
            live_store.close()  # records the checksums of what the live teachers wrote
    return trace


def check_complete(location: str) -> None:
    """Refuse a store whose rows do not fill the product sub-space they span (see :func:`run_benchmark`)."""
    from blox_env.datasets.store.core import open_store
    from blox_env.rewards.tabular import space_of_index

    st = open_store(location)
    space = space_of_index(st.index)
    if len(st.index) != space.size:
        raise InvalidArgumentError(
            f"store {st.name} holds {len(st.index):,} of the {space.size:,} models of the sub-space its rows span "
            f"(blocks per stage {[len(b) for b in space.blocks]}): searches would propose models it lacks. Search a "
            "complete store (re-import the release without --allow-partial, or build the missing models)")


def run_benchmark(store: str, *, spec: BenchSpec, executor: str = "process", workers: int = 2,
                  progress: bool = True) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Every (agent, seed) search; parallel over searches on the chosen executor.

    The store must hold every model of the product sub-space its rows span (the space agents search):
    a partial import (``blox data import --allow-partial``) is refused up front with the counts, rather
    than failing inside a search on the first missing model an agent proposes."""
    from blox_env.build.executors import make_executor

    check_complete(store)
    tasks = [SearchTask(str(store), a, s, spec) for a in spec.agents for s in range(spec.seeds)]
    ex = make_executor(executor, workers=workers)
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    bar = None
    if progress:
        from blox_env.progress import ProgressBar

        bar = ProgressBar(len(tasks), description="searches")
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


def plan_for(trace: Sequence[dict[str, Any]], budget: float) -> float | None:
    """The ``plan_budget`` whose run answers for ``budget`` (see :func:`planned`); None for a plain search."""
    if not trace or "plan_budget" not in trace[0]:
        return None
    plans = sorted({r["plan_budget"] for r in trace})
    return next((p for p in plans if p >= budget), plans[-1])


def planned(trace: Sequence[dict[str, Any]], budget: float) -> Sequence[dict[str, Any]]:
    """The records that answer for ``budget``: for strategies, which plan their phases for a budget and so
    run once per budget (records tagged ``plan_budget``), the run planned for the smallest budget >= it
    (the largest one beyond the last); plain searches are one run, returned as is."""
    chosen = plan_for(trace, budget)
    return trace if chosen is None else [r for r in trace if r["plan_budget"] == chosen]


def answers(trace: Sequence[dict[str, Any]], report_metric: str,
            report: Mapping[int, float] | None = None) -> np.ndarray:
    """The value of the search's answer after each record (NaN before the first eligible one).

    The answer is the best-objective eligible model so far (see :func:`best_at`); its value is
    ``report[index]`` or, without ``report``, the record's own ``report_metric``.
    """
    eligible = [r for r in trace if r.get("select", True)]
    full = max((r["fidelity"] for r in eligible), default=0)
    best_obj, best_val = -np.inf, np.nan
    out = np.full(len(trace), np.nan)
    for i, r in enumerate(trace):
        if r.get("select", True) and r["fidelity"] == full and r["objective"] > best_obj:
            best_obj = r["objective"]
            best_val = report[r["arch_index"]] if report is not None else r["metrics"].get(report_metric, np.nan)
        out[i] = best_val
    return out


def best_at(trace: Sequence[dict[str, Any]], budget: float, report_metric: str,
            report: Mapping[int, float] | None = None) -> float:
    """Report value of the best-objective eligible model evaluated within ``budget`` (NaN if none).

    As in the environments, the evaluation that crosses the budget still counts. Only
    full-fidelity evaluations are eligible when the trace mixes fidelities, and only records
    with ``select`` true (strategies mark their screening phases false). ``report`` maps a model
    index to the value reported for it (e.g. the seed-mean normal test accuracy, so that
    blockwise and conventional searches are scored alike); by default the record's ``report_metric``.
    """
    return float(best_at_each(trace, [budget], report_metric, report)[0])


def best_at_each(trace: Sequence[dict[str, Any]], budgets: Sequence[float], report_metric: str,
                 report: Mapping[int, float] | None = None) -> np.ndarray:
    """:func:`best_at` for many budgets (e.g. an anytime curve's grid): each planned run's answers once."""
    out = np.full(len(budgets), np.nan)
    by_plan: dict[float | None, list[int]] = {}
    for i, b in enumerate(budgets):
        by_plan.setdefault(plan_for(trace, b), []).append(i)
    for plan, positions in by_plan.items():
        run = trace if plan is None else [r for r in trace if r["plan_budget"] == plan]
        if not run:
            continue
        values = answers(run, report_metric, report)
        costs = np.array([r["cumulative_cost"] for r in run])
        for i in positions:  # the evaluation that crosses the budget counts: the first record at or past it
            cut = min(int(np.searchsorted(costs, budgets[i], side="left")), len(run) - 1)
            out[i] = values[cut]
    return out


def cost_to_reach(trace: Sequence[dict[str, Any]], target: float, report_metric: str,
                  report: Mapping[int, float] | None = None) -> float:
    """The first cumulative cost after which the answer's value stays >= ``target`` (inf if it never settles there).

    ``trace`` is one search (for strategies, the run planned for the largest budget: :func:`planned`)."""
    values = answers(trace, report_metric, report)
    below = np.flatnonzero(~(values >= target))
    first = 0 if len(below) == 0 else int(below[-1]) + 1
    return float(trace[first]["cumulative_cost"]) if first < len(trace) else float("inf")


def _mean_std(values: Sequence[float]) -> tuple[tuple[float, float], int]:
    """(mean, std) over the finite values and their count: a search with no eligible answer yet is missing."""
    found = np.asarray(values, dtype=np.float64)
    found = found[np.isfinite(found)]
    if not len(found):
        return (float("nan"), float("nan")), 0
    return (float(found.mean()), float(found.std())), len(found)


def summarise_traces(traces: dict[tuple[str, int], list[dict[str, Any]]], *, spec: BenchSpec,
                     best_index: int, best_report: float, report: Mapping[int, float] | None = None,
                     label: str | None = None) -> list[dict[str, Any]]:
    """One summary row per agent (see the module docstring); numbers over seeds.

    ``report`` (model index -> value) replaces the records' ``report_metric`` (see :func:`best_at`);
    ``label`` names the rows (default: the agent, plus the strategy when it is not plain).
    """
    rows = []
    for agent in spec.agents:
        runs = full_runs = [traces[(agent, s)] for s in range(spec.seeds) if (agent, s) in traces]
        name = label or (agent if spec.strategy == "plain" else f"{agent}+{spec.strategy}")
        row: dict[str, Any] = {"agent": name, "seeds": len(runs)}
        for b in spec.budgets:
            row[f"best@{b:g}"], row[f"answered@{b:g}"] = _mean_std([best_at(t, b, spec.report_metric, report)
                                                                     for t in runs])
            row[f"regret@{b:g}"] = float(best_report - row[f"best@{b:g}"][0])
        runs = [planned(t, np.inf) for t in runs]  # costs to reach: the run planned for the largest budget
        reach_best = [next((r["cumulative_cost"] for r in t if r["arch_index"] == best_index and r.get("select", True)),
                           np.inf) for t in runs]
        row["cost_to_best_median"] = float(np.median(reach_best))
        row["found_best"] = int(np.isfinite(reach_best).sum())
        if spec.target is not None:
            reach = [cost_to_reach(t, spec.target, spec.report_metric, report) for t in runs]
            row["cost_to_target_median"] = float(np.median(reach))
            row["reached_target"] = int(np.isfinite(reach).sum())
        if spec.mode == "blockwise":  # the answer's own (fine-tuned) score, as the paper's Table 2 reports it
            for b in spec.budgets:
                row[f"finetuned@{b:g}"], _ = _mean_std([best_at(t, b, spec.report_metric) for t in full_runs])
            if spec.target is not None:
                reach = [cost_to_reach(t, spec.target, spec.report_metric) for t in runs]
                row["cost_to_target_finetuned_median"] = float(np.median(reach))
                row["reached_target_finetuned"] = int(np.isfinite(reach).sum())
        row["evaluations_mean"] = float(np.mean([len(t) for t in runs]))
        rows.append(row)
    return rows
