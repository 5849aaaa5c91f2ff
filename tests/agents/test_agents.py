"""Search agents: run in the space, reproducible, constraint-abiding, and each does its job on a synthetic store."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from blox_env import Evaluation
from blox_env.agents import (
    AGENTS,
    BRPNAS,
    Agent,
    DonnaSearch,
    Hyperband,
    LanaSearch,
    LocalSearch,
    RandomSearch,
    RegularizedEvolution,
    Reinforce,
    SuccessiveHalving,
    lana_optimum,
    make_agent,
    make_constraint,
)
from blox_env.agents.brpnas import split_picks
from blox_env.agents.halving import rung_fidelities
from blox_env.errors import InvalidArgumentError
from blox_env.rewards import TabularReward
from blox_env.space import N_BLOCKS, Arch, SubSpace, neighbours

torch.set_num_threads(1)

SPACE = SubSpace(((0, 9, 21, 30, 44), (1, 10, 12, 36, 40), (2, 11, 23, 44, 5)))  # 125 models
FAST_BRP = {"initial": 10, "per_iteration": 8, "predictor_config": {"epochs": 15, "hidden": 16}}
SIGNATURES = np.random.default_rng(7).normal(size=(3, N_BLOCKS))


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> TabularReward:
    from blox_env.datasets.store.core import open_store
    from blox_env.datasets.synthetic import synthetic_store

    path = tmp_path_factory.mktemp("agents") / "s.zarr"
    synthetic_store(path, space=SPACE, seeds=(0, 1), epochs=12).close()
    return TabularReward(open_store(path), seed_mode=0)


FACTORIES: dict[str, Callable[..., Any]] = {
    "random": lambda space, **kw: RandomSearch(space, **kw),
    "evolution": lambda space, **kw: RegularizedEvolution(space, population=10, sample_size=3, **kw),
    "local": lambda space, **kw: LocalSearch(space, **kw),
    "local-best": lambda space, **kw: LocalSearch(space, strategy="best", **kw),
    "reinforce": lambda space, **kw: Reinforce(space, lr=1.0, **kw),
    "sh": lambda space, **kw: SuccessiveHalving(space, min_fidelity=1, max_fidelity=12, **kw),
    "hyperband": lambda space, **kw: Hyperband(space, min_fidelity=1, max_fidelity=12, **kw),
    "brpnas": lambda space, **kw: BRPNAS(space, **FAST_BRP, **kw),
    "lana": lambda space, **kw: LanaSearch(space, signatures=SIGNATURES, top=5, **kw),
    "donna": lambda space, **kw: DonnaSearch(space, signatures=np.abs(SIGNATURES), n_init=8, top=4, cycles=60, **kw),
}


def drive(agent: Any, backend: TabularReward, steps: int) -> tuple[list[Arch], list[Evaluation]]:
    """The harness loop in miniature: ask, evaluate at the agent's fidelity, tell."""
    asked, evals = [], []
    for _ in range(steps):
        arch = agent.ask()
        ev = backend.evaluate(arch, agent.fidelity, cost_unit="evaluations")
        agent.tell(arch, ev)
        asked.append(arch)
        evals.append(ev)
    return asked, evals


def full_val(backend: TabularReward) -> np.ndarray:
    """Seed-0 best validation accuracy of every store row at the full fidelity."""
    return backend.column("val_top1", backend.max_fidelity)[0]


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_runs_in_space_and_reproducible(name: str, backend: TabularReward) -> None:
    steps = 25
    agent = FACTORIES[name](backend.space, seed=3)
    assert isinstance(agent, Agent)
    first, evals = drive(agent, backend, steps)
    assert len(first) == steps and all(a in backend.space for a in first)
    assert len(agent.history) == steps and agent.best is not None
    assert agent.best[1] == max(v for (_, v), f in zip(agent.history, agent.fidelities) if f == max(agent.fidelities))
    again, _ = drive(FACTORIES[name](backend.space, seed=3), backend, steps)
    assert [a.index for a in again] == [a.index for a in first]
    gen, _ = drive(FACTORIES[name](backend.space, seed=np.random.default_rng(3)), backend, steps)
    assert [a.index for a in gen] == [a.index for a in first]  # an int seed and default_rng(seed) agree
    if name != "lana":  # LANA's ranking is deterministic by design
        other, _ = drive(FACTORIES[name](backend.space, seed=4), backend, steps)
        assert [a.index for a in other] != [a.index for a in first]


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_constraint_respected(name: str, backend: TabularReward) -> None:
    params = backend.static_costs()["params"]
    limit = float(np.median(params))
    constraint = make_constraint(backend, {"params": limit})
    agent = FACTORIES[name](backend.space, seed=0, constraint=constraint)
    asked, evals = drive(agent, backend, 30)
    assert all(ev.metrics["params"] <= limit for ev in evals)
    assert all(params[backend.rows(np.array([a.index]))[0]] <= limit for a in asked)


