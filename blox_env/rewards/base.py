"""The reward-backend Protocol: what the envs, the harness and the constraints need from a source of metrics.

A backend turns an architecture and a fidelity (training epochs) into an
:class:`Evaluation`: a dict of metrics, the cost of obtaining them (in one of
:data:`~blox_env.runs.budget.COST_UNITS`) and its source ("tabular" | "surrogate" | "live"). Besides
``evaluate`` it resolves fidelities, starts search runs (``new_run``: shared
work such as a blockwise teacher and its distilled blocks is charged once per
run, see :class:`~blox_env.runs.budget.SharedCharges`), releases what it opened (``close``), and says
which models it can evaluate and their static costs (``rows``,
``static_costs``: constraints and action masks) and what its recorded costs are
(``known_costs``, ``describe_cost``: the ``missing_cost`` rule of
:mod:`blox_env.runs.budget`). It also declares what its callers would otherwise have to probe
for: whether it reads a benchmark's tables (``tabular``, ``store``), whether it evaluates whole
batches for the vector envs (``batched``), its once-per-run shared work (``shared_work()``) and
its block signatures (``block_signatures()``, for DONNA/LANA). :class:`BaseReward` gives the
defaults of a backend without tables (every model of its space, no static columns, nothing shared).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from blox_env.errors import InvalidArgumentError
from blox_env.runs.budget import SharedCharges, SharedWork
from blox_env.space import N_BLOCKS, N_STAGES, Arch, SubSpace

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["BaseReward", "Evaluation", "RewardBackend", "check_fidelity", "local_to_indices", "seed_positions"]


class Evaluation(NamedTuple):
    """Result of evaluating one architecture at one fidelity."""

    arch: Arch
    metrics: dict[str, float]
    cost: float  # in ``cost_unit``: what obtaining these metrics from scratch costs
    cost_unit: str
    source: str  # "tabular" | "surrogate" | "live" | "proxy:<name>" (a zero-cost proxy, fidelity 0)
    fidelity: int  # epochs trained; 0: a zero-cost proxy of the untrained model (PROXY_FIDELITY)
    seed: int | str | None
    cost_imputed: str | None = None  # the missing_cost rule ("median" | "max") that set ``cost``; None if recorded


def check_fidelity(fidelity: int | None, max_fidelity: int) -> int:
    """A fidelity (training epochs) in ``1..max_fidelity``; ``None`` means the full protocol."""
    if fidelity is None:
        return max_fidelity
    if isinstance(fidelity, (bool, np.bool_)) or not isinstance(fidelity, (int, np.integer)) \
            or not 1 <= int(fidelity) <= max_fidelity:
        raise InvalidArgumentError(f"epochs (fidelity) must be an integer in 1..{max_fidelity}, got {fidelity!r}")
    return int(fidelity)


def seed_positions(mode: int | str, seeds: tuple[int, ...], n: int, rng: np.random.Generator | None) \
        -> np.ndarray | None:
    """Positions in ``seeds`` of ``n`` lookups under a seed mode: ``"random"`` (drawn from ``rng``), a fixed seed
    label, or ``"mean"`` (None: the mean over seeds)."""
    if mode == "mean":
        return None
    if mode == "random":
        return (rng if rng is not None else np.random.default_rng()).integers(0, len(seeds), size=n)
    return np.full(n, seeds.index(int(mode)), dtype=np.int64)


def local_to_indices(space: SubSpace, local: np.ndarray) -> np.ndarray:
    """Model indices of local block coordinates ``(..., 3)`` of ``space`` (positions in each stage's block list)."""
    tables = [np.asarray(b) for b in space.blocks]
    blocks = [tables[s][local[..., s]] for s in range(N_STAGES)]
    return blocks[0] + N_BLOCKS * blocks[1] + N_BLOCKS**2 * blocks[2]


# ---------------------------------------------------------------------------------------------- Protocol
@runtime_checkable
class RewardBackend(Protocol):
    """What the environments, the harness and the constraints need from a source of architecture metrics."""

    source: str  # "tabular" | "surrogate" | "live"
    space: SubSpace  # the models it can be asked about (an env's action space)
    max_fidelity: int  # epochs of the full protocol
    teacher: Arch | None  # the teacher whose distilled blocks the results use (blockwise); None otherwise
    tabular: bool  # True when results are read from a benchmark store's tables (``store``)
    store: BloxStore | None  # the benchmark store it reads (tabular backends); None otherwise
    batched: bool  # True when it evaluates whole batches of store rows (``batch``: the numpy vector envs)
    proxy: str | None  # the zero-cost proxy it answers at fidelity 0 (PROXY_FIDELITY); None: no proxy fidelity

    def shared_work(self) -> SharedWork | None:
        """Its once-per-run work (a teacher and distilled blocks, with recorded seconds); None when it has none."""
        ...

    def block_signatures(self) -> Mapping[str, np.ndarray] | None:
        """Per-block signatures ``[3, n_blocks]`` by name (``distill_loss``, ``lana_delta``, ...); None without."""
        ...

    def evaluate(self, arch: Arch, fidelity: int | None = None, *, cost_unit: str = "seconds",
                 rng: np.random.Generator | None = None) -> Evaluation:
        """Metrics and cost of ``arch`` trained for ``fidelity`` epochs (default: the full protocol)."""
        ...

    def fidelity(self, fidelity: int | None) -> int:
        """``fidelity`` checked against ``1..max_fidelity`` (``None``: the full protocol)."""
        ...

    def new_run(self, shared: SharedCharges | None = None) -> None:
        """Start a search run: shared work is charged once against ``shared`` (the run's record), or a fresh record."""
        ...

    def close(self) -> None:
        """Release what the backend opened itself (idempotent)."""
        ...

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """Row of each model index in :meth:`static_costs`' columns; -1 where the backend has no result for it."""
        ...

    def static_costs(self) -> Mapping[str, np.ndarray]:
        """Static cost columns by name (``params``, ``flops``, ``latency/<device>``), indexed by :meth:`rows`."""
        ...

    def known_costs(self, fidelity: int, cost_unit: str) -> np.ndarray | None:
        """Every recorded cost at a fidelity (the ``missing_cost`` rule's reference); None without a cost column."""
        ...

    def describe_cost(self, fidelity: int, seed: Any) -> str:
        """Where a cost was looked up, for error messages."""
        ...


class BaseReward:
    """Defaults of :class:`RewardBackend` for a backend without tables (subclasses set the attributes and
    implement ``evaluate``): every model of ``space`` can be evaluated, no static columns, nothing shared per run."""

    source: str = "base"
    space: SubSpace
    max_fidelity: int = 1
    teacher: Arch | None = None
    tabular: bool = False
    store: BloxStore | None = None
    batched: bool = False
    proxy: str | None = None

    def shared_work(self) -> SharedWork | None:
        """Nothing is shared between evaluations."""
        return None

    def block_signatures(self) -> Mapping[str, np.ndarray] | None:
        """No block signatures."""
        return None

    def evaluate(self, arch: Arch, fidelity: int | None = None, *, cost_unit: str = "seconds",
                 rng: np.random.Generator | None = None) -> Evaluation:
        raise NotImplementedError(f"{type(self).__name__} must implement evaluate")

    def fidelity(self, fidelity: int | None) -> int:
        return check_fidelity(fidelity, self.max_fidelity)

    def new_run(self, shared: SharedCharges | None = None) -> None:
        """Nothing is shared between evaluations."""

    def close(self) -> None:
        """Nothing to release."""

    @cached_property
    def _members(self) -> np.ndarray:
        return self.space.indices()

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """Position of each model in the space's sorted indices (-1 outside the space)."""
        idx = np.asarray(indices, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._members, idx), len(self._members) - 1)
        return np.where(self._members[pos] == idx, pos, -1)

    def static_costs(self) -> Mapping[str, np.ndarray]:
        return {}

    def arch_of_local(self, local: np.ndarray) -> np.ndarray:
        """Model indices of local block coordinates ``(..., 3)`` in this backend's space."""
        return local_to_indices(self.space, local)

    def known_costs(self, fidelity: int, cost_unit: str) -> np.ndarray | None:
        return None

    def describe_cost(self, fidelity: int, seed: Any) -> str:
        return f"the cost {type(self).__name__} reported"
