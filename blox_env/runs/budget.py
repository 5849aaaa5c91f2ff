"""The budget rule, in one place: cost units, charging, missing costs, shared work, the free-repeat stop rule.

Everything that charges a search for an evaluation uses these pieces: the search run
(:class:`~blox_env.runs.search.SearchRun`, its batched sibling for the vector envs), the reward
backends (a backend states an evaluation's cost from scratch in a unit, :func:`unit_cost`), the
blockwise backends and the simulated workers (shared work, :class:`SharedWork`), and every search
loop (:class:`FreeRepeatStop`). The rule:

- **units**: ``seconds`` (recorded training time), ``epochs`` (trained), ``evaluations`` (one each);
- **the proxy fidelity** (:data:`PROXY_FIDELITY`, fidelity 0): a zero-cost proxy scored on an untrained model,
  below one epoch; it costs its recorded seconds ``t``, in ``epochs`` ``t`` divided by the model's seconds per
  epoch of normal training (``t * E / T``, ``T`` the model's seed-mean recorded training time over ``E``
  epochs), in ``evaluations`` the fraction ``t / T`` of one full evaluation (:func:`proxy_cost`); a proxy of a
  model is paid once per run (a repeat is free unless ``charge_repeats``) and never pays for its training;
- **charging** (:func:`charge_amount`, :class:`CostLedger`): a repeat is free unless ``charge_repeats``:
  a model is charged only for the epochs beyond the highest fidelity already paid for it (a longer
  run continues from the checkpoint; in ``evaluations`` a longer run costs one evaluation);
- **missing costs** (:func:`resolve_missing`): a NaN, infinite or negative cost never reaches a
  ledger; ``missing_cost="error"`` refuses the evaluation with :class:`~blox_env.errors.MissingCostError`
  naming the model, ``"median"`` / ``"max"`` charge that statistic of the recorded costs, flagged;
- **shared work** (:class:`SharedCharges`, :class:`SharedWork`): a blockwise teacher's training and
  each of its distilled blocks are charged once per search run, to the first evaluation that needs
  them, or up front for a method that reads the signatures of many blocks before its first prediction
  (DONNA, LANA: :meth:`SharedWork.pending_blocks`, charged by ``SearchRun.prepay``), in seconds
  (epochs and evaluations count fine-tuning only); missing block times follow the
  same ``missing_cost`` rule over the teacher's recorded distillation times;
- **the free-repeat stop rule** (:class:`FreeRepeatStop`): with free repeats a search stops once every
  model it may evaluate was evaluated at full fidelity, or after ``10 x`` that many evaluations in a
  row that cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from blox_env.checks import check_bool, check_budget, check_choice
from blox_env.errors import InvalidArgumentError, MissingCostError
from blox_env.space import Arch

__all__ = ["COST_UNITS", "FREE_STREAK_FACTOR", "MISSING_COST_RULES", "PROXY_FIDELITY", "CostLedger", "FreeRepeatStop",
           "SharedCharges", "SharedWork", "charge_amount", "check_missing_cost", "cost_is_missing", "impute_cost",
           "missing_cost_error", "proxy_cost", "resolve_missing", "unit_cost"]

COST_UNITS = ("seconds", "epochs", "evaluations")
MISSING_COST_RULES = ("error", "median", "max")
#: A search with free repeats stops after this many times its feasible models' count of free evaluations in a row.
FREE_STREAK_FACTOR = 10
#: The fidelity of a zero-cost proxy evaluation (an untrained model scored on one minibatch: below one epoch).
PROXY_FIDELITY = 0


# ---------------------------------------------------------------------------------------------- units
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


def proxy_cost(cost_unit: str, *, seconds: Any, train_seconds: Any, epochs: int) -> Any:
    """What one proxy evaluation costs from scratch in ``cost_unit`` (see the module docstring): its recorded
    ``seconds``; in epochs ``seconds`` over the model's seconds per epoch (``train_seconds / epochs``); in
    evaluations the fraction ``seconds / train_seconds`` of one full training. Scalars or arrays; a missing
    ``train_seconds`` gives a missing (NaN) cost in epochs and evaluations."""
    if cost_unit == "seconds":
        return seconds
    t, full = np.asarray(seconds, dtype=np.float64), np.asarray(train_seconds, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(full > 0, t / np.where(full > 0, full, 1.0), np.nan)
    if cost_unit == "epochs":
        frac = frac * epochs
    elif cost_unit != "evaluations":
        raise InvalidArgumentError(f"cost_unit must be one of {', '.join(map(repr, COST_UNITS))}, got {cost_unit!r}")
    return frac if frac.ndim else float(frac)


def charge_amount(full: Any, fidelity: int, paid: Any, *, cost_unit: str, charge_repeats: bool) -> tuple[Any, Any]:
    """What an evaluation at ``fidelity`` costs a run that paid ``paid`` epochs of the model: (cost, paid after).

    The budget rule's arithmetic, for scalars and numpy arrays alike (``full``: the evaluation's cost from scratch).
    The proxy fidelity (0) is one piece of work of its own, paid once (callers key it apart from training).
    """
    fidelity = max(fidelity, 1)
    new = fidelity - paid
    new = new * (new > 0)  # epochs beyond what was paid
    if charge_repeats:
        return full, paid + new
    if cost_unit == "evaluations":
        return full * (new > 0), paid + new
    return full * new / fidelity, paid + new


# ---------------------------------------------------------------------------------------------- missing costs
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


# ---------------------------------------------------------------------------------------------- shared work
class SharedCharges:
    """Which shared work a search run has paid for: a teacher's training and each of its distilled blocks.

    One record per run, shared by every backend the run uses (e.g. FT-short and FT-full with one teacher),
    so a block is charged once. Keys carry the teacher (its model index): other teachers' blocks are other work.
    """

    def __init__(self) -> None:
        self.paid: set[Hashable] = set()

    def clear(self) -> None:
        self.paid.clear()

    def commit(self, keys: Any) -> None:
        """Mark the teacher / blocks in ``keys`` (keys of :meth:`SharedWork.pending`) as paid in this run."""
        self.paid.update(keys)


class SharedWork(NamedTuple):
    """A backend's once-per-run work: its teacher's training and the distillation of each of its blocks.

    ``distill_time_s[s, b]``: recorded seconds of distilling block ``b`` of stage ``s`` (NaN: none recorded);
    ``teacher_time_s``: the teacher's training seconds (0 when it is not charged; NaN: none recorded);
    ``teacher``: its model index (the keys of :class:`SharedCharges`); ``missing_cost``: the run's rule for
    blocks without a recorded time; ``teacher_name``: for messages.
    """

    distill_time_s: np.ndarray
    teacher_time_s: float
    teacher: int
    missing_cost: str = "error"
    teacher_name: str = "the teacher"

    def pending(self, arch: Arch, charges: SharedCharges | None = None) -> dict[Hashable, float]:
        """The teacher and blocks of ``arch`` not in ``charges`` yet (all of them without), with recorded seconds."""
        paid = charges.paid if charges is not None else ()
        out: dict[Hashable, float] = {}
        if ("teacher", self.teacher) not in paid:
            out[("teacher", self.teacher)] = float(self.teacher_time_s)
        for s, b in enumerate(arch.blocks):
            if (self.teacher, s, b) not in paid:
                out[(self.teacher, s, b)] = float(self.distill_time_s[s, b])
        return out

    def pending_blocks(self, blocks: Iterable[tuple[int, int]],
                       charges: SharedCharges | None = None) -> dict[Hashable, float]:
        """The teacher and the ``(stage, block)`` pairs not in ``charges`` yet, with recorded seconds: the work a
        method that reads these blocks' signatures pays before its first prediction (DONNA, LANA)."""
        paid = charges.paid if charges is not None else ()
        out: dict[Hashable, float] = {}
        if ("teacher", self.teacher) not in paid:
            out[("teacher", self.teacher)] = float(self.teacher_time_s)
        for s, b in blocks:
            if (self.teacher, int(s), int(b)) not in paid:
                out[(self.teacher, int(s), int(b))] = float(self.distill_time_s[int(s), int(b)])
        return out

    def charge(self, arch: Arch, charges: SharedCharges) -> float:
        """Recorded seconds of ``arch``'s shared work not yet in ``charges``, marked paid; NaN (nothing marked)
        when one is missing, so the run's ``missing_cost`` rule decides (never charged as 0)."""
        items = self.pending(arch, charges)
        cost = float(sum(items.values()))
        if not cost_is_missing(cost):
            charges.commit(items)
        return cost

    def seconds(self, items: Mapping[Hashable, float], *, model: str) -> tuple[dict[Hashable, float], bool]:
        """Seconds to charge for each pending item (missing block times resolved by the rule) and whether any
        was imputed. A teacher without a recorded time cannot be imputed: :class:`MissingCostError`."""
        out: dict[Hashable, float] = {}
        imputed = False
        distill = np.asarray(self.distill_time_s, dtype=np.float64)
        for key, value in items.items():
            if not cost_is_missing(value):
                out[key] = float(value)
                continue
            if key[0] == "teacher":
                raise MissingCostError(f"teacher {self.teacher_name} of model {model} has no recorded training "
                                       "time (train_time_s attribute of its block library), so the budget "
                                       "cannot be charged for it: pass charge_teacher=False to leave it out")
            _, stage, block = key
            fixed, _ = resolve_missing(
                np.array([value]), rule=self.missing_cost, unit="seconds",
                known=lambda: distill[~cost_is_missing(distill)],
                describe=lambda k, n, s=stage, b=block: (
                    model, f"distill_time_s of block {b} at stage {s} (teacher {self.teacher_name})"))
            out[key] = float(fixed[0])
            imputed = True
        return out, imputed


