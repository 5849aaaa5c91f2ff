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
codec in :mod:`blox_env.datasets.release.codec`).

All three read to the same representation (:class:`ReleaseFile`.columns):
``model_hash`` -> list of lowercase hex str; per-epoch columns -> ``float64
(N, E)`` with ``E = max(header epochs, longest list)``, shorter rows padded with
NaN; float scalars -> ``float64 (N,)``; ``params``/``flops``/``train_time_s`` ->
``int64 (N,)``; env columns -> list of str; ``arch_vec`` -> list of raw arch
vectors ``[[[opA],[opB,prev,inp,sc]]] * 3``. Structure and types are always
checked; ``validate=True`` adds the semantic checks (see :func:`read_release_file`).
A recognised file name (see :func:`find_release_files`) must agree with the
header. Every malformed input raises :class:`~blox_env.errors.ReleaseFormatError`
naming the file and, where it applies, the 0-based data row and the column;
values nested deeper than the format allows (a per-epoch list is flat, an arch
vector 3 levels deep, every other value a scalar) are refused by that rule
before any parser or message could recurse. Names, headers and the column
schema live in :mod:`blox_env.datasets.release.header`.
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
from typing import Any

import numpy as np

from blox_env.datasets.release.codec import decode_custom
from blox_env.datasets.release.header import (
    COLUMN_ROLES,
    LIST_ROLES,
    ReleaseHeader,
    check_file_name,
    is_int,
    parse_header,
    read_header_bytes,
)
from blox_env.datasets.release.types import (
    MODEL_HASH,
    arch_codes,
    check_depth,
    codes_to_vecs,
    list_matrix,
    parse_column_type,
    release_error,
    show,
)
from blox_env.errors import ArchitectureNotFoundError
from blox_env.hashes import all_hashes, hash_to_index
from blox_env.space import RAW_TO_BLOCK, blocks_to_indices

__all__ = ["ReleaseFile", "read_release_file"]

_INT = re.compile(r"[+-]?\d+")

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


#: role -> (deepest nesting the format allows, most '[' a valid cell holds, what the value is).
_NESTING = {"acc_list": (1, 1, "a per-epoch value is a flat list of numbers"),
            "loss_list": (1, 1, "a per-epoch value is a flat list of numbers"),
            "arch": (3, 7, "an arch vector is [[[opA],[opB,prev,inp,sc]]] * 3")}
_BRACKETS = re.compile(r"[\[\]{}]")


def _literal(cell: str, name: str, row: int, path: Path) -> Any:
    """A CSV list literal, parsed as JSON (never ``eval``) once its nesting is within the format's bound."""
    limit, most, what = _NESTING[COLUMN_ROLES[name]]
    if cell.count("[") + cell.count("{") > most:  # a cell no deeper than `most` cannot exhaust the parser's stack
        depth = 0
        for m in _BRACKETS.finditer(cell):
            depth += 1 if m.group() in "[{" else -1
            if depth > limit:
                raise release_error(path, f"list literal nested deeper than the format allows: {what} (lists "
                                          f"nested at most {limit} deep), got {cell[:60]!r}", row=row, column=name)
    try:
        return json.loads(cell)
    except ValueError as exc:  # JSONDecodeError, or an integer literal past Python's digit limit
        raise release_error(path, f"bad list literal {cell[:60]!r}: {getattr(exc, 'msg', exc)}", row=row,
                            column=name) from None


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
    if role in LIST_ROLES:
        return _csv_lists(values, name, path) if text else list_matrix(values, name, path)
    if role == "arch":
        parsed = [_literal(c, name, r, path) for r, c in enumerate(values)] if text else values
        return codes_to_vecs(arch_codes(parsed, name, path)), None
    out: list[Any] = []
    for r, v in enumerate(values):
        if role in ("hash", "str"):
            ok = isinstance(v, str) and (role == "str" or MODEL_HASH.fullmatch(v) is not None)
            out.append(v.lower() if ok and role == "hash" else v)
        elif role == "int":
            ok = _INT.fullmatch(v.strip()) is not None if text else is_int(v)
            if ok and text and len(v.strip()) > 20:
                raise release_error(path, f"integer {v.strip()[:30]}... does not fit in 64 bits", row=r, column=name)
            out.append(int(v) if ok else None)
        else:
            try:
                out.append(float(v) if text else v)
                ok = text or (isinstance(v, (int, float)) and not isinstance(v, bool))
            except ValueError:
                ok = False
        if not ok:
            check_depth(path, v, 0, f"this column holds {_ROLE_NAMES[role]}", row=r, column=name)
            raise release_error(path, f"expected {_ROLE_NAMES[role]}, got {show(v)}", row=r, column=name)
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
        if role in LIST_ROLES:
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
        header = parse_header(read_header_bytes(fh, p), p)
        check_file_name(header, p)
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
