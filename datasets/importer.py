"""Import an official BLOX release folder into a :class:`BloxStore`.

One file per kind and seed/device is used (``.blox`` preferred, then
``.pickle``, then ``.csv``; all three formats import to identical stores).
Rows are the models of ``blox-info`` when present, else the union of the base
files. Every value goes through the store's exact encodings (accuracies as
image counts, losses as micro-units), and a value that does not fit them is a
format error, not a silent rounding. The store is built in a temporary
sibling folder and moved into place only when complete, so a failed import
leaves nothing behind.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.datasets.encoding import Encoding
from blox_env.datasets.location import atomic_directory, commit_directory, default_store_path
from blox_env.datasets.release import ReleaseFile, find_release_files, read_release_file, read_release_header
from blox_env.datasets.schema import CURVE_METRICS, ENV_COLUMNS, FINAL_METRICS
from blox_env.datasets.store import BloxStore
from blox_env.errors import ReleaseFormatError, StoreError, StoreNotFoundError
from blox_env.hashes import hash_to_index

__all__ = ["ORIGINAL_PROTOCOL", "import_release", "metric_encoding"]

#: The original benchmark's training protocol (recorded in the run's attributes).
ORIGINAL_PROTOCOL: dict[str, Any] = {
    "optimizer": "SGD", "lr": 0.01, "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4,
    "schedule": "cosine, stepped per epoch", "batch_size": 256, "eval_batch_size": 100, "loss": "cross-entropy",
    "augmentation": "RandAugment(2, 14), hflip 0.5, random crop 32 pad 4, normalise, cutout 1x16",
    "split": "train permuted with numpy seed 0: first 45,000 train, last 5,000 val; 10,000 test",
}
_PREFERENCE = ("blox", "pickle", "csv")


def metric_encoding(metric: str) -> Encoding:
    """The exact encoding of a release column: counts for accuracies, micro-units for losses."""
    curve = metric in CURVE_METRICS
    if "top1" in metric or "top5" in metric:
        n = 45_000 if "train" in metric else 5_000 if "val" in metric else 10_000
        return Encoding("count", "uint16", denominator=n, delta=curve)
    if metric == "train_time_s":
        return Encoding("fixed", "uint32", denominator=1)
    return Encoding("fixed", "uint32", denominator=1_000_000, delta=curve)


def _choose(folder: Path, prefer: Sequence[str]) -> list[Any]:
    chosen: dict[tuple[str, Any], Any] = {}
    for f in find_release_files(folder):
        key = (f.kind, f.seed if f.kind in ("base", "ext", "env") else f.device)
        if f.ext not in prefer:
            continue
        if key not in chosen or prefer.index(f.ext) < prefer.index(chosen[key].ext):
            chosen[key] = f
    return sorted(chosen.values(), key=lambda f: (f.kind, str(f.seed), str(f.device)))


def _rows_of(rf: ReleaseFile, lookup: dict[int, int]) -> np.ndarray:
    """Store rows of a file's models (every model must be a row)."""
    rows = np.empty(len(rf.columns["model_hash"]), dtype=np.int64)
    for k, h in enumerate(rf.columns["model_hash"]):
        row = lookup.get(hash_to_index(h))
        if row is None:
            raise ReleaseFormatError(f"{rf.path.name}: row {k}, column model_hash: model {h} is not in blox-info")
        rows[k] = row
    return rows


def _scatter(values: Any, rows: np.ndarray, n: int, epochs: int | None) -> np.ndarray:
    out = np.full((n, epochs) if epochs else (n,), np.nan)
    v = np.asarray(values, dtype=np.float64)
    if epochs and v.shape[1] != epochs:
        width = min(v.shape[1], epochs)
        out[rows, :width] = v[:, :width]
    else:
        out[rows] = v
    return out


