"""Simulated parallel workers on Blox-mini: simulated wall-clock and total compute to reach the best model.

    python benchmarks/parallel.py [--seeds 20]

For random search and regularized evolution with 1, 4 and 16 simulated workers, async and sync, 20 seeds:
the median *simulated* wall-clock (seconds on the simulated clock, not this machine's time) until the search
evaluates the store's best model (best seed-mean val_top1), its speed-up over one worker, and the total
compute (seconds of recorded training) committed by then.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from blox_env import open_store
    from blox_env.agents import make_agent, run_parallel_search
    from blox_env.rewards import TabularReward

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    store = open_store()
    best = int(store.index[np.nanargmax(store.get("val_top1", seed="mean"))])
    print(f"store {store.name}, best model {best}, {args.seeds} seeds")
    print("| agent | workers | mode | found | simulated wall-clock to best (median) | speed-up | compute by then |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in ("random", "evolution"):
        base = None
        for workers in (1, 4, 16):
            for mode in ("async", "sync"):
                walls, computes = [], []
                for seed in range(args.seeds):
                    backend = TabularReward(store)
                    trace = run_parallel_search(make_agent(name, backend.space, seed=seed), backend,
                                                sim_workers=workers, mode=mode, budget=20000.0, budget_kind="compute",
                                                cost_unit="seconds", seed=seed, metric="val_top1")
                    hit = next((r for r in trace if r["arch_index"] == best), None)
                    if hit is not None:
                        walls.append(hit["sim_wall_clock"])
                        computes.append(hit["compute_committed"])
                wall = float(np.median(walls))
                base = wall if base is None else base
                print(f"| {name} | {workers} | {mode} | {len(walls)}/{args.seeds} | {wall:.0f} s | "
                      f"{base / wall:.1f}x | {np.median(computes):.0f} s |")


if __name__ == "__main__":
    main()
