"""Blox-v0 / BloxOneShot-v0: checkers, determinism, budgets, fidelity, seed modes, rewards, errors."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from blox_test_helpers import play
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import blox_env  # noqa: F401 - registers the ids
from blox_env.envs.wrappers import OneHotObservation, RecordSearchTrace
from blox_env.errors import BloxError, InvalidActionError, InvalidArgumentError, StoreNotFoundError
from blox_env.rewards.functions import Accuracy, MnasReward, PenalizedAccuracy
from blox_env.runs import CostLedger

IDS = ("Blox-v0", "BloxOneShot-v0")


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("budget", [None, 20_000.0])
def test_checkers_pass(tiny_store, env_id: str, budget: float | None) -> None:
    env = gym.make(env_id, benchmark=tiny_store, budget=budget)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped)
    assert gym.make(f"blox_env:{env_id}", benchmark=tiny_store).unwrapped.spec.id == env_id


@pytest.mark.parametrize("env_id", IDS)
def test_spaces_and_final_info(tiny_store, env_id: str) -> None:
    env = gym.make(env_id, benchmark=tiny_store)
    obs, info = env.reset(seed=0)
    assert obs.tolist() == [3, 3, 3, 0] and info["evaluations"] == 0
    reward, term, trunc, info = play(env, (1, 2, 0))
    assert term and not trunc and info["evaluated"]
    assert info["blocks"] == (9, 36, 2) and info["arch_index"] == 9 + 45 * 36 + 2025 * 2
    assert info["arch_hash"] == blox_env.Arch.from_index(info["arch_index"]).hash
    for key in ("val_top1", "test_top1", "train_time_s", "params", "flops", "latency/cpu"):
        assert key in info["metrics"]
    assert reward == pytest.approx(info["metrics"]["val_top1"] / 100)
    seed = info["seed"]
    assert info["metrics"]["val_top1"] == tiny_store.val_acc(info["arch_index"], seed=seed)
    assert info["cost"] == info["full_cost"] == tiny_store.train_time(info["arch_index"], seed=seed)
    assert info["best_so_far"] == reward and info["evaluations"] == 1


@pytest.mark.parametrize("env_id", IDS)
def test_determinism_under_a_seed(tiny_store, env_id: str) -> None:
    def run(seed: int) -> list:
        env = gym.make(env_id, benchmark=tiny_store)
        env.reset(seed=seed)
        out = []
        for local in [(0, 0, 0), (1, 2, 0), (2, 2, 2), (0, 0, 0)] * 5:
            r, _, _, info = play(env, local)
            out.append((r, info["seed"]))
            env.reset()
        return out

    assert run(3) == run(3)
    assert run(3) != run(4)  # the random seed choice differs


def test_budget_accounting_with_repeats_and_the_crossing_evaluation(tiny_store) -> None:
    a, b = (0, 0, 0), (1, 1, 1)
    env = gym.make("BloxOneShot-v0", benchmark=tiny_store, seed_mode=0)
    env.reset(seed=0)
    cost_a = play(env, a)[3]["full_cost"]
    env.reset()
    cost_b = play(env, b)[3]["full_cost"]
    budget = cost_a + cost_b / 2
    env = gym.make("BloxOneShot-v0", benchmark=tiny_store, seed_mode=0, budget=budget)
    env.reset(seed=0)
    _, _, trunc, info = play(env, a)
    assert not trunc and info["cost"] == cost_a and info["budget_left"] == pytest.approx(cost_b / 2)
    env.reset()
    _, _, trunc, info = play(env, a)  # a repeat is free
    assert not trunc and info["cost"] == 0 and info["cumulative_cost"] == cost_a and info["evaluations"] == 2
    env.reset()
    r, term, trunc, info = play(env, b)  # crosses the budget: completed, charged in full, truncated
    assert term and trunc and info["budget_exhausted"] and info["evaluated"] and r > 0
    assert info["cost"] == cost_b and info["cumulative_cost"] == cost_a + cost_b and info["budget_left"] == 0
    env.reset()
    r, term, trunc, info = play(env, a)
    assert trunc and r == 0 and not info["evaluated"] and info["cumulative_cost"] == cost_a + cost_b
    env.reset(options={"new_run": True})
    _, _, trunc, info = play(env, a)
    assert not trunc and info["cumulative_cost"] == cost_a


def test_sequential_budget_truncates_at_the_first_step_once_spent(tiny_store) -> None:
    env = gym.make("Blox-v0", benchmark=tiny_store, budget=1.0, cost_unit="evaluations")
    env.reset(seed=0)
    _, _, trunc, info = play(env, (0, 1, 2))
    assert trunc and info["evaluations"] == 1
    env.reset()
    _, r, term, trunc, info = env.step(0)
    assert trunc and not term and r == 0
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)


def test_charge_repeats_and_cost_units(tiny_store) -> None:
    env = gym.make("BloxOneShot-v0", benchmark=tiny_store, charge_repeats=True, cost_unit="epochs", epochs=5)
    env.reset(seed=1)
    assert play(env, (0, 0, 0))[3]["cost"] == 5
    env.reset()
    info = play(env, (0, 0, 0))[3]
    assert info["cost"] == 5 and info["cumulative_cost"] == 10


def test_ledger_continues_from_paid_epochs() -> None:
    led = CostLedger(budget=None, cost_unit="seconds")
    assert led.charge(7, 10, 100.0) == 100.0  # 10 epochs cost 100 s
    assert led.charge(7, 10, 100.0) == 0.0  # repeat
    assert led.charge(7, 20, 200.0) == pytest.approx(100.0)  # only epochs 11..20
    assert led.charge(7, 5, 50.0) == 0.0  # already paid beyond
    assert led.spent == pytest.approx(200.0) and led.evaluations == 4
    with pytest.raises(InvalidArgumentError, match="cost_unit"):
        CostLedger(budget=None, cost_unit="hours")
    with pytest.raises(InvalidArgumentError, match="budget"):
        CostLedger(budget=-1.0, cost_unit="seconds")


def test_fidelity_and_seed_modes(tiny_store) -> None:
    idx = 9 + 45 * 36 + 2025 * 2
    env = gym.make("BloxOneShot-v0", benchmark=tiny_store, epochs=4, seed_mode="mean")
    env.reset(seed=0)
    info = play(env, (1, 2, 0))[3]
    assert info["fidelity"] == 4 and info["seed"] == "mean"
    assert info["metrics"]["val_top1"] == pytest.approx(tiny_store.val_acc(idx, epoch=4, seed="mean"))
    assert info["full_cost"] == pytest.approx(tiny_store.train_time(idx, epoch=4, seed="mean"))
    env = gym.make("BloxOneShot-v0", benchmark=tiny_store, seed_mode=1)
    env.reset(seed=0)
    info = play(env, (1, 2, 0))[3]
    assert info["seed"] == 1 and info["metrics"]["test_top1"] == tiny_store.test_acc(idx, seed=1)


def test_reward_functions(tiny_store) -> None:
    base = {"val_top1": 70.0, "flops": 4e8, "params": 5e6}
    assert Accuracy()(base) == 0.7
    assert MnasReward(target=2e8)(base) == pytest.approx(0.7 * 2 ** -0.07)
    assert PenalizedAccuracy(limit=2.5e6, weight=0.5)(base) == pytest.approx(0.7 - 0.5)
    assert np.allclose(Accuracy()({"val_top1": np.array([50.0, 60.0])}), [0.5, 0.6])
    env = gym.make("BloxOneShot-v0", benchmark=tiny_store, reward_fn=PenalizedAccuracy(limit=1e6))
    env.reset(seed=0)
    r, _, _, info = play(env, (0, 0, 0))
    assert r == pytest.approx(info["metrics"]["val_top1"] / 100 - (info["metrics"]["params"] / 1e6 - 1))
    env = gym.make("BloxOneShot-v0", benchmark=tiny_store, metric="test_top1", normalize=False)
    env.reset(seed=0)
    r, _, _, info = play(env, (0, 0, 0))
    assert r == info["metrics"]["test_top1"]


def test_constraint_masks(tiny_store) -> None:
    params = tiny_store.get("params")
    limit = float(np.median(params))
    env = gym.make("Blox-v0", benchmark=tiny_store, constraint={"params": limit})
    _, info = env.reset(seed=0)
    chosen = []
    for _ in range(3):
        mask = info["action_mask"]
        a = int(np.flatnonzero(mask)[-1])
        chosen.append(a)
        _, r, term, _, info = env.step(a)
    assert term and info["evaluated"] and info["metrics"]["params"] <= limit
    # picking a model above the limit gives the violation reward without evaluating or charging
    big = int(np.argmax(params))
    local = env.unwrapped.backend.space.local(blox_env.Arch.from_index(int(tiny_store.index[big])))
    env.reset()
    r, term, _, info = play(env, local)
    assert term and r == 0.0 and info["constraint_violated"] and not info["evaluated"]
    assert info["cumulative_cost"] > 0 and info["evaluations"] == 1
    with pytest.raises(InvalidArgumentError, match="no model"):
        gym.make("Blox-v0", benchmark=tiny_store, constraint={"params": 1.0})


def test_bad_input(tiny_store) -> None:
    env = gym.make("Blox-v0", benchmark=tiny_store)
    env.reset(seed=0)
    with pytest.raises(InvalidActionError, match="outside 0..2") as info:
        env.step(5)
    assert isinstance(info.value, ValueError) and isinstance(info.value, BloxError)
    with pytest.raises(InvalidActionError, match="integer"):
        env.step("a")
    one = gym.make("BloxOneShot-v0", benchmark=tiny_store)
    one.reset(seed=0)
    with pytest.raises(InvalidActionError, match="3 integer"):
        one.step(np.array([0, 1]))
    with pytest.raises(InvalidActionError, match="stage 2"):
        one.step(np.array([0, 1, 3]))
    with pytest.raises(InvalidArgumentError, match="unknown metric 'acc': allowed .*val_top1"):
        gym.make("Blox-v0", benchmark=tiny_store, metric="acc")
    with pytest.raises(StoreNotFoundError):
        gym.make("Blox-v0", benchmark="/nonexistent/store.zarr")
    with pytest.raises(InvalidArgumentError, match="reward must be one of"):
        gym.make("Blox-v0", benchmark=tiny_store, reward="oracle")
    with pytest.raises(InvalidArgumentError, match="seed_mode"):
        gym.make("Blox-v0", benchmark=tiny_store, seed_mode=5)
    with pytest.raises(InvalidArgumentError, match="epochs"):
        gym.make("Blox-v0", benchmark=tiny_store, epochs=13)
    with pytest.raises(InvalidArgumentError, match="reset options"):
        env.reset(options={"fresh": True})


@pytest.mark.parametrize("env_id", IDS)
def test_vector_env_matches_scalar_env(tiny_store, env_id: str) -> None:
    n = 16
    vec = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", benchmark=tiny_store,
                       seed_mode=0, cost_unit="epochs", budget=30)
    vec.reset(seed=0)
    rng = np.random.default_rng(0)
    locals_ = rng.integers(0, 3, (n, 3))
    if env_id == "BloxOneShot-v0":
        _, r, term, trunc, info = vec.step(locals_)
    else:
        for s in range(3):
            _, r, term, trunc, info = vec.step(locals_[:, s])
    assert term.all()
    scalar = gym.make("BloxOneShot-v0", benchmark=tiny_store, seed_mode=0, cost_unit="epochs")
    for k in range(n):
        scalar.reset(seed=0)
        r1, _, _, i1 = play(scalar, tuple(locals_[k]))
        assert r[k] == pytest.approx(r1) and info["arch_index"][k] == i1["arch_index"]
    assert (info["cumulative_cost"] == 12).all()
    # second and third evaluations exhaust the 30-epoch budget of every sub-env (repeats are free)
    for _ in range(2):
        if env_id == "BloxOneShot-v0":
            _, r, term, trunc, info = vec.step(rng.integers(0, 3, (n, 3)))
        else:
            for _ in range(3):
                _, r, term, trunc, info = vec.step(rng.integers(0, 3, n))
    assert (info["cumulative_cost"] <= 36).all() and trunc[info["cumulative_cost"] >= 30].all()


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped")
def test_wrappers(tiny_store, tmp_path) -> None:
    env = RecordSearchTrace(OneHotObservation(gym.make("Blox-v0", benchmark=tiny_store)), tmp_path / "t.jsonl")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4 + 4 + 4 + 4,) and obs.sum() == 4 and obs.dtype == np.float32
    for local in [(0, 0, 0), (1, 1, 1), (0, 0, 0)]:
        for a in local:
            obs, *_ = env.step(a)
        env.reset()
    lines = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert len(env.trace) == 3 == len(lines) and lines[2]["cost"] == 0
    assert lines[1]["cumulative_cost"] == lines[0]["cost"] + lines[1]["cost"]
    assert all(x["wall_time_s"] >= 0 for x in lines)
    from blox_env.datasets.store.core import BloxStore

    store = BloxStore.create(f"memory://traces-{tmp_path.name}", index=tiny_store.index)
    env.save_to_store(store, "run0")
    cols = store.read_trace("run0")
    assert np.array_equal(cols["cumulative_cost"], [x["cumulative_cost"] for x in lines])
    assert np.array_equal(cols["metrics/val_top1"], [x["metrics"]["val_top1"] for x in lines])
    env.reset(seed=1)
    assert env.trace == []
    check_env(OneHotObservation(gym.make("Blox-v0", benchmark=tiny_store)), skip_render_check=True)
