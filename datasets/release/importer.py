"""Import an official BLOX release folder into a :class:`BloxStore`.

One file per kind and seed/device is used (``.blox`` preferred, then
``.pickle``, then ``.csv``; all three formats import to identical stores).
Rows are the models of ``blox-info`` when present, else the union of the base
files. Every value goes through the store's exact encodings (accuracies as
image counts, losses as micro-units), and a value that does not fit them is a
format error, not a silent rounding. The store is built in a temporary
sibling folder and moved into place only when complete, so a failed import
leaves nothing behind; what a killed import left (its temporary sibling) is
removed by the next import to the same output, with a message, and nothing
else is ever touched. ``overwrite`` replaces only a blox store (or an empty
folder), never the release folder itself or a folder containing it.

A release is complete when every file has a row for each of the 91,125 models
(and every training seed has each kind of file the others have). Anything
less is refused with :class:`PartialReleaseError` unless ``allow_partial``;
the store always records the coverage in ``attrs["coverage"]`` and the size
and sha256 of every source file in ``attrs["provenance"]["files"]``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.datasets.release.header import find_release_files, read_release_header
from blox_env.datasets.release.reader import ReleaseFile, read_release_file
from blox_env.datasets.store.core import BloxStore
from blox_env.datasets.store.encoding import Encoding
from blox_env.datasets.store.location import (
    atomic_directory,
    clean_stale_temporaries,
    commit_directory,
    default_store_path,
    discard_directory,
)
from blox_env.datasets.store.schema import CURVE_METRICS, ENV_COLUMNS, FINAL_METRICS, is_accuracy
from blox_env.datasets.store.write import FLOPS_OFFICIAL
from blox_env.errors import PartialReleaseError, ReleaseFormatError, StoreError, StoreNotFoundError
from blox_env.hashes import hash_to_index
from blox_env.progress import ProgressBar
from blox_env.space import N_MODELS

__all__ = ["ORIGINAL_PROTOCOL", "import_release", "metric_encoding"]

_log = logging.getLogger(__name__)

#: The original benchmark's training protocol (recorded in the run's attributes).
ORIGINAL_PROTOCOL: dict[str, Any] = {
    "optimizer": "SGD", "lr": 0.01, "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4,
    "schedule": "cosine, stepped per epoch", "batch_size": 256, "eval_batch_size": 100, "loss": "cross-entropy",
    "augmentation": "RandAugment(2, 14), hflip 0.5, random crop 32 pad 4, normalise, cutout 1x16",
    "split": "train permuted with numpy seed 0: first 45,000 train, last 5,000 val; 10,000 test",
}
_PREFERENCE = ("blox", "pickle", "csv")
_ALLOW = ("pass allow_partial=True (`blox data import --allow-partial`) to import it anyway, with the coverage "
          "recorded in the store's attrs['coverage']")


def metric_encoding(metric: str) -> Encoding:
    """The exact encoding of a release column: counts for accuracies, micro-units for losses."""
    curve = metric in CURVE_METRICS
    if is_accuracy(metric):
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
                   overwrite: bool = False, progress: bool = True, prefer: Sequence[str] = _PREFERENCE,
                   allow_partial: bool = False, report: Callable[[str], None] | None = None) -> Path:
    """Import every recognised release file of ``folder`` into a new store; returns its path.

    ``report`` receives one line per notable action (stale temporaries removed, a partial import);
    by default they go to this module's logger as warnings.
    """
    say = report or _log.warning
    src = Path(folder).expanduser()
    if not src.is_dir():
        raise StoreNotFoundError(f"release folder {src} does not exist")
    files = _choose(src, tuple(prefer))
    if not any(f.kind == "base" for f in files):
        raise ReleaseFormatError(
            f"{src}: no blox-base-<seed> file (.blox, .pickle or .csv) found; found {[f.path.name for f in files]}"
        )
    final = Path(out).expanduser() if out is not None else default_store_path()
    for message in clean_stale_temporaries(final):
        say(message)
    tmp = atomic_directory(final, overwrite=overwrite, protect=(src,))
    try:
        coverage = _build(files, tmp, progress=progress, allow_partial=allow_partial)
        commit_directory(tmp, final)
    except BaseException:
        discard_directory(tmp)
        raise
    if not coverage["complete"]:
        short = [f"{e['file']} ({e['rows']:,} of {e['expected']:,})" for e in coverage["files"] if e["missing"]]
        say(f"partial release imported into {final}: {', '.join(short[:6])}{' ...' if len(short) > 6 else ''}; "
            "coverage recorded in the store's attrs['coverage']")
    return final


class _Coverage:
    """Models covered by each file against the full space; refuses a partial release unless allowed."""

    def __init__(self, *, allow_partial: bool) -> None:
        self.allow = allow_partial
        self.files: list[dict[str, Any]] = []

    def absent_files(self, files: list[Any], seeds: list[int]) -> None:
        """A seed lacking a base/ext/env file that other seeds have is a partial release."""
        for kind in ("base", "ext", "env"):
            have = {int(f.seed) for f in files if f.kind == kind and f.seed is not None}
            for seed in sorted(set(seeds) - have) if have else []:
                name = f"blox-{kind}-{seed}"
                self.files.append({"file": name, "kind": kind, "seed": seed, "present": False, "rows": 0,
                                   "expected": N_MODELS, "missing": N_MODELS})
                if not self.allow:
                    raise PartialReleaseError(
                        f"{name}.(blox|pickle|csv) is missing: the release has {kind} files for seeds "
                        f"{sorted(have)} but trains seeds {seeds}; {_ALLOW}"
                    )

    def add(self, f: Any, found: int, release_models: int) -> None:
        """Record that file ``f`` has rows for ``found`` distinct models (the reader refuses duplicates)."""
        entry: dict[str, Any] = {"file": f.path.name, "kind": f.kind, "present": True, "rows": found,
                                 "expected": N_MODELS, "missing": N_MODELS - found}
        if f.seed is not None:
            entry["seed"] = int(f.seed)
        if f.device is not None:
            entry["device"] = str(f.device)
        self.files.append(entry)
        if found < N_MODELS and not self.allow:
            elsewhere = release_models - found
            raise PartialReleaseError(
                f"{f.path.name}: rows for {found:,} of the {N_MODELS:,} models of the BLOX space "
                f"({N_MODELS - found:,} missing"
                + (f", {elsewhere:,} of them present in other files of this release" if elsewhere > 0 else "")
                + "): a complete release has every model in every file, so this file is truncated or the "
                f"release partial; re-download it, or {_ALLOW}"
            )

    def attrs(self, n: int) -> dict[str, Any]:
        """The ``coverage`` attribute of the store."""
        return {"complete": all(e["missing"] == 0 for e in self.files), "models": n, "space_models": N_MODELS,
                "files": self.files}


def _build(files: list[Any], tmp: Path, *, progress: bool, allow_partial: bool) -> dict[str, Any]:
    """Write the store into ``tmp``; returns the coverage record."""
    bar = _Progress(len(files), enabled=progress)
    try:
        return _build_files(files, tmp, bar, allow_partial=allow_partial)
    finally:
        bar.close()


def _build_files(files: list[Any], tmp: Path, bar: _Progress, *, allow_partial: bool) -> dict[str, Any]:
    headers = {f.path: read_release_header(f.path) for f in files}
    train = [f for f in files if f.kind in ("base", "ext")]
    epochs = {headers[f.path].epochs for f in train}
    datasets = {headers[f.path].dataset for f in train}
    if len(epochs) != 1 or len(datasets) != 1:
        raise ReleaseFormatError(f"training files disagree: epochs {sorted(epochs)}, datasets {sorted(datasets)}")
    n_epochs, dataset = int(epochs.pop()), str(datasets.pop())
    seeds = sorted({int(f.seed) for f in train})
    info_file = next((f for f in files if f.kind == "info"), None)
    coverage = _Coverage(allow_partial=allow_partial)
    coverage.absent_files(files, seeds)
    sources = {f.path: _source(f, headers[f.path]) for f in files}

    loaded: dict[Any, ReleaseFile] = {}
    if info_file is not None:
        info = _read(info_file, sources)
        indices = np.array([hash_to_index(h) for h in info.columns["model_hash"]], dtype=np.int64)
        bar.advance(info_file.path.name)
    else:
        info = None
        for f in files:
            if f.kind == "base":
                loaded[f.path] = _read(f, sources)
                bar.advance(f.path.name)
        indices = np.array(sorted({hash_to_index(h) for rf in loaded.values() for h in rf.columns["model_hash"]}),
                           dtype=np.int64)
    order = np.argsort(indices)
    index = indices[order]
    lookup = {int(i): r for r, i in enumerate(index.tolist())}
    n = len(index)
    if n == 0:
        names = [f.path.name for f in files if f.kind in ("info", "base")]
        raise ReleaseFormatError(f"{', '.join(names)}: a header and no rows, so the release has no models to import")
    if info_file is not None:
        coverage.add(info_file, n, n)

    store = BloxStore.create(tmp, index=index, name=f"blox-{dataset}", overwrite=True)
    if info is not None:
        store.write_static(params=np.asarray(info.columns["params"])[order],
                           flops=np.asarray(info.columns["flops"])[order], flops_counting=FLOPS_OFFICIAL)
    store.create_run(dataset, seeds=seeds, epochs=n_epochs,
                     attrs={"dataset": dataset, "hyperparameters": ORIGINAL_PROTOCOL, "source": "official release"})
    allocated: set[str] = set()
    env: dict[str, list[list[str]]] = {}
    env_seeds: list[int] = []
    for f in files:
        if f.kind == "info":
            continue
        rf = loaded.pop(f.path, None) or _read(f, sources)
        if f.path.name not in bar.done:
            bar.advance(f.path.name)
        rows = _rows_of(rf, lookup)
        coverage.add(f, len(rows), n)
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
        "files": [{k: v for k, v in sources[f.path].items() if k != "_stat"} for f in files],
    }, coverage=coverage.attrs(n))
    store.close()
    return coverage.attrs(n)


def _source(f: Any, header: Any) -> dict[str, Any]:
    """Provenance of one source file: name, size, sha256 (plus its stat, to detect a change while importing)."""
    digest = hashlib.sha256()
    with f.path.open("rb") as fh:
        st = os.fstat(fh.fileno())
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"name": f.path.name, "bytes": st.st_size, "sha256": digest.hexdigest(), "format": header.format,
            "version": header.version, "kind": f.kind, "_stat": (st.st_size, st.st_mtime_ns)}


def _read(f: Any, sources: dict[Path, dict[str, Any]]) -> ReleaseFile:
    """Read a release file, refusing it when it changed after its sha256 was taken."""
    rf = read_release_file(f.path)
    st = f.path.stat()
    if sources[f.path]["_stat"] != (st.st_size, st.st_mtime_ns):
        raise ReleaseFormatError(f"{f.path.name}: the file changed while it was being imported; import it again")
    return rf


def _version() -> str:
    """The installed blox-env, from its package metadata (importing ``blox_env`` would pull in the envs)."""
    from importlib.metadata import version

    return f"blox-env {version('blox-env')}"


class _Progress:
    """The release files imported so far, and a bar over them (silent when disabled)."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.done: set[Any] = set()
        self._bar = ProgressBar(total, description="importing release files", enabled=enabled)

    def advance(self, name: str) -> None:
        self.done.add(name)
        self._bar.update(description=f"imported {name}")

    def close(self) -> None:
        self._bar.close()
