"""SearchRun / BatchedRuns: the one budget rule, checked on the run directly; every backend follows the Protocol."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from blox_env import Evaluation
from blox_env.errors import InvalidArgumentError, MissingCostError
from blox_env.rewards import BaseReward, RewardBackend, TabularReward
from blox_env.runs import BatchedRuns, SearchRun, SharedCharges, SharedWork, unit_cost
from blox_env.space import Arch, SubSpace

SPACE = SubSpace(((0, 1, 2), (1, 12, 36), (2, 21, 44)))
DISTILL = np.full((3, 45), 3.0)  # seconds to distil any block
TEACHER_S = 100.0


class _Fake(BaseReward):
    """Seconds at the full fidelity: 10 x (1 + stage-0 block); scaled by fidelity / 10; NaN for ``costless``.

    With a ``teacher``, the teacher's training and each block's distillation are charged once per run (as blockwise).
    ``calls`` counts evaluations.
    """

    source = "live"

    def __init__(self, *, costless: tuple[int, ...] = (), teacher: Arch | None = None) -> None:
        self.space, self.max_fidelity, self.teacher = SPACE, 10, teacher
        self.costless = costless
        self.charges = SharedCharges()
        self.calls = 0

    def new_run(self, shared: SharedCharges | None = None) -> None:
        self.charges = shared if shared is not None else SharedCharges()

    def evaluate(self, arch: Arch, fidelity: int | None = None, *, cost_unit: str = "seconds",
                 rng: np.random.Generator | None = None) -> Evaluation:
        self.calls += 1
        e = self.fidelity(fidelity)
        seconds = math.nan if arch.index in self.costless else 10.0 * (1 + arch.blocks[0]) * e / self.max_fidelity
        if self.teacher is not None:
            seconds += SharedWork(DISTILL, TEACHER_S, self.teacher.index).charge(arch, self.charges)
        cost = float(unit_cost(cost_unit, seconds=seconds, epochs=e))
        return Evaluation(arch, {"val_top1": float(arch.blocks[1])}, cost, cost_unit, self.source, e, None)


A, B, C = Arch.from_blocks(0, 1, 2), Arch.from_blocks(1, 12, 2), Arch.from_blocks(2, 36, 44)  # 10 s, 20 s, 30 s


def test_crossing_evaluation_is_charged_and_returned_later_ones_are_refused_without_evaluating() -> None:
    backend = _Fake()
    run = SearchRun(budget=25.0)
    first = run.evaluate(backend, A)
    assert first is not None and first.charged == 10.0 and not run.exhausted
    crossing = run.evaluate(backend, B)  # 10 + 20 >= 25: completes, charged in full, returned
    assert crossing is not None and crossing.charged == 20.0 and crossing.evaluation.metrics["val_top1"] == 12.0
    assert run.exhausted and run.spent == 30.0
    state = run.state()
    assert state["budget_left"] == 0.0 and state["budget_exhausted"] and state["evaluations"] == 2
    assert state["best_so_far"] == 12.0 and state["best_index"] == B.index
    assert run.evaluate(backend, C) is None and backend.calls == 2  # refused, nothing evaluated
    row = run.record(crossing, fields={"phase": 1})
    assert row["cumulative_cost"] == 30.0 and row["cost"] == 20.0 and row["objective"] == 12.0 and row["phase"] == 1
    run.new_run()
    assert run.spent == 0.0 and not run.exhausted and run.evaluate(backend, C).charged == 30.0


def test_repeats_are_free_unless_charge_repeats() -> None:
    free, paid = SearchRun(), SearchRun(charge_repeats=True)
    assert [free.evaluate(_Fake(), A).charged for _ in range(3)] == [10.0, 0.0, 0.0]
    assert [paid.evaluate(_Fake(), A).charged for _ in range(3)] == [10.0, 10.0, 10.0]
    assert free.ledger.evaluations == paid.ledger.evaluations == 3 and (free.spent, paid.spent) == (10.0, 30.0)
    keyed = SearchRun()  # the same model under another key (e.g. another teacher) is another entry
    assert [keyed.evaluate(_Fake(), A, key=k).charged for k in ("short", "full", "short")] == [10.0, 10.0, 0.0]


@pytest.mark.parametrize(("unit", "expected"), [("seconds", [5.0, 5.0, 0.0, 0.0]), ("epochs", [5.0, 5.0, 0.0, 0.0]),
                                                ("evaluations", [1.0, 1.0, 0.0, 0.0])])
def test_higher_fidelity_charges_only_the_extra_epochs(unit: str, expected: list[float]) -> None:
    run, backend = SearchRun(cost_unit=unit), _Fake()
    charged = [run.evaluate(backend, A, e).charged for e in (5, 10, 10, 5)]
    assert charged == pytest.approx(expected)
    assert run.spent == pytest.approx(sum(expected))


def test_shared_work_is_charged_once_per_run_across_backends() -> None:
    teacher, other = Arch.from_index(50_000), Arch.from_index(60_000)
    short, full, third = _Fake(teacher=teacher), _Fake(teacher=teacher), _Fake(teacher=other)
    run = SearchRun()
    first = run.evaluate(short, A, 5).charged  # fine-tuning 5 s + teacher + 3 blocks
    assert first == pytest.approx(5.0 + TEACHER_S + 3 * 3.0)
    assert run.evaluate(full, A, 10).charged == pytest.approx(5.0)  # same teacher: blocks paid by the short run
    shares_two = Arch.from_blocks(0, 1, 21)  # new stage-2 block only
    assert run.evaluate(full, shares_two).charged == pytest.approx(10.0 + 3.0)
    # another teacher: its own teacher and blocks (and its own ledger entry: a fine-tuning with other blocks)
    assert run.evaluate(third, A, key=other.index).charged == pytest.approx(10.0 + TEACHER_S + 9.0)
    run.new_run()  # a new run pays for teachers and blocks again
    assert run.evaluate(full, A).charged == pytest.approx(10.0 + TEACHER_S + 9.0)
    alone = _Fake(teacher=teacher)  # used directly, the backend is its own run
    assert alone.evaluate(A).cost == pytest.approx(10.0 + TEACHER_S + 9.0) and alone.evaluate(A).cost == 10.0


def test_missing_cost_refused_by_default_imputed_and_flagged_on_request() -> None:
    backend = _Fake(costless=(C.index,))
    run = SearchRun(budget=1000.0)
    run.evaluate(backend, A)
    with pytest.raises(MissingCostError, match=rf"model {C.index} \(hash {C.hash}") as err:
        run.evaluate(backend, C)
    assert "missing_cost='max'" in str(err.value) and "_Fake" in str(err.value)
    assert run.spent == 10.0 and run.ledger.evaluations == 1  # nothing charged
    empty = SearchRun(missing_cost="median")
    with pytest.raises(MissingCostError, match="nothing has a recorded cost"):
        empty.evaluate(backend, C)
    for rule, value in (("median", 15.0), ("max", 20.0)):
        run = SearchRun(missing_cost=rule)
        run.evaluate(backend, A)
        run.evaluate(backend, B)
        out = run.evaluate(backend, C)
        assert out.charged == value and out.evaluation.cost_imputed == rule and run.spent == 30.0 + value
        assert run.ledger.recorded == [10.0, 20.0]  # imputed costs are never a reference
    with pytest.raises(InvalidArgumentError, match="missing_cost"):
        SearchRun(missing_cost="mean")


def test_a_score_that_raises_charges_nothing() -> None:
    run = SearchRun(budget=100.0)

    def bad(ev: Evaluation) -> float:
        raise InvalidArgumentError("no")

    with pytest.raises(InvalidArgumentError):
        run.evaluate(_Fake(), A, score=bad)
    assert run.spent == 0.0 and run.ledger.evaluations == 0


@pytest.mark.parametrize(("unit", "charge_repeats"), [("seconds", False), ("epochs", False), ("evaluations", False),
                                                      ("seconds", True)])
def test_batched_runs_equal_sequential_runs_on_the_same_archs(tiny_store, unit: str, charge_repeats: bool) -> None:
    backend = TabularReward(tiny_store, seed_mode=0)
    n_envs, steps = 5, 9
    rng = np.random.default_rng(0)
    rows = rng.integers(0, backend.n_rows, (steps, n_envs))
    rows[3:6] = rows[:3]  # repeats
    fidelities = [6] * 4 + [12] * 5  # then longer runs of the same models
    budget = {"seconds": 8_000.0, "epochs": 60.0, "evaluations": 6.0}[unit]
    batched = BatchedRuns(n_envs, n_rows=backend.n_rows, budget=budget, cost_unit=unit, charge_repeats=charge_repeats)
    runs = [SearchRun(budget=budget, cost_unit=unit, charge_repeats=charge_repeats) for _ in range(n_envs)]
    index = tiny_store.index
    for t in range(steps):
        alive = np.flatnonzero(~batched.exhausted())
        out = batched.evaluate(backend, alive, rows[t, alive], index[rows[t, alive]], fidelities[t], rng=None,
                               score=lambda m, n: m["val_top1"] / 100)
        for k in range(n_envs):
            one = runs[k].evaluate(backend, Arch.from_index(int(index[rows[t, k]])), fidelities[t],
                                   score=lambda ev: ev.metrics["val_top1"] / 100)
            assert (one is None) == (k not in alive)
            if one is not None:
                j = int(np.flatnonzero(alive == k)[0])
                assert out.charged[j] == pytest.approx(one.charged) and out.values[j] == pytest.approx(one.value)
    state = batched.state()
    assert state["budget_exhausted"].any() or unit == "seconds"
    for k, run in enumerate(runs):
        assert state["cumulative_cost"][k] == pytest.approx(run.spent)
        assert state["evaluations"][k] == run.ledger.evaluations and state["best_so_far"][k] == run.ledger.best
        assert state["budget_exhausted"][k] == run.exhausted and batched.best_index[k] == run.ledger.best_index


@pytest.fixture(scope="module")
def bw_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from blox_env.build.synthetic_blockwise import synthetic_blockwise
    from blox_env.datasets.store.core import open_store
    from blox_env.datasets.synthetic import synthetic_store

    path = tmp_path_factory.mktemp("runs") / "bw.zarr"
    synthetic_store(path, space=SubSpace(((0, 9, 30), (1, 12, 36), (2, 21, 44))), seeds=(0, 1), epochs=12).close()
    synthetic_blockwise(path, ft_epochs=(2,), distill_epochs=(1,))
    return open_store(path)


def test_every_backend_implements_the_protocol(tiny_store, bw_store, tmp_path: Path) -> None:
    from blox_env.rewards.blockwise import BlockwiseTabularReward
    from blox_env.rewards.live import LiveReward
    from blox_env.rewards.surrogate import SurrogateReward
    from blox_env.training.recipes import Recipe

    class Predictor:
        def predict(self, archs: list[Arch]) -> np.ndarray:
            return np.array([float(a.blocks[0]) for a in archs])

    tiny = Recipe(name="tiny", epochs=2, batch_size=32, eval_batch_size=256, lr=0.05, stem_channels=2)
    live = LiveReward(store=tmp_path / "live.zarr", data="synthetic", recipe=tiny)
    backends = [TabularReward(tiny_store), BlockwiseTabularReward(bw_store, teacher="M1"), live,
                SurrogateReward(Predictor(), space=SPACE, holdout_spearman=0.5), _Fake()]
    for backend in backends:
        assert isinstance(backend, RewardBackend), type(backend).__name__
        assert backend.fidelity(None) == backend.max_fidelity
        rows = backend.rows(backend.space.indices()[:3])
        assert rows.shape == (3,) and (rows >= 0).all()
        backend.new_run(SharedCharges())
        backend.new_run()
        assert isinstance(backend.describe_cost(1, 0), str)
    assert set(backends[0].static_costs()) >= {"params", "flops"} and backends[3].static_costs() == {}
    assert backends[0].known_costs(12, "seconds").size > 0 and backends[3].known_costs(1, "seconds") is None
    assert backends[1].teacher is not None and backends[0].teacher is None and live.teacher is None
    live.close()
    live.close()  # idempotent
    assert not isinstance(object(), RewardBackend)
