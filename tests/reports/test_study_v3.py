"""The study: the teacher rule, DONNA / LANA paying what they read, the paper's iterative
strategy (steps 1-5), the 40-unit plan's cost to target, bootstrap intervals and the verdict rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from blox_test_helpers import BLOCKWISE_SPACE

from blox_env.agents import make_agent
from blox_env.agents.harness import BenchSpec, run_benchmark
from blox_env.agents.strategies import PHASES, iterative_teacher_search
from blox_env.datasets.store.blockwise import (
    TEACHER_NAMES,
    TEACHER_PERCENTILES,
    BlockwiseTables,
    choose_teachers,
)
from blox_env.datasets.store.core import open_store
from blox_env.rewards.blockwise import BlockwiseTabularReward, TeacherBackends
from blox_env.space import Arch


@pytest.fixture(scope="module")
def tables(blockwise_path: Path) -> BlockwiseTables:
    return BlockwiseTables(open_store(blockwise_path))


def unit_of(tables: BlockwiseTables) -> float:
    return float(np.median(tables.store.get("train_time_s", seed=0)))


# ---------------------------------------------------------------------------------------------- 1: teachers
def test_teacher_rule_picks_the_stated_percentiles(blockwise_path: Path, tables: BlockwiseTables) -> None:
    store = tables.store
    val = np.mean([store.get("val_top1", seed=s) for s in (0, 1)], axis=0)
    ascending = np.lexsort((-store.index, val))  # worst first; ties: the higher index below (best first by index)
    n = len(store)
    teachers = choose_teachers(store)
    assert list(teachers) == list(TEACHER_NAMES) and TEACHER_PERCENTILES == (100.0, 99.0, 50.0, 10.0, 5.0)
    for name, p in zip(TEACHER_NAMES, TEACHER_PERCENTILES):
        pos = int(round(p / 100 * (n - 1)))  # by hand: 124, 123, 62, 12, 6 of 125
        assert teachers[name]["index"] == int(store.index[ascending[pos]]), name
        assert teachers[name]["rule_percentile"] == p
        assert teachers[name]["percentile"] == pytest.approx(100 * pos / (n - 1), abs=1e-3)
        assert abs(teachers[name]["percentile"] - p) <= 100 / (n - 1)  # the model sits at the stated percentile
    assert teachers["M5"]["rank"] == n - 6 and teachers["M5"]["index"] != int(store.index[ascending[0]])  # not worst
    # the builder records the rule: the synthetic tables were described with it
    assert {k: v["index"] for k, v in tables.attrs["teachers"].items()} == {k: v["index"] for k, v in teachers.items()}
    assert tables.attrs["teachers"]["M4"]["rule_percentile"] == 10.0


# ---------------------------------------------------------------------------------------------- 2: DONNA / LANA
def test_donna_and_lana_pay_for_every_block_they_read_before_their_first_evaluation(blockwise_path: Path,
                                                                                    tables: BlockwiseTables) -> None:
    unit = unit_of(tables)
    sig = tables.signatures("M1")
    teacher_s = float(tables.store.teacher_attrs(tables.teachers["M1"])["train_time_s"])
    every_block = sum(float(sig["distill_time_s"][s, b]) for s, blocks in enumerate(BLOCKWISE_SPACE.blocks)
                      for b in blocks)
    spec = BenchSpec.from_options(agents=("donna", "lana"), seeds=1, budgets=(40 * unit,), mode="blockwise",
                                  teacher="M1")
    traces = run_benchmark(str(blockwise_path), spec=spec, executor="serial", progress=False)
    for agent in ("donna", "lana"):
        trace = traces[(agent, 0)]
        first = trace[0]
        assert first["upfront_cost"] == pytest.approx(teacher_s + every_block), agent
        assert all(r["upfront_cost"] == first["upfront_cost"] for r in trace)
        assert first["metrics"]["distill_cost_s"] == 0.0  # nothing left to distil: paid before the first prediction
        assert all(r["metrics"]["distill_cost_s"] == 0.0 for r in trace)
        assert first["cumulative_cost"] == pytest.approx(first["upfront_cost"] + first["cost"])
        assert first["cost"] == pytest.approx(first["metrics"]["train_time_s"])  # the fine-tune alone
    # a plain blockwise search of another agent still pays per model, on first use
    spec = BenchSpec.from_options(agents=("random",), seeds=1, budgets=(10 * unit,), mode="blockwise", teacher="M1")
    trace = run_benchmark(str(blockwise_path), spec=spec, executor="serial", progress=False)[("random", 0)]
    assert "upfront_cost" not in trace[0] and trace[0]["metrics"]["distill_cost_s"] > 0


# ---------------------------------------------------------------------------------------------- 3: iterative
def _live(store, made: list[int]):
    def live(arch: Arch, ft_epochs: int) -> BlockwiseTabularReward:
        """Any model as teacher: M1's tables, charged and labelled as ``arch`` (a stand-in for live training)."""
        made.append(arch.index)
        backend = BlockwiseTabularReward(store, teacher="M1", ft_epochs=ft_epochs)
        backend.teacher = arch
        return backend
    return live


