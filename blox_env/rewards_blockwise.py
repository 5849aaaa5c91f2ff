"""Tabular blockwise rewards: fine-tuned accuracies read from a store's blockwise tables at tabular speed.

``gym.make("Blox-v0", reward="tabular", mode="blockwise", teacher="M1", ft_epochs=1)`` evaluates a
model by looking up its fine-tuning with the teacher's distilled blocks (see
:mod:`blox_env.datasets.blockwise_tables`). Metrics are those of the fine-tuning run
(``val_top1`` best within the fidelity, ``test_top1``, ``train_time_s``) plus
``normal_test_top1`` / ``normal_val_top1`` (the model's normal training, mean over seeds: what the
architecture is really worth, for reporting) and the static costs.

Cost in seconds, as in live blockwise mode: the recorded fine-tuning time, plus, the first time a
search run (this backend instance, or since :meth:`BlockwiseTabularReward.new_run`) uses them, the
recorded distillation seconds of each of the model's blocks and, once, the teacher's recorded
training time (``charge_teacher=False`` leaves it out, e.g. when the teacher is a given model).
Costs in epochs or evaluations count fine-tuning only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.datasets.blockwise_tables import BlockwiseTables
from blox_env.errors import InvalidArgumentError
from blox_env.rewards import Evaluation, TabularReward
from blox_env.space import Arch

if TYPE_CHECKING:
    from blox_env.datasets.store import BloxStore

__all__ = ["BlockCharges", "BlockwiseTabularReward", "NearestTeacherBackends", "make_tabular_backend",
           "nearest_teacher_backends"]


class BlockCharges:
    """Shared blockwise work (teacher training, each block's distillation) charged once per search run."""

    def __init__(self) -> None:
        self.paid: set[Any] = set()

    def clear(self) -> None:
        self.paid.clear()

    def charge(self, arch: Arch, distill_time_s: np.ndarray, teacher_time_s: float) -> float:
        """Seconds of the teacher and of ``arch``'s blocks not charged yet in this run; marks them paid."""
        cost = 0.0
        if "teacher" not in self.paid:
            cost += teacher_time_s
            self.paid.add("teacher")
        for s, b in enumerate(arch.blocks):
            if (s, b) not in self.paid:
                cost += float(np.nan_to_num(distill_time_s[s, b]))
                self.paid.add((s, b))
        return cost


class BlockwiseTabularReward(TabularReward):
    """Fine-tuning results of one teacher and length (see the module docstring)."""

    def __init__(self, store: BloxStore, *, teacher: Any = "M1", ft_epochs: int | None = None,
                 distill_epochs: int | None = None, metric: str = "val_top1", charge_teacher: bool = True) -> None:
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
        self.teacher_time_s = float(lib_attrs.get("train_time_s", 0.0)) if charge_teacher else 0.0
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
        extra = self.block_charge(arch)
        ev.metrics["distill_cost_s"] = extra
        if cost_unit != "seconds":
            return ev
        return ev._replace(cost=ev.cost + extra)

    def batch(self, rows: np.ndarray, fidelity: int, seed_pos: np.ndarray | None) -> dict[str, np.ndarray]:
        raise InvalidArgumentError("blockwise rewards charge distillation once per search run, which the "
                                   "vector envs do not model: use gym.make('Blox-v0', ...) per search")


def make_tabular_backend(store: BloxStore, *, metric: str = "val_top1", run: str | None = None,
                         seed_mode: int | str = "random", mode: str = "normal", **blockwise: Any) -> TabularReward:
    """The tabular backend of an env or a benchmark: normal training, or a blockwise table (``mode``)."""
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
    return BlockwiseTabularReward(store, metric=metric, **blockwise)


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
