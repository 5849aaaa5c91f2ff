"""The predictor evaluation protocol: train sizes x seeds x predictors on a store, held-out metrics, a plot.

For each seed, the store's models are shuffled once; the first ``n`` are the
training set for train size ``n`` and a fixed held-out set (the last
``test_size`` models, disjoint from every training set) is the test set, so all
sizes and predictors of a seed see the same test models. Targets are the
store's metric (default: best validation top-1, mean over the run's seeds);
the noise ceiling is the Spearman between the run's seed 0 and seed 1 on the
same held-out models. Fit and predict times are recorded per fit. With
``features=ProxyFeatures(...)`` the predictors that take features (:data:`FEATURE_PREDICTORS`)
get them, fitted on each training set; the rows then say ``"features": True``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.errors import InvalidArgumentError
from blox_env.predictors.metrics import evaluate_predictions
from blox_env.progress import ProgressBar
from blox_env.space import Arch

__all__ = ["FEATURE_PREDICTORS", "PREDICTORS", "EvalSpec", "make_predictor", "noise_ceiling", "run_evaluation",
           "summarise"]

PREDICTORS = ("gcn", "brp", "gin", "mlp", "tree", "donna", "lana", "constant")
FEATURE_PREDICTORS = ("gcn", "gin", "mlp", "tree")
"""The predictors that accept per-model proxy features (``features=``)."""


@dataclass(frozen=True)
class EvalSpec:
    """What to evaluate. ``fast`` shrinks the graph predictors for CPU runs (documented in BENCHMARKS.md)."""

    predictors: tuple[str, ...] = ("gcn", "brp", "gin", "mlp", "tree")
    train_sizes: tuple[int, ...] = (25, 50, 100, 150)
    seeds: int = 5
    test_size: int = 60
    metric: str = "val_top1"
    target_seed: int | str = "mean"
    run: str | None = None
    fast: bool = True

    def __post_init__(self) -> None:
        unknown = [p for p in self.predictors if p not in PREDICTORS]
        if unknown:
            raise InvalidArgumentError(f"unknown predictor(s) {unknown}: allowed {', '.join(PREDICTORS)}")
        if self.seeds < 1 or self.test_size < 2 or not self.train_sizes or min(self.train_sizes) < 2:
            raise InvalidArgumentError(f"need seeds >= 1, test_size >= 2 and train sizes >= 2, got {self}")


def make_predictor(name: str, *, fast: bool = True, signatures: dict[str, np.ndarray] | None = None,
                   features: Any = None) -> Any:
    """A fresh predictor by name (BRP-NAS defaults, or the documented CPU settings when ``fast``); ``features``
    (a :class:`~blox_env.predictors.features.ProxyFeatures`) for the :data:`FEATURE_PREDICTORS` only."""
    from blox_env import predictors as P  # noqa: N812 - lazy module of classes

    if features is not None and name not in FEATURE_PREDICTORS:
        raise InvalidArgumentError(f"{name} takes no proxy features: only {', '.join(FEATURE_PREDICTORS)} do")
    if name == "gcn":
        return P.GCNPredictor(hidden=128, epochs=120, batch_size=32, features=features) if fast else \
            P.GCNPredictor(features=features)
    if name == "gin":
        return P.GINPredictor(hidden=128, epochs=120, batch_size=32, features=features) if fast else \
            P.GINPredictor(features=features)
    if name == "brp":
        return P.BRPPredictor(hidden=128, epochs=60) if fast else P.BRPPredictor()
    if name == "mlp":
        return P.MLPPredictor(features=features)
    if name == "tree":
        return P.TreePredictor(features=features)
    if name == "constant":
        return P.ConstantPredictor()
    if name in ("donna", "lana"):
        if signatures is None:
            raise InvalidArgumentError(f"{name} needs block signatures (a block library of the store's teacher)")
        cls = P.DonnaPredictor if name == "donna" else P.LanaPredictor
        key = "distill_loss" if name == "donna" else "lana_delta"
        return cls(signatures=signatures[key])
    raise InvalidArgumentError(f"unknown predictor {name!r}: allowed {', '.join(PREDICTORS)}")


def noise_ceiling(store: Any, *, metric: str = "val_top1", run: str | None = None,
                  models: np.ndarray | None = None) -> float:
    """Spearman between the run's first two seeds (the benchmark's own repeatability)."""
    from scipy.stats import spearmanr

    seeds = store.run_info(run).seeds
    if len(seeds) < 2:
        return float("nan")
    a = store.get(metric, models, seed=seeds[0], run=run)
    b = store.get(metric, models, seed=seeds[1], run=run)
    return float(spearmanr(a, b).statistic)


def run_evaluation(store: Any, *, spec: EvalSpec = EvalSpec(), signatures: dict[str, np.ndarray] | None = None,
                   features: Any = None, progress: bool = True) -> list[dict[str, Any]]:
    """One result row per (predictor, train size, seed); ``features``: proxy features for every predictor."""
    index = store.index
    y_all = store.get(spec.metric, seed=spec.target_seed, run=spec.run)
    ok = np.isfinite(y_all)
    index, y_all = index[ok], y_all[ok]
    if max(spec.train_sizes) + spec.test_size > len(index):
        raise InvalidArgumentError(
            f"train size {max(spec.train_sizes)} + test size {spec.test_size} exceed the {len(index)} models "
            f"with a {spec.metric} value"
        )
    jobs = [(s, n, p) for s in range(spec.seeds) for n in spec.train_sizes for p in spec.predictors]
    rows = []
    with ProgressBar(len(jobs), description="predictor fits", enabled=progress, keep=True) as bar:
        for seed in range(spec.seeds):
            order = np.random.default_rng(seed).permutation(len(index))
            test = order[-spec.test_size :]
            test_archs = [Arch.from_index(int(i)) for i in index[test]]
            ceiling = noise_ceiling(store, metric=spec.metric, run=spec.run, models=index[test])
            for n in spec.train_sizes:
                train = order[:n]
                archs = [Arch.from_index(int(i)) for i in index[train]]
                for name in spec.predictors:
                    pred = make_predictor(name, fast=spec.fast, signatures=signatures, features=features)
                    t = time.perf_counter()
                    pred.fit(archs, y_all[train], seed=seed)
                    fit_s = time.perf_counter() - t
                    t = time.perf_counter()
                    y_hat = pred.predict(test_archs)
                    predict_s = time.perf_counter() - t
                    scores = evaluate_predictions(y_all[test], y_hat, top_k=(5,))
                    rows.append({"predictor": name, "train_size": n, "seed": seed, "fit_s": fit_s,
                                 "predict_s": predict_s, "noise_ceiling": ceiling, **scores,
                                 **({"features": True} if features is not None else {})})
                    bar.update()
    return rows


def summarise(rows: Sequence[dict[str, Any]], *, key: str = "spearman") -> dict[tuple[str, int], tuple[float, float]]:
    """(predictor, train size) -> (mean, std) of a metric over seeds."""
    groups: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        groups.setdefault((r["predictor"], r["train_size"]), []).append(float(r[key]))
    from blox_env.datasets.store.encoding import quiet_nan

    with quiet_nan():  # a constant predictor's correlations are NaN: the mean is NaN, quietly
        return {k: (float(np.nanmean(v)), float(np.nanstd(v))) for k, v in groups.items()}


def save_results(rows: Sequence[dict[str, Any]], path: str | Path, *, spec: EvalSpec, store: Any = None) -> Path:
    """Rows and the spec as JSON, with (``store`` given) the data provenance of the store under ``benchmark``."""
    from blox_env.datasets.store.provenance import describe_benchmark

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"spec": asdict(spec), "rows": list(rows)}
    if store is not None:
        doc["benchmark"] = describe_benchmark(store)
    out.write_text(json.dumps(doc, indent=1, default=float))
    return out
