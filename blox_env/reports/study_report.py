"""The ``blox study`` report: Markdown with every table and PNG figure, each result next to the paper's.

The paper's figures quoted here are those this project's issue tracker states: the Spearman
correlation between fine-tuned and normal accuracy over the space, 0.25 with the best teacher (M1)
and 0.31 with a poor one (M5). Other questions print our numbers with no paper figure beside them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.datasets.store.provenance import benchmark_lines, benchmark_summary
from blox_env.reports.study import StudyResults

__all__ = ["PAPER", "agreement", "write_study"]

#: Figures of the BLOX paper quoted next to ours.
PAPER = {"q2": {"M1": 0.25, "M5": 0.31}}


def agreement(ours: float, paper: float, *, tolerance: float = 0.15) -> str:
    """One sentence comparing a correlation of ours with the paper's."""
    if not np.isfinite(ours):
        return "not computable here (too few finite values)."
    if abs(ours - paper) <= tolerance:
        return f"agrees with the paper ({ours:.2f} vs {paper:.2f}, within {tolerance:.2f})."
    side = "higher" if ours > paper else "lower"
    return f"disagrees: ours is {side} ({ours:.2f} vs {paper:.2f})."


def _f(x: Any, digits: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _scatter(path: Path, series: list[tuple[str, np.ndarray, np.ndarray]], *, title: str, xlabel: str,
             ylabel: str, vlines: Sequence[tuple[str, float]] = ()) -> Path:
    from blox_env.reports.plotting import new_axes, save_axes

    fig, ax = new_axes((6, 4.5))
    for i, (label, x, y) in enumerate(series):
        ax.scatter(x, y, s=10, alpha=0.6, label=label, color=f"C{i}")
    for i, (label, v) in enumerate(vlines):
        ax.axvline(v, color=f"C{i}", linestyle="--", linewidth=1, label=label)
    return save_axes(fig, ax, path, title=title, xlabel=xlabel, ylabel=ylabel)


def _figures(res: StudyResults, tables: Any, out: Path) -> dict[str, str]:
    """Write every PNG; returns figure name -> file name."""
    from blox_env.reports.bench import group_curves, plot_curves
    from blox_env.reports.plotting import new_axes, save_axes
    from blox_env.reports.predictors import plot_results

    n = res.numbers
    figs: dict[str, str] = {}
    names = list(n["teachers"])
    m = np.array(n["matrix"], dtype=np.float64)
    fig, ax = new_axes((6, 5))
    im = ax.imshow(m, cmap="viridis")
    fig.colorbar(im, ax=ax, label="fine-tuned test top-1 (%)")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), [f"{k} ({n['teachers'][k]['normal_test_top1']:.1f})" for k in names])
    for i in range(len(names)):
        for j in range(len(names)):
            if np.isfinite(m[i, j]):
                ax.text(j, i, f"{m[i, j]:.1f}", ha="center", va="center", color="w", fontsize=8)
    save_axes(fig, ax, out / "q1_matrix.png", title="Q1: student (row, normal acc.) x teacher (column)",
              xlabel="teacher", ylabel="student", legend=False, grid=False)
    figs["q1"] = "q1_matrix.png"
    normal = tables.normal("test_top1")
    full = tables.full_teachers()
    short_e, full_e = n["ft_epochs"]
    _scatter(out / "q2_finetuned_vs_normal.png",
             [(f"teacher {t}", normal, tables.finetuned(t, full_e)) for t in full],
             vlines=[(f"{t}'s normal accuracy", n["teachers"][t]["normal_test_top1"]) for t in full],
             title=f"Q2: fine-tuned (FT{full_e}) vs normal accuracy", xlabel="normal test top-1 (%, seed mean)",
             ylabel="fine-tuned test top-1 (%)")
    figs["q2"] = "q2_finetuned_vs_normal.png"
    fig, ax = new_axes((7, 4.5))
    rows = n["q3"]
    groups = sorted({(r["teacher"], r["distill_epochs"], r["signature"]) for r in rows})
    width = 0.8 / max(len(groups), 1)
    for g_i, g in enumerate(groups):
        vals = [next(r["rho"] for r in rows if (r["teacher"], r["distill_epochs"], r["signature"]) == g
                     and r["stage"] == s) for s in range(3)]
        ax.bar(np.arange(3) + g_i * width, np.nan_to_num(vals), width, label=f"{g[2]}, {g[0]}, {g[1]} ep")
    ax.set_xticks(np.arange(3) + 0.4 - width / 2, ["stage 0", "stage 1", "stage 2"])
    save_axes(fig, ax, out / "q3_signatures.png", title="Q3: signature vs oracle block ranking (Spearman)",
              xlabel="stage", ylabel="Spearman rho")
    figs["q3"] = "q3_signatures.png"
    if res.predictor_rows:
        plot_results(res.predictor_rows, out / "q4_predictors.png",
                     title=f"Q4: predictors on fine-tuned accuracy ({full[0]}, FT{full_e})")
        figs["q4"] = "q4_predictors.png"
    _scatter(out / "q5_short_vs_full.png",
             [(f"teacher {t}", tables.finetuned(t, short_e), tables.finetuned(t, full_e)) for t in full],
             title=f"Q5: FT{short_e} vs FT{full_e}", xlabel=f"test top-1 after FT{short_e} (%)",
             ylabel=f"test top-1 after FT{full_e} (%)")
    figs["q5"] = "q5_short_vs_full.png"
    if len(full) >= 2:
        _scatter(out / "q6_teachers.png", [("models", tables.finetuned(full[0], full_e),
                                            tables.finetuned(full[-1], full_e))],
                 title=f"Q6: fine-tuned with {full[0]} vs with {full[-1]} (FT{full_e})",
                 xlabel=f"with {full[0]} (%)", ylabel=f"with {full[-1]} (%)")
        figs["q6"] = "q6_teachers.png"
    grid, curves = group_curves(res.traces, budget=max(res.budgets), report_metric="test_top1", report=res.report)
    plot_curves(grid, curves, out / "table2_anytime.png", budgets=res.budgets, best=res.best_report,
                title="Table 2: searches on the tables (answer's normal test top-1)", xlabel="search cost (seconds)",
                ylabel="normal test top-1 of the answer (%)")
    figs["table2"] = "table2_anytime.png"
    return figs


