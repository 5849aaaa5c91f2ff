"""The model store: the layouts :class:`~blox_env.BloxStore` owns (queries, writes, integrity).

:class:`~blox_env.BloxStore` and :func:`~blox_env.open_store` are imported from ``blox_env`` (their one
documented path; code inside the package imports them from :mod:`.core`). This package exports the store's
other public names: :class:`RunInfo` (``store.run_info(run)``), :class:`FlatWeights` and the metric lists.

Modules: :mod:`.core` (open/create, vectorised ``get``), :mod:`.queries` (the original
benchmark's per-model API), :mod:`.write`, :mod:`.reads`, :mod:`.encoding`,
:mod:`.schema`, :mod:`.location`, :mod:`.integrity` / :mod:`.verify` (checksums,
``blox data verify``), :mod:`.traces` (the ``traces/`` layout), :mod:`.blockwise_tree`
(the ``blockwise/`` layout: teachers, block weights, signatures) and :mod:`.blockwise`
(reading the blockwise tables). Nothing outside this package touches the Zarr group.
"""

from __future__ import annotations

from blox_env.datasets.store.blockwise_tree import FlatWeights
from blox_env.datasets.store.core import CURVE_METRICS, FINAL_METRICS, STATIC_METRICS, RunInfo

__all__ = ["CURVE_METRICS", "FINAL_METRICS", "STATIC_METRICS", "FlatWeights", "RunInfo"]
