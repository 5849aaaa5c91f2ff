"""``blox study``: rerun the BLOX paper's blockwise analysis on a store with blockwise tables."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from blox_env.cli.options import float_list, int_list

console = Console()


def study(
    store: Annotated[str | None, typer.Option(help="store with blockwise tables (default: Blox-mini)")] = None,
    out: Annotated[str, typer.Option(help="folder for study.md, its figures and study.json")] = "study",
    seeds: Annotated[int, typer.Option(help="searches per method for Table 2")] = 10,
    budgets: Annotated[str | None, typer.Option(help="comma-separated budgets in seconds (default: 15, 40 "
                                                "and 100 median normal trainings)")] = None,
    predictor_sizes: Annotated[str, typer.Option(help="training-set sizes for Q4")] = "10,25,50,100",
    predictor_seeds: Annotated[int, typer.Option(help="splits per size for Q4")] = 3,
    predictors: Annotated[str, typer.Option(help="predictors for Q4")] = "donna,lana,gcn,brp",
    executor: Annotated[str, typer.Option(help="serial | process | ray")] = "process",
    workers: Annotated[int, typer.Option("--jobs", "--workers",
                                            help="searches run at once (processes); --workers: the old name")] = 2,
    target: Annotated[float | None, typer.Option(help="Table 2 target accuracy (default: the test accuracy of the "
                                                 "best normally trained model, as the paper's 76.6)")] = None,
    live_store: Annotated[str | None, typer.Option(help="a writable store with the tables' teacher weights (e.g. "
                                                   "build/blox-mini-v2.zarr): the iterative teacher then trains, "
                                                   "distils and fine-tunes promoted teachers live (needs the train "
                                                   "extra) instead of "
                                                   "standing in a tabulated teacher")] = None,
    live_seeds: Annotated[int, typer.Option(help="searches of a live method (with --live-store)")] = 3,
    live_record: Annotated[str | None, typer.Option(help="folder with the shipped record of a live run "
                                                    "(live-teachers.zip and .json, written there by a --live-store "
                                                    "run), replayed without --live-store (default: the --out "
                                                    "folder)")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress output")] = False,
) -> None:
    """Q1-Q6 and a Table-2 comparison as a Markdown report with PNG figures (see docs/study/study.md)."""
    from blox_env.datasets.store.blockwise import BlockwiseTables
    from blox_env.datasets.store.core import open_store
    from blox_env.reports.study import StudyConfig, run_study
    from blox_env.reports.study_report import write_study

    st = open_store(store)
    tables = BlockwiseTables(st)
    budget_values = tuple(float_list(budgets, option="--budgets")) if budgets else None
    config = StudyConfig(seeds=seeds, budgets=budget_values,
                         predictor_sizes=tuple(int_list(predictor_sizes, option="--predictor-sizes")),
                         predictor_seeds=predictor_seeds, executor=executor, workers=workers, target=target,
                         live_store=live_store, live_seeds=live_seeds,
                         live_record=None if live_store else live_record or _record_in(out),
                         predictors=tuple(p.strip() for p in predictors.split(",") if p.strip()))
    if not quiet:
        from blox_env.datasets.store.provenance import benchmark_summary, describe_benchmark

        console.print(f"data: {benchmark_summary(describe_benchmark(st))}", markup=False, highlight=False)
        console.print(f"study on {st.name}: teachers " + ", ".join(f"{k} = {v.index}" for k, v in
                                                                    tables.teachers.items()))
    results = run_study(st, config=config, progress=not quiet)
    path = write_study(results, tables, out)
    if live_store is not None:  # ship what the live row read, so that a run without --live-store reproduces it
        from blox_env.reports.study_live import export_live_record

        live = [r["agent"] for r in results.summary if r.get("live") == "live"]
        if live:
            console.print(f"live record: {export_live_record(live_store, results.traces[live[0]], out, tables=tables)}")
    console.print(f"report: {path}")


def register(app: typer.Typer) -> None:
    """Add ``blox study``."""
    app.command("study")(study)


def _record_in(folder: str) -> str | None:
    """``folder`` if it holds a live record (the default of --live-record: the --out folder), else None."""
    from blox_env.reports.study_live import has_live_record

    return folder if has_live_record(folder) else None