def _table2(res: StudyResults) -> str:
    head = ["method", "kind"] + [f"@ {b:g} s" for b in res.budgets] + \
           ["median cost to best model (found)", f"median cost to {res.target:.2f} (reached)", "evaluations"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]

    def cost(x: float) -> str:
        return "not reached" if not np.isfinite(x) else f"{x:,.0f}"

    for r in res.summary:
        cells = [r["agent"], r["kind"]] + [f"{r[f'best@{b:g}'][0]:.2f} ± {r[f'best@{b:g}'][1]:.2f}"
                                           for b in res.budgets]
        cells += [f"{cost(r['cost_to_best_median'])} ({r['found_best']}/{r['seeds']})",
                  f"{cost(r['cost_to_target_median'])} ({r['reached_target']}/{r['seeds']})",
                  f"{r['evaluations_mean']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _data_line(res: StudyResults) -> list[str]:
    """``Data: ...`` under the title (with the official-data note): which benchmark every number comes from."""
    return [f"Data: {benchmark_summary(res.benchmark)}", ""] if res.benchmark else []


def write_study(res: StudyResults, tables: Any, out_dir: str | Path) -> Path:
    """Write ``study.md``, its figures and ``study.json`` (all numbers) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = _figures(res, tables, out)
    n = res.numbers
    names = list(n["teachers"])
    short_e, full_e = n["ft_epochs"]
    full = tables.full_teachers()
    md = [f"# Blockwise NAS study on {res.store_name}", "", *_data_line(res),
          "Teachers chosen by normal accuracy (`blox_env.datasets.store.blockwise.choose_teachers`): "
          + ", ".join(f"{k} = model {v['index']} (blocks {v['blocks']}, normal test {v['normal_test_top1']:.2f})"
                      for k, v in n["teachers"].items())
          + f". Fine-tuning lengths FT{short_e} (short) and FT{full_e} (full); distillation lengths "
          f"{n['distill_epochs']} epochs.", ""]
    md += ["## Q1: student x teacher", "",
           "| student (normal acc.) | " + " | ".join(f"teacher {k}" for k in names) + " |",
           "|" + " --- |" * (len(names) + 1)]
    for i, k in enumerate(names):
        md.append(f"| {k} ({n['teachers'][k]['normal_test_top1']:.2f}) | "
                  + " | ".join(_f(v) for v in n["matrix"][i]) + " |")
    md += ["", f"Spearman between a teacher's normal accuracy and the mean accuracy of its students: "
           f"{_f(n['q1_teacher_quality_vs_student_mean'])}; mean diagonal (a model as its own teacher) minus "
           f"off-diagonal: {_f(n['q1_diagonal_minus_offdiagonal'])} points. The paper gives no single figure.",
           "", f"![Q1]({figs['q1']})", ""]
    md += ["## Q2: fine-tuned vs normal accuracy", "", "| teacher | ours (FT full) | ours (FT short) | paper | |",
           "| --- | --- | --- | --- | --- |"]
    for t in full:
        paper = PAPER["q2"].get(t)
        md.append(f"| {t} | {_f(n['q2'][t])} | {_f(n['q2_short'][t])} | {_f(paper)} | "
                  f"{agreement(n['q2'][t], paper) if paper is not None else 'no paper figure.'} |")
    md += ["", f"Repeatability of normal training (seed 0 vs seed 1): {_f(n.get('noise_ceiling'))}.", "",
           f"![Q2]({figs['q2']})", ""]
    md += ["## Q3: signatures vs the oracle block ranking", "",
           "Oracle score of a block in a stage: the best normal test accuracy of any model using it there.", "",
           "| teacher | distill epochs | signature | stage 0 | stage 1 | stage 2 |", "|" + " --- |" * 6]
    for g in sorted({(r["teacher"], r["distill_epochs"], r["signature"]) for r in n["q3"]}):
        vals = [next(r["rho"] for r in n["q3"] if (r["teacher"], r["distill_epochs"], r["signature"]) == g
                     and r["stage"] == s) for s in range(3)]
        md.append(f"| {g[0]} | {g[1]} | {g[2]} | " + " | ".join(_f(v) for v in vals) + " |")
    md += ["", f"![Q3]({figs['q3']})", ""]
    md += ["## Q4: predictors on fine-tuned accuracy", ""]
    if res.predictor_rows:
        from blox_env.predictors.evaluation import summarise

        stats = summarise(res.predictor_rows)
        sizes = sorted({k[1] for k in stats})
        md += ["| predictor | " + " | ".join(f"n = {s}" for s in sizes) + " |", "|" + " --- |" * (len(sizes) + 1)]
        for p in sorted({k[0] for k in stats}):
            md.append(f"| {p} | " + " | ".join(f"{stats[(p, s)][0]:.2f} ± {stats[(p, s)][1]:.2f}"
                                               if (p, s) in stats else "n/a" for s in sizes) + " |")
        md += ["", f"Spearman on held-out models, FT{full_e} accuracy with {full[0]}.", "", f"![Q4]({figs['q4']})", ""]
    else:
        md += ["Too few fine-tuned models for the predictor protocol.", ""]
    md += ["## Q5: short vs full fine-tuning", "", "| teacher | Spearman(FT short, FT full) |", "| --- | --- |"]
    md += [f"| {t} | {_f(n['q5'][t])} |" for t in full]
    md += ["", "Search with FT-short then FT-full of the top models: rows `FT-short + FT-full` in Table 2.", "",
           f"![Q5]({figs['q5']})", ""]
    if "q6" in n:
        md += ["## Q6: does the teacher matter?", "",
               f"Spearman(fine-tuned with {full[0]}, with {full[-1]}): FT{full_e} {_f(n['q6'])}, FT{short_e} "
               f"{_f(n['q6_short'])}. Iterative teacher: row `iterative teacher` in Table 2 (tables hold "
               f"fine-tunings of {', '.join(full)} only, so a promoted teacher is replaced by the tabulated teacher "
               "nearest in normal accuracy).", "", f"![Q6]({figs['q6']})", ""]
    md += ["## Table 2: conventional vs blockwise search", "",
           f"{len(res.traces[next(iter(res.traces))])} searches per method; budgets in seconds of recorded compute "
           "(normal training, or fine-tuning plus each distilled block and the teacher once per search). Reported: "
           f"the normal test top-1 (seed mean) of each search's answer, mean ± std. Benchmark best: model "
           f"{res.best_index} ({res.best_report:.2f}); target {res.target:.2f} (the top "
           f"{100 * (1 - float(np.mean(np.array(list(res.report.values())) < res.target))):.0f} % of models).", "",
           _table2(res), "", f"![Table 2]({figs['table2']})", ""]
    md += ["Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in res.seconds.items()) + "."]
    if res.benchmark:
        md += ["", *benchmark_lines(res.benchmark)]
    (out / "study.md").write_text("\n".join(md) + "\n")
    summary = [{k: v for k, v in r.items()} for r in res.summary]
    (out / "study.json").write_text(json.dumps({"numbers": n, "summary": summary, "budgets": list(res.budgets),
                                                "target": res.target, "seconds": res.seconds,
                                                "benchmark": res.benchmark}, indent=1, default=float))
    return out / "study.md"
