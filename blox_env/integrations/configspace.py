"""The BLOX space as a ConfigSpace ``ConfigurationSpace`` and an objective function for ConfigSpace optimizers.

SMAC, DEHB and other ConfigSpace-based optimizers search the benchmark through two pieces:

- :func:`configuration_space`: three categorical hyperparameters ``stage0``, ``stage1``, ``stage2`` whose
  choices are that stage's canonical block ids (0..44, as ``blox space info`` numbers them) present in the
  store, plus, with ``fidelity=True``, an integer ``epochs`` fidelity over the epochs the store records
  (``1..E``, default ``E``; marked ``meta={"fidelity": True}``);
- :func:`objective` (or a reusable :class:`BloxObjective`): a configuration and a fidelity (epochs) ->
  ``{"fitness", "cost", "info"}``, the dict DEHB's target functions return.

Orientation: these optimizers minimise, so ``fitness`` is in the project's minimisation convention
(:func:`blox_env.objectives.to_minimisation`): a maximised objective is negated (``val_top1`` 91.2 ->
-91.2), a minimised one is kept; one float for one objective, a list for several. ``info["values"]``
holds the values as the store records them. ``cost`` is what the tabular backend charges for the
evaluation at that fidelity (the recorded ``train_time_s`` in seconds by default), so a multi-fidelity
optimizer's spent budget is the benchmark's. Needs the ``integrations`` extra
(``pip install "blox-env[integrations]"``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.checks import check_choice, is_real, type_name
from blox_env.datasets.store.schema import CURVE_METRICS
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError
from blox_env.extras import require
from blox_env.objectives import Objective, objective_matrix, parse_objectives
from blox_env.rewards.factory import check_benchmark
from blox_env.rewards.tabular import TabularReward
from blox_env.runs import COST_UNITS, SearchRun
from blox_env.space import N_STAGES, Arch, SubSpace

if TYPE_CHECKING:
    from ConfigSpace import ConfigurationSpace

    from blox_env.datasets.store.core import BloxStore

__all__ = ["FIDELITY", "SEED_MAX", "STAGES", "BloxObjective", "configuration_space", "objective", "open_benchmark"]

#: Seeds numpy's legacy ``RandomState`` (ConfigSpace's sampler, Optuna's samplers) accepts: 0..2**32-1.
SEED_MAX = 2**32 - 1
#: Hyperparameter names: one categorical per stage, and the epoch fidelity.
STAGES = tuple(f"stage{s}" for s in range(N_STAGES))
FIDELITY = "epochs"


def _require_configspace() -> None:
    require("integrations", feature="the ConfigSpace search space (blox_env.integrations)")


def open_benchmark(benchmark: Any) -> BloxStore:
    """The store a ``benchmark=`` argument names (as ``gym.make``'s: a name, path, URL, open store or None)."""
    check_benchmark(benchmark)
    from blox_env.datasets.store.core import BloxStore, open_store

    return benchmark if isinstance(benchmark, BloxStore) else open_store(benchmark)


def _check_seed(seed: Any, seeds: tuple[int, ...]) -> int | str:
    if isinstance(seed, str) and seed == "mean":
        return "mean"
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)) and int(seed) in seeds:
        return int(seed)
    raise InvalidArgumentError(f"seed must be 'mean' (the mean over the run's seeds) or one of the run's seeds "
                               f"{list(seeds)}: a reproducible value per model, got {seed!r}")