# ---------------------------------------------------------------------------------------------- the ledger
@dataclass
class CostLedger:
    """Cumulative cost of one search run, with free repeats unless ``charge_repeats`` (see the module docstring)."""

    budget: float | None
    cost_unit: str
    charge_repeats: bool = False
    spent: float = 0.0
    evaluations: int = 0
    best: float = -math.inf
    best_index: int = -1
    paid: dict[Any, int] = field(default_factory=dict)
    recorded: list[float] = field(default_factory=list)  # full costs charged as recorded (not imputed) this run

    def __post_init__(self) -> None:
        self.cost_unit = check_choice("cost_unit", self.cost_unit, COST_UNITS)
        self.budget = check_budget(self.budget, self.cost_unit)
        self.charge_repeats = check_bool("charge_repeats", self.charge_repeats)

    @property
    def exhausted(self) -> bool:
        return self.budget is not None and self.spent >= self.budget

    @property
    def left(self) -> float:
        return math.inf if self.budget is None else max(0.0, self.budget - self.spent)

    def charge(self, index: Hashable, fidelity: int, full_cost: float, *, imputed: bool = False) -> float:
        """Record one evaluation of model ``index`` (any hashable key); returns what it costs this run.

        A missing ``full_cost`` (NaN, infinite, negative) raises :class:`MissingCostError` and changes nothing:
        the run's spent budget can never become NaN (resolve a missing cost first, see ``SearchRun``).
        """
        if cost_is_missing(full_cost):
            raise MissingCostError(f"model {index} has no recorded cost ({full_cost!r} {self.cost_unit}): a budget "
                                   "cannot be charged for it; refuse the evaluation or charge a stated replacement "
                                   "(the envs' missing_cost='median' | 'max')")
        cost, self.paid[index] = charge_amount(full_cost, fidelity, self.paid.get(index, 0),
                                               cost_unit=self.cost_unit, charge_repeats=self.charge_repeats)
        self.spent += cost
        self.evaluations += 1
        if not imputed:
            self.recorded.append(float(full_cost))
        return cost

    def prepay(self, cost: float) -> None:
        """Charge shared work paid up front (no evaluation, no model): ``cost`` must be chargeable."""
        if cost_is_missing(cost):
            raise MissingCostError(f"shared work without a recorded cost ({cost!r} {self.cost_unit}) cannot be charged")
        self.spent += float(cost)

    def observe(self, index: int, value: float) -> None:
        """Best-so-far: keep ``value`` of model ``index`` if it beats the best."""
        if value > self.best:
            self.best, self.best_index = value, index

    def new_run(self) -> None:
        self.spent, self.evaluations, self.best, self.best_index = 0.0, 0, -math.inf, -1
        self.paid.clear()
        self.recorded.clear()


# ---------------------------------------------------------------------------------------------- stop rule
class FreeRepeatStop:
    """The free-repeat stop rule of every search loop (see the module docstring).

    ``n_feasible``: the models the agent may propose; ``free_repeats``: False when repeats are charged
    (then the rule never stops a search: the budget does). Call :meth:`observe` after each evaluation.
    """

    def __init__(self, n_feasible: int, *, free_repeats: bool, max_fidelity: int) -> None:
        self.n_feasible = int(n_feasible)
        self.free_repeats = bool(free_repeats)
        self.max_fidelity = int(max_fidelity)
        self.seen_full: set[int] = set()
        self.free_streak = 0

    @property
    def done(self) -> bool:
        """True once the search can learn nothing new for free."""
        return self.free_repeats and (len(self.seen_full) >= self.n_feasible
                                      or self.free_streak >= FREE_STREAK_FACTOR * self.n_feasible)

    def observe(self, index: int, fidelity: int, charged: float) -> None:
        """One evaluation of model ``index`` at ``fidelity`` that cost the run ``charged``."""
        if fidelity == self.max_fidelity:
            self.seen_full.add(index)
        self.free_streak = self.free_streak + 1 if charged == 0 else 0
