"""``blox build-proxies``: the 13 zero-cost proxies of every model of a store, as store columns (resumable);
``blox proxies report``: how well each ranks the store's models."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from blox_env.cli.options import int_list
from blox_env.extras import require

console = Console(markup=False, highlight=False)


def build_proxies(
    store: Annotated[str, typer.Argument(help="store to complete (a local .zarr folder)")],
    data: Annotated[str, typer.Option(help="digits | cifar100:/path | a CIFAR folder | gaussian")] = "digits",
    proxies: Annotated[str | None, typer.Option(help="comma-separated proxies (default: all 13)")] = None,
    init_seeds: Annotated[str, typer.Option(help="comma-separated initialisation seeds")] = "0,1,2",
    batch_size: Annotated[int, typer.Option(help="images in the one proxy batch")] = 64,
    data_seed: Annotated[int, typer.Option(help="seed that draws the batch")] = 0,
    executor: Annotated[str, typer.Option(help="serial | process | ray")] = "serial",
    jobs: Annotated[int, typer.Option(help="worker processes (process/ray)")] = 2,
    every: Annotated[int, typer.Option(help="models per store write")] = 32,
    limit: Annotated[int | None, typer.Option(help="stop after this many models")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Compute the proxies of every model not yet done (``proxies/<name>[S,N]`` and their seconds); reruns resume."""
    require("train", feature="`blox build-proxies`")
    from blox_env.build.proxies import build_proxies as run

    report = run(store, data=data, proxies=proxies, init_seeds=int_list(init_seeds, option="--init-seeds"),
                 batch_size=batch_size, data_seed=data_seed, executor=executor, jobs=jobs, every=every, limit=limit,
                 progress=progress)
    console.print(f"{report.store}: {report.pairs_computed} (model, init seed) pairs computed, "
                  f"{report.pairs_before} already done, {report.models} models, {report.seconds:.1f} s", soft_wrap=True)


def report(
    store: Annotated[str, typer.Argument(help="store holding proxies (folder, .zip or URL)")],
    metric: Annotated[str, typer.Option(help="accuracy to rank against (seed mean)")] = "test_top1",
    run: Annotated[str | None, typer.Option(help="training run (default: the store's)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Spearman / Kendall of each proxy and of params/FLOPs with normal accuracy, seed stability, cost."""
    require("train", feature="`blox proxies report`")
    import json

    from blox_env.datasets.store.core import open_store
    from blox_env.proxies.report import proxy_report, report_markdown

    result = proxy_report(open_store(store), metric=metric, run=run)
    print(json.dumps(result, default=str) if as_json else report_markdown(result))


def register(app: typer.Typer) -> None:
    """Add ``blox build-proxies`` and ``blox proxies report``."""
    app.command("build-proxies")(build_proxies)
    group = typer.Typer(help="Zero-cost proxies: reports on a store's proxy columns.", no_args_is_help=True)
    group.command("report")(report)
    app.add_typer(group, name="proxies")
