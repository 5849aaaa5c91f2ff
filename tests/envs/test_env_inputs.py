"""Missing costs never switch the budget off; every env argument is validated."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from blox_test_helpers import play

import blox_env  # noqa: F401 - registers the ids
from blox_env import Evaluation
from blox_env.datasets.store.core import open_store
from blox_env.datasets.synthetic import synthetic_store
from blox_env.errors import BloxError, InvalidArgumentError, InvalidArgumentTypeError, MissingCostError
from blox_env.rewards import BaseReward
from blox_env.runs import CostLedger
from blox_env.space import Arch, SubSpace

IDS = ("Blox-v0", "BloxOneShot-v0")
SPACE = SubSpace(((0, 9, 30), (1, 12, 36), (2, 21, 44)))  # 27 models, as the tiny_store fixture
EPOCHS = 12


@pytest.fixture(scope="module")
def nan_store(tmp_path_factory: pytest.TempPathFactory):
    """A 27-model store whose ``train_time_s`` is missing (NaN, both seeds) for every third row.

    Returns (store, written train times [2, 27], rows without a cost).
    """
    path = tmp_path_factory.mktemp("nan") / "s.zarr"
    store = synthetic_store(path, space=SPACE, seeds=(0, 1), epochs=EPOCHS)
    times = np.stack([store.get("train_time_s", None, seed=s, run="synthetic") for s in (0, 1)])
    missing = np.arange(0, len(store), 3)
    times[:, missing] = np.nan
    store.write_metric("synthetic", "train_time_s", times)  # through the store's own write method
    store.close()
    return open_store(path), times, missing


def _local(store, row: int) -> tuple[int, int, int]:
    """Local block coordinates of a store row in SPACE."""
    return SPACE.local(Arch.from_index(int(store.index[row])))


def _expect(exc: pytest.ExceptionInfo, *builtins: type) -> None:
    """House rule: a BloxError that also inherits the matching builtin(s)."""
    assert isinstance(exc.value, BloxError)
    for b in builtins:
        assert isinstance(exc.value, b)


# ---------------------------------------------------------------------------------------- missing costs
@pytest.mark.parametrize("env_id", IDS)
def test_missing_cost_is_refused_by_default_naming_the_model(nan_store, env_id: str) -> None:
    store, _, missing = nan_store
    env = gym.make(env_id, benchmark=store, budget=50_000)
    env.reset(seed=0)
    row = int(missing[1])
    index = int(store.index[row])
    with pytest.raises(MissingCostError, match="train_time_s") as err:
        play(env, _local(store, row))
    _expect(err, ValueError)
    msg = str(err.value)
    assert str(index) in msg and Arch.from_index(index).hash in msg
    assert "missing_cost='median'" in msg and "missing_cost='max'" in msg and "cost_unit='epochs'" in msg
    run = env.unwrapped.run_info()
    assert run["cumulative_cost"] == 0.0 and run["evaluations"] == 0 and not run["budget_exhausted"]
    env.reset()
    _, _, trunc, info = play(env, _local(store, row + 1))  # a model with a recorded cost still works
    assert info["evaluated"] and not info["cost_imputed"] and info["cost_rule"] == "recorded"
    assert math.isfinite(info["cumulative_cost"]) and info["cumulative_cost"] > 0 and not trunc


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("rule", ["median", "max"])
def test_missing_cost_rule_charges_the_stated_value_and_flags_info(nan_store, env_id: str, rule: str) -> None:
    store, times, missing = nan_store
    known = times[np.isfinite(times)]
    expected = {"median": float(np.median(known)), "max": float(known.max())}[rule]
    env = gym.make(env_id, benchmark=store, missing_cost=rule, seed_mode="random")
    env.reset(seed=0)
    _, _, _, info = play(env, _local(store, int(missing[0])))
    assert info["evaluated"] and info["cost_imputed"] and info["cost_rule"] == rule
    assert info["cost"] == pytest.approx(expected) and info["full_cost"] == pytest.approx(expected)
    assert info["cumulative_cost"] == pytest.approx(expected) and info["budget_left"] == math.inf
    # at a lower fidelity the reference is the recorded times at that fidelity (linear in epochs)
    env = gym.make(env_id, benchmark=store, missing_cost=rule, epochs=EPOCHS // 2)
    env.reset(seed=0)
    _, _, _, info = play(env, _local(store, int(missing[0])))
    assert info["cost"] == pytest.approx(expected / 2)


@pytest.mark.parametrize("env_id", IDS)
def test_budget_truncates_although_some_costs_are_missing(nan_store, env_id: str) -> None:
    """The issue's scenario: random play on a store with NaN train times must hit the budget, never NaN."""
    store, _, _ = nan_store
    budget = 20_000.0
    env = gym.make(env_id, benchmark=store, budget=budget, missing_cost="median", charge_repeats=True)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    imputed = steps = 0
    trunc = False
    while not trunc and steps < 200:
        if steps:
            env.reset()
        _, _, trunc, info = play(env, tuple(int(x) for x in rng.integers(0, 3, 3)))
        assert math.isfinite(info["cumulative_cost"])
        imputed += bool(info.get("cost_imputed"))
        steps += 1
    assert trunc and info["budget_exhausted"] and info["budget_left"] == 0.0
    assert info["cumulative_cost"] >= budget and steps < 20  # each evaluation costs > 1,000 s
    env.reset()
    _, _, trunc, info = play(env, (0, 0, 0))  # stays truncated, evaluates nothing
    assert trunc and not info["evaluated"]
    assert imputed > 0  # the NaN models were charged, not skipped


