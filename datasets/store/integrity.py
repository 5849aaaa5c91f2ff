"""Store integrity: damage is reported as damage, never read as plausible numbers.

Rules every reader of a :class:`~blox_env.datasets.store.core.BloxStore` follows:

- Every metadata read and every chunk decode goes through :func:`guard`, so a
  truncated or garbage chunk, an invalid or empty ``zarr.json`` or an edited
  shape surfaces as one :class:`~blox_env.errors.StoreCorruptError` naming the
  array (and chunk) and how to recover.
- An absent chunk of a data array decodes as missing (NaN) whatever its fill
  value, with a :class:`StoreDamageWarning`; ``blox data verify``/``info``
  report it. Arrays written since store format 2 carry ``fill_missing`` (the
  fill value is the missing sentinel, every chunk is written), so for them an
  absent chunk is certainly damage; format-1 arrays filled with 0 are detected
  explicitly by checking the chunk's key before decoding.
- Every chunk written since format 2 ends with a ``crc32c`` codec (a standard
  Zarr v3 codec): truncation, garbage and flipped bits fail on read. Format-1
  blosc chunks have no checksum; their blosc header is checked against the
  chunk's size, because a truncated chunk stored uncompressed by blosc would
  otherwise decode past its end into plausible numbers.
- ``index`` is validated on open (integer, 1-D, sorted, unique, in range, the
  length recorded as ``n_rows``, every chunk present; its fill value -1 can
  never pass) and any failure raises ``StoreCorruptError``.
- Checksums: root attribute ``checksums = {path: {sha256, shape, dtype,
  chunks, meta}}``, a sha256 over the decoded values (little-endian, C order) of
  every present chunk in chunk-grid order, each prefixed by its chunk key, and
  ``meta``, a sha256 of the array's ``zarr.json`` (canonical JSON: sorted keys,
  no spaces), so an edited encoding, fill value or codec list is damage too.
  Reading an array checks its metadata against ``meta`` once per array and
  store object (a mismatch raises ``StoreCorruptError``); entries written before
  ``meta`` existed are read as before and ``verify --deep`` says their
  metadata is unchecked. A format-2 store without a checksum table fails deep
  verification.
- Bounded reads: every chunk and metadata file is size-checked before it is
  read (see :mod:`.bounds`). A
  writable store drops an array's entry the moment it first writes to it and
  records it again on :meth:`BloxStore.close`, so a crash leaves the array
  unchecked rather than falsely damaged. Only the benchmark tables carry
  checksums (``index``, ``runs``, ``static``, ``latency``, ``env``,
  ``traces`` and runs nested under ``blockwise``), not block-library weights.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.datasets.store.bounds import META_LIMIT, file_problem, max_chunk_bytes
from blox_env.datasets.store.schema import INDEX_FILL
from blox_env.errors import BloxError, StoreCorruptError
from blox_env.space import N_MODELS

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = [
    "CHECKSUMS_ATTR",
    "ChecksumMixin",
    "RECOVERY",
    "StoreDamageWarning",
    "array_digest",
    "chunk_coords",
    "chunk_key",
    "guard",
    "index_problems",
    "list_keys",
    "meta_digest",
    "record_checksums",
    "shape_problem",
    "table_array_paths",
]

CHECKSUMS_ATTR = "checksums"
RECOVERY = ("recover by re-importing the release (`blox data import FOLDER --out STORE --overwrite`) or "
            "rebuilding the store (`blox build ...`; reinstall blox-env for the bundled Blox-mini)")
#: Top-level groups whose arrays are benchmark tables (checksummed, shapes checked against ``index``).
TABLE_GROUPS = ("runs", "static", "latency", "env", "traces")


class StoreDamageWarning(UserWarning):
    """A store chunk is absent: its rows read as missing (NaN)."""


def corrupt(location: str, what: str, detail: str) -> StoreCorruptError:
    """The one error for damaged data or metadata, naming the store, the array/chunk and the way back."""
    return StoreCorruptError(f"store {location}: {what} is damaged ({detail}); {RECOVERY}")


@contextmanager
def guard(location: str, what: str) -> Iterator[None]:
    """Turn any decoding or metadata failure inside the block into :class:`StoreCorruptError`."""
    try:
        yield
    except (BloxError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - the read boundary: every failure below is damage
        raise corrupt(location, what, f"{type(exc).__name__}: {exc}") from exc


def sync(coro: Any) -> Any:
    """Run one of zarr's store coroutines."""
    from zarr.core.sync import sync as _sync

    return _sync(coro)


