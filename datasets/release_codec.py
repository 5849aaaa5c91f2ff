"""The ``custom`` (``.blox``) payload codec of the BLOX release files, both directions.

Layout: one zlib stream of ``uint64 LE total_bits``, ``uint32 LE nrows``, then
the rows, bit-packed LSB-first (bit i is bit i%8 of byte i//8; a k-bit value
is written least significant bit first). Columns follow the header order and
every column value is padded to a byte boundary after it, so each value starts
on a byte: ``hash`` (16 bytes, the hex string's 128-bit little-endian integer),
``str`` (u8 length + ASCII), ``int`` (u32), ``float`` (24-bit ``round(x*1e6)``),
``arch`` (one byte per stage ``((opA*3+opB)<<3)|prev<<2|inp<<1|sc``),
``b_{min}_{max}_{bits}`` (a quantised accuracy: ``count - min`` in ``bits``
bits, value ``round(count/N*100, 3)``) and ``list[T]`` (u8 length, elements
packed back to back, then padding).

Speed comes from numpy: when every row has the same layout (no strings, equal
list lengths, the common case) rows are fixed-size records sliced as a matrix;
otherwise one cheap pass finds each value's offset and rows with equal list
lengths are decoded together. Shared by :mod:`blox_env.datasets.release`
(reader) and :mod:`blox_env.datasets.release_writer` (writer).
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.errors import ReleaseFormatError

__all__ = [
    "ColumnType",
    "accuracy_denominator",
    "accuracy_values",
    "arch_codes",
    "codes_to_vecs",
    "decode_custom",
    "encode_custom",
    "fit_accuracy_type",
    "list_matrix",
    "parse_column_type",
    "quantise_accuracy",
    "release_error",
]

_CHUNK = 8192  # rows per numpy batch: bounds temporaries to tens of MB


def release_error(path: Path | str, msg: str, *, row: int | None = None,
                  column: str | None = None) -> ReleaseFormatError:
    """A :class:`ReleaseFormatError` whose message starts with the file, the 0-based data row and the column."""
    where = [str(path)] + ([f"row {row}"] if row is not None else []) + ([f"column {column!r}"] if column else [])
    return ReleaseFormatError(f"{', '.join(where)}: {msg}")


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
    except (TypeError, ValueError):
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
            raise release_error(path, f"arch vector {vec!r} is not [[[opA],[opB,prev,inp,sc]]] * 3",
                                row=r, column=column) from None
    limits = np.array([3, 3, 2, 2, 2])
    bad = np.flatnonzero(((out < 0) | (out >= limits)).any(axis=(1, 2)))
    if bad.size:
        raise release_error(path, f"arch vector {values[int(bad[0])]!r} has an op outside 0..2 or a bit outside "
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
    except (ValueError, TypeError):
        pass
    lengths = np.zeros(len(values), dtype=np.int64)
    for r, row in enumerate(values):
        if not isinstance(row, (list, tuple, np.ndarray)) or not all(
                isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in row):
            raise release_error(path, f"expected a list of numbers, got {str(row)[:80]}", row=r, column=column)
        lengths[r] = len(row)
    mat = np.full((len(values), int(lengths.max(initial=0))), np.nan)
    for r, row in enumerate(values):
        mat[r, :len(row)] = row
    return mat, lengths


# --------------------------------------------------------------------------- custom payload


def _gather(arr: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """Bytes ``arr[s:s+width]`` for every start, as a ``(len(starts), width)`` matrix (chunked)."""
    out = np.empty((len(starts), width), dtype=np.uint8)
    steps = np.arange(width, dtype=np.int64)
    for a in range(0, len(starts), _CHUNK):
        out[a:a + _CHUNK] = arr[starts[a:a + _CHUNK, None] + steps]
    return out


def _unpack_bits(mat: np.ndarray, count: int, bits: int) -> np.ndarray:
    """``count`` LSB-first ``bits``-bit integers packed from bit 0 of each row of ``mat``."""
    pos = np.arange(count, dtype=np.int64) * bits
    first, shift = pos >> 3, (pos & 7).astype(np.uint64)
    span = (bits + 14) // 8
    mask = np.uint64((1 << bits) - 1)
    out = np.empty((len(mat), count), dtype=np.int64)
    for a in range(0, len(mat), _CHUNK):
        chunk = np.zeros((len(mat[a:a + _CHUNK]), mat.shape[1] + span), dtype=np.uint8)
        chunk[:, :mat.shape[1]] = mat[a:a + _CHUNK]
        acc = np.zeros((len(chunk), count), dtype=np.uint64)
        for t in range(span):
            acc |= chunk[:, first + t].astype(np.uint64) << np.uint64(8 * t)
        out[a:a + _CHUNK] = (acc >> shift) & mask
    return out


def _layout(body: bytes, nrows: int, types: list[ColumnType], names: Sequence[str],
            path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Start byte of every value (after a list/str length byte) and every list/str length: ``(nrows, ncols)``."""
    ncols, size = len(types), len(body)
    # common case first: no strings, all lists of row 0's lengths -> rows are equal-size records
    if nrows and all(t.base != "str" for t in types):
        offs, lens, pos = [], [], 0
        for t in types:
            n = body[pos] if t.is_list and pos < size else 0
            offs.append(pos + t.is_list)
            lens.append(n)
            pos += t.is_list + (t.list_bytes(n) if t.is_list else t.elem_bytes)
        rec = np.arange(nrows, dtype=np.int64) * pos
        if pos * nrows == size and all((np.frombuffer(body, np.uint8)[rec + o - 1] == n).all()
                                       for t, o, n in zip(types, offs, lens) if t.is_list):
            return rec[:, None] + np.array(offs), np.broadcast_to(np.array(lens), (nrows, ncols))
    starts = np.zeros((nrows, ncols), dtype=np.int64)
    lengths = np.zeros((nrows, ncols), dtype=np.int64)
    pos = 0
    for r in range(nrows):
        srow, lrow = starts[r], lengths[r]
        for j, t in enumerate(types):
            if t.is_list or t.base == "str":
                if pos >= size:
                    raise release_error(path, "the stream ends inside this value (truncated data)", row=r,
                                        column=names[j])
                n = body[pos]
                lrow[j] = n
                pos += 1
                srow[j] = pos
                pos += t.list_bytes(n) if t.is_list else n
            else:
                srow[j] = pos
                pos += t.elem_bytes
            if pos > size:
                raise release_error(path, f"the stream ends inside this value: total_bits says {size} bytes of "
                                          f"rows, nrows says {nrows} rows", row=r, column=names[j])
    if pos != size:
        raise release_error(path, f"{size - pos} trailing bytes after the last row: total_bits ({8 * size}) "
                                  f"and nrows ({nrows}) disagree with the row data")
    return starts, lengths


