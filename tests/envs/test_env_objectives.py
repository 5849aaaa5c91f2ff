"""Multi-objective envs: ``objectives=`` gives a vector reward matching the store, in the MO-Gymnasium convention."""

from __future__ import annotations

import gymnasium as gym
import mo_gymnasium as mo_gym
import numpy as np
import pytest
from blox_test_helpers import play
from mo_gymnasium.wrappers import LinearReward, MORecordEpisodeStatistics
from mo_gymnasium.wrappers.vector import MOSyncVectorEnv

import blox_env  # noqa: F401 - registers the ids
from blox_env import Arch
from blox_env.errors import BloxError, InvalidArgumentError, InvalidArgumentTypeError
from blox_env.objectives import Objective
from blox_env.rewards.surrogate import SurrogateReward

IDS = ("Blox-v0", "BloxOneShot-v0")
OBJECTIVES = ("val_top1", "params", "latency:cpu", "val_top1@4", "train_time_s")
MODELS = [(0, 0, 0), (1, 2, 0), (2, 1, 2), (2, 2, 2), (0, 2, 1)]


def make(env_id: str, store, **kw):
    """The env without Gymnasium's passive checker (it expects scalar rewards), as mo_gymnasium.make does."""
    return gym.make(env_id, benchmark=store, disable_env_checker=True, **kw)


def by_hand(store, index: int, seed, *, epochs: int = 12, normalize: bool = True) -> tuple[np.ndarray, dict]:
    """The reward vector of OBJECTIVES for one model, read straight from the store, and its raw values."""
    a = [Arch.from_index(index)]
    raw = {"val_top1": store.get("val_top1", a, seed=seed, epoch=epochs)[0],
           "params": store.get("params", a)[0],
           "latency/cpu": store.get("latency/cpu", a)[0],
           "val_top1@4": store.get("val_top1", a, seed=seed, epoch=4)[0],
           "train_time_s": store.get("train_time_s", a, seed=seed, epoch=epochs)[0]}
    acc = 100.0 if normalize else 1.0
    vec = np.array([raw["val_top1"] / acc, -raw["params"], -raw["latency/cpu"], raw["val_top1@4"] / acc,
                    -raw["train_time_s"]])
    return vec, raw


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("seed_mode", ["random", "mean", 1])
def test_vector_reward_matches_the_store(tiny_store, env_id: str, seed_mode) -> None:
    env = make(env_id, tiny_store, objectives=OBJECTIVES, seed_mode=seed_mode)
    u = env.unwrapped
    assert u.reward_dim == 5 and u.reward_space.shape == (5,) and u.reward_space.dtype == np.float32
    assert [o.name for o in u.objectives] == ["val_top1", "params", "latency/cpu", "val_top1@4", "train_time_s"]
    assert [o.direction for o in u.objectives] == ["max", "min", "min", "max", "min"]
    env.reset(seed=0)
    seeds = set()
    for local in MODELS * 2:
        r, term, _, info = play(env, local)
        assert term and isinstance(r, np.ndarray) and r.dtype == np.float32 and r.shape == (5,)
        seeds.add(info["seed"])
        want, raw = by_hand(tiny_store, info["arch_index"], info["seed"])
        np.testing.assert_allclose(r, want.astype(np.float32), rtol=1e-6)
        assert info["objectives"] == pytest.approx(raw, rel=1e-12)  # raw store values, not negated, percent
        assert info["objectives"]["val_top1"] == info["metrics"]["val_top1"]  # the reward's value is the metric's
        assert info["best_so_far"] >= info["objectives"]["val_top1"] / 100 - 1e-12  # metric= keeps the best-so-far
        env.reset()
    assert seeds == ({0, 1} if seed_mode == "random" else {seed_mode})


@pytest.mark.parametrize("env_id", IDS)
def test_fidelity_normalize_and_explicit_directions(tiny_store, env_id: str) -> None:
    env = make(env_id, tiny_store, objectives=OBJECTIVES, epochs=6, normalize=False, seed_mode=0)
    env.reset(seed=0)
    r, _, _, info = play(env, (2, 1, 2))
    want, _ = by_hand(tiny_store, info["arch_index"], 0, epochs=6, normalize=False)
    np.testing.assert_allclose(r, want.astype(np.float32), rtol=1e-6)
    assert want[0] != want[3]  # val_top1 at the env's 6 epochs differs from val_top1@4 here
    # an explicit direction flips the sign: params maximised, accuracy minimised
    env = make(env_id, tiny_store, objectives=("params:max", "val_top1:min"), seed_mode=0)
    env.reset(seed=0)
    r, _, _, info = play(env, (2, 1, 2))
    a = [Arch.from_index(info["arch_index"])]
    np.testing.assert_allclose(r, np.float32([tiny_store.get("params", a)[0],
                                              -tiny_store.get("val_top1", a, seed=0)[0] / 100]))