def test_constraint_errors(backend: TabularReward) -> None:
    with pytest.raises(InvalidArgumentError, match="allowed .*params"):
        make_constraint(backend, {"size": 1.0})
    with pytest.raises(InvalidArgumentError, match="number"):
        make_constraint(backend, {"params": "big"})
    constraint = make_constraint(backend, {"params": 1.0})  # nothing is that small
    assert not constraint(Arch.from_index(int(backend.space.indices()[0])))
    with pytest.raises(InvalidArgumentError, match="no model of the space"):
        RandomSearch(backend.space, seed=0, constraint=constraint).ask()
    with pytest.raises(InvalidArgumentError, match="tabular backend"):
        make_constraint(object(), {"params": 1.0})


def test_random_search_without_repeats(backend: TabularReward) -> None:
    asked, _ = drive(RandomSearch(backend.space, seed=1), backend, 125)
    assert len({a.index for a in asked}) == 125
    asked, _ = drive(RandomSearch(backend.space, seed=1, dedupe=False), backend, 125)
    assert len({a.index for a in asked}) < 125


@pytest.mark.parametrize("name", ["evolution", "brpnas"])
def test_finds_good_models(name: str, backend: TabularReward) -> None:
    val = full_val(backend)
    agent = make_agent(name, backend.space, seed=0) if name == "evolution" else BRPNAS(backend.space, seed=0)
    _, evals = drive(agent, backend, 40)
    assert agent.best is not None and agent.best[1] > np.median(val)
    if name == "brpnas":  # the predictor's picks beat the random initial models on average
        values = [ev.metrics["val_top1"] for ev in evals]
        assert agent.iterations == 2
        assert np.mean(values[20:]) > np.mean(values[:20])
        assert np.mean(values[20:]) > np.quantile(val, 0.65)


def test_evolution_ages_population(backend: TabularReward) -> None:
    agent = RegularizedEvolution(backend.space, seed=0, population=6, sample_size=2)
    asked, _ = drive(agent, backend, 20)
    assert [a for a, _ in agent.population] == asked[-6:]  # the oldest leave, whatever their value
    for parent_side in asked[6:]:
        assert parent_side in backend.space
    with pytest.raises(InvalidArgumentError, match="sample_size"):
        RegularizedEvolution(backend.space, seed=0, population=3, sample_size=5)


def test_local_search_climbs(backend: TabularReward) -> None:
    val = full_val(backend)
    value_of = {int(i): float(val[r]) for i, r in zip(backend.space.indices(), backend.rows(backend.space.indices()))}
    agent = LocalSearch(backend.space, seed=0)
    asked, last = [], None
    for _ in range(60):
        arch = agent.ask()
        agent.tell(arch, backend.evaluate(arch, cost_unit="evaluations"))
        if agent.incumbent is not None and last is not None and agent.restarts == last[0]:
            assert agent.incumbent[1] >= last[1][1]  # moves only uphill between restarts
        last = (agent.restarts, agent.incumbent) if agent.incumbent is not None else None
        asked.append(arch)
    assert len(agent.optima) == agent.restarts >= 1  # reached a local optimum in 60 steps on 125 models
    for inc, value in agent.optima:  # each beats all its neighbours
        assert all(value_of[n.index] <= value for n in neighbours(inc, SPACE))
    assert len({a.index for a in asked}) == 60  # never re-asks while unseen models remain


