"""Writer for the official BLOX release file formats, and realistic synthetic releases.

The official files are not on these machines, so importer tests and
benchmarks write files in the exact official layout with :func:`write_release_file`
(the inverse of :func:`blox_env.datasets.release.reader.read_release_file`) and
:func:`synthetic_release`. The header every file gets::

    ---
    version: 1
    search_space: &space {shape: [3, 2], nodes: 2, stages: 3, ops: [conv, mbconv, bconv]}
    dataset_type: training            # static | env | benchmarking for info | env | bench
    columns: [model_hash, val_top1, test_top1, train_time_s]
    seed: 0                           # training and env files
    epochs: 200                       # training files
    dataset: "cifar100"               # training files
    part: base                        # training files: base | ext
    format: custom                    # pickle | csv | custom
    column_types:                     # custom only
      model_hash: "hash"
      ...
    ---

``search_space`` describes the space (``shape`` = stages x searchable ops per
block, ``nodes`` = ops per block); it carries an anchor, as the official headers
do, and readers only require it to be a mapping. Values are written as given
to ``pickle``/``csv`` (accuracies are expected as percentages rounded to 3
decimals, losses to 6); ``custom`` quantises accuracies to image counts
``round(value * N / 100)`` and floats to micro-units, raising
:class:`~blox_env.errors.ReleaseFormatError` for values outside what the format
can hold (accuracy outside 0..100, floats outside 0..16.777215, ints outside
u32, lists longer than 255). ``custom`` payloads follow the original BLOX writer bit
for bit, ``total_bits`` count included, so they load in the original reader.
Files are written atomically (temp file + rename).
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.costs import macs_table, params_table
from blox_env.datasets.release.codec import encode_custom
from blox_env.datasets.release.header import (
    COLUMN_ROLES,
    FORMAT_EXTENSIONS,
    KIND_COLUMNS,
    KIND_DATASET_TYPES,
    LIST_ROLES,
)
from blox_env.datasets.release.types import (
    MODEL_HASH,
    ColumnType,
    accuracy_denominator,
    accuracy_values,
    arch_codes,
    codes_to_vecs,
    fit_accuracy_type,
    list_matrix,
    quantise_accuracy,
    release_error,
)
from blox_env.errors import InvalidArgumentError
from blox_env.hashes import all_hashes
from blox_env.space import BLOCKS, N_MODELS, indices_to_blocks

__all__ = ["KINDS", "SEARCH_SPACE_YAML", "release_file_name", "synthetic_release", "write_release_file"]

KINDS: tuple[str, ...] = ("info", "base", "ext", "env", "bench")
SEARCH_SPACE_YAML = "search_space: &space {shape: [3, 2], nodes: 2, stages: 3, ops: [conv, mbconv, bconv]}"


def _check_choice(value: Any, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise InvalidArgumentError(f"{what} = {value!r}: allowed {', '.join(allowed)}")
    return value


def release_file_name(kind: str, *, seed: int | None = None, device: str | None = None, fmt: str) -> str:
    """Official file name, e.g. ``blox-base-0.blox``, ``blox-info.csv``, ``blox-bench-cpu.pickle``."""
    _check_choice(kind, KINDS, "kind")
    ext = FORMAT_EXTENSIONS[_check_choice(fmt, tuple(FORMAT_EXTENSIONS), "fmt")]
    if kind == "info":
        return f"blox-info.{ext}"
    if kind == "bench":
        if not isinstance(device, str) or not device or "/" in device or device.endswith(".part"):
            raise InvalidArgumentError(f"a bench file needs a device name (no '/'), got {device!r}")
        return f"blox-bench-{device}.{ext}"
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InvalidArgumentError(f"a {kind} file needs an integer seed >= 0, got {seed!r}")
    return f"blox-{kind}-{seed}.{ext}"


def _normalise(kind: str, columns: dict, path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Check the caller's columns and bring them to one representation per role."""
    names = KIND_COLUMNS[kind]
    if set(columns) != set(names):
        missing, extra = sorted(set(names) - set(columns)), sorted(set(columns) - set(names))
        raise InvalidArgumentError(f"a {kind} file has columns {list(names)}; missing {missing}, unexpected {extra}")
    out: dict[str, Any] = {}
    lengths: dict[str, np.ndarray] = {}
    for name in names:
        role, values = COLUMN_ROLES[name], columns[name]
        if role in ("hash", "str"):
            values = [v.item() if isinstance(v, np.generic) else v for v in values]
            for r, v in enumerate(values):
                if not isinstance(v, str) or (role == "hash" and not MODEL_HASH.fullmatch(v)):
                    raise release_error(path, f"expected {'a 32-hex-digit hash' if role == 'hash' else 'a string'}, "
                                              f"got {v!r}", row=r, column=name)
            out[name] = [v.lower() for v in values] if role == "hash" else values
        elif role in LIST_ROLES:
            out[name], lengths[name] = list_matrix(values, name, path)
        elif role == "arch":
            out[name] = arch_codes(list(values), name, path)
        else:
            arr = np.asarray(values)
            if arr.ndim != 1 or arr.dtype.kind not in "iuf" or not np.isfinite(arr).all():
                raise release_error(path, "expected a 1-D sequence of finite numbers", column=name)
            if role == "int" and (arr != np.round(arr)).any():
                raise release_error(path, "expected integers", row=int(np.argmax(arr != np.round(arr))), column=name)
            out[name] = arr.astype(np.int64 if role == "int" else np.float64)
    sizes = {name: len(v) for name, v in out.items()}
    if len(set(sizes.values())) > 1:
        raise InvalidArgumentError(f"all columns need the same number of rows, got {sizes}")
    return out, lengths


