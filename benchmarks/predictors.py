"""The predictor evaluation on Blox-mini: every predictor x train sizes x 5 seeds, plus GCN throughput.

Run: ``python benchmarks/predictors.py [--store build/blox-mini-v2.zarr] [--seeds 5] [--sizes 25,50,100,200,400]
[--test-size 200] [--out docs/predictors]``. DONNA and LANA need block signatures: the script reads those of the bundled
store's blockwise tables (teacher M1, the best seed-mean validation model, all blocks distilled for 10
epochs as the original trainer does). Prints a Markdown table and writes JSON + PNG.
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
from blox_env.reports.predictors import plot_results
from blox_env.space import Arch


def signatures_for(mini, teacher: str = "M1") -> tuple[dict[str, np.ndarray], int, int]:
    """The bundled tables' signatures of ``teacher`` at the longest distillation; its index; the length."""
    tables = BlockwiseTables(mini)
    epochs = max(tables.distill_epochs)
    return tables.signatures(teacher, epochs), tables.teachers[teacher].index, epochs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", default=None, help="train sizes (default: 25,50,100,200,400, those that fit)")
    parser.add_argument("--test-size", type=int, default=None,
                        help="held-out models per seed (default: 200 on stores of 600+ models, else 60)")
    parser.add_argument("--out", type=Path, default=Path("docs/predictors"))
    parser.add_argument("--store", default=None, help="store with blockwise tables (default: the bundled Blox-mini)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    mini = open_store(args.store or bundled_mini_path())
    sigs, teacher, sig_epochs = signatures_for(mini)
    seeds = mini.run_info().seeds
    test_size = args.test_size or (200 if len(mini) >= 600 else 60)
    sizes = (tuple(int(x) for x in args.sizes.split(",")) if args.sizes else
             tuple(n for n in (25, 50, 100, 200, 400) if n <= len(mini) - test_size))
    spec = EvalSpec(predictors=("gcn", "brp", "gin", "mlp", "tree", "donna", "lana"), train_sizes=sizes,
                    seeds=args.seeds, test_size=test_size)
    rows = run_evaluation(mini, spec=spec, signatures=sigs)
    args.out.mkdir(parents=True, exist_ok=True)
    version = mini.attrs.get("mini_version")
    name = f"blox-mini-{version}" if version and version != "v1" else "blox-mini"  # v1's files keep their name
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
