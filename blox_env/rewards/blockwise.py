"""Tabular blockwise rewards: fine-tuned accuracies read from a store's blockwise tables at tabular speed.

``gym.make("Blox-v0", reward="tabular", mode="blockwise", teacher="M1", ft_epochs=1)`` evaluates a
model by looking up its fine-tuning with the teacher's distilled blocks (see
:mod:`blox_env.datasets.store.blockwise`). Metrics are those of the fine-tuning run
(``val_top1`` best within the fidelity, ``test_top1``, ``train_time_s``) plus
``normal_test_top1`` / ``normal_val_top1`` (the model's normal training, mean over seeds: what the
architecture is really worth, for reporting) and the static costs.

Cost in seconds, as in live blockwise mode: the recorded fine-tuning time, plus, the first time a
search run (a :class:`~blox_env.runs.SearchRun`; used directly, this backend instance or since
:meth:`BlockwiseTabularReward.new_run`) uses them, the recorded distillation seconds of each of the
model's blocks and, once, the teacher's recorded training time (``charge_teacher=False`` leaves it
out, e.g. when the teacher is a given model).
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

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from blox_env.datasets.store.blockwise import BlockwiseTables
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError
from blox_env.rewards.base import Evaluation
from blox_env.rewards.tabular import TabularReward
from blox_env.runs.budget import SharedCharges, SharedWork, check_missing_cost, resolve_missing
from blox_env.space import Arch

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["BlockwiseTabularReward", "TeacherBackends", "TeacherPair"]


class BlockwiseTabularReward(TabularReward):
    """Fine-tuning results of one teacher and length (see the module docstring)."""

    batched = False  # shared work is charged once per search run, which the numpy vector envs do not model

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
        lib_attrs = store.teacher_attrs(self.teacher)
        self.teacher_time_s = float(lib_attrs.get("train_time_s", np.nan)) if charge_teacher else 0.0
        self._normal = {m: tables.normal(m) for m in ("test_top1", "val_top1")}
        self.charges = SharedCharges()

    def new_run(self, shared: SharedCharges | None = None) -> None:
        """A new search run pays for the teacher and the blocks again (charged against ``shared``, the run's record)."""
        self.charges = shared if shared is not None else SharedCharges()

    def evaluate(self, arch: Arch, fidelity: int | None = None, *, cost_unit: str = "seconds",
                 rng: np.random.Generator | None = None) -> Evaluation:
        ev = super().evaluate(arch, fidelity, cost_unit=cost_unit, rng=rng)
        row = int(self._row_of[arch.index])
        ev.metrics["normal_test_top1"] = float(self._normal["test_top1"][row])
        ev.metrics["normal_val_top1"] = float(self._normal["val_top1"][row])
        work = self.shared_work()
        items = work.pending(arch, self.charges)
        if cost_unit != "seconds":  # epochs and evaluations count fine-tuning only
            self.charges.commit(items)
            ev.metrics["distill_cost_s"] = float(sum(items.values()))
            return ev
        model = f"{arch.index} (hash {arch.hash}, blocks {arch.blocks})"
        # everything is resolved before anything is marked paid
        cost, ft_imputed = resolve_missing(np.array([ev.cost]), rule=self.missing_cost, unit=cost_unit,
                                           known=lambda: self.known_costs(ev.fidelity, cost_unit),
                                           describe=lambda k, n: (model, self.describe_cost(ev.fidelity, ev.seed)))
        seconds, blocks_imputed = work.seconds(items, model=model)
        extra = float(sum(seconds.values()))
        self.charges.commit(items)
        ev.metrics["distill_cost_s"] = extra
        imputed = self.missing_cost if ft_imputed.any() or blocks_imputed else None
        return ev._replace(cost=float(cost[0]) + extra, cost_imputed=imputed)

    def shared_work(self) -> SharedWork:
        """The teacher's training and its distilled blocks' recorded seconds (charged once per search run)."""
        return SharedWork(np.asarray(self.signatures["distill_time_s"], dtype=np.float64), self.teacher_time_s,
                          self.teacher.index, self.missing_cost, self.teacher_name)

    def block_signatures(self) -> Mapping[str, np.ndarray]:
        """The teacher's block signatures (``distill_loss``, ``lana_delta``, ``distill_time_s``, ...)."""
        return self.signatures

    def batch(self, rows: np.ndarray, fidelity: int, seed_pos: np.ndarray | None) -> dict[str, np.ndarray]:
        raise InvalidArgumentError("blockwise rewards charge distillation once per search run, which the "
                                   "vector envs do not model: use gym.make('Blox-v0', ...) per search")


class TeacherPair(NamedTuple):
    """The short and full fine-tuning backends of one teacher (``exact`` False: a stand-in for another model)."""

    short: Any
    full: Any
    teacher: int  # model index of the teacher whose distilled blocks both backends use
    exact: bool


class TeacherBackends:
    """``arch -> TeacherPair``: the fine-tuning backends of any model used as teacher (the iterative teacher).

    A tabulated full teacher (M1, M5) is read from the tables. Any other model is run live when ``live`` is
    given (``live(arch, ft_epochs)`` returns a backend, e.g. the one
    :func:`~blox_env.rewards.live.live_teacher_backends` makes, which trains the teacher, distils its blocks
    and fine-tunes with the tables' own recipe, writing every result to its store); without ``live`` the
    tabulated full teacher nearest in seed-mean normal ``metric`` stands in (``exact`` False; the strategy's
    trace records both, so reports can label the approximation).
    Backends are cached; a search run charges each teacher's blocks once (SharedCharges keys carry the teacher).
    """

    def __init__(self, store: BloxStore, *, metric: str = "val_top1",
                 live: Callable[[Arch, int], Any] | None = None) -> None:
        self.tables = BlockwiseTables(store)
        self.store, self.metric, self.live = store, metric, live
        self._normal = self.tables.normal(metric)
        self._names = self.tables.full_teachers()
        self._teacher_values = self._normal[store.rows([self.tables.teachers[n] for n in self._names])]
        self._pairs: dict[int, TeacherPair] = {}

    def tabulated(self, arch: Arch) -> str | None:
        """Name of the full teacher that is ``arch`` (None if ``arch`` is no tabulated full teacher)."""
        return next((n for n in self._names if self.tables.teachers[n].index == arch.index), None)

    def __call__(self, arch: Arch) -> TeacherPair:
        if arch.index not in self._pairs:
            short_e, full_e = min(self.tables.ft_epochs), max(self.tables.ft_epochs)
            name = self.tabulated(arch)
            if name is None and self.live is not None:
                pair = TeacherPair(self.live(arch, short_e), self.live(arch, full_e), arch.index, True)
            else:
                exact = name is not None
                if name is None:
                    value = self._normal[int(self.store.rows([arch])[0])]
                    name = self._names[int(np.argmin(np.abs(self._teacher_values - value)))]
                pair = TeacherPair(*(BlockwiseTabularReward(self.store, teacher=name, ft_epochs=e, metric=self.metric)
                                     for e in (short_e, full_e)), self.tables.teachers[name].index, exact)
            self._pairs[arch.index] = pair
        return self._pairs[arch.index]
