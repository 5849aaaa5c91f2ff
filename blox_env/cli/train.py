"""``blox train``, ``blox distill``, ``blox finetune``: real training from the command line.

Results go to the live store (``--store``, default ``$BLOX_HOME/stores/live-<data>.zarr``)
and are reused when present.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from blox_env.extras import require

if TYPE_CHECKING:
    from blox_env.space import Arch

console = Console()

DataOpt = Annotated[str, typer.Option(help="digits | synthetic | cifar100:/path | cifar10:/path")]
StoreOpt = Annotated[str | None, typer.Option(help="live store path (default: $BLOX_HOME/stores/live-<data>.zarr)")]
RecipeOpt = Annotated[str, typer.Option(help="training recipe: digits_mini | cifar100_blox")]
SeedOpt = Annotated[int, typer.Option(help="training seed (also the digits/synthetic split seed)")]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA if available) | cpu | cuda | cuda:N")]


def _backend(**kwargs):  # noqa: ANN003, ANN202 - thin CLI glue
    import torch

    from blox_env.rewards.live import LiveReward

    torch.set_num_threads(1)
    return LiveReward(progress=True, **kwargs)


def _print_eval(ev) -> None:  # noqa: ANN001
    m = ev.metrics
    _print_result(ev.arch, m, cost=ev.cost)


def _print_result(arch: Arch, m: dict[str, float], *, cost: float) -> None:
    console.print(f"model {arch.index} blocks {arch.blocks}: val top-1 {m['val_top1']:.2f}  "
                  f"test top-1 {m['test_top1']:.2f}  train {m['train_time_s']:.1f} s  "
                  f"(computed now: {m['compute_s']:.1f} s; cost {cost:.1f} s)")


def _data_name(data: str) -> str | None:
    """The data set name ``load_data(data)`` would give, without loading it (None: only loading tells)."""
    text = data.strip().lower()
    if text in ("digits", "synthetic"):
        return text
    for prefix, name in (("cifar100:", "cifar100"), ("cifar10:", "cifar10")):
        if text.startswith(prefix) and Path(data.strip()[len(prefix):].strip()).expanduser().is_dir():
            return name
    return None  # a bare folder (its CIFAR variant is known from its files) or a bad spec: the full path decides


def stored_result(arch: Arch, *, data: str, recipe: str, seed: int, store: str | None,
                  device: str) -> dict[str, float] | None:
    """The live store's recorded result of ``arch`` as ``blox train`` would print it, or None if not recorded.

    Why: reading a stored result needs neither torch nor the data set, so ``blox train`` on a model already
    trained answers in well under a second. Anything unusual (no store, another run spec, a device or data
    spec that only the full path checks) returns None and the full path decides, with its own errors.
    """
    from blox_env.datasets.store.core import BloxStore
    from blox_env.errors import ArchitectureNotFoundError, InvalidArgumentError
    from blox_env.paths import blox_home
    from blox_env.training.recipes import get_recipe, live_run_name  # torch-free

    rec = get_recipe(recipe)  # an unknown recipe is refused here as on the full path
    name = _data_name(data)
    if name is None or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        return None
    path = Path(store).expanduser() if store is not None else blox_home() / "stores" / f"live-{name}.zarr"
    if not (path / "zarr.json").is_file():
        return None
    run = live_run_name(rec, name, seed)  # LiveReward's run for normal training
    st = BloxStore.open(path)
    try:
        attrs = st.run_attrs(run)
        if attrs is None or attrs.get("setup", "complete") != "complete" or "seeds" not in attrs:
            return None
        info = st.run_info(run)
        if seed not in info.seeds or info.epochs != rec.epochs:
            return None
        e = rec.epochs
        values = {
            "val_top1": st.get("val_top1", [arch], seed=seed, epoch=e, run=run)[0],
            "test_top1": st.get("test_top1", [arch], seed=seed, run=run)[0],
            "train_time_s": st.get("train_time_s", [arch], seed=seed, epoch=e, run=run)[0],
        }
    except (InvalidArgumentError, ArchitectureNotFoundError):  # a metric or row the store lacks: the full path
        return None
    finally:
        st.close()
    if not all(math.isfinite(float(v)) for v in values.values()):
        return None
    return {**{k: float(v) for k, v in values.items()}, "compute_s": 0.0}


def train(
    arch: Annotated[str, typer.Argument(help="index, hash, JSON vector or 'blocks:b0,b1,b2'")],
    data: DataOpt = "digits", recipe: RecipeOpt = "digits_mini", seed: SeedOpt = 0, store: StoreOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Train one model normally (or read its stored result)."""
    from blox_env.space import parse_arch

    a = parse_arch(arch)
    stored = stored_result(a, data=data, recipe=recipe, seed=seed, store=store, device=device)
    if stored is not None:  # fast path: no torch, no data loading
        _print_result(a, stored, cost=stored["train_time_s"])
        return
    require("train", feature="`blox train`")
    backend = _backend(store=store, data=data, recipe=recipe, seed=seed, device=device)
    _print_eval(backend.evaluate(a))


def distill(
    teacher: Annotated[str, typer.Option(help="teacher arch (trained normally first if needed)")],
    stages: Annotated[str, typer.Option(help="comma-separated stages to distil")] = "0,1,2",
    blocks: Annotated[str, typer.Option(help="'all' or comma-separated block ids")] = "all",
    data: DataOpt = "digits", recipe: RecipeOpt = "digits_mini", seed: SeedOpt = 0, store: StoreOpt = None,
    epochs: Annotated[int, typer.Option(help="distillation epochs (the paper's 10)")] = 10,
    loss: Annotated[str, typer.Option(help="mse | nsr")] = "nsr", device: DeviceOpt = "auto",
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
    cfg = DistillConfig.from_recipe(recipe, epochs=epochs, loss=loss, seed=seed)  # the recipe's SGD and augmentation
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
    data: DataOpt = "digits", recipe: RecipeOpt = "digits_mini", seed: SeedOpt = 0, store: StoreOpt = None,
    epochs: Annotated[int, typer.Option(help="distillation epochs (the paper's 10)")] = 10,
    device: DeviceOpt = "auto",
) -> None:
    """Assemble a model from distilled blocks and fine-tune it with KD from the teacher."""
    require("train", feature="`blox finetune`")
    from blox_env.space import parse_arch
    from blox_env.training.distill import DistillConfig

    backend = _backend(store=store, data=data, recipe=recipe, seed=seed, mode="blockwise", teacher=teacher,
                       distill=DistillConfig.from_recipe(recipe, epochs=epochs, seed=seed), ft_epochs=ft_epochs,
                       device=device)
    _print_eval(backend.evaluate(parse_arch(arch)))


def register(app: typer.Typer) -> None:
    """Add ``blox train``, ``blox distill`` and ``blox finetune``."""
    app.command("train")(train)
    app.command("distill")(distill)
    app.command("finetune")(finetune)
