"""Reader for the official BLOX release files (``.pickle``, ``.csv``, ``.blox``).

A release file is ``---`` / YAML header / ``---`` / payload. The header (read with
``yaml.safe_load``, so anchors and aliases work) names the format version (1),
the search space, the data set type, the columns and the payload format; the
payload holds one row per model. Five kinds exist, told apart by the header's
``dataset_type`` (and ``part`` for training files) and mirrored in the file
names ``blox-info``, ``blox-base-{seed}``, ``blox-ext-{seed}``, ``blox-env-{seed}``
and ``blox-bench-{device}``; see :data:`KIND_COLUMNS` for their columns.

Payloads: ``pickle`` is one pickled list of rows, unpickled by a restricted
unpickler that refuses every global (so a hostile file executes nothing);
``csv`` is CSV rows whose list columns are Python list literals, parsed without
``eval`` (an optional first row of column names and blank lines are skipped);
``custom`` is a zlib-compressed bit-packed table decoded with numpy (layout and
codec in :mod:`blox_env.datasets.release_codec`).

All three read to the same representation (:class:`ReleaseFile`.columns):
``model_hash`` -> list of lowercase hex str; per-epoch columns -> ``float64
(N, E)`` with ``E = max(header epochs, longest list)``, shorter rows padded with
NaN; float scalars -> ``float64 (N,)``; ``params``/``flops``/``train_time_s`` ->
``int64 (N,)``; env columns -> list of str; ``arch_vec`` -> list of raw arch
vectors ``[[[opA],[opB,prev,inp,sc]]] * 3``. Structure and types are always
checked; ``validate=True`` adds the semantic checks (see :func:`read_release_file`).
A recognised file name (see :func:`find_release_files`) must agree with the
header. Every malformed input raises :class:`~blox_env.errors.ReleaseFormatError`
naming the file and, where it applies, the 0-based data row and the column.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml

from blox_env.datasets.release_codec import (
    ColumnType,
    accuracy_denominator,
    accuracy_values,
    arch_codes,
    codes_to_vecs,
    decode_custom,
    list_matrix,
    parse_column_type,
    release_error,
)
from blox_env.errors import ArchitectureNotFoundError, ReleaseFormatError
from blox_env.hashes import all_hashes, hash_to_index
from blox_env.space import RAW_TO_BLOCK, blocks_to_indices

__all__ = [
    "COLUMN_ROLES",
    "FORMAT_EXTENSIONS",
    "FORMAT_VERSION",
    "KIND_COLUMNS",
    "KIND_DATASET_TYPES",
    "ColumnType",
    "ReleaseFile",
    "ReleaseFileName",
    "ReleaseHeader",
    "accuracy_denominator",
    "accuracy_values",
    "find_release_files",
    "parse_column_type",
    "parse_release_file_name",
    "read_release_file",
    "read_release_header",
]

FORMAT_VERSION = 1
#: Header ``format`` -> file extension.
FORMAT_EXTENSIONS: dict[str, str] = {"pickle": "pickle", "csv": "csv", "custom": "blox"}
KIND_DATASET_TYPES: dict[str, str] = {
    "base": "training", "ext": "training", "info": "static", "env": "env", "bench": "benchmarking"}
ENV_COLUMNS: tuple[str, ...] = (
    "codebase_commit", "codebase_version", "cuda", "driver", "gpu", "platform", "ptflops_version",
    "python", "torch_commit", "torch_cuda_version", "torch_version", "torchvision_version")
#: Columns of each kind, in file order.
KIND_COLUMNS: dict[str, tuple[str, ...]] = {
    "base": ("model_hash", "val_top1", "test_top1", "train_time_s"),
    "ext": ("model_hash", "train_top1", "train_loss", "train_top5", "val_loss", "val_top5", "test_loss",
            "test_top5"),
    "info": ("model_hash", "params", "flops", "arch_vec"),
    "env": ("model_hash", *ENV_COLUMNS),
    "bench": ("model_hash", "latency"),
}
#: What each column holds: hash, acc_list / loss_list (per epoch), acc / loss / seconds (float), int, str, arch.
COLUMN_ROLES: dict[str, str] = {
    "model_hash": "hash", "val_top1": "acc_list", "train_top1": "acc_list", "train_top5": "acc_list",
    "val_top5": "acc_list", "train_loss": "loss_list", "val_loss": "loss_list", "test_top1": "acc",
    "test_top5": "acc", "test_loss": "loss", "latency": "seconds", "train_time_s": "int", "params": "int",
    "flops": "int", "arch_vec": "arch", **{c: "str" for c in ENV_COLUMNS},
}
_LIST_ROLES = ("acc_list", "loss_list")
_ALLOWED_TYPES = {  # role -> custom column types it may be stored as ("b" = b_{min}_{max}_{bits})
    "hash": {"hash"}, "acc_list": {"list[b]", "list[float]"}, "loss_list": {"list[float]"},
    "acc": {"b", "float"}, "loss": {"float"}, "seconds": {"float"}, "int": {"int"}, "str": {"str"},
    "arch": {"arch"},
}
_HEX = re.compile(r"[0-9a-fA-F]{32}")
_INT = re.compile(r"[+-]?\d+")
_DELIMS = (b"---\n", b"---\r\n", b"---")
_MAX_HEADER = 1 << 20
_NAME = re.compile(r"blox-(?:(info)|(base|ext|env)-(\d+)|(bench)-(.+))\.(pickle|csv|blox)")


# --------------------------------------------------------------------------- names and headers


class ReleaseFileName(NamedTuple):
    """A recognised release file: its path, kind, seed (base/ext/env), device (bench) and extension."""

    path: Path
    kind: str
    seed: int | None
    device: str | None
    ext: str


def parse_release_file_name(path: str | Path) -> ReleaseFileName | None:
    """Parse ``blox-{kind}[-{seed|device}].{pickle|csv|blox}``; ``None`` for any other name."""
    p = Path(path)
    m = _NAME.fullmatch(p.name)
    if m is None:
        return None
    info, kind, seed, bench, device, ext = m.groups()
    return ReleaseFileName(p, info or kind or bench, int(seed) if seed is not None else None, device, ext)


def find_release_files(folder: str | Path) -> list[ReleaseFileName]:
    """Release files directly inside ``folder``, sorted by name (other files, e.g. ``.part``, ignored)."""
    found = (parse_release_file_name(p) for p in sorted(Path(folder).iterdir()) if p.is_file())
    return [f for f in found if f is not None]


@dataclass(frozen=True)
class ReleaseHeader:
    """The parsed YAML header; ``raw`` keeps the whole mapping (extra fields included)."""

    version: int
    search_space: dict
    dataset_type: str
    columns: tuple[str, ...]
    format: str
    seed: int | None
    epochs: int | None
    dataset: str | None
    part: str | None
    device: str | None
    column_types: dict | None
    raw: dict

    @property
    def kind(self) -> str:
        """``info``, ``base``, ``ext``, ``env`` or ``bench``."""
        if self.dataset_type == "training":
            return str(self.part)
        return next(k for k, t in KIND_DATASET_TYPES.items() if t == self.dataset_type)


def _read_header_bytes(fh: io.BufferedIOBase, path: Path) -> bytes:
    if fh.readline(_MAX_HEADER) not in _DELIMS:
        raise release_error(path, "missing header delimiter: the file must start with a line '---'")
    lines, size = [], 0
    while True:
        line = fh.readline(_MAX_HEADER)
        if line in _DELIMS:
            return b"".join(lines)
        size += len(line)
        if not line or size > _MAX_HEADER:
            raise release_error(path, "missing header delimiter: no closing '---' line after the YAML header")
        lines.append(line)


def _need(raw: dict, key: str, ok: Any, what: str, path: Path) -> Any:
    if key not in raw:
        raise release_error(path, f"header field {key!r} is missing: expected {what}")
    if not ok(raw[key]):
        raise release_error(path, f"header field {key!r} = {raw[key]!r} is invalid: expected {what}")
    return raw[key]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_header(text: bytes, path: Path) -> ReleaseHeader:
    try:
        raw = yaml.safe_load(text.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise release_error(path, f"the header is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise release_error(path, "the header must be a YAML mapping")
    version = _need(raw, "version", _is_int, f"the integer {FORMAT_VERSION}", path)
    if version != FORMAT_VERSION:
        raise release_error(path, f"unknown format version {version!r}, supported: {FORMAT_VERSION}")
    space = _need(raw, "search_space", lambda v: isinstance(v, dict), "a mapping", path)
    dtype = _need(raw, "dataset_type", lambda v: v in KIND_DATASET_TYPES.values(),
                  "one of training, static, env, benchmarking", path)
    columns = tuple(_need(raw, "columns", lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
                          "a list of column names", path))
    fmt = _need(raw, "format", lambda v: v in FORMAT_EXTENSIONS, "one of pickle, csv, custom", path)
    seed = epochs = dataset = part = device = None
    if dtype == "training":
        seed = _need(raw, "seed", lambda v: _is_int(v) and v >= 0, "a seed >= 0", path)
        epochs = _need(raw, "epochs", lambda v: _is_int(v) and v >= 1, "an epoch count >= 1", path)
        dataset = _need(raw, "dataset", lambda v: isinstance(v, str) and v, "a data set name", path)
        part = _need(raw, "part", lambda v: v in ("base", "ext"), "base or ext", path)
    elif dtype == "env" and "seed" in raw:
        seed = _need(raw, "seed", lambda v: _is_int(v) and v >= 0, "a seed >= 0", path)
    elif dtype == "benchmarking":
        device = _need(raw, "device", lambda v: isinstance(v, str) and v, "a device name", path)
    kind = part if dtype == "training" else next(k for k, t in KIND_DATASET_TYPES.items() if t == dtype)
    if columns != KIND_COLUMNS[kind]:
        raise release_error(path, f"header columns {list(columns)} do not match a {kind} file: "
                                  f"expected {list(KIND_COLUMNS[kind])}")
    types = None
    if fmt == "custom":
        types = _need(raw, "column_types", lambda v: isinstance(v, dict) and set(v) == set(columns),
                      "a mapping from every column to its type", path)
        for col in columns:
            try:
                t = parse_column_type(types[col])
            except ReleaseFormatError as exc:
                raise release_error(path, str(exc), column=col) from None
            if t.family not in _ALLOWED_TYPES[COLUMN_ROLES[col]]:
                raise release_error(path, f"type {types[col]!r} cannot hold this column: allowed "
                                          f"{sorted(_ALLOWED_TYPES[COLUMN_ROLES[col]])}", column=col)
            if t.base == "b" and t.hi > accuracy_denominator(col):
                raise release_error(path, f"type {types[col]!r} allows counts above {accuracy_denominator(col)}",
                                    column=col)
    return ReleaseHeader(version, space, dtype, columns, fmt, seed, epochs, dataset, part, device, types, raw)


def _check_name(header: ReleaseHeader, path: Path) -> None:
    """A recognised file name must agree with the header (kind, seed, device, extension)."""
    name = parse_release_file_name(path)
    if name is None:
        return
    problems = []
    if name.kind != header.kind:
        problems.append(f"kind {name.kind!r} vs {header.kind!r}")
    if name.ext != FORMAT_EXTENSIONS[header.format]:
        problems.append(f"extension .{name.ext} vs format {header.format!r}")
    if name.seed is not None and header.seed is not None and name.seed != header.seed:
        problems.append(f"seed {name.seed} vs {header.seed}")
    if name.device is not None and name.device != header.device:
        problems.append(f"device {name.device!r} vs {header.device!r}")
    if problems:
        raise release_error(path, "the file name disagrees with the header: " + "; ".join(problems))


def read_release_header(path: str | Path) -> ReleaseHeader:
    """Parse only the YAML header of a release file (cheap: the payload is not read)."""
    p = Path(path)
    with p.open("rb") as fh:
        header = _parse_header(_read_header_bytes(fh, p), p)
    _check_name(header, p)
    return header


# --------------------------------------------------------------------------- pickle and csv payloads


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickler for plain lists/tuples/dicts/str/numbers: every global is refused, so nothing can run."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing global {module}.{name}: release pickles hold only plain lists, "
                                     "numbers and strings")


def _check_rows(rows: Sequence[Any], columns: Sequence[str], path: Path) -> list[tuple]:
    for r, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != len(columns):
            got = f"{len(row)} fields" if isinstance(row, (list, tuple)) else type(row).__name__
            raise release_error(path, f"row has {got}, expected {len(columns)} ({', '.join(columns)})", row=r)
    return list(zip(*rows)) if rows else [()] * len(columns)


def _pickle_columns(payload: bytes, columns: Sequence[str], path: Path) -> list[tuple]:
    buf = io.BytesIO(payload)
    was_enabled = gc.isenabled()
    gc.disable()  # millions of fresh lists/floats would trigger the cyclic GC over and over (2-3x slower)
    try:
        try:
            rows = _NoGlobalsUnpickler(buf).load()
        except Exception as exc:  # any unpickling failure, including refused globals, is a format error
            raise release_error(path, f"cannot unpickle the payload: {exc}") from None
        if buf.tell() != len(payload):
            raise release_error(path, f"{len(payload) - buf.tell()} trailing bytes after the pickled rows")
        if not isinstance(rows, list):
            raise release_error(path, f"the pickle must hold a list of rows, got {type(rows).__name__}")
        return _check_rows(rows, columns, path)
    finally:
        if was_enabled:
            gc.enable()


def _csv_columns(payload: bytes, columns: Sequence[str], path: Path) -> list[tuple]:
    try:
        reader = csv.reader(io.StringIO(payload.decode("utf-8"), newline=""))
        rows = [row for row in reader if row]
    except UnicodeDecodeError as exc:
        raise release_error(path, f"the CSV payload is not UTF-8: {exc}") from None
    except csv.Error as exc:
        raise release_error(path, f"bad CSV near line {reader.line_num} of the payload: {exc}") from None
    if rows and tuple(rows[0]) == tuple(columns):
        rows = rows[1:]
    return _check_rows(rows, columns, path)


def _literal(cell: str, name: str, row: int, path: Path) -> Any:
    """A CSV list literal, parsed as JSON (never ``eval``)."""
    try:
        return json.loads(cell)
    except json.JSONDecodeError as exc:
        raise release_error(path, f"bad list literal {cell[:60]!r}: {exc.msg}", row=row, column=name) from None


def _csv_lists(cells: Sequence[str], name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    inner = []
    for r, cell in enumerate(cells):
        text = cell.strip()
        if not (text.startswith("[") and text.endswith("]")):
            raise release_error(path, f"expected a list literal like [12.3, 45.6], got {cell[:60]!r}",
                                row=r, column=name)
        inner.append(text[1:-1])
    commas = {s.count(",") for s in inner}
    if len(commas) == 1 and all(s.strip() for s in inner):  # equal lengths: numpy's C parser, one call
        try:
            mat = np.loadtxt(inner, delimiter=",", dtype=np.float64, ndmin=2, comments=None, quotechar=None)
            if mat.shape == (len(cells), commas.pop() + 1):
                return mat, np.full(len(cells), mat.shape[1], dtype=np.int64)
        except ValueError:
            pass  # fall through to the exact per-row parse, which names the bad row
    return list_matrix([_literal(c, name, r, path) for r, c in enumerate(cells)], name, path)


def _convert(name: str, values: Sequence[Any], path: Path, *, text: bool) -> tuple[Any, np.ndarray | None]:
    """Python values (pickle) or CSV cells (``text``) of one column -> its representation (and list lengths)."""
    role = COLUMN_ROLES[name]
    if role in _LIST_ROLES:
        return _csv_lists(values, name, path) if text else list_matrix(values, name, path)
    if role == "arch":
        parsed = [_literal(c, name, r, path) for r, c in enumerate(values)] if text else values
        return codes_to_vecs(arch_codes(parsed, name, path)), None
    out: list[Any] = []
    for r, v in enumerate(values):
        if role in ("hash", "str"):
            ok = isinstance(v, str) and (role == "str" or _HEX.fullmatch(v) is not None)
            out.append(v.lower() if ok and role == "hash" else v)
        elif role == "int":
            ok = _INT.fullmatch(v.strip()) is not None if text else _is_int(v)
            out.append(int(v) if ok else None)
        else:
            try:
                out.append(float(v) if text else v)
                ok = text or (isinstance(v, (int, float)) and not isinstance(v, bool))
            except ValueError:
                ok = False
        if not ok:
            raise release_error(path, f"expected {_ROLE_NAMES[role]}, got {v!r}", row=r, column=name)
    if role in ("hash", "str"):
        return out, None
    try:
        return np.array(out, dtype=np.int64 if role == "int" else np.float64), None
    except OverflowError:
        raise release_error(path, "an integer does not fit in 64 bits", column=name) from None


_ROLE_NAMES = {"hash": "a 32-hex-digit model hash", "str": "a string", "int": "an integer",
               "acc": "a number", "loss": "a number", "seconds": "a number"}


# --------------------------------------------------------------------------- validation and the API


def _first(mask: np.ndarray) -> int | None:
    rows = np.flatnonzero(mask)
    return int(rows[0]) if rows.size else None


def _validate(header: ReleaseHeader, columns: dict[str, Any], lengths: dict[str, np.ndarray], path: Path) -> None:
    """Semantic checks: hashes of the space, no duplicates, arch_vec matches hash, values in range."""
    index = np.empty(len(columns["model_hash"]), dtype=np.int64)
    for r, h in enumerate(columns["model_hash"]):
        try:
            index[r] = hash_to_index(h)
        except ArchitectureNotFoundError:
            raise release_error(path, f"hash {h!r} is not a model of the BLOX space", row=r,
                                column="model_hash") from None
    order = np.argsort(index, kind="stable")
    dup = _first(index[order][1:] == index[order][:-1])
    if dup is not None:
        raise release_error(path, f"duplicate hash {columns['model_hash'][order[dup + 1]]!r} (first in row "
                                  f"{order[dup]})", row=int(order[dup + 1]), column="model_hash")
    for name in header.columns[1:]:
        role, v = COLUMN_ROLES[name], columns[name]
        if role == "arch":
            codes = arch_codes(v, name, path)
            blocks = np.asarray(RAW_TO_BLOCK)[codes @ np.array([1, 3, 9, 18, 36])]
            r = _first((blocks < 0).any(axis=1))
            if r is not None:
                raise release_error(path, f"arch vector {v[r]} has a stage with no input->output path", row=r,
                                    column=name)
            found = blocks_to_indices(blocks)
            r = _first(found != index)
            if r is not None:
                raise release_error(path, f"arch vector {v[r]} hashes to {all_hashes()[found[r]]}, not the row's "
                                          f"model_hash {columns['model_hash'][r]}", row=r, column=name)
        if role in ("hash", "str", "arch"):
            continue
        if role in _LIST_ROLES:
            r = _first(lengths[name] > header.epochs) if header.epochs is not None else None
            if r is not None:
                raise release_error(path, f"{lengths[name][r]} values but the header says epochs: {header.epochs}",
                                    row=r, column=name)
            inside = np.arange(v.shape[1]) < lengths[name][:, None]
        else:
            inside = np.ones(v.shape, dtype=bool)
        with np.errstate(invalid="ignore"):
            bad = inside & ~(np.isfinite(v) & (v >= 0) & ((v <= 100) if role in ("acc", "acc_list") else True))
        r = _first(bad.any(axis=1) if bad.ndim == 2 else bad)
        if r is not None:
            allowed = "0..100 (percent)" if role in ("acc", "acc_list") else "finite and >= 0"
            raise release_error(path, f"value {v[r].tolist()} outside {allowed}", row=r, column=name)


@dataclass(frozen=True)
class ReleaseFile:
    """A release file read into columns (see the module docstring for each column's representation)."""

    path: Path
    kind: str
    header: ReleaseHeader
    columns: dict[str, object]

    def __len__(self) -> int:
        return len(self.columns["model_hash"])  # type: ignore[arg-type]


def read_release_file(path: str | Path, *, validate: bool = True) -> ReleaseFile:
    """Read a release file of any kind and format.

    ``validate`` adds the semantic checks (every hash a model of the space, no
    duplicates, ``arch_vec`` matching its hash, finite values in range, lists
    no longer than ``epochs``); structure and types are always checked.
    """
    p = Path(path)
    with p.open("rb") as fh:
        header = _parse_header(_read_header_bytes(fh, p), p)
        _check_name(header, p)
        payload = fh.read()
    names = header.columns
    if header.format == "custom":
        types = [parse_column_type(header.column_types[c]) for c in names]  # type: ignore[index]
        columns, lengths = decode_custom(payload, names, types, p)
    else:
        reader = _pickle_columns if header.format == "pickle" else _csv_columns
        columns, lengths = {}, {}
        for name, values in zip(names, reader(payload, names, p)):
            columns[name], lens = _convert(name, values, p, text=header.format == "csv")
            if lens is not None:
                lengths[name] = lens
    for name, mat in ((n, columns[n]) for n in lengths):
        width = max(header.epochs or 0, mat.shape[1])
        if width > mat.shape[1]:
            columns[name] = np.hstack([mat, np.full((len(mat), width - mat.shape[1]), np.nan)])
    if validate:
        _validate(header, columns, lengths, p)
    return ReleaseFile(p, header.kind, header, columns)
