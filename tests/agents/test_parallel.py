"""Simulated parallel workers: the clock checked by hand, 1 worker = the sequential loop, blockwise charges."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from blox_env.agents import anytime_curves, make_agent, run_parallel_search
from blox_env.agents.loop import run_search
from blox_env.build.synthetic_blockwise import synthetic_blockwise
from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.datasets.synthetic import synthetic_store
from blox_env.errors import InvalidArgumentError
from blox_env.rewards import TabularReward
from blox_env.rewards.base import BaseReward, Evaluation
from blox_env.rewards.blockwise import BlockwiseTabularReward
from blox_env.space import Arch, SubSpace

SMALL = SubSpace(((0, 9, 21), (1, 10), (2,)))  # 6 models: A..F below
A, B, C, D, E, F = (Arch.from_index(int(i)) for i in SMALL.indices())
COSTS = {A: 3.0, B: 1.0, C: 2.0, D: 4.0, E: 1.0, F: 2.0}
VALUES = {A: 50.0, B: 40.0, C: 70.0, D: 60.0, E: 65.0, F: 80.0}
SPACE = SubSpace(((0, 9, 21, 30, 44), (1, 10, 12, 36, 40), (2, 11, 23, 44, 5)))  # 125 models


class KnownCosts(BaseReward):
    """Each model costs COSTS[arch] (x fidelity / 2 at fidelity 1 of 2) and is worth VALUES[arch]."""

    source = "tabular"

    def __init__(self) -> None:
        self.space = SMALL
        self.max_fidelity = 2

    def evaluate(self, arch: Arch, fidelity: int | None = None, *, cost_unit: str = "seconds",
                 rng: np.random.Generator | None = None) -> Evaluation:
        e = self.fidelity(fidelity)
        metrics = {"val_top1": VALUES[arch], "test_top1": VALUES[arch] - 1.0}
        return Evaluation(arch, metrics, COSTS[arch] * e / 2, cost_unit, self.source, e, 0)


class Scripted:
    """Asks the given models in order; records what it was told and which models were pending at each ask.

    Written from scratch against the Agent Protocol (no BaseAgent): it declares every member the drivers use."""

    name = "scripted"
    parallel_asks = True
    reaskable = False

    def __init__(self, archs: list[Arch], fidelities: list[int | None] | None = None) -> None:
        self.queue = list(archs)
        self.plan = list(fidelities) if fidelities else [None] * len(archs)
        self.fidelity: int | None = None
        self.told: list[Arch] = []
        self.seen_pending: list[tuple[Arch, ...]] = []

    def pending(self, archs: tuple[Arch, ...]) -> None:
        self.seen_pending.append(archs)

    def ask(self) -> Arch:
        self.fidelity = self.plan.pop(0)
        return self.queue.pop(0)

    def tell(self, arch: Arch, evaluation: Evaluation) -> None:
        self.told.append(arch)

    def feasible_indices(self) -> np.ndarray:
        return SMALL.indices()

    def close(self) -> None:
        """Nothing to release."""

    def signature_blocks(self) -> list[tuple[int, int]]:
        return []


def _run(archs: list[Arch], **kw: Any) -> tuple[list[dict[str, Any]], Scripted]:
    agent = Scripted(archs, kw.pop("fidelities", None))
    opts = {"sim_workers": 2, "mode": "async", "budget": 13.0, "budget_kind": "compute", "cost_unit": "seconds",
            "seed": 0, "metric": "val_top1", **kw}
    return run_parallel_search(agent, KnownCosts(), **opts), agent


def _cols(trace: list[dict[str, Any]], *names: str) -> list[tuple]:
    return [tuple(r[n] for n in names) for r in trace]


# ---------------------------------------------------------------------------------------------- clock by hand
def test_async_clock_by_hand() -> None:
    trace, agent = _run([A, B, C, D, E, F])
    # t=0: w0 A (0-3), w1 B (0-1); t=1: w1 C (1-3); t=3: A, C told, w0 D (3-7), w1 E (3-4); t=4: w1 F (4-6)
    assert _cols(trace, "arch_index", "worker", "sim_start", "sim_end", "sim_wait") == [
        (B.index, 1, 0.0, 1.0, 0.0), (A.index, 0, 0.0, 3.0, 0.0), (C.index, 1, 1.0, 3.0, 0.0),
        (E.index, 1, 3.0, 4.0, 0.0), (F.index, 1, 4.0, 6.0, 0.0), (D.index, 0, 3.0, 7.0, 0.0)]
    assert [r["sim_wall_clock"] for r in trace] == [1.0, 3.0, 3.0, 4.0, 6.0, 7.0]
    assert [r["cumulative_cost"] for r in trace] == [1.0, 4.0, 6.0, 7.0, 9.0, 13.0]  # completed compute
    assert [r["compute_committed"] for r in trace] == [4.0, 6.0, 6.0, 11.0, 13.0, 13.0]  # started compute
    assert agent.told == [B, A, C, E, F, D]
    # the agent saw what was in flight at each ask
    assert agent.seen_pending == [(), (A,), (A,), (), (D,), (D,)]
    # busy and idle: w0 busy 0-7, w1 busy 0-6 then idle until the end at 7
    busy = {w: sum(r["sim_end"] - r["sim_start"] - r["sim_wait"] for r in trace if r["worker"] == w) for w in (0, 1)}
    assert busy == {0: 7.0, 1: 6.0}
    end = max(r["sim_end"] for r in trace)
    assert {w: end - b for w, b in busy.items()} == {0: 0.0, 1: 1.0}


def test_sync_clock_by_hand() -> None:
    trace, agent = _run([A, B, C, D, E, F], mode="sync")
    # batches of two, each waiting for its slowest: (A, B) 0-3, (C, D) 3-7, (E, F) 7-9
    assert _cols(trace, "arch_index", "worker", "sim_start", "sim_end") == [
        (B.index, 1, 0.0, 1.0), (A.index, 0, 0.0, 3.0), (C.index, 0, 3.0, 5.0), (D.index, 1, 3.0, 7.0),
        (E.index, 0, 7.0, 8.0), (F.index, 1, 7.0, 9.0)]
    assert trace[-1]["cumulative_cost"] == 13.0 and agent.seen_pending[1] == (A,) and agent.seen_pending[2] == ()


def test_budget_cuts_by_hand() -> None:
    # wall-clock 3.5: starts at 0, 0, 1, 3, 3 are allowed; E (3-4) and D (3-7) run past the cut and count
    trace, _ = _run([A, B, C, D, E, F], budget=3.5, budget_kind="wall")
    assert [r["arch_index"] for r in trace] == [B.index, A.index, C.index, E.index, D.index]
    assert trace[-1]["sim_wall_clock"] == 7.0 and trace[-1]["cumulative_cost"] == 11.0
    # compute 5: A (3) and B (1) start at 0; at t=1, 4 < 5 so C starts and crosses (6); nothing after
    trace, agent = _run([A, B, C, D, E, F], budget=5.0, budget_kind="compute")
    assert [r["arch_index"] for r in trace] == [B.index, A.index, C.index] and agent.queue == [D, E, F]
    assert trace[-1]["cumulative_cost"] == 6.0 and trace[-1]["sim_wall_clock"] == 3.0
    # sync, compute 5: batch (A, B) spends 4; the next batch starts C (crossing), then the run refuses D
    trace, _ = _run([A, B, C, D, E, F], budget=5.0, mode="sync")
    assert [r["arch_index"] for r in trace] == [B.index, A.index, C.index] and trace[-1]["sim_wall_clock"] == 5.0


def test_a_model_in_flight_is_waited_for_not_recomputed() -> None:
    # A on w0 (0-3); A again on w1: a free repeat, known when the first finishes (waits 3); then B on w1
    trace, _ = _run([A, A, B], budget=4.0)
    assert _cols(trace, "arch_index", "worker", "sim_start", "sim_end", "sim_wait", "cost") == [
        (A.index, 0, 0.0, 3.0, 0.0, 3.0), (A.index, 1, 0.0, 3.0, 3.0, 0.0), (B.index, 0, 3.0, 4.0, 0.0, 1.0)]
    # a longer fidelity continues from the running one's checkpoint: A at 1 epoch (1.5) then 2 epochs (+1.5)
    trace, _ = _run([A, A], budget=3.0, fidelities=[1, 2])
    assert _cols(trace, "worker", "sim_start", "sim_end", "cost") == [(0, 0.0, 1.5, 1.5), (1, 0.0, 3.0, 1.5)]
    # with charge_repeats every evaluation is a fresh training: no waiting
    trace, _ = _run([A, A], budget=6.0, charge_repeats=True)
    assert _cols(trace, "sim_end", "cost") == [(3.0, 3.0), (3.0, 3.0)]


def test_anytime_curves_by_hand() -> None:
    trace, _ = _run([A, B, C, D, E, F])
    curves = anytime_curves(trace)
    # completion order B(40) A(50) C(70) E(65) F(80) D(60): best so far 40 50 70 70 80 80
    assert curves.sim_wall_clock.x.tolist() == [1.0, 3.0, 3.0, 4.0, 6.0, 7.0]
    assert curves.compute.x.tolist() == [1.0, 4.0, 6.0, 7.0, 9.0, 13.0]
    assert curves.sim_wall_clock.best.tolist() == curves.compute.best.tolist() == [40.0, 50.0, 70.0, 70.0, 80.0, 80.0]
    assert anytime_curves(trace, report_metric="test_top1").compute.best.tolist() == [39.0, 49.0, 69.0, 69.0,
                                                                                       79.0, 79.0]
    seq = run_search(Scripted([A, B, C]), KnownCosts(), budget=6.0, cost_unit="seconds", seed=0, metric="val_top1")
    one = anytime_curves(seq)  # a sequential trace: one worker, wall-clock = compute
    assert one.sim_wall_clock.x.tolist() == one.compute.x.tolist() == [3.0, 4.0, 6.0]
    with pytest.raises(InvalidArgumentError, match="completion order"):
        anytime_curves(trace[::-1])
    with pytest.raises(InvalidArgumentError, match="rows of a search trace"):
        anytime_curves([{"x": 1}])


# ---------------------------------------------------------------------------------------------- = the sequential loop
@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> BloxStore:
    path = tmp_path_factory.mktemp("par") / "s.zarr"
    synthetic_store(path, space=SPACE, seeds=(0, 1), epochs=9, seed=1).close()
    return open_store(path)


def _agent(name: str, space: SubSpace, seed: int) -> Any:
    kw = {"min_fidelity": 1, "max_fidelity": 9} if name in ("sh", "hyperband") else {}
    return make_agent(name, space, seed=seed, **kw)


KEYS = ("arch_index", "fidelity", "cost", "full_cost", "cumulative_cost", "objective", "metrics")


@pytest.mark.parametrize("name", ["random", "evolution", "local", "reinforce", "hyperband"])
def test_one_worker_async_and_sync_equal_the_sequential_loop(store: BloxStore, name: str) -> None:
    budget = 12 * float(np.median(store.get("train_time_s", seed=0)))
    seq = run_search(_agent(name, SPACE, 3), TabularReward(store), budget=budget, cost_unit="seconds", seed=3,
                     metric="val_top1")
    assert len(seq) > 10
    for mode in ("async", "sync"):
        for kind in ("compute", "wall"):  # with one worker the wall-clock is the compute
            par = run_parallel_search(_agent(name, SPACE, 3), TabularReward(store), sim_workers=1, mode=mode,
                                      budget=budget, budget_kind=kind, cost_unit="seconds", seed=3, metric="val_top1")
            assert _cols(par, *KEYS) == _cols(seq, *KEYS), (mode, kind)
            assert [r["sim_wall_clock"] for r in par] == [r["cumulative_cost"] for r in seq]
        via_loop = run_search(_agent(name, SPACE, 3), TabularReward(store), budget=budget, cost_unit="seconds",
                              seed=3, metric="val_top1", sim_workers=1, mode=mode)
        assert _cols(via_loop, *KEYS) == _cols(seq, *KEYS)


@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("name", ["random", "evolution"])
def test_many_workers_invariants_and_no_duplicates_in_flight(store: BloxStore, name: str, mode: str) -> None:
    budget = 40 * float(np.median(store.get("train_time_s", seed=0)))
    trace = run_search(_agent(name, SPACE, 0), TabularReward(store), budget=budget, cost_unit="seconds", seed=0,
                       metric="val_top1", sim_workers=4, mode=mode)
    assert {r["worker"] for r in trace} == {0, 1, 2, 3}
    np.testing.assert_allclose([r["cumulative_cost"] for r in trace], np.cumsum([r["cost"] for r in trace]))
    assert trace[-1]["cumulative_cost"] >= budget
    for w in range(4):  # a worker runs one evaluation at a time
        spans = sorted((r["sim_start"], r["sim_end"]) for r in trace if r["worker"] == w)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    for q, r in itertools.combinations(trace, 2):  # no model proposed while the same model was in flight
        if q["arch_index"] == r["arch_index"]:
            first, second = sorted((q, r), key=lambda row: row["sim_start"])
            assert second["sim_start"] >= first["sim_end"]
    seq = run_search(_agent(name, SPACE, 0), TabularReward(store), budget=budget, cost_unit="seconds", seed=0,
                     metric="val_top1")
    assert trace[-1]["sim_wall_clock"] < seq[-1]["cumulative_cost"] / 2  # four workers: well under half the time


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_reproducible_with_a_seed(store: BloxStore, mode: str) -> None:
    def go(seed: int) -> list[tuple]:
        trace = run_parallel_search(_agent("evolution", SPACE, seed), TabularReward(store), sim_workers=3, mode=mode,
                                    budget=2000.0, budget_kind="wall", cost_unit="seconds", seed=seed,
                                    metric="val_top1")
        return _cols(trace, "arch_index", "worker", "sim_end", "objective")

    assert go(5) == go(5) and go(5) != go(6)


# ---------------------------------------------------------------------------------------------- blockwise
@pytest.fixture(scope="module")
def bw_store(tmp_path_factory: pytest.TempPathFactory) -> BloxStore:
    path: Path = tmp_path_factory.mktemp("bw") / "s.zarr"
    synthetic_store(path, space=SPACE, seeds=(0, 1), epochs=12).close()
    synthetic_blockwise(path, ft_epochs=(2, 6), distill_epochs=(1, 4))
    return open_store(path)


def test_blockwise_shared_work_is_charged_once_and_blocks_the_workers_that_need_it(bw_store: BloxStore) -> None:
    backend = BlockwiseTabularReward(bw_store, teacher="M1", ft_epochs=2)
    d, teacher_s = backend.signatures["distill_time_s"], backend.teacher_time_s
    x1 = Arch((0, 1, 2))  # pays the teacher and blocks (0, 0), (1, 1), (2, 2)
    x2 = Arch((0, 10, 11))  # shares stage-0 block 0 with x1; pays (1, 10), (2, 11)
    x3 = Arch((0, 1, 11))  # every block paid by x1 or x2: only fine-tuning
    ft = {a: float(bw_store.get("train_time_s", [a], seed=backend.seeds[0], run=backend.info.name)[0])
          for a in (x1, x2, x3)}
    trace = run_parallel_search(Scripted([x1, x2, x3]), backend, sim_workers=3, budget=1e9, budget_kind="compute",
                                cost_unit="seconds", seed=0, metric="val_top1", max_evaluations=3)
    row = {r["arch_index"]: r for r in trace}
    # x1 on w0: teacher 0..T, then its blocks one after another, then fine-tuning
    b1 = teacher_s + d[0, 0] + d[1, 1] + d[2, 2]
    assert row[x1.index]["sim_end"] == pytest.approx(b1 + ft[x1]) and row[x1.index]["sim_wait"] == pytest.approx(0)
    # x2 on w1: waits for the teacher (T), distils its own two blocks, waits for block (0, 0) of w0, fine-tunes
    own2 = teacher_s + d[1, 10] + d[2, 11]
    start2 = max(own2, teacher_s + d[0, 0])
    assert row[x2.index]["sim_end"] == pytest.approx(start2 + ft[x2])
    assert row[x2.index]["sim_wait"] == pytest.approx(start2 - (d[1, 10] + d[2, 11]))
    # x3 on w2: pays nothing shared; waits for (0, 0), (1, 1) on w0 and (2, 11) on w1
    start3 = max(teacher_s + d[0, 0] + d[1, 1], own2)
    assert row[x3.index]["sim_end"] == pytest.approx(start3 + ft[x3])
    assert row[x3.index]["sim_wait"] == pytest.approx(start3)
    assert row[x3.index]["cost"] == pytest.approx(ft[x3])
    # once per run: the teacher and five distinct blocks, whoever needed them
    shared = teacher_s + d[0, 0] + d[1, 1] + d[2, 2] + d[1, 10] + d[2, 11]
    assert sum(r["metrics"]["distill_cost_s"] for r in trace) == pytest.approx(shared)
    assert trace[-1]["cumulative_cost"] == pytest.approx(shared + sum(ft.values()))
    seq = run_search(Scripted([x1, x2, x3]), BlockwiseTabularReward(bw_store, teacher="M1", ft_epochs=2),
                     budget=1e9, cost_unit="seconds", seed=0, metric="val_top1", max_evaluations=3)
    assert seq[-1]["cumulative_cost"] == pytest.approx(trace[-1]["cumulative_cost"])
    # in epochs (fine-tuning only) shared work takes no simulated time
    epochs = run_parallel_search(Scripted([x1, x2, x3]), BlockwiseTabularReward(bw_store, teacher="M1", ft_epochs=2),
                                 sim_workers=3, budget=100, budget_kind="compute", cost_unit="epochs", seed=0,
                                 metric="val_top1", max_evaluations=3)
    assert [(r["sim_start"], r["sim_end"], r["sim_wait"]) for r in epochs] == [(0.0, 2.0, 0.0)] * 3


def test_blockwise_search_with_several_workers_charges_each_block_once(bw_store: BloxStore) -> None:
    backend = BlockwiseTabularReward(bw_store, teacher="M1", ft_epochs=2)
    d = backend.signatures["distill_time_s"]
    trace = run_parallel_search(_agent("evolution", SPACE, 0), backend, sim_workers=4, budget=20_000.0,
                                budget_kind="wall", cost_unit="seconds", seed=0, metric="val_top1")
    blocks = {(s, b) for r in trace for s, b in enumerate(Arch.from_index(r["arch_index"]).blocks)}
    expected = backend.teacher_time_s + sum(d[s, b] for s, b in blocks)
    assert sum(r["metrics"]["distill_cost_s"] for r in trace) == pytest.approx(expected)
    assert sum(r["sim_wait"] > 0 for r in trace) >= 3  # the other three workers waited for the teacher


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw,match", [
    ({"sim_workers": 0}, "sim_workers must be an integer in 1.."),
    ({"sim_workers": True}, "sim_workers must be an integer in 1.."),
    ({"sim_workers": 2.5}, "sim_workers must be an integer in 1.."),
    ({"mode": "parallel"}, "mode must be one of 'async', 'sync'"),
    ({"budget_kind": "time"}, "budget_kind must be one of 'compute', 'wall'"),
    ({"budget": None}, "budget must be a positive number"),
    ({"budget": -1.0}, "budget must be a positive"),
    ({"cost_unit": "hours"}, "cost_unit"),
])
def test_bad_input_is_refused(kw: dict, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        _run([A, B], **kw)


def test_agents_with_one_outstanding_ask_are_refused_more_workers() -> None:
    agent = Scripted([A, B])
    agent.parallel_asks = False  # type: ignore[attr-defined]
    with pytest.raises(InvalidArgumentError, match="only one evaluation outstanding"):
        run_parallel_search(agent, KnownCosts(), sim_workers=2, budget=5.0, budget_kind="wall", cost_unit="seconds",
                            seed=0, metric="val_top1")
    other = Scripted([A, B])
    other.parallel_asks = False  # type: ignore[attr-defined]
    with pytest.raises(InvalidArgumentError, match="use sim_workers=1"):
        run_search(other, KnownCosts(), budget=5.0, cost_unit="seconds", seed=0, metric="val_top1", sim_workers=2)
    assert len(run_search(agent, KnownCosts(), budget=4.0, cost_unit="seconds", seed=0, metric="val_top1",
                          mode="sync")) == 2  # one worker is fine
    with pytest.raises(InvalidArgumentError, match="workers must be"):
        run_search(Scripted([A]), KnownCosts(), budget=5.0, cost_unit="seconds", seed=0, metric="val_top1",
                   sim_workers=0)
