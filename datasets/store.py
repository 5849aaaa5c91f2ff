"""``BloxStore``: the Zarr v3 model store behind every reward, predictor and agent.

Layout (one group; rows are models, ``index`` is sorted)::

    index[N]                          model indices of the rows (all 91,125 or a sub-space)
    runs/<name>/<metric>[S,N,E]       per-epoch curves (val_top1, train_loss, ...), S seeds
    runs/<name>/<metric>[S,N]         final values (test_top1, train_time_s, ...)
    static/params[N], static/flops[N]
    latency/<device>[N]
    env/<column>[S,N]                 codes into the array's ``categories`` attribute
    blockwise/..., traces/...         written by the training engine and the harness

Values are decoded on read (see :mod:`blox_env.datasets.encoding`); missing is
NaN. Reads go through a per-chunk cache, so the first query of a model costs a
chunk decompression and later ones an array index. The query API mirrors the
original benchmark's ``Dataset`` (epochs count from 1) and adds vectorised
:meth:`BloxStore.get`. The original-style per-model queries live in
:mod:`.store_queries`, the methods that write in :mod:`.store_write`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from blox_env.datasets.encoding import Encoding, best_mode, quiet_nan, running_best
from blox_env.datasets.location import resolve_location, zarr_store
from blox_env.datasets.schema import CURVE_METRICS, FINAL_METRICS, STATIC_METRICS, STORE_FORMAT, STORE_VERSION
from blox_env.datasets.store_queries import QueryMixin
from blox_env.datasets.store_write import StoreWriter
from blox_env.errors import (
    ArchitectureNotFoundError,
    BloxError,
    InvalidArchitectureError,
    InvalidArgumentError,
    StoreError,
    StoreNotFoundError,
)
from blox_env.space import N_MODELS, Arch, parse_arch

__all__ = ["CURVE_METRICS", "FINAL_METRICS", "STATIC_METRICS", "BloxStore", "RunInfo", "open_store"]


SeedArg = int | str | None


class RunInfo(NamedTuple):
    """One training protocol of a store."""

    name: str
    seeds: tuple[int, ...]
    epochs: int
    metrics: tuple[str, ...]
    attrs: dict[str, Any]


class BloxStore(QueryMixin, StoreWriter):
    """A benchmark store. Open with :func:`open_store` / :meth:`open`, create with :meth:`create`.

    ``rng`` (seed or Generator) drives ``seed=None`` queries, which pick one of a
    run's seeds at random as the original API does; pass ``rng=`` per call to
    control it, or ``seed="mean"`` for the mean over seeds.
    """

    def __init__(self, group: Any, *, location: str, mode: str, rng: int | np.random.Generator | None = None,
                 zstore: Any = None) -> None:
        attrs = dict(group.attrs)
        if attrs.get("format") != STORE_FORMAT:
            raise StoreError(f"{location} is not a blox store (format attribute {attrs.get('format')!r})")
        if attrs.get("format_version") != STORE_VERSION:
            raise StoreError(
                f"{location}: store format version {attrs.get('format_version')!r} is not supported "
                f"(this blox-env reads version {STORE_VERSION})"
            )
        self._group = group
        self._zstore = zstore
        self.location = location
        self.mode = mode
        self.attrs = attrs
        self._rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.index = np.asarray(group["index"][:], dtype=np.int64)
        self.index.setflags(write=False)
        self._full = len(self.index) == N_MODELS
        self._arrays: dict[str, tuple[Any, Encoding, int]] = {}
        self._chunks: dict[tuple[str, int, int], np.ndarray] = {}
        self._runs: dict[str, RunInfo] = {}
        self._paths: set[str] | None = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, location: str | os.PathLike[str] | None = None, *, mode: str = "r",
             rng: int | np.random.Generator | None = None) -> BloxStore:
        """Open an existing store (``mode="r"`` read-only, ``"a"`` to add data)."""
        import zarr

        if mode not in ("r", "a"):
            raise InvalidArgumentError(f"open mode must be 'r' or 'a' (use BloxStore.create to write), got {mode!r}")
        resolved = resolve_location(location)
        zstore = zarr_store(resolved, mode=mode)
        try:
            group = zarr.open_group(zstore, mode="r" if mode == "r" else "r+")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            raise StoreNotFoundError(f"no blox store at {resolved}") from exc
        return cls(group, location=str(resolved), mode=mode, rng=rng, zstore=zstore)

    @classmethod
    def create(cls, location: str | os.PathLike[str], *, index: Sequence[int] | np.ndarray,
               name: str = "blox", provenance: dict[str, Any] | None = None, overwrite: bool = False,
               rng: int | np.random.Generator | None = None) -> BloxStore:
        """Create an empty store whose rows are the models ``index`` (sorted, unique)."""
        import zarr

        from blox_env.datasets.store_write import space_definition

        idx = np.asarray(index, dtype=np.int64)
        if idx.ndim != 1 or idx.size == 0:
            raise InvalidArgumentError("index must be a non-empty 1-D list of model indices")
        if idx.min() < 0 or idx.max() >= N_MODELS:
            raise InvalidArchitectureError(f"index holds a model index outside 0..{N_MODELS - 1}")
        if np.any(np.diff(idx) <= 0):
            raise InvalidArgumentError("index must be sorted and free of duplicates")
        resolved = location if isinstance(location, str) and "://" in location else os.fspath(location)
        if not overwrite and not (isinstance(resolved, str) and "://" in resolved) and os.path.exists(resolved):
            raise InvalidArgumentError(f"{resolved} exists: pass overwrite=True to replace it")
        zstore = zarr_store(resolve_location(location), mode="w")
        group = zarr.open_group(zstore, mode="w")
        arr = group.create_array("index", shape=idx.shape, dtype="int32", chunks=idx.shape)
        arr[:] = idx
        group.attrs.update({
            "format": STORE_FORMAT,
            "format_version": STORE_VERSION,
            "name": name,
            "search_space": space_definition(),
            "provenance": provenance or {},
            "default_run": None,
        })
        return cls(group, location=str(resolved), mode="w", rng=rng, zstore=zstore)

    def close(self) -> None:
        """Release the underlying store (needed to finish writing a zip)."""
        if self._zstore is not None and hasattr(self._zstore, "close"):
            self._zstore.close()

    def __enter__(self) -> BloxStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def clear_cache(self) -> None:
        """Drop decoded chunks held in memory."""
        self._chunks.clear()

    # ------------------------------------------------------------------ metadata
    @property
    def name(self) -> str:
        return str(self.attrs.get("name", ""))

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self) -> Iterator[Arch]:
        return (Arch.from_index(i) for i in self.index.tolist())

    def __contains__(self, arch: object) -> bool:
        try:
            i = parse_arch(arch).index
        except BloxError:
            return False
        return bool(self._full or self._row_or_none(i) is not None)

    def __repr__(self) -> str:
        return f"BloxStore({self.location!r}, models={len(self)}, runs={self.runs})"

    @property
    def runs(self) -> list[str]:
        if "runs" not in self._group:
            return []
        return sorted(self._group["runs"].group_keys())

    @property
    def default_run(self) -> str:
        name = self.attrs.get("default_run") or (self.runs[0] if self.runs else None)
        if name is None:
            raise StoreError(f"store {self.location} has no training runs")
        return str(name)

    @staticmethod
    def run_path(name: str) -> str:
        """Group of a run: ``runs/<name>``, or ``name`` itself for nested runs such as
        ``blockwise/<teacher>/finetune/<key>`` (fine-tuning results have the same layout)."""
        return name if name.startswith("blockwise/") else f"runs/{name}"

    def run_info(self, run: str | None = None) -> RunInfo:
        name = run or self.default_run
        if name not in self._runs:
            path = self.run_path(name)
            if path not in self._group or (not name.startswith("blockwise/") and name not in self.runs):
                raise InvalidArgumentError(f"unknown run {name!r}: this store has {', '.join(self.runs) or 'none'}")
            grp = self._group[path]
            attrs = dict(grp.attrs)
            self._runs[name] = RunInfo(name, tuple(attrs["seeds"]), int(attrs["epochs"]),
                                       tuple(sorted(grp.array_keys())), attrs)
        return self._runs[name]

    @property
    def latency_devices(self) -> list[str]:
        return sorted(p.split("/", 1)[1] for p in self.metric_paths() if p.startswith("latency/"))

    def metrics(self, run: str | None = None) -> list[str]:
        """Every metric name :meth:`get` accepts for a run."""
        out = list(self.run_info(run).metrics) if self.runs else []
        if "static" in self._group:
            out += sorted(self._group["static"].array_keys())
        out += [f"latency/{d}" for d in self.latency_devices]
        return out

    # ------------------------------------------------------------------ low-level reads
    def _row_or_none(self, model_index: int) -> int | None:
        if self._full:
            return model_index
        pos = int(np.searchsorted(self.index, model_index))
        return pos if pos < len(self.index) and self.index[pos] == model_index else None

    def rows(self, archs: Any) -> np.ndarray:
        """Row positions of many models (Archs, indices, hashes or vectors)."""
        if isinstance(archs, np.ndarray) and archs.dtype.kind in "iu":
            idx = archs.astype(np.int64, copy=False)
        else:
            idx = np.fromiter((parse_arch(a).index for a in archs), dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= N_MODELS):
            raise InvalidArchitectureError(f"model index outside 0..{N_MODELS - 1}")
        if self._full:
            return idx
        pos = np.minimum(np.searchsorted(self.index, idx), len(self.index) - 1)
        bad = self.index[pos] != idx
        if bad.any():
            raise ArchitectureNotFoundError(
                f"{int(bad.sum())} model(s) not in store {self.name!r}, e.g. index {int(idx[bad][0])}"
            )
        return pos

    def _row(self, arch: Any) -> int:
        i = arch.index if isinstance(arch, Arch) else parse_arch(arch).index
        row = self._row_or_none(i)
        if row is None:
            raise ArchitectureNotFoundError(f"model {i} is not in store {self.name!r} ({len(self)} models)")
        return row

    def _array(self, path: str) -> tuple[Any, Encoding, int]:
        """(zarr array, encoding, model axis) of a stored array, cached."""
        entry = self._arrays.get(path)
        if entry is None:
            try:
                arr = self._group[path]
            except KeyError:
                raise InvalidArgumentError(f"store {self.name!r} has no array {path!r}") from None
            enc = Encoding.from_attrs(dict(arr.attrs).get("encoding", {"kind": "raw", "dtype": str(arr.dtype)}))
            entry = (arr, enc, 0 if arr.ndim == 1 else 1)
            self._arrays[path] = entry
        return entry

    def _block(self, path: str, seed_pos: int, chunk: int, best: str | None = None) -> np.ndarray:
        """One chunk of stored values along the model axis, cached; ``best`` = running max/min."""
        key = (path, seed_pos, chunk, best)
        block = self._chunks.get(key)
        if block is None:
            arr, enc, axis = self._array(path)
            if best is None:
                size = arr.chunks[axis]
                sl = slice(chunk * size, (chunk + 1) * size)
                block = enc.unpack(arr[sl] if axis == 0 else arr[seed_pos, sl])
            else:
                block = running_best(self._block(path, seed_pos, chunk), enc, best)
            self._chunks[key] = block
        return block

    def _gather(self, path: str, seed_pos: int, rows: np.ndarray, col: int | None = None,
                best: str | None = None) -> np.ndarray:
        """Stored values of ``rows`` (any order), optionally at one epoch column."""
        arr, _, axis = self._array(path)
        size = arr.chunks[axis]
        order = np.argsort(rows, kind="stable")
        srows = rows[order]
        rest = () if col is not None else arr.shape[axis + 1 :]
        out = None
        first, last = int(srows[0]) // size if len(srows) else 0, int(srows[-1]) // size if len(srows) else -1
        bounds = np.searchsorted(srows, np.arange(first, last + 2) * size)
        for k, c in enumerate(range(first, last + 1)):
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            if hi == lo:
                continue
            blk = self._block(path, seed_pos, c, best)
            local = srows[lo:hi] - c * size
            vals = blk[local] if col is None else blk[local, col]
            if out is None:
                out = np.empty((len(rows), *rest), dtype=blk.dtype)
            out[order[lo:hi]] = vals
        return out if out is not None else np.empty((0, *rest))

    # ------------------------------------------------------------------ seeds and epochs
    def _seed_positions(self, info: RunInfo, seed: SeedArg, n: int, rng: np.random.Generator | None) -> Any:
        """An int position, ``"mean"``, or an array of positions (one per model)."""
        if isinstance(seed, str):
            if seed != "mean":
                raise InvalidArgumentError(f"seed must be one of {list(info.seeds)}, 'mean' or None, got {seed!r}")
            return "mean"
        if seed is None:
            gen = rng if rng is not None else self._rng
            return gen.integers(0, len(info.seeds), size=n) if n != 1 else int(gen.integers(0, len(info.seeds)))
        if isinstance(seed, (int, np.integer)) and int(seed) in info.seeds:
            return info.seeds.index(int(seed))
        raise InvalidArgumentError(f"seed must be one of {list(info.seeds)}, 'mean' or None, got {seed!r}")

    @staticmethod
    def _epoch(info: RunInfo, epoch: int | None) -> int:
        if epoch is None:
            return info.epochs
        if not isinstance(epoch, (int, np.integer)) or not 1 <= int(epoch) <= info.epochs:
            raise InvalidArgumentError(
                f"epoch must be an integer in 1..{info.epochs} (epochs count from 1), got {epoch!r}"
            )
        return int(epoch)

    # ------------------------------------------------------------------ vectorised query
    def get(self, metric: str, archs: Any = None, *, seed: SeedArg = None, epoch: int | None = None,
            best: bool | None = None, run: str | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
        """One metric for many models as float64 (NaN where missing); ``archs=None`` means every row.

        Curves: value at ``epoch`` (default: last), or with ``best=True`` the best of
        the first ``epoch`` values (max, min for losses); ``best`` defaults to True
        for ``val_top1`` only. ``train_time_s`` scales with ``epoch / epochs``.
        """
        rows = np.arange(len(self)) if archs is None else self.rows(archs)
        if metric in STATIC_METRICS or metric.startswith("latency/"):
            path = metric if metric.startswith("latency/") else f"static/{metric}"
            if path not in self.metric_paths():
                raise InvalidArgumentError(f"unknown metric {metric!r}: allowed {', '.join(self.metrics())}")
            _, enc, _ = self._array(path)
            return enc.decode(self._gather(path, 0, rows))
        info = self.run_info(run)
        if metric not in info.metrics:
            raise InvalidArgumentError(f"unknown metric {metric!r}: allowed {', '.join(self.metrics(run))}")
        path = f"{self.run_path(info.name)}/{metric}"
        _, enc, _ = self._array(path)
        e = self._epoch(info, epoch)
        use_best = (metric == "val_top1") if best is None else bool(best)
        seeds = self._seed_positions(info, seed, len(rows), rng)

        per_epoch = self._array(path)[0].ndim == 3
        mode = best_mode(metric) if (use_best and per_epoch) else None

        def one_seed(pos: int, sel_rows: np.ndarray) -> np.ndarray:
            vals = enc.decode(self._gather(path, pos, sel_rows, e - 1 if per_epoch else None, mode))
            return vals * (e / info.epochs) if metric == "train_time_s" else vals

        if isinstance(seeds, str):  # "mean"
            with quiet_nan():
                return np.nanmean(np.stack([one_seed(p, rows) for p in range(len(info.seeds))]), axis=0)
        if isinstance(seeds, int):
            return one_seed(seeds, rows)
        out = np.empty(len(rows))
        for p in np.unique(seeds).tolist():
            sel = seeds == p
            out[sel] = one_seed(p, rows[sel])
        return out

    def metric_paths(self) -> set[str]:
        """``static/...`` and ``latency/...`` arrays (listed once; writes reset the cache)."""
        if self._paths is None:
            paths = set()
            for grp in ("static", "latency"):
                if grp in self._group:
                    paths |= {f"{grp}/{k}" for k in self._group[grp].array_keys()}
            self._paths = paths
        return self._paths

def open_store(location: str | os.PathLike[str] | None = None, *, mode: str = "r",
               rng: int | np.random.Generator | None = None) -> BloxStore:
    """Open a store by path, URL or name; ``None`` finds the full benchmark, else Blox-mini."""
    return BloxStore.open(location, mode=mode, rng=rng)
