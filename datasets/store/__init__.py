"""The model store: :class:`BloxStore` (queries, writes, integrity) and the layouts it owns.

Modules: :mod:`.core` (open/create, vectorised ``get``), :mod:`.queries` (the original
benchmark's per-model API), :mod:`.write`, :mod:`.reads`, :mod:`.encoding`,
:mod:`.schema`, :mod:`.location`, :mod:`.integrity` / :mod:`.verify` (checksums,
``blox data verify``) and :mod:`.blockwise` (the ``blockwise/`` tables).
"""

from __future__ import annotations

from blox_env.datasets.store.core import (
    CURVE_METRICS,
    FINAL_METRICS,
    STATIC_METRICS,
    BloxStore,
    RunInfo,
    open_store,
)

__all__ = ["CURVE_METRICS", "FINAL_METRICS", "STATIC_METRICS", "BloxStore", "RunInfo", "open_store"]
