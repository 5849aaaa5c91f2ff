"""The hash of every model of the space, computed once and cached on disk.

Hashing one model is a ~0.3 ms pure-Python graph walk, so the 91,125 hashes are
computed once in a process pool (about 10-20 s on 2 cores, with a progress bar)
and kept in ``$BLOX_HOME/space/hashes-v1.npy`` as raw 16-byte digests
(1.4 MB). Later loads take milliseconds and are spot-checked against a fresh
computation so a stale or corrupt cache is rebuilt rather than trusted.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from blox_env.errors import ArchitectureNotFoundError, InvalidArchitectureError
from blox_env.graph import BLOCK_GRAPHS, N_BLOCKS, N_MODELS, stages_hash
from blox_env.paths import blox_home
from blox_env.progress import track

__all__ = ["all_hashes", "compute_hashes", "hash_to_index", "hashes_to_indices", "hash_cache_path"]

_CACHE_NAME = "hashes-v1.npy"
#: Blocks ``(b0, b1, b2)`` of the models checked on every load: indices 0, 1, 50000 and the last one.
_SPOT_CHECK = ((0, 0, 0), (1, 0, 0), (5, 31, 24), (N_BLOCKS - 1,) * 3)


def hash_cache_path() -> Path:
    """Location of the on-disk hash table."""
    return blox_home() / "space" / _CACHE_NAME


def _index(b0: int, b1: int, b2: int) -> int:
    """Model index of blocks ``(b0, b1, b2)``; the digests are stored in this order (b0 fastest)."""
    return b0 + N_BLOCKS * (b1 + N_BLOCKS * b2)


def _hash_slab(b2: int) -> bytes:
    """Digests of the 2025 models whose stage-2 block is ``b2``, in index order."""
    out = bytearray()
    g2 = BLOCK_GRAPHS[b2]
    for b1 in range(N_BLOCKS):
        g1 = BLOCK_GRAPHS[b1]
        for b0 in range(N_BLOCKS):
            out += bytes.fromhex(stages_hash((BLOCK_GRAPHS[b0], g1, g2)))
    return bytes(out)


def compute_hashes(*, jobs: int | None = None, progress: bool = True) -> np.ndarray:
    """Compute every model's digest from scratch: ``uint8`` array ``(91125, 16)`` in index order (``jobs``
    processes; default up to 4)."""
    n_workers = jobs if jobs is not None else min(os.cpu_count() or 1, 4)
    slabs: list[bytes]
    label = "hashing 91,125 models (once)"
    if n_workers <= 1:
        slabs = list(track(map(_hash_slab, range(N_BLOCKS)), total=N_BLOCKS, description=label, enabled=progress))
    else:
        from concurrent.futures import ProcessPoolExecutor  # only paid for when the table is built

        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            slabs = list(track(pool.map(_hash_slab, range(N_BLOCKS)), total=N_BLOCKS, description=label,
                               enabled=progress))
    return np.frombuffer(b"".join(slabs), dtype=np.uint8).reshape(N_MODELS, 16).copy()


def _load_cache(path: Path) -> np.ndarray | None:
    try:
        digests = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if digests.shape != (N_MODELS, 16) or digests.dtype != np.uint8:
        return None
    for blocks in _SPOT_CHECK:
        if digests[_index(*blocks)].tobytes().hex() != stages_hash([BLOCK_GRAPHS[b] for b in blocks]):
            return None
    return digests


def _save_cache(path: Path, digests: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, digests, allow_pickle=False)
        os.replace(tmp, path)
    except OSError:  # a read-only home must not break hashing; we just recompute next time
        pass


@lru_cache(maxsize=1)
def _digests() -> np.ndarray:
    path = hash_cache_path()
    digests = _load_cache(path)
    if digests is None:
        digests = compute_hashes()
        _save_cache(path, digests)
    digests.setflags(write=False)
    return digests


@lru_cache(maxsize=1)
def all_hashes() -> np.ndarray:
    """Hash of every model in index order, as a read-only ``<U32`` array."""
    raw = _digests()
    hexes = np.array([raw[i].tobytes().hex() for i in range(N_MODELS)])
    hexes.setflags(write=False)
    return hexes


@lru_cache(maxsize=1)
def _hash_lookup() -> dict[str, int]:
    return {h: i for i, h in enumerate(all_hashes().tolist())}


def hash_to_index(model_hash: str) -> int:
    """Index of the model with this hash; ``ArchitectureNotFoundError`` if none has it."""
    if not isinstance(model_hash, str) or len(model_hash) != 32:
        raise InvalidArchitectureError(f"a model hash is 32 hex digits, got {model_hash!r}")
    try:
        return _hash_lookup()[model_hash.lower()]
    except KeyError:
        raise ArchitectureNotFoundError(f"no model of the BLOX space has hash {model_hash!r}") from None


def hashes_to_indices(hashes: Iterable[str]) -> np.ndarray:
    """Vectorised :func:`hash_to_index`."""
    return np.fromiter((hash_to_index(h) for h in hashes), dtype=np.int64)
