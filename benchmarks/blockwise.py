"""Benchmark the blockwise tables: size and build time, and tabular-blockwise vs normal-tabular vs live speed.

Run: ``python benchmarks/blockwise.py [--store PATH]`` (default: the bundled Blox-mini). Prints a
Markdown table for BENCHMARKS.md. The step timings run side by side in one process (ratios); the
"live" column is the recorded compute a live blockwise evaluation of the same models costs (fine-tuning
seconds from the tables), which the tabular lookup replaces.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
from common import machine, per_call

import blox_env  # noqa: F401
from blox_env.datasets.store.blockwise import BlockwiseTables
from blox_env.datasets.store.core import open_store
from blox_env.datasets.store.location import bundled_mini_path


def blockwise_bytes(location: Path) -> tuple[int, int]:
    """(bytes under blockwise/, bytes of the whole store): compressed sizes in a zip, file sizes in a folder."""
    if location.suffix == ".zip":
        with zipfile.ZipFile(location) as z:
            infos = z.infolist()
            return (sum(i.compress_size for i in infos if i.filename.startswith("blockwise/")),
                    location.stat().st_size)
    files = [p for p in location.rglob("*") if p.is_file()]
    return (sum(p.stat().st_size for p in files if "blockwise" in p.relative_to(location).parts[:1]),
            sum(p.stat().st_size for p in files))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", type=Path, default=None)
    args = parser.parse_args()
    location = args.store or bundled_mini_path()
    store = open_store(location)
    tables = BlockwiseTables(store)
    out = io.StringIO()
    bw, total = blockwise_bytes(Path(location))
    build = tables.attrs.get("build", {}).get("seconds", {})
    n_ft = sum(int(np.isfinite(tables.finetuned(t, e)).sum()) for t, runs in tables.attrs["finetune_runs"].items()
               for e in map(int, runs))
    out.write(f"machine: {machine()}; store {store.name} ({len(store)} models)\n\n")
    out.write("| blockwise tables | value |\n| --- | --- |\n")
    out.write(f"| size of `blockwise/` | {bw / 2**20:.2f} MiB of {total / 2**20:.2f} MiB |\n")
    out.write(f"| fine-tuning rows | {n_ft} |\n")
    for phase, sec in build.items():
        out.write(f"| build: {phase} | {sec / 60:.1f} min |\n")
    out.write(f"| build: total | {sum(build.values()) / 60:.1f} min |\n\n")
    rng = np.random.default_rng(0)
    actions = rng.integers(0, min(store_sizes(store)), (4096, 3))
    rows = []
    for label, kwargs in (("normal tabular", {}),
                          ("blockwise tabular, FT full", {"mode": "blockwise", "teacher": "M1"}),
                          ("blockwise tabular, FT short", {"mode": "blockwise", "teacher": "M1",
                                                           "ft_epochs": min(tables.ft_epochs)})):
        env = gym.make("BloxOneShot-v0", benchmark=store, **kwargs).unwrapped
        env.reset(seed=0)
        it = iter(range(10**9))

        def step(env: gym.Env = env, it=it) -> None:  # noqa: ANN001
            env.reset()
            env.step(actions[next(it) % 4096])

        rows.append((label, per_call(step, calls=2000)))
    base = rows[0][1]
    ft_s = float(np.nanmean(tables.finetuned("M1", max(tables.ft_epochs), metric="train_time_s")))
    out.write("| evaluation | us per episode | vs normal tabular | recorded live cost it replaces |\n")
    out.write("| --- | --- | --- | --- |\n")
    for label, sec in rows:
        live = f"{ft_s:.1f} s fine-tuning ({ft_s / sec:,.0f}x)" if "full" in label else ""
        out.write(f"| {label} | {sec * 1e6:.1f} | {sec / base:.2f}x | {live} |\n")
    print(out.getvalue())


def store_sizes(store: object) -> tuple[int, ...]:
    from blox_env.rewards.tabular import space_of_index

    return space_of_index(store.index).sizes  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
