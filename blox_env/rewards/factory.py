"""Building a reward backend from the envs' and the harness's arguments.

:func:`make_backend` builds what ``gym.make(..., reward=...)`` asks for;
:func:`make_tabular_backend` the tabular one of a store: normal training, or a
blockwise table (``mode="blockwise"``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from blox_env.checks import check_choice, type_name
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError
from blox_env.rewards.base import RewardBackend
from blox_env.rewards.tabular import TabularReward
from blox_env.runs.budget import check_missing_cost

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["REWARD_SOURCES", "BackendSpec", "check_benchmark", "make_backend", "make_tabular_backend"]

REWARD_SOURCES = ("tabular", "surrogate", "live")


@dataclass(frozen=True)
class BackendSpec:
    """Keyword arguments the envs pass through to build a reward backend."""

    benchmark: Any = None
    reward: str = "tabular"
    metric: str = "val_top1"
    run: str | None = None
    seed_mode: int | str = "random"
    extra: Mapping[str, Any] = field(default_factory=dict)
    missing_cost: str = "error"


def check_benchmark(benchmark: Any) -> None:
    """A store name, path or URL (str or os.PathLike), an open BloxStore, or None (the default store)."""
    if benchmark is None or isinstance(benchmark, (str, os.PathLike)):
        return
    from blox_env.datasets.store.core import BloxStore

    if not isinstance(benchmark, BloxStore):
        raise InvalidArgumentTypeError(f"benchmark must be a store path, URL or name (str or os.PathLike), an open "
                                       f"BloxStore, or None (the default store), got {benchmark!r} "
                                       f"({type_name(benchmark)})")


def make_backend(spec: BackendSpec) -> RewardBackend:
    """Build the reward backend an env asked for (``backend=`` objects are used as they are)."""
    check_choice("reward", spec.reward, REWARD_SOURCES)
    check_benchmark(spec.benchmark)
    if spec.reward == "live":
        from blox_env.extras import require

        require("train", feature="reward='live' (training models live)")
        from blox_env.rewards.live import LiveReward

        return LiveReward(store=spec.benchmark, **dict(spec.extra))
    if spec.reward == "surrogate":
        if "predictor" not in spec.extra:
            raise InvalidArgumentError("reward='surrogate' needs predictor=<a fitted predictor> (or backend=...)")
        from blox_env.rewards.surrogate import SurrogateReward

        return SurrogateReward(**dict(spec.extra), metric=spec.metric)
    from blox_env.datasets.store.core import BloxStore, open_store

    store = spec.benchmark if isinstance(spec.benchmark, BloxStore) else open_store(spec.benchmark)
    return make_tabular_backend(store, metric=spec.metric, run=spec.run, seed_mode=spec.seed_mode,
                                missing_cost=spec.missing_cost, **spec.extra)


def make_tabular_backend(store: BloxStore, *, metric: str = "val_top1", run: str | None = None,
                         seed_mode: int | str = "random", mode: str = "normal", missing_cost: str = "error",
                         proxy: str | None = None, proxy_init_seed: int | str = "random",
                         **blockwise: Any) -> TabularReward:
    """The tabular backend of an env or a benchmark: normal training, or a blockwise table (``mode``); ``proxy``
    (normal mode) adds the zero-cost proxy fidelity (``fidelity=0``, :mod:`blox_env.rewards.proxy`).

    ``missing_cost`` goes to the blockwise backend, which resolves missing times before charging shared work;
    the normal backend reports missing costs as NaN and the env applies the rule.
    """
    check_missing_cost(missing_cost)
    if not isinstance(mode, str):
        raise InvalidArgumentTypeError(f"mode must be 'normal' or 'blockwise', got {mode!r}")
    if mode == "normal":
        if blockwise:
            raise InvalidArgumentError(f"unknown arguments for the tabular reward: {', '.join(sorted(blockwise))} "
                                       "(teacher/ft_epochs/distill_epochs/charge_teacher need mode='blockwise')")
        return TabularReward(store, metric=metric, run=run, seed_mode=seed_mode, proxy=proxy,
                             proxy_init_seed=proxy_init_seed)
    if mode != "blockwise":
        raise InvalidArgumentError(f"mode must be 'normal' or 'blockwise', got {mode!r}")
    if proxy is not None:
        raise InvalidArgumentError("proxy= (the zero-cost proxy fidelity) is for mode='normal'; a blockwise table "
                                   "has no proxy fidelity")
    allowed = {"teacher", "ft_epochs", "distill_epochs", "charge_teacher"}
    unknown = set(blockwise) - allowed
    if unknown:
        raise InvalidArgumentError(f"unknown arguments for the blockwise tabular reward: {', '.join(sorted(unknown))};"
                                   f" allowed: {', '.join(sorted(allowed))}")
    if run is not None:
        raise InvalidArgumentError("run= selects a normal run; in blockwise mode use teacher= and ft_epochs=")
    from blox_env.rewards.blockwise import BlockwiseTabularReward

    return BlockwiseTabularReward(store, metric=metric, missing_cost=missing_cost, **blockwise)
