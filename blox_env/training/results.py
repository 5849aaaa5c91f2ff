"""Training results in a store: run creation with exact encodings, one row per (model, seed).

Shared by the live reward and the builders. A row is *finished* when its
``test_top1`` is present; ``record_result`` / ``record_results`` write
``test_top1`` last, so a row torn by a crash reads as unfinished and is redone,
never half-used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from blox_env.datasets.store.encoding import Encoding
from blox_env.training.train import CURVES, TrainResult

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["finished_mask", "record_result", "record_results", "result_encodings"]

FINALS = ("test_top5", "test_loss", "train_time_s", "wall_time_s", "test_top1")  # test_top1 last: the row's seal


def result_encodings(sizes: dict[str, int]) -> dict[str, Encoding]:
    """Accuracies as exact counts of the split's images, losses and times as floats."""
    enc = {}
    for m in (*CURVES, "test_top1", "test_top5"):
        if "loss" in m:
            enc[m] = Encoding("raw", "float32")
        else:
            split = "train" if "train" in m else "val" if "val" in m else "test"
            n = int(sizes[split])
            enc[m] = Encoding("count", "uint16" if n < 65535 else "uint32", denominator=n, delta=m in CURVES)
    enc["test_loss"] = Encoding("raw", "float32")
    enc["train_time_s"] = Encoding("raw", "float64")
    enc["wall_time_s"] = Encoding("raw", "float64")
    return enc


def record_result(store: BloxStore, run: str, result: TrainResult, *, seed: int) -> None:
    """Write one result as the model's row of ``seed`` (``test_top1`` last)."""
    record_results(store, run, [result], seed=seed)


def record_results(store: BloxStore, run: str, results: Sequence[TrainResult], *, seed: int,
                   extra: dict[str, Sequence[float]] | None = None) -> None:
    """Write several results as their models' rows of ``seed``, one write per metric: curves, then the
    ``extra`` columns (one value per result), then the finals with ``test_top1`` last for every row."""
    if not results:
        return
    archs = [r.arch_index for r in results]
    for m in CURVES:
        store.write_rows(run, m, archs, [r.curves[m] for r in results], seed=seed)
    for name, values in (extra or {}).items():
        store.write_rows(run, name, archs, list(values), seed=seed)
    for m in FINALS:
        store.write_rows(run, m, archs, [getattr(r, m) for r in results], seed=seed)


def finished_mask(store: BloxStore, run: str, seed: int) -> np.ndarray:
    """Boolean per store row: is the row of ``seed`` finished?"""
    return np.isfinite(store.get("test_top1", None, seed=seed, run=run))
