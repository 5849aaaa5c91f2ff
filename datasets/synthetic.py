"""Small synthetic stores for tests and examples (clearly labelled synthetic, never a benchmark).

Values have a realistic shape: each model has a latent quality from its blocks
plus noise per seed, validation curves rise and saturate, train time grows with
MACs. Use them to exercise code paths, not to draw conclusions.
"""

from __future__ import annotations

import os

import numpy as np

from blox_env.costs import macs_table, params_table
from blox_env.datasets.store.core import BloxStore
from blox_env.space import N_STAGES, SubSpace, indices_to_blocks

__all__ = ["synthetic_store"]


def synthetic_store(location: str | os.PathLike[str], *, space: SubSpace, seeds: tuple[int, ...] = (0, 1),
                    epochs: int = 12, seed: int = 0, run: str = "synthetic", latency: bool = True,
                    overwrite: bool = False) -> BloxStore:
    """Create a store over ``space`` with per-epoch val curves, test accuracy, train time and static costs."""
    rng = np.random.default_rng(seed)
    index = space.indices()
    blocks = indices_to_blocks(index)
    n = len(index)
    block_effect = rng.normal(0, 4, (N_STAGES, 45))
    quality = 60 + sum(block_effect[s, blocks[:, s]] for s in range(N_STAGES))
    final = np.clip(quality[None, :] + rng.normal(0, 1.0, (len(seeds), n)), 5, 95)  # percent
    t = np.arange(1, epochs + 1) / epochs
    curve = final[:, :, None] * (1 - np.exp(-4 * t))[None, None, :] / (1 - np.exp(-4))
    curve = curve + rng.normal(0, 0.6, curve.shape)
    val = np.round(np.clip(curve, 0, 100) * 50) / 50  # counts of 5,000 images
    test = np.round(np.clip(final + rng.normal(0, 0.5, final.shape), 0, 100) * 100) / 100  # of 10,000
    macs = macs_table()[index]
    train_time = np.round(macs[None, :] / 1e6 * epochs * (1 + 0.05 * rng.random((len(seeds), n))))
    store = BloxStore.create(location, index=index, name=f"synthetic-{n}", overwrite=overwrite,
                             provenance={"synthetic": True, "generator": "blox_env.datasets.synthetic", "seed": seed})
    store.create_run(run, seeds=seeds, epochs=epochs, attrs={"dataset": "synthetic"})
    store.write_metric(run, "val_top1", val)
    store.write_metric(run, "test_top1", test)
    store.write_metric(run, "train_time_s", train_time)
    store.write_static(params=params_table()[index], flops=macs)
    if latency:
        store.write_latency("cpu", np.round(macs / 1e10 + 0.001, 6), attrs={"synthetic": True})
    return store
