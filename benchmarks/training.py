"""Benchmark the training engine on digits (CPU, one torch thread).

Run: ``python benchmarks/training.py [--blocks 0,4,8,9,10,11,21,30,40] [--distill-epochs 2]``.
Measures seconds per normal training (digits_mini), per distillation of all candidate blocks of
all 3 stages in one shared pass vs one by one, and per fine-tuning; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import machine

from blox_env.datasets.images import load_digits
from blox_env.rewards.live import LiveReward
from blox_env.space import Arch
from blox_env.training.distill import DistillConfig, distill_blocks
from blox_env.training.recipes import DIGITS_MINI
from blox_env.training.train import train_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", default="0,4,8,9,10,11,21,30,40", help="candidate blocks per stage")
    parser.add_argument("--distill-epochs", type=int, default=2)
    parser.add_argument("--teacher", type=int, default=50000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_digits(seed=0)
    blocks = [int(b) for b in args.blocks.split(",")]
    cpu = torch.device("cpu")

    normal = []
    for b in blocks[:3]:
        arch = Arch.from_blocks(b, blocks[-1 - len(normal)], b)
        t = time.perf_counter()
        train_model(arch, data, recipe=DIGITS_MINI, seed=0, device="cpu")
        normal.append(time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as tmp:
        backend = LiveReward(store=Path(tmp) / "bench.zarr", data=data, recipe=DIGITS_MINI, mode="blockwise",
                             teacher=args.teacher, distill=DistillConfig(epochs=args.distill_epochs))
        t = time.perf_counter()
        backend.ensure_teacher()
        teacher_s = time.perf_counter() - t
        teacher = backend.library.teacher_model()
        cands = [(s, b) for s in range(3) for b in blocks]
        cfg = backend.distill
        t = time.perf_counter()
        shared = distill_blocks(teacher, data, candidates=cands, config=cfg, device=cpu)
        shared_s = time.perf_counter() - t
        t = time.perf_counter()
        for c in cands:
            distill_blocks(teacher, data, candidates=[c], config=cfg, device=cpu)
        single_s = time.perf_counter() - t
        for r in shared.values():
            backend.library.save(r, cfg)
        ft = []
        for b in blocks[:3]:
            arch = Arch.from_blocks(b, blocks[1], blocks[-1])
            t = time.perf_counter()
            backend.evaluate(arch)
            ft.append(time.perf_counter() - t)

    print(f"{time.strftime('%Y-%m-%d')}, {machine()}, torch threads 1; digits 1,200/297/300, recipe digits_mini")
    print("| measurement | value |\n| --- | --- |")
    print(f"| normal training of one model (8 epochs), median of {len(normal)} | {statistics.median(normal):.1f} s |")
    print(f"| teacher training (model {args.teacher}) | {teacher_s:.1f} s |")
    print(f"| distillation of {len(cands)} candidate blocks ({len(blocks)} per stage x 3 stages, "
          f"{args.distill_epochs} epochs), shared teacher pass | {shared_s:.1f} s |")
    print(f"| same, blocks distilled one by one | {single_s:.1f} s |")
    print(f"| speed-up of the shared pass | {single_s / shared_s:.2f}x |")
    print(f"| fine-tuning of one assembled model (8 epochs, KD), median of {len(ft)} | {statistics.median(ft):.1f} s |")


if __name__ == "__main__":
    main()