def test_iterative_strategy_runs_the_papers_steps_in_order(blockwise_path: Path, tables: BlockwiseTables) -> None:
    store = open_store(blockwise_path)
    made: list[int] = []
    teachers = TeacherBackends(store, live=_live(store, made))
    unit = unit_of(tables)
    sig = tables.signatures("M1")["distill_time_s"]
    for budget in (40 * unit, 100 * unit):
        trace = iterative_teacher_search(lambda s, short: make_agent("random", short.space, seed=s), teachers,
                                         start_teacher=tables.teachers["M5"], budget=budget, seed=0, top_k=3)
        steps = [r["paper_step"] for r in trace]
        assert steps == sorted(steps) and set(steps) == {1, 3, 4}  # step 1, then 3, then 4 (repeated)
        search = [r for r in trace if r["paper_step"] == 1]
        assert all(not r["select"] and r["teacher"] == tables.teachers["M5"].index for r in search)
        assert search[-1]["cumulative_cost"] <= 0.75 * budget + max(r["cost"] for r in search)  # the switch point
        # step 3: the top 3 of the search, trained normally and charged their normal training
        top = sorted({r["arch_index"]: r["objective"] for r in search}.items(), key=lambda kv: (-kv[1], kv[0]))
        normal = [r for r in trace if r["paper_step"] == 3]
        assert [r["arch_index"] for r in normal] == [i for i, _ in top[:3]]
        for r in normal:
            times = [float(store.get("train_time_s", [Arch.from_index(r["arch_index"])], seed=s)[0]) for s in (0, 1)]
            assert r["cost"] == pytest.approx(r["full_cost"]) and any(np.isclose(r["full_cost"], t) for t in times)
            assert r["select"] and r["score"] == "normal" and r["phase"] == PHASES["normal"]
            assert r["metrics"]["test_top1"] == pytest.approx(float(store.get(
                "test_top1", [Arch.from_index(r["arch_index"])], seed=store.run_info().seeds[0])[0])) \
                or r["metrics"]["test_top1"] == pytest.approx(float(store.get(
                    "test_top1", [Arch.from_index(r["arch_index"])], seed=store.run_info().seeds[1])[0]))
        best = max(normal, key=lambda r: (r["objective"], -r["arch_index"]))
        # step 4: the candidates fine-tuned with the promoted teacher; its blocks distilled first, charged
        previous, reference = best["arch_index"], best["objective"]
        rounds = sorted({r["round"] for r in trace if r["paper_step"] == 4})
        assert rounds[0] == 1
        for k in rounds:
            rows = [r for r in trace if r["round"] == k]
            assert all(r["teacher"] == r["promoted"] == previous and r["score"] == "fine-tuned" for r in rows)
            assert {r["arch_index"] for r in rows} <= {r["arch_index"] for r in normal}
            blocks = {(s, b) for r in rows for s, b in enumerate(Arch.from_index(r["arch_index"]).blocks)}
            paid = sum(r["metrics"]["distill_cost_s"] for r in rows)
            # every block the candidates need, distilled from this teacher once; its training was paid in step 3
            assert paid == pytest.approx(sum(float(sig[s, b]) for s, b in blocks))
            assert rows[0]["metrics"]["distill_cost_s"] > 0
            top_row = max(rows, key=lambda r: (r["objective"], -r["arch_index"]))
            if k != rounds[-1]:
                assert top_row["objective"] > reference  # step 5: another round only after an improvement
            reference, previous = max(reference, top_row["objective"]), top_row["arch_index"]
        last = [r for r in trace if r["round"] == rounds[-1]]
        stopped = max(last, key=lambda r: r["objective"])["objective"] <= max(
            r["objective"] for r in trace if r["select"] and r["round"] < rounds[-1])
        same = max(last, key=lambda r: (r["objective"], -r["arch_index"]))["arch_index"] == last[0]["teacher"]
        # stopped: no improvement, the best is its own teacher already (a next round would repeat it), or budget
        assert stopped or same or trace[-1]["cumulative_cost"] >= budget or len(last) < 3
        assert trace[-1]["cumulative_cost"] - trace[-1]["cost"] < budget


