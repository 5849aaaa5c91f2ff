"""``TabularReward``: rewards read from a benchmark store at array-index speed.

A lookup is an array index: the columns a backend needs are materialised into
numpy on first use. Besides the :class:`~blox_env.rewards.base.RewardBackend`
Protocol it evaluates whole batches (``batch``, ``seed_positions``, ``cost_of``)
for the vector envs. With ``proxy=<name>`` it also answers the proxy fidelity
(``fidelity=0``): the store's zero-cost proxy table (:mod:`blox_env.rewards.proxy`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.errors import ArchitectureNotFoundError, InvalidArgumentError
from blox_env.rewards.base import BaseReward, Evaluation, check_fidelity, seed_positions
from blox_env.rewards.proxy import ProxyFidelity
from blox_env.runs.budget import PROXY_FIDELITY, cost_is_missing, unit_cost
from blox_env.space import N_BLOCKS, N_MODELS, N_STAGES, Arch, SubSpace, indices_to_blocks

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["SEED_MODES", "TabularReward", "space_of_index"]

SEED_MODES = ("random", "mean")


def space_of_index(index: np.ndarray) -> SubSpace:
    """The product sub-space spanned by a store's rows (per stage, the blocks that occur)."""
    blocks = indices_to_blocks(index)
    # a presence table, not np.unique: numpy 2's unique imports numpy.ma (~8 ms of every gym.make)
    present = np.zeros((N_STAGES, N_BLOCKS), dtype=bool)
    for s in range(N_STAGES):
        present[s, blocks[:, s]] = True
    return SubSpace(tuple(tuple(np.flatnonzero(row).tolist()) for row in present))  # type: ignore[arg-type]


def _check_seed_mode(seed_mode: Any, seeds: tuple[int, ...]) -> Any:
    if seed_mode in SEED_MODES:
        return seed_mode
    if isinstance(seed_mode, (int, np.integer)) and not isinstance(seed_mode, bool) and int(seed_mode) in seeds:
        return int(seed_mode)
    raise InvalidArgumentError(
        f"seed_mode must be 'random', 'mean' or one of the seeds {list(seeds)}, got {seed_mode!r}"
    )


