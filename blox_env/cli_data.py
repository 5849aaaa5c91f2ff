"""``blox data``: download, import, inspect and query benchmark stores."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

data_app = typer.Typer(help="Benchmark data: download, import, inspect, query.", no_args_is_help=True)
console = Console()

StoreOpt = Annotated[str | None, typer.Option("--store", "-s", help="store path/URL (default: imported BLOX, "
                                                 "else bundled Blox-mini)")]


@data_app.command("download")
def download(
    dest: Annotated[Path | None, typer.Option(help="target folder (default: $BLOX_HOME/release)")] = None,
    manifest: Annotated[str | None, typer.Option(help="JSON manifest: base_url and assets (size, sha256)")] = None,
    name: Annotated[list[str] | None, typer.Option(help="only this file (repeatable)")] = None,
    timeout: Annotated[float, typer.Option(help="seconds per network operation")] = 60.0,
    retries: Annotated[int, typer.Option(help="extra attempts per file")] = 3,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
    write_manifest: Annotated[bool, typer.Option(help="print the manifest as JSON and exit")] = False,
) -> None:
    """Fetch the official release files (resumable, checksum-verified)."""
    from blox_env.datasets.download import DEFAULT_MANIFEST, ReleaseManifest, download_release

    man = ReleaseManifest.from_json(manifest) if manifest else DEFAULT_MANIFEST
    if write_manifest:
        sys.stdout.write(man.to_json())
        return
    for path in download_release(dest=dest, manifest=man, names=name, timeout=timeout, retries=retries,
                                 progress=not quiet):
        console.print(str(path))


@data_app.command("import")
def import_(
    folder: Annotated[Path, typer.Argument(help="folder with blox-*.{blox,pickle,csv} release files")],
    out: Annotated[Path | None, typer.Option(help="store to create (.zarr folder or .zip; "
                                                 "default: $BLOX_HOME/stores/blox.zarr)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing store")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Import an official release folder into a store (atomic: all or nothing)."""
    from blox_env.datasets.importer import import_release

    path = import_release(folder, out=out, overwrite=overwrite, progress=not quiet)
    console.print(f"imported {folder} -> {path}")


@data_app.command("info")
def info(store: Annotated[str | None, typer.Argument(help="store path/URL or name")] = None) -> None:
    """Runs, seeds, epochs, metrics, coverage and provenance of a store."""
    from blox_env.datasets.store import open_store

    st = open_store(store)
    console.print(f"store      {escape(st.location)}\nname       {st.name}\nmodels     {len(st):,}"
                  f" ({100 * len(st) / 91125:.1f}% of the BLOX space)")
    table = Table(title="runs")
    for col in ("run", "dataset", "seeds", "epochs", "metrics", "coverage (val_top1)"):
        table.add_column(col)
    for name in st.runs:
        r = st.run_info(name)
        cover = ""
        if "val_top1" in r.metrics:
            vals = [st.get("val_top1", seed=s, best=False) for s in r.seeds]
            cover = ", ".join(f"seed {s}: {100 * (~_isnan(v)).mean():.1f}%" for s, v in zip(r.seeds, vals))
        table.add_row(name, str(r.attrs.get("dataset", "")), str(list(r.seeds)), str(r.epochs),
                      ", ".join(r.metrics), cover)
    console.print(table)
    console.print(f"static     {', '.join(m for m in st.metrics() if m in ('params', 'flops')) or '-'}")
    console.print(f"latency    {', '.join(st.latency_devices) or '-'}")
    console.print("provenance " + escape(json.dumps(st.attrs.get("provenance", {}), indent=1)[:2000]))


def _isnan(v):  # noqa: ANN001, ANN202 - tiny numpy helper
    import numpy as np

    return np.isnan(v)


@data_app.command("query")
def query(
    arch: Annotated[str, typer.Argument(help="index, hash, JSON arch vector or 'blocks:b0,b1,b2'")],
    store: StoreOpt = None,
    seed: Annotated[str | None, typer.Option(help="seed label, 'mean', or omitted for the mean")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the full record as JSON")] = False,
) -> None:
    """Everything a store knows about one model."""
    from blox_env.datasets.store import open_store

    st = open_store(store)
    chosen = "mean" if seed in (None, "mean") else int(seed)
    rec = st.full_info(arch, seed=chosen)
    if as_json:
        sys.stdout.write(json.dumps(rec) + "\n")
        return
    for key, value in rec.items():
        if isinstance(value, list) and len(value) > 8:
            value = f"[{value[0]}, {value[1]}, ..., {value[-1]}] ({len(value)} epochs)"
        console.print(f"{key:<16}{escape(str(value))}")