def test_iterative_strategy_stops_without_improvement(blockwise_path: Path, tables: BlockwiseTables) -> None:
    """A fine-tuning that never beats normal training: step 4 runs once, then the strategy stops (step 5)."""
    store = open_store(blockwise_path)

    class Worse(BlockwiseTabularReward):
        def evaluate(self, arch, fidelity=None, **kw):  # type: ignore[no-untyped-def]
            ev = super().evaluate(arch, fidelity, **kw)
            ev.metrics["val_top1"] = 0.0
            return ev

    def live(arch: Arch, ft_epochs: int) -> BlockwiseTabularReward:
        backend = Worse(store, teacher="M1", ft_epochs=ft_epochs)
        backend.teacher = arch
        return backend

    teachers = TeacherBackends(store, live=live)
    trace = iterative_teacher_search(lambda s, short: make_agent("random", short.space, seed=s), teachers,
                                     start_teacher=tables.teachers["M5"], budget=1000 * unit_of(tables), seed=1)
    assert {r["round"] for r in trace if r["paper_step"] == 4} == {1}
    assert sum(r["paper_step"] == 4 for r in trace) == 3 and trace[-1]["cumulative_cost"] < 1000 * unit_of(tables)


# ---------------------------------------------------------------------------------------------- 4: plans
def _row(cost: float, plan: float, index: int, objective: float) -> dict:
    return {"arch_index": index, "objective": objective, "cumulative_cost": cost, "fidelity": 6, "select": True,
            "phase": PHASES["full"], "plan_budget": plan, "metrics": {"test_top1": objective}, "cost": 1.0}


def test_cost_to_target_is_read_on_the_40_unit_plan() -> None:
    from blox_env.reports.study import add_plan_figures, cost_on_plan, plan_40

    unit = 2.0
    budgets = (15 * unit, 40 * unit, 100 * unit)
    assert plan_40(budgets, unit) == 80.0
    # one search, one run per plan: the 40-unit plan reaches 90 at cost 64 (32 units); the 100-unit plan at 40
    reaches = [_row(10, 30, 1, 50), _row(30, 30, 2, 60),
               _row(20, 80, 1, 50), _row(64, 80, 3, 91), _row(80, 80, 4, 20),
               _row(40, 200, 3, 91), _row(150, 200, 5, 95)]
    # another: its 40-unit plan never reaches 90 (its 100-unit plan does, at 120): not reached by 40
    late = [_row(10, 30, 1, 50), _row(70, 80, 2, 60), _row(82, 80, 6, 70), _row(120, 200, 3, 91)]
    assert cost_on_plan(reaches, 80.0, 90.0, "test_top1") == 64.0
    assert cost_on_plan(late, 80.0, 90.0, "test_top1") == np.inf
    # a plain search (no plans): cut at the record crossing the plan; reached after it does not count
    plain = [{k: v for k, v in r.items() if k not in ("plan_budget", "phase")} for r in late[1:]]
    assert cost_on_plan(plain, 80.0, 90.0, "test_top1") == np.inf
    assert cost_on_plan(plain, 200.0, 90.0, "test_top1") == 120.0
    row: dict = {}
    add_plan_figures(row, [reaches, late, reaches], budgets=budgets, unit=unit, target=90.0,
                     report={i: 10.0 * i for i in range(7)},
                     blockwise=True, n_boot=50)
    assert row["plan_40"] == 80.0
    assert row["cost_to_target_40_finetuned_median"] == 64.0 and row["reached_target_40_finetuned"] == 2
    assert row["values"]["80"]["finetuned"] == [91.0, 70.0, 91.0]  # each budget its own plan's answer
    assert row["values"]["80"]["normal"] == [30.0, 60.0, 30.0] and row["reached_target_40"] == 0
    assert row["upfront_cost"] == 0.0