def test_blockwise_objectives_read_the_finetuning_run() -> None:
    from blox_env.datasets.store.core import open_store
    from blox_env.datasets.store.location import bundled_mini_path

    mini = open_store(bundled_mini_path())
    env = gym.make("BloxOneShot-v0", benchmark=mini, mode="blockwise", objectives=("val_top1", "flops"),
                   disable_env_checker=True)
    backend = env.unwrapped.backend
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.array([3, 1, 4]))
    a = [Arch.from_index(info["arch_index"])]
    val = mini.get("val_top1", a, seed=info["seed"], run=backend.info.name)[0]
    np.testing.assert_allclose(r, np.float32([val / 100, -mini.get("flops", a)[0]]))
    assert info["objectives"]["val_top1"] == info["metrics"]["val_top1"]


def test_steps_without_evaluation_constraint_and_budget(tiny_store) -> None:
    params = tiny_store.get("params")
    limit = float(np.median(params))
    env = make("Blox-v0", tiny_store, objectives=("val_top1", "params"), constraint={"params": limit},
               violation_reward=-2.0, cost_unit="evaluations", budget=2)
    env.reset(seed=0)
    for a in (0, 0):  # stages 0 and 1: nothing evaluated, the zero vector
        _, r, term, _, _ = env.step(a)
        assert not term and r.dtype == np.float32 and r.tolist() == [0.0, 0.0]
    big = tiny_store.index[int(np.argmax(params))]
    local = env.unwrapped.backend.space.local(Arch.from_index(int(big)))
    env.reset()
    r, term, _, info = play(env, local)
    assert info["constraint_violated"] and "objectives" not in info
    assert r.dtype == np.float32 and r.tolist() == [-2.0, -2.0]  # the violation reward in every component
    space = env.unwrapped.backend.space
    small = [space.local(Arch.from_index(int(i))) for i in tiny_store.index[np.argsort(params)[:2]]]
    for local in small:  # two evaluations spend the budget; the step after evaluates nothing
        env.reset()
        r, _, trunc, info = play(env, local)
    assert trunc and info["evaluated"] and r[1] < 0
    env.reset()
    _, r, _, trunc, info = env.step(0)
    assert trunc and not info["evaluated"] and r.tolist() == [0.0, 0.0]
    assert env.unwrapped.reward_space.contains(np.float32([-2.0, -2.0]))


@pytest.mark.parametrize("env_id", IDS)
def test_reward_space_holds_every_reward_of_a_sweep(tiny_store, env_id: str) -> None:
    env = make(env_id, tiny_store, objectives=OBJECTIVES, violation_reward=-1.0,
               constraint={"params": float(np.median(tiny_store.get("params")))})
    space = env.unwrapped.reward_space
    assert np.isfinite(space.low).all() and np.isfinite(space.high).all()
    # bounds come from the store's columns in the reward's orientation (params: -max..0)
    assert space.low[1] == np.float32(-tiny_store.get("params").max()) and space.high[1] == 0.0
    assert space.high[0] == np.float32(np.nanmax([tiny_store.get("val_top1", seed=s) for s in (0, 1)]) / 100)
    env.reset(seed=0)
    seen = 0
    for _ in range(3):  # random seed draws: each model at several seeds
        for local in np.ndindex(3, 3, 3):
            env.reset()
            if env_id == "Blox-v0":
                for a in local:
                    _, r, _, _, _ = env.step(a)
                    assert space.contains(r), r
                    seen += 1
            else:
                _, r, _, _, _ = env.step(np.array(local))
                assert space.contains(r), r
                seen += 1
    assert seen == 27 * 3 * (3 if env_id == "Blox-v0" else 1)


@pytest.mark.parametrize("env_id", IDS)
def test_default_reward_is_still_a_float(tiny_store, env_id: str) -> None:
    env = gym.make(env_id, benchmark=tiny_store)
    env.reset(seed=0)
    r, _, _, info = play(env, (1, 2, 0))
    assert type(r) is float and r == pytest.approx(info["metrics"]["val_top1"] / 100)
    assert not hasattr(env.unwrapped, "reward_space") and env.unwrapped.objectives == ()
    assert "objectives" not in info


