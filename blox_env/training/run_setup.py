"""Transactional, idempotent setup of a training run's metric arrays (shared by the builders and live rewards).

A run's attributes say ``setup: "pending"`` while its arrays are allocated and ``"complete"`` once all
exist (the marker is written last). No result is recorded before ``complete``, so a rerun that finds
``pending`` allocates every array again; a run without the marker (made by an older builder) gets
whatever arrays are missing or undescribed. An existing run is checked against the asked spec (seeds,
epochs, recipe, data) and refused with :class:`BuildSpecError`, naming what differs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from blox_env.datasets.store.core import BloxStore
from blox_env.datasets.store.encoding import Encoding
from blox_env.errors import BuildSpecError, InvalidArgumentError, StoreCorruptError
from blox_env.training.recipes import Recipe
from blox_env.training.results import result_encodings
from blox_env.training.train import CURVES

__all__ = ["SETUP_ATTR", "ensure_run", "jsonish", "prepare_run", "run_setup_state", "spec_diff"]

#: Run attribute holding the setup state: ``"pending"`` while arrays are allocated, then ``"complete"``.
SETUP_ATTR = "setup"


def jsonish(value: Any) -> Any:
    """``value`` as it reads back from JSON attributes (tuples -> lists, other objects -> str)."""
    return json.loads(json.dumps(value, default=str))


def spec_diff(have: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """``key: stored vs asked`` for every key whose (JSON) value differs."""
    have, want = jsonish(dict(have)), jsonish(dict(want))
    return [f"{k}: {have.get(k)!r} in the store vs {want.get(k)!r} asked" for k in sorted(set(have) | set(want))
            if have.get(k) != want.get(k)]


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
        if key in info.attrs and jsonish(info.attrs[key]) != jsonish(spec[key]):
            diffs.append(f"{key}: {info.attrs[key]!r} in the store vs {spec[key]!r} asked")
    if "recipe" in info.attrs:
        diffs += [f"recipe {d}" for d in spec_diff(info.attrs["recipe"], spec["recipe"])]
    if diffs:
        raise BuildSpecError(f"run {run!r} of store {store.location} exists with a different spec ("
                             f"{'; '.join(diffs)}): use another run name or another store")


def ensure_run(store: BloxStore, run: str, *, seeds: Sequence[int], recipe: Recipe, data: Any,
               attrs: dict[str, Any]) -> None:
    """Create a run with every metric allocated (missing), finish an interrupted setup, or check the existing one.

    Goes through the builder's transactional setup, so a crash while the arrays are allocated never wedges the run.
    """
    if run_setup_state(store, run) in ("complete", "legacy"):  # a finished run (built or live): check, never rewrite
        info = store.run_info(run)
        if not set(seeds) <= set(info.seeds) or info.epochs != recipe.epochs:
            raise InvalidArgumentError(
                f"run {run!r} exists with seeds {list(info.seeds)} and {info.epochs} epochs; asked for seeds "
                f"{list(seeds)} and {recipe.epochs} epochs: use another run name"
            )
        return
    prepare_run(store, run, seeds=seeds, recipe=recipe, data=data, data_spec={"data": data.name}, attrs=attrs)
