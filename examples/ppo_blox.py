"""Train SB3 PPO on Blox-v0 and compare the best model it found with the benchmark's best.

    python examples/ppo_blox.py                      # default store: imported BLOX, else Blox-mini
    python examples/ppo_blox.py --store PATH --steps 3000 --budget 2e6

The budget (seconds of recorded training time) spans the whole search run;
when it is spent the env truncates and the search stops.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO

import blox_env  # noqa: F401 - registers Blox-v0
from blox_env import open_store
from blox_env.envs.wrappers import RecordSearchTrace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="store path/URL (default: imported BLOX, else Blox-mini)")
    parser.add_argument("--steps", type=int, default=3000, help="PPO environment steps (3 per model)")
    parser.add_argument("--budget", type=float, default=None, help="search budget in seconds of training time")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    store = open_store(args.store)
    print(f"benchmark: {store.name} ({len(store):,} models, run {store.default_run})")
    env = RecordSearchTrace(gym.make("Blox-v0", benchmark=store, budget=args.budget))
    model = PPO("MlpPolicy", env, seed=args.seed, n_steps=96, batch_size=48, policy_kwargs={"net_arch": [64]},
                device="cpu", verbose=0)
    model.learn(total_timesteps=args.steps)

    trace = env.trace
    best = max(trace, key=lambda t: t["metrics"]["val_top1"])
    bench_val = store.get("val_top1", seed="mean")
    bench_test = store.get("test_top1", seed="mean")
    top = int(np.nanargmax(bench_val))
    rank = int((bench_val > store.val_acc(best["arch_index"], seed="mean")).sum()) + 1
    print(f"evaluated {len(trace)} models ({len({t['arch_index'] for t in trace})} distinct), "
          f"cost {trace[-1]['cumulative_cost']:,.0f} {trace[-1]['cost_unit']}")
    print(f"PPO best  : model {best['arch_index']:>6}  val {store.val_acc(best['arch_index'], seed='mean'):.2f}  "
          f"test {store.test_acc(best['arch_index'], seed='mean'):.2f}  (rank {rank} of {len(store)} by mean val)")
    print(f"benchmark : model {int(store.index[top]):>6}  val {bench_val[top]:.2f}  test {bench_test[top]:.2f}")


if __name__ == "__main__":
    main()