def test_vector_env_refuses_then_imputes_missing_costs(nan_store) -> None:
    store, times, missing = nan_store
    n = 6
    rows = np.array([int(missing[0]), 1, 2, int(missing[2]), 4, 5])
    local = np.array([_local(store, r) for r in rows])
    vec = gym.make_vec("BloxOneShot-v0", num_envs=n, vectorization_mode="vector_entry_point", benchmark=store,
                       budget=9_000)
    vec.reset(seed=0)
    with pytest.raises(MissingCostError, match="train_time_s") as err:
        vec.step(local)
    _expect(err, ValueError)
    assert str(int(store.index[rows[0]])) in str(err.value) and "1 more" in str(err.value)
    assert (vec.unwrapped.spent == 0).all() and (vec.unwrapped.evaluations == 0).all()  # nothing charged

    vec = gym.make_vec("BloxOneShot-v0", num_envs=n, vectorization_mode="vector_entry_point", benchmark=store,
                       budget=9_000, missing_cost="median", seed_mode=0, charge_repeats=True)
    vec.reset(seed=0)
    _, _, _, trunc, info = vec.step(local)
    median = float(np.median(times[np.isfinite(times)]))
    assert info["cost_imputed"].tolist() == [True, False, False, True, False, False] and info["cost_rule"] == "median"
    assert info["cost"][0] == pytest.approx(median) and info["cost"][3] == pytest.approx(median)
    assert info["cost"][1] == pytest.approx(times[0, 1])
    rng = np.random.default_rng(1)
    for _ in range(10):  # every sub-env's run reaches its budget; spent is never NaN
        _, _, _, trunc, info = vec.step(rng.integers(0, 3, (n, 3)))
        assert np.isfinite(info["cumulative_cost"]).all()
        if info["budget_exhausted"].all():
            break
    assert info["budget_exhausted"].all() and (info["budget_left"] == 0).all()


def test_search_trace_records_which_costs_were_imputed(nan_store, tmp_path: Path) -> None:
    from blox_env.envs.wrappers import RecordSearchTrace

    store, _, missing = nan_store
    env = RecordSearchTrace(gym.make("BloxOneShot-v0", benchmark=store, missing_cost="max"), tmp_path / "t.jsonl")
    env.reset(seed=0)
    for row in (int(missing[0]), 1):
        play(env, _local(store, row))
        env.reset()
    assert [r["cost_imputed"] for r in env.trace] == [True, False]
    assert all(math.isfinite(r["cumulative_cost"]) for r in env.trace)


class _CostlessSometimes(BaseReward):
    """A non-tabular backend (as a live or surrogate one) whose cost is missing for models with block 0 at stage 0."""

    source, space, max_fidelity = "live", SPACE, 4

    def evaluate(self, arch: Arch, fidelity: int | None = None, *, cost_unit: str = "seconds",
                 rng: np.random.Generator | None = None) -> Evaluation:
        cost = float("nan") if arch.blocks[0] == 0 else 10.0 * (1 + arch.blocks[1] % 3)
        return Evaluation(arch, {"val_top1": 50.0}, cost, cost_unit, self.source, fidelity or 4, None)


