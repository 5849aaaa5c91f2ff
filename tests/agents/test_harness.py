"""The cost-budget harness: budgets respected, reproducible, summary recomputed by hand, `blox bench`."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from blox_env.agents import AGENTS, make_agent
from blox_env.agents.harness import (
    BenchSpec,
    answers,
    best_at,
    best_at_each,
    cost_to_reach,
    run_benchmark,
    summarise_traces,
)
from blox_env.agents.loop import run_search
from blox_env.cli.root import app
from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.datasets.synthetic import synthetic_store
from blox_env.errors import InvalidArgumentError
from blox_env.reports.bench import markdown_table, plot_anytime
from blox_env.rewards import TabularReward
from blox_env.space import SubSpace

SPACE = SubSpace(((0, 9, 21, 30, 44), (1, 10, 12, 36, 40), (2, 11, 23, 44, 5)))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("h") / "s.zarr"
    synthetic_store(path, space=SPACE, seeds=(0, 1), epochs=9, seed=1).close()
    st = BloxStore.open(path, mode="a")  # a proxy table for proxy-evolution
    st.create_proxies(["synflow"], init_seeds=[0])
    rng = np.random.default_rng(2)
    st.write_proxies(st.index, init_seed=0, values={"synflow": rng.normal(size=len(st))},
                     seconds={"synflow": rng.uniform(0.01, 0.1, size=len(st))})
    st.close()
    return open_store(path)


def _backend(store, name: str) -> TabularReward:
    return TabularReward(store, seed_mode=0, proxy="synflow" if name == "proxy-evolution" else None)


def _agent(name: str, backend: TabularReward, seed: int):
    kw: dict = {"min_fidelity": 1, "max_fidelity": 9} if name in ("sh", "hyperband", "asha") else {}
    if name in ("donna", "lana"):
        kw["signatures"] = np.abs(np.random.default_rng(1).normal(size=(3, 45)))
    return make_agent(name, backend.space, seed=seed, **kw)


@pytest.mark.parametrize("name", sorted(set(AGENTS) - {"sb3"}))  # sb3: its own test below
def test_budget_never_exceeded_but_for_the_crossing_evaluation(store, name: str) -> None:
    backend = _backend(store, name)
    budget = 8 * float(np.median(store.get("train_time_s", seed=0)))
    trace = run_search(_agent(name, backend, 0), backend, budget=budget, cost_unit="seconds", seed=0,
                       metric="val_top1")
    assert trace and all(r["cumulative_cost"] < budget for r in trace[:-1])
    assert trace[-1]["cumulative_cost"] >= budget or len(trace) < 200
    assert np.isclose(trace[-1]["cumulative_cost"], sum(r["cost"] for r in trace))
    again = run_search(_agent(name, _backend(store, name), 0), _backend(store, name), budget=budget,
                       cost_unit="seconds", seed=0, metric="val_top1")
    assert [r["arch_index"] for r in trace] == [r["arch_index"] for r in again]


def test_search_stops_when_the_space_is_exhausted(store) -> None:
    backend = TabularReward(store, seed_mode=0)
    trace = run_search(make_agent("random", backend.space, seed=0), backend, budget=1e12, cost_unit="seconds",
                       seed=0, metric="val_top1")
    assert len({r["arch_index"] for r in trace}) == len(store) and len(trace) <= 10 * len(store) + len(store)


def test_summary_recomputed_by_hand(store) -> None:
    spec = BenchSpec.from_options(agents=("random", "evolution"), seeds=3, budgets=(10.0, 30.0),
                                  cost_unit="evaluations", seed_mode=0, target=60.0)
    traces = run_benchmark(store.location, spec=spec, executor="serial", progress=False)
    val = store.get("val_top1", seed="mean")
    best_index = int(store.index[int(np.argmax(val))])
    best_report = float(store.get("test_top1", [best_index], seed="mean")[0])
    rows = summarise_traces(traces, spec=spec, best_index=best_index, best_report=best_report)
    for row in rows:
        runs = [traces[(row["agent"], s)] for s in range(3)]
        for b in spec.budget.budgets:
            picks = []
            for t in runs:
                upto = [r for r in t if r["cumulative_cost"] <= b]
                best = max(upto, key=lambda r: r["objective"])
                picks.append(best["metrics"]["test_top1"])
            assert row[f"best@{b:g}"][0] == pytest.approx(np.mean(picks))
            assert row[f"regret@{b:g}"] == pytest.approx(best_report - np.mean(picks))
        hits = [next((r["cumulative_cost"] for r in t if r["arch_index"] == best_index), np.inf) for t in runs]
        assert row["cost_to_best_median"] == np.median(hits) and row["found_best"] == int(np.isfinite(hits).sum())
        assert row["evaluations_mean"] == np.mean([len(t) for t in runs])
    assert "random" in markdown_table(rows, spec=spec)


def test_constraint_respected_in_the_harness(store, tmp_path) -> None:
    limit = float(np.median(store.get("params")))
    spec = BenchSpec.from_options(agents=("random", "evolution", "local"), seeds=2, budgets=(20.0,),
                                  cost_unit="evaluations", constraint={"params": limit})
    traces = run_benchmark(store.location, spec=spec, executor="serial", progress=False)
    assert all(r["metrics"]["params"] <= limit for t in traces.values() for r in t)
    png = plot_anytime(traces, tmp_path / "a.png", spec=spec, best=80.0)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bench_cli_and_bad_specs(store, tmp_path) -> None:
    res = CliRunner().invoke(app, ["bench", "--store", store.location, "--agents", "random,evolution",
                                   "--seeds", "2", "--budgets", "50,100", "--executor", "serial",
                                   "--report", str(tmp_path / "r.md"), "--plot", str(tmp_path / "p.png"),
                                   "--traces", str(tmp_path / "t.zarr")])
    assert res.exit_code == 0, res.output
    assert "| random |" in res.output and (tmp_path / "r.md").read_text().count("| evolution |") == 1
    tstore = open_store(tmp_path / "t.zarr")
    names = tstore.traces  # <agent>-s<seed>-<spec key>: one spec key for the whole run
    assert len(names) == 4 and len({n.rsplit("-", 1)[1] for n in names}) == 1
    traces = tstore.read_trace(next(n for n in names if n.startswith("random-s1-")))
    assert len(traces["cumulative_cost"]) > 0
    with pytest.raises(InvalidArgumentError, match="unknown agent"):
        BenchSpec.from_options(agents=("grid",))
    with pytest.raises(InvalidArgumentError, match="budgets"):
        BenchSpec.from_options(budgets=(0.0,))


def test_sb3_agent_searches_through_ask_tell(store) -> None:
    backend = TabularReward(store, seed_mode=0)
    agent = make_agent("sb3", backend.space, seed=0, algo="A2C", algo_kwargs={"n_steps": 6})
    trace = run_search(agent, backend, budget=40, cost_unit="evaluations", seed=0, metric="val_top1")
    assert trace[-1]["cumulative_cost"] == 40 and len({r["arch_index"] for r in trace}) == 40  # repeats are free
    assert all(int(r["arch_index"]) in set(store.index.tolist()) for r in trace)
    assert not agent._thread.is_alive()  # closed by the harness
    with pytest.raises(InvalidArgumentError, match="SB3 algorithm"):
        make_agent("sb3", backend.space, seed=0, algo="NotAnAlgo")


def _rec(index: int, objective: float, report: float, cost: float, *, select: bool = True) -> dict:
    return {"arch_index": index, "objective": objective, "metrics": {"test_top1": report}, "fidelity": 8,
            "cumulative_cost": cost, "select": select}


def test_cost_to_target_counts_only_an_answer_that_stays_above_it() -> None:
    """By hand: the answer is the best-objective eligible model so far; a transient hit does not count."""
    trace = [_rec(1, 50.0, 70.0, 10.0), _rec(2, 60.0, 91.0, 20.0),  # answer 2: 91 >= 90 (transient)
             _rec(3, 65.0, 85.0, 30.0),  # answer 3 (better objective, worse test): 85 < 90
             _rec(4, 99.0, 99.0, 35.0, select=False),  # not eligible: changes nothing
             _rec(5, 70.0, 92.0, 40.0), _rec(6, 55.0, 10.0, 50.0)]  # answer 5 from cost 40 on, then it stays
    assert list(answers(trace, "test_top1")) == [70.0, 91.0, 85.0, 85.0, 92.0, 92.0]
    assert cost_to_reach(trace, 90.0, "test_top1") == 40.0
    assert cost_to_reach(trace, 60.0, "test_top1") == 10.0
    assert cost_to_reach(trace, 95.0, "test_top1") == float("inf")
    report = {1: 95.0, 2: 95.0, 3: 80.0, 5: 95.0, 6: 0.0}  # scored by another value per model
    assert cost_to_reach(trace, 90.0, "test_top1", report) == 40.0
    assert best_at(trace, 15.0, "test_top1") == 91.0  # the evaluation that crosses the budget counts
    assert best_at(trace, 25.0, "test_top1") == 85.0 and best_at(trace, 25.0, "test_top1", report) == 80.0
    assert np.isnan(best_at([_rec(1, 50.0, 70.0, 10.0, select=False)], 20.0, "test_top1"))
    np.testing.assert_array_equal(best_at_each(trace, [15.0, 25.0, 100.0], "test_top1"), [91.0, 85.0, 92.0])
    # strategies: one run per planned budget; each budget is answered by the run planned for it
    plans = [{**r, "plan_budget": 20.0} for r in trace[:2]] + [{**r, "plan_budget": 60.0} for r in trace]
    np.testing.assert_array_equal(best_at_each(plans, [5.0, 20.0, 25.0, 1e9], "test_top1"), [70.0, 91.0, 85.0, 92.0])


def test_partial_store_is_refused_up_front(tmp_path) -> None:
    """A store missing models of the sub-space its rows span (a partial import) is refused with the counts."""
    from blox_env.datasets.store.core import BloxStore
    from blox_env.space import Arch

    space = SubSpace(((0, 9), (1, 10), (2,)))
    index = [int(i) for i in space.indices()][:-1]  # 3 of the 4 models
    BloxStore.create(tmp_path / "p.zarr", index=index).close()
    assert len({Arch.from_index(i).blocks[0] for i in index}) == 2  # the rows still span the 2 x 2 x 1 space
    with pytest.raises(InvalidArgumentError, match="holds 3 of the 4 models"):
        run_benchmark(str(tmp_path / "p.zarr"), executor="serial", progress=False,
                      spec=BenchSpec.from_options(agents=("random",), seeds=1, budgets=(10.0,)))


def test_asha_runs_in_the_harness_with_the_backends_epoch_range(store) -> None:
    """ASHA gets the backend's epoch range like SH/Hyperband, so `blox bench --agents asha` runs."""
    spec = BenchSpec.from_options(agents=("asha",), seeds=1, budgets=(5000.0,))
    traces = run_benchmark(store.location, spec=spec, executor="serial", progress=False)
    fidelities = {r["fidelity"] for r in traces[("asha", 0)]}
    assert len(fidelities) >= 2 and max(fidelities) <= 12
