"""The model store: :class:`BloxStore` (queries, writes, integrity) and the layouts it owns.

Modules: :mod:`.core` (open/create, vectorised ``get``), :mod:`.queries` (the original
benchmark's per-model API), :mod:`.write`, :mod:`.reads`, :mod:`.encoding`,
:mod:`.schema`, :mod:`.location`, :mod:`.integrity` / :mod:`.verify` (checksums,
``blox data verify``), :mod:`.traces` (the ``traces/`` layout), :mod:`.blockwise_tree`
(the ``blockwise/`` layout: teachers, block weights, signatures) and :mod:`.blockwise`
(reading the blockwise tables). Nothing outside this package touches the Zarr group.
"""

from __future__ import annotations

from blox_env.datasets.store.blockwise_tree import FlatWeights
from blox_env.datasets.store.core import (
    CURVE_METRICS,
    FINAL_METRICS,
    STATIC_METRICS,
    BloxStore,
    RunInfo,
    open_store,
)

__all__ = ["CURVE_METRICS", "FINAL_METRICS", "STATIC_METRICS", "BloxStore", "FlatWeights", "RunInfo", "open_store"]
