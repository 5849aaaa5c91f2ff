"""``EnvConfig``: every option of the BLOX environments in one frozen dataclass, validated once.

``Blox-v0``, ``BloxOneShot-v0``, their numpy-batched vector versions and the multi-objective reward
all read their options from an :class:`EnvConfig`. Users keep passing keyword arguments to
``gym.make`` / ``gym.make_vec``; :meth:`EnvConfig.from_kwargs` fills the config from them (keywords
it does not know go to the reward backend, e.g. ``mode="blockwise"``, ``teacher="M1"``) and
validates types, ranges and combinations before any backend is built. What depends on the
benchmark (the metric's name, the epoch range, the seeds, constraint columns, objectives' columns)
is checked when the backend is built, against its store.

Wrong types raise :class:`~blox_env.errors.InvalidArgumentTypeError`, wrong values
:class:`~blox_env.errors.InvalidArgumentError`, each naming the argument and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from blox_env.checks import check_bool, check_budget, check_choice, check_optional_str, check_real, is_real, type_name
from blox_env.envs.checks import check_constraint, check_epochs, check_seed_mode
from blox_env.envs.multi_objective import check_objectives
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError
from blox_env.rewards.factory import BackendSpec
from blox_env.runs.budget import COST_UNITS, PROXY_FIDELITY, check_missing_cost

__all__ = ["MISSING_METRIC_RULES", "RENDER_MODES", "EnvConfig"]

RENDER_MODES = ("ansi", "rgb_array")
#: What a step does when the evaluated model's reward metric (or an objective) is missing (NaN) in the store.
MISSING_METRIC_RULES = ("error", "violation_reward")


class _Default:
    """The default ``violation_reward``: 0.0 for the scalar reward, the low end of ``reward_space`` for vectors."""

    def __repr__(self) -> str:
        return "<default violation_reward>"


DEFAULT_VIOLATION = _Default()


def _check_violation(value: Any, vector: bool) -> float | tuple[float, ...] | None:
    """``violation_reward`` as used: a float (scalar reward), a tuple (vector), None (vector default: low end)."""
    if value is DEFAULT_VIOLATION or (vector and value is None):
        return None if vector else 0.0
    if vector and isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return tuple(check_real(f"violation_reward[{k}]", v) for k, v in enumerate(value))
    if not is_real(value):
        what = "a real number or, with objectives=, one real number per objective"
        raise InvalidArgumentTypeError(f"violation_reward must be {what}, got {value!r} ({type_name(value)})")
    return check_real("violation_reward", value)


@dataclass(frozen=True, kw_only=True)
class EnvConfig:
    """Every option of ``Blox-v0``, ``BloxOneShot-v0`` and their vector versions (see :mod:`blox_env.envs.sequential`).

    ``violation_reward``: the reward of a model outside the ``constraint`` (or missing from the store):
    a float for the scalar reward (default 0.0); with ``objectives=`` one float per objective, or a float
    for every component, or by default the low end of ``reward_space`` in every component (below every
    allowed model, so violations never reach a Pareto front). ``missing_metric``: a model whose reward
    metric or objective is NaN in the store raises :class:`~blox_env.errors.MissingMetricError`
    (``"error"``, default) or gets the violation reward, flagged ``info["metric_missing"]``
    (``"violation_reward"``). ``backend_kwargs``: options of the reward backend (e.g. ``mode``, ``teacher``).
    ``proxy``: a zero-cost proxy of the store (e.g. ``"synflow"``) answered at the proxy fidelity, ``epochs=0``:
    each step scores the untrained model by the proxy (the reward is the proxy's score, higher is better, not
    normalised) and is charged the proxy's recorded seconds (in epochs or evaluations: a fraction of the model's
    normal training, :func:`~blox_env.runs.budget.proxy_cost`); ``proxy_init_seed``: ``"random"`` (default),
    ``"mean"`` or one of the store's proxy initialisation seeds.
    """

    benchmark: Any = None
    reward: str = "tabular"
    metric: str = "val_top1"
    epochs: int | None = None
    seed_mode: int | str = "random"
    budget: float | None = None
    cost_unit: str = "seconds"
    charge_repeats: bool = False
    missing_cost: str = "error"
    missing_metric: str = "error"
    reward_fn: Callable[[dict[str, Any]], Any] | None = None
    normalize: bool = True
    objectives: Any = None
    constraint: Mapping[str, float] | None = None
    violation_reward: Any = DEFAULT_VIOLATION
    run: str | None = None
    render_mode: str | None = None
    verbose: bool = False
    proxy: str | None = None
    proxy_init_seed: int | str = "random"
    backend_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.metric, str):
            raise InvalidArgumentTypeError(f"metric must be a metric name (a str) such as 'val_top1', got "
                                           f"{self.metric!r}")
        check_optional_str("run", self.run, "the name of one of the store's runs")
        check_epochs(self.epochs)
        check_seed_mode(self.seed_mode)
        set_(self, "cost_unit", check_choice("cost_unit", self.cost_unit, COST_UNITS))
        set_(self, "budget", check_budget(self.budget, self.cost_unit))
        set_(self, "charge_repeats", check_bool("charge_repeats", self.charge_repeats))
        set_(self, "missing_cost", check_missing_cost(self.missing_cost))
        set_(self, "missing_metric", check_choice("missing_metric", self.missing_metric, MISSING_METRIC_RULES))
        if self.reward_fn is not None and not callable(self.reward_fn):
            raise InvalidArgumentTypeError(f"reward_fn must be None or a callable metrics dict -> finite real "
                                           f"number, got {self.reward_fn!r}")
        check_objectives(self.objectives, self.reward_fn)
        set_(self, "normalize", check_bool("normalize", self.normalize))
        set_(self, "violation_reward", _check_violation(self.violation_reward, self.objectives is not None))
        if self.render_mode is not None and (not isinstance(self.render_mode, str)
                                             or self.render_mode not in RENDER_MODES):
            err = InvalidArgumentError if isinstance(self.render_mode, str) else InvalidArgumentTypeError
            raise err(f"render_mode must be None, 'ansi' or 'rgb_array', got {self.render_mode!r}")
        set_(self, "verbose", check_bool("verbose", self.verbose))
        set_(self, "constraint", check_constraint(self.constraint))
        check_optional_str("proxy", self.proxy, "the name of one of the store's zero-cost proxies, e.g. 'synflow'")
        check_seed_mode(self.proxy_init_seed, name="proxy_init_seed", what="a proxy initialisation seed of the store")
        if self.proxy is not None and self.reward != "tabular":
            raise InvalidArgumentError(f"proxy= is answered by the tabular reward (the store's proxy table), not "
                                       f"reward={self.reward!r}")
        if self.epochs == PROXY_FIDELITY and self.proxy is None:
            raise InvalidArgumentError("epochs=0 is the zero-cost proxy fidelity: name the proxy too, e.g. "
                                       "proxy='synflow' (or give epochs >= 1)")
        if self.epochs == PROXY_FIDELITY and self.objectives is not None:
            raise InvalidArgumentError("objectives= needs a trained fidelity (epochs >= 1 or None); at epochs=0 the "
                                       "reward is the proxy's score")
        if not isinstance(self.backend_kwargs, Mapping):
            raise InvalidArgumentTypeError(f"backend_kwargs must be a dict of reward-backend options, got "
                                           f"{self.backend_kwargs!r}")
        set_(self, "backend_kwargs", dict(self.backend_kwargs))

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> EnvConfig:
        """The config of ``gym.make`` keyword arguments: known options by name, the rest for the reward backend."""
        names = {f.name for f in fields(cls)} - {"backend_kwargs"}
        own = {k: v for k, v in kwargs.items() if k in names}
        extra = {k: v for k, v in kwargs.items() if k not in names}
        given = own.pop("backend_kwargs", None)
        return cls(**own, backend_kwargs={**(given or {}), **extra})

    def replace(self, **changes: Any) -> EnvConfig:
        """A copy with ``changes`` (validated again)."""
        return replace(self, **changes)

    def backend_spec(self) -> BackendSpec:
        """What :func:`~blox_env.rewards.factory.make_backend` needs to build this config's reward backend."""
        extra = dict(self.backend_kwargs)
        if self.proxy is not None:
            extra.update(proxy=self.proxy, proxy_init_seed=self.proxy_init_seed)
        return BackendSpec(benchmark=self.benchmark, reward=self.reward, metric=self.metric, run=self.run,
                           seed_mode=self.seed_mode, extra=extra, missing_cost=self.missing_cost)
