"""Synthetic blockwise tables for tests: the layout the blockwise builder writes, with generated values.

Fine-tuned accuracy = the model's normal accuracy pulled towards the teacher's, plus noise that
shrinks with fine-tuning length; distillation losses rise with a block's distance from the teacher's
block quality; LANA deltas fall with it. No weights are written (the tables never need them).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from blox_env.build.blockwise import BlockwiseSpec, describe_tables
from blox_env.datasets.store.core import BloxStore
from blox_env.space import N_BLOCKS, N_STAGES, Arch, indices_to_blocks

__all__ = ["synthetic_blockwise"]


def synthetic_blockwise(location: str | os.PathLike[str], *, ft_epochs: tuple[int, ...] = (2, 6),
                        distill_epochs: tuple[int, ...] = (1, 4), seed: int = 0) -> dict[str, Any]:
    """Add blockwise tables to a synthetic store at ``location`` (see the module docstring); returns the description."""
    rng = np.random.default_rng(seed)
    store = BloxStore.open(location, mode="a")
    spec = BlockwiseSpec(data="synthetic", data_kwargs=(), ft_epochs=ft_epochs, distill_epochs=distill_epochs)
    tables = describe_tables(store, spec)
    info = store.run_info(tables["normal_run"])
    normal = np.nanmean(np.stack([store.get("test_top1", None, seed=s, run=info.name) for s in info.seeds]), axis=0)
    blocks = indices_to_blocks(store.index)
    times = store.get("train_time_s", None, seed=info.seeds[0], run=info.name)
    quality = np.full((N_STAGES, N_BLOCKS), np.nan)  # mean normal accuracy of the models using a block
    for s in range(N_STAGES):
        for b in np.unique(blocks[:, s]):
            quality[s, b] = normal[blocks[:, s] == b].mean()
    for name, t in tables["teachers"].items():
        teacher = Arch.from_index(t["index"])
        row = int(store.rows([teacher])[0])
        store.write_teacher(teacher, None, attrs={"train_time_s": float(times[row]), "synthetic": True})
        for e_str, path in tables["signature_groups"][name].items():
            noise = 2.0 / np.sqrt(int(e_str))
            gap = np.abs(quality - np.array([[quality[s, teacher.blocks[s]]] for s in range(N_STAGES)]))
            values = {"distill_loss": 0.1 + 0.02 * gap + 0.01 * noise * rng.random(quality.shape),
                      "lana_delta": -0.5 * gap + noise * rng.normal(size=quality.shape),
                      "distill_time_s": np.where(np.isfinite(quality), 1.0 + rng.random(quality.shape), np.nan)}
            store.write_signatures(path, {key: np.where(np.isfinite(quality), arr, np.nan)
                                          for key, arr in values.items()})
        for e_str, run in tables["finetune_runs"][name].items():
            e = int(e_str)
            spread = 3.0 / np.sqrt(e)
            final = 0.6 * normal + 0.4 * normal[row] + spread * rng.normal(size=len(normal))
            if name not in tables["full_teachers"]:  # only the 5 x 5 matrix
                keep = np.isin(store.index, [v["index"] for v in tables["teachers"].values()])
                final = np.where(keep, final, np.nan)
            curve = final[:, None] * (1 - np.exp(-3 * np.arange(1, e + 1) / e))[None, :] / (1 - np.exp(-3))
            store.create_run(run, seeds=[0], epochs=e, attrs={"kind": "finetune", "synthetic": True})
            store.write_metric(run, "val_top1", np.round(np.clip(curve, 0, 100) * 50)[None] / 50)
            store.write_metric(run, "test_top1", np.round(np.clip(final, 0, 100) * 100)[None] / 100)
            store.write_metric(run, "train_time_s", np.where(np.isfinite(final), times * e / info.epochs, np.nan)[None])
    tables["build"] = {"synthetic": True, "seconds": {}}
    store.write_blockwise_tables(tables)
    return tables
