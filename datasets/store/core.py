"""``BloxStore``: the Zarr v3 model store behind every reward, predictor and agent.

Layout (one group; rows are models, ``index`` is sorted)::

    index[N]                          model indices of the rows (all 91,125 or a sub-space)
    runs/<name>/<metric>[S,N,E]       per-epoch curves (val_top1, train_loss, ...), S seeds
    runs/<name>/<metric>[S,N]         final values (test_top1, train_time_s, ...)
    static/params[N], static/flops[N]
    latency/<device>[N]
    env/<column>[S,N]                 codes into the array's ``categories`` attribute
    blockwise/<teacher hash>/...      teachers, block library, signatures, fine-tuning runs (.blockwise_tree)
    traces/<name>/<column>[T]         search traces (.traces)

The store owns this layout: every group and array is read and written through
its methods, and no module outside this package touches the Zarr group.
Values are decoded on read (see :mod:`blox_env.datasets.store.encoding`); missing is
NaN. Reads go through a per-chunk cache, so the first query of a model costs a
chunk decompression and later ones an array index. The query API mirrors the
original benchmark's ``Dataset`` (epochs count from 1) and adds vectorised
:meth:`BloxStore.get`. The original-style per-model queries live in
:mod:`.queries`, the methods that write in :mod:`.write`, the low-level reads in
:mod:`.reads`, traces in :mod:`.traces`, the ``blockwise/`` tree in
:mod:`.blockwise_tree`. Damage never reads as numbers: an absent chunk reads as
missing, a damaged chunk or metadata file raises ``StoreCorruptError``, and
``close()`` records per-array checksums for ``blox data verify --deep`` (see
:mod:`.integrity`, :mod:`.verify`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from blox_env.datasets.store.blockwise_tree import BlockwiseTreeMixin
from blox_env.datasets.store.bounds import META_LIMIT, file_problem, local_root
from blox_env.datasets.store.encoding import Encoding, best_mode, quiet_nan
from blox_env.datasets.store.integrity import ChecksumMixin, corrupt, guard, read_index
from blox_env.datasets.store.location import resolve_location, zarr_store
from blox_env.datasets.store.lock import WriterLock
from blox_env.datasets.store.proxies import PROXY_PREFIX, ProxyMixin
from blox_env.datasets.store.queries import QueryMixin
from blox_env.datasets.store.reads import ReadMixin
from blox_env.datasets.store.schema import (
    CURVE_METRICS,
    FINAL_METRICS,
    INDEX_FILL,
    READABLE_VERSIONS,
    STATIC_METRICS,
    STORE_FORMAT,
    STORE_VERSION,
)
from blox_env.datasets.store.traces import TraceMixin
from blox_env.datasets.store.write import StoreWriter
from blox_env.errors import (
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


class BloxStore(QueryMixin, ReadMixin, StoreWriter, TraceMixin, BlockwiseTreeMixin, ChecksumMixin, ProxyMixin):
    """A benchmark store. Open with :func:`open_store` / :meth:`open`, create with :meth:`create`.

    ``rng`` (seed or Generator) drives ``seed=None`` queries, which pick one of a
    run's seeds at random as the original API does; pass ``rng=`` per call to
    control it, or ``seed="mean"`` for the mean over seeds.

    Damaged data or metadata raises :class:`~blox_env.errors.StoreCorruptError`;
    an absent chunk reads as missing (see :mod:`.integrity`).
    """

    def __init__(self, group: Any, *, location: str, mode: str, rng: int | np.random.Generator | None = None,
                 zstore: Any = None) -> None:
        attrs = dict(group.attrs)
        if attrs.get("format") != STORE_FORMAT:
            raise StoreError(f"{location} is not a blox store (format attribute {attrs.get('format')!r})")
        if attrs.get("format_version") not in READABLE_VERSIONS:
            raise StoreError(
                f"{location}: store format version {attrs.get('format_version')!r} is not supported "
                f"(this blox-env reads versions {', '.join(map(str, READABLE_VERSIONS))})"
            )
        self._group = group
        self._zstore = zstore if zstore is not None else group.store
        self.location = location
        self.mode = mode
        self.attrs = attrs
        self._rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        expected = attrs.get("n_rows")
        self.index = read_index(group, group.store, location, expected=int(expected) if expected is not None else None)
        self.index.setflags(write=False)
        self._dirty: set[str] = set()
        self._warned: set[tuple[str, tuple[str, ...]]] = set()
        self._closed = False
        self._full = len(self.index) == N_MODELS
        self._arrays: dict[str, tuple[Any, Encoding, int]] = {}
        self._chunks: dict[tuple[str, int, int], np.ndarray] = {}
        self._runs: dict[str, RunInfo] = {}
        self._paths: set[str] | None = None
        self._nodes: dict[str, Any] = {}  # read-only stores: metadata nodes and listings, looked up once
        self._listings: dict[tuple[str, bool], tuple[str, ...]] = {}
        self._meta_ok: set[str] = set()  # arrays whose metadata matched its recorded checksum
        self._gens: dict[str, tuple[int, ...] | None] = {}  # version of each array whose metadata is cached
        root = local_root(group.store)
        self._root: str | None = None if root is None else str(root)
        self._lock: WriterLock | None = None
        self._check_meta("index")

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, location: str | os.PathLike[str] | None = None, *, mode: str = "r",
             rng: int | np.random.Generator | None = None) -> BloxStore:
        """Open an existing store (``mode="r"`` read-only, ``"a"`` to add data)."""
        import zarr

        if mode not in ("r", "a"):
            raise InvalidArgumentError(f"open mode must be 'r' or 'a' (use BloxStore.create to write), got {mode!r}")
        resolved = resolve_location(location)
        with guard(str(resolved), "the root metadata zarr.json"):
            zstore = zarr_store(resolved, mode=mode)  # opens a zip: a damaged one is damage, not a missing store
            problem = file_problem(zstore, "zarr.json", META_LIMIT)
            if problem:
                raise corrupt(str(resolved), "the root metadata", problem)
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

        from blox_env.datasets.store.write import array_codecs, space_definition

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
        arr = group.create_array("index", shape=idx.shape, dtype="int32", chunks=idx.shape, fill_value=INDEX_FILL,
                                 **array_codecs("int32"))
        arr[:] = idx
        group.attrs.update({
            "format": STORE_FORMAT,
            "format_version": STORE_VERSION,
            "n_rows": int(idx.size),
            "name": name,
            "search_space": space_definition(),
            "provenance": provenance or {},
            "default_run": None,
        })
        store = cls(group, location=str(resolved), mode="w", rng=rng, zstore=zstore)
        store._touch("index")
        return store

    def close(self, *, checksums: bool = True) -> None:
        """Writable stores: record the checksums of the arrays written since opening and of any table array
        still without one (see :meth:`ChecksumMixin._finalise_checksums`); then release the underlying store
        (needed to finish writing a zip). ``checksums=False`` skips the recording."""
        if self._closed:
            return
        try:
            if checksums and self.mode != "r":
                self._finalise_checksums()
                self._dirty.clear()
            self._closed = True
            if self._zstore is not None and hasattr(self._zstore, "close"):
                self._zstore.close()
        finally:
            self.unlock()

    def lock(self, *, timeout: float = 0.0) -> BloxStore:
        """Take this store's writer lock (see :mod:`.lock`) until :meth:`close` or :meth:`unlock`: another
        process that asks for it waits up to its ``timeout`` seconds, then gets StoreBusyError naming this one.

        Only local folder stores can be locked; the lock is advisory (writers that never ask are not stopped).
        """
        self.check_writable()
        if self._root is None:
            raise InvalidArgumentError(f"store {self.location}: only a local folder store can be locked for writing")
        if self._lock is None:
            lock = WriterLock(self._root, timeout=timeout)
            lock.acquire()
            self._lock = lock
        return self

    def adopt_lock(self, lock: WriterLock | None) -> None:
        """Hold ``lock``, a writer lock on this store taken before it was opened (released by :meth:`close`);
        ``None`` lets go of the held lock without releasing it (its taker releases it)."""
        if lock is not None and (not lock.held or self._root is None or
                                 os.path.abspath(lock.location) != os.path.abspath(self._root)):
            raise InvalidArgumentError(f"store {self.location}: that lock is not a held lock of this store")
        self._lock = lock

    def unlock(self) -> None:
        """Give back the writer lock taken by :meth:`lock` (nothing when none is held)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def __enter__(self) -> BloxStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(checksums=exc_type is None)  # a failed block's arrays stay unchecked, never blessed

    @property
    def backing_store(self) -> Any:
        """The underlying Zarr store object, for low-level checks of the files (``blox data verify``)."""
        return self._zstore

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
        return self._children("runs", arrays=False)

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
            grp = self._node(path)
            if grp is None or (not name.startswith("blockwise/") and name not in self.runs):
                raise InvalidArgumentError(f"unknown run {name!r}: this store has {', '.join(self.runs) or 'none'}")
            with guard(self.location, f"metadata of run {path!r}"):
                attrs = dict(grp.attrs)
                info = RunInfo(name, tuple(int(s) for s in attrs["seeds"]), int(attrs["epochs"]),
                               tuple(self._children(path, arrays=True)), attrs)
            self._runs[name] = info
        return self._runs[name]

    def run_attrs(self, run: str) -> dict[str, Any] | None:
        """A run group's attributes as stored, or None when there is no such group (unlike :meth:`run_info`,
        also for a group whose ``seeds``/``epochs`` were never written: a run whose creation was cut short)."""
        path = self.run_path(run)
        node = self._node(path)
        if node is None or hasattr(node, "chunks"):
            return None
        with guard(self.location, f"metadata of run {path!r}"):
            return dict(node.attrs)

    def metric_attrs(self, run: str | None, metric: str) -> dict[str, Any]:
        """Attributes of one metric array of a run (its ``encoding``, ...)."""
        info = self.run_info(run)
        path = f"{self.run_path(info.name)}/{metric}"
        node = self._node(path) if metric in info.metrics else None
        if node is None:
            raise InvalidArgumentError(f"run {info.name!r} has no metric {metric!r}: it has {', '.join(info.metrics)}")
        with guard(self.location, f"metadata of array {path!r}"):
            return dict(node.attrs)

    @property
    def latency_devices(self) -> list[str]:
        return sorted(p.split("/", 1)[1] for p in self.metric_paths() if p.startswith("latency/"))

    def metrics(self, run: str | None = None) -> list[str]:
        """Every metric name :meth:`get` accepts for a run."""
        out = list(self.run_info(run).metrics) if self.runs else []
        out += self._children("static", arrays=True)
        out += [f"latency/{d}" for d in self.latency_devices]
        return out

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
            best: bool | None = None, run: str | None = None, rng: np.random.Generator | None = None,
            init_seed: int | str | None = None) -> np.ndarray:
        """One metric for many models as float64 (NaN where missing); ``archs=None`` means every row.

        ``proxy:<name>`` reads a zero-cost proxy at ``init_seed`` (an initialisation seed or ``"mean"``, the
        default; see :mod:`.proxies`); ``init_seed`` is refused for every other metric.

        Curves: value at ``epoch`` (default: last), or with ``best=True`` the best of
        the first ``epoch`` values (max, min for losses); ``best`` defaults to True
        for ``val_top1`` only. ``train_time_s`` scales with ``epoch / epochs``.
        """
        if isinstance(metric, str) and metric.startswith(PROXY_PREFIX):
            return self._proxy_query(metric, archs, init_seed=init_seed, seed=seed)
        if init_seed is not None:
            raise InvalidArgumentError(f"init_seed is for proxy:<name> metrics only, not {metric!r}")
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
        e = self._epoch(info, epoch)
        # one version of the array for every seed, even while another process rewrites it
        return self._consistent(path, lambda: self._get_run_metric(path, info, metric, rows, seed=seed, epoch=e,
                                                                    best=best, rng=rng))

    def _get_run_metric(self, path: str, info: RunInfo, metric: str, rows: np.ndarray, *, seed: SeedArg, epoch: int,
                        best: bool | None, rng: np.random.Generator | None) -> np.ndarray:
        _, enc, _ = self._array(path)
        e = epoch
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


def open_store(location: str | os.PathLike[str] | None = None, *, mode: str = "r",
               rng: int | np.random.Generator | None = None) -> BloxStore:
    """Open a store by path, URL or name; ``None`` finds the full benchmark, else Blox-mini."""
    return BloxStore.open(location, mode=mode, rng=rng)