def test_mo_gymnasium_wrappers_work_unchanged(tiny_store) -> None:
    w = np.array([1.0, 1e-5])
    env = LinearReward(mo_gym.make("BloxOneShot-v0", benchmark=tiny_store, objectives=("val_top1", "params"),
                                   seed_mode=0), weight=w)
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.array([2, 1, 0]))
    a = [Arch.from_index(info["arch_index"])]
    vec = np.float32([tiny_store.get("val_top1", a, seed=0)[0] / 100, -tiny_store.get("params", a)[0]])
    np.testing.assert_array_equal(info["vector_reward"], vec)
    assert np.ndim(r) == 0 and r == pytest.approx(float(vec @ w))
    # episode statistics: Blox-v0's vector return over its three steps is the final step's vector
    env = MORecordEpisodeStatistics(make("Blox-v0", tiny_store, objectives=("val_top1", "params"), seed_mode=0))
    env.reset(seed=0)
    for a in (2, 1, 0):
        _, r, term, _, info = env.step(a)
    assert term and info["episode"]["l"] == 3
    np.testing.assert_array_equal(info["episode"]["r"], vec)
    assert info["episode"]["r"].shape == (2,)
    # MO-Gymnasium's vector env batches the rewards as (num_envs, k)
    vec_env = MOSyncVectorEnv([lambda: make("BloxOneShot-v0", tiny_store, objectives=("val_top1", "params"),
                                            seed_mode=0) for _ in range(2)])
    vec_env.reset(seed=0)
    _, rewards, _, _, _ = vec_env.step(np.array([[2, 1, 0], [0, 0, 0]]))
    assert rewards.shape == (2, 2)
    np.testing.assert_array_equal(rewards[0], vec)


def test_bad_objectives(tiny_store) -> None:
    cases = [
        (("val_top9",), InvalidArgumentError, r"unknown objective column 'val_top9'.*allowed columns: .*val_top1"),
        (("params:up",), InvalidArgumentError, r"unknown objective column 'params:up'.*':max' or ':min'"),
        ((Objective("params", "min"), "val_top1@13"), InvalidArgumentError, r"epoch must be in 1\.\.12"),
        (("params@3",), InvalidArgumentError, "static column 'params' has no epochs"),
        (("val_top1", "val_top1"), InvalidArgumentError, "more than once"),
        ((), InvalidArgumentError, r"at least one store column, e\.g\. \('val_top1', 'params'\)"),
        ("", InvalidArgumentError, "at least one store column"),
        (5, InvalidArgumentTypeError, "objectives must be None, a str .* or a list/tuple of str or Objective"),
        ({"val_top1": "max"}, InvalidArgumentTypeError, "list/tuple of str or Objective"),
    ]
    for env_id in IDS:
        for objectives, err, match in cases:
            with pytest.raises(err, match=match) as caught:
                make(env_id, tiny_store, objectives=objectives)
            assert isinstance(caught.value, BloxError) and isinstance(caught.value, ValueError)
    with pytest.raises(InvalidArgumentError, match="direction of 'params' must be 'max' or 'min', got 'up'"):
        Objective("params", "up")
    with pytest.raises(InvalidArgumentError, match="objectives= and reward_fn= both define the reward"):
        make("Blox-v0", tiny_store, objectives=("val_top1",), reward_fn=lambda m: 1.0)
    with pytest.raises(InvalidArgumentError, match=r"val_top1@8 read epochs beyond .* 6 epochs.*1\.\.6"):
        make("BloxOneShot-v0", tiny_store, objectives=("val_top1@8",), epochs=6)


def test_backends_without_columns_and_the_batched_vector_env_refuse(tiny_store) -> None:
    class Constant:
        def predict(self, archs, **kw):
            return np.full(len(archs), 50.0)

    with pytest.raises(InvalidArgumentError, match="SurrogateReward backend does not have: use reward='tabular'"):
        make("BloxOneShot-v0", None, reward="surrogate", backend=SurrogateReward(Constant(), holdout_spearman=0.5),
             objectives=("val_top1",))
    for env_id in IDS:
        with pytest.raises(InvalidArgumentError, match="not supported by the numpy-batched.*MOSyncVectorEnv"):
            gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", benchmark=tiny_store,
                         objectives=("val_top1", "params"))
