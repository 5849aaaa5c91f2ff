"""Multi-objective agents: within budget, reproducible, constraint-abiding, fronts and rankings checked by hand."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from blox_env import Evaluation
from blox_env.agents import (
    AGENTS,
    MOBRPNAS,
    MORandomSearch,
    NSGA2Evolution,
    ParEGOLocalSearch,
    RandomSearch,
    make_agent,
    make_constraint,
)
from blox_env.agents.loop import run_search
from blox_env.agents.multiobjective import crowding_distance, nsga2_order
from blox_env.agents.scalarised import chebyshev, random_weights
from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.datasets.synthetic import synthetic_store
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError
from blox_env.objectives import Objective, objective_matrix, parse_objectives
from blox_env.pareto import hypervolume, nondominated, reference_point
from blox_env.rewards import TabularReward
from blox_env.space import Arch, SubSpace, neighbours

torch.set_num_threads(1)

SPACE = SubSpace(((0, 9, 21, 30, 44), (1, 10, 12, 36, 40), (2, 11, 23, 44, 5)))  # 125 models
MO_NAMES = ("mo-random", "nsga2", "parego", "mo-brpnas")
FAST_BRP = {"initial": 8, "per_iteration": 6, "predictor_config": {"epochs": 10, "hidden": 16}}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> BloxStore:
    path = tmp_path_factory.mktemp("mo") / "s.zarr"
    synthetic_store(path, space=SPACE, seeds=(0, 1), epochs=9, seed=1).close()
    return open_store(path)


@pytest.fixture(scope="module")
def objectives(store: BloxStore) -> tuple[Objective, ...]:
    return parse_objectives(("val_top1", "latency:cpu"), store=store)


def _agent(name: str, seed: Any, objectives: tuple[Objective, ...], **kw: Any) -> Any:
    if name == "mo-brpnas":
        kw = {**FAST_BRP, **kw}
    if name == "nsga2":
        kw = {"population": 10, "sample_size": 3, **kw}
    return make_agent(name, SPACE, seed=seed, objectives=objectives, **kw)


def _search(agent: Any, store: BloxStore, budget: float, **kw: Any) -> list[dict[str, Any]]:
    return run_search(agent, TabularReward(store, seed_mode=0), budget=budget, cost_unit="seconds", seed=0,
                      metric="val_top1", **kw)


def _median_cost(store: BloxStore) -> float:
    return float(np.median(store.get("train_time_s", seed=0)))


# ---------------------------------------------------------------------------------------------- every MO agent
def test_registered_under_clear_names() -> None:
    assert {AGENTS[n] for n in MO_NAMES} == {MORandomSearch, NSGA2Evolution, ParEGOLocalSearch, MOBRPNAS}
    agent = make_agent("nsga2", SPACE, seed=0)  # default objectives: the metric up, params down
    assert agent.objectives == (Objective("val_top1", "max"), Objective("params", "min"))
    empty = agent.front()  # nothing told yet
    assert empty.indices.shape == (0,) and empty.values.shape == (0, 2)


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("name", MO_NAMES)
def test_within_budget_and_front_of_what_was_told(store: BloxStore, objectives: Any, name: str, workers: int) -> None:
    budget = 14 * _median_cost(store)
    agent = _agent(name, 0, objectives)
    trace = _search(agent, store, budget, sim_workers=workers)
    costs = [r["cost"] for r in trace]
    assert len(trace) > 8 and np.isclose(trace[-1]["cumulative_cost"], sum(costs))
    if workers == 1:  # only the evaluation that crosses the budget may end past it
        assert all(r["cumulative_cost"] < budget for r in trace[:-1]) and trace[-1]["cumulative_cost"] >= budget
    else:  # started while the committed compute was under budget: at most the workers in flight go past it
        assert trace[-1]["cumulative_cost"] < budget + workers * max(costs)
    # front(): the non-dominated set of the told models, in the objectives' own units, checked independently
    told = sorted({r["arch_index"] for r in trace})
    vals = objective_matrix(store, objectives, seed=0, archs=told) * np.array([-1.0, 1.0])  # own units
    expect = {i for i, keep in zip(told, nondominated(vals, directions=("max", "min"))) if keep}
    front = agent.front()
    assert set(front.indices.tolist()) == expect and front.objectives == objectives
    by_index = dict(zip(told, vals.tolist()))
    assert front.values.tolist() == [by_index[i] for i in front.indices.tolist()]
    assert np.all(np.diff(front.values[:, 0]) <= 0)  # best (highest accuracy) first


@pytest.mark.parametrize("name", MO_NAMES)
def test_reproducible_with_a_seed(store: BloxStore, objectives: Any, name: str) -> None:
    budget = 12 * _median_cost(store)

    def go(seed: Any) -> list[int]:
        return [r["arch_index"] for r in _search(_agent(name, seed, objectives), store, budget)]

    assert go(3) == go(3) == go(np.random.default_rng(3)) and go(3) != go(4)


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("name", MO_NAMES)
def test_constraint_respected(store: BloxStore, objectives: Any, name: str, workers: int) -> None:
    backend = TabularReward(store, seed_mode=0)
    limit = float(np.quantile(store.get("params"), 0.4))
    constraint = make_constraint(backend, {"params": limit})
    agent = _agent(name, 0, objectives, constraint=constraint)
    trace = _search(agent, store, 14 * _median_cost(store), sim_workers=workers)
    assert len(trace) > 8
    assert all(constraint(Arch.from_index(r["arch_index"])) for r in trace)
    assert all(r["metrics"]["params"] <= limit for r in trace)


def test_objective_epochs_set_the_fidelity(store: BloxStore) -> None:
    objs = parse_objectives(("val_top1@3", "params"), store=store)
    agent = make_agent("mo-random", SPACE, seed=0, objectives=objs)
    assert agent.fidelity == 3
    trace = run_search(agent, TabularReward(store, seed_mode=0), budget=5, cost_unit="evaluations", seed=0,
                       metric="val_top1")
    assert {r["fidelity"] for r in trace} == {3}
    at3 = store.get("val_top1", [trace[0]["arch_index"]], seed=0, epoch=3)[0]
    assert agent.archive[trace[0]["arch_index"]][0] == pytest.approx(-at3)  # maximised: negated
    with pytest.raises(InvalidArgumentError, match="epochs must agree"):
        make_agent("nsga2", SPACE, seed=0, objectives=parse_objectives(("val_top1@3", "test_top1"), store=store))


def test_a_missing_objective_column_is_refused_before_any_state_changes(store: BloxStore) -> None:
    agent = make_agent("parego", SPACE, seed=0, objectives=(Objective("val_top1", "max"), Objective("energy", "min")))
    arch = agent.ask()
    with pytest.raises(InvalidArgumentError, match="has no 'energy'"):
        agent.tell(arch, TabularReward(store, seed_mode=0).evaluate(arch, cost_unit="evaluations"))
    assert agent.archive == {} and agent.history == []


# ---------------------------------------------------------------------------------------------- NSGA-II
def test_crowding_distance_and_order_by_hand() -> None:
    pts = np.array([[0.0, 4.0], [1.0, 2.0], [3.0, 1.0], [4.0, 0.0]])
    # objective 0 range 4: interior gaps (3-0)/4, (4-1)/4; objective 1 range 4: (4-1)/4, (2-0)/4
    assert crowding_distance(pts).tolist() == [math.inf, 0.75 + 0.75, 0.75 + 0.5, math.inf]
    assert crowding_distance(pts[:2]).tolist() == [math.inf, math.inf]
    with_rest = np.vstack([pts, [[5.0, 5.0], [np.nan, 1.0]]])  # one dominated point, one missing value
    rank, crowd = nsga2_order(with_rest)
    assert rank.tolist() == [0, 0, 0, 0, 1, 2] and crowd[4] == math.inf and crowd[5] == 0.0
    with pytest.raises(InvalidArgumentError, match=r"\[n, k\]"):
        crowding_distance([1.0, 2.0])


def _ev(arch: Arch, acc: float, params: float, fidelity: int = 9) -> Evaluation:
    return Evaluation(arch, {"val_top1": acc, "params": params}, 1.0, "evaluations", "tabular", fidelity, 0)


def test_nsga2_tournament_uses_rank_then_crowding_then_age() -> None:
    agent = NSGA2Evolution(SPACE, seed=0, population=4, sample_size=4)  # the tournament sees everyone
    for _ in range(4):
        agent.ask()  # the random initial population
    d, c, a, b = Arch((0, 1, 2)), Arch((9, 10, 11)), Arch((21, 12, 23)), Arch((30, 36, 44))
    for arch, acc, params in [(d, 70, 4), (c, 85, 3), (a, 90, 5), (b, 80, 1)]:  # told oldest first
        agent.tell(arch, _ev(arch, acc, params))
    rank, crowd = agent.population_order()
    # d is dominated by c (rank 1); a and b are the boundaries of rank 0 (inf), c is interior
    assert rank.tolist() == [1, 0, 0, 0] and crowd[2] == crowd[3] == math.inf and math.isfinite(crowd[1])
    # the winner is the oldest boundary member of rank 0: a (not d, older but dominated; not c, interior)
    for _ in range(8):
        child = agent.ask()
        assert child in neighbours(a, SPACE)
    agent.tell(d, _ev(d, 95, 0.5))  # aging: the oldest (d) leaves, and its re-evaluation joins dominating all
    assert [m.index for m, _ in agent.population] == [c.index, a.index, b.index, d.index]
    assert agent.population_order()[0].tolist() == [1, 1, 1, 0]
    assert all(agent.ask() in neighbours(d, SPACE) for _ in range(4))


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> BloxStore:
    path: Path = tmp_path_factory.mktemp("mo-big") / "s.zarr"
    stride = tuple(range(0, 45, 5))
    synthetic_store(path, space=SubSpace((stride, stride, stride)), seeds=(0,), epochs=4, seed=0).close()
    return open_store(path)


def test_nsga2_reaches_a_higher_hypervolume_than_random(big_store: BloxStore) -> None:
    objs = parse_objectives(("val_top1", "latency:cpu"), store=big_store)
    every = objective_matrix(big_store, objs, seed=0) * np.array([-1.0, 1.0])
    ref = reference_point(every, directions=objs)
    space = SubSpace((tuple(range(0, 45, 5)),) * 3)  # 729 models

    def hv(name: str, seed: int) -> float:
        kw = {"population": 10, "sample_size": 3} if name == "nsga2" else {}
        agent = make_agent(name, space, seed=seed, objectives=objs, **kw)
        run_search(agent, TabularReward(big_store, seed_mode=0), budget=80, cost_unit="evaluations", seed=seed,
                   metric="val_top1")
        return hypervolume(agent.front().values, reference=ref, directions=objs)

    seeds = range(6)
    random_hv = np.mean([hv("mo-random", s) for s in seeds])
    assert np.mean([hv("nsga2", s) for s in seeds]) > random_hv
    assert np.mean([hv("parego", s) for s in seeds]) > random_hv


# ---------------------------------------------------------------------------------------------- scalarisations
def test_chebyshev_and_random_weights_by_hand() -> None:
    # max(0.5 * 0.2, 0.5 * 0.8) + 0.05 * (0.1 + 0.4)
    assert chebyshev([[0.2, 0.8]], [0.5, 0.5]).tolist() == pytest.approx([0.425])
    assert chebyshev([[0.2, 0.8], [np.nan, 0.0]], [1.0, 0.0], rho=0.0).tolist() == [0.2, math.inf]
    w = random_weights(3, rng=np.random.default_rng(0))
    assert w.shape == (3,) and (w >= 0).all() and w.sum() == pytest.approx(1.0)
    assert not np.allclose(w, random_weights(3, rng=np.random.default_rng(1)))
    with pytest.raises(InvalidArgumentError, match="one entry per objective"):
        chebyshev([[0.2, 0.8]], [1.0])
    with pytest.raises(InvalidArgumentError, match="k must be an integer >= 1"):
        random_weights(0, rng=np.random.default_rng(0))


def test_parego_climbs_from_the_best_model_under_its_weights(store: BloxStore, objectives: Any) -> None:
    backend = TabularReward(store, seed_mode=0)
    agent = ParEGOLocalSearch(SPACE, seed=2, objectives=objectives, initial=6)
    told = []
    for _ in range(6):
        arch = agent.ask()
        agent.tell(arch, backend.evaluate(arch, cost_unit="evaluations"))
        told.append(arch.index)
    nxt = agent.ask()
    assert agent.iterations == 1 and not np.allclose(agent.weights, 0.5)
    # by hand: scale each objective to [0, 1] over the told models, augmented Chebyshev with the drawn weights
    pts = objective_matrix(store, objectives, seed=0, archs=told)
    z = (pts - pts.min(axis=0)) / (pts.max(axis=0) - pts.min(axis=0))
    s = (z * agent.weights).max(axis=1) + 0.05 * (z * agent.weights).sum(axis=1)
    start = Arch.from_index(told[int(np.argmin(s))])
    inc = agent.incumbent
    assert inc is not None and inc.index in told
    # it started at ``start``; it may have moved on through known neighbours that score better
    assert inc == start or s[told.index(inc.index)] < s[told.index(start.index)]
    assert nxt in neighbours(agent.incumbent, SPACE) and nxt.index not in told


def test_mo_brpnas_scalarises_with_fixed_or_random_weights(store: BloxStore, objectives: Any) -> None:
    budget = 20
    fixed = MOBRPNAS(SPACE, seed=0, objectives=objectives, weights=(3, 1), **FAST_BRP)
    run_search(fixed, TabularReward(store, seed_mode=0), budget=budget, cost_unit="evaluations", seed=0,
               metric="val_top1")
    assert fixed.iterations >= 1 and fixed.weights.tolist() == [0.75, 0.25]
    rand = MOBRPNAS(SPACE, seed=0, objectives=objectives, **FAST_BRP)
    seen = []
    for _ in range(budget):
        arch = rand.ask()
        if not seen or not np.allclose(seen[-1], rand.weights):
            seen.append(rand.weights.copy())
        rand.tell(arch, TabularReward(store, seed_mode=0).evaluate(arch, cost_unit="evaluations"))
    assert rand.iterations >= 2 and len(seen) == rand.iterations + 1  # equal weights first, then one per iteration


# ---------------------------------------------------------------------------------------------- pending
def test_sample_avoids_pending_models_and_a_tell_clears_them() -> None:
    small = SubSpace(((0, 9, 21), (1, 10), (2,)))  # 6 models
    archs = [Arch.from_index(int(i)) for i in small.indices()]
    agent = RandomSearch(small, seed=0)
    agent.pending(archs[:5])
    assert agent.pending_indices == {a.index for a in archs[:5]}
    assert {agent.sample() for _ in range(20)} == {archs[5]}
    assert agent.sample(exclude={archs[5].index}) in archs[:5]  # all idle ones excluded: exclude wins
    agent.pending(archs)
    assert agent.sample() in archs  # everything in flight: repeats are unavoidable
    agent.tell(archs[0], _ev(archs[0], 50.0, 1.0))
    assert archs[0].index not in agent.pending_indices and len(agent.pending_indices) == 5
    with pytest.raises(InvalidArgumentTypeError, match="Arch objects only"):
        agent.pending([archs[0].index])
    with pytest.raises(InvalidArgumentTypeError, match="iterable of Arch"):
        agent.pending(archs[0])


@pytest.mark.parametrize("name", MO_NAMES)
def test_mo_agents_avoid_models_in_flight(store: BloxStore, objectives: Any, name: str) -> None:
    backend = TabularReward(store, seed_mode=0)
    agent = _agent(name, 0, objectives)
    busy: list[Arch] = []
    for _ in range(24):  # ask with a growing set in flight, telling the oldest of every second one
        agent.pending(busy)
        arch = agent.ask()
        assert arch not in busy
        busy.append(arch)
        if len(busy) % 2 == 0:
            done = busy.pop(0)
            agent.tell(done, backend.evaluate(done, cost_unit="evaluations"))


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", MO_NAMES)
@pytest.mark.parametrize("objectives,err,match", [
    ("val_top1", InvalidArgumentTypeError, "non-empty sequence of Objective"),
    ((), InvalidArgumentTypeError, "non-empty sequence of Objective"),
    (("val_top1", "params"), InvalidArgumentTypeError, "must be Objective instances"),
    ((Objective("params", "min"), Objective("params", "max")), InvalidArgumentError, "more than once"),
])
def test_bad_objectives_are_refused(name: str, objectives: Any, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        _agent(name, 0, objectives)


@pytest.mark.parametrize("name,kw,match", [
    ("mo-random", {"seed": -1}, "seed must be"),
    ("nsga2", {"population": 1}, "population must be an integer >= 2"),
    ("nsga2", {"sample_size": 30}, "sample_size"),
    ("nsga2", {"population": 2.5}, "population must be"),
    ("parego", {"initial": 0}, "initial must be an integer >= 1"),
    ("parego", {"rho": -0.1}, "rho must be a number >= 0"),
    ("parego", {"rho": "0.05"}, "rho must be a real number"),
    ("mo-brpnas", {"weights": (1.0,)}, "weights must be None"),
    ("mo-brpnas", {"weights": (1.0, -1.0)}, "weights must be None"),
    ("mo-brpnas", {"weights": (0, 0)}, "weights must be None"),
    ("mo-brpnas", {"weights": "ab"}, "weights must be None"),
    ("mo-brpnas", {"rho": math.nan}, "rho must be a finite number"),
    ("mo-brpnas", {"initial": 1}, "initial must be an integer >= 2"),
])
def test_bad_options_are_refused(objectives: Any, name: str, kw: dict, match: str) -> None:
    seed = kw.pop("seed", 0)
    with pytest.raises(InvalidArgumentError, match=match):
        _agent(name, seed, objectives, **kw)
    with pytest.raises(InvalidArgumentError, match="SubSpace"):
        AGENTS[name]([0, 1], seed=0, objectives=objectives)
    with pytest.raises(InvalidArgumentError, match="constraint must be a callable"):
        _agent(name, 0, objectives, constraint=5)


def test_local_search_needs_two_models() -> None:
    with pytest.raises(InvalidArgumentError, match="at least 2 models"):
        ParEGOLocalSearch(SubSpace(((0,), (1,), (2,))), seed=0)
