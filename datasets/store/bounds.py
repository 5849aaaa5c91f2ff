"""Bounded reads: no store file is read unless it can be what its array says it holds.

A chunk file can never be larger than its array's chunk compressed by the
array's codec chain in the worst case (:func:`max_chunk_bytes`: the raw chunk
plus each codec's stated overhead), and a metadata file is never larger than
:data:`META_LIMIT`. Files are checked by their size *before* zarr reads them:
for a local folder the path is resolved (a symbolic link, or a folder link on
the way, that leads outside the store is refused, and so is anything that is
not a regular file: ``/dev/zero``, a FIFO); for a zip the member's recorded
size is checked (``zipfile`` never reads past it). Other stores (fsspec URLs)
are not checked: their backends bound what they transfer.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["META_LIMIT", "file_problem", "local_root", "max_chunk_bytes"]

#: The largest metadata file (``zarr.json``) a store may hold: far above any blox store's (the root, with its
#: checksum table, is ~100 kB for the full benchmark).
META_LIMIT = 64 << 20

#: Worst-case overhead in bytes that each bytes-to-bytes codec adds to its input, as (fixed, per-byte fraction).
#: Blosc stores incompressible data verbatim behind a 16-byte header (BLOSC_MAX_OVERHEAD; blosc2 adds a little
#: more), crc32c appends 4 bytes; zstd/gzip bounds are from their documented worst cases, with margin.
_OVERHEAD = {"blosc": (64, 0.0), "crc32c": (4, 0.0), "zstd": (1024, 1 / 128), "gzip": (1024, 1 / 100)}


def max_chunk_bytes(arr: Any) -> int:
    """The largest size one chunk file of ``arr`` can have (an unknown codec: twice the raw size + 1 kB)."""
    shape = getattr(arr, "shards", None) or arr.chunks  # a sharded array's files hold whole shards
    size = int(np.prod(shape)) * np.dtype(arr.dtype).itemsize
    for codec in arr.metadata.codecs:
        name = str(codec.to_dict().get("name", ""))
        if name in ("bytes", "transpose"):
            continue
        fixed, frac = _OVERHEAD.get(name, (1024, 1.0))
        size = size + fixed + int(size * frac) + 1
    return size


def local_root(zstore: Any) -> Path | None:
    """The folder of a local-directory zarr store, or None for zip and fsspec stores."""
    from zarr.storage import LocalStore

    return Path(zstore.root) if isinstance(zstore, LocalStore) else None


def file_problem(zstore: Any, key: str, limit: int) -> str | None:
    """Why the file stored under ``key`` may not be read (outside the store, not a file, too large), or None.

    An absent key is no problem here (absence is decided elsewhere). Cheap: one ``realpath`` and ``stat`` for
    a folder, one dictionary lookup for a zip.
    """
    root = local_root(zstore)
    if root is not None:
        path = os.path.join(root, key)
        if not os.path.lexists(path):
            return None
        real, top = os.path.realpath(path), os.path.realpath(root)
        if real != top and not real.startswith(top.rstrip(os.sep) + os.sep):
            return f"{key} is a symbolic link (or lies under one) to {real}, outside the store: not followed"
        try:
            st = os.stat(real)
        except OSError as exc:
            return f"{key} cannot be inspected ({exc.strerror or exc})"
        if not stat.S_ISREG(st.st_mode):
            return f"{key} is not a regular file (it resolves to {real}): not read"
        if st.st_size > limit:
            return f"{key} holds {st.st_size:,} bytes, more than this file can ever hold ({limit:,})"
        return None
    zf = getattr(zstore, "_zf", None)
    if zf is not None:
        try:
            info = zf.getinfo(key)
        except KeyError:
            return None
        size = max(info.file_size, info.compress_size)
        if size > limit:
            return f"{key} holds {size:,} bytes, more than this file can ever hold ({limit:,})"
    return None
