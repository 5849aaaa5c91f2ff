"""Stable-Baselines3 trains on Blox-v0 unmodified (tiny nets, a few hundred steps)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DQN, PPO

import blox_env  # noqa: F401
from blox_env.envs.wrappers import RecordSearchTrace


@pytest.mark.parametrize(
    ("algo", "kwargs"),
    [
        (PPO, {"n_steps": 48, "batch_size": 24, "n_epochs": 2}),
        (A2C, {"n_steps": 6}),
        (DQN, {"learning_starts": 30, "buffer_size": 500, "train_freq": 3, "target_update_interval": 30}),
    ],
)
def test_sb3_learns_on_blox(tiny_store, algo, kwargs: dict) -> None:
    torch.set_num_threads(1)
    env = RecordSearchTrace(gym.make("Blox-v0", benchmark=tiny_store))
    model = algo("MlpPolicy", env, seed=0, policy_kwargs={"net_arch": [16]}, device="cpu", **kwargs)
    model.learn(total_timesteps=300)
    assert len(env.trace) >= 300 // 3 - 1  # one evaluation per 3-step episode
    rewards = np.array([t["reward"] for t in env.trace])
    assert np.all((rewards > 0) & (rewards < 1))
    obs, _ = env.reset()
    for _ in range(3):
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, term, trunc, info = env.step(action)
    assert term and info["evaluated"]
