"""Does annealing the cosine per batch give a 1-epoch KD fine-tune ranking signal? (issue 17, v2 recipe choice)

On a Blox-mini v1 *build folder* (it keeps M1's distilled block weights; the bundled zip does not), a seeded
sample of models is fine-tuned for 1 epoch with M1 two ways: as v1 does (cosine stepped per epoch, so the one
epoch runs at the peak rate) and with the cosine annealed over the epoch's batches (``cosine_step``, the v2
recipe's schedule). Each is ranked against the stored full (8-epoch) fine-tunes and the normal accuracies.

``python benchmarks/ft_schedule.py build/blox-mini.zarr 40`` (about 30 s).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from blox_env.build.benchmark import cached_data
from blox_env.datasets.store.blockwise import BlockwiseTables
from blox_env.datasets.store.core import BloxStore
from blox_env.space import Arch
from blox_env.training.distill import DistillConfig
from blox_env.training.finetune import finetune
from blox_env.training.library import BlockLibrary
from blox_env.training.recipes import DIGITS_MINI


def main() -> None:
    torch.set_num_threads(1)
    store = BloxStore.open(sys.argv[1] if len(sys.argv) > 1 else "build/blox-mini.zarr")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    tables = BlockwiseTables(store)
    library = BlockLibrary(store, tables.teachers["M1"])
    distill = DistillConfig.from_dict(tables.attrs["distill"][-1])
    data = cached_data("digits", (("seed", 0),))
    full, stored_short, normal = tables.finetuned("M1", 8), tables.finetuned("M1", 1), tables.normal()
    rows = np.random.default_rng(0).choice(len(store.index), size=n, replace=False)
    t0 = time.perf_counter()
    runs: dict[str, list[float]] = {"cosine": [], "cosine_step": []}
    for r in rows:
        arch = Arch.from_index(int(store.index[r]))
        for schedule in runs:
            recipe = DIGITS_MINI.with_(epochs=1, schedule=schedule)
            runs[schedule].append(finetune(arch, data, library=library, distill=distill, recipe=recipe, seed=0,
                                           device="cpu").test_top1)
    print(f"{n} models of {store.name}, {time.perf_counter() - t0:.0f} s")
    for name, v in (("stored FT1 (v1)", stored_short[rows]), ("FT1, cosine per epoch", runs["cosine"]),
                    ("FT1, cosine per batch", runs["cosine_step"])):
        print(f"{name}: Spearman vs FT8 {spearmanr(v, full[rows]).statistic:.2f}, "
              f"vs normal {spearmanr(v, normal[rows]).statistic:.2f}, mean test top-1 {np.mean(v):.1f}")
    print(f"FT8 vs normal: {spearmanr(full[rows], normal[rows]).statistic:.2f}")


if __name__ == "__main__":
    main()
