"""Live blockwise NAS on digits, end to end: DonnaSearch and the FT-short + FT-full strategy, with a table.

    python examples/blockwise_search.py [--store build/blockwise-search.zarr] [--budget 150] [--seed 0]

The search space is the bundled Blox-mini's (v2: 9 blocks per stage, 729 models), the recipe its
``digits_mini_v2``, and the teacher Blox-mini's best model (its M1). Everything is trained for real on
CPU: the teacher, a block library (all 27 blocks of the space distilled in one shared pass) and every
fine-tuning a search asks for; costs are the recorded seconds (fine-tuning, plus the teacher and each
block once per search). Results land in the store, so a rerun is instant. The table compares each
search's answer with the bundled Blox-mini's normal-training accuracy of the same model, so you see what
the blockwise signal found.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from blox_env import open_store
from blox_env.agents import DonnaSearch, RegularizedEvolution
from blox_env.agents.harness import run_search
from blox_env.agents.strategies import two_stage_search
from blox_env.build.mini import MINI_BUNDLED, MINI_SPACE
from blox_env.datasets.store.blockwise import choose_teachers
from blox_env.rewards.live import LiveReward
from blox_env.space import Arch
from blox_env.training.distill import DistillConfig


def answer(trace: list[dict]) -> dict:
    """The search's answer: the best-objective record among those eligible to be picked."""
    return max((r for r in trace if r.get("select", True)), key=lambda r: r["objective"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="build/blockwise-search.zarr")
    parser.add_argument("--budget", type=float, default=150.0, help="seconds of recorded compute per search")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--short", type=int, default=1, help="short fine-tuning epochs")
    parser.add_argument("--full", type=int, default=max(MINI_BUNDLED.blockwise.ft_epochs),
                        help="full fine-tuning epochs (default: as long as a normal training)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    mini = open_store("blox-mini")  # the bundled store: normal accuracies of every model of the space
    teacher = Arch.from_index(choose_teachers(mini)["M1"]["index"])
    # as the original trainer: 10 epochs with the recipe's SGD, cosine schedule and augmentation
    distill = DistillConfig.from_recipe(MINI_BUNDLED.recipe, seed=args.seed)
    common = {"store": args.store, "data": "digits", "recipe": MINI_BUNDLED.recipe, "mode": "blockwise",
              "teacher": teacher, "distill": distill, "seed": args.seed, "space": MINI_SPACE, "device": "cpu"}
    full = LiveReward(**common, ft_epochs=args.full)
    short = LiveReward(**{**common, "store": full.store}, ft_epochs=args.short)
    t = time.perf_counter()
    print(f"teacher {teacher.index} {teacher.blocks}: training (or loading) ...")
    full.ensure_teacher()
    print(f"distilling the {sum(map(len, MINI_SPACE.blocks))} blocks of the space in one shared pass (or loading) ...")
    full.ensure_blocks([(s, b) for s in range(3) for b in MINI_SPACE.blocks[s]])
    signatures = full.library.signatures(distill)["distill_loss"]
    rows = []
    print("DonnaSearch (full fine-tuning of its picks) ...")
    donna = DonnaSearch(MINI_SPACE, seed=args.seed, signatures=signatures, n_init=6, top=3, cycles=200)
    full.new_run()
    trace = run_search(donna, full, budget=args.budget, cost_unit="seconds", seed=args.seed, metric="val_top1")
    rows.append(("DonnaSearch, FT-full", trace))
    print("FT-short + FT-full with regularized evolution ...")
    full.new_run()
    short.new_run()
    evo = RegularizedEvolution(MINI_SPACE, seed=args.seed, population=8, sample_size=3)
    # as the paper: search with the short fine-tune to 75 % of the budget, then fine-tune fully down the ranking
    trace = two_stage_search(evo, short, full, budget=args.budget, seed=args.seed, search_fraction=0.75)
    rows.append((f"evolution, FT{args.short} + FT{args.full}", trace))
    normal = mini.get("test_top1", seed="mean")
    rank = {int(i): r + 1 for r, i in enumerate(mini.index[np.argsort(-normal, kind="stable")])}
    print(f"\nbudget {args.budget:g} s per search; Blox-mini's best normal test top-1: {np.nanmax(normal):.2f}\n")
    print(f"{'search':<38} {'fine-tunes':>10} {'cost s':>7} {'answer':>7} {'blocks':>13} {'FT val':>7} "
          f"{'normal test':>11} {'rank':>5}")
    for name, trace in rows:
        best = answer(trace)
        idx = int(best["arch_index"])
        print(f"{name:<38} {len(trace):>10} {trace[-1]['cumulative_cost']:>7.0f} {idx:>7} "
              f"{str(Arch.from_index(idx).blocks):>13} {best['objective']:>7.2f} "
              f"{float(mini.get('test_top1', [idx], seed='mean')[0]):>11.2f} {rank[idx]:>5}")
    print(f"\nwall time {time.perf_counter() - t:.0f} s (a rerun reads every result back from {args.store})")


if __name__ == "__main__":
    main()
