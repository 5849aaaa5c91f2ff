"""Search BLOX on Ray Tune with ASHA: live training on a laptop or a Ray cluster, or tabular look-ups.

    python examples/ray_tune_blox.py --traces tune-traces.zarr                       # tabular, Blox-mini, 16 trials
    python examples/ray_tune_blox.py --traces tune-traces.zarr --live --epochs 4     # train on digits, CPU
    python examples/ray_tune_blox.py --traces t.zarr --live --space full --data cifar100:~/data \\
        --recipe cifar100_blox --gpus 0.5 --address auto --trials 200                # a cluster, 2 trials per GPU

Every reported epoch of every trial lands in a trace store of the benchmark (``traces/<name>``, written by the
driver only); Tune's own files go to ``--storage`` (default ``~/ray_results``). Needs
``pip install "blox-env[ray-tune]"`` (and ``[train]`` for ``--live``).
"""

from __future__ import annotations

import argparse

import numpy as np
import ray

from blox_env import BloxStore, open_store
from blox_env.integrations.ray_tune import tune_search


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", required=True, help="trace store folder (created if missing)")
    parser.add_argument("--name", default=None, help="trace and experiment name (default blox-<mode>-s<seed>)")
    parser.add_argument("--store", default=None, help="benchmark store (default: imported BLOX, else Blox-mini)")
    parser.add_argument("--live", action="store_true", help="train every trial (default: the store's values)")
    parser.add_argument("--space", choices=("store", "full"), default="store", help="full: all 45 blocks per stage")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the protocol's)")
    parser.add_argument("--recipe", default=None, help="live: recipe name (default: the store run's recipe)")
    parser.add_argument("--data", default=None, help="live: digits, cifar100:PATH, ... (default: the store run's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus", type=float, default=1.0, help="CPUs per trial (also its torch threads)")
    parser.add_argument("--gpus", type=float, default=0.0, help="GPUs per trial (0.5: two trials share a GPU)")
    parser.add_argument("--address", default=None, help="Ray cluster address ('auto'); default: a local Ray")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--storage", default=None, help="Tune's experiment folder")
    args = parser.parse_args(argv)

    started = not ray.is_initialized()
    if started:
        ray.init(address=args.address, num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        store = open_store(args.store)
        search = tune_search(traces=args.traces, benchmark=store, mode="live" if args.live else "tabular",
                             name=args.name, num_samples=args.trials, space="full" if args.space == "full" else None,
                             recipe=args.recipe, data=args.data, epochs=args.epochs, seed=args.seed, cpus=args.cpus,
                             gpus=args.gpus, storage_path=args.storage)
    finally:
        if started:
            ray.shutdown()
    best = search.results.get_best_result(metric="val_top1_best", mode="max", scope="all")
    config = {k: int(best.config[k]) for k in ("stage0", "stage1", "stage2")}
    traces = BloxStore.open_traces(search.traces, benchmark=store, mode="r")
    columns = traces.read_trace(search.trace)
    epochs = np.bincount(columns["trial"].astype(int))
    print(f"benchmark: {store.name}; {'live' if args.live else 'tabular'} ASHA search of {len(search.results)} trials "
          f"in {search.wall_s:.1f} s; epochs run per trial: {epochs.tolist()}")
    print(f"best: {config} val_top1 {best.metrics['val_top1_best']:.3f} (best epoch so far)")
    print(f"trace {search.trace!r} in {search.traces}: {len(columns['trial'])} epoch records")
    return {"config": config, "val_top1_best": float(best.metrics["val_top1_best"]), "trials": len(search.results),
            "records": int(len(columns["trial"])), "trace": search.trace, "traces": search.traces}


if __name__ == "__main__":
    main()
