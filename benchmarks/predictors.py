"""The predictor evaluation on Blox-mini: every predictor x train sizes x 5 seeds, plus GCN throughput.

Run: ``python benchmarks/predictors.py [--store build/blox-mini-v2.zarr] [--seeds 5] [--sizes 25,50,100,200,400]
[--test-size 200] [--out docs/predictors]``. DONNA and LANA need block signatures: the script reads those of the bundled
store's blockwise tables (teacher M1, the best seed-mean validation model, all blocks distilled for 10
epochs as the original trainer does). Prints a Markdown table and writes JSON + PNG.

``--proxy-features`` runs only the with/without comparison of the predictors that take zero-cost proxy features
(MLP, tree, GCN; ``blox_env.predictors.ProxyFeatures``: all the store's proxies, seed-mean, signed log1p then
standardised on each training set): the same splits, train sizes and seeds, target ``--target`` (default: the
seed-mean normal test top-1, the proxies section's target); Spearman and Kendall tau on the held-out models,
mean ± standard error over seeds, and the paired difference. Writes ``<out>/<name>-proxy-features.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import machine

from blox_env.datasets.store.blockwise import BlockwiseTables
from blox_env.datasets.store.core import open_store
from blox_env.datasets.store.location import bundled_mini_path
from blox_env.predictors.evaluation import EvalSpec, run_evaluation, save_results, summarise
from blox_env.predictors.features import ProxyFeatures
from blox_env.reports.predictors import plot_results
from blox_env.space import Arch


def signatures_for(mini, teacher: str = "M1") -> tuple[dict[str, np.ndarray], int, int]:
    """The bundled tables' signatures of ``teacher`` at the longest distillation; its index; the length."""
    tables = BlockwiseTables(mini)
    epochs = max(tables.distill_epochs)
    return tables.signatures(teacher, epochs), tables.teachers[teacher].index, epochs


