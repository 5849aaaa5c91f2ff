"""Tables, anytime plots and Markdown reports of a cost-budget benchmark."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.agents.harness import BenchSpec, best_at_each

if TYPE_CHECKING:
    from blox_env.datasets.store.blockwise import BlockwiseTables
    from blox_env.datasets.store.core import BloxStore

__all__ = ["BestModel", "agent_curves_on_grid", "best_model", "group_curves", "markdown_table", "notes_markdown",
           "plot_anytime", "plot_anytime_other_clock", "plot_curves", "table_notes", "write_report"]


@dataclass(frozen=True)
class BestModel:
    """The benchmark's best model, the value reported for it, and (blockwise) the value of every model."""

    index: int
    report: float
    values: dict[int, float] | None = None


def best_model(store: BloxStore, *, metric: str = "val_top1", report_metric: str = "test_top1",
               tables: BlockwiseTables | None = None) -> BestModel:
    """The model with the best seed-mean ``metric`` and its seed-mean ``report_metric``: what searches are scored by.

    With blockwise ``tables`` both come from the normal run the teachers were chosen from, and ``values``
    maps every model to its ``report_metric`` there (a blockwise search's answer is scored by that value).
    """
    if tables is not None:
        val, report = tables.normal(metric), tables.normal(report_metric)
        row = int(np.nanargmax(val))
        return BestModel(int(store.index[row]), float(report[row]), dict(zip(store.index.tolist(), report.tolist())))
    index = int(store.index[int(np.nanargmax(store.get(metric, seed="mean")))])
    return BestModel(index, float(store.get(report_metric, [index], seed="mean")[0]))


