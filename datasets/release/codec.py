"""The ``custom`` (``.blox``) payload codec of the BLOX release files, both directions.

Layout, as the original BLOX writer (``blox/io.py``) emits it: one zlib stream of
``uint64 LE total_bits``, ``uint32 LE nrows``, then the rows, bit-packed LSB-first
(bit i is bit i%8 of byte i//8; a k-bit value is written least significant bit
first). Columns follow the header order and every column value is padded to a
byte boundary after it, so each value starts on a byte: ``hash`` (16 bytes, the
hex string's 128-bit little-endian integer), ``str`` (u8 length + ASCII), ``int``
(u32), ``float`` (24-bit ``round(x*1e6)``), ``arch`` (one byte per stage
``((opA*3+opB)<<3)|prev<<2|inp<<1|sc``), ``b_{min}_{max}_{bits}`` (a quantised
accuracy: ``count - min`` in ``bits`` bits, value ``round(count/N*100, 3)``) and
``list[T]`` (u8 length, elements packed back to back, then padding).

``total_bits`` is the original writer's bit counter (see :func:`original_total_bits`):
it counts the 32-bit row count and every value's bits, and its ``pad_write()``
adds the *bit offset within the last byte* rather than the bits up to the
boundary (a lone 14-bit value adds 14 + 6 while the buffer grows by 16 bits).
The reader derives the row layout from ``nrows`` and the column types (the
rows must fill the stream exactly: truncated or trailing data is refused with
the file, row and column) and accepts ``total_bits`` equal to the original's
count, or to ``8 * len(rows)``, which blox-env's writer emitted before it
followed the original (legacy files); any other value is refused. The writer
emits the original's count, so its files load in the original reader.

Memory is bounded by the format's own limits before anything is allocated:
``nrows`` is at most :data:`MAX_ROWS` (a file holds one row per model of the
space), the stream is inflated in steps and refused as soon as it exceeds the
most ``nrows`` rows of these types can take (lists of at most 255 values,
strings of at most 255 bytes), and ``nrows`` rows must fit the bytes inflated.

Speed comes from numpy: when every row has the same layout (no strings, equal
list lengths, the common case) rows are fixed-size records sliced as a matrix;
otherwise one cheap pass finds each value's offset and rows with equal list
lengths are decoded together. Column types and value helpers live in
:mod:`blox_env.datasets.release.types`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.datasets.release.types import (
    ColumnType,
    accuracy_denominator,
    accuracy_values,
    codes_to_vecs,
    release_error,
    show,
)
from blox_env.space import N_MODELS

__all__ = ["MAX_ROWS", "decode_custom", "encode_custom", "original_total_bits"]

#: Most rows a ``.blox`` file may declare: one per model of the BLOX space.
MAX_ROWS = N_MODELS
_PREFIX = 12  # u64 total_bits + u32 nrows
_STEP = 1 << 22  # inflate at most 4 MiB per step
_CHUNK = 8192  # rows per numpy batch: bounds temporaries to tens of MB


def original_total_bits(types: Sequence[ColumnType], nrows: int, lengths: Sequence[Any]) -> int:
    """``total_bits`` as the original BLOX writer counts it for ``nrows`` rows of ``types``.

    ``lengths[j]`` holds each row's element count of list column ``j`` (bytes of a
    ``str`` column; ``None`` for scalars). The count is 32 (the row count) plus,
    per value, its bits and then ``pad_write()``'s addition: the bit offset within
    the last byte (``bits % 8``), 0 for byte-sized values.
    """
    total = 32
    for t, lens in zip(types, lengths):
        if t.is_list or t.base == "str":
            n = np.asarray(lens, dtype=np.int64)
            if t.base == "b":
                bits = n * t.bits
                total += 8 * nrows + int(bits.sum()) + int((bits % 8).sum())
            else:
                total += 8 * nrows + 8 * (t.elem_bytes or 1) * int(n.sum())
        elif t.base == "b":
            total += nrows * (t.bits + t.bits % 8)
        else:
            total += nrows * 8 * t.elem_bytes
    return total


def _row_limit(nrows: int, types: Sequence[ColumnType], path: Path) -> int:
    """The most bytes ``nrows`` rows of ``types`` can take; refuses a row count beyond :data:`MAX_ROWS`."""
    if nrows > MAX_ROWS:
        raise release_error(path, f"nrows = {nrows:,} in the stream prefix: a release file holds at most one row "
                                  f"per model of the BLOX space ({MAX_ROWS:,} rows)")
    return nrows * sum(t.max_bytes for t in types)


def _inflate(payload: bytes, types: Sequence[ColumnType], path: Path) -> tuple[int, int, bytearray]:
    """Inflate in steps, never past what the declared rows can take -> ``(total_bits, nrows, rows bytes)``."""
    inflater = zlib.decompressobj()
    data, pending = bytearray(), payload
    limit, nrows, total_bits = _PREFIX, -1, 0
    try:
        while True:
            chunk = inflater.decompress(pending, min(_STEP, limit + 1 - len(data)))
            progress = bool(chunk) or len(inflater.unconsumed_tail) != len(pending)
            pending = inflater.unconsumed_tail
            data += chunk
            if nrows < 0 and len(data) >= _PREFIX:
                total_bits, nrows = struct.unpack_from("<QI", data)
                limit = _PREFIX + _row_limit(nrows, types, path)
            if len(data) > limit:
                raise release_error(path, f"the inflated rows exceed {limit - _PREFIX:,} bytes, the most {nrows:,} "
                                          "rows of these column types can take (lists of at most 255 values, "
                                          "strings of at most 255 bytes): refusing to inflate further (a corrupt "
                                          "row count or a zlib bomb)")
            if inflater.eof or not progress:
                break
    except zlib.error as exc:
        raise release_error(path, f"bad zlib stream: {exc}") from None
    if not inflater.eof:
        raise release_error(path, "truncated zlib stream: the payload ends before the compressed data does")
    if inflater.unused_data or inflater.unconsumed_tail:
        extra = len(inflater.unused_data) + len(inflater.unconsumed_tail)
        raise release_error(path, f"{extra} trailing bytes after the zlib stream")
    if nrows < 0:
        raise release_error(path, "truncated stream: shorter than the 12-byte total_bits/nrows prefix")
    del data[:_PREFIX]
    need = nrows * sum(t.min_bytes for t in types)
    if len(data) < need:
        raise release_error(path, f"nrows = {nrows:,} rows of these column types need at least {need:,} bytes, the "
                                  f"stream holds {len(data):,} (truncated data or a corrupt row count)")
    return total_bits, nrows, data


def _check_total_bits(total_bits: int, nrows: int, types: Sequence[ColumnType], lengths: np.ndarray,
                      size: int, path: Path) -> None:
    """Accept the original writer's ``total_bits`` or the legacy ``8 * len(rows)``; refuse anything else."""
    expected = original_total_bits(types, nrows, [lengths[:, j] if t.is_list or t.base == "str" else None
                                                  for j, t in enumerate(types)])
    if total_bits not in (expected, 8 * size):
        raise release_error(path, f"total_bits = {total_bits} does not match the row data: expected {expected} "
                                  f"(the original BLOX writer's count for these {nrows} rows) or {8 * size} (8 x the "
                                  f"{size} bytes of rows, written by earlier blox-env versions)")


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
                raise release_error(path, f"the stream ends inside this value: {size} bytes of rows do not hold "
                                          f"the {nrows} rows nrows declares (truncated data)", row=r, column=names[j])
    if pos != size:
        raise release_error(path, f"{size - pos} trailing bytes after the last row: nrows ({nrows}) disagrees with "
                                  f"the {size} bytes of row data")
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
    n = accuracy_denominator(name)
    bad = np.flatnonzero((stored > min(t.hi, n) - t.lo).any(axis=1))
    if bad.size:
        raise release_error(path, f"stored value exceeds max {min(t.hi, n)} of type {t} ({n} images)",
                            row=int(rows[bad[0]]), column=name)
    return accuracy_values(stored + t.lo, n)


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
    tps = list(types)
    total_bits, nrows, body = _inflate(payload, tps, p)
    starts, lengths = _layout(body, nrows, tps, names, p)
    _check_total_bits(total_bits, nrows, tps, lengths, len(body), p)
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

    The layout and ``total_bits`` are the original BLOX writer's, so the file loads in the original reader.

    Columns: ``hash``/``str`` -> lists of str; ``arch`` -> ``int (N, 3, 5)`` codes;
    ``int``/``float`` -> numbers; ``b_`` -> image counts (see :func:`quantise_accuracy`).
    List columns are ``(N, E)`` matrices whose row ``r`` holds ``lengths[name][r]`` elements.
    """
    n = len(columns[names[0]]) if names else 0
    if n > MAX_ROWS:
        raise release_error(path, f"{n:,} rows: a release file holds at most one row per model ({MAX_ROWS:,})")
    parts: list[Any] = []
    counts: list[Any] = []  # per column: each row's list length / string bytes (None for scalars)
    for name, t in zip(names, types):
        col = columns[name]
        counts.append(None)
        if t.base == "hash":
            parts.append(np.frombuffer(b"".join(bytes.fromhex(h)[::-1] for h in col), np.uint8).reshape(n, 16))
        elif t.base == "str":
            enc = []
            for r, v in enumerate(col):
                if not isinstance(v, str) or not v.isascii() or len(v) > 255:
                    raise release_error(path, f"{show(v)} is not an ASCII string of at most 255 characters",
                                        row=r, column=name)
                enc.append(bytes([len(v)]) + v.encode("ascii"))
            parts.append(enc)
            counts[-1] = [len(e) - 1 for e in enc]
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
            counts[-1] = lens
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
    return zlib.compress(struct.pack("<QI", original_total_bits(types, n, counts), n) + body, 6)
