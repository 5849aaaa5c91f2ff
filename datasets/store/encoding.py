"""How store arrays encode values: integer counts, fixed-point, or plain floats.

Accuracies in BLOX are counts of correct images (accuracy = count / N * 100), so
they are stored as the integers they are; losses and latencies as fixed-point
micro-units. Integers compress several times better than float32 and decode to
exactly the values of the official files. Every array carries its encoding in
its attributes, and every encoding has a sentinel for missing values (decoded
to NaN, never to 0).

``fill_missing`` (set on every array written since store format 2) records that
the array's Zarr fill value is the missing sentinel, so an absent chunk decodes
as missing. For delta-encoded curves the differences are stored minus one
(modulo 2**bits): an all-sentinel chunk then decodes to the sentinel at every
epoch. Arrays without the flag (format 1) use plain differences and fill 0;
the store detects their absent chunks explicitly (see :mod:`.integrity`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from blox_env.datasets.store.schema import is_accuracy
from blox_env.errors import StoreError

__all__ = ["Encoding", "best_mode", "count_denominator", "detect_encoding", "quiet_nan", "running_best"]

#: Images per split in the original BLOX protocol (CIFAR-100: 45k train, 5k val, 10k test).
BLOX_SPLIT_SIZES = {"train": 45_000, "val": 5_000, "test": 10_000}


def count_denominator(metric: str, sizes: dict[str, int] | None = None) -> int:
    """Number of images behind an accuracy column, from its name (train / val / test)."""
    table = sizes or BLOX_SPLIT_SIZES
    for split in ("train", "val"):
        if split in metric:
            return table[split]
    return table["test"]


@dataclass(frozen=True)
class Encoding:
    """``kind`` is ``count`` (value = stored * 100 / denominator, rounded to 3 decimals as in the official
    files), ``fixed`` (value = stored / denominator) or ``raw``.

    Decoding divides exact integers, so a value written with 6 (fixed) or 3
    (count) decimals decodes to exactly the float its decimal text parses to.
    """

    kind: str
    dtype: str
    denominator: int = 0
    delta: bool = False  # integer curves stored as differences along the last axis (mod 2**bits)
    fill_missing: bool = False  # fill value == missing sentinel; delta differences stored minus one

    def __post_init__(self) -> None:
        if self.kind not in ("count", "fixed", "raw"):
            raise StoreError(f"unknown encoding kind {self.kind!r}: allowed count, fixed, raw")
        if self.kind != "raw" and self.denominator <= 0:
            raise StoreError(f"{self.kind} encoding needs a positive denominator, got {self.denominator}")

    @property
    def missing(self) -> Any:
        """Stored value meaning 'missing': NaN for floats, the dtype's max (min for raw signed ints)."""
        dt = np.dtype(self.dtype)
        if dt.kind == "f":
            return np.nan
        if self.kind == "raw" and dt.kind == "i":
            return np.iinfo(dt).min
        return np.iinfo(dt).max

    def to_attrs(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v or k in ("kind", "dtype")}

    def pack(self, values: Any) -> np.ndarray:
        """Values -> what is written to disk (:meth:`encode`, then the delta transform if set)."""
        stored = self.encode(values)
        if self.delta and stored.ndim and stored.shape[-1] > 1:
            stored = stored.copy()
            stored[..., 1:] = np.diff(stored, axis=-1)  # wraps modulo 2**bits: lossless
            if self.fill_missing:
                stored[..., 1:] -= np.array(1, dtype=stored.dtype)  # all-sentinel disk == all missing
        return stored

    def unpack(self, disk: np.ndarray) -> np.ndarray:
        """What was read from disk (a whole last axis) -> stored values."""
        if self.delta:
            if self.fill_missing and disk.ndim and disk.shape[-1] > 1:
                disk = disk.copy()
                disk[..., 1:] += np.array(1, dtype=disk.dtype)
            return np.cumsum(disk, axis=-1, dtype=disk.dtype)
        return disk

    def decode_one(self, stored: Any) -> float:
        """Fast scalar :meth:`decode` for the single-query path."""
        v = int(stored) if self.kind != "raw" or np.dtype(self.dtype).kind in "iu" else float(stored)
        if self.kind == "raw":
            return float("nan") if v == self.missing else float(v)
        if v == self.missing:
            return float("nan")
        if self.kind == "count":
            x = v * 100 / self.denominator
            return round(x, 3) if 100_000 % self.denominator else x
        return v / self.denominator

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Encoding:
        try:
            return cls(**attrs)
        except TypeError as exc:
            raise StoreError(f"malformed encoding attributes {attrs!r}: {exc}") from exc

    def encode(self, values: Any) -> np.ndarray:
        """Values (NaN = missing) -> stored integers or floats."""
        if self.kind == "raw":
            v = np.asarray(values)
            if np.dtype(self.dtype).kind in "iu" and v.dtype.kind == "f":
                v = np.where(np.isnan(v), self.missing, v)
            return v.astype(self.dtype)
        v = np.asarray(values, dtype=np.float64)
        nan = np.isnan(v)
        if self.kind == "count":
            raw = np.rint(np.where(nan, 0, v) * self.denominator / 100.0)
        else:
            raw = np.rint(np.where(nan, 0, v) * self.denominator)
        limit = np.iinfo(np.dtype(self.dtype)).max
        if raw.size and (raw.min() < 0 or raw.max() >= limit):
            raise StoreError(f"values out of range for {self.kind} encoding in {self.dtype}")
        # exactness: a count must reproduce the value to its 3 printed decimals, fixed to 1/denominator
        back = raw * 100.0 / self.denominator if self.kind == "count" else raw / self.denominator
        tol = 5e-4 + 1e-9 if self.kind == "count" else 0.5 / self.denominator + 1e-12
        err = np.abs(back - np.where(nan, 0, v))
        if err.size and err.max() > tol * (1 + 1e-6):
            bad = np.unravel_index(int(np.argmax(err)), err.shape)
            raise StoreError(
                f"value {v[bad]!r} at {tuple(int(i) for i in bad)} is not exact in {self.kind} encoding "
                f"(denominator {self.denominator}): expected "
                + ("an accuracy count/N*100 rounded to 3 decimals" if self.kind == "count" else
                   f"a multiple of 1/{self.denominator}")
            )
        out = raw.astype(self.dtype)
        out[nan] = limit
        return out

    def decode(self, stored: np.ndarray) -> np.ndarray:
        """Stored -> float64 values with NaN for missing."""
        s = np.asarray(stored)
        if self.kind == "raw":
            out = s.astype(np.float64)
            if s.dtype.kind in "iu":
                out[s == self.missing] = np.nan
            return out
        missing = s == self.missing
        if self.kind == "count":
            out = s.astype(np.float64) * 100.0 / self.denominator
            if 100_000 % self.denominator:  # not an exact 3-decimal value: round like the official files
                out = np.round(out, 3)
        else:
            out = s.astype(np.float64) / self.denominator
        out[missing] = np.nan
        return out