# ---------------------------------------------------------------------------------------------- 5: claims
def test_bootstrap_intervals_recomputed_by_hand() -> None:
    from blox_env.reports.study_claims import bootstrap_ci, diff_ci, mean_ci, spearman_ci

    # [0, 1]: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the 95 % interval is [0, 1]
    assert mean_ci([0.0, 1.0], n_boot=4000) == (0.0, 1.0)
    assert mean_ci([5.0, 5.0, np.nan], n_boot=100) == (5.0, 5.0)  # NaN left out; no spread
    values = np.array([1.0, 4.0, 2.0, 8.0])
    rng = np.random.default_rng(7)
    by_hand = [values[rng.integers(0, 4, 4)].mean() for _ in range(300)]
    assert mean_ci(values, n_boot=300, seed=7) == pytest.approx(tuple(np.percentile(by_hand, [2.5, 97.5])))
    # paired: a constant difference has no spread; unpaired, the two samples are resampled apart
    assert diff_ci([3.0, 5.0, 9.0], [1.0, 3.0, 7.0], paired=True, n_boot=200) == (2.0, 2.0)
    lo, hi = diff_ci([3.0, 5.0, 9.0], [1.0, 3.0, 7.0], paired=False, n_boot=500)
    assert lo < 2.0 < hi
    # Spearman: resampling model pairs, by hand with the same draws
    x, y = np.array([1.0, 2, 3, 4, 5, 6]), np.array([2.0, 1, 4, 3, 6, 5])
    rng = np.random.default_rng(0)
    reps = []
    for _ in range(400):
        idx = rng.integers(0, 6, 6)
        xs, ys = x[idx], y[idx]
        if np.ptp(xs) > 0 and np.ptp(ys) > 0 and len(idx) >= 3:
            from scipy.stats import spearmanr

            reps.append(spearmanr(xs, ys).statistic)
    assert spearman_ci(x, y, n_boot=400, seed=0) == pytest.approx(tuple(np.percentile(reps, [2.5, 97.5])))
    assert bootstrap_ci(lambda r: float("nan"), n_boot=10) != bootstrap_ci(lambda r: float("nan"), n_boot=10)  # NaN


def test_verdict_rule() -> None:
    from blox_env.reports.study_claims import claim, quoted_verdict, spearman_ci, summary_verdict, threshold_verdict

    assert quoted_verdict(0.25, (0.2, 0.3)) == "agrees" and quoted_verdict(0.25, (0.3, 0.5)) == "disagrees"
    assert threshold_verdict((0.71, 0.9), ">=", 0.7) == "agrees"
    assert threshold_verdict((0.1, 0.69), ">=", 0.7) == "disagrees"
    assert threshold_verdict((0.6, 0.8), ">=", 0.7) == "inconclusive"  # straddles the threshold
    assert threshold_verdict((-0.5, -0.25), "<=", -0.2) == "agrees"
    assert threshold_verdict((-0.3, 0.1), ">", 0.0) == "inconclusive"
    assert threshold_verdict((float("nan"), 1.0), ">", 0.0) == "inconclusive"
    # a real interval that straddles the claim's threshold: inconclusive, whatever the point estimate says
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    y = x + rng.normal(scale=1.2, size=40)
    ci = spearman_ci(x, y, n_boot=500)
    mid = (ci[0] + ci[1]) / 2
    c = claim("correlates", "correlate well", mid, ci, side=">=", threshold=mid)
    assert c["verdict"] == "inconclusive" and set(c) >= {"claim", "paper", "ours", "ci95", "verdict"}
    assert claim("quoted", 0.25, 0.3, (0.2, 0.4))["verdict"] == "agrees"
    assert summary_verdict([c, {"verdict": "agrees"}]) == "inconclusive"
    assert summary_verdict([{"verdict": "agrees"}, {"verdict": "disagrees"}]) == "disagrees"
