"""Multi-objective and simulated-worker benchmarking: hypervolume summaries by hand, BenchSpec options, the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from blox_env.agents.harness import BenchSpec, make_search_agent, run_benchmark
from blox_env.agents.pareto_bench import (
    ParetoReference,
    cost_to_fraction,
    found_front,
    hv_at_each,
    hypervolume_trace,
    pareto_reference,
    summarise_pareto,
)
from blox_env.agents.summary import best_at_each, cost_to_reach, mean_se, summarise_traces
from blox_env.cli.root import app
from blox_env.datasets.store.core import open_store
from blox_env.errors import InvalidArgumentError
from blox_env.objectives import Objective, parse_objectives
from blox_env.pareto import ParetoFront
from blox_env.rewards.factory import make_tabular_backend


def _ref() -> ParetoReference:
    """Four models, objectives (acc max, size min); reference (0, 10); front = models 1, 2, 3."""
    objs = (Objective("val_top1", "max"), Objective("params", "min"))
    values = np.array([[1.0, 9.0], [4.0, 2.0], [2.0, 1.0], [5.0, 5.0]])  # model 0 is dominated by 1
    front = ParetoFront(np.array([3, 1, 2]), values[[3, 1, 2]], objs)
    # front hypervolume by hand (max x from 0, min y below 10): union of [0,5]x[5,10], [0,4]x[2,10], [0,2]x[1,10]
    # = 5*5 + 4*3 + 2*1 = 39
    return ParetoReference(objs, np.arange(4), values, front, np.array([0.0, 10.0]), 39.0)


def _trace(indices: list[int], costs: list[float], **extra: list[float]) -> list[dict]:
    rows, total = [], 0.0
    for i, (a, c) in enumerate(zip(indices, costs)):
        total += c
        row = {"arch_index": a, "fidelity": 1, "objective": 0.0, "cumulative_cost": total, "metrics": {}}
        row.update({k: v[i] for k, v in extra.items()})
        rows.append(row)
    return rows


def test_hypervolume_trace_and_budgets_by_hand() -> None:
    ref = _ref()
    trace = _trace([0, 1, 1, 2, 3], [1, 1, 1, 1, 1])
    hv = hypervolume_trace(trace, ref)
    # model 0: 1*1 = 1; + model 1: [0,4]x[2,10] = 32, union with [0,1]x[9,10] (inside) = 32; repeat: 32;
    # + model 2: 32 + [0,2]x[1,2] = 34; + model 3: 39
    assert hv.tolist() == pytest.approx([1 / 39, 32 / 39, 32 / 39, 34 / 39, 1.0])
    assert hv_at_each(trace, [0.5, 2.0, 3.5, 99], ref).tolist() == pytest.approx([1 / 39, 32 / 39, 34 / 39, 1.0])
    assert cost_to_fraction(trace, 0.85, ref) == 4.0
    assert cost_to_fraction(trace, 1.0, ref) == 5.0
    assert cost_to_fraction(trace[:3], 0.9, ref) == math.inf
    assert sorted(map(tuple, found_front(trace[:4], ref).tolist())) == [(2.0, 1.0), (4.0, 2.0)]
    with pytest.raises(InvalidArgumentError, match=r"fraction must be in \(0, 1\]"):
        cost_to_fraction(trace, 1.5, ref)
    with pytest.raises(InvalidArgumentError, match="model 7 is not in the benchmark"):
        hypervolume_trace(_trace([7], [1]), ref)


def test_lower_fidelity_and_unselected_records_are_not_found() -> None:
    ref = _ref()
    trace = _trace([3, 1, 2], [1, 1, 1])
    trace[0]["fidelity"] = 0  # a screening evaluation at a lower fidelity
    trace[2]["select"] = False
    assert hypervolume_trace(trace, ref).tolist() == pytest.approx([0.0, 32 / 39, 32 / 39])


def test_budgets_on_the_simulated_wall_clock() -> None:
    trace = _trace([0, 1, 2], [4, 4, 4], sim_wall_clock=[4.0, 4.0, 8.0])
    for r, o in zip(trace, (1.0, 3.0, 2.0)):
        r["objective"], r["metrics"] = o, {"test_top1": o * 10}
    # on compute (4, 8, 12) vs on the simulated wall-clock (4, 4, 8): the budget cut moves
    assert best_at_each(trace, [4.0, 8.0], "test_top1").tolist() == [10.0, 30.0]
    assert best_at_each(trace, [4.0, 8.0], "test_top1", clock="sim_wall_clock").tolist() == [10.0, 30.0]
    assert best_at_each(trace, [3.0], "test_top1", clock="sim_wall_clock").tolist() == [10.0]
    assert cost_to_reach(trace, 25.0, "test_top1") == 8.0
    assert cost_to_reach(trace, 25.0, "test_top1", clock="sim_wall_clock") == 4.0


def test_mean_se_by_hand() -> None:
    (mean, se), n = mean_se([1.0, 2.0, 3.0, 6.0, float("nan")])
    assert n == 4 and mean == 3.0
    assert se == pytest.approx(np.std([1, 2, 3, 6], ddof=1) / 2)
    assert mean_se([5.0]) == ((5.0, 0.0), 1)
    assert mean_se([float("nan")])[1] == 0


def test_pareto_reference_of_the_bundled_store() -> None:
    store = open_store(None)
    ref = pareto_reference(store, ("val_top1", "params"))
    assert ref.front_hv > 0 and len(ref.front.indices) >= 2
    ok = np.isfinite(ref.values).all(axis=1)
    assert (ref.reference[0] < ref.values[ok, 0]).all() and (ref.reference[1] > ref.values[ok, 1]).all()
    # every front model's row carries its seed-mean values
    rows = ref.rows(ref.front.indices)
    assert np.allclose(ref.values[rows], ref.front.values)
    acc = store.get("val_top1", ref.front.indices.tolist(), seed="mean")
    assert np.allclose(ref.front.values[:, 0], acc)


def test_spec_options_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="workers"):
        BenchSpec.from_options(agents=("random",), sim_workers=0)
    with pytest.raises(InvalidArgumentError, match="worker mode must be one of 'async', 'sync'"):
        BenchSpec.from_options(agents=("random",), worker_mode="batch")
    with pytest.raises(InvalidArgumentError, match="budget kind must be one of 'compute', 'wall'"):
        BenchSpec.from_options(agents=("random",), budget_kind="time")
    with pytest.raises(InvalidArgumentError, match="simulated workers run plain searches"):
        BenchSpec.from_options(agents=("random",), sim_workers=4, mode="blockwise", strategy="two-stage")
    with pytest.raises(InvalidArgumentError, match="objectives must be a non-empty tuple"):
        BenchSpec.from_options(agents=("nsga2",), objectives="val_top1,params")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="mode='normal'"):
        BenchSpec.from_options(agents=("nsga2",), objectives=("val_top1", "params"), mode="blockwise")
    spec = BenchSpec.from_options(agents=("random",), sim_workers=4, budget_kind="wall")
    assert spec.simulated and spec.budget.clock == "sim_wall_clock"
    assert spec.budget_name().startswith("simulated wall-clock") and "4 async workers" in spec.budget_name()
    plain = BenchSpec.from_options(agents=("random",))
    assert plain.budget_name().startswith("total compute (seconds of recorded training")


def test_mo_agents_get_the_spec_objectives() -> None:
    store = open_store(None)
    device = next(m for m in store.metrics() if m.startswith("latency/"))
    latency = f"latency:{device.split('/')[1]}"
    spec = BenchSpec.from_options(agents=("nsga2", "random"), objectives=("val_top1", latency))
    backend = make_tabular_backend(store, metric="val_top1")
    agent = make_search_agent("nsga2", backend, seed=0, spec=spec)
    assert agent.objectives == parse_objectives(spec.search.objectives, store=store)
    assert make_search_agent("random", backend, seed=0, spec=spec) is not None  # single-objective agents run too


def test_summarise_pareto_on_the_bundled_store() -> None:
    store = open_store(None)
    spec = BenchSpec.from_options(agents=("mo-random", "nsga2"), seeds=3, budgets=(60.0, 200.0),
                     objectives=("val_top1", "params"))
    traces = run_benchmark(store.location, spec=spec, executor="serial", progress=False)
    again = run_benchmark(store.location, spec=spec, executor="serial", progress=False)
    assert [r["arch_index"] for r in traces[("nsga2", 1)]] == [r["arch_index"] for r in again[("nsga2", 1)]]
    ref = pareto_reference(store, spec.search.objectives)
    rows = summarise_pareto(traces, spec=spec, ref=ref)
    assert [r["agent"] for r in rows] == ["mo-random", "nsga2"]
    for row in rows:
        per_seed = [hv_at_each(traces[(row["agent"], s)], [200.0], ref)[0] for s in range(3)]
        assert row["hv@200"] == mean_se(per_seed)[0]
        assert 0 < row["hv@60"][0] <= row["hv@200"][0] <= 1
        assert row["front"].shape[1] == 2 and row["front_seed"] in range(3)


def test_simulated_workers_through_the_harness() -> None:
    store = open_store(None)
    one = BenchSpec.from_options(agents=("random",), seeds=2, budgets=(100.0, 300.0))
    par = BenchSpec.from_options(agents=("random",), seeds=2, budgets=(100.0, 300.0), sim_workers=4)
    seq_traces = run_benchmark(store.location, spec=one, executor="serial", progress=False)
    par_traces = run_benchmark(store.location, spec=par, executor="serial", progress=False)
    assert "sim_wall_clock" not in seq_traces[("random", 0)][0]
    trace = par_traces[("random", 0)]
    assert {r["worker"] for r in trace} == {0, 1, 2, 3}
    assert trace[-1]["sim_wall_clock"] < trace[-1]["cumulative_cost"] / 2
    row = summarise_traces(par_traces, spec=par, best_index=trace[0]["arch_index"], best_report=90.0)[0]
    assert row["sim_wall_to_best_median"] <= row["compute_to_best_median"]
    assert row["compute_total_mean"] == pytest.approx(np.mean([t[-1]["cumulative_cost"] for t in
                                                               par_traces.values()]))
    # a wall-clock budget of 100 with 4 workers buys about 4x the compute of a compute budget of 100
    wall = BenchSpec.from_options(agents=("random",), seeds=1, budgets=(100.0,), sim_workers=4, budget_kind="wall")
    wtrace = run_benchmark(store.location, spec=wall, executor="serial", progress=False)[("random", 0)]
    assert wtrace[-1]["cumulative_cost"] > 250.0


def test_cli_bench_objectives_writes_table_plots_and_report(tmp_path: Path) -> None:
    report = tmp_path / "mo.md"
    args = ["bench", "--objectives", "val_top1,params", "--seeds", "2", "--budgets", "50,150", "--executor",
            "serial", "--plot", str(tmp_path / "p.png"), "--report", str(report)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("mo-random", "nsga2", "parego"):
        assert f"| {name} |" in result.output
    text = report.read_text()
    assert "| agent | HV @ 50 | HV @ 150 | median cost to 90% HV (reached)" in text
    assert "Reference point: val_top1" in text and "total compute" in text
    assert (tmp_path / "p_hv.png").stat().st_size > 0 and (tmp_path / "p_fronts.png").stat().st_size > 0


def test_cli_bench_sim_workers_and_the_renamed_option(tmp_path: Path) -> None:
    args = ["bench", "--agents", "random", "--seeds", "1", "--budgets", "50", "--executor", "serial",
            "--plot", str(tmp_path / "p.png"), "--sim-workers", "4", "--worker-mode", "sync"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "median simulated wall-clock / compute to best" in result.output
    assert "4 sync simulated workers" in result.output
    assert (tmp_path / "p.png").stat().st_size > 0 and (tmp_path / "p_sim_wall_clock.png").stat().st_size > 0
    bad = CliRunner().invoke(app, ["bench", "--workers", "2"])
    assert bad.exit_code != 0
    assert "--jobs N runs N searches at once" in str(bad.exception) + bad.output
