"""Small plotting helpers shared by reports (matplotlib with the Agg backend, imported on use)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["new_axes", "save_axes"]


def new_axes(figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A figure and axes drawn off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)


def save_axes(fig: Any, ax: Any, path: str | Path, *, title: str, xlabel: str, ylabel: str,
              legend: bool = True, grid: bool = True) -> Path:
    """Label, add legend and grid, write a PNG (creating folders), close the figure."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend(fontsize=8)
    if grid:
        ax.grid(alpha=0.3)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
