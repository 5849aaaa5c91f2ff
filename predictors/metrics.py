"""How well a predictor ranks and fits: Spearman, Kendall tau, Pearson, MAE, precision@top-k.

Rank correlations are what NAS cares about (a search only needs the order);
MAE only means something for predictors that regress the metric (not for the
BRP or raw LANA scores). ``precision@k`` is the share of the truly best ``k``
models among the predicted best ``k`` ("best" = highest unless
``higher_is_better=False``). A constant prediction has no defined correlation:
the correlations are then NaN, not an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from blox_env.errors import InvalidArgumentError

__all__ = ["evaluate_predictions", "precision_at_k"]


def _as_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if len(t) != len(p):
        raise InvalidArgumentError(f"y_true has {len(t)} values, y_pred {len(p)}: they must match")
    if len(t) < 2:
        raise InvalidArgumentError(f"need at least 2 models to evaluate, got {len(t)}")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise InvalidArgumentError("y_true and y_pred must be finite (drop models with missing values first)")
    return t, p


def precision_at_k(y_true: Any, y_pred: Any, *, k: int, higher_is_better: bool = True) -> float:
    """Share of the true top-``k`` models found in the predicted top-``k`` (ties broken by position)."""
    t, p = _as_pair(y_true, y_pred)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(t):
        raise InvalidArgumentError(f"k must be an integer in 1..{len(t)} (the number of models), got {k!r}")
    sign = -1.0 if higher_is_better else 1.0
    top_true = np.argsort(sign * t, kind="stable")[: int(k)]
    top_pred = np.argsort(sign * p, kind="stable")[: int(k)]
    return len(np.intersect1d(top_true, top_pred)) / int(k)


def evaluate_predictions(y_true: Any, y_pred: Any, *, top_k: int | Sequence[int] = (10,),
                         higher_is_better: bool = True) -> dict[str, float]:
    """``{spearman, kendall_tau, pearson, mae, precision@k...}`` of predictions against ground truth.

    ``top_k`` values larger than the number of models are clipped to it.
    """
    from scipy import stats

    t, p = _as_pair(y_true, y_pred)
    ks = [top_k] if isinstance(top_k, (int, np.integer)) else list(top_k)
    if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise InvalidArgumentError(f"top_k must be positive integers, got {top_k!r}")
    constant = np.ptp(t) == 0 or np.ptp(p) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {
            "spearman": float("nan") if constant else float(stats.spearmanr(t, p)[0]),
            "kendall_tau": float("nan") if constant else float(stats.kendalltau(t, p)[0]),
            "pearson": float("nan") if constant else float(stats.pearsonr(t, p)[0]),
            "mae": float(np.mean(np.abs(t - p))),
        }
    for k in ks:
        out[f"precision@{int(k)}"] = precision_at_k(t, p, k=min(int(k), len(t)), higher_is_better=higher_is_better)
    return out
