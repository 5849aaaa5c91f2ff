"""Summaries of search traces: the answer at each budget, costs to reach a target or the best model, per-agent rows.

The rules are those of the harness (:mod:`blox_env.agents.harness`'s module docstring): select on
the search metric, report ``report_metric``; the evaluation that crosses a budget counts; budgets
are read on a *clock*, the trace column ``cumulative_cost`` (total compute) or ``sim_wall_clock``
(simulated wall-clock of :mod:`blox_env.agents.parallel`); numbers over seeds are mean ± standard error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from blox_env.agents.harness import BenchSpec

__all__ = ["answers", "best_at", "best_at_each", "clock_values", "cost_to_reach", "mean_se", "plan_for", "planned",
           "summarise_traces"]


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


def answers(trace: Sequence[dict[str, Any]], report_metric: str | None,
            report: Mapping[int, float] | None = None) -> np.ndarray:
    """The value of the search's answer after each record (NaN before the first eligible one).

    The answer is the best-objective eligible model so far (see :func:`best_at`); its value is
    ``report[index]`` or, without ``report``, the record's own ``report_metric`` (None: its ``objective``).
    """
    eligible = [r for r in trace if r.get("select", True)]
    full = max((r["fidelity"] for r in eligible if "phase" not in r), default=0)
    best_obj, best_val = -np.inf, np.nan
    out = np.full(len(trace), np.nan)
    for i, r in enumerate(trace):  # a strategy's rows (``phase``) are eligible by ``select`` alone
        if r.get("select", True) and ("phase" in r or r["fidelity"] == full) and r["objective"] > best_obj:
            best_obj = r["objective"]
            best_val = (report[r["arch_index"]] if report is not None else best_obj if report_metric is None
                        else r["metrics"].get(report_metric, np.nan))
        out[i] = best_val
    return out


def clock_values(trace: Sequence[dict[str, Any]], clock: str = "cumulative_cost") -> np.ndarray:
    """Each record's time on ``clock``: ``cumulative_cost`` (compute) or ``sim_wall_clock`` (simulated workers;
    a sequential trace, which has none, is one worker, whose wall-clock is its cumulative cost)."""
    return np.array([r.get(clock, r["cumulative_cost"]) for r in trace], dtype=np.float64)


def best_at(trace: Sequence[dict[str, Any]], budget: float, report_metric: str,
            report: Mapping[int, float] | None = None) -> float:
    """Report value of the best-objective eligible model evaluated within ``budget`` (NaN if none).

    As in the environments, the evaluation that crosses the budget still counts. Only
    full-fidelity evaluations are eligible when the trace mixes fidelities, and only records
    with ``select`` true (strategies mark their screening phases false; a strategy's rows, which carry a
    ``phase``, are eligible by ``select`` alone: e.g. normal trainings next to full fine-tunes). ``report`` maps
    a model index to the value reported for it (e.g. the seed-mean normal test accuracy, so that
    blockwise and conventional searches are scored alike); by default the record's ``report_metric``.
    """
    return float(best_at_each(trace, [budget], report_metric, report)[0])


def best_at_each(trace: Sequence[dict[str, Any]], budgets: Sequence[float], report_metric: str,
                 report: Mapping[int, float] | None = None, *, clock: str = "cumulative_cost") -> np.ndarray:
    """:func:`best_at` for many budgets (e.g. an anytime curve's grid): each planned run's answers once.

    ``clock`` names the trace column the budgets are on (see :func:`clock_values`)."""
    out = np.full(len(budgets), np.nan)
    by_plan: dict[float | None, list[int]] = {}
    for i, b in enumerate(budgets):
        by_plan.setdefault(plan_for(trace, b), []).append(i)
    for plan, positions in by_plan.items():
        run = trace if plan is None else [r for r in trace if r["plan_budget"] == plan]
        if not run:
            continue
        values = answers(run, report_metric, report)
        costs = clock_values(run, clock)
        for i in positions:  # the evaluation that crosses the budget counts: the first record at or past it
            cut = min(int(np.searchsorted(costs, budgets[i], side="left")), len(run) - 1)
            out[i] = values[cut]
    return out


def cost_to_reach(trace: Sequence[dict[str, Any]], target: float, report_metric: str,
                  report: Mapping[int, float] | None = None, *, clock: str = "cumulative_cost") -> float:
    """The first time on ``clock`` after which the answer's value stays >= ``target`` (inf if it never settles there).

    ``trace`` is one search (for strategies, the run planned for the largest budget: :func:`planned`)."""
    values = answers(trace, report_metric, report)
    below = np.flatnonzero(~(values >= target))
    first = 0 if len(below) == 0 else int(below[-1]) + 1
    return float(clock_values(trace[first:first + 1], clock)[0]) if first < len(trace) else float("inf")


def mean_se(values: Sequence[float]) -> tuple[tuple[float, float], int]:
    """(mean, standard error) over the finite values, and their count: a search with no answer yet is missing.

    The standard error is the sample standard deviation (ddof 1) over the square root of the count; 0 for one value.
    """
    found = np.asarray(values, dtype=np.float64)
    found = found[np.isfinite(found)]
    if not len(found):
        return (float("nan"), float("nan")), 0
    se = float(found.std(ddof=1) / np.sqrt(len(found))) if len(found) > 1 else 0.0
    return (float(found.mean()), se), len(found)


def _to_best(trace: Sequence[dict[str, Any]], best_index: int, clock: str) -> float:
    """When ``trace`` first evaluated (selectably) the benchmark's best model, on ``clock``; inf if never."""
    hit = next((r for r in trace if r["arch_index"] == best_index and r.get("select", True)), None)
    return float("inf") if hit is None else float(clock_values([hit], clock)[0])


def summarise_traces(traces: dict[tuple[str, int], list[dict[str, Any]]], *, spec: BenchSpec,
                     best_index: int, best_report: float, report: Mapping[int, float] | None = None,
                     label: str | None = None) -> list[dict[str, Any]]:
    """One summary row per agent (see the module docstring); numbers over seeds.

    ``report`` (model index -> value) replaces the records' ``report_metric`` (see :func:`best_at`);
    ``label`` names the rows (default: the agent, plus the strategy when it is not plain).
    """
    rows = []
    budgets, metric, clock = spec.budget.budgets, spec.search.report_metric, spec.budget.clock
    for agent in spec.search.agents:
        runs = full_runs = [traces[(agent, s)] for s in range(spec.search.seeds) if (agent, s) in traces]
        name = label or (agent if spec.blockwise.strategy == "plain" else f"{agent}+{spec.blockwise.strategy}")
        row: dict[str, Any] = {"agent": name, "seeds": len(runs)}
        by_budget = np.array([best_at_each(t, budgets, metric, report, clock=clock)
                              for t in runs]).reshape(len(runs), len(budgets))
        for j, b in enumerate(budgets):
            row[f"best@{b:g}"], row[f"answered@{b:g}"] = mean_se(by_budget[:, j])
            row[f"regret@{b:g}"] = float(best_report - row[f"best@{b:g}"][0])
        runs = [planned(t, np.inf) for t in runs]  # costs to reach: the run planned for the largest budget
        reach_best = [_to_best(t, best_index, clock) for t in runs]
        row["cost_to_best_median"] = float(np.median(reach_best))
        row["found_best"] = int(np.isfinite(reach_best).sum())
        if spec.simulated:  # both clocks: simulated wall-clock and total compute to the best model, compute spent
            row["sim_wall_to_best_median"] = float(np.median([_to_best(t, best_index, "sim_wall_clock")
                                                              for t in runs]))
            row["compute_to_best_median"] = float(np.median([_to_best(t, best_index, "cumulative_cost")
                                                             for t in runs]))
            row["compute_total_mean"] = float(np.mean([t[-1]["cumulative_cost"] if t else 0.0 for t in runs]))
            row["sim_wall_total_mean"] = float(np.mean([clock_values(t[-1:], "sim_wall_clock")[0] if t else 0.0
                                                        for t in runs]))
        if spec.search.target is not None:
            reach = [cost_to_reach(t, spec.search.target, metric, report, clock=clock) for t in runs]
            row["cost_to_target_median"] = float(np.median(reach))
            row["reached_target"] = int(np.isfinite(reach).sum())
        if spec.mode == "blockwise":  # the answer's own (fine-tuned) score, as the paper's Table 2 reports it
            for b in budgets:
                row[f"finetuned@{b:g}"], _ = mean_se([best_at(t, b, metric) for t in full_runs])
            if spec.search.target is not None:
                reach = [cost_to_reach(t, spec.search.target, metric) for t in runs]
                row["cost_to_target_finetuned_median"] = float(np.median(reach))
                row["reached_target_finetuned"] = int(np.isfinite(reach).sum())
        row["evaluations_mean"] = float(np.mean([len(t) for t in runs]))
        rows.append(row)
    return rows
