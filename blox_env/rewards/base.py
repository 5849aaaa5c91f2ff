"""The reward-backend Protocol: what the envs, the harness and the constraints need from a source of metrics.

A backend turns an architecture and a fidelity (training epochs) into an
:class:`Evaluation`: a dict of metrics, the cost of obtaining them (in one of
:data:`COST_UNITS`) and its source ("tabular" | "surrogate" | "live"). Besides
``evaluate`` it resolves fidelities, starts search runs (``new_run``: shared
work such as a blockwise teacher and its distilled blocks is charged once per
run, see :class:`SharedCharges`), releases what it opened (``close``), and says
which models it can evaluate and their static costs (``rows``,
``static_costs``: constraints and action masks) and what its recorded costs are
(``known_costs``, ``describe_cost``: the ``missing_cost`` rule of
:mod:`blox_env.runs`). :class:`BaseReward` gives the defaults of a backend
without tables (every model of its space, no static columns, nothing shared).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from functools import cached_property
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from blox_env.errors import InvalidArgumentError, MissingCostError
from blox_env.space import N_BLOCKS, N_STAGES, Arch, SubSpace

__all__ = ["COST_UNITS", "MISSING_COST_RULES", "BaseReward", "Evaluation", "RewardBackend", "SharedCharges",
           "check_fidelity", "check_missing_cost", "cost_is_missing", "impute_cost", "local_to_indices",
           "missing_cost_error", "resolve_missing", "unit_cost"]

COST_UNITS = ("seconds", "epochs", "evaluations")
MISSING_COST_RULES = ("error", "median", "max")


class Evaluation(NamedTuple):
    """Result of evaluating one architecture at one fidelity."""

    arch: Arch
    metrics: dict[str, float]
    cost: float  # in ``cost_unit``: what obtaining these metrics from scratch costs
    cost_unit: str
    source: str  # "tabular" | "surrogate" | "live"
    fidelity: int
    seed: int | str | None
    cost_imputed: str | None = None  # the missing_cost rule ("median" | "max") that set ``cost``; None if recorded


# ---------------------------------------------------------------------------------------------- costs
def unit_cost(cost_unit: str, *, seconds: Any, epochs: Any) -> Any:
    """The cost of one evaluation in ``cost_unit``: its recorded ``seconds``, the ``epochs`` trained, or 1.

    The one place a cost unit is dispatched (scalars or arrays pass through as given).
    """
    if cost_unit == "seconds":
        return seconds
    if cost_unit == "epochs":
        return epochs
    if cost_unit == "evaluations":
        return 1
    raise InvalidArgumentError(f"cost_unit must be one of {', '.join(map(repr, COST_UNITS))}, got {cost_unit!r}")


def check_fidelity(fidelity: int | None, max_fidelity: int) -> int:
    """A fidelity (training epochs) in ``1..max_fidelity``; ``None`` means the full protocol."""
    if fidelity is None:
        return max_fidelity
    if isinstance(fidelity, (bool, np.bool_)) or not isinstance(fidelity, (int, np.integer)) \
            or not 1 <= int(fidelity) <= max_fidelity:
        raise InvalidArgumentError(f"epochs (fidelity) must be an integer in 1..{max_fidelity}, got {fidelity!r}")
    return int(fidelity)


def check_missing_cost(rule: Any) -> str:
    """The ``missing_cost`` rule: ``"error"`` (refuse), ``"median"`` or ``"max"`` (charge that recorded cost)."""
    if not isinstance(rule, str) or rule not in MISSING_COST_RULES:
        raise InvalidArgumentError(f"missing_cost must be one of {', '.join(map(repr, MISSING_COST_RULES))} "
                                   f"(refuse an evaluation without a recorded cost, or charge the median/max recorded "
                                   f"cost), got {rule!r}")
    return rule


def cost_is_missing(cost: Any) -> Any:
    """True where a cost cannot be charged: NaN, infinite or negative (elementwise on arrays)."""
    c = np.asarray(cost, dtype=np.float64)
    return ~np.isfinite(c) | (c < 0)


def impute_cost(rule: str, known: np.ndarray) -> float | None:
    """The stated replacement for a missing cost: median or max of the ``known`` costs (None if there are none)."""
    if rule not in ("median", "max") or len(known) == 0:
        return None
    return float(np.median(known) if rule == "median" else np.max(known))


def missing_cost_error(model: str, column: str, value: Any, known: np.ndarray, unit: str) -> MissingCostError:
    """The error for an evaluation without a recorded cost, naming the model, the column and the options."""
    if len(known):
        ref = (f"missing_cost='median' charges the median recorded cost ({np.median(known):.6g} {unit}, over the "
               f"{len(known)} recorded values) and missing_cost='max' the maximum ({np.max(known):.6g} {unit}), "
               "both flagged in info['cost_imputed']")
    else:
        ref = "nothing has a recorded cost to impute from, so missing_cost='median'/'max' cannot help here"
    return MissingCostError(
        f"model {model} has no recorded cost: {column} is {value!r}, so the budget cannot be charged for it "
        f"(charging nothing would silently switch the budget off). Options: {ref}; cost_unit='epochs' or "
        "'evaluations' needs no recorded time; or complete the store (rebuild or re-import it)."
    )


def resolve_missing(costs: np.ndarray, *, rule: str, known: Callable[[], np.ndarray], unit: str,
                    describe: Callable[[int, int], tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """``costs`` with missing ones replaced by the ``missing_cost`` rule, and where they were.

    ``known()`` gives the rule's reference (recorded costs); ``describe(k, n_missing)`` names the model and the
    column of the ``k``-th cost for the :class:`MissingCostError` raised under ``rule="error"`` or without reference.
    """
    missing = cost_is_missing(costs)
    if not missing.any():
        return costs, missing
    reference = known()
    value = impute_cost(rule, reference)
    if value is None:
        k = int(np.flatnonzero(missing)[0])
        model, column = describe(k, int(missing.sum()))
        raise missing_cost_error(model, column, float(costs[k]), reference, unit)
    return np.where(missing, value, costs), missing


class SharedCharges:
    """Shared work charged once per search run: a teacher's training and each of its distilled blocks.

    One record per run, shared by every backend the run uses (e.g. FT-short and FT-full with one teacher),
    so a block is charged once. Keys carry the teacher (its model index): other teachers' blocks are other work.
    """

    def __init__(self) -> None:
        self.paid: set[Hashable] = set()

    def clear(self) -> None:
        self.paid.clear()

    def pending(self, arch: Arch, distill_time_s: np.ndarray, teacher_time_s: float, *,
                teacher: int) -> dict[Hashable, float]:
        """The teacher and blocks of ``arch`` not charged yet in this run, with their recorded seconds (NaN: none)."""
        out: dict[Hashable, float] = {}
        if ("teacher", teacher) not in self.paid:
            out[("teacher", teacher)] = float(teacher_time_s)
        for s, b in enumerate(arch.blocks):
            if (teacher, s, b) not in self.paid:
                out[(teacher, s, b)] = float(distill_time_s[s, b])
        return out

    def commit(self, keys: Any) -> None:
        """Mark the teacher / blocks in ``keys`` (keys of :meth:`pending`) as paid in this run."""
        self.paid.update(keys)

    def charge(self, arch: Arch, distill_time_s: np.ndarray, teacher_time_s: float, *, teacher: int) -> float:
        """Seconds of the teacher and of ``arch``'s blocks not charged yet in this run; marks them paid.

        A missing recorded time makes the result NaN and marks nothing paid (never charged as 0).
        """
        items = self.pending(arch, distill_time_s, teacher_time_s, teacher=teacher)
        cost = float(sum(items.values()))
        if not cost_is_missing(cost):
            self.commit(items)
        return cost


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