@pytest.mark.parametrize("cls", [SuccessiveHalving, Hyperband])
def test_halving_fidelity_schedule(cls: type, backend: TabularReward) -> None:
    assert rung_fidelities(min_fidelity=1, max_fidelity=12, eta=3) == [1, 4, 12]
    agent = cls(backend.space, seed=0, min_fidelity=1, max_fidelity=12, eta=3)
    brackets: dict[int, list[tuple[Arch, int, float]]] = {}
    for _ in range(80):
        arch = agent.ask()
        ev = backend.evaluate(arch, agent.fidelity, cost_unit="epochs")
        assert 1 <= agent.fidelity <= 12 and ev.fidelity == agent.fidelity and ev.cost == agent.fidelity
        brackets.setdefault(agent.bracket, []).append((arch, agent.fidelity, ev.metrics["val_top1"]))
        agent.tell(arch, ev)
    assert len(brackets) >= 3
    for records in brackets.values():
        fids = [f for _, f, _ in records]
        assert fids == sorted(fids)  # fidelity never decreases inside a bracket
    complete = [r for b, r in brackets.items() if b < max(brackets)]
    assert any(r[0][1] < r[-1][1] == 12 for r in complete)
    for records in complete:  # every promotion keeps the top 1/eta of the rung below
        for lo, hi in itertools.pairwise(sorted({f for _, f, _ in records})):
            below = {a.index: v for a, f, v in records if f == lo}
            above = {a.index for a, f, _ in records if f == hi}
            assert len(above) == max(1, len(below) // 3) and above <= set(below)
            assert min(below[i] for i in above) >= max((v for i, v in below.items() if i not in above), default=0)
    if cls is SuccessiveHalving:
        assert [f for _, f, _ in complete[0]] == [1] * 9 + [4] * 3 + [12]
    else:  # Hyperband's second bracket starts at a higher rung than its first
        assert complete[0][0][1] == 1 and complete[1][0][1] == 4 and complete[2][0][1] == 12


def test_reinforce_learns_best_blocks(backend: TabularReward) -> None:
    val = full_val(backend)
    rows = backend.rows(backend.space.indices())
    local = np.array([backend.space.local(Arch.from_index(int(i))) for i in backend.space.indices()])
    agent = Reinforce(backend.space, seed=0, lr=2.0)
    before = agent.probabilities()
    drive(agent, backend, 150)
    after = agent.probabilities()
    for s in range(3):
        best = int(np.argmax([val[rows[local[:, s] == k]].mean() for k in range(5)]))
        assert after[s][best] > before[s][best] + 0.05
    assert agent.baseline is not None and 0 < agent.baseline < 1
    with pytest.raises(InvalidArgumentError, match="lr"):
        Reinforce(backend.space, seed=0, lr=0)


def _brute(scores: np.ndarray, costs: np.ndarray | None, limit: float | None) -> list[tuple[int, int, int]]:
    k = scores.shape[1]
    combos = [c for c in itertools.product(range(k), repeat=3)
              if costs is None or sum(costs[s, c[s]] for s in range(3)) <= limit]
    return sorted(combos, key=lambda c: sum(scores[s, c[s]] for s in range(3)))


@pytest.mark.parametrize("seed", range(4))
def test_lana_optimum_is_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores, costs = rng.normal(size=(3, 6)), rng.uniform(1, 10, size=(3, 6))
    assert lana_optimum(scores) == _brute(scores, None, None)[0]
    sums = sorted(costs[0, a] + costs[1, b] + costs[2, c] for a, b, c in itertools.product(range(6), repeat=3))
    for limit in (sums[5], float(np.median(sums))):
        expected = _brute(scores, costs, limit)
        assert lana_optimum(scores, costs, limit) == expected[0]
        assert lana_optimum(scores, costs, limit, exclude=expected[:3]) == expected[3]
    with pytest.raises(InvalidArgumentError, match="cheapest model costs"):
        lana_optimum(scores, costs, sums[0] - 1e-6)
    with pytest.raises(InvalidArgumentError, match="together"):
        lana_optimum(scores, costs, None)


def test_lana_search_ranking(backend: TabularReward) -> None:
    space = backend.space
    members = [Arch.from_index(int(i)) for i in space.indices()]
    costs = np.random.default_rng(1).uniform(1, 5, size=(3, N_BLOCKS))

    def total(arch: Arch, table: np.ndarray) -> float:
        return float(sum(table[s, b] for s, b in enumerate(arch.blocks)))

    expected = sorted(members, key=lambda a: total(a, SIGNATURES))[:12]
    asked, _ = drive(LanaSearch(space, seed=0, signatures=SIGNATURES, top=5), backend, 12)
    assert asked == expected  # ranking extends past ``top`` with further cuts
    limit = float(np.quantile([total(a, costs) for a in members], 0.3))
    feasible = [a for a in members if total(a, costs) <= limit]
    expected = sorted(feasible, key=lambda a: total(a, SIGNATURES))[:8]
    agent = LanaSearch(space, seed=0, signatures=SIGNATURES, costs=costs, limit=limit, top=8)
    assert agent.ranking == expected
    assert drive(agent, backend, 8)[0] == expected


def test_split_picks_rule() -> None:
    rng = np.random.default_rng(0)
    picks = split_picks(100, 10, rng=rng)
    assert picks[:5] == [0, 1, 2, 3, 4] and len(set(picks)) == 10
    assert all(5 <= p < 105 for p in picks[5:])
    counts = np.zeros(100)
    for _ in range(400):
        counts[split_picks(100, 4, rng=rng)[2:]] += 1
    assert counts[2:12].sum() > counts[30:40].sum()  # better-ranked candidates are likelier
    assert split_picks(3, 10, rng=rng) == [0, 1, 2]


def test_registry_and_errors(backend: TabularReward) -> None:
    assert set(AGENTS) == {"random", "evolution", "local", "reinforce", "sh", "hyperband", "brpnas", "sb3", "donna",
                           "lana", "asha", "async-evolution", "mo-random", "nsga2", "parego", "mo-brpnas",
                           "proxy-evolution"}
    agent = make_agent("hyperband", backend.space, seed=0, min_fidelity=2, max_fidelity=12)
    assert isinstance(agent, Hyperband) and agent.rungs == [4, 12]
    with pytest.raises(InvalidArgumentError, match="allowed random, evolution"):
        make_agent("bogus", backend.space, seed=0)
    with pytest.raises(InvalidArgumentError, match="seed"):
        RandomSearch(backend.space, seed="x")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="SubSpace"):
        RandomSearch([1, 2, 3], seed=0)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="min_fidelity"):
        SuccessiveHalving(backend.space, seed=0, min_fidelity=5, max_fidelity=3)
    agent = RandomSearch(backend.space, seed=0, metric="accuracy")
    arch = agent.ask()
    with pytest.raises(InvalidArgumentError, match="has no metric 'accuracy'"):
        agent.tell(arch, backend.evaluate(arch, cost_unit="evaluations"))
