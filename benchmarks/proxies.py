"""Time the 13 zero-cost proxies per model and project to a whole space.

Run: ``python benchmarks/proxies.py [--shape cifar|mini] [--threads 1] [--models 5] [--seeds 1]``.

``cifar``: BLOX's shape (3x32x32 images, 100 classes, stem 32: full-width models), batch 64 of N(0, 1)
images (a proxy's cost does not depend on the pixel values); ``mini``: Blox-mini's shape (8x8 digits, stem 4,
batch 64 of real digits). Models are picked at evenly spaced quantiles of the shape's MACs (plus the
cheapest and the dearest); each is timed after one warm-up model, in wall seconds (per proxy and in all,
model construction included) and in process CPU seconds (on a shared machine the CPU time is the
uncontended cost of one core). The projection multiplies the sample's mean by the space: all 91,125
models for ``cifar``, the bundled Blox-mini's 729 models x 3 init seeds for ``mini`` (``projected_hours_fit``
sums a least-squares ``seconds = a + b * MACs`` instead). Prints one JSON line.

Measured 2026-12-06 on the shared 2-core CPU development box (torch 2.13, 1 torch thread per process):

- ``cifar`` (3 models: fewest, median, most MACs): 26.4 s wall (18.3 s CPU) per model for all 13; grasp
  8.1 s, fisher 2.6, jacov / plain / grad_norm / snip / epe_nas 2.2-2.4 each, zen 1.9, nwot 1.8, synflow 0.17,
  flops 0.04, params and l2_norm 0.02. Two processes side by side: 26.2 and 26.6 s per model each, so 13.2 s
  per model on 2 cores. All 91,125 models, one init seed: about 668 h (28 days) on 1 core, 334 h (14 days) on
  2 cores (2 processes). Two torch threads in one process were slower on this shared box (66-334 s per model).
- ``mini`` (9 models x 3 seeds): 0.368 s per (model, init seed) for all 13: the bundled table (729 x 3) is
  about 13.4 min of one core.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("cifar", "mini"), default="cifar")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=1, help="init seeds timed per model")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from blox_env.build.mini import MINI_BUNDLED
    from blox_env.costs import macs_table
    from blox_env.proxies import PROXIES, compute_proxies, init_model, proxy_batch
    from blox_env.shapes import ModelConfig
    from blox_env.space import N_MODELS, Arch

    if args.shape == "cifar":
        cfg = ModelConfig()
        batch = proxy_batch("gaussian", batch_size=args.batch_size, shape=(3, 32, 32), num_classes=100)
        space = np.arange(N_MODELS)
        per_model_seeds = 1
    else:
        cfg = ModelConfig(stem_channels=4, in_channels=1, image_size=8, num_classes=10)
        batch = proxy_batch("digits", batch_size=args.batch_size)
        space = MINI_BUNDLED.space.indices()
        per_model_seeds = len(MINI_BUNDLED.seeds)
    macs = macs_table(cfg)[space].astype(np.float64)
    order = np.argsort(macs, kind="stable")
    picks = [int(space[order[round(q * (len(order) - 1))]]) for q in np.linspace(0, 1, args.models)]
    compute_proxies(Arch.from_index(picks[len(picks) // 2]), batch, config=cfg)  # warm-up
    rows = []
    for index in picks:
        for seed in range(args.seeds):
            start, cpu = time.perf_counter(), time.process_time()
            init_model(Arch.from_index(index), init_seed=seed, config=cfg)
            build_s = time.perf_counter() - start
            res = compute_proxies(Arch.from_index(index), batch, init_seed=seed, config=cfg)
            rows.append({"index": index, "macs": float(macs_table(cfg)[index]), "build_s": build_s,
                         "cpu_s": time.process_time() - cpu, **{n: res[n].seconds for n in PROXIES}})
    per_row = np.array([r["build_s"] + sum(r[n] for n in PROXIES) for r in rows])
    cpu_row = np.array([r["cpu_s"] for r in rows])
    x = np.array([r["macs"] for r in rows])
    b, a = np.polyfit(x, per_row, 1) if len(set(x.tolist())) > 1 else (0.0, float(per_row.mean()))
    # evenly spaced MAC quantiles: their mean time stands for the space's mean time (time grows with MACs)
    projected = float(per_row.mean()) * len(space) * per_model_seeds
    projected_cpu = float(cpu_row.mean()) * len(space) * per_model_seeds
    out = {
        "shape": args.shape, "threads": args.threads, "batch_size": args.batch_size, "models": len(picks),
        "seeds": args.seeds, "mean_s_per_model_all13": float(per_row.mean()),
        "per_proxy_mean_s": {n: float(np.mean([r[n] for r in rows])) for n in PROXIES},
        "build_mean_s": float(np.mean([r["build_s"] for r in rows])),
        "fit": {"a_s": float(a), "b_s_per_mac": float(b)},
        "space_models": int(len(space)), "init_seeds_projected": per_model_seeds,
        "mean_cpu_s_per_model_all13": float(cpu_row.mean()),
        "projected_hours_wall": projected / 3600.0, "projected_hours_cpu": projected_cpu / 3600.0,
        "projected_hours_fit": float(np.sum(a + b * macs)) * per_model_seeds / 3600.0, "rows": rows,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
