"""Blockwise NAS on digits, end to end: train a teacher, distil a block library, fine-tune 5 models.

    python examples/blockwise_digits.py [--store /tmp/blockwise-digits.zarr] [--models 5]

Prints each model's normally trained accuracy next to its blockwise (distilled + KD fine-tuned)
accuracy. Everything lands in the store, so a second run is instant.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import spearmanr

from blox_env.datasets.images import load_digits
from blox_env.rewards.live import LiveReward
from blox_env.space import Arch, SubSpace, sample_archs
from blox_env.training.distill import DistillConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="/tmp/blockwise-digits.zarr")
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--teacher", type=int, default=50000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_digits(seed=args.seed)
    blocks = (0, 4, 8, 9, 10, 11, 21, 30, 40)
    space = SubSpace((blocks, blocks, blocks))
    normal = LiveReward(store=args.store, data=data, seed=args.seed, progress=True)
    blockwise = LiveReward(store=normal.store, data=data, seed=args.seed, mode="blockwise", teacher=args.teacher,
                           distill=DistillConfig(epochs=2, seed=args.seed), progress=True)
    print(f"teacher {args.teacher}: training (or loading) ...")
    blockwise.ensure_teacher()
    print(f"distilling {len(blocks)} blocks x 3 stages in one shared pass ...")
    blockwise.ensure_blocks([(s, b) for s in range(3) for b in blocks])
    archs = sample_archs(args.models, seed=args.seed, space=space, replace=False)
    rows = []
    for arch in archs:
        n = normal.evaluate(arch)
        b = blockwise.evaluate(arch)
        rows.append((arch, n.metrics["test_top1"], b.metrics["test_top1"], n.cost, b.metrics["train_time_s"]))
    print(f"\n{'model':>7} {'blocks':>14} {'normal test':>12} {'fine-tuned test':>16} {'normal s':>9} {'FT s':>6}")
    for arch, nt, bt, ns, bs in rows:
        print(f"{arch.index:>7} {str(arch.blocks):>14} {nt:>12.2f} {bt:>16.2f} {ns:>9.1f} {bs:>6.1f}")
    rho = spearmanr([r[1] for r in rows], [r[2] for r in rows]).statistic
    print(f"\nSpearman(normal, fine-tuned) over {len(rows)} models: {rho:.2f}; "
          f"mean normal {np.mean([r[1] for r in rows]):.2f}, mean fine-tuned {np.mean([r[2] for r in rows]):.2f}")
    teacher_acc = blockwise.library.attrs["test_top1"]
    print(f"teacher {Arch.from_index(args.teacher).blocks} test top-1 {teacher_acc:.2f}")


if __name__ == "__main__":
    main()
