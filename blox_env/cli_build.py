"""``blox build``, ``blox build-blockwise``, ``blox build-mini``, ``blox latency``: make benchmark stores."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

console = Console()


def _ints(text: str, what: str) -> list[int]:
    from blox_env.errors import InvalidArgumentError

    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise InvalidArgumentError(f"{what} takes comma-separated integers, got {text!r}") from exc


def build(
    store: Annotated[str, typer.Argument(help="store to create or complete (.zarr folder)")],
    blocks: Annotated[str, typer.Option(help="blocks per stage, e.g. '1,9,10' (same for all stages) or "
                                        "'1,9;10;11,23' (one list per stage)")] = "1,9,10,11,23,24",
    run: Annotated[str, typer.Option(help="run name")] = "digits",
    recipe: Annotated[str, typer.Option(help="digits_mini | cifar100_blox")] = "digits_mini",
    data: Annotated[str, typer.Option(help="digits | synthetic | cifar100:/path")] = "digits",
    seeds: Annotated[str, typer.Option(help="comma-separated seeds")] = "0,1",
    executor: Annotated[str, typer.Option(help="serial | process | ray")] = "process",
    workers: Annotated[int, typer.Option(help="worker processes (process/ray)")] = 2,
    address: Annotated[str | None, typer.Option(help="Ray cluster address ('auto' joins one)")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
) -> None:
    """Train every (model, seed) of a sub-space into a store; reruns resume."""
    from blox_env.datasets.build import build_benchmark
    from blox_env.space import SubSpace

    parts = blocks.split(";")
    per_stage = [_ints(p, "--blocks") for p in (parts if len(parts) == 3 else parts * 3)]
    report = build_benchmark(store, archs=SubSpace(tuple(tuple(p) for p in per_stage)), run=run, recipe=recipe,
                             data=data, seeds=_ints(seeds, "--seeds"), executor=executor, workers=workers,
                             address=address, device=device)
    console.print(f"{report.trained} trained, {report.skipped} already there, {report.total} rows in "
                  f"{report.store} (run {report.run}), {report.seconds:.0f} s")


def build_blockwise(
    store: Annotated[str, typer.Argument(help="store folder whose normal run is complete")],
    recipe: Annotated[str, typer.Option(help="recipe of the normal run (teachers and fine-tuning)")] = "digits_mini",
    data: Annotated[str, typer.Option(help="data of the normal run: digits | synthetic | cifar100:/path")] = "digits",
    data_seed: Annotated[int, typer.Option(help="split seed of digits/synthetic (ignored for CIFAR)")] = 0,
    run: Annotated[str | None, typer.Option(help="normal run to choose teachers from (default: the store's)")] = None,
    distill_epochs: Annotated[str, typer.Option(help="distillation lengths, short to full")] = "2,8",
    ft_epochs: Annotated[str, typer.Option(help="fine-tuning lengths, short to full")] = "1,8",
    executor: Annotated[str, typer.Option(help="serial | process | ray")] = "process",
    workers: Annotated[int, typer.Option(help="worker processes (process/ray)")] = 2,
    address: Annotated[str | None, typer.Option(help="Ray cluster address ('auto' joins one)")] = None,
) -> None:
    """Tabulate blockwise NAS in a store: teachers M1..M5, block libraries, signatures, fine-tuning; resumes."""
    from blox_env.datasets.blockwise_build import BlockwiseSpec
    from blox_env.datasets.blockwise_build import build_blockwise as run_build

    kwargs = (("seed", data_seed),) if data.strip().lower() in ("digits", "synthetic") else ()
    spec = BlockwiseSpec(recipe=recipe, data=data, data_kwargs=kwargs, normal_run=run,
                         distill_epochs=tuple(_ints(distill_epochs, "--distill-epochs")),
                         ft_epochs=tuple(_ints(ft_epochs, "--ft-epochs")))
    report = run_build(store, spec=spec, executor=executor, workers=workers, address=address)
    console.print(f"blockwise tables in {report.store}: teachers {report.teachers}; {report.trained_teachers} "
                  f"teachers trained, {report.distill_passes} distillation passes, {report.finetuned} fine-tunes, "
                  f"{report.seconds:.0f} s")


def build_mini(
    out: Annotated[str, typer.Option(help="build folder")] = "build/blox-mini.zarr",
    package: Annotated[str, typer.Option(help="zip to ship")] = "blox_env/data/blox-mini.zip",
    executor: Annotated[str, typer.Option(help="serial | process | ray")] = "process",
    workers: Annotated[int, typer.Option(help="worker processes")] = 2,
    latency: Annotated[bool, typer.Option(help="also measure the CPU latency table")] = True,
    blockwise: Annotated[bool, typer.Option(help="also build the blockwise tables")] = True,
) -> None:
    """Build (or finish) Blox-mini and package it; the committed recipe of the bundled store."""
    from blox_env.datasets.mini import build_mini as run_build
    from blox_env.datasets.mini import write_mini_latency

    report = run_build(out, package_zip=None, executor=executor, workers=workers)
    if latency:
        write_mini_latency(out)
    if blockwise:
        from blox_env.datasets.blockwise_build import build_blockwise as run_blockwise
        from blox_env.datasets.mini import MINI_BLOCKWISE

        run_blockwise(out, spec=MINI_BLOCKWISE, executor=executor, workers=workers)
    from blox_env.datasets.mini import package_store

    package_store(out, package)  # tables only: block and teacher weights stay in the build folder
    console.print(f"Blox-mini: {report.trained} trained, {report.skipped} reused; packaged {package}")


def latency(
    store: Annotated[str | None, typer.Option(help="store (full 91,125 rows) to write latency/<device> into")] = None,
    validate: Annotated[int, typer.Option(help="end-to-end check on this many random models")] = 100,
    repeats: Annotated[int, typer.Option(help="timed repeats per component")] = 30,
    seed: int = 0,
) -> None:
    """Measure the per-component CPU latency table (batch 1, one thread) and validate it."""
    from blox_env.latency import LatencyConfig, component_latencies, device_name, latency_table, validate_table
    from blox_env.space import sample_archs

    cfg = LatencyConfig(repeats=repeats)
    comps = component_latencies(cfg, progress=True, seed=seed)
    table = latency_table(comps)
    console.print(f"{device_name()}: predicted latency {table.min() * 1e3:.2f} .. {table.max() * 1e3:.2f} ms")
    if validate:
        v = validate_table(comps, sample_archs(validate, seed=seed, replace=False), cfg)
        console.print(f"validation on {v['n']} models: Spearman {v['spearman']:.3f}, MAPE {100 * v['mape']:.1f}%")
    if store:
        from blox_env.datasets.store import open_store

        st = open_store(store, mode="a")
        st.write_latency(device_name(), table[st.index], attrs={"batch": 1, "threads": 1, "repeats": repeats,
                                                                 "method": "per-component lookup, summed"})
        console.print(f"wrote latency/{device_name()} to {store}")


def register(app: typer.Typer) -> None:
    app.command("build")(build)
    app.command("build-mini")(build_mini)
    app.command("build-blockwise")(build_blockwise)
    app.command("latency")(latency)