def import_release(folder: str | os.PathLike[str], *, out: str | os.PathLike[str] | None = None,
                   overwrite: bool = False, progress: bool = True, prefer: Sequence[str] = _PREFERENCE) -> Path:
    """Import every recognised release file of ``folder`` into a new store; returns its path."""
    src = Path(folder).expanduser()
    if not src.is_dir():
        raise StoreNotFoundError(f"release folder {src} does not exist")
    files = _choose(src, tuple(prefer))
    if not any(f.kind == "base" for f in files):
        raise ReleaseFormatError(
            f"{src}: no blox-base-<seed> file (.blox, .pickle or .csv) found; found {[f.path.name for f in files]}"
        )
    final = Path(out).expanduser() if out is not None else default_store_path()
    tmp = atomic_directory(final, overwrite=overwrite)
    try:
        _build(files, tmp, progress=progress)
        commit_directory(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _build(files: list[Any], tmp: Path, *, progress: bool) -> None:
    headers = {f.path: read_release_header(f.path) for f in files}
    train = [f for f in files if f.kind in ("base", "ext")]
    epochs = {headers[f.path].epochs for f in train}
    datasets = {headers[f.path].dataset for f in train}
    if len(epochs) != 1 or len(datasets) != 1:
        raise ReleaseFormatError(f"training files disagree: epochs {sorted(epochs)}, datasets {sorted(datasets)}")
    n_epochs, dataset = int(epochs.pop()), str(datasets.pop())
    seeds = sorted({int(f.seed) for f in train})
    info_file = next((f for f in files if f.kind == "info"), None)

    bar = _Progress(len(files), enabled=progress)
    loaded: dict[Any, ReleaseFile] = {}
    if info_file is not None:
        info = read_release_file(info_file.path)
        indices = np.array([hash_to_index(h) for h in info.columns["model_hash"]], dtype=np.int64)
        bar.advance(info_file.path.name)
    else:
        info = None
        for f in files:
            if f.kind == "base":
                loaded[f.path] = read_release_file(f.path)
                bar.advance(f.path.name)
        indices = np.array(sorted({hash_to_index(h) for rf in loaded.values() for h in rf.columns["model_hash"]}))
    order = np.argsort(indices)
    index = indices[order]
    lookup = {int(i): r for r, i in enumerate(index.tolist())}
    n = len(index)

    store = BloxStore.create(tmp, index=index, name=f"blox-{dataset}", overwrite=True)
    if info is not None:
        store.write_static(params=np.asarray(info.columns["params"])[order],
                           flops=np.asarray(info.columns["flops"])[order])
    store.create_run(dataset, seeds=seeds, epochs=n_epochs,
                     attrs={"dataset": dataset, "hyperparameters": ORIGINAL_PROTOCOL, "source": "official release"})
    allocated: set[str] = set()
    env: dict[str, list[list[str]]] = {}
    env_seeds: list[int] = []
    sources = []
    for f in files:
        if f.kind == "info":
            sources.append(_source(f, headers[f.path]))
            continue
        rf = loaded.pop(f.path, None) or read_release_file(f.path)
        if f.path.name not in bar.done:
            bar.advance(f.path.name)
        sources.append(_source(f, headers[f.path]))
        rows = _rows_of(rf, lookup)
        if f.kind in ("base", "ext"):
            for metric, values in rf.columns.items():
                if metric == "model_hash":
                    continue
                if metric not in CURVE_METRICS + FINAL_METRICS:
                    raise ReleaseFormatError(f"{f.path.name}: unexpected column {metric!r}")
                per_epoch = metric in CURVE_METRICS
                if metric not in allocated:
                    store.allocate_metric(dataset, metric, encoding=metric_encoding(metric), per_epoch=per_epoch)
                    allocated.add(metric)
                full = _scatter(values, rows, n, n_epochs if per_epoch else None)
                try:
                    store.write_seed(dataset, metric, full, seed=int(f.seed))
                except StoreError as exc:
                    raise ReleaseFormatError(f"{f.path.name}: column {metric}: {exc}") from exc
        elif f.kind == "env":
            env_seeds.append(int(f.seed))
            for col in ENV_COLUMNS:
                per_row = [""] * n
                for r, value in zip(rows.tolist(), rf.columns[col]):
                    per_row[r] = str(value)
                env.setdefault(col, []).append(per_row)
        elif f.kind == "bench":
            store.write_latency(str(f.device), _scatter(rf.columns["latency"], rows, n, None),
                                attrs={"source": f.path.name})
    if env:
        store.write_env(env, seeds=env_seeds)
    store.set_attrs(provenance={
        "source": "official BLOX release",
        "imported_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "imported_with": _version(),
        "files": sources,
    })
    store.close()
    bar.close()


def _source(f: Any, header: Any) -> dict[str, Any]:
    return {"name": f.path.name, "bytes": f.path.stat().st_size, "format": header.format,
            "version": header.version, "kind": f.kind}


def _version() -> str:
    from blox_env import __version__

    return f"blox-env {__version__}"


class _Progress:
    """A rich progress bar over release files (silent when disabled)."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.done: set[Any] = set()
        self._bar = None
        if enabled:
            from rich.progress import Progress

            self._bar = Progress(transient=True)
            self._bar.start()
            self._task = self._bar.add_task("importing release files", total=total)

    def advance(self, name: str) -> None:
        self.done.add(name)
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=f"imported {name}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
