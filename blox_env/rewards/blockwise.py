"""Tabular blockwise rewards: fine-tuned accuracies read from a store's blockwise tables at tabular speed.

``gym.make("Blox-v0", reward="tabular", mode="blockwise", teacher="M1", ft_epochs=1)`` evaluates a
model by looking up its fine-tuning with the teacher's distilled blocks (see
:mod:`blox_env.datasets.store.blockwise`). Metrics are those of the fine-tuning run
(``val_top1`` best within the fidelity, ``test_top1``, ``train_time_s``) plus
``normal_test_top1`` / ``normal_val_top1`` (the model's normal training, mean over seeds: what the
architecture is really worth, for reporting) and the static costs.

Cost in seconds, as in live blockwise mode: the recorded fine-tuning time, plus, the first time a
search run (this backend instance, or since :meth:`BlockwiseTabularReward.new_run`) uses them, the
recorded distillation seconds of each of the model's blocks and, once, the teacher's recorded
training time (``charge_teacher=False`` leaves it out, e.g. when the teacher is a given model).
Costs in epochs or evaluations count fine-tuning only.

A missing recorded time (NaN fine-tuning or distillation seconds, or a teacher without
``train_time_s``) is never charged as 0: by default the evaluation is refused with
:class:`~blox_env.errors.MissingCostError` before anything is marked paid;
``missing_cost="median" | "max"`` charges the median / maximum recorded value of the same
column instead (the fine-tuning times of the run, the distillation times of the teacher's
blocks) and sets the evaluation's ``cost_imputed``. A missing teacher time has no column to
impute from: pass ``charge_teacher=False`` to leave it out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.datasets.store.blockwise import BlockwiseTables
from blox_env.errors import InvalidArgumentError, MissingCostError
from blox_env.rewards.tabular import (
    Evaluation,
    InvalidArgumentTypeError,
    TabularReward,
    check_missing_cost,
    cost_is_missing,
    impute_cost,
    missing_cost_error,
)
from blox_env.space import Arch

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["BlockCharges", "BlockwiseTabularReward", "NearestTeacherBackends", "make_tabular_backend",
           "nearest_teacher_backends"]


class BlockCharges:
    """Shared blockwise work (teacher training, each block's distillation) charged once per search run."""

    def __init__(self) -> None:
        self.paid: set[Any] = set()

    def clear(self) -> None:
        self.paid.clear()

    def pending(self, arch: Arch, distill_time_s: np.ndarray, teacher_time_s: float) -> dict[Any, float]:
        """The teacher and blocks of ``arch`` not charged yet in this run, with their recorded seconds (NaN: none)."""
        out: dict[Any, float] = {}
        if "teacher" not in self.paid:
            out["teacher"] = float(teacher_time_s)
        for s, b in enumerate(arch.blocks):
            if (s, b) not in self.paid:
                out[(s, b)] = float(distill_time_s[s, b])
        return out

    def commit(self, keys: Any) -> None:
        """Mark the teacher / blocks in ``keys`` as paid in this run."""
        self.paid.update(keys)

    def charge(self, arch: Arch, distill_time_s: np.ndarray, teacher_time_s: float) -> float:
        """Seconds of the teacher and of ``arch``'s blocks not charged yet in this run; marks them paid.

        A missing recorded time makes the result NaN and marks nothing paid (never charged as 0).
        """
        items = self.pending(arch, distill_time_s, teacher_time_s)
        cost = float(sum(items.values()))
        if not cost_is_missing(cost):
            self.commit(items)
        return cost


class BlockwiseTabularReward(TabularReward):
    """Fine-tuning results of one teacher and length (see the module docstring)."""

    def __init__(self, store: BloxStore, *, teacher: Any = "M1", ft_epochs: int | None = None,
                 distill_epochs: int | None = None, metric: str = "val_top1", charge_teacher: bool = True,
                 missing_cost: str = "error") -> None:
        if not isinstance(charge_teacher, (bool, np.bool_)):
            raise InvalidArgumentTypeError(f"charge_teacher must be a bool, got {charge_teacher!r}")
        self.missing_cost = check_missing_cost(missing_cost)
        tables = BlockwiseTables(store)
        name = tables.teacher_name(teacher)
        if name not in tables.full_teachers():
            raise InvalidArgumentError(f"teacher {name} is tabulated only for the 5 x 5 student/teacher matrix; "
                                       f"teachers with full tables: {', '.join(tables.full_teachers())}")
        run = tables.ft_run(name, ft_epochs)
        super().__init__(store, metric=metric, run=run, seed_mode=store.run_info(run).seeds[0])
        self.tables = tables
        self.teacher_name = name
        self.teacher = tables.teachers[name]
        self.ft_epochs = self.info.epochs
        self.signatures = tables.signatures(name, distill_epochs)
        lib_attrs = dict(store._group[f"blockwise/{self.teacher.hash}"].attrs)  # noqa: SLF001
        self.teacher_time_s = float(lib_attrs.get("train_time_s", np.nan)) if charge_teacher else 0.0
        self._normal = {m: tables.normal(m) for m in ("test_top1", "val_top1")}
        self.charges = BlockCharges()

    def new_run(self) -> None:
        """Forget which blocks (and teacher) this search run has paid for."""
        self.charges.clear()

    def block_charge(self, arch: Arch) -> float:
        """Distillation (and teacher) seconds not yet charged in this search run; marks them paid."""
        return self.charges.charge(arch, self.signatures["distill_time_s"], self.teacher_time_s)

    def evaluate(self, arch: Arch, fidelity: int | None = None, *, cost_unit: str = "seconds",
                 rng: np.random.Generator | None = None) -> Evaluation:
        ev = super().evaluate(arch, fidelity, cost_unit=cost_unit, rng=rng)
        row = int(self._row_of[arch.index])
        ev.metrics["normal_test_top1"] = float(self._normal["test_top1"][row])
        ev.metrics["normal_val_top1"] = float(self._normal["val_top1"][row])
        distill = self.signatures["distill_time_s"]
        items = self.charges.pending(arch, distill, self.teacher_time_s)
        if cost_unit != "seconds":
            self.charges.commit(items)
            ev.metrics["distill_cost_s"] = float(sum(items.values()))
            return ev
        model = f"{arch.index} (hash {arch.hash}, blocks {arch.blocks})"
        cost, imputed = ev.cost, None
        if cost_is_missing(cost):  # fine-tuning time
            known = self.known_costs(ev.fidelity, cost_unit)
            cost = impute_cost(self.missing_cost, known)
            if cost is None:
                raise missing_cost_error(model, self.describe_cost(ev.fidelity, ev.seed), ev.cost, known, cost_unit)
            imputed = self.missing_cost
        extra = 0.0
        for key, seconds in items.items():  # everything is resolved before anything is marked paid
            if cost_is_missing(seconds):
                if key == "teacher":
                    raise MissingCostError(f"teacher {self.teacher_name} of model {model} has no recorded training "
                                           "time (train_time_s attribute of its block library), so the budget "
                                           "cannot be charged for it: pass charge_teacher=False to leave it out")
                known = distill[~cost_is_missing(distill)]
                value = impute_cost(self.missing_cost, known)
                if value is None:
                    raise missing_cost_error(model, f"distill_time_s of block {key[1]} at stage {key[0]} (teacher "
                                             f"{self.teacher_name})", seconds, known, "seconds")
                seconds, imputed = value, self.missing_cost
            extra += seconds
        self.charges.commit(items)
        ev.metrics["distill_cost_s"] = extra
        return ev._replace(cost=cost + extra, cost_imputed=imputed)

    def batch(self, rows: np.ndarray, fidelity: int, seed_pos: np.ndarray | None) -> dict[str, np.ndarray]:
        raise InvalidArgumentError("blockwise rewards charge distillation once per search run, which the "
                                   "vector envs do not model: use gym.make('Blox-v0', ...) per search")


def make_tabular_backend(store: BloxStore, *, metric: str = "val_top1", run: str | None = None,
                         seed_mode: int | str = "random", mode: str = "normal", missing_cost: str = "error",
                         **blockwise: Any) -> TabularReward:
    """The tabular backend of an env or a benchmark: normal training, or a blockwise table (``mode``).

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
        return TabularReward(store, metric=metric, run=run, seed_mode=seed_mode)
    if mode != "blockwise":
        raise InvalidArgumentError(f"mode must be 'normal' or 'blockwise', got {mode!r}")
    allowed = {"teacher", "ft_epochs", "distill_epochs", "charge_teacher"}
    unknown = set(blockwise) - allowed
    if unknown:
        raise InvalidArgumentError(f"unknown arguments for the blockwise tabular reward: {', '.join(sorted(unknown))};"
                                   f" allowed: {', '.join(sorted(allowed))}")
    if run is not None:
        raise InvalidArgumentError("run= selects a normal run; in blockwise mode use teacher= and ft_epochs=")
    return BlockwiseTabularReward(store, metric=metric, missing_cost=missing_cost, **blockwise)


class NearestTeacherBackends:
    """``arch -> BlockwiseTabularReward`` of the tabulated full teacher closest to ``arch`` in normal accuracy.

    Tables hold fine-tunings for a few teachers only, so a strategy that promotes an arbitrary model to
    teacher (the iterative teacher) uses, in tabular mode, the tabulated teacher whose seed-mean normal
    ``metric`` is nearest to that model's; the backend's ``teacher`` says which one. Backends are cached,
    and all of them charge each block once per run (they share one :class:`BlockCharges` per teacher).
    """

    def __init__(self, store: BloxStore, *, metric: str = "val_top1", ft_epochs: int | None = None) -> None:
        self.tables = BlockwiseTables(store)
        self.store, self.metric, self.ft_epochs = store, metric, ft_epochs
        self._normal = self.tables.normal(metric)
        self._names = self.tables.full_teachers()
        self._teacher_values = self._normal[store.rows([self.tables.teachers[n] for n in self._names])]
        self._backends: dict[str, BlockwiseTabularReward] = {}

    def __call__(self, arch: Arch) -> BlockwiseTabularReward:
        value = self._normal[int(self.store.rows([arch])[0])]
        name = self._names[int(np.argmin(np.abs(self._teacher_values - value)))]
        if name not in self._backends:
            self._backends[name] = BlockwiseTabularReward(self.store, teacher=name, ft_epochs=self.ft_epochs,
                                                          metric=self.metric)
        return self._backends[name]


def nearest_teacher_backends(store: BloxStore, *, metric: str = "val_top1",
                             ft_epochs: int | None = None) -> NearestTeacherBackends:
    """See :class:`NearestTeacherBackends`."""
    return NearestTeacherBackends(store, metric=metric, ft_epochs=ft_epochs)
