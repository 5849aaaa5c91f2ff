"""Benchmark the environments: episode/step latency, vector throughput, vs the original API's lookup path.

Run: ``python benchmarks/env.py [--store PATH]`` (default: a synthetic full-size store in /tmp,
created on first run). Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from common import full_synthetic_store, machine, per_call

import blox_env  # noqa: F401
from blox_env.datasets.store.core import open_store
from blox_env.space import Arch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", type=Path, default=Path("/tmp/blox-bench-full.zarr"))
    args = parser.parse_args()
    store = open_store(full_synthetic_store(args.store))
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 45, (4096, 3))
    rows = []

    for label, wrapped in (("without wrappers", False), ("with gym.make's default wrappers", True)):
        env = gym.make("Blox-v0", benchmark=store)
        env = env if wrapped else env.unwrapped
        env.reset(seed=0)
        it = iter(range(10**9))

        def episode(env: gym.Env = env, it=it) -> None:  # noqa: ANN001
            a = actions[next(it) % 4096]
            env.reset()
            env.step(int(a[0]))
            env.step(int(a[1]))
            env.step(int(a[2]))

        rows.append((f"Blox-v0 full episode (reset + 3 steps), {label}", per_call(episode) * 1e6, "us"))
        one = gym.make("BloxOneShot-v0", benchmark=store)
        one = one if wrapped else one.unwrapped
        one.reset(seed=0)
        it2 = iter(range(10**9))

        def step(one: gym.Env = one, it2=it2) -> None:  # noqa: ANN001
            one.reset()
            one.step(actions[next(it2) % 4096])

        t_reset = per_call(lambda one=one: one.reset())
        rows.append((f"BloxOneShot-v0 step, {label}", (per_call(step) - t_reset) * 1e6, "us"))

    vec = gym.make_vec("BloxOneShot-v0", num_envs=1024, vectorization_mode="vector_entry_point", benchmark=store)
    vec.reset(seed=0)
    batch = actions[:1024]
    t = per_call(lambda: vec.step(batch), calls=50)
    rows.append(("vector BloxOneShot-v0, batch 1024: model evaluations per second", 1024 / t, "/s"))

    # The original benchmark's query path: hash the arch vector, look the hash up in a dict of records.
    hashes = {Arch.from_index(int(i)).hash: k for k, i in enumerate(store.index[:20000].tolist())}
    val = store.get("val_top1", seed=0)
    records = {h: {"val_top1": float(val[k])} for h, k in hashes.items()}
    vecs = [Arch.from_index(int(i)).vec for i in store.index[:20000:7].tolist()]
    it3 = iter(range(10**9))

    def original() -> None:
        v = vecs[next(it3) % len(vecs)]
        records[Arch.from_vec(v).hash]["val_top1"]  # noqa: B018

    t_orig = per_call(original, calls=300)
    env = gym.make("BloxOneShot-v0", benchmark=store).unwrapped
    env.reset(seed=0)
    local = [env.backend.space.local(Arch.from_vec(v)) for v in vecs]
    it4 = iter(range(10**9))

    def ours() -> None:
        env.reset()
        env.step(np.array(local[next(it4) % len(local)]))

    t_ours = per_call(ours)
    rows.append(("same lookup via the original API path (hash arch vector, dict lookup by hash)", t_orig * 1e6, "us"))
    rows.append(("same lookup via BloxOneShot-v0 (reset + step, no wrappers)", t_ours * 1e6, "us"))
    rows.append(("speed-up of the env over the original path", t_orig / t_ours, "x"))

    print(f"{time.strftime('%Y-%m-%d')}, {machine()}, store {args.store} ({len(store):,} models)")
    print("| measurement | value |\n| --- | --- |")
    for name, value, unit in rows:
        print(f"| {name} | {value:,.1f} {unit} |" if unit != "/s" else f"| {name} | {value:,.0f} {unit} |")


if __name__ == "__main__":
    main()