def _python_columns(names: Sequence[str], cols: dict[str, Any], lengths: dict[str, np.ndarray]) -> list[list]:
    """Columns as plain Python values (lists per epoch trimmed to each row's length) for pickle/csv."""
    out = []
    for name in names:
        v, role = cols[name], COLUMN_ROLES[name]
        if role in LIST_ROLES:
            lens = lengths[name]
            rows = v.tolist()
            out.append(rows if (lens == v.shape[1]).all() else [r[:n] for r, n in zip(rows, lens.tolist())])
        elif role == "arch":
            out.append(codes_to_vecs(v))
        else:
            out.append(v.tolist() if isinstance(v, np.ndarray) else list(v))
    return out


def _header(kind: str, names: Sequence[str], fmt: str, *, seed: int | None, epochs: int | None, dataset: str,
            device: str | None, version: int, types: list[ColumnType] | None) -> bytes:
    q = json.dumps  # a JSON string is a valid double-quoted YAML scalar
    lines = ["---", f"version: {version}", SEARCH_SPACE_YAML, f"dataset_type: {KIND_DATASET_TYPES[kind]}",
             f"columns: [{', '.join(names)}]"]
    if kind in ("base", "ext"):
        lines += [f"seed: {seed}", f"epochs: {epochs}", f"dataset: {q(dataset)}", f"part: {kind}"]
    elif kind == "env" and seed is not None:
        lines.append(f"seed: {seed}")
    elif kind == "bench":
        lines.append(f"device: {q(device)}")
    lines.append(f"format: {fmt}")
    if types is not None:
        lines += ["column_types:", *(f"  {n}: {q(str(t))}" for n, t in zip(names, types))]
    return ("\n".join(lines) + "\n---\n").encode("utf-8")


def _custom_payload(names: Sequence[str], cols: dict[str, Any], lengths: dict[str, np.ndarray],
                    path: Path) -> tuple[bytes, list[ColumnType]]:
    types, values = [], dict(cols)
    for name in names:
        role = COLUMN_ROLES[name]
        if role in ("acc", "acc_list"):
            values[name] = quantise_accuracy(cols[name], name, path)
            types.append(fit_accuracy_type(values[name], is_list=role == "acc_list"))
        else:
            base = {"loss_list": "float", "loss": "float", "seconds": "float"}.get(role, role)
            types.append(ColumnType(base, role in LIST_ROLES))
    return encode_custom(names, types, values, lengths, path), types


