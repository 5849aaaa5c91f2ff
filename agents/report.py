"""Tables, anytime plots and Markdown reports of a cost-budget benchmark."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.agents.harness import BenchSpec, _best_at

__all__ = ["anytime_curves", "markdown_table", "plot_anytime", "write_report"]


def anytime_curves(traces: dict[tuple[str, int], list[dict[str, Any]]], *, spec: BenchSpec,
                   points: int = 60) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Cost grid and, per agent, ``[seeds, points]`` best-so-far report metric (select on validation)."""
    grid = np.linspace(0, max(spec.budgets), points + 1)[1:]
    curves = {}
    for agent in spec.agents:
        runs = [traces[(agent, s)] for s in range(spec.seeds) if (agent, s) in traces]
        curves[agent] = np.array([[_best_at(t, c, spec.report_metric) for c in grid] for t in runs])
    return grid, curves


def plot_anytime(traces: dict[tuple[str, int], list[dict[str, Any]]], path: str | Path, *, spec: BenchSpec,
                 best: float | None = None, title: str = "") -> Path:
    """Best-so-far vs cost: mean over seeds with a +-1 std band, one line per agent (PNG)."""
    from blox_env.plotting import new_axes, save_axes

    grid, curves = anytime_curves(traces, spec=spec)
    fig, ax = new_axes((7, 4.5))
    for agent, c in curves.items():
        with np.errstate(all="ignore"):
            mean, std = np.nanmean(c, axis=0), np.nanstd(c, axis=0)
        ax.plot(grid, mean, label=agent)
        ax.fill_between(grid, mean - std, mean + std, alpha=0.12)
    if best is not None:
        ax.axhline(best, color="grey", linestyle="--", label="benchmark best")
    for b in spec.budgets:
        ax.axvline(b, color="lightgrey", linewidth=0.8)
    return save_axes(fig, ax, path, title=title or "anytime performance", xlabel=f"search cost ({spec.cost_unit})",
                     ylabel=f"{spec.report_metric} of the best-{spec.metric} model found")


def _fmt_cost(x: float) -> str:
    return "not reached" if not np.isfinite(x) else f"{x:,.0f}"


def markdown_table(rows: Sequence[dict[str, Any]], *, spec: BenchSpec) -> str:
    """The summary table as Markdown."""
    head = ["agent"] + [f"{spec.report_metric} @ {b:g}" for b in spec.budgets] + \
           [f"regret @ {max(spec.budgets):g}", "median cost to best model (found)"]
    if spec.target is not None:
        head.append(f"median cost to {spec.target:g} (reached)")
    head.append("evaluations")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [r["agent"]] + [f"{r[f'best@{b:g}'][0]:.2f} ± {r[f'best@{b:g}'][1]:.2f}" for b in spec.budgets]
        cells += [f"{r[f'regret@{max(spec.budgets):g}']:.2f}",
                  f"{_fmt_cost(r['cost_to_best_median'])} ({r['found_best']}/{r['seeds']})"]
        if spec.target is not None:
            cells.append(f"{_fmt_cost(r['cost_to_target_median'])} ({r['reached_target']}/{r['seeds']})")
        cells.append(f"{r['evaluations_mean']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(path: str | Path, *, rows: Sequence[dict[str, Any]], spec: BenchSpec, plot: str | Path,
                 store_name: str, best_index: int, best_report: float, seconds: float) -> Path:
    """A Markdown report: setup, the table, the anytime plot."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_rel = Path(plot).name if Path(plot).parent == out.parent else str(plot)
    text = (
        f"# Search benchmark on {store_name}\n\n"
        f"{len(spec.agents)} agents x {spec.seeds} seeds, budgets {', '.join(f'{b:g}' for b in spec.budgets)} "
        f"{spec.cost_unit} of recorded training time; search metric `{spec.metric}` (seed mode "
        f"{spec.seed_mode!r}), reported `{spec.report_metric}` of the best-`{spec.metric}` model found. "
        f"Benchmark best (by mean `{spec.metric}`): model {best_index}, {spec.report_metric} {best_report:.2f}. "
        f"Wall time {seconds:.0f} s.\n\n" + markdown_table(rows, spec=spec) + f"\n\n![anytime]({plot_rel})\n"
    )
    out.write_text(text)
    return out
