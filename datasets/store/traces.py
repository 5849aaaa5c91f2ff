"""The ``traces/`` layout of a :class:`~blox_env.datasets.store.core.BloxStore`: search runs as columns.

``traces/<name>/`` holds one float64 array per scalar field of the trace records
(``arch_index``, ``cost``, ``cumulative_cost``, ``wall_s``, ...) and one
``metrics/<key>`` array per metric (NaN where a record lacks it); the group's
attributes hold ``length`` and whatever the writer adds (agent, seed, env).
Every chunk is written, so an absent chunk is damage (format-1 traces, filled
with 0, are read as they were written).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.datasets.store.integrity import chunk_coords, chunk_key, corrupt, guard, key_exists
from blox_env.datasets.store.write import KEEP_CHUNKS, array_codecs
from blox_env.errors import InvalidArgumentError

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["TraceMixin"]


class TraceMixin:
    """Write, read and list search traces (a mixin of BloxStore)."""

    @property
    def traces(self: BloxStore) -> list[str]:
        """Names of the stored traces."""
        return self._children("traces", arrays=False)

    def write_trace(self: BloxStore, name: str, records: Sequence[dict[str, Any]], *,
                    attrs: dict[str, Any] | None = None) -> None:
        """Store a search trace (one record per evaluation) as columns under ``traces/<name>``.

        Scalar fields become arrays; ``metrics`` dicts become ``metrics/<key>`` columns (NaN where absent).
        """
        self.check_writable()
        if not name or "/" in name:
            raise InvalidArgumentError(f"trace name must be non-empty without '/', got {name!r}")
        path = f"traces/{name}"
        for key in self._trace_columns(path):
            self._touch(f"{path}/{key}")
        if path in self._group:
            del self._group[path]
        grp = self._group.require_group(path)
        grp.attrs.update({"length": len(records), **(attrs or {})})
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
            self._touch(f"{path}/{key}")
            arr = grp.create_array(key, shape=(len(values),), dtype="float64", chunks=(max(len(values), 1),),
                                   fill_value=np.nan, config=KEEP_CHUNKS, **array_codecs("float64"))
            arr[...] = np.asarray(values, dtype=np.float64)

    def read_trace(self: BloxStore, name: str) -> dict[str, np.ndarray]:
        """Columns of a stored trace (see :meth:`write_trace`)."""
        path = f"traces/{name}"
        if not name or "/" in name or self._node(path) is None:
            raise InvalidArgumentError(f"no trace {name!r}: this store has {self.traces or 'none'}")
        out = {}
        for key in self._trace_columns(path):
            arr = self._node(f"{path}/{key}")
            with guard(self.location, f"array '{path}/{key}'"):
                keys = [chunk_key(arr, c) for c in chunk_coords(arr)]
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
            return dict(node.attrs)

    def _trace_columns(self: BloxStore, path: str) -> list[str]:
        """Column keys of a stored trace (``metrics/<key>`` for metric columns)."""
        metrics = self._children(f"{path}/metrics", arrays=True)
        return self._children(path, arrays=True) + [f"metrics/{k}" for k in metrics]
