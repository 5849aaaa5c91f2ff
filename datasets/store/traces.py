"""The ``traces/`` layout of a :class:`~blox_env.datasets.store.core.BloxStore`, and trace stores.

``traces/<name>/`` holds one float64 array per scalar field of the trace records
(``arch_index``, ``cost``, ``cumulative_cost``, ``wall_s``, ...) and one
``metrics/<key>`` array per metric (NaN where a record lacks it); the group's
attributes hold ``length``, ``trace_columns`` (the column keys written) and
whatever the writer adds (agent, seed, env, a spec key). Every chunk is written,
so an absent chunk is damage (format-1 traces, filled with 0, are read as they
were written).

Writing a trace is all or nothing: in a local folder the group is built under a
hidden name and swapped in (:mod:`.swap`), so a reader or a crash never leaves a
trace with some of its columns; an existing trace is only replaced with
``replace=True``. :meth:`TraceMixin.trace_problems` says what is wrong with a
torn trace (``blox data verify`` lists them) and :meth:`TraceMixin.trace_runs`
lists the finished ones, for resuming a campaign.

**Trace stores.** Search traces of a benchmark live in a store of their own,
never in the benchmark: :meth:`TraceMixin.open_traces` creates or opens one.
It records ``kind: "traces"`` and the benchmark's identity
(:meth:`TraceMixin.benchmark_identity`: the benchmark's name and the checksums of
the arrays a search reads: ``index``, ``runs/*/*``, ``static/params``,
``static/flops``, ``latency/*``, ``env/*``; blockwise tables, block weights,
proxy columns and traces do not count, so adding them keeps the identity) and
refuses a store of another benchmark. The writer holds the store's lock
(:mod:`.lock`) until it is closed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.datasets.store.integrity import (
    CHECKSUMS_ATTR,
    array_digest,
    check_chunk_files,
    chunk_coords,
    chunk_key,
    corrupt,
    guard,
    key_exists,
)
from blox_env.datasets.store.schema import STATIC_METRICS
from blox_env.datasets.store.write import KEEP_CHUNKS, array_codecs
from blox_env.errors import (
    InvalidArgumentError,
    InvalidArgumentTypeError,
    StoreCorruptError,
    StoreError,
    StoreReadOnlyError,
)

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["TRACE_KIND", "TraceMixin"]

#: Root attribute ``kind`` of a trace store.
TRACE_KIND = "traces"
#: Trace-group attribute listing the column keys written (hidden from :meth:`TraceMixin.trace_attrs`).
COLUMNS_ATTR = "trace_columns"
#: Groups whose arrays make a benchmark's identity (with ``index`` and ``static/params``, ``static/flops``).
IDENTITY_GROUPS = ("runs", "latency", "env")


class TraceMixin:
    """Write, read and list search traces; benchmark identity and trace stores (a mixin of BloxStore)."""

    @property
    def traces(self: BloxStore) -> list[str]:
        """Names of the stored traces."""
        return self._children("traces", arrays=False)

    @property
    def is_trace_store(self: BloxStore) -> bool:
        """Whether this store was created by :meth:`open_traces` (root attribute ``kind: "traces"``)."""
        return self.attrs.get("kind") == TRACE_KIND

    # ------------------------------------------------------------------ writing
    def write_trace(self: BloxStore, name: str, records: Sequence[dict[str, Any]], *,
                    attrs: dict[str, Any] | None = None, replace: bool = False) -> None:
        """Store a search trace (one record per evaluation) as columns under ``traces/<name>``, all or nothing.

        Scalar fields become arrays; ``metrics`` dicts become ``metrics/<key>`` columns (NaN where absent).
        An existing trace ``name`` is refused unless ``replace=True`` (then swapped for the new one at once).
        Writing into a trace store takes its writer lock (until ``close()``) if this store object does not
        hold it yet.
        """
        self.check_writable()
        if self.is_trace_store and self._root is not None and self._lock is None:
            self.lock()  # a trace store has one writer: StoreBusyError naming the one that holds it
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise InvalidArgumentError(f"trace name must be non-empty, without '/' or a leading '.', got {name!r}")
        path = f"traces/{name}"
        existing = self._node(path)
        if existing is not None and not replace:
            raise InvalidArgumentError(f"store {self.location} already has a trace {name!r}: pass replace=True to "
                                       "replace it, or write the new trace under another name")
        columns: dict[str, list[Any]] = {}
        metric_keys = sorted({k for r in records for k in r.get("metrics", {})})
        for r in records:
            for key, value in r.items():
                if key != "metrics" and isinstance(value, (int, float, np.integer, np.floating)):
                    columns.setdefault(key, []).append(float(value))
            for key in metric_keys:
                columns.setdefault(f"metrics/{key}", []).append(float(r.get("metrics", {}).get(key, np.nan)))
        for key, values in columns.items():
            if len(values) != len(records):
                raise InvalidArgumentError(f"trace field {key!r} is missing from some records")
        user = dict(attrs or {})
        if COLUMNS_ATTR in user or "length" in user:
            raise InvalidArgumentError(f"trace attributes may not set {COLUMNS_ATTR!r} or 'length' (written by "
                                       "write_trace)")
        old_columns = self._trace_columns(path) if existing is not None else []
        for key in {*old_columns, *columns}:
            self._touch(f"{path}/{key}")

        def build(target: str) -> Any:
            if self._node(target) is not None and target != path:
                raise StoreError(f"temporary trace group {target} exists")
            if target == path and existing is not None:  # stores without swapping (zip, URLs): in place
                del self._group[path]
            grp = self._group.create_group(target, overwrite=True)
            for key, values in columns.items():
                arr = grp.create_array(key, shape=(len(values),), dtype="float64", chunks=(max(len(values), 1),),
                                       fill_value=np.nan, config=KEEP_CHUNKS, **array_codecs("float64"))
                arr[...] = np.asarray(values, dtype=np.float64)
            # the attributes last: a group without them is a trace whose writing was cut short
            grp.attrs.update({"length": len(records), COLUMNS_ATTR: sorted(columns), **user})
            return grp

        self._group.require_group("traces")
        self._build_and_swap(path, build, replace=replace)
        for key in {*old_columns, *columns}:
            self._nodes.pop(f"{path}/{key}", None)
            self._arrays.pop(f"{path}/{key}", None)
            self._meta_ok.discard(f"{path}/{key}")
        self._nodes.pop(path, None)
        self._listings.clear()

    # ------------------------------------------------------------------ reading
    def read_trace(self: BloxStore, name: str) -> dict[str, np.ndarray]:
        """Columns of a stored trace (see :meth:`write_trace`)."""
        path = f"traces/{name}"
        if not name or "/" in name or self._node(path) is None:
            raise InvalidArgumentError(f"no trace {name!r}: this store has {self.traces or 'none'}")
        return self._consistent(path, lambda: self._read_trace_once(path))

    def _read_trace_once(self: BloxStore, path: str) -> dict[str, np.ndarray]:
        out = {}
        for key in self._trace_columns(path):
            arr = self._node(f"{path}/{key}")
            with guard(self.location, f"array '{path}/{key}'"):
                if arr is None:
                    raise KeyError(f"{path}/{key} vanished while it was read")
                keys = [chunk_key(arr, c) for c in chunk_coords(arr)]
                check_chunk_files(arr, f"{path}/{key}", self.location, keys)
                absent = [k for k in keys if not key_exists(self._group.store, k)]
                out[key] = np.asarray(arr[...])
                legacy = not np.isnan(arr.fill_value)  # format-1 traces: fill 0, all-zero chunks never written
            if absent and not legacy:  # every chunk is written: an absent one is damage, not missing values
                raise corrupt(self.location, f"array '{path}/{key}' chunk {', '.join(absent)}", "the chunk is missing")
        return out

    def trace_attrs(self: BloxStore, name: str) -> dict[str, Any]:
        """Attributes of a stored trace (``length`` and what the writer added)."""
        node = self._node(f"traces/{name}") if name and "/" not in name else None
        if node is None:
            raise InvalidArgumentError(f"no trace {name!r}: this store has {self.traces or 'none'}")
        with guard(self.location, f"metadata of trace {name!r}"):
            attrs = dict(node.attrs)
        attrs.pop(COLUMNS_ATTR, None)
        return attrs

    def trace_problems(self: BloxStore, name: str) -> list[str]:
        """What makes a stored trace torn (empty when it is complete): no attributes, columns missing or of a
        length other than its ``length``. Reads metadata only."""
        path = f"traces/{name}"
        node = self._node(path)
        if node is None:
            return [f"trace {name!r} does not exist"]
        with guard(self.location, f"metadata of trace {name!r}"):
            attrs = dict(node.attrs)
        try:
            columns = self._trace_columns(path)
        except StoreCorruptError as exc:
            return [str(exc)]
        shapes = {}
        for key in columns:
            arr = self._node(f"{path}/{key}")
            shapes[key] = tuple(int(s) for s in arr.shape)
        return trace_group_problems(name, attrs, shapes)

    def trace_runs(self: BloxStore) -> dict[str, dict[str, Any]]:
        """The finished traces (complete, see :meth:`trace_problems`) and their attributes, by name: a rerun of
        the same searches skips these; torn traces are left out (``blox data verify`` reports them)."""
        out = {}
        for name in self.traces:
            if not self.trace_problems(name):
                out[name] = self.trace_attrs(name)
        return out

    def _trace_columns(self: BloxStore, path: str) -> list[str]:
        """Column keys of a stored trace (``metrics/<key>`` for metric columns)."""
        out = self._children(path, arrays=True)
        groups = ["metrics"]
        while groups:  # metric keys may hold '/' (``latency/<device>``): nested groups under metrics/
            group = groups.pop()
            out += [f"{group}/{k}" for k in self._children(f"{path}/{group}", arrays=True)]
            groups += [f"{group}/{g}" for g in self._children(f"{path}/{group}", arrays=False)]
        return out

    # ------------------------------------------------------------------ trace stores
    def benchmark_identity(self: BloxStore) -> dict[str, Any]:
        """What makes two stores the same benchmark for a search: ``{"name", "n_rows", "digest", "arrays"}``.

        ``digest`` is a sha256 over the path, shape, dtype and value checksum of every array a search reads
        (``index``, ``runs/*/*``, ``static/params``, ``static/flops``, ``latency/*``, ``env/*``), taken from the
        recorded checksums (computed where an array has none); ``arrays`` counts them. Blockwise tables, block
        weights, other ``static`` columns (proxies) and traces are not part of it.
        """
        sums = self.attrs.get(CHECKSUMS_ATTR) or {}
        parts = []
        for path in self._identity_paths():
            entry = sums.get(path) if path not in self._dirty else None
            if not isinstance(entry, dict) or "sha256" not in entry:
                node = self._node(path)
                entry = array_digest(node, path, self.location)
            parts.append([path, entry.get("sha256"), list(entry.get("shape") or []), entry.get("dtype")])
        digest = hashlib.sha256(json.dumps([self.name, parts], sort_keys=True).encode()).hexdigest()
        return {"name": self.name, "n_rows": len(self), "digest": digest, "arrays": len(parts)}

    def _identity_paths(self: BloxStore) -> list[str]:
        paths = ["index"] + [f"static/{m}" for m in STATIC_METRICS if f"static/{m}" in self.metric_paths()]
        for run in self.runs:
            paths += [f"runs/{run}/{m}" for m in self._children(f"runs/{run}", arrays=True)]
        for grp in ("latency", "env"):
            paths += [f"{grp}/{a}" for a in self._children(grp, arrays=True)]
        return paths

    def check_traces_of(self: BloxStore, benchmark: BloxStore, *, writable: bool = True) -> None:
        """Refuse (InvalidArgumentError) unless this store is a trace store of ``benchmark``; with ``writable``
        also unless it is open for writing and holds its writer lock (see :meth:`open_traces`)."""
        if not self.is_trace_store:
            what = "a benchmark store (it has training runs)" if self.runs else "not a trace store"
            raise InvalidArgumentError(f"{self.location} is {what}: search traces go to a trace store of their own "
                                       "(create one with BloxStore.open_traces / `--traces NEW_FOLDER`)")
        mine = self.attrs.get("benchmark") or {}
        theirs = benchmark.benchmark_identity()
        if mine.get("digest") != theirs["digest"]:
            raise InvalidArgumentError(
                f"trace store {self.location} belongs to benchmark {mine.get('name')!r} "
                f"({mine.get('location', 'location unknown')}, identity {str(mine.get('digest'))[:12]}), not to "
                f"{theirs['name']!r} at {benchmark.location} (identity {theirs['digest'][:12]}): use another trace "
                "store for this benchmark"
            )
        if writable:
            if self.mode == "r":
                raise StoreReadOnlyError(f"trace store {self.location} is open read-only: open it with "
                                         "BloxStore.open_traces to add traces")
            if self._lock is None:
                raise InvalidArgumentError(f"trace store {self.location} is not locked for writing: open it with "
                                           "BloxStore.open_traces (or call .lock()) first")

    @classmethod
    def open_traces(cls: type[BloxStore], location: str | os.PathLike[str], *, benchmark: BloxStore,
                    mode: str = "a", create: bool = True, lock_timeout: float = 0.0) -> BloxStore:
        """Open (or create) the trace store of ``benchmark`` at ``location``, a local folder.

        ``mode="a"`` (default) opens it for writing and takes its writer lock (another writer waits up to
        ``lock_timeout`` seconds, then gets StoreBusyError naming the holder); ``mode="r"`` reads. A missing
        store is created (``create=True``) as a trace store: the benchmark's ``index``, root attributes
        ``kind: "traces"`` and ``benchmark`` (its :meth:`benchmark_identity` and location). Refused: the bundled
        Blox-mini, the benchmark itself, a zip or URL, a benchmark store (one with runs), any other store or
        file, a location that cannot be written, and a trace store of another benchmark (the message names
        it). The lock is released by ``close()``. Temporary trace groups left by a killed writer are removed
        (with the lock held, no other writer can be building them).
        """
        from blox_env.datasets.store.location import (
            atomic_directory,
            bundled_mini_path,
            commit_directory,
            discard_directory,
            is_blox_store,
        )
        from blox_env.datasets.store.lock import WriterLock

        if not isinstance(benchmark, cls):
            raise InvalidArgumentTypeError(f"benchmark must be an open BloxStore, got {type(benchmark).__name__}")
        if benchmark.is_trace_store:
            raise InvalidArgumentError(f"benchmark {benchmark.location} is a trace store, not a benchmark: pass the "
                                       "benchmark store the searches read")
        if mode not in ("r", "a"):
            raise InvalidArgumentError(f"mode must be 'r' or 'a', got {mode!r}")
        if not isinstance(location, (str, os.PathLike)) or (isinstance(location, str) and
                                                             ("://" in location or not location.strip())):
            raise InvalidArgumentError(f"a trace store is a local folder path, got {location!r}")
        path = Path(location).expanduser()
        target = path.resolve()
        mini = bundled_mini_path()
        if mini is not None and target == mini.resolve():
            raise InvalidArgumentError(f"{path} is the bundled Blox-mini benchmark: traces go to a store of their "
                                       "own (e.g. --traces traces.zarr)")
        if "://" not in benchmark.location and target == Path(benchmark.location).resolve():
            raise InvalidArgumentError(f"{path} is the benchmark itself ({benchmark.name!r}): traces go to a store "
                                       "of their own (e.g. --traces traces.zarr)")
        if path.suffix == ".zip" or (path.exists() and not path.is_dir()):
            raise InvalidArgumentError(f"{path} is a file: a trace store is a folder (a zip cannot be updated "
                                       "safely); choose a folder such as traces.zarr")
        if mode == "r":
            store = cls.open(path, mode="r")
            store.check_traces_of(benchmark, writable=False)
            return store
        parent = path.absolute().parent
        if not parent.is_dir():
            raise InvalidArgumentError(f"cannot create trace store {path}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise StoreReadOnlyError(f"trace store {path} cannot be written (no write permission)")
        lock = WriterLock(path, timeout=lock_timeout).acquire()
        try:
            if not is_blox_store(path):
                if not create:
                    raise InvalidArgumentError(f"no trace store at {path} (pass create=True to create one)")
                identity = {**benchmark.benchmark_identity(), "location": benchmark.location}
                tmp = atomic_directory(path, overwrite=True)  # not a store here: replaces only an empty folder
                try:
                    new = cls.create(tmp, index=benchmark.index, name=f"{benchmark.name} traces",
                                           provenance={"benchmark": identity}, overwrite=True)
                    new.set_attrs(kind=TRACE_KIND, benchmark=identity)
                    new.close()
                    commit_directory(tmp, path)
                except BaseException:
                    discard_directory(tmp)
                    raise
            store = cls.open(path, mode="a")
            try:
                store.adopt_lock(lock)
                store.check_traces_of(benchmark)
                _remove_stale_temporaries(path / "traces")
            except BaseException:
                store.adopt_lock(None)  # the lock is released below, once
                store.close(checksums=False)
                raise
        except BaseException:
            lock.release()
            raise
        return store


def _remove_stale_temporaries(folder: Path) -> None:
    """Hidden trace groups left by a killed writer: every writer of a trace store holds its lock, so with the
    lock in hand they are certainly stale."""
    import shutil

    from blox_env.datasets.store.swap import TMP_PREFIX

    if folder.is_dir():
        for tmp in folder.glob(TMP_PREFIX + "*"):
            shutil.rmtree(tmp, ignore_errors=True)


def trace_group_problems(name: str, attrs: dict[str, Any] | None, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Why a trace group is torn, from its attributes and its columns' shapes (shared with ``verify``)."""
    out = []
    if not attrs or "length" not in attrs:
        return [f"trace {name!r} has no attributes (no 'length'): its writing was cut short; write it again"]
    length = attrs["length"]
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        return [f"trace {name!r}: attribute length {length!r} is not a count"]
    listed = attrs.get(COLUMNS_ATTR)
    if isinstance(listed, list):
        missing = sorted(set(map(str, listed)) - set(shapes))
        if missing:
            out.append(f"trace {name!r} lacks {len(missing)} of its {len(listed)} columns "
                       f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): torn; write it again")
    bad = sorted(k for k, s in shapes.items() if s != (length,))
    if bad:
        out.append(f"trace {name!r}: column(s) {', '.join(bad[:5])} do not hold its {length} records "
                   f"(shape {shapes[bad[0]]}): torn; write it again")
    return out
