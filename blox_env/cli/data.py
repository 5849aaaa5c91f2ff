"""``blox data``: download, import, inspect and query benchmark stores."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()

StoreOpt = Annotated[str | None, typer.Option("--store", "-s", help="store path/URL (default: imported BLOX, "
                                                 "else bundled Blox-mini)")]


def download(
    dest: Annotated[Path | None, typer.Option(help="target folder (default: $BLOX_HOME/release)")] = None,
    tag: Annotated[str | None, typer.Option(help="release tag (default: the latest release), resolved through "
                                                 "the GitHub releases API")] = None,
    manifest: Annotated[str | None, typer.Option(help="JSON manifest: base_url and assets (size, sha256, url); "
                                                      "skips the API")] = None,
    name: Annotated[list[str] | None, typer.Option(help="only this file (repeatable)")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="blox, pickle or csv (default: one per file, "
                                                             ".blox first)")] = None,
    repo: Annotated[str, typer.Option(help="GitHub repository OWNER/NAME holding the release")] = "SamsungLabs/blox",
    offline: Annotated[bool, typer.Option(help="do not ask the API: the cached manifest, else the built-in "
                                               "one")] = False,
    timeout: Annotated[float, typer.Option(help="seconds per network operation")] = 60.0,
    retries: Annotated[int, typer.Option(help="extra attempts per file")] = 3,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
    write_manifest: Annotated[bool, typer.Option(help="print the manifest of the files it would fetch as JSON "
                                                     "and exit")] = False,
) -> None:
    """Fetch the official release files (resumable; verified by size/sha256, or by length and a .sha256 record).

    The release is resolved through the GitHub releases API ($BLOX_RELEASE_API overrides its URL),
    else the cached manifest, else the built-in one; stderr says which, and each file's URL.
    """
    from blox_env.datasets.release.resolve import download_official, release_for, selected_manifest

    if write_manifest:  # the files a download would fetch, with their URLs, sizes and sha256
        resolved = release_for(tag, repo=repo, offline=offline, manifest=manifest, timeout=timeout)
        for line in resolved.describe([]):
            sys.stderr.write(line + "\n")
        sys.stdout.write(selected_manifest(resolved, names=name, fmt=fmt).to_json())
        return
    for path in download_official(tag, dest=dest, names=name, fmt=fmt, repo=repo, offline=offline,
                                  manifest=manifest, timeout=timeout, retries=retries,
                                  progress=not quiet):  # origins and notes (e.g. no checksum known) go to stderr
        console.print(str(path), markup=False, highlight=False, soft_wrap=True)  # a path is never broken


def import_(
    folder: Annotated[Path | None, typer.Argument(help="folder with blox-*.{blox,pickle,csv} release files "
                                                       "(default: $BLOX_HOME/release, where `blox data download` "
                                                       "writes)")] = None,
    out: Annotated[Path | None, typer.Option(help="store to create (.zarr folder or .zip; "
                                                 "default: $BLOX_HOME/stores/blox.zarr)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing blox store (never anything else)")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    allow_partial: Annotated[bool, typer.Option(help="import a release whose files miss models "
                                                     "(coverage is recorded in the store)")] = False,
) -> None:
    """Import an official release folder (default: $BLOX_HOME/release) into a store (atomic: all or nothing)."""
    from blox_env.datasets.release.importer import import_release

    if folder is None:
        from blox_env.errors import StoreNotFoundError
        from blox_env.paths import blox_home

        folder = blox_home() / "release"
        if not folder.is_dir():
            raise StoreNotFoundError(f"no release folder at {folder} (the default, $BLOX_HOME/release): run "
                                     "`blox data download` first, or name the folder: blox data import DIR")

    def say(message: str) -> None:
        console.print(message, markup=False, highlight=False)

    path = import_release(folder, out=out, overwrite=overwrite, progress=not quiet, allow_partial=allow_partial,
                          report=say)
    console.print(f"imported {folder} -> {path}", markup=False, highlight=False)


def info(store: Annotated[str | None, typer.Argument(help="store path/URL or name")] = None) -> None:
    """Runs, seeds, epochs, metrics, coverage and provenance of a store; exits 1 if its structure is damaged."""
    import warnings

    from rich.text import Text

    from blox_env.datasets.store.core import open_store
    from blox_env.datasets.store.integrity import StoreDamageWarning
    from blox_env.datasets.store.provenance import benchmark_lines, describe_benchmark
    from blox_env.datasets.store.verify import verify_store
    from blox_env.errors import StoreCorruptError

    st = open_store(store)
    bench = describe_benchmark(st)
    check = verify_store(st)  # cheap: metadata and chunk presence, nothing decoded but the index
    _plain(f"store      {st.location}\nname       {st.name}\nmodels     {len(st):,}"
           f" ({100 * len(st) / 91125:.1f}% of the BLOX space)")
    table = Table(title="runs")
    for col in ("run", "dataset", "seeds", "epochs", "metrics", "coverage (val_top1)"):
        table.add_column(col)
    with warnings.catch_warnings():  # damage is listed once, below, not as one warning per chunk
        warnings.simplefilter("ignore", StoreDamageWarning)
        for name in st.runs:
            r = st.run_info(name)
            cover = ""
            if "val_top1" in r.metrics:
                try:
                    vals = [st.get("val_top1", seed=s, best=False) for s in r.seeds]
                    cover = ", ".join(f"seed {s}: {100 * (~_isnan(v)).mean():.1f}%" for s, v in zip(r.seeds, vals))
                except StoreCorruptError:  # listed with the other damage below (exit 1)
                    cover = "damaged: see below"
            cells = (name, str(r.attrs.get("dataset", "")), str(list(r.seeds)), str(r.epochs), ", ".join(r.metrics),
                     cover)
            table.add_row(*(Text(c) for c in cells))  # Text: names and attributes are never markup
    console.print(table)
    _plain(f"static     {', '.join(m for m in st.metrics() if m in ('params', 'flops')) or '-'}")
    _plain(f"latency    {', '.join(st.latency_devices) or '-'}")
    _plain("provenance " + json.dumps(st.attrs.get("provenance", {}), indent=1)[:2000])
    _plain("\n".join(["benchmark", *benchmark_lines(bench)[2:]]))  # the same description as every report
    if not check.ok:
        _report(check, err=True)
        raise typer.Exit(1)


def verify(
    store: Annotated[str | None, typer.Argument(help="store path/URL or name")] = None,
    deep: Annotated[bool, typer.Option("--deep", help="also decode every chunk and compare the recorded "
                                                      "checksums")] = False,
) -> None:
    """Check a store's structure (metadata, index, shapes, chunk files) and with --deep its checksums.

    Exits 0 when the store is sound, 1 with the list of problems otherwise.
    """
    from blox_env.datasets.store.verify import verify_store

    report = verify_store(store, deep=deep)
    _report(report, err=not report.ok)
    if not report.ok:
        raise typer.Exit(1)


def _plain(text: str, *, err: bool = False) -> None:
    """Print file and user data verbatim: no markup, no highlighting, no emoji codes, no wrapping."""
    (Console(stderr=True) if err else console).print(text, markup=False, highlight=False, emoji=False,
                                                      soft_wrap=True)


def _report(report: Any, *, err: bool) -> None:
    for line in [*(f"error: {e}" for e in report.errors), *(f"warning: {w}" for w in report.warnings)]:
        _plain(line, err=err)
    _plain(report.summary(), err=err)


def _isnan(v):  # noqa: ANN001, ANN202 - tiny numpy helper
    import numpy as np

    return np.isnan(v)


def query(
    arch: Annotated[str, typer.Argument(help="index, hash, JSON arch vector or 'blocks:b0,b1,b2'")],
    store: StoreOpt = None,
    seed: Annotated[str | None, typer.Option(help="seed label, 'mean', or omitted for the mean")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the full record as JSON")] = False,
) -> None:
    """Everything a store knows about one model."""
    from blox_env.datasets.store.core import open_store
    from blox_env.errors import InvalidArgumentError

    if seed not in (None, "mean") and not seed.lstrip("-").isdigit():
        raise InvalidArgumentError(f"--seed must be a seed label (an integer) or 'mean', got {seed!r}")
    st = open_store(store)
    chosen = "mean" if seed in (None, "mean") else int(seed)
    rec = st.full_info(arch, seed=chosen)
    if as_json:
        sys.stdout.write(json.dumps(rec) + "\n")
        return
    for key, value in rec.items():
        if isinstance(value, list) and len(value) > 8:
            value = f"[{value[0]}, {value[1]}, ..., {value[-1]}] ({len(value)} epochs)"
        _plain(f"{key:<16}{value}")


def register(app: typer.Typer) -> None:
    """Add the ``blox data`` group: ``download``, ``import``, ``info``, ``verify``, ``query``."""
    group = typer.Typer(help="Benchmark data: download, import, inspect, query.", no_args_is_help=True)
    group.command("download")(download)
    group.command("import")(import_)
    group.command("info")(info)
    group.command("verify")(verify)
    group.command("query")(query)
    app.add_typer(group, name="data")
