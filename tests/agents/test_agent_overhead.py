"""Agent overhead: BRP-NAS's bounded warm-started refits, local search's neighbour tables.

The speed itself is measured by ``benchmarks/harness.py``; these tests pin what the speed-ups must
not change: local search asks the same models as a brute-force neighbour enumeration, BRP-NAS's
refits cost a bounded number of steps however many models it has seen, runs are reproducible per
seed, and BRP-NAS still finds good models on the bundled store.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from blox_env.agents import BRPNAS, LocalSearch, RandomSearch, make_constraint
from blox_env.agents.brpnas import REFIT_STEPS
from blox_env.agents.evolution import NeighbourTable
from blox_env.errors import InvalidArgumentError
from blox_env.rewards import TabularReward
from blox_env.space import FULL_SPACE, Arch, SubSpace, neighbours

torch.set_num_threads(1)

SPACES = [
    FULL_SPACE,
    SubSpace(((0, 9, 21, 30, 44), (1, 10, 12, 36, 40), (2, 11, 23, 44, 5))),
    SubSpace(((7,), (3, 4), tuple(range(0, 45, 4)))),  # a one-block stage has no neighbours there
]
#: A small predictor so the BRP-NAS tests stay fast; the schedule (cold fit, then bounded refits) is the default's.
TINY_BRP: dict[str, Any] = {"epochs": 6, "hidden": 16, "classifier_hidden": 8, "batch_size": 16}


@pytest.fixture(scope="module")
def mini() -> TabularReward:
    """The bundled Blox-mini store (729 models), seeds drawn at random as the main job does."""
    from blox_env.datasets.store.core import open_store

    return TabularReward(open_store(None), seed_mode="random")


def drive(agent: Any, backend: TabularReward, steps: int, *, seed: int = 0) -> list[Arch]:
    """ask -> evaluate -> tell, ``steps`` times; the asked models."""
    rng = np.random.default_rng(seed)
    asked = []
    for _ in range(steps):
        arch = agent.ask()
        agent.tell(arch, backend.evaluate(arch, agent.fidelity, cost_unit="evaluations", rng=rng))
        asked.append(arch)
    return asked


# ---------------------------------------------------------------------------------------------- local search
@pytest.mark.parametrize("space", SPACES, ids=["full", "5x5x5", "1x2x12"])
def test_neighbour_table_equals_brute_force(space: SubSpace) -> None:
    table = NeighbourTable(space)
    members = space.indices()
    picks = np.random.default_rng(0).choice(members, size=min(200, len(members)), replace=False)
    for index in picks.tolist():
        expected = [a.index for a in neighbours(Arch.from_index(index), space)]
        got = table(index)
        assert got.dtype == np.int64
        assert got.tolist() == expected  # same models, same order (so a seeded shuffle asks the same ones)


def test_local_search_neighbourhood_is_the_feasible_brute_force_one(mini: TabularReward) -> None:
    params = mini.static_costs()["params"]
    constraint = make_constraint(mini, {"params": float(np.median(params))})
    agent = LocalSearch(mini.space, seed=1, constraint=constraint)
    drive(agent, mini, 1)  # the start: the agent moves there and queues its neighbours
    assert agent.incumbent is not None
    brute = {a.index for a in neighbours(agent.incumbent[0], mini.space) if constraint(a)}
    assert sorted(agent._queue) == sorted(brute) and len(brute) > 0


@pytest.mark.parametrize("strategy", ["first", "best"])
def test_local_search_mask_and_callable_constraints_ask_the_same(mini: TabularReward, strategy: str) -> None:
    params = mini.static_costs()["params"]
    constraint = make_constraint(mini, {"params": float(np.quantile(params, 0.7))})
    with_mask = drive(LocalSearch(mini.space, seed=2, strategy=strategy, constraint=constraint), mini, 80)
    plain = drive(LocalSearch(mini.space, seed=2, strategy=strategy, constraint=lambda a: constraint(a)), mini, 80)
    assert [a.index for a in with_mask] == [a.index for a in plain]
    assert all(constraint(a) for a in with_mask)


# ---------------------------------------------------------------------------------------------- BRP-NAS
def test_brpnas_refits_are_bounded(mini: TabularReward) -> None:
    agent = BRPNAS(mini.space, seed=0, initial=8, per_iteration=6, pool=64, predictor_config=TINY_BRP, refit_steps=4)
    drive(agent, mini, 44)
    assert agent.iterations == 6
    # the first fit is cold (epochs x batches of the 8 initial models); every later one is warm and 4 steps,
    # however many models have been evaluated by then (up to 38 here: 3 batches of 16 per epoch)
    assert agent.fit_steps == [TINY_BRP["epochs"] * 1] + [4] * 5
    assert agent.predictor.n_train_ == 38


def test_brpnas_cold_refits_grow_with_the_data(mini: TabularReward) -> None:
    """``warm_start=False`` is the old behaviour: a fresh full fit each round, growing with the training set."""
    agent = BRPNAS(mini.space, seed=0, initial=10, per_iteration=10, pool=64, predictor_config=TINY_BRP,
                   warm_start=False)
    drive(agent, mini, 41)
    assert agent.fit_steps == [6 * 1, 6 * 2, 6 * 2, 6 * 3]  # epochs x ceil(n / 16) for n = 10, 20, 30, 40


def test_brpnas_default_schedule() -> None:
    agent = BRPNAS(SPACES[1], seed=0)
    assert agent.warm_start is True and agent.refit_steps == REFIT_STEPS
    with pytest.raises(InvalidArgumentError, match="refit_steps"):
        BRPNAS(SPACES[1], seed=0, refit_steps=0)
    with pytest.raises(InvalidArgumentError, match="warm_start"):
        BRPNAS(SPACES[1], seed=0, warm_start="yes")  # type: ignore[arg-type]


def test_brpnas_reproducible_per_seed(mini: TabularReward) -> None:
    def run(seed: Any) -> list[int]:
        agent = BRPNAS(mini.space, seed=seed, initial=8, per_iteration=4, pool=64, predictor_config=TINY_BRP)
        return [a.index for a in drive(agent, mini, 20)]

    first = run(5)
    assert run(5) == first
    assert run(np.random.default_rng(5)) == first
    assert run(6) != first


def test_warm_fit_continues_from_the_weights() -> None:
    from blox_env.predictors.brp import BRPPredictor

    archs = SPACES[1].indices()[:40]
    y = np.random.default_rng(0).normal(size=40)
    cold = BRPPredictor(**TINY_BRP).fit(archs[:20], y[:20], seed=1)
    start = {k: v.clone() for k, v in cold.model.state_dict().items()}
    warm = cold.fit(archs, y, seed=2, warm_start=True, steps=3)
    assert warm is cold and warm.fit_steps_ == 3 and warm.n_train_ == 40
    fresh = BRPPredictor(**TINY_BRP).fit(archs, y, seed=2, steps=3)  # same seed and steps from fresh weights
    moved = sum(float((warm.model.state_dict()[k] - start[k]).abs().sum()) for k in start)
    assert moved > 0
    assert not np.allclose(warm.predict(archs), fresh.predict(archs))
    again = BRPPredictor(**TINY_BRP).fit(archs[:20], y[:20], seed=1).fit(archs, y, seed=2, warm_start=True, steps=3)
    np.testing.assert_array_equal(again.predict(archs), warm.predict(archs))
    with pytest.raises(InvalidArgumentError, match="steps"):
        cold.fit(archs, y, seed=0, steps=0)
    with pytest.raises(InvalidArgumentError, match="warm_start"):
        cold.fit(archs, y, seed=0, warm_start=1)


def test_default_fit_is_epochs_of_minibatches() -> None:
    from blox_env.predictors.brp import BRPPredictor

    archs = SPACES[1].indices()[:40]
    y = np.random.default_rng(0).normal(size=40)
    pred = BRPPredictor(**TINY_BRP).fit(archs, y, seed=0)
    assert pred.fit_steps_ == TINY_BRP["epochs"] * 3  # ceil(40 / 16) batches per epoch
    np.testing.assert_array_equal(BRPPredictor(**TINY_BRP).fit(archs, y, seed=0).predict(archs), pred.predict(archs))


@pytest.mark.slow
def test_brpnas_beats_random_on_the_bundled_store(mini: TabularReward) -> None:
    """Default BRP-NAS (warm refits) vs random search: 60 evaluations, 4 seeds, test top-1 of the best-val model."""

    def answer(agent: Any, seed: int) -> float:
        rng = np.random.default_rng(seed)
        best = (-np.inf, np.nan)
        for _ in range(60):
            arch = agent.ask()
            ev = mini.evaluate(arch, None, cost_unit="evaluations", rng=rng)
            agent.tell(arch, ev)
            best = max(best, (ev.metrics["val_top1"], ev.metrics["test_top1"]))
        return best[1]

    brp = [answer(BRPNAS(mini.space, seed=s), s) for s in range(4)]
    rand = [answer(RandomSearch(mini.space, seed=s), s) for s in range(4)]
    assert np.mean(brp) > np.mean(rand)