def _mean_se(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def proxy_feature_comparison(mini, *, sizes: tuple[int, ...], seeds: int, test_size: int, target: str,
                             out: Path, name: str) -> None:
    """Each feature-taking predictor with and without the store's proxies: the same splits; a Markdown table."""
    features = ProxyFeatures.from_store(mini)
    spec = EvalSpec(predictors=("mlp", "tree", "gcn"), train_sizes=sizes, seeds=seeds, test_size=test_size,
                    metric=target)
    start = time.perf_counter()
    without = run_evaluation(mini, spec=spec)
    with_ = run_evaluation(mini, spec=spec, features=features)
    minutes = (time.perf_counter() - start) / 60
    save_results(without + with_, out / f"{name}-proxy-features.json", spec=spec, store=mini)
    print(f"{time.strftime('%Y-%m-%d')}, {machine()}, torch {torch.__version__}, one torch thread; {name} "
          f"({len(mini)} models), target: {target} (mean of the run's seeds), {test_size} held-out models per "
          f"seed, {seeds} seeds; features: {len(features.names)} proxies ({', '.join(features.names)}), init seed "
          f"{features.init_seed}; {minutes:.1f} min")
    print("| predictor | n | Spearman without | Spearman with | Δ Spearman (paired) | Kendall tau without | "
          "Kendall tau with |")
    print("| --- " * 7 + "|")
    for pred in spec.predictors:
        for n in sizes:
            def pick(rows, key, pred=pred, n=n):
                return [r[key] for r in sorted(rows, key=lambda r: r["seed"])
                        if r["predictor"] == pred and r["train_size"] == n]
            cells = []
            for key in ("spearman", "kendall_tau"):
                a, b = pick(without, key), pick(with_, key)
                cells += [_mean_se(a), _mean_se(b)] + ([_mean_se(list(np.subtract(b, a)))] if key == "spearman" else [])
            text = [f"{m:.3f} ± {e:.3f}" if i != 2 else f"{m:+.3f} ± {e:.3f}" for i, (m, e) in enumerate(cells)]
            print(f"| {pred} | {n} | " + " | ".join(text) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", default=None, help="train sizes (default: 25,50,100,200,400, those that fit)")
    parser.add_argument("--test-size", type=int, default=None,
                        help="held-out models per seed (default: 200 on stores of 600+ models, else 60)")
    parser.add_argument("--out", type=Path, default=Path("docs/predictors"))
    parser.add_argument("--store", default=None, help="store with blockwise tables (default: the bundled Blox-mini)")
    parser.add_argument("--proxy-features", action="store_true",
                        help="only compare MLP, tree and GCN with and without the store's zero-cost proxies")
    parser.add_argument("--target", default="test_top1", help="target of --proxy-features (default: test_top1)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    mini = open_store(args.store or bundled_mini_path())
    test_size = args.test_size or (200 if len(mini) >= 600 else 60)
    sizes = (tuple(int(x) for x in args.sizes.split(",")) if args.sizes else
             tuple(n for n in (25, 50, 100, 200, 400) if n <= len(mini) - test_size))
    version = mini.attrs.get("mini_version")
    name = f"blox-mini-{version}" if version and version != "v1" else "blox-mini"  # v1's files keep their name
    if args.proxy_features:
        args.out.mkdir(parents=True, exist_ok=True)
        proxy_feature_comparison(mini, sizes=sizes, seeds=args.seeds, test_size=test_size, target=args.target,
                                 out=args.out, name=name)
        return
    sigs, teacher, sig_epochs = signatures_for(mini)
    seeds = mini.run_info().seeds
    spec = EvalSpec(predictors=("gcn", "brp", "gin", "mlp", "tree", "donna", "lana"), train_sizes=sizes,
                    seeds=args.seeds, test_size=test_size)
    rows = run_evaluation(mini, spec=spec, signatures=sigs)
    args.out.mkdir(parents=True, exist_ok=True)
    save_results(rows, args.out / f"{name}.json", spec=spec, store=mini)  # with the data provenance
    plot_results(rows, args.out / f"{name}.png", title=f"{name}: best val top-1 (seed mean)")
    summary = summarise(rows)
    ceiling = float(np.nanmean([r["noise_ceiling"] for r in rows]))
    print(f"{time.strftime('%Y-%m-%d')}, {machine()}; Blox-mini ({len(mini)} models), target: best val top-1 "
          f"(mean of {len(seeds)} seeds), {spec.test_size} held-out models per seed, {spec.seeds} seeds; signatures "
          f"of the bundled tables: teacher M1 = {teacher} {Arch.from_index(teacher).blocks}, {sig_epochs}-epoch "
          "distillation")
    print("| predictor | " + " | ".join(f"n={n}" for n in spec.train_sizes) + " | fit s (largest n) |")
    print("| --- " * (len(spec.train_sizes) + 2) + "|")
    for name in spec.predictors:
        fit = np.mean([r["fit_s"] for r in rows if r["predictor"] == name and r["train_size"] == max(spec.train_sizes)])
        cells = " | ".join(f"{summary[(name, n)][0]:.3f} ± {summary[(name, n)][1]:.3f}" for n in spec.train_sizes)
        print(f"| {name} | {cells} | {fit:.1f} |")
    print(f"\nnoise ceiling (Spearman seed {seeds[0]} vs seed {seeds[1]} on the held-out models, mean): {ceiling:.3f}")
    best = max(("gcn", "brp", "gin"), key=lambda p: summary[(p, max(spec.train_sizes))][0])
    value = summary[(best, max(spec.train_sizes))][0]
    print(f"best graph predictor at n={max(spec.train_sizes)}: {best} {value:.3f} = {value / ceiling:.2f} x ceiling")
    from blox_env.predictors import GCNPredictor

    archs = [Arch.from_index(int(i)) for i in mini.index]
    y = mini.get("val_top1", seed="mean")
    for hidden in (600, 128):
        g = GCNPredictor(hidden=hidden, epochs=10).fit(archs, y, seed=0)
        print(f"GCN training throughput, hidden {hidden}, batch 64: {g.throughput_:.0f} graphs/s")


if __name__ == "__main__":
    main()
