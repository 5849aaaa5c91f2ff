"""The predictor evaluation's figure: Spearman vs number of training models, one line per predictor."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.predictors.evaluation import summarise
from blox_env.reports.plotting import new_axes, save_axes

__all__ = ["plot_results"]


def plot_results(rows: Sequence[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Spearman vs train size per predictor (mean and std band over seeds), as a PNG."""
    summary = summarise(rows)
    fig, ax = new_axes((6, 4))
    for name in dict.fromkeys(r["predictor"] for r in rows):
        sizes = sorted({n for (p, n) in summary if p == name})
        mean = np.array([summary[(name, n)][0] for n in sizes])
        std = np.array([summary[(name, n)][1] for n in sizes])
        ax.plot(sizes, mean, marker="o", label=name)
        ax.fill_between(sizes, mean - std, mean + std, alpha=0.15)
    ceilings = np.array([r["noise_ceiling"] for r in rows], dtype=np.float64)
    ceiling = float(ceilings[np.isfinite(ceilings)].mean()) if np.isfinite(ceilings).any() else float("nan")
    if np.isfinite(ceiling):
        ax.axhline(ceiling, color="grey", linestyle="--", label=f"noise ceiling {ceiling:.2f}")
    return save_axes(fig, ax, path, title=title or "predictor comparison", xlabel="training models",
                     ylabel="Spearman on held-out models")