class BloxObjective:
    """The benchmark as a ConfigSpace problem: its :meth:`configuration_space` and the objective (``__call__``).

    Built once per benchmark (the store is opened and its columns cached), then called as
    ``problem(config, fidelity)``. ``objectives`` are :func:`~blox_env.objectives.parse_objectives` specs;
    ``seed`` is ``"mean"`` (the mean over the run's seeds) or a seed label of the run; ``cost_unit`` and
    ``missing_cost`` follow the envs (a model without a recorded cost is refused by default).
    """

    def __init__(self, *, benchmark: Any = None, objectives: str | Sequence[str | Objective] = ("val_top1",),
                 run: str | None = None, seed: int | str = "mean", cost_unit: str = "seconds",
                 missing_cost: str = "error") -> None:
        _require_configspace()
        self.store = open_benchmark(benchmark)
        self.objectives = parse_objectives(objectives, store=self.store, run=run)
        self.cost_unit = check_choice("cost_unit", cost_unit, COST_UNITS)
        self.backend = TabularReward(self.store, run=run, seed_mode="mean")
        self.seed = _check_seed(seed, self.backend.seeds)
        if self.seed != "mean":
            self.backend = TabularReward(self.store, run=run, seed_mode=self.seed)
        self.run = self.backend.info.name
        self._charges = SearchRun(cost_unit=self.cost_unit, missing_cost=missing_cost)  # its missing_cost rule

    @property
    def space(self) -> SubSpace:
        """The product sub-space the store covers (each stage's block ids)."""
        return self.backend.space

    @property
    def max_epochs(self) -> int:
        """Epochs of the run's full protocol (the highest fidelity)."""
        return self.backend.max_fidelity

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(o.direction for o in self.objectives)

    def configuration_space(self, *, fidelity: bool = False, seed: int | None = None) -> ConfigurationSpace:
        """A ``ConfigurationSpace`` of the three stages' blocks (and, with ``fidelity``, the ``epochs`` fidelity).

        ``seed`` seeds the space's own sampler (``sample_configuration``), as ConfigSpace does.
        """
        if not isinstance(fidelity, (bool, np.bool_)):
            raise InvalidArgumentTypeError(f"fidelity must be a bool, got {fidelity!r} ({type_name(fidelity)})")
        if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer))):
            raise InvalidArgumentTypeError(f"seed must be an integer in 0..{SEED_MAX} or None, got {seed!r} "
                                           f"({type_name(seed)})")
        if seed is not None and not 0 <= int(seed) <= SEED_MAX:
            raise InvalidArgumentError(f"seed must be an integer in 0..{SEED_MAX} (numpy's RandomState seeds, "
                                       f"which ConfigSpace uses) or None, got {seed!r}")
        from ConfigSpace import Categorical, ConfigurationSpace, Integer

        space: dict[str, Any] = {
            name: Categorical(name, list(blocks), meta={"stage": s, "what": "canonical block id (0..44)"})
            for s, (name, blocks) in enumerate(zip(STAGES, self.space.blocks))
        }
        if fidelity:
            space[FIDELITY] = Integer(FIDELITY, (1, self.max_epochs), default=self.max_epochs,
                                      meta={"fidelity": True, "unit": "epochs"})
        return ConfigurationSpace(name=f"blox:{self.store.name}", seed=None if seed is None else int(seed),
                                  space=space, meta={"benchmark": self.store.name, "run": self.run})

    # ------------------------------------------------------------------ configurations
    def arch(self, config: Any) -> Arch:
        """The model a configuration names (a ConfigSpace ``Configuration`` or a dict of ``stage0..2``)."""
        values = self._values(config)
        blocks = []
        for s, name in enumerate(STAGES):
            b = values[name]
            if isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, np.integer)) \
                    or int(b) not in self.space.blocks[s]:
                raise InvalidArgumentError(f"config {name}={b!r} is not a block of this benchmark's stage {s}: "
                                           f"allowed {list(self.space.blocks[s])} (store {self.store.name!r})")
            blocks.append(int(b))
        return Arch(tuple(blocks))  # type: ignore[arg-type]

    def _values(self, config: Any) -> dict[str, Any]:
        if not isinstance(config, Mapping):
            raise InvalidArgumentTypeError(f"config must be a ConfigSpace Configuration or a dict of "
                                           f"{', '.join(STAGES)} (and optionally {FIDELITY}), got {config!r} "
                                           f"({type_name(config)})")
        values = dict(config)
        allowed = (*STAGES, FIDELITY)
        unknown = sorted(str(k) for k in values if k not in allowed)
        missing = [k for k in STAGES if k not in values]
        if unknown or missing:
            what = "; ".join(x for x in (f"unknown {', '.join(unknown)}" if unknown else "",
                                         f"missing {', '.join(missing)}" if missing else "") if x)
            raise InvalidArgumentError(f"config is not from the BLOX configuration space ({what}): it takes "
                                       f"{', '.join(STAGES)} and optionally {FIDELITY} (see configuration_space())")
        return values

    def epochs(self, config: Any, fidelity: Any = None) -> int:
        """The fidelity of an evaluation: ``fidelity``, else the config's ``epochs``, else the full protocol.

        A real ``fidelity`` (DEHB's budgets are floats) is rounded to the nearest epoch; it must lie in ``1..E``.
        """
        in_config = self._values(config).get(FIDELITY)
        e = self._epoch(FIDELITY, in_config) if in_config is not None else None
        if fidelity is not None:
            f = self._epoch("fidelity", fidelity)
            if e is not None and e != f:
                raise InvalidArgumentError(f"the config says {FIDELITY}={e} but fidelity={fidelity!r}: give one, "
                                           "or the same value")
            e = f
        return self.max_epochs if e is None else e

    def _epoch(self, name: str, value: Any) -> int:
        top = self.max_epochs
        if not is_real(value):
            raise InvalidArgumentTypeError(f"{name} must be a number of epochs in 1..{top} (int, or a float rounded "
                                           f"to the nearest epoch), got {value!r} ({type_name(value)})")
        x = float(value)
        if not math.isfinite(x) or not 1 <= x <= top:
            raise InvalidArgumentError(f"{name} must be a number of epochs in 1..{top} (this store's run records "
                                       f"{top} epochs), got {value!r}")
        return max(1, min(top, int(round(x))))

    # ------------------------------------------------------------------ the objective
    def check_epochs(self, epochs: int) -> None:
        """Refuse objectives whose own ``@epoch`` lies beyond the fidelity (as the envs do): an evaluation at
        ``epochs`` is charged for ``epochs`` of training, so it cannot read a later epoch's value."""
        late = [o.name for o in self.objectives if o.epoch is not None and o.epoch > epochs]
        if late:
            raise InvalidArgumentError(f"objective(s) {', '.join(late)} read epochs beyond the fidelity of {epochs} "
                                       f"epochs (what this evaluation is charged for): use an epoch in 1..{epochs} "
                                       f"in the objective, or evaluate at a fidelity >= its epoch")

    def at_fidelity(self, epochs: int) -> tuple[Objective, ...]:
        """The objectives read at ``epochs``: per-epoch columns without their own ``@epoch`` take the fidelity."""
        return tuple(Objective(o.column, o.direction, epochs)
                     if o.epoch is None and (o.column in CURVE_METRICS or o.column == "train_time_s") else o
                     for o in self.objectives)

    def __call__(self, config: Any, fidelity: Any = None) -> dict[str, Any]:
        """Evaluate a configuration at a fidelity: ``{"fitness", "cost", "info"}`` (see the module docstring)."""
        arch = self.arch(config)
        epochs = self.epochs(config, fidelity)
        self.check_epochs(epochs)
        objs = self.at_fidelity(epochs)
        loss = objective_matrix(self.store, objs, seed=self.seed, archs=[arch.index], run=self.run)[0]
        ev = self._charges.resolve(self.backend.evaluate(arch, epochs, cost_unit=self.cost_unit), self.backend)
        values = {o.name: (-v if o.maximise else v) for o, v in zip(self.objectives, loss.tolist())}
        fitness: float | list[float] = float(loss[0]) if len(objs) == 1 else [float(v) for v in loss]
        return {"fitness": fitness, "cost": float(ev.cost),
                "info": {"values": values, "fidelity": epochs, "arch_index": arch.index, "blocks": arch.blocks,
                         "seed": self.seed, "cost_unit": self.cost_unit, "cost_imputed": ev.cost_imputed is not None,
                         "directions": self.directions}}


