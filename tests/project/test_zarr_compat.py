"""The store code on every zarr the ranges allow (3.1.x on Python 3.11, the newest 3.x on 3.12+).

CI runs the core tests with the pinned set and with the newest versions (``.ci/core-pythons``); this
test makes a deprecation in zarr's API that the store code still uses fail there, before a later zarr
removes it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from blox_env.datasets.store import core as store_core
from blox_env.datasets.store.core import open_store
from blox_env.datasets.store.verify import verify_store
from blox_env.datasets.synthetic import synthetic_store
from blox_env.space import SubSpace

SPACE = SubSpace(((0, 9), (1, 12, 36), (2,)))


def _own(w: warnings.WarningMessage) -> bool:
    """A warning attributed to a line of the store package (what zarr's deprecations point at)."""
    store_dir = Path(store_core.__file__).resolve().parent
    return Path(w.filename).resolve().is_relative_to(store_dir)


def test_store_code_uses_no_deprecated_zarr_api(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("s.zarr", "s.zip"):
            synthetic_store(tmp_path / name, space=SPACE, seeds=(0, 1), epochs=4).close()
            store = open_store(tmp_path / name)
            assert np.isfinite(store.get("val_top1", seed="mean")).all()
            assert np.isfinite(store.get("params")).all() and store.latency_devices
            store.close()
        assert verify_store(tmp_path / "s.zarr", deep=True).ok
    stale = [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught
             if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)) and _own(w)]
    assert not stale, stale
