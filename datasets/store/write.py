"""Writing to a :class:`~blox_env.datasets.store.core.BloxStore`: runs, static costs, latency, env.

Traces are written by :mod:`.traces`, the ``blockwise/`` tree by :mod:`.blockwise_tree`.

Chunking serves the two access patterns: one model's row and one metric for
every model. Curves ``[S, N, E]`` are chunked ``(1, 4096, E)`` (a model's whole
curve lives in one chunk; a full column is ~23 chunks per seed); per-model
vectors use chunks of 32,768 rows. Integer curves are stored as differences
along epochs (the encoding's ``delta`` flag; curves change slowly from epoch
to epoch) and compressed with Blosc/zstd and byte shuffle: only standard Zarr
v3 codecs, so any Zarr reader can open the store.

Replacing an array (``write_metric``, ``write_static``, ...) builds the new one beside the old and swaps it
in (:mod:`.swap`), so a concurrent reader sees the old values or the new ones, never a mix or a gap.

Integrity (store format 2): every array's fill value is its encoding's missing
sentinel (``Encoding.fill_missing``) and every chunk is written, even an
all-missing one, so an absent chunk is damage and still decodes as missing.
The first write to an array in a session drops its checksum; ``close()``
records it again (see :mod:`.integrity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.datasets.store.encoding import Encoding, detect_encoding
from blox_env.datasets.store.integrity import CHECKSUMS_ATTR
from blox_env.datasets.store.swap import discard, swap_in, temp_name
from blox_env.errors import InvalidArgumentError, StoreReadOnlyError

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["CURVE_CHUNK_ROWS", "FLOPS_MACS", "FLOPS_OFFICIAL", "VECTOR_CHUNK_ROWS", "StoreWriter", "space_definition"]

CURVE_CHUNK_ROWS = 4096
VECTOR_CHUNK_ROWS = 32_768
#: What ``static/flops`` counts: our conv + linear multiply-accumulates (:mod:`blox_env.costs`) ...
FLOPS_MACS = "conv + linear MACs (blox_env.costs)"
#: ... or the official release's ``flops`` field (ptflops, which also counts BN, activations, pooling).
FLOPS_OFFICIAL = "official release flops field (ptflops: conv, linear, BN, activations, pooling)"


def space_definition() -> dict[str, Any]:
    """The search space, recorded in every store's attributes."""
    from blox_env.space import BLOCKS, N_BLOCKS, N_MODELS, N_STAGES, OPS

    return {
        "name": "blox",
        "stages": N_STAGES,
        "ops": list(OPS),
        "blocks": [[[a], [b, p, i, s]] for a, b, p, i, s in BLOCKS],
        "n_blocks": N_BLOCKS,
        "n_models": N_MODELS,
        "index": "b0 + 45*b1 + 2025*b2",
    }


#: Every chunk on disk, even one holding only missing values: an absent chunk is then always damage.
KEEP_CHUNKS = {"write_empty_chunks": True}


