"""Low-level reads of :class:`~blox_env.datasets.store.core.BloxStore`: rows, nodes, arrays and cached chunks.

This is the store's read boundary: every metadata lookup goes through
:meth:`ReadMixin._node` / :meth:`ReadMixin._children` and every chunk decode
through :meth:`ReadMixin._block`, so damage surfaces as one
``StoreCorruptError`` and an absent chunk reads as missing (see
:mod:`.integrity`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from blox_env.datasets.store.bounds import META_LIMIT, file_problem
from blox_env.datasets.store.encoding import Encoding, running_best
from blox_env.datasets.store.integrity import (
    CHECKSUMS_ATTR,
    block_chunk_coords,
    chunk_key,
    corrupt,
    get_bytes,
    guard,
    is_run_group,
    key_exists,
    list_dir,
    list_keys,
    meta_digest,
    meta_key,
    present_chunks,
    shape_problem,
    warn_absent,
)
from blox_env.datasets.store.swap import TMP_PREFIX
from blox_env.errors import (
    ArchitectureNotFoundError,
    InvalidArchitectureError,
    InvalidArgumentError,
    StoreBusyError,
    StoreCorruptError,
    StoreError,
)
from blox_env.space import N_MODELS, Arch, parse_arch

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["ReadMixin"]

T = TypeVar("T")
#: How long a reader retries a read that failed while another process was writing that array.
BUSY_RETRY_S = 2.0


class ReadMixin:
    """Rows, metadata nodes and chunk reads (a mixin of BloxStore)."""

    # ------------------------------------------------------------------ rows
    def _row_or_none(self: BloxStore, model_index: int) -> int | None:
        if self._full:
            return model_index
        pos = int(np.searchsorted(self.index, model_index))
        return pos if pos < len(self.index) and self.index[pos] == model_index else None

    def rows(self: BloxStore, archs: Any) -> np.ndarray:
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

    def _row(self: BloxStore, arch: Any) -> int:
        i = arch.index if isinstance(arch, Arch) else parse_arch(arch).index
        row = self._row_or_none(i)
        if row is None:
            raise ArchitectureNotFoundError(f"model {i} is not in store {self.name!r} ({len(self)} models)")
        return row

    # ------------------------------------------------------------------ metadata nodes
    def _node(self: BloxStore, path: str) -> Any:
        """The zarr group or array at ``path``, or None when there is none; damaged metadata raises.

        A read-only store's tree cannot change through it, so its nodes are looked up once (each lookup is a
        metadata read and parse: a store query or ``gym.make`` would otherwise repeat dozens of them); like its
        run and array caches, it sees another writer's new nodes after reopening.
        """
        if self.mode == "r":
            if path in self._nodes:
                return self._nodes[path]
            node = self._nodes[path] = self._lookup_node(path)
            return node
        return self._lookup_node(path)

    def _lookup_node(self: BloxStore, path: str) -> Any:
        """One metadata lookup (uncached): the node, None when absent, StoreCorruptError when damaged."""
        problem = file_problem(self._group.store, meta_key(path), META_LIMIT)
        if problem:
            raise corrupt(self.location, f"metadata of {path!r}", problem)
        with guard(self.location, f"metadata of {path!r}"):
            try:
                node = self._group[path]
            except KeyError:
                if key_exists(self._group.store, f"{path}/zarr.json"):
                    raise  # the metadata exists but is incomplete: damage
                return None
        if hasattr(node, "chunks"):
            self._check_meta(path)
        return node

    def _check_meta(self: BloxStore, path: str) -> None:
        """An array's ``zarr.json`` against the ``meta`` checksum recorded when it was written (once per array
        and store object): an edited encoding or fill value raises StoreCorruptError instead of reading as
        wrong numbers. Arrays without a recorded ``meta`` (older stores, arrays written in this session) pass."""
        if path in self._meta_ok or path in self._dirty:
            return
        entry = (self.attrs.get(CHECKSUMS_ATTR) or {}).get(path)
        want = entry.get("meta") if isinstance(entry, dict) else None
        if want is not None:
            got = meta_digest(self._group.store, path, self.location)
            if got != want:
                fresh = self._fresh_checksum(path)  # another process may have rewritten it since we opened
                if fresh is not None and fresh.get("meta") not in (None, got):
                    raise corrupt(self.location, f"metadata of array {path!r}",
                                  f"{path}/zarr.json differs from the checksum recorded when the array was "
                                  "written: edited after writing")
        self._meta_ok.add(path)

    def _fresh_checksum(self: BloxStore, path: str) -> dict[str, Any] | None:
        """The checksum entry of ``path`` as the root metadata holds it now (None when it has none)."""
        problem = file_problem(self._group.store, "zarr.json", META_LIMIT)
        if problem:
            raise corrupt(self.location, "the root metadata", problem)
        with guard(self.location, "the root metadata zarr.json"):
            raw = get_bytes(self._group.store, "zarr.json")
            doc = json.loads(raw) if raw else {}
        entry = ((doc.get("attributes") or {}).get(CHECKSUMS_ATTR) or {}).get(path)
        return entry if isinstance(entry, dict) else None

    def _children(self: BloxStore, path: str, *, arrays: bool) -> list[str]:
        """Names of the arrays (or groups) directly under group ``path``; a child without metadata raises.

        Listed once per read-only store (see :meth:`_node`).
        """
        cached = self._listings.get((path, arrays)) if self.mode == "r" else None
        if cached is not None:
            return list(cached)
        if self._node(path) is None:
            return []
        out = []
        with guard(self.location, f"the listing of {path!r}"):
            names = list_dir(self._group.store, path)
        for name in sorted(names):
            if name == "zarr.json" or name.startswith("."):  # hidden: a node being built (see .swap)
                continue
            child = f"{path}/{name}"
            node = self._node(child)
            if node is None:
                with guard(self.location, f"the listing of {child!r}"):
                    if not list_keys(self._group.store, f"{child}/"):
                        continue  # an empty folder left by a deletion, not a node
                raise corrupt(self.location, f"node {child!r}", f"{child}/zarr.json is missing")
            if hasattr(node, "chunks") == arrays:
                out.append(name)
        if self.mode == "r":
            self._listings[(path, arrays)] = tuple(out)
        return out

    def metric_paths(self: BloxStore) -> set[str]:
        """``static/...`` and ``latency/...`` arrays (listed once; writes reset the cache)."""
        if self._paths is None:
            self._paths = {f"{grp}/{k}" for grp in ("static", "latency") for k in self._children(grp, arrays=True)}
        return self._paths

    # ------------------------------------------------------------------ arrays and chunks
    def _array(self: BloxStore, path: str) -> tuple[Any, Encoding, int]:
        """(zarr array, encoding, model axis) of a stored array, cached; shape checked against the store."""
        entry = self._arrays.get(path)
        if entry is None:
            self._gens[path] = self._generation(path)  # before the metadata is read: a rewrite then shows
            arr = self._node(path)
            if arr is None or not hasattr(arr, "chunks"):
                raise InvalidArgumentError(f"store {self.name!r} has no array {path!r}")
            parent = self._node(path.rsplit("/", 1)[0]) if "/" in path else None
            with guard(self.location, f"metadata of array {path!r}"):
                attrs = dict(arr.attrs)
                run_attrs = dict(parent.attrs) if parent is not None else None
            try:
                enc = Encoding.from_attrs(attrs.get("encoding", {"kind": "raw", "dtype": str(arr.dtype)}))
            except StoreError as exc:
                raise corrupt(self.location, f"array {path!r}", str(exc)) from None
            problem = shape_problem(path, arr.shape, n_rows=len(self.index),
                                    run_attrs=run_attrs if is_run_group(run_attrs) else None)
            if problem:
                raise corrupt(self.location, f"array {path!r}", problem)
            if self.mode != "r":  # keep every chunk on disk, even an all-missing one (absent = damage)
                arr = arr.with_config({"write_empty_chunks": True})
            entry = (arr, enc, 0 if arr.ndim == 1 else 1)
            self._arrays[path] = entry
        return entry

    def _block(self: BloxStore, path: str, seed_pos: int, chunk: int, best: str | None = None) -> np.ndarray:
        """One chunk of stored values along the model axis, cached; ``best`` = running max/min."""
        key = (path, seed_pos, chunk, best)
        block = self._chunks.get(key)
        if block is None:
            if best is None:
                block = self._consistent(path, lambda: self._read_block(path, *self._array(path), seed_pos, chunk))
            else:
                block = running_best(self._block(path, seed_pos, chunk), self._array(path)[1], best)
            self._chunks[key] = block
        return block

    # ------------------------------------------------------------------ readers beside a writer
    def _generation(self: BloxStore, path: str) -> tuple[int, ...] | None:
        """Identity of the array now at ``path`` of a local folder store (its ``zarr.json`` file: a writer
        swaps in a new folder, so a new file); None for zip and URL stores, which no one rewrites in place."""
        if self._root is None:
            return None
        try:
            st = os.stat(os.path.join(self._root, path, "zarr.json"))
        except OSError:
            return (-1,)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _forget(self: BloxStore, path: str) -> None:
        """Drop everything cached about one array or group and the nodes under it (rewritten by another
        process)."""
        under = path + "/"
        for cache in (self._arrays, self._nodes, self._gens):
            for key in [k for k in cache if k == path or k.startswith(under)]:
                del cache[key]
        for key in [k for k in self._listings if k[0] == path or k[0].startswith(under)]:
            del self._listings[key]
        self._meta_ok = {p for p in self._meta_ok if p != path and not p.startswith(under)}
        self._chunks = {k: v for k, v in self._chunks.items() if k[0] != path and not k[0].startswith(under)}

    def _being_written(self: BloxStore, path: str) -> str | None:
        """Who is writing this array now (a description), or None when nothing says a write is under way."""
        if self._root is None:
            return None
        from blox_env.datasets.store.lock import lock_holder

        owner = lock_holder(self._root)
        if owner is not None and owner.get("pid") != os.getpid():
            return f"pid {owner.get('pid')} on {owner.get('host')}" if owner else "another process"
        parent = os.path.join(self._root, path.rsplit("/", 1)[0] if "/" in path else "")
        name = path.rsplit("/", 1)[-1]
        try:
            siblings = os.listdir(parent)
        except OSError:
            siblings = []
        if any(n.startswith(f"{TMP_PREFIX}{name}-") for n in siblings):
            return "another process"
        return None

    def _consistent(self: BloxStore, path: str, read: Callable[[], T]) -> T:
        """Run ``read`` (metadata and chunks of one array) so that it sees one version of the array.

        In a local folder another process may swap in a new version at any moment (see :mod:`.swap`): a read
        during which the array changed is repeated with fresh metadata. A read that fails while a writer is
        active is retried for up to :data:`BUSY_RETRY_S` seconds, then raises StoreBusyError ("being
        written") instead of calling the store damaged.
        """
        if self._root is None:
            return read()
        deadline = time.monotonic() + BUSY_RETRY_S
        while True:
            gen = self._generation(path)
            if path in self._gens and self._gens[path] != gen:
                self._forget(path)  # rewritten since its metadata was read
            try:
                out = read()
            except StoreCorruptError as exc:
                who = self._being_written(path) or (
                    "another process" if self._generation(path) != gen else None)
                if who is None:
                    raise
                if time.monotonic() >= deadline:
                    raise StoreBusyError(
                        f"store {self.location}: array {path!r} is being written by {who} and could not be read "
                        f"({exc}); this is not damage: read it again when the writer has finished"
                    ) from exc
                self._forget(path)
                time.sleep(0.02)
                continue
            if self._generation(path) == gen and self._gens.get(path, gen) == gen:
                return out
            self._forget(path)
            if time.monotonic() >= deadline:
                raise StoreBusyError(f"store {self.location}: array {path!r} is being rewritten by another "
                                     "process faster than it can be read; read it when the writer has finished")

    def _read_block(self: BloxStore, path: str, arr: Any, enc: Encoding, axis: int, seed_pos: int,
                    chunk: int) -> np.ndarray:
        """Decode one block; absent chunks become the missing sentinel (with a warning), damage raises."""
        size = arr.chunks[axis]
        sl = slice(chunk * size, (chunk + 1) * size)
        coords = block_chunk_coords(arr, axis, seed_pos, chunk)
        keys = [chunk_key(arr, c) for c in coords]
        with guard(self.location, f"array {path!r} chunk {keys[0] if len(keys) == 1 else keys}"):
            absent = [(c, k) for c, k, ok in zip(coords, keys, present_chunks(arr, path, self.location, keys))
                      if not ok]
            block = enc.unpack(arr[sl] if axis == 0 else arr[seed_pos, sl])
        if absent:
            lost = (path, tuple(k for _, k in absent))
            if lost not in self._warned:  # one warning per lost chunk and store object
                self._warned.add(lost)
                warn_absent(self.location, path, lost[1])
            block = np.array(block, copy=True)
            if len(absent) == len(coords) or enc.delta:  # a delta curve is lost whole with any of its chunks
                block[...] = enc.missing
            else:  # odd chunking along epochs: only the absent chunks' epochs are missing
                for c, _ in absent:
                    region = tuple(slice(i * n, (i + 1) * n) for i, n in zip(c[axis + 1:], arr.chunks[axis + 1:]))
                    block[(slice(None), *region)] = enc.missing
        return block

    def _gather(self: BloxStore, path: str, seed_pos: int, rows: np.ndarray, col: int | None = None,
                best: str | None = None) -> np.ndarray:
        """Stored values of ``rows`` (any order), optionally at one epoch column: all from one version of the
        array, even while another process rewrites it (see :meth:`_consistent`)."""
        return self._consistent(path, lambda: self._gather_once(path, seed_pos, rows, col, best))

    def _gather_once(self: BloxStore, path: str, seed_pos: int, rows: np.ndarray, col: int | None,
                     best: str | None) -> np.ndarray:
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