def detect_encoding(metric: str, values: np.ndarray, *, sizes: dict[str, int] | None = None) -> Encoding:
    """Pick the most compact exact encoding for a metric's values.

    Accuracy-like columns (``top1``/``top5``) become counts when every value is
    ``count / N * 100`` rounded to 3 decimals; losses and other non-negative
    values with at most 6 decimals become micro-unit fixed point; else float32.
    """
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if is_accuracy(metric) and finite.size:
        n = count_denominator(metric, sizes)
        counts = np.rint(finite * n / 100.0)
        if np.all(np.abs(np.round(counts * 100.0 / n, 3) - finite) < 1e-9) and counts.min() >= 0:
            dtype = "uint16" if counts.max() < 2**16 - 1 else "uint32"
            return Encoding("count", dtype, denominator=n, delta=v.ndim == 3)
    if finite.size and finite.min() >= 0:
        micro = np.rint(finite * 1e6)
        if micro.max() < 2**32 - 1 and np.all(np.abs(micro / 1e6 - finite) < 1e-12 + 1e-9 * np.abs(finite)):
            return Encoding("fixed", "uint32", denominator=1_000_000, delta=v.ndim == 3)
    return Encoding("raw", "float32")


def best_mode(metric: str) -> str:
    """Direction of "best" for a metric: min for losses, max otherwise."""
    return "min" if any(k in metric for k in ("loss",)) else "max"


def running_best(block: np.ndarray, enc: Encoding, mode: str) -> np.ndarray:
    """Best-so-far along epochs in the stored domain (decoding is monotone increasing)."""
    if block.dtype.kind == "f":
        return (np.fmin if mode == "min" else np.fmax).accumulate(block, axis=-1)
    missing = enc.missing
    b = block.astype(np.int64)
    if mode == "max":
        b[block == missing] = -1
        b = np.maximum.accumulate(b, axis=-1)
        b[b < 0] = missing
    else:
        b = np.minimum.accumulate(b, axis=-1)  # the missing sentinel is the dtype max: never the min
    return b


class quiet_nan:  # noqa: N801 - used like a function
    """Silence numpy's all-NaN warnings: an all-missing slice is simply NaN."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)