def array_codecs(dtype: str) -> dict[str, Any]:
    """Blosc/zstd with byte shuffle, then a crc32c checksum: a damaged chunk fails to decode."""
    from zarr.codecs import BloscCodec, Crc32cCodec

    # plain strings: zarr 3.1 parses them into its enums, zarr >= 3.4 deprecates the enums (same metadata)
    return {"compressors": [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"), Crc32cCodec()]}


class StoreWriter:
    """Write methods of BloxStore (a mixin; the store must be opened with mode 'w' or 'a')."""

    def check_writable(self: BloxStore) -> None:
        """Raise :class:`~blox_env.errors.StoreReadOnlyError` unless the store was opened for writing."""
        if self.mode == "r":
            raise StoreReadOnlyError(f"store {self.location} is open read-only: open it with mode='a' to write")

    def _new_array(self: BloxStore, path: str, values: np.ndarray | None, *, shape: tuple[int, ...],
                   model_axis: int, encoding: Encoding, attrs: dict[str, Any] | None = None) -> Any:
        encoding = replace(encoding, fill_missing=True)
        packed = None if values is None else encoding.pack(values)  # refuse bad values before touching the store
        self._touch(path)
        chunk_rows = CURVE_CHUNK_ROWS if len(shape) == 3 else VECTOR_CHUNK_ROWS
        chunks = tuple(1 if ax < model_axis else min(chunk_rows, n) if ax == model_axis else n
                       for ax, n in enumerate(shape))

        def build(target: str) -> Any:
            arr = self._group.create_array(
                target, shape=shape, chunks=chunks, dtype=encoding.dtype, fill_value=encoding.missing,
                overwrite=True, config=KEEP_CHUNKS, attributes={"encoding": encoding.to_attrs(), **(attrs or {})},
                **array_codecs(encoding.dtype),
            )
            arr[...] = packed if packed is not None else encoding.missing  # all missing: the sentinel everywhere
            return arr

        arr = self._build_and_swap(path, build)
        self._arrays.pop(path, None)
        self._nodes.pop(path, None)
        self._meta_ok.discard(path)
        self._paths = None
        self._invalidate(path)
        return arr

    def _build_and_swap(self: BloxStore, path: str, build: Any, *, replace: bool = True) -> Any:
        """Write a new node at ``path`` so that readers see the old node or the new one, never a part.

        In a local folder the node is built by ``build(target)`` under a hidden sibling name and swapped in
        (:mod:`.swap`); a failed build leaves the old node as it was and removes its temporary folder. Other
        stores (zip, URLs) are written in place. With ``replace=False`` a node that appeared at ``path``
        meanwhile (another process) is kept and InvalidArgumentError raised. Returns the node now at ``path``.
        """
        if self._root is None:
            return build(path)
        parent, name = path.rsplit("/", 1) if "/" in path else ("", path)
        tmp = f"{parent}/{temp_name(name)}" if parent else temp_name(name)
        if parent:
            self._group.require_group(parent)
        try:
            build(tmp)
            moved = swap_in(Path(self._root) / tmp, Path(self._root) / path, replace=replace)
        except BaseException:
            discard(Path(self._root) / tmp)
            raise
        if not moved:
            discard(Path(self._root) / tmp)
            raise InvalidArgumentError(f"store {self.location}: {path} was written by another process meanwhile: "
                                       "kept; write under another name (or pass replace=True)")
        return self._group[path]

    def _touch(self: BloxStore, path: str) -> None:
        """Before the first write to ``path`` in this session: drop its checksum (recorded again on close)."""
        if path in self._dirty:
            return
        self._dirty.add(path)
        sums = self.attrs.get(CHECKSUMS_ATTR)
        if isinstance(sums, dict) and path in sums:
            sums = {k: v for k, v in sums.items() if k != path}
            self._group.attrs[CHECKSUMS_ATTR] = sums
            self.attrs[CHECKSUMS_ATTR] = sums

    def _check_rows(self: BloxStore, values: np.ndarray, what: str) -> None:
        if values.shape[0] != len(self):
            raise InvalidArgumentError(f"{what} needs one value per model row ({len(self)}), got {values.shape[0]}")

    def create_run(self: BloxStore, name: str, *, seeds: Sequence[int], epochs: int,
                   attrs: dict[str, Any] | None = None, default: bool | None = None) -> None:
        """Create ``runs/<name>`` (a training protocol) with its seed labels and epoch count."""
        self.check_writable()
        if not name or ("/" in name and not name.startswith("blockwise/")):
            raise InvalidArgumentError(f"run name must be non-empty without '/' (or a blockwise/ path), got {name!r}")
        seeds = [int(s) for s in seeds]
        if not seeds or len(set(seeds)) != len(seeds):
            raise InvalidArgumentError(f"seeds must be a non-empty list of distinct integers, got {seeds}")
        if not isinstance(epochs, int) or epochs < 1:
            raise InvalidArgumentError(f"epochs must be a positive integer, got {epochs!r}")
        grp = self._group.require_group(self.run_path(name))
        grp.attrs.update({**(attrs or {}), "seeds": seeds, "epochs": epochs})
        self._runs.pop(name, None)
        if default or (default is None and not self.attrs.get("default_run") and "/" not in name):
            self._group.attrs["default_run"] = name
            self.attrs["default_run"] = name

    def set_run_attrs(self: BloxStore, run: str, **attrs: Any) -> None:
        """Update the attributes of an existing run (e.g. the builder's list of workers)."""
        self.check_writable()
        info = self.run_info(run)
        self._node(self.run_path(info.name)).attrs.update(attrs)
        self._runs.pop(info.name, None)

    def write_metric(self: BloxStore, run: str, metric: str, values: Any, *, encoding: Encoding | None = None,
                     split_sizes: dict[str, int] | None = None) -> None:
        """Write a whole metric: ``[S, N, E]`` for curves or ``[S, N]`` for final values (NaN = missing)."""
        self.check_writable()
        info = self.run_info(run)
        v = np.asarray(values, dtype=np.float64)
        if v.ndim not in (2, 3) or v.shape[0] != len(info.seeds) or v.shape[1] != len(self):
            raise InvalidArgumentError(
                f"{metric} must have shape [seeds={len(info.seeds)}, models={len(self)}(, epochs={info.epochs})], "
                f"got {v.shape}"
            )
        if v.ndim == 3 and v.shape[2] != info.epochs:
            raise InvalidArgumentError(f"{metric} has {v.shape[2]} epochs, run {run!r} has {info.epochs}")
        enc = encoding or detect_encoding(metric, v, sizes=split_sizes)
        self._new_array(f"{self.run_path(run)}/{metric}", v, shape=v.shape, model_axis=1, encoding=enc)
        self._runs.pop(run, None)

    def allocate_metric(self: BloxStore, run: str, metric: str, *, encoding: Encoding, per_epoch: bool) -> None:
        """Create an all-missing metric array to be filled row by row (see :meth:`write_rows`)."""
        self.check_writable()
        info = self.run_info(run)
        shape = (len(info.seeds), len(self), info.epochs) if per_epoch else (len(info.seeds), len(self))
        self._new_array(f"{self.run_path(run)}/{metric}", None, shape=shape, model_axis=1, encoding=encoding)
        self._runs.pop(run, None)

    def _seed_target(self: BloxStore, run: str, metric: str, seed: int) -> tuple[str, Any, Encoding, int]:
        """(path, array, encoding, seed position) of a metric array to write one seed into."""
        self.check_writable()
        info = self.run_info(run)
        if seed not in info.seeds:
            raise InvalidArgumentError(f"seed must be one of {list(info.seeds)}, got {seed!r}")
        path = f"{self.run_path(run)}/{metric}"
        arr, enc, _ = self._array(path)
        return path, arr, enc, info.seeds.index(seed)

    def _invalidate(self: BloxStore, path: str) -> None:
        self._chunks = {k: v for k, v in self._chunks.items() if k[0] != path}

    def write_seed(self: BloxStore, run: str, metric: str, values: Any, *, seed: int) -> None:
        """Write one seed's values for every row into an allocated metric array."""
        path, arr, enc, pos = self._seed_target(run, metric, seed)
        v = np.asarray(values, dtype=np.float64)
        if v.shape != arr.shape[1:]:
            raise InvalidArgumentError(f"{metric} of one seed must have shape {arr.shape[1:]}, got {v.shape}")
        packed = enc.pack(v)
        self._touch(path)
        arr[pos] = packed
        self._invalidate(path)

    def write_rows(self: BloxStore, run: str, metric: str, archs: Any, values: Any, *, seed: int) -> None:
        """Write some models' values of one seed into an existing metric array (one chunk write per chunk
        touched, so writing many rows at once costs about as much as writing one)."""
        path, arr, enc, pos = self._seed_target(run, metric, seed)
        rows = self.rows(archs)
        data = enc.pack(np.asarray(values, dtype=np.float64))
        if len(data) != len(rows):
            raise InvalidArgumentError(f"write_rows needs one value per model: {len(rows)} models, {len(data)} values")
        self._write_array_rows(path, arr, pos, np.asarray(rows), data)

    def _write_array_rows(self: BloxStore, path: str, arr: Any, pos: int, rows: np.ndarray, data: np.ndarray) -> None:
        """Write packed ``data`` at ``rows`` of slice ``pos`` of ``[S, N]`` array ``arr`` (at ``path``): one
        read-modify-write of the span of rows inside each chunk touched."""
        self._touch(path)
        if len(rows) == 1:
            arr[pos, int(rows[0])] = data[0]
        else:
            chunk = rows // arr.chunks[1]
            for c in np.unique(chunk).tolist():
                sel = np.flatnonzero(chunk == c)
                lo, hi = int(rows[sel].min()), int(rows[sel].max()) + 1
                block = np.asarray(arr[pos, lo:hi])
                block[rows[sel] - lo] = data[sel]
                arr[pos, lo:hi] = block
        self._invalidate(path)

    def write_static(self: BloxStore, *, params: Any, flops: Any, flops_counting: str = FLOPS_MACS) -> None:
        """Parameter counts and the ``flops`` column of every row; ``flops_counting`` (an attribute of
        ``static/flops``) says what it counts: :data:`FLOPS_MACS` (our conv + linear MACs) or
        :data:`FLOPS_OFFICIAL` (the release's ptflops field, which counts more)."""
        self.check_writable()
        for name, values in (("params", params), ("flops", flops)):
            v = np.asarray(values, dtype=np.int64)
            self._check_rows(v, name)
            self._new_array(f"static/{name}", v, shape=v.shape, model_axis=0, encoding=Encoding("raw", "int64"),
                            attrs={"counting": flops_counting} if name == "flops" else None)

    def write_latency(self: BloxStore, device: str, values: Any, *, attrs: dict[str, Any] | None = None) -> None:
        """Latency in seconds of every row on one device (NaN where not measured)."""
        self.check_writable()
        if not device or "/" in device:
            raise InvalidArgumentError(f"device name must be non-empty without '/', got {device!r}")
        v = np.asarray(values, dtype=np.float64)
        self._check_rows(v, f"latency/{device}")
        enc = detect_encoding(f"latency_{device}", v)
        if enc.kind == "fixed":  # latencies are seconds: keep micro-second resolution exact
            enc = Encoding("fixed", "uint32", denominator=enc.denominator)
        self._new_array(f"latency/{device}", v, shape=v.shape, model_axis=0, encoding=enc,
                        attrs={"unit": "s", **(attrs or {})})

    def write_env(self: BloxStore, columns: dict[str, Sequence[Sequence[str]]], *, seeds: Sequence[int]) -> None:
        """Environment strings per seed and model, stored as codes into a category list."""
        self.check_writable()
        for col, per_seed in columns.items():
            if len(per_seed) != len(seeds):
                raise InvalidArgumentError(f"env column {col!r} needs one list per seed ({len(seeds)})")
            cats = sorted({s for values in per_seed for s in values})
            lookup = {c: i for i, c in enumerate(cats)}
            codes = np.array([[lookup[s] for s in values] for values in per_seed], dtype=np.int32)
            if codes.shape[1] != len(self):
                raise InvalidArgumentError(f"env column {col!r} needs one value per model row ({len(self)})")
            self._new_array(f"env/{col}", codes, shape=codes.shape, model_axis=1, encoding=Encoding("raw", "int32"),
                            attrs={"categories": cats, "seeds": [int(s) for s in seeds]})

    def set_attrs(self: BloxStore, **attrs: Any) -> None:
        """Update root attributes (provenance, name, ...)."""
        self.check_writable()
        self._group.attrs.update(attrs)
        self.attrs.update(attrs)
