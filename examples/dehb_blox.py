"""DEHB on the BLOX space: multi-fidelity (epochs as the budget) differential evolution + Hyperband.

    python examples/dehb_blox.py                          # default store: imported BLOX, else Blox-mini
    python examples/dehb_blox.py --store PATH --fevals 200 --seed 1

DEHB minimises: ``objective()`` returns the validation top-1 negated as ``fitness`` and the recorded training
time at that fidelity as ``cost``. Needs ``pip install "blox-env[dehb]"``.
"""

from __future__ import annotations

import argparse
import tempfile

from dehb import DEHB

from blox_env import open_store
from blox_env.integrations import configuration_space, objective


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="store path/URL (default: imported BLOX, else Blox-mini)")
    parser.add_argument("--fevals", type=int, default=60, help="function evaluations")
    parser.add_argument("--eta", type=int, default=3, help="Hyperband's reduction factor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="DEHB's output folder (default: a temporary one)")
    args = parser.parse_args(argv)

    store = open_store(args.store)
    problem_space = configuration_space(benchmark=store, seed=args.seed)
    max_epochs = store.run_info().epochs
    out = args.out or tempfile.mkdtemp(prefix="dehb-blox-")
    dehb = DEHB(f=objective, cs=problem_space, min_fidelity=1, max_fidelity=max_epochs, eta=args.eta, n_workers=1,
                seed=args.seed, output_path=out, log_level="ERROR")
    _, _, history = dehb.run(fevals=args.fevals, benchmark=store)  # benchmark= goes on to objective()
    config, score = dehb.get_incumbents()
    config = dict(config)
    best = min(history, key=lambda row: row[2])  # (config id, vector, fitness, cost, fidelity, info)
    info = best[5]
    print(f"benchmark: {store.name}; DEHB evaluated {len(history)} configurations, "
          f"cost {sum(row[3] for row in history):,.1f} s of recorded training")
    print(f"incumbent: {config} at {info['fidelity']} epochs: val_top1 {-score:.3f} (model {info['arch_index']})")
    return {"config": config, "score": float(score), "fidelity": int(info["fidelity"]),
            "arch_index": int(info["arch_index"]), "evaluations": len(history)}


if __name__ == "__main__":
    main()
