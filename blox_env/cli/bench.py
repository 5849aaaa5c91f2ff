"""``blox bench``: the project's main job — search agents on cost budgets, with a table and a plot.

A thin shell over :func:`blox_env.bench.run_bench`: options are parsed into a
:class:`~blox_env.agents.spec.BenchSpec` and :class:`~blox_env.bench.BenchOutputs`, everything is
checked before the first search (exit code 2, nothing run), and the result's table, notes, plots
and report are printed and written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console

from blox_env.agents.spec import DEFAULT_AGENTS as _AGENTS
from blox_env.agents.spec import DEFAULT_MO_AGENTS as _MO_AGENTS

console = Console()
DEFAULT_AGENTS = ",".join(_AGENTS)
DEFAULT_MO_AGENTS = ",".join(_MO_AGENTS)  # with --objectives


def parse_list(name: str, text: str, cast: Callable[[str], Any], example: str) -> tuple[Any, ...]:
    """A comma-separated option as a tuple; empty items or values ``cast`` refuses are a clear error."""
    from blox_env.errors import InvalidArgumentError

    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise InvalidArgumentError(f"--{name} must be a comma-separated list without empty items, e.g. {example}; "
                                   f"got {text!r}")
    out = []
    for t in items:
        try:
            out.append(cast(t))
        except ValueError:
            raise InvalidArgumentError(f"--{name}: {t!r} is not valid (e.g. {example})") from None
    return tuple(out)


def bench(
    store: Annotated[str | None, typer.Option(help="benchmark store (default: imported BLOX, else Blox-mini)")] = None,
    agents: Annotated[str | None, typer.Option(
        help=f"comma-separated agents: built-in names or import paths module:Class of your own (default: "
             f"{DEFAULT_AGENTS}; with --objectives {DEFAULT_MO_AGENTS})")] = None,
    seeds: Annotated[int, typer.Option(help="searches per agent")] = 20,
    budgets: Annotated[str, typer.Option(help="comma-separated budgets in --cost-unit")] = "100,300,600",
    cost_unit: Annotated[str, typer.Option(help="seconds | epochs | evaluations")] = "seconds",
    target: Annotated[float | None, typer.Option(help="report the cost to reach this test top-1")] = None,
    executor: Annotated[str, typer.Option(help="serial | process | ray")] = "process",
    jobs: Annotated[int, typer.Option(help="searches run at once (processes of --executor)")] = 2,
    objectives: Annotated[str | None, typer.Option(
        help="multi-objective: comma-separated columns a search records, e.g. 'val_top1,params' or "
             "'val_top1,latency:<device>' (column[:max|:min]); reports hypervolume")] = None,
    sim_workers: Annotated[int, typer.Option(help="simulated parallel workers per search (a simulated clock; "
                                                  "1 = sequential)")] = 1,
    worker_mode: Annotated[str, typer.Option(help="simulated workers: async | sync")] = "async",
    budget_kind: Annotated[str, typer.Option(help="what budgets measure: compute (total cost of all evaluations) | "
                                                  "wall (simulated wall-clock)")] = "compute",
    workers: Annotated[int | None, typer.Option(hidden=True, help="renamed: --jobs or --sim-workers")] = None,
    report: Annotated[str | None, typer.Option(help="write a Markdown report here (.md)")] = None,
    plot: Annotated[str, typer.Option(help="anytime plot (.png; further plots beside it)")] = "bench_anytime.png",
    traces: Annotated[str | None, typer.Option(
        help="trace store folder (.zarr) of this benchmark: every finished search is kept there as it ends; a rerun "
             "with the same options resumes")] = None,
    mode: Annotated[str, typer.Option(help="normal | blockwise (rewards from the store's blockwise tables)")]
    = "normal",
    teacher: Annotated[str, typer.Option(help="blockwise teacher: M1..M5 (with full tables)")] = "M1",
    ft_epochs: Annotated[int | None, typer.Option(help="blockwise fine-tuning length (default: full)")] = None,
    strategy: Annotated[str, typer.Option(help="plain | two-stage (FT-short + FT-full) | iterative (teacher)")]
    = "plain",
    proxy: Annotated[str | None, typer.Option(help="zero-cost proxy of the store answered at fidelity 0, charged its "
                                                   "recorded seconds (for proxy-evolution), e.g. synflow")] = None,
) -> None:
    """Run agents x seeds on a tabular benchmark under cost budgets; print the summary table.

    With --objectives: multi-objective agents, hypervolume at each budget, fronts and anytime hypervolume plots.
    With --sim-workers N: each search runs on N simulated workers (async or sync) on a simulated clock.
    Everything is checked before the first search; Ctrl-C keeps the finished searches (with --traces).
    """
    from blox_env.agents.spec import BenchSpec
    from blox_env.bench import BenchOutputs, describe_plan, run_bench
    from blox_env.datasets.store.core import open_store
    from blox_env.datasets.store.provenance import benchmark_summary, describe_benchmark
    from blox_env.errors import InvalidArgumentError

    if workers is not None:
        raise InvalidArgumentError("--workers was renamed to avoid two meanings: --jobs N runs N searches at once "
                                   "(processes), --sim-workers N runs each search on N simulated workers")
    names = parse_list("agents", agents, str, "random,mypkg.agents:MyAgent") if agents is not None else \
        (_MO_AGENTS if objectives is not None else _AGENTS)
    objs = parse_list("objectives", objectives, str, "val_top1,params") if objectives is not None else None
    blockwise = {"teacher": teacher, "ft_epochs": ft_epochs, "strategy": strategy} if mode == "blockwise" else {}
    spec = BenchSpec.from_options(
        agents=names, seeds=seeds, budgets=parse_list("budgets", budgets, float, "100,300,600"), cost_unit=cost_unit,
        target=target, mode=mode, objectives=objs, sim_workers=sim_workers, worker_mode=worker_mode,
        budget_kind=budget_kind, proxy=proxy, **blockwise)
    outputs = BenchOutputs(report=report, plot=plot)
    st = open_store(store)
    data = describe_benchmark(st)
    console.print(f"data: {benchmark_summary(data)}", markup=False, highlight=False)
    console.print(f"benchmark {st.name}: {len(st):,} models; {len(spec.search.agents)} agents x {seeds} seeds; "
                  f"will write {', '.join(describe_plan(spec, outputs, traces)) or 'nothing'}",
                  markup=False, highlight=False)
    result = run_bench(spec, store=st, jobs=jobs, executor=executor, traces=traces, outputs=outputs,
                       log=lambda line: console.print(line, markup=False, highlight=False))
    if result.best_index is not None:
        console.print(f"best by mean {spec.search.metric}: model {result.best_index} ({spec.search.report_metric} "
                      f"{result.best_report:.2f})", markup=False, highlight=False)
    console.print(result.table(), markup=False)
    console.print(result.notes(), markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {', '.join(map(str, result.written)) or 'no file'}; {result.seconds:.0f} s"
                  + (f"; traces: {traces}" if traces else ""), markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``blox bench``."""
    app.command("bench")(bench)
