"""How well each zero-cost proxy ranks a store's models: rank correlations, seed stability, cost.

:func:`proxy_report` reads the ``proxies/`` columns and a training run of one store (the proxies'
models only: those with every init seed recorded) and returns, per proxy and for the static ``params``
/ ``flops`` columns: Spearman rho and Kendall tau with the seed-mean normal test accuracy, per
initialisation seed and their mean; the seed-to-seed stability (mean pairwise Spearman between init
seeds); and the cost, mean seconds per model and seed over the mean seconds of one normal training
(``train_time_s`` of the run: recorded on the machine that trained it, which may differ from the one
that timed the proxies). :data:`PUBLISHED` holds the published NAS-Bench-201 figures to set beside them.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from blox_env.errors import InvalidArgumentError

__all__ = ["PUBLISHED", "proxy_report", "report_markdown"]

#: ``|Spearman rho|`` with test accuracy on all 15,625 NAS-Bench-201 models, batch 64 (Abdelfattah et al.,
#: "Zero-Cost Proxies for Lightweight NAS", ICLR 2021, Table 1; the numbers as printed by their released
#: notebook, github.com/SamsungLabs/zero-cost-nas, notebooks/nasbench201_correlations.ipynb).
PUBLISHED = {
    "source": "Abdelfattah et al., ICLR 2021, Table 1 (SamsungLabs/zero-cost-nas, "
              "notebooks/nasbench201_correlations.ipynb); |Spearman| on NAS-Bench-201",
    "nb201_cifar10": {"grad_norm": 0.594, "snip": 0.596, "grasp": 0.514, "fisher": 0.36, "synflow": 0.737,
                      "jacov": 0.731},
    "nb201_cifar100": {"grad_norm": 0.637, "snip": 0.637, "grasp": 0.547, "fisher": 0.385, "synflow": 0.763,
                       "jacov": 0.704},
    "nb201_imagenet16": {"grad_norm": 0.578, "snip": 0.578, "grasp": 0.549, "fisher": 0.327, "synflow": 0.751,
                         "jacov": 0.701},
    "notes": "Their best figure, 0.82, is the pairwise ranking agreement of a vote of synflow, jacob_cov and "
             "snip on CIFAR-10 (0.817), against 0.61 for the reduced-training proxy EcoNAS (abstract).",
}


def _rank_corr(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    from scipy.stats import kendalltau, spearmanr

    keep = np.isfinite(x) & np.isfinite(y)
    n = int(keep.sum())
    if n < 3 or np.ptp(x[keep]) == 0:
        return float("nan"), float("nan"), n
    return float(spearmanr(x[keep], y[keep]).statistic), float(kendalltau(x[keep], y[keep]).statistic), n


def proxy_report(store: Any, *, metric: str = "test_top1", run: str | None = None,
                 proxies: Any = None) -> dict[str, Any]:
    """Rank correlations of every proxy (default: all the store holds) and of params/flops with ``metric``
    (seed-mean over the run's training seeds), per init seed and mean, seed stability and cost."""
    names = list(store.proxy_names()) if proxies is None else list(proxies)
    if not names:
        raise InvalidArgumentError(f"store {store.location} holds no proxies: run `blox build-proxies` first")
    seeds = store.proxy_init_seeds()
    done = store.proxy_done(names).all(axis=0)
    rows = np.flatnonzero(done)
    if len(rows) < 3:
        raise InvalidArgumentError(f"store {store.location}: only {len(rows)} models have every proxy at every "
                                   "init seed; a report needs at least 3")
    archs = store.index[rows]
    y = store.get(metric, archs, seed="mean", run=run)
    train_s = float(np.nanmean(store.get("train_time_s", archs, seed="mean", run=run)))
    out: dict[str, Any] = {"metric": metric, "models": len(rows), "init_seeds": list(seeds),
                           "train_time_s": train_s, "proxies": {}, "static": {}, "published": PUBLISHED,
                           "attrs": {k: v for k, v in store.proxy_attrs().items() if k != "conventions"}}
    for name in names:
        per_seed = {}
        values = []
        for s in seeds:
            v = store.get_proxy(name, archs, init_seed=s)
            values.append(v)
            rho, tau, n = _rank_corr(v, y)
            per_seed[s] = {"spearman": rho, "kendall": tau, "n": n}
        stability = [_rank_corr(a, b)[0] for a, b in combinations(values, 2)]
        seconds = np.stack([store.get_proxy(name, archs, init_seed=s, time=True) for s in seeds])
        out["proxies"][name] = {
            "per_seed": per_seed,
            "spearman_mean": float(np.nanmean([p["spearman"] for p in per_seed.values()])),
            "kendall_mean": float(np.nanmean([p["kendall"] for p in per_seed.values()])),
            "seed_stability": float(np.nanmean(stability)) if stability else float("nan"),
            "seconds_mean": float(np.nanmean(seconds)),
            "cost_in_trainings": float(np.nanmean(seconds)) / train_s if train_s > 0 else float("nan"),
        }
    for name in ("params", "flops"):
        if name in store.metrics(run):
            rho, tau, n = _rank_corr(store.get(name, archs), y)
            out["static"][name] = {"spearman": rho, "kendall": tau, "n": n}
    return out


def report_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table (proxies sorted by mean Spearman), published figures beside ours."""
    pub = report["published"]
    seeds = report["init_seeds"]
    head = ("| proxy | " + " | ".join(f"rho s{s}" for s in seeds) + " | rho mean | tau mean | seed stability "
            "| s / model | x one training | NB201 C10 / C100 |")
    lines = [f"{report['models']} models, {report['metric']} (seed mean), init seeds {seeds}; one normal training "
             f"= {report['train_time_s']:.2f} s", "", head, "|" + "---|" * (len(seeds) + 7)]
    ranked = sorted(report["proxies"].items(), key=lambda kv: -np.nan_to_num(kv[1]["spearman_mean"], nan=-9))
    for name, r in ranked:
        c10, c100 = pub["nb201_cifar10"].get(name), pub["nb201_cifar100"].get(name)
        published = f"{c10:.2f} / {c100:.2f}" if c10 is not None else "-"
        cells = " | ".join(f"{r['per_seed'][s]['spearman']:.3f}" for s in seeds)
        lines.append(f"| {name} | {cells} | {r['spearman_mean']:.3f} | {r['kendall_mean']:.3f} | "
                     f"{r['seed_stability']:.3f} | {r['seconds_mean']:.3f} | {r['cost_in_trainings']:.4f} | "
                     f"{published} |")
    for name, r in report["static"].items():
        lines.append(f"| {name} (static) | " + " | ".join("" for _ in seeds) +
                     f" | {r['spearman']:.3f} | {r['kendall']:.3f} | - | 0 | 0 | - |")
    lines += ["", f"Published: {pub['source']}. {pub['notes']}"]
    return "\n".join(lines)
