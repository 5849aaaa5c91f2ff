"""``blox train``, ``blox distill``, ``blox finetune``: real training from the command line.

Results go to the live store (``--store``, default ``$BLOX_HOME/stores/live-<data>.zarr``)
and are reused when present.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from blox_env.extras import require

console = Console()

DataOpt = Annotated[str, typer.Option(help="digits | synthetic | cifar100:/path | cifar10:/path")]
StoreOpt = Annotated[str | None, typer.Option(help="live store path (default: $BLOX_HOME/stores/live-<data>.zarr)")]
RecipeOpt = Annotated[str, typer.Option(help="training recipe: digits_mini | cifar100_blox")]


def _backend(**kwargs):  # noqa: ANN003, ANN202 - thin CLI glue
    import torch

    from blox_env.rewards.live import LiveReward

    torch.set_num_threads(1)
    return LiveReward(progress=True, **kwargs)


def _print_eval(ev) -> None:  # noqa: ANN001
    m = ev.metrics
    console.print(f"model {ev.arch.index} blocks {ev.arch.blocks}: val top-1 {m['val_top1']:.2f}  "
                  f"test top-1 {m['test_top1']:.2f}  train {m['train_time_s']:.1f} s  "
                  f"(computed now: {m['compute_s']:.1f} s; cost {ev.cost:.1f} s)")


def train(
    arch: Annotated[str, typer.Argument(help="index, hash, JSON vector or 'blocks:b0,b1,b2'")],
    data: DataOpt = "digits", recipe: RecipeOpt = "digits_mini", seed: int = 0, store: StoreOpt = None,
    device: str = "auto",
) -> None:
    """Train one model normally (or read its stored result)."""
    require("train", feature="`blox train`")
    from blox_env.space import parse_arch

    backend = _backend(store=store, data=data, recipe=recipe, seed=seed, device=device)
    _print_eval(backend.evaluate(parse_arch(arch)))


def distill(
    teacher: Annotated[str, typer.Option(help="teacher arch (trained normally first if needed)")],
    stages: Annotated[str, typer.Option(help="comma-separated stages to distil")] = "0,1,2",
    blocks: Annotated[str, typer.Option(help="'all' or comma-separated block ids")] = "all",
    data: DataOpt = "digits", recipe: RecipeOpt = "digits_mini", seed: int = 0, store: StoreOpt = None,
    epochs: Annotated[int, typer.Option(help="distillation epochs")] = 4,
    loss: Annotated[str, typer.Option(help="mse | nsr")] = "nsr", device: str = "auto",
) -> None:
    """Distil every candidate block of the given stages from a teacher, in one shared pass."""
    require("train", feature="`blox distill`")
    from blox_env.errors import InvalidArgumentError
    from blox_env.training.distill import DistillConfig

    try:
        stage_ids = [int(s) for s in stages.split(",")]
        block_ids = list(range(45)) if blocks == "all" else [int(b) for b in blocks.split(",")]
    except ValueError as exc:
        raise InvalidArgumentError(f"--stages and --blocks take comma-separated integers: {exc}") from exc
    cfg = DistillConfig(epochs=epochs, loss=loss, seed=seed)
    backend = _backend(store=store, data=data, recipe=recipe, seed=seed, mode="blockwise", teacher=teacher,
                       distill=cfg, device=device)
    spent = backend.ensure_teacher()
    spent += backend.ensure_blocks([(s, b) for s in stage_ids for b in block_ids])
    sig = backend.library.signatures(cfg)
    table = Table(title=f"signatures ({cfg.key}); computed now: {spent:.1f} s")
    for col in ("stage", "block", "distill loss (DONNA)", "teacher val change (LANA)", "time s"):
        table.add_column(col, justify="right")
    for s in stage_ids:
        for b in block_ids:
            table.add_row(str(s), str(b), f"{sig['distill_loss'][s, b]:.4f}", f"{sig['lana_delta'][s, b]:+.2f}",
                          f"{sig['distill_time_s'][s, b]:.1f}")
    console.print(table)


def finetune(
    arch: Annotated[str, typer.Argument(help="the student arch")],
    teacher: Annotated[str, typer.Option(help="teacher arch")],
    ft_epochs: Annotated[int | None, typer.Option(help="fine-tuning epochs (default: the recipe's)")] = None,
    data: DataOpt = "digits", recipe: RecipeOpt = "digits_mini", seed: int = 0, store: StoreOpt = None,
    epochs: Annotated[int, typer.Option(help="distillation epochs")] = 4, device: str = "auto",
) -> None:
    """Assemble a model from distilled blocks and fine-tune it with KD from the teacher."""
    require("train", feature="`blox finetune`")
    from blox_env.space import parse_arch
    from blox_env.training.distill import DistillConfig

    backend = _backend(store=store, data=data, recipe=recipe, seed=seed, mode="blockwise", teacher=teacher,
                       distill=DistillConfig(epochs=epochs, seed=seed), ft_epochs=ft_epochs, device=device)
    _print_eval(backend.evaluate(parse_arch(arch)))


def register(app: typer.Typer) -> None:
    """Add ``blox train``, ``blox distill`` and ``blox finetune``."""
    app.command("train")(train)
    app.command("distill")(distill)
    app.command("finetune")(finetune)