class TabularReward(BaseReward):
    """Rewards read from a :class:`~blox_env.datasets.store.core.BloxStore` (materialised on first use).

    ``metric`` follows :meth:`BloxStore.get` semantics at the fidelity: ``val_top1``
    is the best validation top-1 within the first ``fidelity`` epochs, other
    per-epoch metrics their value at that epoch. ``seed_mode`` is ``"random"``
    (one of the run's seeds per query, drawn from the caller's generator),
    ``"mean"`` or a fixed seed label. ``proxy``: a zero-cost proxy of the store answered at fidelity 0
    (:data:`~blox_env.runs.budget.PROXY_FIDELITY`), at initialisation seed ``proxy_init_seed`` (``"random"``,
    ``"mean"`` or one of the store's proxy seeds); None: no proxy fidelity.
    """

    source = "tabular"
    teacher: Arch | None = None
    tabular = True
    batched = True

    def __init__(self, store: BloxStore, *, metric: str = "val_top1", run: str | None = None,
                 seed_mode: int | str = "random", proxy: str | None = None,
                 proxy_init_seed: int | str = "random") -> None:
        self.store = store
        self.info = store.run_info(run)
        allowed = store.metrics(self.info.name)  # listed once: every lookup of the store's tree is a read
        if not isinstance(metric, str) or metric not in allowed:
            raise InvalidArgumentError(f"unknown metric {metric!r}: allowed {', '.join(allowed)}")
        self.metric = metric
        self.seed_mode = _check_seed_mode(seed_mode, self.info.seeds)
        self.seeds = self.info.seeds
        self.max_fidelity = self.info.epochs
        self.space = space_of_index(store.index)
        self.n_rows = len(store)
        self._row_of = np.full(N_MODELS, -1, dtype=np.int64)
        self._row_of[store.index] = np.arange(len(store))
        self._columns: dict[tuple[str, int], np.ndarray] = {}
        self._static_names = [m for m in allowed if m in ("params", "flops") or m.startswith("latency/")]
        self._static: dict[str, np.ndarray] | None = None  # read on first use: a plain gym.make never needs them
        self._per_seed = [m for m in ("test_top1", "train_time_s") if m in self.info.metrics]
        self._scalar_cols: dict[int, list[tuple[str, np.ndarray]]] = {}
        self._known: dict[int, np.ndarray] = {}
        self.proxy_fidelity: ProxyFidelity | None = None
        if proxy is not None:
            times = None
            if "train_time_s" in self.info.metrics:
                with np.errstate(invalid="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a model missing in every seed stays NaN
                    times = np.nanmean(self.column("train_time_s", self.max_fidelity), axis=0)
            self.proxy_fidelity = ProxyFidelity(store, proxy, init_seed=proxy_init_seed, train_time_s=times,
                                                epochs=self.max_fidelity)
        self.proxy = None if self.proxy_fidelity is None else self.proxy_fidelity.name

    # -------------------------------------------------------------- materialised columns
    def column(self, metric: str, fidelity: int) -> np.ndarray:
        """``[S, N]`` values of a run metric at a fidelity (computed once, then cached)."""
        key = (metric, fidelity)
        col = self._columns.get(key)
        if col is None:
            col = np.stack([self.store.get(metric, None, seed=s, epoch=fidelity, run=self.info.name)
                            for s in self.seeds])
            col.setflags(write=False)
            self._columns[key] = col
        return col

    def fidelity(self, fidelity: int | None) -> int:
        """``fidelity`` in ``1..max_fidelity``, or 0 (the proxy fidelity) when the backend has a ``proxy``."""
        if isinstance(fidelity, (int, np.integer)) and not isinstance(fidelity, (bool, np.bool_)) \
                and fidelity == PROXY_FIDELITY:
            if self.proxy_fidelity is None:
                have = ", ".join(self.store.proxy_names()) or "none (blox build-proxies)"
                raise InvalidArgumentError(f"epochs (fidelity) 0 is the zero-cost proxy fidelity: pass proxy=<name> "
                                           f"(blox bench: --proxy; store {self.store.name!r} holds: {have}), or an "
                                           f"integer in 1..{self.max_fidelity}")
            return PROXY_FIDELITY
        return check_fidelity(fidelity, self.max_fidelity)

    def cost_column(self, cost_unit: str) -> str | None:
        """The store column a cost in ``cost_unit`` is read from (None: the cost is a count, never missing)."""
        return "train_time_s" if cost_unit == "seconds" else None

    def known_costs(self, fidelity: int, cost_unit: str) -> np.ndarray:
        """Every recorded (finite, non-negative) cost of this run at a fidelity, over seeds and models.

        The reference of the ``missing_cost="median" | "max"`` rules; cached per fidelity.
        """
        if fidelity == PROXY_FIDELITY and self.proxy_fidelity is not None:
            return self.proxy_fidelity.known_costs(cost_unit)
        if cost_unit != "seconds":
            return np.array([float(self.cost_of({}, fidelity, cost_unit))])
        if "train_time_s" not in self.info.metrics:
            return np.empty(0)
        known = self._known.get(fidelity)
        if known is None:
            col = self.column("train_time_s", fidelity).ravel()
            known = self._known[fidelity] = col[~cost_is_missing(col)]
        return known

    def describe_cost(self, fidelity: int, seed: Any) -> str:
        """Where a missing cost was looked up, for error messages."""
        if fidelity == PROXY_FIDELITY and self.proxy_fidelity is not None:
            return f"{self.proxy_fidelity.describe_cost(seed, 'seconds')} of store {self.store.name!r}"
        return f"train_time_s (run {self.info.name!r} of store {self.store.name!r}, seed {seed}, {fidelity} epochs)"

    def seed_label(self, pos: int, fidelity: int | None = None) -> int:
        """The seed at position ``pos`` of :meth:`seed_positions` (an initialisation seed at the proxy fidelity)."""
        if fidelity == PROXY_FIDELITY and self.proxy_fidelity is not None:
            return self.proxy_fidelity.seeds[pos]
        return self.seeds[pos]

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """Store rows of model indices (-1 where a model is not in the store)."""
        return self._row_of[indices]

    def static_costs(self) -> Mapping[str, np.ndarray]:
        """The store's static columns (``params``, ``flops``, ``latency/<device>``), indexed by :meth:`rows`."""
        if self._static is None:
            self._static = {m: self.store.get(m) for m in self._static_names}
        return self._static

    def seed_positions(self, n: int, rng: np.random.Generator | None, fidelity: int | None = None) \
            -> np.ndarray | None:
        """Per-query seed positions for ``random`` / fixed modes; ``None`` for ``mean`` (at the proxy fidelity:
        positions among the proxy's initialisation seeds, by ``proxy_init_seed``)."""
        if fidelity == PROXY_FIDELITY and self.proxy_fidelity is not None:
            return self.proxy_fidelity.positions(n, rng)
        return seed_positions(self.seed_mode, self.seeds, n, rng)

    def batch(self, rows: np.ndarray, fidelity: int, seed_pos: np.ndarray | None) -> dict[str, np.ndarray]:
        """Vectorised metrics for many rows: the reward metric, test accuracy, train time, statics (at the proxy
        fidelity: the proxy's score and seconds, ``seed_pos`` indexing its initialisation seeds)."""
        out: dict[str, np.ndarray] = {}
        if fidelity == PROXY_FIDELITY and self.proxy_fidelity is not None:
            out.update(self.proxy_fidelity.batch(rows, seed_pos))
            for m, values in self.static_costs().items():
                out[m] = values[rows]
            return out
        names = dict.fromkeys([self.metric, "val_top1", *self._per_seed])
        for m in names:
            if m not in self.info.metrics:
                continue
            col = self.column(m, fidelity)
            out[m] = col[:, rows].mean(axis=0) if seed_pos is None else col[seed_pos, rows]
        for m, values in self.static_costs().items():
            out[m] = values[rows]
        return out

    def cost_of(self, metrics: dict[str, Any], fidelity: int, cost_unit: str) -> Any:
        """Cost of evaluations with these metrics (scalars or arrays) in ``cost_unit``."""
        if fidelity == PROXY_FIDELITY and self.proxy_fidelity is not None:
            return self.proxy_fidelity.cost(metrics, cost_unit)
        if cost_unit == "seconds" and "train_time_s" not in metrics:
            raise InvalidArgumentError("this store records no train_time_s: use cost_unit='epochs' or 'evaluations'")
        return unit_cost(cost_unit, seconds=metrics.get("train_time_s"), epochs=fidelity)

    # -------------------------------------------------------------- Protocol
    def evaluate(self, arch: Arch, fidelity: int | None = None, *, cost_unit: str = "seconds",
                 rng: np.random.Generator | None = None) -> Evaluation:
        e = self.fidelity(fidelity) if fidelity is not None else self.max_fidelity
        row = int(self._row_of[arch.index])
        if row < 0:
            raise ArchitectureNotFoundError(f"{arch!r} is not in store {self.store.name!r}")
        if e == PROXY_FIDELITY and self.proxy_fidelity is not None:
            return self._evaluate_proxy(self.proxy_fidelity, arch, row, cost_unit, rng)
        if self.seed_mode == "mean":
            pos, seed = -1, "mean"
        elif self.seed_mode == "random":
            pos = int((rng if rng is not None else np.random.default_rng()).random() * len(self.seeds))
            seed = self.seeds[pos]
        else:
            pos, seed = self.seeds.index(self.seed_mode), self.seed_mode
        metrics = self._scalar_metrics(row, e, pos)
        return Evaluation(arch, metrics, float(self.cost_of(metrics, e, cost_unit)), cost_unit, self.source, e, seed)

    def _scalar_metrics(self, row: int, fidelity: int, pos: int) -> dict[str, float]:
        """The metrics of one row (fast path of :meth:`batch`; ``pos=-1`` averages seeds)."""
        cols = self._scalar_cols.get(fidelity)
        if cols is None:
            names = [m for m in dict.fromkeys([self.metric, "val_top1", *self._per_seed]) if m in self.info.metrics]
            cols = [(m, self.column(m, fidelity)) for m in names]
            self._scalar_cols[fidelity] = cols
        if pos < 0:
            out = {m: float(col[:, row].mean()) for m, col in cols}
        else:
            out = {m: col.item(pos, row) for m, col in cols}
        for m, values in (self._static if self._static is not None else self.static_costs()).items():
            out[m] = values.item(row)
        return out

    def _evaluate_proxy(self, px: ProxyFidelity, arch: Arch, row: int, cost_unit: str,
                        rng: np.random.Generator | None) -> Evaluation:
        """A proxy evaluation of one row (see :mod:`blox_env.rewards.proxy`)."""
        pos = px.positions(1, rng)
        p = None if pos is None else int(pos[0])
        metrics = {k: float(v[0]) for k, v in px.batch(np.array([row]), None if p is None else pos).items()}
        for m, values in self.static_costs().items():
            metrics[m] = values.item(row)
        cost = float(px.cost(metrics, cost_unit))
        return Evaluation(arch, metrics, cost, cost_unit, f"proxy:{px.name}", PROXY_FIDELITY, px.seed_label(p))
