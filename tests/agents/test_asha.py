"""ASHA and asynchronous evolution: the promotion rule by hand, and no idle worker with simulated async workers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from blox_env import Evaluation
from blox_env.agents import (
    AGENTS,
    ASHA,
    AsyncEvolution,
    RandomSearch,
    RegularizedEvolution,
    SB3Agent,
    make_agent,
    make_constraint,
    run_parallel_search,
)
from blox_env.agents.loop import run_search
from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.datasets.synthetic import synthetic_store
from blox_env.errors import InvalidArgumentError
from blox_env.rewards import TabularReward
from blox_env.space import Arch, SubSpace, neighbours

SPACE = SubSpace(((0, 9, 21, 30, 44), (1, 10, 12, 36, 40), (2, 11, 23, 44, 5)))  # 125 models


def _ev(arch: Arch, value: float, fidelity: int) -> Evaluation:
    return Evaluation(arch, {"val_top1": value}, float(fidelity), "epochs", "tabular", fidelity, 0)


# ---------------------------------------------------------------------------------------------- promotion rule
def test_promotion_rule_by_hand() -> None:
    agent = ASHA(SPACE, seed=0, min_fidelity=1, max_fidelity=9, eta=3)
    assert agent.rungs == [1, 3, 9]

    def ask() -> tuple[Arch, int]:
        arch = agent.ask()
        return arch, agent.fidelity

    (a, fa), (b, fb), (c, fc) = ask(), ask(), ask()  # nothing completed: new models at rung 0, no waiting
    assert (fa, fb, fc) == (1, 1, 1) and len({a, b, c}) == 3
    agent.tell(a, _ev(a, 50, 1))
    d, fd = ask()  # one result: floor(1/3) = 0 promotable -> a new model
    assert fd == 1 and d not in (a, b, c)
    agent.tell(b, _ev(b, 70, 1))
    assert agent.promotable(0) == []  # 2 results: floor(2/3) = 0, even though b is the best so far
    agent.tell(c, _ev(c, 60, 1))
    assert agent.promotable(0) == [b.index]  # 3 results: the top 1 (b, 70)
    assert ask() == (b, 3)  # promoted as soon as it is in the top third
    e, fe = ask()  # b was promoted already; floor(3/3) = 1 -> nothing else: new model
    assert fe == 1 and e not in (a, b, c, d)
    agent.tell(d, _ev(d, 80, 1))  # 4 results: the top 1 is now d (80)
    assert ask() == (d, 3)
    agent.tell(e, _ev(e, 40, 1))  # 5 results: top 1 = d, promoted -> new
    f, ff = ask()
    assert ff == 1
    agent.tell(f, _ev(f, 75, 1))  # 6 results: top 2 = d (80), f (75)
    agent.tell(b, _ev(b, 72, 3))  # rung 1: one result, floor(1/3) = 0
    assert ask() == (f, 3)
    agent.tell(d, _ev(d, 85, 3))
    agent.tell(f, _ev(f, 77, 3))  # rung 1: b 72, d 85, f 77 -> d promotable to rung 2
    g, fg = ask()  # the highest rung first
    assert (g, fg) == (d, 9)
    assert agent.promotable(1) == [] and agent.promotable(0) == []
    h, fh = ask()
    assert fh == 1 and h not in (a, b, c, d, e, f)
    agent.tell(d, _ev(d, 88, 9))
    assert agent.results[2] == {d.index: 88} and agent.best == (d, 88)
    assert agent.promoted == [{b.index, d.index, f.index}, {d.index}, set()]


def test_ties_keep_completion_order_and_nan_ranks_last() -> None:
    agent = ASHA(SPACE, seed=0, min_fidelity=1, max_fidelity=3, eta=2)
    archs = [agent.ask() for _ in range(4)]
    for arch, v in zip(archs, [60.0, math.nan, 60.0, 10.0]):
        agent.tell(arch, _ev(arch, v, 1))
    assert agent.promotable(0) == [archs[0].index, archs[2].index]  # top 2 of 4; NaN last, ties by completion
    # a result told for a model it did not ask is filed by its fidelity
    other = next(Arch.from_index(int(i)) for i in SPACE.indices() if Arch.from_index(int(i)) not in archs)
    agent.tell(other, _ev(other, 99.0, 3))
    assert agent.results[1] == {other.index: 99.0}
    agent.tell(other, _ev(other, 99.0, 2))  # at no rung's fidelity: kept in history only
    assert agent.results[1] == {other.index: 99.0} and len(agent.history) == 6


def test_once_every_model_is_asked_the_best_left_is_promoted() -> None:
    small = SubSpace(((0, 9, 21), (1, 10), (2,)))  # 6 models
    agent = ASHA(small, seed=0, min_fidelity=1, max_fidelity=9, eta=3)
    archs = [agent.ask() for _ in range(6)]
    assert len(set(archs)) == 6 and agent.fidelity == 1
    for arch, v in zip(archs, [10.0, 60.0, 30.0, 50.0, 40.0, 20.0]):
        agent.tell(arch, _ev(arch, v, 1))
    # by the rule: floor(6/3) = 2 promotions (60, 50); then the space is used up: the best left (40), (30), ...
    got = [(agent.ask(), agent.fidelity) for _ in range(4)]
    assert got == [(archs[1], 3), (archs[3], 3), (archs[4], 3), (archs[2], 3)]
    agent.tell(archs[1], _ev(archs[1], 70.0, 3))  # rung 1 now has a result: the highest rung goes first
    assert (agent.ask(), agent.fidelity) == (archs[1], 9)
    agent.pending([archs[5]])  # in flight models are not promoted
    assert (agent.ask(), agent.fidelity) == (archs[0], 3)


# ---------------------------------------------------------------------------------------------- async workers
@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> BloxStore:
    path = tmp_path_factory.mktemp("asha") / "s.zarr"
    synthetic_store(path, space=SPACE, seeds=(0, 1), epochs=9, seed=1).close()
    return open_store(path)


def _never_idle(trace: list[dict[str, Any]], workers: int, wall: float) -> None:
    """Each worker runs back to back from 0 until past the wall-clock budget, and nothing waits."""
    for w in range(workers):
        spans = sorted((r["sim_start"], r["sim_end"]) for r in trace if r["worker"] == w)
        assert spans[0][0] == 0.0
        assert all(nxt[0] == pytest.approx(prev[1]) for prev, nxt in zip(spans, spans[1:]))
        assert spans[-1][1] >= wall and all(start < wall for start, _ in spans)
    assert all(r["sim_wait"] == pytest.approx(0.0, abs=1e-6) for r in trace)


def test_asha_with_async_workers_never_waits_and_promotes_by_the_rule(store: BloxStore) -> None:
    agent = make_agent("asha", SPACE, seed=0, min_fidelity=1, max_fidelity=9)
    wall = 6 * float(np.median(store.get("train_time_s", seed=0)))  # well before the 125 models run out
    trace = run_parallel_search(agent, TabularReward(store, seed_mode=0), sim_workers=4, mode="async", budget=wall,
                                budget_kind="wall", cost_unit="seconds", seed=0, metric="val_top1")
    _never_idle(trace, 4, wall)
    rung_of = {f: k for k, f in enumerate(agent.rungs)}
    assert {r["fidelity"] for r in trace} == set(agent.rungs)  # it reached the top rung
    for r in trace:
        k = rung_of[r["fidelity"]]
        if k == 0:
            continue
        # promoted: in the top floor(n / eta) of the previous rung's results completed when it started
        done = [q for q in trace if rung_of[q["fidelity"]] == k - 1 and q["sim_end"] <= r["sim_start"]]
        ranked = sorted(done, key=lambda q: q["objective"], reverse=True)[: len(done) // agent.eta]
        assert r["arch_index"] in {q["arch_index"] for q in ranked}
    starts = [(r["arch_index"], r["fidelity"]) for r in trace]
    assert len(starts) == len(set(starts))  # no model asked twice at a rung


def test_asha_with_async_workers_stays_within_a_compute_budget(store: BloxStore) -> None:
    budget = 15 * float(np.median(store.get("train_time_s", seed=0)))
    agent = ASHA(SPACE, seed=1, min_fidelity=1, max_fidelity=9)
    trace = run_search(agent, TabularReward(store, seed_mode=0), budget=budget, cost_unit="seconds", seed=1,
                       metric="val_top1", sim_workers=4)
    costs = [r["cost"] for r in trace]
    assert budget <= trace[-1]["cumulative_cost"] < budget + 4 * max(costs)
    # until the budget is committed no worker idles: each runs back to back from 0
    end = min(max(r["sim_end"] for r in trace if r["worker"] == w) for w in range(4))
    for w in range(4):
        spans = sorted((r["sim_start"], r["sim_end"]) for r in trace if r["worker"] == w and r["sim_end"] <= end)
        assert spans[0][0] == 0.0 and all(b[0] == pytest.approx(a[1]) for a, b in zip(spans, spans[1:]))


def test_async_evolution_breeds_from_completed_results_and_avoids_models_in_flight(store: BloxStore) -> None:
    agent = make_agent("async-evolution", SPACE, seed=0, population=8, sample_size=3)
    assert isinstance(agent, RegularizedEvolution)  # reuses regularized evolution
    wall = 12 * float(np.median(store.get("train_time_s", seed=0)))
    trace = run_parallel_search(agent, TabularReward(store, seed_mode=0), sim_workers=4, mode="async", budget=wall,
                                budget_kind="wall", cost_unit="seconds", seed=0, metric="val_top1")
    _never_idle(trace, 4, wall)
    by_start = sorted(trace, key=lambda r: (r["sim_start"], r["worker"]))
    for r in by_start[8:]:  # after the random initial population every child has a completed parent
        done = [Arch.from_index(q["arch_index"]) for q in trace if q["sim_end"] <= r["sim_start"]]
        assert any(Arch.from_index(r["arch_index"]) in neighbours(p, SPACE) for p in done)
    for r in trace:  # never a model in flight
        assert not any(q is not r and q["arch_index"] == r["arch_index"] and q["sim_start"] <= r["sim_start"]
                       < q["sim_end"] for q in trace)
    assert len({r["arch_index"] for r in trace}) == len(trace) > 30  # and, with unseen children left, no repeats


def test_async_evolution_children_by_hand() -> None:
    agent = AsyncEvolution(SPACE, seed=0, population=2, sample_size=2)
    x, y = Arch((0, 1, 2)), Arch((44, 40, 5))
    agent.ask(), agent.ask()
    agent.tell(x, _ev(x, 90.0, 9))
    agent.tell(y, _ev(y, 10.0, 9))
    options = [a for a in neighbours(x, SPACE)]
    agent.pending(options[:-1])  # every child of x but one is in flight
    assert agent.ask() == options[-1]


@pytest.mark.parametrize("name", ["asha", "async-evolution"])
def test_constraint_and_reproducibility(store: BloxStore, name: str) -> None:
    backend = TabularReward(store, seed_mode=0)
    limit = float(np.quantile(store.get("params"), 0.5))
    constraint = make_constraint(backend, {"params": limit})
    kw = {"min_fidelity": 1, "max_fidelity": 9} if name == "asha" else {}

    def go(seed: int) -> list[int]:
        agent = make_agent(name, SPACE, seed=seed, constraint=constraint, **kw)
        trace = run_parallel_search(agent, TabularReward(store, seed_mode=0), sim_workers=3, mode="async",
                                    budget=2000.0, budget_kind="wall", cost_unit="seconds", seed=seed,
                                    metric="val_top1")
        assert all(constraint(Arch.from_index(r["arch_index"])) for r in trace)
        return [r["arch_index"] for r in trace]

    assert go(2) == go(2) and go(2) != go(3)


# ---------------------------------------------------------------------------------------------- one outstanding ask
def test_parallel_asks_attribute_decides_how_many_workers_an_agent_takes(store: BloxStore) -> None:
    assert SB3Agent.parallel_asks is False and ASHA.parallel_asks is True and AGENTS["asha"] is ASHA

    class OneAtATime(RandomSearch):
        name = "one-at-a-time"
        parallel_asks = False

    with pytest.raises(InvalidArgumentError, match="only one evaluation outstanding"):
        run_parallel_search(OneAtATime(SPACE, seed=0), TabularReward(store), sim_workers=2, budget=5.0,
                            budget_kind="compute", cost_unit="evaluations", seed=0, metric="val_top1")
    agent = RandomSearch(SPACE, seed=0)
    agent.name = "sb3"  # the name alone no longer decides
    trace = run_parallel_search(agent, TabularReward(store), sim_workers=2, budget=4.0, budget_kind="compute",
                                cost_unit="evaluations", seed=0, metric="val_top1")
    assert {r["worker"] for r in trace} == {0, 1}


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw,match", [
    ({"min_fidelity": 0, "max_fidelity": 9}, "min_fidelity must be an integer >= 1"),
    ({"min_fidelity": 5, "max_fidelity": 3}, "min_fidelity \\(5\\) must be at most max_fidelity"),
    ({"min_fidelity": 1, "max_fidelity": 9, "eta": 1}, "eta must be an integer >= 2"),
    ({"min_fidelity": 1, "max_fidelity": 9, "eta": True}, "eta must be an integer >= 2"),
    ({"min_fidelity": 1.5, "max_fidelity": 9}, "min_fidelity must be an integer"),
    ({"min_fidelity": 1, "max_fidelity": 9, "seed": "x"}, "seed must be"),
    ({"min_fidelity": 1, "max_fidelity": 9, "metric": ""}, "metric must be"),
    ({"min_fidelity": 1, "max_fidelity": 9, "constraint": 3}, "constraint must be a callable"),
])
def test_asha_bad_input(kw: dict, match: str) -> None:
    kw = {"seed": 0, **kw}
    with pytest.raises(InvalidArgumentError, match=match):
        ASHA(SPACE, **kw)
    with pytest.raises(TypeError):
        ASHA(SPACE, seed=0)  # type: ignore[call-arg]  # the fidelity range is required


@pytest.mark.parametrize("kw,match", [
    ({"population": 1}, "population must be an integer >= 2"),
    ({"population": 4, "sample_size": 5}, "sample_size \\(5\\) must be at most population"),
    ({"sample_size": 0}, "sample_size must be an integer >= 1"),
    ({"seed": 1.5}, "seed must be"),
])
def test_async_evolution_bad_input(kw: dict, match: str) -> None:
    kw = {"seed": 0, **kw}
    with pytest.raises(InvalidArgumentError, match=match):
        AsyncEvolution(SPACE, **kw)
    with pytest.raises(InvalidArgumentError, match="SubSpace"):
        AsyncEvolution("space", seed=0)  # type: ignore[arg-type]