def write_release_file(path: str | Path, *, kind: str, columns: dict, fmt: str, seed: int | None = None,
                       epochs: int | None = None, dataset: str = "cifar100", device: str | None = None,
                       version: int = 1) -> Path:
    """Write one release file in the official format; returns its path.

    ``columns`` maps every column of ``kind`` (see ``KIND_COLUMNS``) to its values:
    hashes and strings as sequences of str, per-epoch columns as ``(N, E)`` arrays
    (trailing NaN = a shorter list) or sequences of lists, scalars as 1-D
    sequences, ``arch_vec`` as raw arch vectors. Training files need ``seed``
    (``epochs`` defaults to the longest list); bench files need ``device``.
    """
    p = Path(path)
    _check_choice(kind, KINDS, "kind")
    _check_choice(fmt, tuple(FORMAT_EXTENSIONS), "fmt")
    if kind in ("base", "ext", "bench") or (kind == "env" and seed is not None):
        release_file_name(kind, seed=seed, device=device, fmt=fmt)  # validates seed / device
    names = KIND_COLUMNS[kind]
    cols, lengths = _normalise(kind, columns, p)
    if kind in ("base", "ext"):
        longest = max((int(v.max(initial=0)) for v in lengths.values()), default=0)
        epochs = max(1, longest) if epochs is None else epochs
        if not isinstance(epochs, int) or epochs < max(1, longest):
            raise InvalidArgumentError(f"epochs = {epochs!r} must be an int >= the longest list ({longest})")
    types = None
    if fmt == "custom":
        payload, types = _custom_payload(names, cols, lengths, p)
    elif fmt == "pickle":
        payload = pickle.dumps([list(r) for r in zip(*_python_columns(names, cols, lengths))], protocol=4)
    else:
        pycols = _python_columns(names, cols, lengths)
        for j, name in enumerate(names):
            if COLUMN_ROLES[name] in (*LIST_ROLES, "arch"):
                pycols[j] = [str(v) for v in pycols[j]]  # Python list literal, e.g. [12.34, 13.5]
        buf = io.StringIO(newline="")
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(zip(*pycols))
        payload = buf.getvalue().encode("utf-8")
    header = _header(kind, names, fmt, seed=seed, epochs=epochs, dataset=dataset, device=device, version=version,
                     types=types)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(header)
            fh.write(payload)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


# --------------------------------------------------------------------------- synthetic releases

_ENV = {
    "codebase_commit": "3f1c0e9a7b5d2c4e6f8a0b1c2d3e4f5a6b7c8d9e", "codebase_version": "1.0.0", "cuda": "10.2",
    "driver": "440.64.00", "platform": "Linux-4.15.0-101-generic-x86_64-with-glibc2.10", "ptflops_version": "0.6.2",
    "python": "3.7.6", "torch_commit": "b31f58de6fa8bbda5353b3c77d9be4914399724d", "torch_cuda_version": "10.2",
    "torch_version": "1.5.0", "torchvision_version": "0.6.0",
}
_GPUS = ("Tesla V100-SXM2-32GB", "GeForce RTX 2080 Ti")


def _accuracy(x: np.ndarray, column: str) -> np.ndarray:
    """Percentages -> what a real evaluation gives: an image count over N, as a percentage rounded to 3 decimals."""
    n = accuracy_denominator(column)
    return accuracy_values(np.clip(np.rint(x * n / 100), 0, n), n)


