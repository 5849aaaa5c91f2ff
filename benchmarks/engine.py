"""Models trained per hour with the Blox-mini recipe: the plain engine against the fast one, same run.

Run: ``python benchmarks/engine.py [--archs 12] [--rounds 2] [--seed 0] [--jobs 1]``.
Samples ``--archs`` models of the Blox-mini space (seeded), trains each with ``digits_mini`` under the
plain engine (``fast_kernels(False)``: oneDNN convolutions, per-tensor SGD, deep copies of the best
weights) and under the fast one, interleaved A B A B (the order alternates per round, so drift in the
machine's load falls on both), in one process with one torch thread. Reports models/hour of each
engine (total models / total seconds), their ratio, and the per-model ratios. ``--jobs`` is the
number of worker processes: only 1 here (``benchmarks/pool.py`` measures the 2-process pool).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from common import machine

from blox_env.build.mini import MINI_SPACE
from blox_env.datasets.images import load_digits
from blox_env.kernels import fast_kernels
from blox_env.space import Arch
from blox_env.training.recipes import DIGITS_MINI
from blox_env.training.train import train_model

BCONV_BLOCKS = {11, 23}  # Blox-mini blocks holding a bottleneck (depthwise 5x5) op


def sample(n: int, seed: int) -> list[Arch]:
    """``n`` distinct models of the Blox-mini space (seeded)."""
    idx = MINI_SPACE.indices()
    pick = np.random.default_rng(seed).choice(len(idx), size=min(n, len(idx)), replace=False)
    return [Arch.from_index(int(idx[i])) for i in sorted(pick)]


def time_one(arch: Arch, data: object, *, fast: bool, seed: int) -> tuple[float, float]:
    """Seconds of one whole training (``train_model``) under the plain or the fast engine, and its test top-1."""
    with fast_kernels(fast):
        t = time.perf_counter()
        result = train_model(arch, data, recipe=DIGITS_MINI, seed=seed, device="cpu")
        return time.perf_counter() - t, result.test_top1


def seed_spread(archs: list[Arch]) -> float:
    """Mean |test top-1 of seed 0 - seed 1| of these models in the bundled Blox-mini store (the noise scale)."""
    from blox_env.datasets.store.core import open_store

    st = open_store()
    rows = [a.index for a in archs]
    return float(np.mean(np.abs(st.get("test_top1", rows, seed=0, run="digits")
                                - st.get("test_top1", rows, seed=1, run="digits"))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archs", type=int, default=12, help="models sampled from the Blox-mini space")
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds per model (order alternates per round)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model sample")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (1 here; benchmarks/pool.py: more)")
    args = parser.parse_args()
    if args.jobs != 1:
        sys.exit("--jobs: this script measures one process; for a pool run benchmarks/pool.py --jobs N")
    torch.set_num_threads(1)
    data = load_digits(seed=0)
    archs = sample(args.archs, args.seed)
    for fast in (False, True):  # warm-up: oneDNN primitives, tap matrices
        time_one(archs[0], data, fast=fast, seed=0)
    secs: dict[bool, dict[int, list[float]]] = {False: {}, True: {}}
    acc: dict[bool, dict[int, float]] = {False: {}, True: {}}
    start = time.perf_counter()
    for r in range(args.rounds):
        for a in archs:
            for fast in ((False, True) if r % 2 == 0 else (True, False)):
                seconds, acc[fast][a.index] = time_one(a, data, fast=fast, seed=0)  # seeded: same every round
                secs[fast].setdefault(a.index, []).append(seconds)
    wall = time.perf_counter() - start
    n = len(archs) * args.rounds
    total = {f: sum(sum(v) for v in secs[f].values()) for f in (False, True)}
    per_hour = {f: 3600.0 * n / total[f] for f in (False, True)}
    ratios = [statistics.median(secs[False][a.index]) / statistics.median(secs[True][a.index]) for a in archs]
    bconv = [any(b in BCONV_BLOCKS for b in a.blocks) for a in archs]

    print(f"{time.strftime('%Y-%m-%d')}, {machine()}, torch {torch.__version__}, 1 thread, 1 process; recipe "
          f"digits_mini; {len(archs)} models of Blox-mini (sample seed {args.seed}, {sum(bconv)} with a bottleneck "
          f"block) x {args.rounds} rounds, interleaved; {wall:.0f} s in all\n")
    print("| engine | models/hour (1 core) | mean s/model |\n| --- | --- | --- |")
    for f, name in ((False, "plain (before)"), (True, "fast")):
        print(f"| {name} | {per_hour[f]:.0f} | {total[f] / n:.2f} |")
    print(f"| **ratio** | **{per_hour[True] / per_hour[False]:.2f}x** | |\n")
    print("| model (blocks) | bottleneck | plain s | fast s | ratio |\n| --- | --- | --- | --- | --- |")
    for a, has_b, ratio in zip(archs, bconv, ratios):
        print(f"| {a.index} {a.blocks} | {'yes' if has_b else 'no'} | {statistics.median(secs[False][a.index]):.2f} | "
              f"{statistics.median(secs[True][a.index]):.2f} | {ratio:.2f}x |")
    with_b = [r for r, b in zip(ratios, bconv) if b]
    without = [r for r, b in zip(ratios, bconv) if not b]
    print(f"\nmedian per-model ratio: {statistics.median(ratios):.2f}x (with a bottleneck block "
          f"{statistics.median(with_b) if with_b else float('nan'):.2f}x, without "
          f"{statistics.median(without) if without else float('nan'):.2f}x)")
    diffs = [abs(acc[True][a.index] - acc[False][a.index]) for a in archs]
    print(f"test top-1 (seed 0), mean over the models: plain {statistics.mean(acc[False].values()):.1f}%, fast "
          f"{statistics.mean(acc[True].values()):.1f}%; mean |plain - fast| per model {statistics.mean(diffs):.1f} "
          f"points (rounding-level differences grow in training); the bundled store's seed 0 vs seed 1 on the same "
          f"models: {seed_spread(archs):.1f} points")


if __name__ == "__main__":
    main()
