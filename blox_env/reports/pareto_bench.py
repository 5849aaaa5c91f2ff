"""Multi-objective benchmark reports: hypervolume table, notes, fronts and anytime hypervolume plots, Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.agents.harness import BenchSpec
from blox_env.agents.pareto_bench import FRACTIONS, ParetoReference, hv_at_each
from blox_env.reports.bench import notes_markdown, plot_curves

__all__ = ["markdown_table", "plot_fronts", "plot_hv_curves", "table_notes", "write_report"]


def _fmt_cost(x: float) -> str:
    return "not reached" if not np.isfinite(x) else f"{x:,.0f}"


def markdown_table(rows: Sequence[dict[str, Any]], *, spec: BenchSpec,
                   fractions: Sequence[float] = FRACTIONS) -> str:
    """Hypervolume fraction at each budget (mean ± SE) and median cost to fractions of the front's hypervolume."""
    head = (["agent"] + [f"HV @ {b:g}" for b in spec.budget.budgets]
            + [f"median cost to {f:.0%} HV (reached)" for f in fractions] + ["evaluations"])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [r["agent"]] + [f"{r[f'hv@{b:g}'][0]:.3f} ± {r[f'hv@{b:g}'][1]:.3f}" for b in spec.budget.budgets]
        cells += [f"{_fmt_cost(r[f'cost_to_hv{f:g}_median'])} ({r[f'reached_hv{f:g}']}/{r['seeds']})"
                  for f in fractions]
        cells.append(f"{r['evaluations_mean']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_notes(spec: BenchSpec, *, ref: ParetoReference) -> list[str]:
    """What the multi-objective table's numbers are: objectives, reference point, scoring, budget clock."""
    objs = ", ".join(f"`{o}`" for o in ref.objectives)
    refs = ", ".join(f"{o.name} {v:.6g}" for o, v in zip(ref.objectives, ref.reference))
    return [
        f"objectives: {objs}. Every model a search evaluated is scored by its seed-mean values of these "
        f"objectives (the single-seed values the search saw may differ), the numbers the true front is made of.",
        f"HV @ b: the hypervolume of the models a search evaluated within budget b, as a fraction of the true "
        f"Pareto front's hypervolume ({len(ref.front.indices)} models, hypervolume {ref.front_hv:.6g} in the "
        f"objectives' units), mean ± standard error over seeds. Reference point: {refs} (each objective's worst "
        f"value over the benchmark pushed out by 10% of its range). 1.000 = a set as good as the true front.",
        f"budgets are {spec.budget_name()}; the evaluation that crosses a budget counts.",
        "median cost to x% HV: the first cost at which the found set's hypervolume reaches x% of the front's "
        "(a found set's hypervolume never falls); a seed that never gets there counts as infinite.",
    ]


def plot_hv_curves(traces: dict[tuple[str, int], list[dict[str, Any]]], path: str | Path, *, spec: BenchSpec,
                   ref: ParetoReference, title: str = "", points: int = 60) -> Path:
    """Anytime hypervolume fraction against the budget clock: mean ± standard error over seeds per agent (PNG)."""
    grid = np.linspace(0, max(spec.budget.budgets), points + 1)[1:]
    curves = {agent: np.array([hv_at_each(traces[(agent, s)], grid, ref, clock=spec.budget.clock)
                               for s in range(spec.search.seeds) if (agent, s) in traces]).reshape(-1, len(grid))
              for agent in spec.search.agents}
    return plot_curves(grid, curves, path, budgets=spec.budget.budgets, best=1.0, best_label="true front",
                       title=title or "anytime hypervolume", xlabel=spec.budget_name(),
                       ylabel="hypervolume / true front's")


def plot_fronts(rows: Sequence[dict[str, Any]], path: str | Path, *, ref: ParetoReference, title: str = "") -> Path:
    """Each agent's final found front (its median-hypervolume seed) next to the true front, first two objectives."""
    from blox_env.reports.plotting import new_axes, save_axes

    fig, ax = new_axes((7, 4.5))
    x, y = ref.values[:, 0], ref.values[:, 1] if ref.values.shape[1] > 1 else np.zeros(len(ref.values))
    ax.scatter(x, y, s=6, color="lightgrey", label="all models")
    # the staircase bounding what a front dominates: x ascending, the step taken at the next point when x is maximised
    steps = "steps-pre" if ref.objectives[0].maximise else "steps-post"
    tf = ref.front.values[np.argsort(ref.front.values[:, 0])]
    ax.plot(tf[:, 0], tf[:, 1] if tf.shape[1] > 1 else np.zeros(len(tf)), "k--", drawstyle=steps,
            label="true front")
    for marker, r in zip("osd^v<>ph*", rows):
        pts = r.get("front")
        if pts is None or not len(pts):
            continue
        order = np.argsort(pts[:, 0])
        pts = pts[order]
        ax.plot(pts[:, 0], pts[:, 1] if pts.shape[1] > 1 else np.zeros(len(pts)), marker=marker, markersize=4,
                drawstyle=steps, label=f"{r['agent']} (seed {r['front_seed']})")
    names = [o.name for o in ref.objectives]
    return save_axes(fig, ax, path, title=title or "final fronts", xlabel=names[0],
                     ylabel=names[1] if len(names) > 1 else "")


def write_report(path: str | Path, *, rows: Sequence[dict[str, Any]], spec: BenchSpec, ref: ParetoReference,
                 plots: Sequence[str | Path], store_name: str, seconds: float,
                 benchmark: dict[str, Any] | None = None) -> Path:
    """A Markdown report: setup, the hypervolume table, its notes, the fronts and anytime plots."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    links = "\n\n".join(f"![{Path(p).stem}]({Path(p).name if Path(p).parent == out.parent else p})" for p in plots)
    data = ""
    if benchmark is not None:
        from blox_env.datasets.store.provenance import benchmark_summary

        data = f"Data: {benchmark_summary(benchmark)}\n\n"
    text = (f"# Multi-objective search benchmark on {store_name}\n\n{data}"
            f"{len(spec.search.agents)} agents x {spec.search.seeds} seeds; budgets "
            f"{', '.join(f'{b:g}' for b in spec.budget.budgets)} "
            f"{spec.budget.cost_unit}: {spec.budget_name()}. Searches select on their own single-seed evaluations "
            f"(seed mode {spec.search.seed_mode!r}). Run time {seconds:.0f} s (real).\n\n"
            + markdown_table(rows, spec=spec) + "\n\n" + notes_markdown(table_notes(spec, ref=ref))
            + f"\n\n{links}\n")
    out.write_text(text)
    return out