def list_keys(zstore: Any, prefix: str = "") -> list[str]:
    """Every key under ``prefix`` of an open zarr store (:func:`~.location.zarr_store` opens zip stores)."""

    async def collect() -> list[str]:
        return [k async for k in (zstore.list_prefix(prefix) if prefix else zstore.list())]

    return sync(collect())


def list_dir(zstore: Any, prefix: str) -> list[str]:
    """Names directly under ``prefix`` (a node path; ``""`` for the root)."""

    async def collect() -> list[str]:
        return [k async for k in zstore.list_dir(prefix)]

    return sync(collect())


def key_exists(zstore: Any, key: str) -> bool:
    return bool(sync(zstore.exists(key)))


def get_bytes(zstore: Any, key: str) -> bytes | None:
    """Raw bytes stored under ``key`` (None when absent)."""
    from zarr.core.buffer import default_buffer_prototype

    buf = sync(zstore.get(key, prototype=default_buffer_prototype()))
    return None if buf is None else buf.to_bytes()


def needs_header_check(arr: Any) -> bool:
    """Blosc-compressed without a crc32c checksum (format-1 arrays): chunk sizes are checked by hand."""
    names = [c.to_dict().get("name") for c in arr.metadata.codecs]
    return "blosc" in names and "crc32c" not in names


def header_problem(arr: Any, raw: bytes) -> str | None:
    """Why a blosc chunk's bytes cannot be its array's chunk (size disagrees with its header), or None."""
    if len(raw) < 16:
        return f"{len(raw)} bytes, shorter than a blosc header"
    nbytes, cbytes = int.from_bytes(raw[4:8], "little"), int.from_bytes(raw[12:16], "little")
    want = int(np.prod(arr.chunks)) * np.dtype(arr.dtype).itemsize
    if cbytes != len(raw):
        return f"{len(raw)} bytes where its blosc header says {cbytes}: truncated or overwritten"
    if nbytes != want:
        return f"its blosc header says {nbytes} bytes decoded, a chunk holds {want}"
    return None


def present_chunks(arr: Any, path: str, location: str, keys: Sequence[str]) -> list[bool]:
    """Which of ``keys`` exist; format-1 blosc chunks are also size-checked (StoreCorruptError)."""
    zstore = arr.store_path.store
    check_chunk_files(arr, path, location, keys)
    if not needs_header_check(arr):
        return [key_exists(zstore, k) for k in keys]
    out = []
    for key in keys:
        raw = get_bytes(zstore, key)
        problem = None if raw is None else header_problem(arr, raw)
        if problem:
            raise corrupt(location, f"array {path!r} chunk {key}", problem)
        out.append(raw is not None)
    return out


def check_chunk_files(arr: Any, path: str, location: str, keys: Sequence[str]) -> None:
    """Refuse (StoreCorruptError) chunk files an array cannot hold: too large, not a file, outside the store."""
    zstore = arr.store_path.store
    limit = max_chunk_bytes(arr)
    for key in keys:
        problem = file_problem(zstore, key, limit)
        if problem:
            raise corrupt(location, f"array {path!r} chunk {key}", problem)


def meta_key(path: str) -> str:
    """Key of a node's metadata file."""
    return f"{path}/zarr.json" if path else "zarr.json"


def meta_digest(zstore: Any, path: str, location: str) -> str | None:
    """sha256 of a node's ``zarr.json`` as canonical JSON (None when absent); a file that cannot be a
    metadata file (too large, outside the store) or does not parse raises StoreCorruptError."""
    key = meta_key(path)
    problem = file_problem(zstore, key, META_LIMIT)
    if problem:
        raise corrupt(location, f"metadata of {path or 'the root'!r}", problem)
    with guard(location, f"metadata {key}"):
        raw = get_bytes(zstore, key)
        if raw is None:
            return None
        doc = json.loads(raw)
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canon.encode()).hexdigest()


def chunk_key(arr: Any, coords: Sequence[int]) -> str:
    """Store key of one chunk of a zarr array."""
    base = arr.store_path.path
    ck = arr.metadata.encode_chunk_key(tuple(coords))
    return f"{base}/{ck}" if base else ck


