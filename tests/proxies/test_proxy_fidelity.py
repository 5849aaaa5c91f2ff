"""Zero-cost proxies as the cheapest fidelity: costs in every unit, charging, the envs, bad input.

Expected costs are worked out here from the store's raw columns with the rule as documented: seconds = the
proxy's recorded seconds for that model and initialisation seed; epochs = seconds / (the model's seed-mean
normal training seconds / the run's epochs); evaluations = seconds / the model's seed-mean training seconds.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import blox_env  # noqa: F401  (registers the env ids)
from blox_env.datasets.store.core import open_store
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError, MissingCostError
from blox_env.rewards.factory import make_tabular_backend
from blox_env.rewards.tabular import TabularReward
from blox_env.runs import PROXY_FIDELITY, BatchedRuns, SearchRun
from blox_env.space import Arch


@pytest.fixture(scope="module")
def store():
    return open_store()


def _expected(store, name: str, seed: int, row: int, unit: str) -> float:
    pos = store.proxy_init_seeds().index(seed)
    seconds = store.get_proxy(name, init_seed=store.proxy_init_seeds()[pos], time=True)[row]
    info = store.run_info()
    train = np.mean([store.get("train_time_s", None, seed=s)[row] for s in info.seeds])
    return {"seconds": seconds, "epochs": seconds / (train / info.epochs), "evaluations": seconds / train}[unit]


@pytest.mark.parametrize("unit", ["seconds", "epochs", "evaluations"])
def test_proxy_evaluation_costs_its_recorded_seconds_in_every_unit(store, unit: str) -> None:
    backend = TabularReward(store, proxy="snip", proxy_init_seed=1)
    for row in (0, 17, 400):
        arch = Arch.from_index(int(store.index[row]))
        ev = backend.evaluate(arch, PROXY_FIDELITY, cost_unit=unit)
        assert ev.fidelity == 0 and ev.source == "proxy:snip" and ev.seed == 1
        assert ev.metrics["proxy:snip"] == store.get("proxy:snip", [arch.index], init_seed=1)[0]
        assert ev.cost == pytest.approx(_expected(store, "snip", 1, row, unit), rel=1e-12)
        assert "val_top1" not in ev.metrics  # nothing was trained
    # a proxy costs a small fraction of one training here (the point of the fidelity)
    assert 0 < backend.evaluate(Arch.from_index(int(store.index[0])), 0, cost_unit="evaluations").cost < 0.5


def test_random_and_mean_init_seeds(store) -> None:
    arch = Arch.from_index(int(store.index[3]))
    seen = {TabularReward(store, proxy="grasp").evaluate(arch, 0, rng=np.random.default_rng(k)).seed for k in range(40)}
    assert seen == set(store.proxy_init_seeds())
    ev = TabularReward(store, proxy="grasp", proxy_init_seed="mean").evaluate(arch, 0)
    values = [store.get("proxy:grasp", [arch.index], init_seed=s)[0] for s in store.proxy_init_seeds()]
    times = [store.get_proxy("grasp", [arch.index], init_seed=s, time=True)[0] for s in store.proxy_init_seeds()]
    assert ev.seed == "mean" and ev.metrics["proxy:grasp"] == pytest.approx(np.mean(values))
    assert ev.cost == pytest.approx(np.mean(times))


def test_search_run_pays_a_proxy_once_and_never_takes_it_as_the_answer(store) -> None:
    backend = TabularReward(store, proxy="synflow", proxy_init_seed=0)
    arch = Arch.from_index(int(store.index[9]))
    run = SearchRun(budget=1e6, metric="val_top1", seed=0)
    first = run.evaluate(backend, arch, 0)
    assert first.charged == pytest.approx(_expected(store, "synflow", 0, 9, "seconds"))
    assert math.isnan(first.value) and run.ledger.best == -math.inf  # a proxy score is no accuracy
    row = run.record(first)
    assert row["select"] is False and math.isnan(row["objective"]) and row["fidelity"] == 0
    assert run.evaluate(backend, arch, 0).charged == 0.0  # a repeat is free
    trained = run.evaluate(backend, arch, None)  # training is its own work: charged in full
    assert trained.charged == pytest.approx(trained.evaluation.cost) and trained.charged > 0
    assert run.ledger.best == trained.value and run.record(trained)["select"] is True
    again = SearchRun(budget=1e6, charge_repeats=True, seed=0)
    again.evaluate(backend, arch, 0)
    assert again.evaluate(backend, arch, 0).charged == pytest.approx(first.charged)


def test_missing_proxy_time_follows_the_missing_cost_rule(store) -> None:
    backend = TabularReward(store, proxy="nwot", proxy_init_seed=0)
    backend.proxy_fidelity.seconds = backend.proxy_fidelity.seconds.copy()
    backend.proxy_fidelity.seconds[0, 5] = np.nan
    arch = Arch.from_index(int(store.index[5]))
    with pytest.raises(MissingCostError, match=f"{arch.index}.*proxies/time_s/nwot"):
        SearchRun(budget=100.0, seed=0).evaluate(backend, arch, 0)
    known = backend.proxy_fidelity.seconds[np.isfinite(backend.proxy_fidelity.seconds)]
    out = SearchRun(budget=100.0, missing_cost="median", seed=0).evaluate(backend, arch, 0)
    assert out.charged == pytest.approx(np.median(known)) and out.evaluation.cost_imputed == "median"


@pytest.mark.parametrize("env_id", ["Blox-v0", "BloxOneShot-v0"])
def test_envs_at_the_proxy_fidelity(store, env_id: str) -> None:
    env = gym.make(env_id, benchmark=store, epochs=0, proxy="fisher", proxy_init_seed=2, cost_unit="epochs",
                   budget=50.0)
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    info: dict = {}
    while "metrics" not in info:
        _, reward, _, _, info = env.step(env.action_space.sample())
    row = int(store.rows([info["arch_index"]])[0])
    assert reward == info["metrics"]["proxy:fisher"] == store.get("proxy:fisher", [info["arch_index"]], init_seed=2)[0]
    assert info["fidelity"] == 0 and info["cost"] == pytest.approx(_expected(store, "fisher", 2, row, "epochs"))
    assert info["best_so_far"] == reward


def test_vector_env_charges_each_sub_run_its_proxy(store) -> None:
    env = gym.make_vec("BloxOneShot-v0", num_envs=3, vectorization_mode="vector_entry_point", benchmark=store,
                       epochs=0, proxy="zen", proxy_init_seed=0, cost_unit="evaluations", budget=10.0)
    env.reset(seed=0)
    actions = np.array([[0, 0, 0], [1, 2, 3], [0, 0, 0]])
    _, reward, _, _, info = env.step(actions)
    local = env.unwrapped.backend.space
    idx = [Arch(tuple(local.blocks[s][a[s]] for s in range(3))).index for a in actions]
    rows = store.rows(idx)
    want = [_expected(store, "zen", 0, int(r), "evaluations") for r in rows]
    np.testing.assert_allclose(info["cumulative_cost"], want, rtol=1e-12)
    np.testing.assert_allclose(reward, store.get("proxy:zen", idx, init_seed=0))
    _, _, _, _, info = env.step(actions)  # repeats are free
    np.testing.assert_allclose(info["cumulative_cost"], want, rtol=1e-12)


def test_batched_runs_pay_the_proxy_fidelity_once_per_row() -> None:
    runs = BatchedRuns(2, n_rows=4, budget=None, cost_unit="seconds")
    cost = runs.charge(np.array([0, 1]), np.array([2, 2]), PROXY_FIDELITY, np.array([0.5, 0.25]))
    np.testing.assert_allclose(cost, [0.5, 0.25])
    np.testing.assert_allclose(runs.charge(np.array([0]), np.array([2]), PROXY_FIDELITY, np.array([0.5])), [0.0])


# ---------------------------------------------------------------------- bad input
def test_bad_proxy_options_are_refused(store) -> None:
    with pytest.raises(InvalidArgumentError, match="unknown proxy 'nope'.*synflow"):
        TabularReward(store, proxy="nope")
    with pytest.raises(InvalidArgumentTypeError, match="proxy must be"):
        TabularReward(store, proxy=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"proxy_init_seed .*\[0, 1, 2\], got 7"):
        TabularReward(store, proxy="snip", proxy_init_seed=7)
    with pytest.raises(InvalidArgumentError, match=r"\(fidelity\) 0 is the zero-cost proxy fidelity.*synflow"):
        TabularReward(store).evaluate(Arch.from_index(int(store.index[0])), 0)
    with pytest.raises(InvalidArgumentError, match="mode='normal'"):
        make_tabular_backend(store, mode="blockwise", proxy="snip")
    for not_an_epoch in (0.0, np.False_, False):
        with pytest.raises(InvalidArgumentError, match="integer in 1"):
            TabularReward(store, proxy="snip").fidelity(not_an_epoch)


def test_bad_env_proxy_options_are_refused(store) -> None:
    with pytest.raises(InvalidArgumentError, match="epochs=0 is the zero-cost proxy fidelity: name the proxy"):
        gym.make("Blox-v0", benchmark=store, epochs=0)
    with pytest.raises(InvalidArgumentError, match="objectives= needs a trained fidelity"):
        gym.make("Blox-v0", benchmark=store, epochs=0, proxy="snip", objectives=("val_top1", "params"))
    with pytest.raises(InvalidArgumentTypeError, match="proxy_init_seed must be"):
        gym.make("Blox-v0", benchmark=store, proxy="snip", proxy_init_seed=1.5)
    with pytest.raises(InvalidArgumentError, match="proxy= is answered by the tabular reward"):
        gym.make("Blox-v0", benchmark=store, reward="surrogate", proxy="snip")
    backend = TabularReward(store, proxy="grasp")
    with pytest.raises(InvalidArgumentError, match="proxy='snip' but the reward backend answers .*'grasp'"):
        gym.make("Blox-v0", backend=backend, epochs=0, proxy="snip")


def test_proxies_as_objectives(store) -> None:
    """``proxy:<name>`` is an objective column: one value per model (the mean over init seeds), maximised."""
    from blox_env.objectives import objective_matrix, parse_objectives

    objs = parse_objectives(("test_top1", "proxy:snip", "proxy:grasp:min"), store=store)
    assert [(o.column, o.direction) for o in objs] == [("test_top1", "max"), ("proxy:snip", "max"),
                                                       ("proxy:grasp", "min")]
    mean = np.mean([store.get_proxy("snip", init_seed=s) for s in store.proxy_init_seeds()], axis=0)
    matrix = objective_matrix(store, objs, seed="mean")
    np.testing.assert_allclose(matrix[:, 1], -mean)  # maximised columns negated
    np.testing.assert_allclose(matrix[:, 2], store.get("proxy:grasp"))
    env = gym.make("BloxOneShot-v0", benchmark=store, objectives=("test_top1", "proxy:snip"), seed_mode=0)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.array([1, 2, 3]))
    row = int(store.rows([info["arch_index"]])[0])
    assert reward[1] == pytest.approx(mean[row], rel=1e-6)
    with pytest.raises(InvalidArgumentError, match="unknown objective column 'proxy:nope'.*proxy:snip"):
        parse_objectives(("proxy:nope",), store=store)
    with pytest.raises(InvalidArgumentError, match="no epochs|per-epoch"):
        parse_objectives(("proxy:snip@3",), store=store)
