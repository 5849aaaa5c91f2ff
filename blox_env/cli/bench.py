"""``blox bench``: the project's main job — search agents on cost budgets, with a table and a plot."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()
DEFAULT_AGENTS = "random,evolution,local,reinforce,hyperband,brpnas"
DEFAULT_MO_AGENTS = "mo-random,nsga2,parego"  # with --objectives


def bench(
    store: Annotated[str | None, typer.Option(help="benchmark store (default: imported BLOX, else Blox-mini)")] = None,
    agents: Annotated[str | None, typer.Option(help=f"comma-separated agents (default: {DEFAULT_AGENTS}; with "
                                                   f"--objectives {DEFAULT_MO_AGENTS})")] = None,
    seeds: Annotated[int, typer.Option(help="searches per agent")] = 20,
    budgets: Annotated[str, typer.Option(help="comma-separated budgets in --cost-unit")] = "100,300,600",
    cost_unit: Annotated[str, typer.Option(help="seconds | epochs | evaluations")] = "seconds",
    target: Annotated[float | None, typer.Option(help="report the cost to reach this test top-1")] = None,
    executor: Annotated[str, typer.Option(help="serial | process | ray")] = "process",
    jobs: Annotated[int, typer.Option(help="searches run at once (processes of --executor)")] = 2,
    objectives: Annotated[str | None, typer.Option(
        help="multi-objective: comma-separated store columns, e.g. 'val_top1,params' or 'val_top1,latency:<device>' "
             "(column[@epoch][:max|:min]); reports hypervolume")] = None,
    sim_workers: Annotated[int, typer.Option(help="simulated parallel workers per search (a simulated clock; "
                                                  "1 = sequential)")] = 1,
    worker_mode: Annotated[str, typer.Option(help="simulated workers: async | sync")] = "async",
    budget_kind: Annotated[str, typer.Option(help="what budgets measure: compute (total cost of all evaluations) | "
                                                  "wall (simulated wall-clock)")] = "compute",
    workers: Annotated[int | None, typer.Option(hidden=True, help="renamed: --jobs or --sim-workers")] = None,
    report: Annotated[str | None, typer.Option(help="write a Markdown report here")] = None,
    plot: Annotated[str, typer.Option(help="anytime plot (PNG)")] = "bench_anytime.png",
    traces: Annotated[str | None, typer.Option(help="store (.zarr) to write every trace into")] = None,
    mode: Annotated[str, typer.Option(help="normal | blockwise (rewards from the store's blockwise tables)")]
    = "normal",
    teacher: Annotated[str, typer.Option(help="blockwise teacher: M1..M5 (with full tables)")] = "M1",
    ft_epochs: Annotated[int | None, typer.Option(help="blockwise fine-tuning length (default: full)")] = None,
    strategy: Annotated[str, typer.Option(help="plain | two-stage (FT-short + FT-full) | iterative (teacher)")]
    = "plain",
) -> None:
    """Run agents x seeds on a tabular benchmark under cost budgets; print the summary table.

    With --objectives: multi-objective agents, hypervolume at each budget, fronts and anytime hypervolume plots.
    With --sim-workers N: each search runs on N simulated workers (async or sync) on a simulated clock.
    """
    from blox_env.agents.harness import BenchSpec, run_benchmark, summarise_traces
    from blox_env.datasets.store.core import open_store
    from blox_env.datasets.store.provenance import benchmark_summary, describe_benchmark
    from blox_env.errors import InvalidArgumentError
    from blox_env.reports import bench as report_bench

    if workers is not None:
        raise InvalidArgumentError("--workers was renamed to avoid two meanings: --jobs N runs N searches at once "
                                   "(processes), --sim-workers N runs each search on N simulated workers")
    st = open_store(store)
    data = describe_benchmark(st)
    agents = agents or (DEFAULT_MO_AGENTS if objectives else DEFAULT_AGENTS)
    spec = BenchSpec(agents=tuple(a.strip() for a in agents.split(",") if a.strip()), seeds=seeds,
                     budgets=tuple(float(b) for b in budgets.split(",")), cost_unit=cost_unit, target=target,
                     mode=mode, teacher=teacher, ft_epochs=ft_epochs, strategy=strategy,
                     objectives=tuple(o.strip() for o in objectives.split(",")) if objectives else None,
                     workers=sim_workers, worker_mode=worker_mode, budget_kind=budget_kind)
    if spec.objectives is not None:
        _bench_pareto(st, spec, data=data, executor=executor, jobs=jobs, report=report, plot=plot, traces=traces)
        return
    tables = None
    if mode == "blockwise":  # answers are scored by their normal accuracy, whichever signal picked them
        from blox_env.datasets.store.blockwise import BlockwiseTables

        tables = BlockwiseTables(st)
    best = report_bench.best_model(st, metric=spec.metric, report_metric=spec.report_metric, tables=tables)
    best_index, best_report, report_values = best.index, best.report, best.values
    console.print(f"data: {benchmark_summary(data)}", markup=False, highlight=False)
    console.print(f"benchmark {st.name}: {len(st):,} models; best by mean {spec.metric}: model {best_index} "
                  f"({spec.report_metric} {best_report:.2f}); {len(spec.agents)} agents x {seeds} seeds")
    t = time.perf_counter()
    results = run_benchmark(st.location, spec=spec, executor=executor, workers=jobs)
    seconds = time.perf_counter() - t
    rows = summarise_traces(results, spec=spec, best_index=best_index, best_report=best_report,
                            report=report_values)
    console.print(report_bench.markdown_table(rows, spec=spec), markup=False)
    notes = report_bench.table_notes(spec, best_index=best_index, best_report=best_report)
    console.print(report_bench.notes_markdown(notes), markup=False, highlight=False, soft_wrap=True)
    png = report_bench.plot_anytime(results, plot, spec=spec, best=best_report, title=f"{st.name}: anytime search",
                                    report=report_values)
    if spec.simulated:  # the other clock too: simulated wall-clock and total compute are both worth seeing
        from pathlib import Path

        base = Path(plot)
        other = "compute" if spec.budget_kind == "wall" else "sim_wall_clock"
        extra = report_bench.plot_anytime_other_clock(
            results, base.with_name(f"{base.stem}_{other}{base.suffix or '.png'}"), spec=spec, best=best_report,
            title=f"{st.name}: anytime search", report=report_values)
        console.print(f"anytime plot on the other clock: {extra}")
    console.print(f"anytime plot: {png}; {seconds:.0f} s")
    if report:
        out = report_bench.write_report(report, rows=rows, spec=spec, plot=png, store_name=st.name,
                                        best_index=best_index, best_report=best_report, seconds=seconds,
                                        benchmark=data)
        console.print(f"report: {out}")
    if traces:
        _write_traces(traces, results, st, spec)


def _bench_pareto(st: Any, spec: Any, *, data: Any, executor: str, jobs: int, report: str | None, plot: str,
                  traces: str | None) -> None:
    """``blox bench --objectives``: hypervolume table, notes, fronts and anytime hypervolume plots, report."""
    from pathlib import Path

    from blox_env.agents.harness import run_benchmark
    from blox_env.agents.pareto_bench import pareto_reference, summarise_pareto
    from blox_env.datasets.store.provenance import benchmark_summary
    from blox_env.reports import bench as report_bench
    from blox_env.reports import pareto_bench as report_mo

    ref = pareto_reference(st, spec.objectives)
    console.print(f"data: {benchmark_summary(data)}", markup=False, highlight=False)
    console.print(f"benchmark {st.name}: {len(st):,} models; objectives {', '.join(map(str, ref.objectives))}: "
                  f"true front {len(ref.front.indices)} models; {len(spec.agents)} agents x {spec.seeds} seeds",
                  markup=False, highlight=False)
    t = time.perf_counter()
    results = run_benchmark(st.location, spec=spec, executor=executor, workers=jobs)
    seconds = time.perf_counter() - t
    rows = summarise_pareto(results, spec=spec, ref=ref)
    console.print(report_mo.markdown_table(rows, spec=spec), markup=False)
    console.print(report_bench.notes_markdown(report_mo.table_notes(spec, ref=ref)), markup=False, highlight=False,
                  soft_wrap=True)
    base = Path(plot)
    hv_png = report_mo.plot_hv_curves(results, base.with_name(f"{base.stem}_hv{base.suffix or '.png'}"), spec=spec,
                                      ref=ref, title=f"{st.name}: anytime hypervolume")
    front_png = report_mo.plot_fronts(rows, base.with_name(f"{base.stem}_fronts{base.suffix or '.png'}"), ref=ref,
                                      title=f"{st.name}: final fronts (median-hypervolume seed)")
    console.print(f"plots: {hv_png}, {front_png}; {seconds:.0f} s")
    if report:
        out = report_mo.write_report(report, rows=rows, spec=spec, ref=ref, plots=(front_png, hv_png),
                                     store_name=st.name, seconds=seconds, benchmark=data)
        console.print(f"report: {out}")
    if traces:
        _write_traces(traces, results, st, spec)


def _write_traces(traces: str, results: dict[tuple[str, int], list[dict[str, Any]]], st: Any, spec: Any) -> None:
    """Every trace into a (new or existing) store's ``traces/``, with what produced it as attributes."""
    from pathlib import Path

    from blox_env.datasets.store.core import BloxStore

    path = Path(traces)
    tstore = BloxStore.open(path, mode="a") if path.exists() else BloxStore.create(path, index=st.index)
    for (agent, seed), trace in results.items():
        tstore.write_trace(f"{agent}-s{seed}", trace, attrs={
            "agent": agent, "seed": seed, "benchmark": st.name, "cost_unit": spec.cost_unit, "mode": spec.mode,
            "strategy": spec.strategy, "objectives": list(spec.objectives or ()), "sim_workers": spec.workers,
            "worker_mode": spec.worker_mode, "budget_kind": spec.budget_kind})
    console.print(f"traces: {traces}")


def register(app: typer.Typer) -> None:
    """Add ``blox bench``."""
    app.command("bench")(bench)
