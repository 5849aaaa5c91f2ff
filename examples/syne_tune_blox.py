"""Syne Tune's schedulers on BLOX with simulated asynchronous workers (the blackbox simulator).

    python examples/syne_tune_blox.py                                 # random search, 4 workers, Blox-mini
    python examples/syne_tune_blox.py --scheduler asha --trials 100
    python examples/syne_tune_blox.py --store PATH --export ~/.blackbox-repository/blox

The store becomes Syne Tune's tabular blackbox (``blox_env.integrations.syne_tune``); the simulator runs the
workers on the recorded training times, so a search of hours of training takes seconds. Needs
``pip install "blox-env[syne-tune]"``.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
from syne_tune.optimizer.baselines import ASHA, RandomSearch

from blox_env import open_store
from blox_env.integrations.syne_tune import DEFAULT_METRIC, blackbox, export, simulate


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="store path/URL (default: imported BLOX, else Blox-mini)")
    parser.add_argument("--scheduler", choices=("random", "asha"), default="random")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--workers", type=int, default=4, help="simulated workers")
    parser.add_argument("--seed", type=int, default=0, help="scheduler seed; blackbox seed index 0")
    parser.add_argument("--out", default=None, help="Syne Tune's results folder (default: a temporary one)")
    parser.add_argument("--export", default=None, help="also write the blackbox in Syne Tune's format here")
    args = parser.parse_args(argv)

    store = open_store(args.store)
    bb = blackbox(store)
    if args.scheduler == "asha":
        scheduler = ASHA(bb.configuration_space, metric=DEFAULT_METRIC, time_attr="epochs",
                         max_t=int(bb.fidelity_values.max()), random_seed=args.seed)
    else:
        scheduler = RandomSearch(bb.configuration_space, metrics=[DEFAULT_METRIC], random_seed=args.seed)
    np.random.seed(args.seed)  # Syne Tune's random searcher samples from numpy's global RNG
    df = simulate(bb, scheduler, n_workers=args.workers, max_trials=args.trials, seed=0,
                  output_dir=args.out or tempfile.mkdtemp(prefix="syne-tune-blox-"))
    best = df.loc[df[DEFAULT_METRIC].idxmin()]
    config = {k: int(best[f"config_{k}"]) for k in ("stage0", "stage1", "stage2")}
    print(f"benchmark: {store.name}; {args.scheduler} ran {df['trial_id'].nunique()} trials on {args.workers} "
          f"simulated workers, {len(df)} epoch results, simulated time {df['st_tuner_time'].max():,.1f} s")
    print(f"best: {config} at {int(best['epochs'])} epochs: val_top1 {best['metric_val_top1']:.3f}")
    if args.export:
        print(f"exported to {export(args.export, store)}")
    return {"config": config, "epochs": int(best["epochs"]), "val_top1": float(best["metric_val_top1"]),
            "trials": int(df["trial_id"].nunique())}


if __name__ == "__main__":
    main()