def agent_curves_on_grid(traces: dict[tuple[str, int], list[dict[str, Any]]], *, spec: BenchSpec, points: int = 60,
                   report: Mapping[int, float] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Cost grid and, per agent, ``[seeds, points]`` best-so-far report metric (select on validation)."""
    seeds, agents = spec.search.seeds, spec.search.agents
    groups = {agent: [traces[(agent, s)] for s in range(seeds) if (agent, s) in traces] for agent in agents}
    return group_curves(groups, budget=max(spec.budget.budgets), report_metric=spec.search.report_metric, points=points,
                        report=report, clock=spec.budget.clock)


def group_curves(groups: Mapping[str, Sequence[Sequence[dict[str, Any]]]], *, budget: float, report_metric: str,
                 points: int = 60, report: Mapping[int, float] | None = None, clock: str = "cumulative_cost",
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Anytime curves of labelled groups of traces (``[runs, points]`` each) on one grid of ``clock``."""
    grid = np.linspace(0, budget, points + 1)[1:]
    curves = {label: np.array([best_at_each(t, grid, report_metric, report, clock=clock) for t in runs])
              for label, runs in groups.items()}
    return grid, curves


def plot_anytime(traces: dict[tuple[str, int], list[dict[str, Any]]], path: str | Path, *, spec: BenchSpec,
                 best: float | None = None, title: str = "", report: Mapping[int, float] | None = None) -> Path:
    """Best-so-far vs the budget clock: mean over seeds with a ±1 standard-error band, one line per agent (PNG)."""
    grid, curves = agent_curves_on_grid(traces, spec=spec, report=report)
    return plot_curves(grid, curves, path, budgets=spec.budget.budgets, best=best, title=title or "anytime performance",
                       xlabel=spec.budget_name(), ylabel=_found(spec))


def plot_anytime_other_clock(traces: dict[tuple[str, int], list[dict[str, Any]]], path: str | Path, *,
                             spec: BenchSpec, best: float | None = None, title: str = "",
                             report: Mapping[int, float] | None = None) -> Path:
    """Simulated workers: the anytime curves against the clock the budgets are *not* on (compute when budgets are
    simulated wall-clock, and the other way round), to the end of the longest search (PNG)."""
    from blox_env.agents.summary import clock_values

    other = "sim_wall_clock" if spec.budget.clock == "cumulative_cost" else "cumulative_cost"
    end = max((float(clock_values(t[-1:], other)[0]) for t in traces.values() if t), default=1.0)
    groups = {a: [traces[(a, s)] for s in range(spec.search.seeds) if (a, s) in traces] for a in spec.search.agents}
    grid, curves = group_curves(groups, budget=max(end, 1e-9), report_metric=spec.search.report_metric, report=report,
                                clock=other)
    unit = spec.budget.cost_unit
    workers = f"{spec.sim.sim_workers} {spec.sim.mode} workers"
    xlabel = (f"simulated wall-clock ({unit}), {workers}" if other == "sim_wall_clock"
              else f"total compute ({unit}, summed over evaluations)")
    return plot_curves(grid, curves, path, budgets=(), best=best, title=title or "anytime performance",
                       xlabel=xlabel, ylabel=_found(spec))


def _found(spec: BenchSpec) -> str:
    """The y label of the anytime plots: what the curves show."""
    return f"{spec.search.report_metric} of the best-{spec.search.metric} model found"


def plot_curves(grid: np.ndarray, curves: Mapping[str, np.ndarray], path: str | Path, *, budgets: Sequence[float],
                best: float | None, title: str, xlabel: str, ylabel: str, best_label: str = "benchmark best") -> Path:
    """Mean ± standard-error band (over the runs with a value) per labelled curve set, budget lines, the best (PNG)."""
    from blox_env.reports.plotting import new_axes, save_axes

    fig, ax = new_axes((7, 4.5))
    for label, c in curves.items():
        with warnings.catch_warnings():  # costs before a search's first eligible answer are all-NaN columns
            warnings.simplefilter("ignore", RuntimeWarning)
            n = np.isfinite(c).sum(axis=0)
            mean = np.nanmean(c, axis=0)
            se = np.where(n > 1, np.nanstd(c, axis=0, ddof=1) / np.sqrt(np.maximum(n, 1)), 0.0)
        ax.plot(grid, mean, label=label)
        ax.fill_between(grid, mean - se, mean + se, alpha=0.15)
    if best is not None:
        ax.axhline(best, color="grey", linestyle="--", label=best_label)
    for b in budgets:
        ax.axvline(b, color="lightgrey", linewidth=0.8)
    return save_axes(fig, ax, path, title=title, xlabel=xlabel, ylabel=ylabel)


def _fmt_cost(x: float) -> str:
    return "not reached" if not np.isfinite(x) else f"{x:,.0f}"


def markdown_table(rows: Sequence[dict[str, Any]], *, spec: BenchSpec) -> str:
    """The summary table as Markdown."""
    bw = spec.mode == "blockwise"  # both scores: the fine-tuned model returned / the architecture trained normally
    score = "fine-tuned / normal " if bw else ""
    head = ["agent"] + [f"{score}{spec.search.report_metric} @ {b:g}" for b in spec.budget.budgets] + \
           [f"regret @ {max(spec.budget.budgets):g}", "median cost to best model (found)"]
    if spec.search.target is not None:
        head.append(f"median cost to {spec.search.target:g}{' (fine-tuned / normal)' if bw else ''} (reached)")
    if spec.simulated:
        head += ["median simulated wall-clock / compute to best", "mean total compute"]
    head.append("evaluations")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]

    def ms(pair: tuple[float, float]) -> str:
        return f"{pair[0]:.2f} ± {pair[1]:.2f}"

    for r in rows:
        cells = [r["agent"]] + [(f"{ms(r[f'finetuned@{b:g}'])} / " if bw else "") + ms(r[f"best@{b:g}"])
                                for b in spec.budget.budgets]
        cells += [f"{r[f'regret@{max(spec.budget.budgets):g}']:.2f}",
                  f"{_fmt_cost(r['cost_to_best_median'])} ({r['found_best']}/{r['seeds']})"]
        if spec.search.target is not None:
            ft = (f"{_fmt_cost(r['cost_to_target_finetuned_median'])} ({r['reached_target_finetuned']}/{r['seeds']})"
                  " / " if bw else "")
            cells.append(f"{ft}{_fmt_cost(r['cost_to_target_median'])} ({r['reached_target']}/{r['seeds']})")
        if spec.simulated:
            cells += [f"{_fmt_cost(r['sim_wall_to_best_median'])} / {_fmt_cost(r['compute_to_best_median'])}",
                      _fmt_cost(r["compute_total_mean"])]
        cells.append(f"{r['evaluations_mean']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_notes(spec: BenchSpec, *, best_index: int, best_report: float) -> list[str]:
    """Footnotes that explain the summary table's columns (regret, scores over budgets, evaluations).

    Why: without them a negative regret, a score that falls as the budget grows, or thousands of
    "evaluations" of a multi-phase strategy read as bugs; each note states what the code computes.
    """
    r, m, big = spec.search.report_metric, spec.search.metric, f"{max(spec.budget.budgets):g}"
    seeds = ("each search sees one seed's run of a model (its `val_top1` and `test_top1` from the same, randomly "
             "drawn seed) while the reference is a seed mean, so seed noise can lift an answer above it"
             if spec.search.seed_mode == "random" and spec.mode != "blockwise" else
             "answers are scored by seed means too, so only that selection on validation makes it negative")
    phases = {
        "plain": "",
        "two-stage": " Two-stage counts both phases: the screening with short fine-tuning (most records, each cheap) "
                     "and the full fine-tunes down its ranking.",
        "iterative": " Iterative counts every step of the paper's strategy: the screening search with short "
                     "fine-tuning, the normal training of the top candidates (step 3) and their full fine-tunes "
                     "under each promoted teacher (steps 4-5).",
    }
    notes = [
        f"regret @ {big} = the benchmark's best minus the agent's mean `{r}` at that budget; the benchmark's best "
        f"is the seed-mean `{r}` of the model with the best seed-mean `{m}` (model {best_index}, {best_report:.2f}). "
        f"Regret can be negative: that reference is chosen on validation, so other models can have a higher "
        f"`{r}`, and {seeds}.",
        f"`{r} @ b` is the `{r}` of the best-`{m}` model a search evaluated within budget b (mean ± standard "
        f"error over seeds): select on validation, report test. Budgets (and every cost column) are "
        f"{spec.budget_name()}. A larger budget can replace the answer by a model with a "
        f"better `{m}` but a lower `{r}`, so a column need not rise with the budget.",
        f"evaluations: trace records per search at the largest budget, mean over seeds, repeats of a model "
        f"already evaluated included (they are {'charged' if spec.budget.charge_repeats else 'free'})."
        + phases.get(spec.blockwise.strategy, ""),
    ]
    if spec.simulated:
        notes.insert(2, f"simulated workers: each search ran on {spec.sim.sim_workers} {spec.sim.mode} simulated "
                        f"worker(s), each evaluation occupying its worker for its recorded cost on a simulated "
                        f"clock (no process ran in parallel). \"Simulated wall-clock to best\" is when the best "
                        f"model's result would have been known; \"compute\" sums the cost of every evaluation "
                        f"(total compute = workers x busy time); both are in {spec.budget.cost_unit}.")
    if spec.search.target is not None:
        when = "cumulative cost" if spec.budget.kind == "compute" else "simulated wall-clock time"
        notes.insert(2, f"cost to {spec.search.target:g}: the first {when} after which the search's answer keeps "
                        f"a `{r}` of at least {spec.search.target:g} to the end of the search (a transient hit does "
                        f"not count); the median over all seeds, a search that never gets there counting as infinite.")
    if spec.mode == "blockwise":
        notes.insert(2, f"blockwise mode: answers are chosen on fine-tuned `{m}` (after distillation from "
                        f"teacher {spec.blockwise.teacher}) and scored twice: the fine-tuned model's own `{r}` (the "
                        f"paper's Table 2 score) / the architecture's normal `{r}` (seed mean); a later, "
                        f"better-fine-tuning model can have a lower normal accuracy, so the normal score can fall as "
                        f"the budget grows. Regret is on the normal score.")
    return notes


def notes_markdown(notes: Sequence[str]) -> str:
    """Footnotes as a Markdown list (readable as plain text on a console too)."""
    return "Notes:\n\n" + "\n".join(f"{i}. {n}" for i, n in enumerate(notes, 1))


def write_report(path: str | Path, *, rows: Sequence[dict[str, Any]], spec: BenchSpec, plot: str | Path,
                 store_name: str, best_index: int, best_report: float, seconds: float,
                 benchmark: dict[str, Any] | None = None) -> Path:
    """A Markdown report: setup, the table, the anytime plot, and (``benchmark``) which data it ran on."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_rel = Path(plot).name if Path(plot).parent == out.parent else str(plot)
    search = spec.search
    text = (
        f"# Search benchmark on {store_name}\n\n"
        f"{len(search.agents)} agents x {search.seeds} seeds, budgets "
        f"{', '.join(f'{b:g}' for b in spec.budget.budgets)} "
        f"{spec.budget.cost_unit}: {spec.budget_name()}; search metric `{search.metric}` (seed mode "
        f"{search.seed_mode!r}), reported `{search.report_metric}` of the best-`{search.metric}` model found. "
        f"Benchmark best (by mean `{search.metric}`): model {best_index}, {search.report_metric} {best_report:.2f}. "
        f"Real run time {seconds:.0f} s.{_blockwise_note(spec)}\n\n" + markdown_table(rows, spec=spec)
        + "\n\n" + notes_markdown(table_notes(spec, best_index=best_index, best_report=best_report))
        + f"\n\n![anytime]({plot_rel})\n"
    )
    if benchmark is not None:  # one line under the title (with the official-data note), the details at the end
        from blox_env.datasets.store.provenance import benchmark_lines, benchmark_summary

        title, rest = text.split("\n\n", 1)
        details = "\n".join(benchmark_lines(benchmark))
        text = f"{title}\n\nData: {benchmark_summary(benchmark)}\n\n{rest}\n{details}\n"
    out.write_text(text)
    return out


def _blockwise_note(spec: BenchSpec) -> str:
    if spec.mode != "blockwise":
        return ""
    bw = spec.blockwise
    return (f" Blockwise mode (teacher {bw.teacher}, strategy {bw.strategy}): searches read fine-tuned "
            "accuracies and pay fine-tuning, each distilled block and the teacher once per search; each answer is "
            f"reported by its fine-tuned `{spec.search.report_metric}` and its normal one (seed mean).")
