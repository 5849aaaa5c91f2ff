"""``blox build``, ``blox build-blockwise``, ``blox build-mini``, ``blox latency``: make benchmark stores.

Every command checks all of its inputs (paths, executor, seeds, blocks, counts) before it starts
long work, and none creates a store as a side effect of a failure: ``blox latency --store`` opens
the store before measuring and never creates one. Messages are printed as plain text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from blox_env.cli.options import int_list
from blox_env.extras import require

console = Console(markup=False, highlight=False)


def build(
    store: Annotated[str, typer.Argument(help="store to create or complete (.zarr folder)")],
    blocks: Annotated[str, typer.Option(help="blocks per stage, e.g. '1,9,10' (same for all stages) or "
                                        "'1,9;10;11,23' (one list per stage)")] = "1,9,10,11,23,24",
    run: Annotated[str, typer.Option(help="run name")] = "digits",
    recipe: Annotated[str, typer.Option(help="digits_mini | cifar100_blox")] = "digits_mini",
    data: Annotated[str, typer.Option(help="digits | synthetic | cifar100:/path")] = "digits",
    seeds: Annotated[str, typer.Option(help="comma-separated seeds")] = "0,1",
    executor: Annotated[str, typer.Option(help="serial | process | ray")] = "process",
    jobs: Annotated[int, typer.Option(help="worker processes (process/ray)")] = 2,
    address: Annotated[str | None, typer.Option(help="Ray cluster address ('auto' joins one)")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
) -> None:
    """Train every (model, seed) of a sub-space into a store; reruns resume."""
    require("train", feature="`blox build`")
    from blox_env.build.benchmark import build_benchmark
    from blox_env.space import SubSpace

    parts = blocks.split(";")
    if len(parts) not in (1, 3):
        from blox_env.errors import InvalidArgumentError

        raise InvalidArgumentError(f"--blocks takes one list of blocks (the same for every stage) or three lists "
                                   f"separated by ';', got {len(parts)} lists in {blocks!r}")
    per_stage = [int_list(p, option="--blocks") for p in (parts if len(parts) == 3 else parts * 3)]
    report = build_benchmark(store, archs=SubSpace(tuple(tuple(p) for p in per_stage)), run=run, recipe=recipe,
                             data=data, seeds=int_list(seeds, option="--seeds"), executor=executor, jobs=jobs,
                             address=address, device=device)
    console.print(f"{report.trained} trained, {report.skipped} already there, {report.total} rows in "
                  f"{report.store} (run {report.run}), {report.seconds:.0f} s")


def build_blockwise(
    store: Annotated[str, typer.Argument(help="store folder whose normal run is complete")],
    recipe: Annotated[str, typer.Option(help="recipe of the normal run (teachers and fine-tuning)")] = "digits_mini",
    data: Annotated[str, typer.Option(help="data of the normal run: digits | synthetic | cifar100:/path")] = "digits",
    data_seed: Annotated[int, typer.Option(help="split seed of digits/synthetic (ignored for CIFAR)")] = 0,
    run: Annotated[str | None, typer.Option(help="normal run to choose teachers from (default: the store's)")] = None,
    distill_epochs: Annotated[str, typer.Option(help="distillation lengths, short to full")] = "2,10",
    ft_epochs: Annotated[str, typer.Option(help="fine-tuning lengths, short to full")] = "1,8",
    executor: Annotated[str, typer.Option(help="serial | process | ray")] = "process",
    jobs: Annotated[int, typer.Option(help="worker processes (process/ray)")] = 2,
    address: Annotated[str | None, typer.Option(help="Ray cluster address ('auto' joins one)")] = None,
) -> None:
    """Tabulate blockwise NAS in a store: teachers M1..M5, block libraries, signatures, fine-tuning; resumes."""
    require("train", feature="`blox build-blockwise`")
    from blox_env.build.blockwise import BlockwiseSpec
    from blox_env.build.blockwise import build_blockwise as run_build

    kwargs = (("seed", data_seed),) if data.strip().lower() in ("digits", "synthetic") else ()
    spec = BlockwiseSpec(recipe=recipe, data=data, data_kwargs=kwargs, normal_run=run,
                         distill_epochs=tuple(int_list(distill_epochs, option="--distill-epochs")),
                         ft_epochs=tuple(int_list(ft_epochs, option="--ft-epochs")))
    report = run_build(store, spec=spec, executor=executor, jobs=jobs, address=address)
    console.print(f"blockwise tables in {report.store}: teachers {report.teachers}; {report.trained_teachers} "
                  f"teachers trained, {report.distill_passes} distillation passes, {report.finetuned} fine-tunes, "
                  f"{report.seconds:.0f} s")


def build_mini(
    out: Annotated[str | None, typer.Option(help="build folder (default build/blox-mini.zarr for v1, "
                                                 "build/blox-mini-v2.zarr for v2)")] = None,
    package: Annotated[str | None, typer.Option(help="zip to write (default: blox_env/data/blox-mini.zip for the "
                                                     "bundled version, else build/blox-mini-<version>.zip)")] = None,
    version: Annotated[str, typer.Option(help="v2 (729 models, 3 seeds; bundled) | v1 (216 models, 2 seeds)")] = "v2",
    executor: Annotated[str, typer.Option(help="serial | process | ray")] = "process",
    jobs: Annotated[int, typer.Option(help="worker processes")] = 2,
    latency: Annotated[bool, typer.Option(help="also measure the CPU latency table")] = True,
    blockwise: Annotated[bool, typer.Option(help="also build the blockwise tables")] = True,
) -> None:
    """Build (or finish) Blox-mini and package it; the committed recipe of the bundled store (resumable)."""
    require("train", feature="`blox build-mini`")
    from blox_env.build.executors import check_executor
    from blox_env.build.mini import build_mini as run_build
    from blox_env.build.mini import default_paths, get_mini_version, write_mini_latency
    from blox_env.errors import InvalidArgumentError

    mini = get_mini_version(version)
    default_out, default_zip = default_paths(mini)
    out, package = out or default_out, package or default_zip
    check_executor(executor, jobs=jobs)
    if not package.endswith(".zip") or Path(package).is_dir():
        raise InvalidArgumentError(f"--package must name a .zip file to write, got {package!r}")
    report = run_build(out, package_zip=None, executor=executor, jobs=jobs, version=mini)
    if latency:
        write_mini_latency(out)
    if blockwise:
        from blox_env.build.blockwise import build_blockwise as run_blockwise

        run_blockwise(out, spec=mini.blockwise, executor=executor, jobs=jobs)
    from blox_env.build.mini import package_store

    package_store(out, package)  # tables only: block and teacher weights stay in the build folder
    console.print(f"Blox-mini {mini.version}: {report.trained} trained, {report.skipped} reused; packaged {package}")


def latency(
    store: Annotated[str | None, typer.Option(help="store (full 91,125 rows) to write latency/<device> into")] = None,
    validate: Annotated[int, typer.Option(help="end-to-end check on this many random models")] = 100,
    repeats: Annotated[int, typer.Option(help="timed repeats per component")] = 30,
    seed: Annotated[int, typer.Option(help="seed of the random inputs timed and of the validation models")] = 0,
) -> None:
    """Measure the per-component CPU latency table (batch 1, one thread) and validate it."""
    require("train", feature="`blox latency`")
    from blox_env.errors import InvalidArgumentError
    from blox_env.latency import LatencyConfig, component_latencies, device_name, latency_table, validate_table
    from blox_env.space import N_MODELS, sample_archs

    if not 0 <= validate <= N_MODELS:
        raise InvalidArgumentError(f"--validate takes a number of models in 0..{N_MODELS}, got {validate}")
    cfg = LatencyConfig(repeats=repeats)
    target = _latency_target(store) if store else None  # before the minutes of measuring
    comps = component_latencies(cfg, progress=True, seed=seed)
    table = latency_table(comps)
    console.print(f"{device_name()}: predicted latency {table.min() * 1e3:.2f} .. {table.max() * 1e3:.2f} ms")
    if validate:
        v = validate_table(comps, sample_archs(validate, seed=seed, replace=False), cfg)
        console.print(f"validation on {v['n']} models: Spearman {v['spearman']:.3f}, MAPE {100 * v['mape']:.1f}%")
    if target is not None:
        from blox_env.datasets.store.core import BloxStore

        st = BloxStore.open(target, mode="a")
        st.write_latency(device_name(), table[st.index], attrs={"batch": 1, "threads": 1, "repeats": repeats,
                                                                 "method": "per-component lookup, summed"})
        console.print(f"wrote latency/{device_name()} to {store}")


def _latency_target(store: str) -> str | Path:
    """The existing store ``--store`` names, opened read-only once to check it (never created)."""
    from blox_env.datasets.store.core import BloxStore
    from blox_env.datasets.store.location import is_blox_store, resolve_location
    from blox_env.errors import InvalidArgumentError, StoreNotFoundError

    target = resolve_location(store)
    if isinstance(target, Path):
        if target.suffix == ".zip":
            raise InvalidArgumentError(f"--store {store}: a packaged .zip store is read-only; unzip it into a "
                                       "folder to add latency")
        if not is_blox_store(target):
            raise StoreNotFoundError(f"--store {store}: no blox store at {target}; latency is written into an "
                                     "existing store (import one with `blox data import` or build one with "
                                     "`blox build`), or leave --store out to only measure")
    BloxStore.open(target).close()
    return target


def register(app: typer.Typer) -> None:
    """Add ``blox build``, ``blox build-mini``, ``blox build-blockwise`` and ``blox latency``."""
    app.command("build")(build)
    app.command("build-mini")(build_mini)
    app.command("build-blockwise")(build_blockwise)
    app.command("latency")(latency)