def _decode_values(t: ColumnType, name: str, mat: np.ndarray, count: int, path: Path,
                   rows: np.ndarray) -> np.ndarray:
    """Decode ``count`` elements per row of byte matrix ``mat`` (count=1 for scalars) -> ``(rows, count)``."""
    if t.base == "float":
        v = mat.reshape(len(mat), count, 3).astype(np.int64)
        return (v[..., 0] | v[..., 1] << 8 | v[..., 2] << 16) / 1e6
    if t.base == "int":
        return np.ascontiguousarray(mat).view("<u4").reshape(len(mat), count).astype(np.int64)
    stored = _unpack_bits(mat, count, t.bits)  # b_{lo}_{hi}_{bits}
    bad = np.flatnonzero((stored > t.hi - t.lo).any(axis=1))
    if bad.size:
        raise release_error(path, f"stored value exceeds max {t.hi} of type {t}", row=int(rows[bad[0]]), column=name)
    return accuracy_values(stored + t.lo, accuracy_denominator(name))


def decode_custom(payload: bytes, names: Sequence[str], types: Sequence[ColumnType],
                  path: str | Path = "<payload>") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Decode a ``custom`` payload: zlib( u64 total_bits, u32 nrows, rows ), bit-packed LSB-first.

    Each value starts on a byte boundary (values are padded after them); list
    elements are packed back to back after a u8 length. Returns the columns
    (hash -> list of hex, str -> list, arch -> nested lists, scalars -> 1-D
    arrays, lists -> 2-D arrays of each row's elements padded with NaN) and the
    list lengths of the list columns.
    """
    p = Path(path)
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(payload)
    except zlib.error as exc:
        raise release_error(p, f"bad zlib stream: {exc}") from None
    if not inflater.eof:
        raise release_error(p, "truncated zlib stream: the payload ends before the compressed data does")
    if inflater.unused_data:
        raise release_error(p, f"{len(inflater.unused_data)} trailing bytes after the zlib stream")
    if len(data) < 12:
        raise release_error(p, "truncated stream: shorter than the 12-byte total_bits/nrows prefix")
    total_bits, nrows = struct.unpack_from("<QI", data)
    body = data[12:]
    if total_bits % 8 or total_bits // 8 != len(body):
        raise release_error(p, f"total_bits = {total_bits} does not match the {8 * len(body)} bits of row data "
                               f"({'truncated' if total_bits // 8 > len(body) else 'trailing bytes'})")
    tps = list(types)
    starts, lengths = _layout(body, nrows, tps, names, p)
    arr = np.frombuffer(body, dtype=np.uint8)
    out: dict[str, Any] = {}
    lens_out: dict[str, np.ndarray] = {}
    for j, (name, t) in enumerate(zip(names, tps)):
        st = starts[:, j]
        if t.base == "hash":
            hexes = _gather(arr, st, 16)[:, ::-1].tobytes().hex()
            out[name] = [hexes[32 * i:32 * i + 32] for i in range(nrows)]
        elif t.base == "str":
            try:
                out[name] = [body[s:s + n].decode("ascii") for s, n in zip(st.tolist(), lengths[:, j].tolist())]
            except UnicodeDecodeError:
                raise release_error(p, "string is not ASCII", column=name) from None
        elif t.base == "arch":
            codes = _gather(arr, st, 3).astype(np.int64)
            bad = np.flatnonzero((codes >> 3 > 8).any(axis=1))
            if bad.size:
                raise release_error(p, "arch byte has an op pair above 8", row=int(bad[0]), column=name)
            out[name] = codes_to_vecs(np.stack([(codes >> 3) // 3, (codes >> 3) % 3, codes >> 2 & 1,
                                                codes >> 1 & 1, codes & 1], axis=-1))
        elif not t.is_list:
            out[name] = _decode_values(t, name, _gather(arr, st, t.elem_bytes), 1, p, np.arange(nrows))[:, 0]
        else:
            lens = lengths[:, j]
            width = int(lens.max()) if nrows else 0
            values = np.full((nrows, width), np.nan)
            for n in np.unique(lens).tolist():
                rows = np.flatnonzero(lens == n)
                if n:
                    mat = _gather(arr, st[rows], t.list_bytes(n))
                    values[rows, :n] = _decode_values(t, name, mat, n, p, rows)
            out[name] = values
            lens_out[name] = np.asarray(lens, dtype=np.int64)
    return out, lens_out


def _pack_bits(vals: np.ndarray, count: int, bits: int) -> np.ndarray:
    """Pack ``count`` ``bits``-bit integers per row LSB-first, zero-padding each row to a byte."""
    out = np.empty((len(vals), (count * bits + 7) // 8), dtype=np.uint8)
    shifts = np.arange(bits, dtype=np.int64)
    step = max(1, (1 << 21) // max(1, count * bits))
    for a in range(0, len(vals) if count else 0, step):
        flat = ((vals[a:a + step, :, None] >> shifts) & 1).astype(np.uint8).reshape(-1, count * bits)
        out[a:a + step] = np.packbits(flat, axis=1, bitorder="little")
    return out


def _encode_values(t: ColumnType, name: str, vals: np.ndarray, count: int, path: Path | str,
                   rows: np.ndarray) -> np.ndarray:
    """Encode ``(g, count)`` values (counts for ``b`` types) -> ``(g, bytes)`` of packed elements."""
    g = len(vals)
    with np.errstate(invalid="ignore"):
        if t.base == "float":
            v = np.rint(np.asarray(vals, dtype=np.float64) * 1e6)
            bad, what = ~((v >= 0) & (v < 2**24)), "is not a float in 0 <= x < 16.777216"
        elif t.base == "int":
            v = np.asarray(vals)
            bad, what = ~((v >= 0) & (v < 2**32)) | (v != np.floor(v)), "is not an int in 0 <= x < 2**32"
        else:
            v = np.asarray(vals, dtype=np.int64) - t.lo
            bad, what = ~((v >= 0) & (v < 2**t.bits) & (v <= t.hi - t.lo)), f"does not fit type {t}"
    if bad.any():
        r = int(np.argwhere(bad)[0][0])
        raise release_error(path, f"value {np.asarray(vals)[r].tolist()} {what}", row=int(rows[r]), column=name)
    if t.base == "b":
        return _pack_bits(v, count, t.bits)
    word = v.astype("<u4").view(np.uint8).reshape(g, count, 4)
    return (word[:, :, :3] if t.base == "float" else word).reshape(g, count * (3 if t.base == "float" else 4))


def encode_custom(names: Sequence[str], types: Sequence[ColumnType], columns: dict[str, Any],
                  lengths: dict[str, np.ndarray], path: Path | str = "<payload>") -> bytes:
    """Encode normalised columns into a ``custom`` payload (the inverse of :func:`decode_custom`).

    Columns: ``hash``/``str`` -> lists of str; ``arch`` -> ``int (N, 3, 5)`` codes;
    ``int``/``float`` -> numbers; ``b_`` -> image counts (see :func:`quantise_accuracy`).
    List columns are ``(N, E)`` matrices whose row ``r`` holds ``lengths[name][r]`` elements.
    """
    n = len(columns[names[0]]) if names else 0
    parts: list[Any] = []
    for name, t in zip(names, types):
        col = columns[name]
        if t.base == "hash":
            parts.append(np.frombuffer(b"".join(bytes.fromhex(h)[::-1] for h in col), np.uint8).reshape(n, 16))
        elif t.base == "str":
            enc = []
            for r, v in enumerate(col):
                if not isinstance(v, str) or not v.isascii() or len(v) > 255:
                    raise release_error(path, f"{v!r} is not an ASCII string of at most 255 characters",
                                        row=r, column=name)
                enc.append(bytes([len(v)]) + v.encode("ascii"))
            parts.append(enc)
        elif t.base == "arch":
            c = np.asarray(col, dtype=np.int64).reshape(n, 3, 5)
            parts.append((((c[..., 0] * 3 + c[..., 1]) << 3) | c[..., 2] << 2 | c[..., 3] << 1 | c[..., 4])
                         .astype(np.uint8))
        elif not t.is_list:
            parts.append(_encode_values(t, name, np.asarray(col).reshape(n, 1), 1, path, np.arange(n)))
        else:
            lens, mat = np.asarray(lengths[name]), np.asarray(col)
            if (lens > 255).any():
                raise release_error(path, "a list holds at most 255 elements", row=int(np.argmax(lens > 255)),
                                    column=name)
            uniq = np.unique(lens).tolist()
            if len(uniq) <= 1:
                width = uniq[0] if uniq else 0
                enc = _encode_values(t, name, mat[:, :width], width, path, np.arange(n))
                parts.append(np.hstack([np.full((n, 1), width, dtype=np.uint8), enc]))
                continue
            row_bytes = [b""] * n
            for width in uniq:
                rows = np.flatnonzero(lens == width)
                enc = _encode_values(t, name, mat[rows, :width], width, path, rows)
                for r, m in zip(rows.tolist(), enc):
                    row_bytes[r] = bytes([width]) + m.tobytes()
            parts.append(row_bytes)
    if all(isinstance(p, np.ndarray) for p in parts):
        body = np.hstack(parts).tobytes() if parts else b""
    else:
        cols = [[m.tobytes() for m in p] if isinstance(p, np.ndarray) else p for p in parts]
        body = b"".join(b"".join(row) for row in zip(*cols))
    return zlib.compress(struct.pack("<QI", 8 * len(body), n) + body, 6)