def chunk_coords(arr: Any) -> Iterator[tuple[int, ...]]:
    """Every chunk coordinate of an array, in grid order."""
    return itertools.product(*(range(n) for n in arr.cdata_shape))


def block_chunk_coords(arr: Any, axis: int, seed_pos: int, chunk: int) -> list[tuple[int, ...]]:
    """Chunk coordinates covering one store block (chunk ``chunk`` along the model axis, one seed)."""
    grid = arr.cdata_shape
    if axis == 0:
        return [(chunk, *c) for c in itertools.product(*(range(n) for n in grid[1:]))]
    head = (seed_pos // arr.chunks[0],)
    return [(*head, chunk, *c) for c in itertools.product(*(range(n) for n in grid[2:]))]


def warn_absent(location: str, path: str, keys: Iterable[str]) -> None:
    warnings.warn(
        f"store {location}: array {path!r}: chunk {', '.join(keys)} is missing, its rows read as missing (NaN); "
        f"{RECOVERY}",
        StoreDamageWarning, stacklevel=4,
    )


# ---------------------------------------------------------------------- index and shapes
def index_problems(arr: Any, values: np.ndarray | None, *, expected: int | None, absent: Sequence[str]) -> list[str]:
    """What is wrong with a store's ``index`` array (empty when it is valid)."""
    out = []
    if np.dtype(arr.dtype).kind not in "iu" or arr.ndim != 1:
        out.append(f"dtype {arr.dtype} and {arr.ndim} dimension(s), expected a 1-D integer array")
    if absent:
        out.append(f"chunk {', '.join(absent)} is missing")
    if expected is not None and arr.shape[0] != expected:
        out.append(f"{arr.shape[0]} rows, the store was written with {expected}")
    if values is None or out:
        return out
    if values.size == 0:
        out.append("no rows")
    elif np.any(values == INDEX_FILL) or values.min() < 0 or values.max() >= N_MODELS:
        out.append(f"values outside 0..{N_MODELS - 1}")
    elif np.any(np.diff(values) <= 0):
        out.append("values not sorted strictly increasing")
    return out


def read_index(group: Any, zstore: Any, location: str, *, expected: int | None) -> np.ndarray:
    """The validated ``index`` of a store (StoreCorruptError if absent, damaged or invalid)."""
    with guard(location, "array 'index'"):
        if not key_exists(zstore, "index/zarr.json"):
            raise corrupt(location, "array 'index'", "its metadata index/zarr.json is missing")
        arr = group["index"]
        check_chunk_files(arr, "index", location, [chunk_key(arr, c) for c in chunk_coords(arr)])
        absent = [chunk_key(arr, c) for c in chunk_coords(arr) if not key_exists(zstore, chunk_key(arr, c))]
        values = None if absent or arr.ndim != 1 else np.asarray(arr[:], dtype=np.int64)
    problems = index_problems(arr, values, expected=expected, absent=absent)
    if problems:
        raise corrupt(location, "array 'index'", "; ".join(problems))
    return values


def is_table_array(path: str, parent_attrs: dict[str, Any] | None) -> bool:
    """Arrays of the benchmark tables (vs block-library weights and signatures)."""
    top = path.split("/", 1)[0]
    return path == "index" or top in TABLE_GROUPS or is_run_group(parent_attrs)


def is_run_group(attrs: dict[str, Any] | None) -> bool:
    return bool(attrs) and "seeds" in attrs and "epochs" in attrs


def shape_problem(path: str, shape: Sequence[int], *, n_rows: int, run_attrs: dict[str, Any] | None) -> str | None:
    """Why an array's shape does not fit the store (rows), its run (seeds, epochs), or None."""
    shape = tuple(int(s) for s in shape)
    top = path.split("/", 1)[0]
    if top == "traces" or path == "index" or not shape:
        return None
    axis = 0 if len(shape) == 1 else 1
    if shape[axis] != n_rows:
        return f"shape {shape} has {shape[axis]} rows along the model axis, the index has {n_rows}"
    if is_run_group(run_attrs):
        seeds, epochs = len(run_attrs["seeds"]), int(run_attrs["epochs"])
        if len(shape) not in (2, 3) or shape[0] != seeds or (len(shape) == 3 and shape[2] != epochs):
            return (f"shape {shape} does not match its run ({seeds} seeds x {n_rows} models"
                    f"{'' if len(shape) == 2 else f' x {epochs} epochs'})")
    return None


# ---------------------------------------------------------------------- checksums
def array_digest(arr: Any, path: str, location: str, *, present: set[str] | None = None) -> dict[str, Any]:
    """Checksum entry of one array: sha256 over every present chunk's decoded values and of its metadata
    (see the module doc)."""
    h = hashlib.sha256()
    n = 0
    look = present is None or needs_header_check(arr)  # ask the store (format-1 chunks: also check sizes)
    for coords in chunk_coords(arr):
        key = chunk_key(arr, coords)
        if present is not None and key not in present:
            continue
        check_chunk_files(arr, path, location, [key])
        with guard(location, f"array {path!r} chunk {key}"):
            if look and not present_chunks(arr, path, location, [key])[0]:
                continue
            data = np.ascontiguousarray(arr.get_block_selection(coords))
        h.update(key.encode())
        h.update(data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes())
        n += 1
    return {"sha256": h.hexdigest(), "shape": [int(s) for s in arr.shape], "dtype": str(arr.dtype), "chunks": n,
            "meta": meta_digest(arr.store_path.store, path, location)}


def table_array_paths(group: Any, location: str) -> list[str]:
    """Paths of every benchmark-table array of a store (see :func:`is_table_array`)."""
    out = []
    with guard(location, "the store's metadata"):
        members = dict(group.members(max_depth=None))
    for path, node in members.items():
        if not hasattr(node, "chunks") or any(part.startswith(".") for part in path.split("/")):
            continue  # groups, and arrays being built beside their final name (see .swap)
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        parent_attrs = dict(members[parent].attrs) if parent in members else None
        if is_table_array(path, parent_attrs):
            out.append(path)
    return sorted(out)


class ChecksumMixin:
    """Checksum recording of a writable BloxStore (a mixin; see the module docstring)."""

    def record_checksums(self: BloxStore, paths: Iterable[str] | None = None, *,
                         skip_damaged: bool = False) -> dict[str, Any]:
        """Compute and store the checksums of ``paths`` (default: every table array and every recorded path) of a
        writable store.

        Paths that no longer exist lose their entry; with ``skip_damaged`` an array that fails to decode
        is left unchecked (with a :class:`StoreDamageWarning`) instead of raising. Returns the checksum table.
        """
        self.check_writable()
        old = self.attrs.get(CHECKSUMS_ATTR) or {}
        # every table array, and every recorded path (so that entries of removed arrays go)
        todo = sorted(set(table_array_paths(self._group, self.location)) | set(old)) if paths is None \
            else list(paths)
        sums = dict(old)
        for path in todo:
            node = self._node(path)
            if node is None or not hasattr(node, "chunks"):
                sums.pop(path, None)
                continue
            try:
                sums[path] = array_digest(node, path, self.location)
            except StoreCorruptError as exc:
                if not skip_damaged:
                    raise
                sums.pop(path, None)
                warnings.warn(f"no checksum recorded for {path!r}: {exc}", StoreDamageWarning, stacklevel=3)
        if sums != old or CHECKSUMS_ATTR not in self.attrs:
            self._group.attrs[CHECKSUMS_ATTR] = sums
            self.attrs[CHECKSUMS_ATTR] = sums
        return sums

    def _finalise_checksums(self: BloxStore) -> None:
        """On close of a writable store: checksum the arrays written and every table array still without one
        (left by a session that crashed or never closed); damaged arrays stay unchecked. A format-1 store
        (no ``n_rows``) is only touched when this session wrote to it."""
        if not self._dirty and self.attrs.get("n_rows") is None:
            return
        sums = self.attrs.get(CHECKSUMS_ATTR) or {}
        try:
            unchecked = {p for p in table_array_paths(self._group, self.location) if p not in sums}
        except StoreCorruptError:
            unchecked = set()
        self.record_checksums(sorted(self._dirty | unchecked), skip_damaged=True)


def record_checksums(store: BloxStore, paths: Iterable[str] | None = None, *,
                     skip_damaged: bool = False) -> dict[str, Any]:
    """Function form of :meth:`ChecksumMixin.record_checksums` (see there)."""
    return store.record_checksums(paths, skip_damaged=skip_damaged)
