"""Transactional, idempotent setup of a build: the store skeleton and each run's metric arrays.

A build's setup is a few dozen writes, and a crash between any two of them must leave something a
rerun completes exactly, never a store that silently lacks a column or that no rerun can open:

* a new store is assembled in a temporary sibling folder (index, attributes, ``static/params``,
  ``static/flops``, ``model_config``) and moved to its name in one rename, so the final path either
  does not exist or holds a complete skeleton; what a killed build left beside it is removed by the
  next run, with a message (:func:`~blox_env.datasets.store.location.clean_stale_temporaries`);
* a run's attributes say ``setup: "pending"`` while its arrays are allocated and ``"complete"`` once
  all exist (the marker is written last). No result is recorded before ``complete``, so a rerun that
  finds ``pending`` allocates every array again; a run without the marker (made by an older builder)
  gets whatever arrays are missing or undescribed;
* an existing store or run is checked against the build's spec (rows, model configuration and static
  costs; a run's seeds, epochs, recipe and data) and refused with :class:`BuildSpecError`, naming what
  differs, when it was built differently.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.datasets.store.core import BloxStore
from blox_env.errors import BuildSpecError, InvalidArgumentError, OutputExistsError, StoreError
from blox_env.training.run_setup import SETUP_ATTR, jsonish, prepare_run, run_setup_state, spec_diff

__all__ = ["BUILDER_SOURCE", "SETUP_ATTR", "prepare_run", "prepare_store", "run_setup_state"]

#: ``provenance.source`` of stores the builder creates.
BUILDER_SOURCE = "blox-env builder"

# ---------------------------------------------------------------------------------------------- the store
def prepare_store(location: str | os.PathLike[str], index: np.ndarray, *, name: str, config: Any) -> BloxStore:
    """Open the build's store for writing, creating it atomically if absent and repairing an incomplete one.

    ``index`` are the models to build (sorted), ``config`` their :class:`~blox_env.shapes.ModelConfig`.
    """
    from blox_env.datasets.store.location import clean_stale_temporaries, is_blox_store

    if isinstance(location, str) and "://" in location:
        raise InvalidArgumentError(f"store must be a local folder for building, got the URL {location!r}")
    path = Path(location).expanduser()
    if path.suffix == ".zip":
        raise InvalidArgumentError(f"store {path} is a .zip: build into a folder, then package it")
    for message in clean_stale_temporaries(path):
        warnings.warn(message, stacklevel=3)
    empty = path.is_dir() and not path.is_symlink() and not any(path.iterdir())
    if not (path.exists() or path.is_symlink()) or empty:
        _create(path, index, name=name, config=config, replace_empty=empty)
    elif not is_blox_store(path):
        raise OutputExistsError(f"store {path} exists and is not a blox store: build into a new path")
    store = BloxStore.open(path, mode="a")
    try:
        _check_store(store, index, config)
    except BaseException:
        store.close()
        raise
    return store


def _create(path: Path, index: np.ndarray, *, name: str, config: Any, replace_empty: bool) -> None:
    """Assemble the skeleton in a temporary sibling and move it into place in one rename."""
    from blox_env.costs import macs_table, params_table
    from blox_env.datasets.store.location import atomic_directory, commit_directory, discard_directory

    tmp = atomic_directory(path, overwrite=replace_empty)
    try:
        store = BloxStore.create(tmp, index=index, name=name, provenance={"source": BUILDER_SOURCE}, overwrite=True)
        store.write_static(params=params_table(config)[index], flops=macs_table(config)[index])
        store.set_attrs(model_config=vars(config))
        store.close()
        commit_directory(tmp, path)
    except Exception:
        discard_directory(tmp)
        raise


def _static_matches(store: BloxStore, params: np.ndarray, flops: np.ndarray) -> bool:
    try:
        return bool(np.array_equal(store.get("params"), params) and np.array_equal(store.get("flops"), flops))
    except StoreError:  # damaged: undecodable chunks or metadata
        return False
    except InvalidArgumentError:  # an array is absent
        return False


def _check_store(store: BloxStore, index: np.ndarray, config: Any) -> None:
    """Refuse a store built for other models or another model configuration; complete its static costs."""
    from blox_env.costs import macs_table, params_table

    missing = np.setdiff1d(index, store.index)
    if len(missing):
        raise BuildSpecError(
            f"store {store.location} has no rows for {len(missing)} of the requested models (e.g. {int(missing[0])}):"
            f" its index holds {len(store)} other models; build into a new store"
        )
    want = vars(config)
    have = store.attrs.get("model_config")
    if have is not None and jsonish(have) != jsonish(want):
        raise BuildSpecError(f"store {store.location} was built with another model configuration "
                             f"({'; '.join(spec_diff(have, want))}): build into a new store")
    params, flops = params_table(config)[store.index], macs_table(config)[store.index]
    builder_made = (store.attrs.get("provenance") or {}).get("source") == BUILDER_SOURCE
    if not _static_matches(store, params, flops):
        has_static = {"static/params", "static/flops"} & store.metric_paths()
        if has_static and have is None and not builder_made:
            raise BuildSpecError(f"store {store.location} holds static costs of another model configuration "
                                 f"than this build's ({want}): build into a new store")
        store.write_static(params=params, flops=flops)
    if have is None:
        store.set_attrs(model_config=want)