def test_non_tabular_backend_imputes_from_the_costs_recorded_in_the_run() -> None:
    env = gym.make("BloxOneShot-v0", backend=_CostlessSometimes(), missing_cost="max")
    env.reset(seed=0)
    with pytest.raises(MissingCostError, match="nothing has a recorded cost"):  # no reference yet
        play(env, (0, 0, 0))
    env.reset()
    assert play(env, (1, 0, 0))[3]["cost"] == 20.0  # blocks (9, 1, 2): 10 * (1 + 1 % 3)
    env.reset()
    assert play(env, (1, 1, 0))[3]["cost"] == 10.0  # blocks (9, 12, 2)
    env.reset()
    info = play(env, (0, 0, 0))[3]
    assert info["cost"] == 20.0 and info["cost_imputed"] and info["cumulative_cost"] == 50.0
    env = gym.make("BloxOneShot-v0", backend=_CostlessSometimes())
    env.reset(seed=0)
    with pytest.raises(MissingCostError, match="_CostlessSometimes"):
        play(env, (0, 0, 0))


def test_ledger_never_charges_a_missing_cost() -> None:
    """The harness and the strategies charge through CostLedger: NaN/inf/negative are refused there too."""
    led = CostLedger(budget=100.0, cost_unit="seconds")
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(MissingCostError, match="model 7"):
            led.charge(7, 12, bad)
    assert led.spent == 0.0 and led.evaluations == 0 and led.paid == {}
    assert led.charge(7, 12, 10.0) == 10.0 and led.recorded == [10.0]


@pytest.fixture(scope="module")
def bw_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from blox_env.build.synthetic_blockwise import synthetic_blockwise

    path = tmp_path_factory.mktemp("bw") / "s.zarr"
    synthetic_store(path, space=SPACE, seeds=(0, 1), epochs=EPOCHS).close()
    synthetic_blockwise(path, ft_epochs=(2,), distill_epochs=(1,))
    return path


def test_blockwise_missing_distillation_time_is_never_charged_as_zero(bw_path: Path) -> None:
    def make(rule: str) -> gym.Env:
        env = gym.make("Blox-v0", benchmark=str(bw_path), mode="blockwise", teacher="M1", missing_cost=rule)
        backend = env.unwrapped.backend
        distill = backend.signatures["distill_time_s"].copy()
        distill[1, 12] = np.nan  # block 12 of stage 1 (local id 1) lost its distillation time
        backend.signatures = {**backend.signatures, "distill_time_s": distill}
        return env

    env = make("error")
    env.reset(seed=0)
    with pytest.raises(MissingCostError, match="distill_time_s of block 12 at stage 1"):
        play(env, (0, 1, 0))
    assert env.unwrapped.backend.charges.paid == set()  # refused before anything was marked paid
    assert env.unwrapped.ledger.spent == 0.0

    env = make("median")
    env.reset(seed=0)
    _, _, _, info = play(env, (0, 1, 0))
    backend = env.unwrapped.backend
    distill = backend.signatures["distill_time_s"]
    expected = np.median(distill[np.isfinite(distill)]) + distill[0, 0] + distill[2, 2]
    assert info["cost_imputed"] and info["cost_rule"] == "median"
    assert info["metrics"]["distill_cost_s"] == pytest.approx(expected + backend.teacher_time_s)

    backend.teacher_time_s = float("nan")  # a teacher library without train_time_s
    env.reset(seed=1)
    with pytest.raises(MissingCostError, match="charge_teacher=False"):
        play(env, (0, 0, 0))


