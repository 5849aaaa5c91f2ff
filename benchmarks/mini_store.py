"""Figures of a built Blox-mini store (issue 17's "must show" for v2): discrimination, cost ratios, build phases.

Reads the store only (nothing is trained):

- test top-1 range over the models (seed mean), Spearman of test top-1 between every two seeds (the noise
  ceiling of the benchmark), and the same for the best validation top-1;
- recorded cost of fine-tuning (short and full, with M1 and M5) as a fraction of the same model's normal
  training (medians over the models), the paper's premise: short <= 10 %, full ~ 1;
- the build's compute by phase from the stored times: normal runs (sum of recorded training seconds), and the
  blockwise builder's wall seconds per phase (teachers, distillation, fine-tuning) as it recorded them;
- the teachers and their ranks, and the mean fine-tuned accuracies.

``python benchmarks/mini_store.py [STORE]`` (default: the bundled ``blox_env/data/blox-mini.zip``).
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", nargs="?", default=None, help="store folder or zip (default: the bundled Blox-mini)")
    args = ap.parse_args()

    from scipy.stats import spearmanr

    from blox_env.datasets.store.blockwise import BlockwiseTables
    from blox_env.datasets.store.core import open_store
    from blox_env.datasets.store.location import bundled_mini_path

    path = args.store or bundled_mini_path()
    st = open_store(path)
    info = st.run_info()
    seeds = info.seeds
    print(f"{time.strftime('%Y-%m-%d')}, {machine()}; store {path} ({st.attrs.get('mini_version', '?')}: "
          f"{len(st)} models, seeds {list(seeds)}, {info.epochs} epochs, recipe {info.attrs['recipe']['name']})\n")
    test = {s: st.get("test_top1", seed=s, run=info.name) for s in seeds}
    val = {s: st.get("val_top1", seed=s, run=info.name) for s in seeds}
    mean_test = np.mean([test[s] for s in seeds], axis=0)
    print("| measurement | value |\n| --- | --- |")
    print(f"| test top-1 (seed mean) min .. max | {mean_test.min():.2f} .. {mean_test.max():.2f} "
          f"({mean_test.max() - mean_test.min():.1f} points) |")
    for s in seeds:
        print(f"| test top-1 seed {s} min .. max | {test[s].min():.2f} .. {test[s].max():.2f} |")
    for a, b in combinations(seeds, 2):
        print(f"| Spearman seed {a} vs {b}: test top-1 / best val top-1 | "
              f"{spearmanr(test[a], test[b]).statistic:.3f} / {spearmanr(val[a], val[b]).statistic:.3f} |")
    normal_t = np.stack([st.get("train_time_s", seed=s, run=info.name) for s in seeds])
    print(f"| normal training, recorded seconds: median / mean / sum over all (model, seed) | "
          f"{np.median(normal_t):.2f} / {normal_t.mean():.2f} / {normal_t.sum() / 3600:.2f} h |")
    wall = [st.get("wall_time_s", seed=s, run=info.name) for s in seeds] if "wall_time_s" in st.metrics(
        info.name) else []
    if wall:
        print(f"| normal runs, summed per-row wall seconds | {np.sum(wall) / 3600:.2f} h |")
    try:
        tables = BlockwiseTables(st)
    except Exception as exc:  # noqa: BLE001 - a store without tables still gets the figures above
        print(f"\n(no blockwise tables: {exc})")
        return
    per_model = normal_t.mean(axis=0)
    short_e, full_e = min(tables.ft_epochs), max(tables.ft_epochs)
    for t in tables.full_teachers():
        for e in (short_e, full_e):
            ft = tables.finetuned(t, e, metric="train_time_s")
            acc = tables.finetuned(t, e)
            print(f"| FT{e} with {t}: recorded seconds / normal training (median over models) | "
                  f"{np.nanmedian(ft / per_model):.3f} (mean test top-1 {np.nanmean(acc):.2f}) |")
    secs = tables.attrs.get("build", {}).get("seconds", {})
    for phase, s in secs.items():
        print(f"| blockwise build, {phase} (wall, as recorded) | {float(s) / 60:.1f} min |")
    normal = tables.normal("val_top1")
    order = np.argsort(-normal, kind="stable")
    rank = {int(st.index[r]): i + 1 for i, r in enumerate(order)}
    print("\nteachers: " + ", ".join(f"{n} = {a.index} {a.blocks} (rank {rank[a.index]}, test "
                                     f"{mean_test[st.rows([a])[0]]:.2f})" for n, a in tables.teachers.items()))


if __name__ == "__main__":
    main()
