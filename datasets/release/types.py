"""Column types and value conversions shared by the BLOX release reader, writer and ``.blox`` codec.

:class:`ColumnType` parses the ``custom`` format's ``column_types`` entries;
the value helpers turn accuracies into image counts and back, arch vectors
into codes and back, and per-epoch lists into NaN-padded matrices. Every
malformed value raises :class:`~blox_env.errors.ReleaseFormatError` naming the
file, row and column; values quoted in messages go through :func:`show`, and
nesting is measured by :func:`nesting_depth`, both without recursion, so a
hostile deeply nested value is refused by the format's rules (a per-epoch list
is flat, an arch vector is 3 levels deep), never by Python's recursion limit.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.errors import ReleaseFormatError

__all__ = [
    "MODEL_HASH",
    "ColumnType",
    "accuracy_denominator",
    "accuracy_values",
    "arch_codes",
    "codes_to_vecs",
    "fit_accuracy_type",
    "list_matrix",
    "nesting_depth",
    "parse_column_type",
    "quantise_accuracy",
    "check_depth",
    "release_error",
    "show",
]


#: A model hash as the release files write it: 32 hex digits.
MODEL_HASH = re.compile(r"[0-9a-fA-F]{32}")


def release_error(path: Path | str, msg: str, *, row: int | None = None,
                  column: str | None = None) -> ReleaseFormatError:
    """A :class:`ReleaseFormatError` whose message starts with the file, the 0-based data row and the column."""
    where = [str(path)] + ([f"row {row}"] if row is not None else []) + ([f"column {column!r}"] if column else [])
    return ReleaseFormatError(f"{', '.join(where)}: {msg}")


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 8, 8, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40
_CONTAINERS = (list, tuple, dict, set, frozenset)


def show(value: Any) -> str:
    """A short repr of a (possibly hostile) value for error messages: bounded length and depth, no recursion."""
    return _REPR.repr(value)


def nesting_depth(value: Any, limit: int) -> int:
    """How deeply containers nest in ``value`` (a number is 0, ``[1]`` is 1), counted up to ``limit + 1`` at most.

    Iterative and stopping past ``limit``, so a deeply nested (or self-containing) value costs no recursion.
    """
    deepest, stack = 0, [(value, 0)]
    while stack:
        obj, depth = stack.pop()
        if not isinstance(obj, _CONTAINERS):
            continue
        deepest = max(deepest, depth + 1)
        if deepest > limit:
            return limit + 1
        items = [*obj.keys(), *obj.values()] if isinstance(obj, dict) else obj
        stack.extend((item, depth + 1) for item in items if isinstance(item, _CONTAINERS))
    return deepest


def check_depth(path: Path | str, value: Any, limit: int, what: str, *, row: int, column: str) -> None:
    """Refuse ``value`` if its containers nest deeper than ``limit``, the format's own bound for ``what``."""
    if nesting_depth(value, limit) > limit:
        allowed = "no lists" if limit == 0 else f"lists nested at most {limit} deep"
        raise release_error(path, f"value nested deeper than the format allows: {what} ({allowed}), got "
                                  f"{show(value)}", row=row, column=column)