# ---------------------------------------------------------------------------------------- arguments
TYPE, VALUE = "type", "value"
BAD_ARGS = [
    ("benchmark", 42, TYPE), ("benchmark", [1], TYPE),
    ("budget", True, TYPE), ("budget", "100", TYPE), ("budget", 0, VALUE), ("budget", -5.0, VALUE),
    ("budget", float("nan"), VALUE), ("budget", float("inf"), VALUE),
    ("constraint", "params<1", TYPE), ("constraint", {"params": "big"}, TYPE), ("constraint", {1: 2.0}, TYPE),
    ("constraint", {"parms": 1e6}, VALUE), ("constraint", {"params": float("nan")}, VALUE),
    ("violation_reward", "x", TYPE), ("violation_reward", float("nan"), VALUE), ("violation_reward", None, TYPE),
    ("seed_mode", 1.5, TYPE), ("seed_mode", True, TYPE), ("seed_mode", 7, VALUE), ("seed_mode", "best", VALUE),
    ("epochs", True, TYPE), ("epochs", 2.0, TYPE), ("epochs", "3", TYPE), ("epochs", 0, VALUE), ("epochs", 13, VALUE),
    ("metric", 5, TYPE), ("metric", "acc", VALUE),
    ("cost_unit", "hours", VALUE), ("cost_unit", 5, TYPE),
    ("charge_repeats", "no", TYPE), ("normalize", "yes", TYPE), ("normalize", 1, TYPE),
    ("reward", "oracle", VALUE), ("reward", 5, TYPE), ("run", 5, TYPE), ("run", "nope", VALUE),
    ("reward_fn", 5, TYPE), ("missing_cost", "mean", VALUE), ("missing_cost", None, VALUE),
    ("mode", 5, TYPE), ("mode", "fancy", VALUE), ("backend", object(), TYPE),
]
# gym.make itself refuses render_mode=3; "human" is served by gymnasium's HumanRendering over "rgb_array"
SCALAR_ONLY = [("render_mode", "video", VALUE), ("verbose", "x", TYPE)]
VECTOR_ONLY = [("num_envs", True, TYPE), ("num_envs", 0, VALUE), ("num_envs", 2.0, TYPE)]


def _name(arg) -> str:
    return f"{arg[0]}={arg[1]!r}"


@pytest.mark.filterwarnings("ignore:.*render_mode")  # gymnasium's own warning before ours
@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("arg", BAD_ARGS + SCALAR_ONLY, ids=_name)
def test_bad_constructor_argument(tiny_store, env_id: str, arg: tuple) -> None:
    name, value, kind = arg
    builtin = TypeError if kind == TYPE else ValueError
    with pytest.raises(InvalidArgumentError, match=name.split("_")[0]) as err:
        gym.make(env_id, **{"benchmark": tiny_store, name: value})
    _expect(err, builtin, ValueError)
    if kind == TYPE:
        assert isinstance(err.value, InvalidArgumentTypeError)


def test_render_mode_of_a_wrong_type_without_gym_make(tiny_store) -> None:
    from blox_env.envs.sequential import BloxEnv

    with pytest.raises(InvalidArgumentTypeError, match="render_mode must be None, 'ansi' or 'rgb_array'"):
        BloxEnv(benchmark=tiny_store, render_mode=3)


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("arg", BAD_ARGS + VECTOR_ONLY, ids=_name)
def test_bad_vector_constructor_argument(tiny_store, env_id: str, arg: tuple) -> None:
    name, value, kind = arg
    kwargs = {"benchmark": tiny_store, name: value}
    num_envs = kwargs.pop("num_envs", 2)
    with pytest.raises(InvalidArgumentError, match=name.split("_")[0]) as err:
        gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
    _expect(err, TypeError if kind == TYPE else ValueError, ValueError)


