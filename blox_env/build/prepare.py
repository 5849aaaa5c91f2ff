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

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.datasets.store.core import BloxStore
from blox_env.datasets.store.encoding import Encoding
from blox_env.errors import InvalidArgumentError, StoreCorruptError, StoreError

__all__ = ["BUILDER_SOURCE", "SETUP_ATTR", "BuildSpecError", "prepare_run", "prepare_store", "run_setup_state"]

#: ``provenance.source`` of stores the builder creates.
BUILDER_SOURCE = "blox-env builder"
#: Run attribute holding the setup state: ``"pending"`` while arrays are allocated, then ``"complete"``.
SETUP_ATTR = "setup"


class BuildSpecError(InvalidArgumentError):
    """An existing store or run was built with a different spec than the build asks for."""


def _jsonish(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _diff(have: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """``key: stored vs asked`` for every key whose (JSON) value differs."""
    have, want = _jsonish(dict(have)), _jsonish(dict(want))
    return [f"{k}: {have.get(k)!r} in the store vs {want.get(k)!r} asked" for k in sorted(set(have) | set(want))
            if have.get(k) != want.get(k)]


# ---------------------------------------------------------------------------------------------- the store
def prepare_store(location: str | os.PathLike[str], index: np.ndarray, *, name: str, config: Any) -> BloxStore:
    """Open the build's store for writing, creating it atomically if absent and repairing an incomplete one.

    ``index`` are the models to build (sorted), ``config`` their :class:`~blox_env.shapes.ModelConfig`.
    """
    from blox_env.datasets.store.location import OutputExistsError, clean_stale_temporaries, is_blox_store

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
    if have is not None and _jsonish(have) != _jsonish(want):
        raise BuildSpecError(f"store {store.location} was built with another model configuration "
                             f"({'; '.join(_diff(have, want))}): build into a new store")
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


# ---------------------------------------------------------------------------------------------- runs
def run_setup_state(store: BloxStore, run: str) -> str | None:
    """``None`` (no such run), ``"pending"``, ``"complete"`` or ``"legacy"`` (a run made without the marker)."""
    attrs = store.run_attrs(run)
    if attrs is None or "seeds" not in attrs or "epochs" not in attrs:  # a bare run group is not a run yet
        return None
    return str(attrs.get(SETUP_ATTR, "legacy"))


def _described(store: BloxStore, run: str, metric: str) -> bool:
    """Whether a run's metric array exists and carries its encoding (written right after the array)."""
    if metric not in store.run_info(run).metrics:
        return False
    return "encoding" in store.metric_attrs(run, metric)


def prepare_run(store: BloxStore, run: str, *, seeds: Sequence[int], recipe: Any, data: Any,
                data_spec: Mapping[str, Any], attrs: Mapping[str, Any],
                extra: Mapping[str, tuple[Encoding, bool]] | None = None) -> None:
    """Create ``run`` with every result array allocated, finish an interrupted setup, or check an existing run.

    ``data_spec`` is how the data was asked for (``{"data": ..., "kwargs": ...}``); ``extra`` maps more metric
    names to ``(encoding, per_epoch)``. Raises :class:`BuildSpecError` if the run exists with another spec.
    """
    from blox_env.training.results import result_encodings
    from blox_env.training.train import CURVES

    sizes = {"train": len(data.train.y), "val": len(data.val.y), "test": len(data.test.y)}
    metrics = {m: (enc, m in CURVES) for m, enc in result_encodings(sizes).items()}
    metrics.update(extra or {})
    seeds = [int(s) for s in seeds]
    spec = {"dataset": data.name, "recipe": recipe.to_dict(), "split_sizes": sizes, "data_spec": dict(data_spec)}
    state = run_setup_state(store, run)
    if state is None:
        store.create_run(run, seeds=seeds, epochs=recipe.epochs,
                         attrs={**spec, "data_provenance": data.provenance, **attrs, SETUP_ATTR: "pending"})
        state = "pending"
    else:
        _check_run(store, run, seeds=seeds, epochs=recipe.epochs, spec=spec)
    info = store.run_info(run)
    if state == "complete":
        absent = [m for m in metrics if m not in info.metrics]
        if absent:
            raise StoreCorruptError(
                f"run {run!r} of store {store.location} lacks the arrays {', '.join(absent)} although its setup "
                "completed: the store was damaged after it was built; rebuild it into a new store"
            )
        return
    for metric, (enc, per_epoch) in metrics.items():
        if state == "pending" or not _described(store, run, metric):
            store.allocate_metric(run, metric, encoding=enc, per_epoch=per_epoch)
    store.create_run(run, seeds=list(info.seeds), epochs=info.epochs, attrs={SETUP_ATTR: "complete"})


def _check_run(store: BloxStore, run: str, *, seeds: list[int], epochs: int, spec: Mapping[str, Any]) -> None:
    info = store.run_info(run)
    diffs = []
    if not set(seeds) <= set(info.seeds):
        diffs.append(f"seeds: {list(info.seeds)} in the store vs {seeds} asked")
    if info.epochs != epochs:
        diffs.append(f"epochs: {info.epochs} in the store vs {epochs} asked")
    for key in ("dataset", "split_sizes", "data_spec"):
        if key in info.attrs and _jsonish(info.attrs[key]) != _jsonish(spec[key]):
            diffs.append(f"{key}: {info.attrs[key]!r} in the store vs {spec[key]!r} asked")
    if "recipe" in info.attrs:
        diffs += [f"recipe {d}" for d in _diff(info.attrs["recipe"], spec["recipe"])]
    if diffs:
        raise BuildSpecError(f"run {run!r} of store {store.location} exists with a different spec ("
                             f"{'; '.join(diffs)}): use another run name or another store")