def _micro(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip to ``[lo, hi]`` and round to 6 decimals exactly as the custom format stores floats."""
    return np.rint(np.clip(x, lo, hi) * 1e6) / 1e6


def _training_run(rng: np.random.Generator, quality: np.ndarray, size: np.ndarray, macs: np.ndarray,
                  epochs: int) -> dict[str, np.ndarray]:
    """Base and ext columns of one seed: curves rising with epochs, realistic CIFAR-100 levels."""
    n = len(quality)
    progress = 1 - np.exp(-np.arange(1, epochs + 1) / (epochs / rng.uniform(4, 6, (n, 1))))
    noise = rng.standard_normal((n, epochs)) * (1 - 0.7 * progress)
    final_val = np.clip(62 + 6 * quality + rng.normal(0, 0.6, n), 40, 80)[:, None]
    val = final_val * (0.3 + 0.7 * progress) + 0.8 * noise
    final_train = np.clip(final_val + 14 + 4 * size[:, None], 50, 99.5)
    train = final_train * (0.2 + 0.8 * progress) + 0.5 * noise
    loss_floor = np.clip(2.2 - final_train / 50, 0.5, 1.5)
    cols = {
        "val_top1": _accuracy(val, "val_top1"),
        "test_top1": _accuracy(np.clip(val[:, -1] + rng.normal(0, 0.5, n), 40, 80), "test_top1"),
        "train_time_s": np.rint(macs / 1e8 * 1200 * epochs / 200 * rng.uniform(0.9, 1.1, n)).astype(np.int64) + 1,
        "train_top1": _accuracy(train, "train_top1"),
        "train_top5": _accuracy(train + (100 - train) * 0.6, "train_top5"),
        "val_top5": _accuracy(val + (100 - val) * 0.55, "val_top5"),
        "train_loss": _micro(4.6 * (1 - progress) + loss_floor * progress + 0.02 * noise, 0.5, 4.6),
    }
    val_loss = 4.6 * (1 - progress) + (loss_floor + 0.7) * progress + 0.2 * progress**4 + 0.03 * noise
    cols["val_loss"] = _micro(val_loss, 0.5, 4.6)
    cols["test_loss"] = _micro(val_loss[:, -1] + rng.normal(0, 0.03, n), 0.5, 4.6)
    cols["test_top5"] = _accuracy(cols["val_top5"][:, -1] + rng.normal(0, 0.4, n), "test_top5")
    return cols


def synthetic_release(folder: str | Path, *, n_models: int, epochs: int, seeds: Sequence[int] = (0,), fmt: str,
                      rng_seed: int = 0, kinds: Sequence[str] = KINDS, devices: Sequence[str] = ("cpu",)
                      ) -> list[Path]:
    """Write a realistic synthetic release (official names and formats) into ``folder``; returns the paths.

    ``n_models`` distinct real models of the space (all 91,125 for a full
    release) with their real hashes, params, MACs and arch vectors; accuracy
    curves are image counts over N rising with epochs (val/test top-1 in about
    40..80%), losses in 0.5..4.6, ``train_time_s`` ints scaling with MACs,
    latencies in seconds (0.004..0.03). Data depend only on ``rng_seed``, the
    seed/device and ``n_models``/``epochs`` (not on ``fmt`` or the other kinds),
    so the same call in two formats writes the same values. Rows of each file are
    in a random order, as nothing in the official format promises an order.
    """
    if not isinstance(n_models, int) or not 1 <= n_models <= N_MODELS:
        raise InvalidArgumentError(f"n_models = {n_models!r}: allowed 1..{N_MODELS}")
    if not isinstance(epochs, int) or not 1 <= epochs <= 255:
        raise InvalidArgumentError(f"epochs = {epochs!r}: allowed 1..255 (a list holds at most 255 values)")
    for kind in kinds:
        _check_choice(kind, KINDS, "kind")
    folder = Path(folder)
    rng = np.random.default_rng([rng_seed, 0])
    index = np.sort(rng.choice(N_MODELS, n_models, replace=False))
    hashes = all_hashes()[index]
    params, macs = params_table()[index], macs_table()[index]
    size = (np.log(params) - np.log(params).mean()) / (np.log(params).std() or 1.0)
    quality = 0.5 * size + 0.85 * rng.standard_normal(n_models)
    written = []

    def emit(kind: str, cols: dict[str, Any], file_rng: np.random.Generator, **meta: Any) -> None:
        order = file_rng.permutation(n_models)
        rows = {k: (v[order] if isinstance(v, np.ndarray) else [v[i] for i in order.tolist()]) for k, v in cols.items()}
        name = release_file_name(kind, seed=meta.get("seed"), device=meta.get("device"), fmt=fmt)
        written.append(write_release_file(folder / name, kind=kind, columns=rows, fmt=fmt, **meta))

    if "info" in kinds:
        codes = np.asarray(BLOCKS, dtype=np.int64)[indices_to_blocks(index)]
        emit("info", {"model_hash": hashes, "params": params, "flops": macs, "arch_vec": codes_to_vecs(codes)},
             np.random.default_rng([rng_seed, 1]))
    for seed in seeds:
        run_rng = np.random.default_rng([rng_seed, 2, seed])
        if "base" in kinds or "ext" in kinds:
            run = _training_run(run_rng, quality, size, macs, epochs)
            for kind in ("base", "ext"):
                if kind in kinds:
                    cols = {c: (hashes if c == "model_hash" else run[c]) for c in KIND_COLUMNS[kind]}
                    emit(kind, cols, run_rng, seed=seed, epochs=epochs)
        if "env" in kinds:
            gpu = np.asarray(_GPUS)[run_rng.integers(0, len(_GPUS), n_models)]
            cols = {"model_hash": hashes, "gpu": gpu, **{c: [v] * n_models for c, v in _ENV.items()}}
            emit("env", cols, run_rng, seed=seed)
    for d, device in enumerate(devices):
        dev_rng = np.random.default_rng([rng_seed, 3, d])
        lo, hi = (0.01, 0.03) if "cpu" in device.lower() else (0.004, 0.012)
        scale = (macs - macs.min()) / (np.ptp(macs) or 1.0)
        noise = 1 + 0.03 * dev_rng.standard_normal(n_models)  # measurement noise, about 3%
        latency = _micro((lo + (hi - lo) * scale) * noise, lo * 0.9, hi * 1.1)
        emit("bench", {"model_hash": hashes, "latency": latency}, dev_rng, device=device)
    return written