@pytest.mark.parametrize("env_id", IDS)
def test_numbers_of_any_numpy_type_are_accepted(tiny_store, env_id: str) -> None:
    env = gym.make(env_id, benchmark=tiny_store, budget=np.int64(5_000), epochs=np.int32(6), seed_mode=np.int64(1),
                   violation_reward=np.float32(-1.0), constraint={"params": np.float64(1e9)},
                   charge_repeats=np.bool_(False), normalize=np.True_)
    assert env.unwrapped.ledger.budget == 5_000.0 and env.unwrapped.fidelity == 6
    env.reset(seed=np.int64(3))
    _, _, trunc, info = play(env, (0, 0, 0))
    assert info["evaluated"] and info["seed"] == 1 and not trunc
    vec = gym.make_vec(env_id, num_envs=np.int64(2), vectorization_mode="vector_entry_point", benchmark=tiny_store,
                       budget=np.float32(100.0), cost_unit="epochs")
    assert vec.unwrapped.budget == 100.0 and vec.num_envs == 2


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("vector", [False, True])
def test_reset_arguments(tiny_store, env_id: str, vector: bool) -> None:
    env = (gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", benchmark=tiny_store)
           if vector else gym.make(env_id, benchmark=tiny_store))
    env.reset(seed=0)  # (gymnasium's passive checker breaks on a step after a *first* reset that raised)
    for options, kind in ((5, TYPE), ([("new_run", True)], TYPE), ({"new_run": "no"}, TYPE), ({"new_run": 1}, TYPE),
                          ({"fresh": True}, VALUE)):
        with pytest.raises(InvalidArgumentError, match="options|new_run") as err:
            env.reset(options=options)
        _expect(err, TypeError if kind == TYPE else ValueError)
    for seed, kind in ((-1, VALUE), ("a", TYPE), (1.5, TYPE), (True, TYPE)):
        with pytest.raises(InvalidArgumentError, match="seed") as err:
            env.reset(seed=seed)
        _expect(err, TypeError if kind == TYPE else ValueError)
    env.reset(seed=np.int64(0))
    run = env.unwrapped if vector else env.unwrapped.ledger
    if not vector:
        play(env, (0, 0, 0))
    elif env_id == "BloxOneShot-v0":
        env.step(np.zeros((2, 3), dtype=np.int64))
    else:
        for _ in range(3):
            env.step(np.zeros(2, dtype=np.int64))
    env.reset(options={"new_run": np.False_})  # a numpy bool is a bool; False continues the run
    assert np.all(run.spent > 0)
    env.reset(options={"new_run": np.True_})
    assert np.all(run.spent == 0)


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("out, kind", [("x", TYPE), (np.array([1.0, 2.0]), TYPE), (None, TYPE), ([0.5], TYPE),
                                       (float("nan"), VALUE), (np.float64("inf"), VALUE), (True, TYPE)],
                         ids=["str", "array", "None", "list", "nan", "inf", "bool"])
def test_bad_reward_fn_output(tiny_store, env_id: str, out, kind: str) -> None:
    env = gym.make(env_id, benchmark=tiny_store, reward_fn=lambda m: out)
    env.reset(seed=0)
    with pytest.raises(InvalidArgumentError, match="reward_fn must return a finite real scalar") as err:
        play(env, (0, 0, 0))
    _expect(err, TypeError if kind == TYPE else ValueError)
    assert env.unwrapped.ledger.spent == 0 and env.unwrapped.ledger.evaluations == 0  # nothing was charged


@pytest.mark.parametrize("out", [np.float32(0.25), np.array(0.25), 0.25, 1, np.int64(1)],
                         ids=["float32", "0-d", "float", "int", "int64"])
def test_reward_fn_numeric_outputs_are_accepted(tiny_store, out) -> None:
    env = gym.make("BloxOneShot-v0", benchmark=tiny_store, reward_fn=lambda m: out)
    env.reset(seed=0)
    r, _, _, _ = play(env, (0, 0, 0))
    assert type(r) is float and r == float(out)


def test_vector_reward_fn_output_must_have_one_reward_per_sub_env(tiny_store) -> None:
    def make(fn):
        vec = gym.make_vec("BloxOneShot-v0", num_envs=3, vectorization_mode="vector_entry_point",
                           benchmark=tiny_store, reward_fn=fn)
        vec.reset(seed=0)
        return vec

    with pytest.raises(InvalidArgumentTypeError, match=r"shape \(3,\)"):
        make(lambda m: np.zeros(2)).step(np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(InvalidArgumentTypeError, match="reward_fn"):
        make(lambda m: "x").step(np.zeros((3, 3), dtype=np.int64))
    vec = make(lambda m: np.asarray(m["val_top1"]) / 100)
    with pytest.raises(InvalidArgumentError, match="finite"):
        make(lambda m: np.full(3, np.nan)).step(np.zeros((3, 3), dtype=np.int64))
    _, r, _, _, info = vec.step(np.zeros((3, 3), dtype=np.int64))
    assert np.allclose(r, info["val_top1"] / 100)
    _, r, *_ = make(lambda m: 0.5).step(np.zeros((3, 3), dtype=np.int64))
    assert r.tolist() == [0.5, 0.5, 0.5]
