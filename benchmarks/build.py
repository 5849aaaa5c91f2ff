"""Benchmark the builder (serial vs process pool) and report Blox-mini's discrimination figures.

Run: ``python benchmarks/build.py [--models 6]``: trains the same ``--models`` x 2 seeds of the
Blox-mini space with the digits_mini recipe serially and with a 2-process pool (fresh stores),
then prints the speed-up and the bundled store's figures as a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine
from scipy.stats import spearmanr

from blox_env.build.benchmark import build_benchmark
from blox_env.build.mini import MINI_SPACE
from blox_env.datasets.store.core import open_store
from blox_env.datasets.store.location import bundled_mini_path
from blox_env.space import Arch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=6)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    archs = [Arch.from_index(int(i)) for i in rng.choice(MINI_SPACE.indices(), args.models, replace=False)]
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("serial", "process"):
            t = time.perf_counter()
            build_benchmark(Path(tmp) / f"{kind}.zarr", archs=archs, run="digits", recipe="digits_mini",
                            data="digits", seeds=(0, 1), executor=kind, jobs=2, progress=False)
            times[kind] = time.perf_counter() - t
    print(f"{time.strftime('%Y-%m-%d')}, {machine()}")
    print("| measurement | value |\n| --- | --- |")
    n = 2 * args.models
    print(f"| {n} trainings (digits_mini), serial | {times['serial']:.1f} s ({times['serial'] / n:.1f} s each) |")
    print(f"| same, process pool of 2 workers | {times['process']:.1f} s ({times['process'] / n:.1f} s each) |")
    print(f"| speed-up | {times['serial'] / times['process']:.2f}x |")
    path = bundled_mini_path()
    if path is None:
        return
    mini = open_store(path)
    test = mini.get("test_top1", seed="mean")
    rho = spearmanr(mini.get("test_top1", seed=0), mini.get("test_top1", seed=1)).statistic
    rho_val = spearmanr(mini.get("val_top1", seed=0), mini.get("val_top1", seed=1)).statistic
    wall = np.nansum([mini.get("wall_time_s", seed=s) for s in mini.run_info().seeds])
    print(f"| Blox-mini models x seeds | {len(mini)} x {len(mini.run_info().seeds)} |")
    print(f"| Blox-mini test top-1 range (seed mean) | {test.min():.2f} .. {test.max():.2f} "
          f"({test.max() - test.min():.1f} points) |")
    print(f"| Blox-mini Spearman seed 0 vs seed 1, test top-1 | {rho:.3f} |")
    print(f"| Blox-mini Spearman seed 0 vs seed 1, best val top-1 | {rho_val:.3f} |")
    print(f"| Blox-mini summed training wall time (all rows) | {wall / 60:.1f} min |")
    print(f"| Blox-mini packaged size | {path.stat().st_size / 1024:.0f} KiB |")


if __name__ == "__main__":
    main()