@functools.lru_cache(maxsize=8)
def _cached(benchmark: Any, objectives: Any, run: str | None, seed: Any, cost_unit: str,
            missing_cost: str) -> BloxObjective:
    return BloxObjective(benchmark=benchmark, objectives=objectives, run=run, seed=seed, cost_unit=cost_unit,
                         missing_cost=missing_cost)


def _problem(**kwargs: Any) -> BloxObjective:
    """A :class:`BloxObjective` for these arguments, reused across calls when they are hashable."""
    _require_configspace()
    objs = kwargs["objectives"]
    if isinstance(objs, list):
        kwargs["objectives"] = tuple(objs)
    try:
        hash(tuple(kwargs.values()))
    except TypeError:
        return BloxObjective(**kwargs)
    return _cached(**kwargs)


def configuration_space(*, benchmark: Any = None, fidelity: bool = False, seed: int | None = None,
                        run: str | None = None) -> ConfigurationSpace:
    """The benchmark's ``ConfigurationSpace``: ``stage0..2`` block choices, ``epochs`` with ``fidelity=True``."""
    return _problem(benchmark=benchmark, objectives=("val_top1",), run=run, seed="mean", cost_unit="seconds",
                    missing_cost="error").configuration_space(fidelity=fidelity, seed=seed)


def objective(config: Any, fidelity: Any = None, *, benchmark: Any = None,
              objectives: str | Sequence[str | Objective] = ("val_top1",), run: str | None = None,
              seed: int | str = "mean", cost_unit: str = "seconds", missing_cost: str = "error") -> dict[str, Any]:
    """Evaluate ``config`` at ``fidelity`` epochs on the benchmark: ``{"fitness", "cost", "info"}`` (minimised).

    The problem (store, columns) is built once per set of arguments and reused; see :class:`BloxObjective`.
    """
    problem = _problem(benchmark=benchmark, objectives=objectives, run=run, seed=seed, cost_unit=cost_unit,
                       missing_cost=missing_cost)
    return problem(config, fidelity)
