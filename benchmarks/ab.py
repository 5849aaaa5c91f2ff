"""A/B the hot paths of two (or more) checkouts in one run: env step, vector env, store queries.

Run: ``python benchmarks/ab.py LABEL=SITE [LABEL=SITE ...] [--rounds 3]``, where SITE is a folder
holding an importable ``blox_env`` package laid out as installed (``.`` for this checkout's
install, or a folder whose ``blox_env/`` has ``datasets``, ``predictors`` and ``agents``
linked in, e.g. from ``git worktree add``). Versions run in alternation, in fresh processes,
``--rounds`` times each, so machine noise hits all of them alike; the table reports the best
round of each (the least disturbed). Each version reads a full-size synthetic store it wrote
itself (store formats differ between versions), created once under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
from pathlib import Path
import gymnasium as gym
import numpy as np
import blox_env  # noqa: F401  (registers the ids)
from blox_env.datasets.synthetic import synthetic_store
from blox_env.space import FULL_SPACE

path = Path(sys.argv[1])
if not path.exists():
    synthetic_store(path, space=FULL_SPACE, seeds=(0, 1, 2), epochs=200).close()
from blox_env import open_store

sys.path.insert(0, sys.argv[2])  # benchmarks/: the one timing helper (stdlib only, any checkout can run it)
from common import per_call


out = {}
rng = np.random.default_rng(0)
acts = rng.integers(0, 45, (4096, 3))
env = gym.make("BloxOneShot-v0", benchmark=str(path)).unwrapped
env.reset(seed=0)
i = [0]
def one_step():
    i[0] += 1
    env.reset()
    env.step(acts[i[0] % 4096])
out["oneshot reset+step, no wrappers (us)"] = per_call(one_step, calls=2000) * 1e6
seq = gym.make("Blox-v0", benchmark=str(path)).unwrapped
seq.reset(seed=0)
def episode():
    i[0] += 1
    seq.reset()
    for a in acts[i[0] % 4096]:
        seq.step(int(a))
out["Blox-v0 episode (reset + 3 steps), no wrappers (us)"] = per_call(episode, calls=1000) * 1e6
vec = gym.make_vec("BloxOneShot-v0", num_envs=1024, vectorization_mode="vector_entry_point", benchmark=str(path))
vec.reset(seed=0)
batch = rng.integers(0, 45, (1024, 3))
def vstep():
    vec.step(batch)
out["vector BloxOneShot-v0, batch 1024 (evaluations/s)"] = 1024 / per_call(vstep, calls=50)
t = time.perf_counter(); store = open_store(path); out["store open, modules imported (ms)"] = (time.perf_counter() - t) * 1e3
t = time.perf_counter(); store.val_acc(4242, seed=0); out["val_acc, cold (ms)"] = (time.perf_counter() - t) * 1e3
out["val_acc, warm (us)"] = per_call(lambda: store.val_acc(4242, seed=0), calls=20000) * 1e6
fresh = open_store(path)
t = time.perf_counter(); fresh.get("val_top1", seed=0, epoch=200, best=False); out["get val_top1 @200, all models, cold (ms)"] = (time.perf_counter() - t) * 1e3
t = time.perf_counter(); fresh.get("val_top1", seed=0, epoch=200, best=False); out["same, warm (ms)"] = (time.perf_counter() - t) * 1e3
t = time.perf_counter(); fresh.get("val_top1", seed=0); out["best val_top1 over 200 epochs, all models (ms)"] = (time.perf_counter() - t) * 1e3
print(json.dumps(out))
"""  # noqa: E501 - the child script keeps one measurement per line

HIGHER_IS_BETTER = {"vector BloxOneShot-v0, batch 1024 (evaluations/s)"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("versions", nargs="+", help="LABEL=SITE")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/blox-ab"))
    args = parser.parse_args()
    versions = [v.split("=", 1) for v in args.versions]
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _ in versions}
    for r in range(args.rounds):
        for label, site in versions:
            env = dict(os.environ)
            if site != ".":
                env["PYTHONPATH"] = str(Path(site).resolve())
            proc = subprocess.run([sys.executable, "-c", CHILD, str(args.work / f"{label}.zarr"),
                                   str(Path(__file__).resolve().parent)], env=env,
                                  capture_output=True, text=True, cwd=args.work)
            if proc.returncode:
                sys.exit(f"{label} failed:\n{proc.stderr[-3000:]}")
            results[label].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {label} done", file=sys.stderr)
    keys = list(results[versions[0][0]][0])
    labels = [label for label, _ in versions]
    print("| measurement | " + " | ".join(labels) + " |")
    print("| --- |" + " --- |" * len(labels))
    for k in keys:
        pick = max if k in HIGHER_IS_BETTER else min
        vals = [pick(run[k] for run in results[label]) for label in labels]
        print(f"| {k} | " + " | ".join(f"{v:,.1f}" for v in vals) + " |")


if __name__ == "__main__":
    main()