@dataclass(frozen=True)
class ColumnType:
    """A ``custom`` column type: ``hash``, ``str``, ``int``, ``float``, ``arch``, ``b_{lo}_{hi}_{bits}``, ``list[T]``.

    ``lo``/``hi``/``bits`` are the quantisation parameters of ``b`` types (0 otherwise).
    """

    base: str
    is_list: bool = False
    lo: int = 0
    hi: int = 0
    bits: int = 0

    @property
    def family(self) -> str:
        """The type without its quantisation parameters, e.g. ``list[b]``."""
        return f"list[{self.base}]" if self.is_list else self.base

    @property
    def elem_bytes(self) -> int:
        """Bytes of one scalar (``b``: of one padded scalar); 0 for ``str``."""
        return {"hash": 16, "int": 4, "float": 3, "arch": 3, "str": 0}.get(self.base, (self.bits + 7) // 8)

    def list_bytes(self, length: int) -> int:
        """Bytes of a list of ``length`` elements after its length byte (elements packed, then padded)."""
        return (length * self.bits + 7) // 8 if self.base == "b" else length * self.elem_bytes

    @property
    def min_bytes(self) -> int:
        """The fewest bytes one value of this type takes in a row (an empty list or string: its length byte)."""
        return 1 if self.is_list or self.base == "str" else self.elem_bytes

    @property
    def max_bytes(self) -> int:
        """The most bytes one value can take: lists hold at most 255 elements, strings 255 bytes."""
        if self.base == "str":
            return 256
        return 1 + self.list_bytes(255) if self.is_list else self.elem_bytes

    def __str__(self) -> str:
        inner = f"b_{self.lo}_{self.hi}_{self.bits}" if self.base == "b" else self.base
        return f"list[{inner}]" if self.is_list else inner


def parse_column_type(text: Any) -> ColumnType:
    """Parse a ``column_types`` entry; ``ReleaseFormatError`` (without file context) if invalid."""
    if not isinstance(text, str):
        raise ReleaseFormatError(f"a column type is a string, got {text!r}")
    inner, is_list = (text[5:-1], True) if text.startswith("list[") and text.endswith("]") else (text, False)
    if inner in ("hash", "int", "float", "arch", "str") and not (is_list and inner in ("str", "hash", "arch")):
        return ColumnType(inner, is_list)
    m = re.fullmatch(r"b_(\d+)_(\d+)_(\d+)", inner)
    if m is None:
        raise ReleaseFormatError(f"unknown column type {text!r}: allowed hash, str, int, float, arch, "
                                 "b_{min}_{max}_{bits}, list[int|float|b_...]")
    lo, hi, bits = (int(g) for g in m.groups())
    if not (lo <= hi and 1 <= bits <= 32 and hi - lo < 2**bits):
        raise ReleaseFormatError(f"column type {text!r}: need min <= max, 1 <= bits <= 32, max - min < 2**bits")
    return ColumnType("b", is_list, lo, hi, bits)


# --------------------------------------------------------------------------- values


def accuracy_denominator(column: str) -> int:
    """Images behind a quantised accuracy: 45000 for ``train`` columns, 5000 for ``val``, else 10000."""
    return 45000 if "train" in column else 5000 if "val" in column else 10000


@lru_cache(maxsize=4)
def _accuracy_table(denominator: int) -> np.ndarray:
    table = np.array([round(c / denominator * 100, 3) for c in range(denominator + 1)])
    table.setflags(write=False)
    return table


def accuracy_values(counts: Any, denominator: int) -> np.ndarray:
    """``round(count / N * 100, 3)`` for an array of counts, exactly as Python's ``round`` gives it."""
    return _accuracy_table(denominator)[np.asarray(counts, dtype=np.int64)]


def quantise_accuracy(values: np.ndarray, column: str, path: Path | str) -> np.ndarray:
    """Image counts ``round(value * N / 100)`` of accuracies (NaN -> -1); error outside ``0..100``."""
    n = accuracy_denominator(column)
    with np.errstate(invalid="ignore"):
        counts = np.rint(np.asarray(values, dtype=np.float64) * n / 100)
        bad = ~((counts >= 0) & (counts <= n)) & ~np.isnan(counts)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise release_error(path, f"accuracy {np.asarray(values).reshape(len(bad), -1)[row]} outside 0..100 "
                                  "cannot be quantised", row=row, column=column)
    return np.where(np.isnan(counts), -1, counts).astype(np.int64)


def fit_accuracy_type(counts: np.ndarray, *, is_list: bool) -> ColumnType:
    """The tightest ``b_{min}_{max}_{bits}`` for these counts (negative = missing, ignored)."""
    valid = counts[counts >= 0]
    lo, hi = (int(valid.min()), int(valid.max())) if valid.size else (0, 0)
    return ColumnType("b", is_list, lo, hi, max(1, (hi - lo).bit_length()))


def arch_codes(values: Sequence[Any], column: str, path: Path | str) -> np.ndarray:
    """Raw arch vectors ``[[[opA],[opB,prev,inp,sc]]] * 3`` -> ``int64 (N, 3, 5)``; error naming the row."""
    try:  # common case in a few C-level passes; ``(f0,), second`` unpacking enforces the [[opA], [...]] shape
        if set(map(len, values)) <= {3}:
            stages = [(f0, *second) for vec in values for (f0,), second in vec]
            if {type(x) for st in stages for x in st} <= {int}:
                out = np.array(stages, dtype=np.int64).reshape(len(values), 3, 5)
                if ((out >= 0) & (out < np.array([3, 3, 2, 2, 2]))).all():
                    return out
    except (TypeError, ValueError, RecursionError):
        pass
    out = np.zeros((len(values), 3, 5), dtype=np.int64)
    for r, vec in enumerate(values):
        try:
            if isinstance(vec, np.ndarray):
                vec = vec.tolist()
            if not isinstance(vec, (list, tuple)) or len(vec) != 3:
                raise ValueError
            for s, (first, second) in enumerate(vec):
                if len(first) != 1 or len(second) != 4:
                    raise ValueError
                row = (first[0], *second)
                if not all(isinstance(v, int) and not isinstance(v, bool) for v in row):
                    raise ValueError
                out[r, s] = row
        except (ValueError, TypeError):
            check_depth(path, vec, 3, "an arch vector is [[[opA],[opB,prev,inp,sc]]] * 3", row=r, column=column)
            raise release_error(path, f"arch vector {show(vec)} is not [[[opA],[opB,prev,inp,sc]]] * 3",
                                row=r, column=column) from None
    limits = np.array([3, 3, 2, 2, 2])
    bad = np.flatnonzero(((out < 0) | (out >= limits)).any(axis=(1, 2)))
    if bad.size:
        raise release_error(path, f"arch vector {show(values[int(bad[0])])} has an op outside 0..2 or a bit outside "
                                  "0..1", row=int(bad[0]), column=column)
    return out


def codes_to_vecs(codes: np.ndarray) -> list[list[list[list[int]]]]:
    """``int (N, 3, 5)`` -> list of raw arch vectors ``[[[opA],[opB,prev,inp,sc]]] * 3``."""
    return [[[[a], [b, pv, ip, sc]] for a, b, pv, ip, sc in row] for row in np.asarray(codes).tolist()]


def list_matrix(values: Any, column: str, path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Per-row number lists -> ``float64 (N, E)`` padded with NaN, and each row's length.

    ``values`` is a 2-D array (trailing NaN = a shorter list; NaN inside a list is an
    error) or a sequence of lists/tuples of int/float (bool and str are refused).
    """
    if isinstance(values, np.ndarray) and values.ndim == 2 and values.dtype.kind in "fiu":
        mat = values.astype(np.float64, copy=False)
        present = ~np.isnan(mat)
        lengths = np.where(present.any(axis=1), mat.shape[1] - np.argmax(present[:, ::-1], axis=1), 0)
        holes = np.flatnonzero(~present.all(axis=1) & (present.sum(axis=1) != lengths))
        if holes.size:
            raise release_error(path, "NaN inside a list (only trailing NaN pads a shorter list)",
                                row=int(holes[0]), column=column)
        return mat, lengths.astype(np.int64)
    try:  # common case: equal-length lists of numbers in one numpy call
        mat = np.array(values)
        if mat.ndim == 2 and mat.dtype.kind in "fiu" and len(values) == len(mat):
            return mat.astype(np.float64, copy=False), np.full(len(mat), mat.shape[1], dtype=np.int64)
    except (ValueError, TypeError, RecursionError):
        pass
    lengths = np.zeros(len(values), dtype=np.int64)
    for r, row in enumerate(values):
        if not isinstance(row, (list, tuple, np.ndarray)) or not all(
                isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in row):
            check_depth(path, row, 1, "a per-epoch value is a flat list of numbers", row=r, column=column)
            raise release_error(path, f"expected a list of numbers, got {show(row)}", row=r, column=column)
        lengths[r] = len(row)
    mat = np.full((len(values), int(lengths.max(initial=0))), np.nan)
    for r, row in enumerate(values):
        mat[r, :len(row)] = row
    return mat, lengths


