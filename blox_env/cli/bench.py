"""``blox bench``: the project's main job — search agents on cost budgets, with a table and a plot."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console

console = Console()
DEFAULT_AGENTS = "random,evolution,local,reinforce,hyperband,brpnas"


def bench(
    store: Annotated[str | None, typer.Option(help="benchmark store (default: imported BLOX, else Blox-mini)")] = None,
    agents: Annotated[str, typer.Option(help="comma-separated agents")] = DEFAULT_AGENTS,
    seeds: Annotated[int, typer.Option(help="searches per agent")] = 20,
    budgets: Annotated[str, typer.Option(help="comma-separated budgets in --cost-unit")] = "100,300,600",
    cost_unit: Annotated[str, typer.Option(help="seconds | epochs | evaluations")] = "seconds",
    target: Annotated[float | None, typer.Option(help="report the cost to reach this test top-1")] = None,
    executor: Annotated[str, typer.Option(help="serial | process | ray")] = "process",
    workers: Annotated[int, typer.Option(help="parallel searches")] = 2,
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
    """Run agents x seeds on a tabular benchmark under cost budgets; print the summary table."""
    from blox_env.agents.harness import BenchSpec, run_benchmark, summarise_traces
    from blox_env.datasets.store.core import open_store
    from blox_env.datasets.store.provenance import benchmark_summary, describe_benchmark
    from blox_env.reports import bench as report_bench

    st = open_store(store)
    data = describe_benchmark(st)
    spec = BenchSpec(agents=tuple(a.strip() for a in agents.split(",") if a.strip()), seeds=seeds,
                     budgets=tuple(float(b) for b in budgets.split(",")), cost_unit=cost_unit, target=target,
                     mode=mode, teacher=teacher, ft_epochs=ft_epochs, strategy=strategy)
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
    results = run_benchmark(st.location, spec=spec, executor=executor, workers=workers)
    seconds = time.perf_counter() - t
    rows = summarise_traces(results, spec=spec, best_index=best_index, best_report=best_report,
                            report=report_values)
    console.print(report_bench.markdown_table(rows, spec=spec), markup=False)
    notes = report_bench.table_notes(spec, best_index=best_index, best_report=best_report)
    console.print(report_bench.notes_markdown(notes), markup=False, highlight=False, soft_wrap=True)
    png = report_bench.plot_anytime(results, plot, spec=spec, best=best_report, title=f"{st.name}: anytime search",
                                    report=report_values)
    console.print(f"anytime plot: {png}; {seconds:.0f} s")
    if report:
        out = report_bench.write_report(report, rows=rows, spec=spec, plot=png, store_name=st.name,
                                        best_index=best_index, best_report=best_report, seconds=seconds,
                                        benchmark=data)
        console.print(f"report: {out}")
    if traces:
        from pathlib import Path

        from blox_env.datasets.store.core import BloxStore

        path = Path(traces)
        tstore = BloxStore.open(path, mode="a") if path.exists() else BloxStore.create(path, index=st.index)
        for (agent, seed), trace in results.items():
            tstore.write_trace(f"{agent}-s{seed}", trace, attrs={"agent": agent, "seed": seed,
                                                                 "benchmark": st.name, "cost_unit": cost_unit,
                                                                 "mode": mode, "strategy": strategy})
        console.print(f"traces: {traces}")


def register(app: typer.Typer) -> None:
    """Add ``blox bench``."""
    app.command("bench")(bench)
