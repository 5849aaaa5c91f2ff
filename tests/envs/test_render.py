"""``render_mode="rgb_array"``: the picture of the model being built, check_env, SB3's make_vec_env default."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from blox_env.envs.render import HEIGHT, WIDTH, render_model
from blox_env.graph import N_BLOCKS

IDS = ["Blox-v0", "BloxOneShot-v0"]


@pytest.mark.parametrize("env_id", IDS)
def test_rgb_array_declared_and_shaped(tiny_store, env_id: str) -> None:
    env = gym.make(env_id, benchmark=tiny_store, render_mode="rgb_array")
    assert env.metadata["render_modes"] == ["ansi", "rgb_array"] and env.metadata["render_fps"] > 0
    env.reset(seed=0)
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8
    assert HEIGHT % 2 == 0 and WIDTH % 2 == 0  # what video encoders want
    env.close()


def test_the_picture_changes_with_each_chosen_block(tiny_store) -> None:
    env = gym.make("Blox-v0", benchmark=tiny_store, render_mode="rgb_array", seed_mode="mean")
    env.reset(seed=0)
    frames = [env.render()]
    for a in (0, 1, 2):
        env.step(a)
        frames.append(env.render())
    for before, after in zip(frames, frames[1:]):
        assert not np.array_equal(before, after)
    env.reset()  # same run: the blocks are cleared but the best-so-far bar stays
    cleared = env.render()
    assert not np.array_equal(cleared, frames[0]) and not np.array_equal(cleared, frames[-1])
    env.close()


def test_oneshot_picture_shows_the_picked_model(tiny_store) -> None:
    env = gym.make("BloxOneShot-v0", benchmark=tiny_store, render_mode="rgb_array", seed_mode="mean")
    env.reset(seed=0)
    empty = env.render()
    env.step(np.array([0, 1, 2]))
    a = env.render()
    env.reset()
    env.step(np.array([2, 1, 0]))
    b = env.render()
    assert not np.array_equal(empty, a) and not np.array_equal(a, b)
    env.close()


def test_every_block_has_its_own_picture() -> None:
    """Blocks are drawn from the space's raw configs: the 45 canonical blocks give 45 distinct pictures."""
    pictures = {render_model([b], cursor=1, best=None, last=None, budget_used=None).tobytes()
                for b in range(N_BLOCKS)}
    assert len(pictures) == N_BLOCKS


@pytest.mark.filterwarnings("ignore:.*HumanRendering wrapper")
def test_human_mode_is_gymnasiums_human_rendering_over_rgb_array(tiny_store) -> None:
    """gym.make serves "human" by wrapping the rgb_array env (pygame is needed only to open the window)."""
    env = gym.make("Blox-v0", benchmark=tiny_store, render_mode="human")
    assert env.unwrapped.render_mode == "rgb_array"
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_with_rgb_array(tiny_store, env_id: str) -> None:
    env = gym.make(env_id, benchmark=tiny_store, render_mode="rgb_array")
    check_env(env.unwrapped)
    env.close()


def test_sb3_make_vec_env_default_render_mode_and_short_learn() -> None:
    pytest.importorskip("stable_baselines3")
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    venv = make_vec_env("Blox-v0", n_envs=4, seed=0)  # SB3 passes render_mode="rgb_array" by default
    assert venv.render_mode == "rgb_array"
    venv.reset()
    frames = venv.get_images()
    assert len(frames) == 4 and all(f.shape == (HEIGHT, WIDTH, 3) for f in frames)
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=64)
    venv.close()
