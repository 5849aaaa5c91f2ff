"""``blox predictors train|eval``: fit accuracy predictors on a store and run the evaluation protocol."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from blox_env.cli.options import int_list
from blox_env.extras import require

console = Console()


def train(
    model: Annotated[str, typer.Option(help="gcn | brp | gin | mlp | tree")] = "gcn",
    metric: Annotated[str, typer.Option(help="target metric of the store")] = "val_top1",
    train_size: Annotated[int, typer.Option(help="training models (the rest is held out)")] = 100,
    store: Annotated[str | None, typer.Option(help="store (default: imported BLOX, else Blox-mini)")] = None,
    out: Annotated[str | None, typer.Option(help="folder to save the fitted predictor")] = None,
    seed: Annotated[int, typer.Option(help="seed of the train/held-out split and of the fit")] = 0,
    fast: Annotated[bool, typer.Option(help="CPU-sized graph predictors")] = True,
) -> None:
    """Fit one predictor on a random training set and report held-out metrics."""
    require("predictors", feature="`blox predictors train`")
    import numpy as np

    from blox_env.datasets.store.core import open_store
    from blox_env.predictors.evaluation import make_predictor
    from blox_env.predictors.metrics import evaluate_predictions
    from blox_env.space import Arch

    st = open_store(store)
    y = st.get(metric, seed="mean")
    ok = np.flatnonzero(np.isfinite(y))
    order = np.random.default_rng(seed).permutation(ok)
    if train_size >= len(order):
        from blox_env.errors import InvalidArgumentError

        raise InvalidArgumentError(f"train size {train_size} leaves no held-out models ({len(order)} in total)")
    tr, te = order[:train_size], order[train_size:]
    pred = make_predictor(model, fast=fast)
    pred.fit([Arch.from_index(int(i)) for i in st.index[tr]], y[tr], seed=seed)
    scores = evaluate_predictions(y[te], pred.predict([Arch.from_index(int(i)) for i in st.index[te]]))
    console.print(f"{model} on {st.name}: trained on {len(tr)}, held out {len(te)}: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    if out:
        pred.save(out)
        console.print(f"saved to {out}")


def evaluate(
    store: Annotated[str | None, typer.Option(help="store (default: imported BLOX, else Blox-mini)")] = None,
    predictors: Annotated[str, typer.Option(help="comma-separated: gcn,brp,gin,mlp,tree")] = "gcn,brp,gin,mlp,tree",
    sizes: Annotated[str, typer.Option(help="train sizes")] = "25,50,100,150",
    seeds: Annotated[int, typer.Option(help="repeats")] = 5,
    test_size: Annotated[int, typer.Option(help="held-out models")] = 60,
    metric: Annotated[str, typer.Option(help="target metric of the store")] = "val_top1",
    out: Annotated[str, typer.Option(help="results JSON")] = "predictor_eval.json",
    plot: Annotated[str, typer.Option(help="Spearman vs train size PNG")] = "predictor_eval.png",
    fast: Annotated[bool, typer.Option(help="CPU-sized graph predictors")] = True,
) -> None:
    """The evaluation protocol: sizes x seeds x predictors; table, JSON and plot."""
    require("predictors", feature="`blox predictors eval`")
    from blox_env.datasets.store.core import open_store
    from blox_env.predictors.evaluation import EvalSpec, run_evaluation, save_results, summarise
    from blox_env.reports.predictors import plot_results

    st = open_store(store)
    spec = EvalSpec(predictors=tuple(p.strip() for p in predictors.split(",")),
                    train_sizes=tuple(int_list(sizes, option="--sizes")), seeds=seeds, test_size=test_size,
                    metric=metric, fast=fast)
    rows = run_evaluation(st, spec=spec)
    save_results(rows, out, spec=spec, store=st)
    plot_results(rows, plot, title=f"{st.name}: {metric}")
    summary = summarise(rows)
    table = Table(title=f"Spearman on held-out models, mean ± std over {seeds} seeds ({st.name})")
    table.add_column("predictor")
    for n in spec.train_sizes:
        table.add_column(str(n), justify="right")
    for name in spec.predictors:
        table.add_row(name, *(f"{summary[(name, n)][0]:.3f} ± {summary[(name, n)][1]:.3f}" for n in spec.train_sizes))
    console.print(table)
    console.print(f"results: {out}, plot: {plot}")


def register(app: typer.Typer) -> None:
    """Add the ``blox predictors`` group: ``train`` and ``eval``."""
    group = typer.Typer(help="Accuracy predictors: train one, or evaluate many.", no_args_is_help=True)
    group.command("train")(train)
    group.command("eval")(evaluate)
    app.add_typer(group, name="predictors")
