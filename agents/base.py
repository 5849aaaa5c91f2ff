"""The Agent Protocol, a small base class every search agent builds on, and cost constraints.

A harness drives any agent the same way (see DESIGN.md)::

    arch = agent.ask()
    ev = backend.evaluate(arch, agent.fidelity, cost_unit=..., rng=...)
    agent.tell(arch, ev)

until its cost budget is spent. ``agent.fidelity`` is the number of training
epochs the harness should use for the arch that the *next* ``ask()`` returns
(``None``: the backend's full protocol); only multi-fidelity agents change it.
The objective is ``ev.metrics[agent.metric]`` (higher is better, e.g.
``val_top1``); a NaN objective (a missing value in the benchmark) ranks below
every number.

Constraints (params, FLOPs, latency) are a predicate on :class:`Arch`; every
agent only asks archs that satisfy it. :func:`make_constraint` builds one from a
tabular backend's static columns and also offers a vectorised ``mask`` that
agents use to enumerate the feasible set quickly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from blox_env.checks import check_budget
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError
from blox_env.rewards.base import RewardBackend
from blox_env.space import Arch, SubSpace

if TYPE_CHECKING:
    from blox_env.rewards.base import Evaluation

__all__ = ["Agent", "BaseAgent", "Constraint", "check_agent", "check_asked", "check_search_budget", "make_constraint",
           "make_rng"]

#: Uniform draws tried before the feasible set is enumerated explicitly.
_REJECTION_TRIES = 256


@runtime_checkable
class Agent(Protocol):
    """What a harness, the simulated workers and the strategies need from a search agent.

    :class:`BaseAgent` gives every member but ``ask`` a default; an agent written from scratch declares them all.
    """

    name: str
    fidelity: int | None  # epochs for the NEXT ask()ed arch; None = the full protocol
    parallel_asks: bool  # whether several evaluations may be outstanding at once (False: one worker only)
    reaskable: bool  # whether asking again (before a tell) gives a fresh proposal (simulated workers re-ask)

    def ask(self) -> Arch:
        """The next architecture to evaluate."""
        ...

    def tell(self, arch: Arch, evaluation: Evaluation) -> None:
        """The result of evaluating ``arch`` (normally the arch just asked)."""
        ...

    def pending(self, archs: Iterable[Arch]) -> None:
        """The models now in flight (asked, not yet told), given by parallel drivers before each ask."""
        ...

    def feasible_indices(self) -> np.ndarray:
        """Sorted model indices the agent may propose (the free-repeat stop rule counts them)."""
        ...

    def close(self) -> None:
        """Release what the agent holds (e.g. a learner thread); called once when its search ends."""
        ...

    def signature_blocks(self) -> list[tuple[int, int]]:
        """Every ``(stage, block)`` whose blockwise signature the agent reads before predicting (DONNA, LANA):
        a search pays their distillation up front; empty for agents that read none."""
        ...


def make_rng(seed: Any) -> np.random.Generator:
    """A Generator from an int seed (>= 0) or an existing Generator (used as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise InvalidArgumentError(f"seed must be a non-negative integer or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


class Constraint:
    """``arch -> bool``: every named static metric of the arch is at most its limit.

    Built by :func:`make_constraint`. Models missing from the store or with a
    missing (NaN) value are infeasible. ``mask(indices)`` is the vectorised form.
    """

    def __init__(self, *, columns: Mapping[str, np.ndarray], limits: Mapping[str, float],
                 rows: Callable[[np.ndarray], np.ndarray]) -> None:
        self.limits = dict(limits)
        self._columns = dict(columns)
        self._rows = rows

    def mask(self, indices: np.ndarray) -> np.ndarray:
        """Feasibility of many model indices at once."""
        rows = self._rows(np.asarray(indices, dtype=np.int64))
        ok = rows >= 0
        safe = np.where(ok, rows, 0)
        for name, limit in self.limits.items():
            with np.errstate(invalid="ignore"):
                ok &= self._columns[name][safe] <= limit
        return ok

    def __call__(self, arch: Arch) -> bool:
        return bool(self.mask(np.array([arch.index]))[0])

    def __repr__(self) -> str:
        return "Constraint(" + ", ".join(f"{k} <= {v:g}" for k, v in self.limits.items()) + ")"


def make_constraint(backend: RewardBackend, limits: Mapping[str, float]) -> Constraint:
    """A constraint "static metric <= limit" for each entry of ``limits`` (e.g. ``{"params": 2e6}``).

    Metric names are the backend's static columns (:meth:`~blox_env.rewards.base.RewardBackend.static_costs`):
    ``params``, ``flops`` and ``latency/<device>``. Needs a backend that has them, such as
    :class:`~blox_env.rewards.tabular.TabularReward`.
    """
    static = backend.static_costs() if isinstance(backend, RewardBackend) else None
    if not static:
        raise InvalidArgumentError(
            f"make_constraint needs a tabular backend with static columns (TabularReward), got {type(backend).__name__}"
        )
    if not isinstance(limits, Mapping) or not limits:
        raise InvalidArgumentError(f"limits must be a non-empty dict of metric -> maximum, got {limits!r}")
    allowed = sorted(static)
    clean: dict[str, float] = {}
    for name, limit in limits.items():
        if name not in static:
            raise InvalidArgumentError(f"unknown constraint metric {name!r}: allowed {', '.join(allowed) or 'none'}")
        if isinstance(limit, bool) or not isinstance(limit, (int, float, np.integer, np.floating)) \
                or math.isnan(float(limit)):
            raise InvalidArgumentError(f"limit of {name!r} must be a number, got {limit!r}")
        clean[name] = float(limit)
    columns = {name: np.asarray(static[name], dtype=np.float64) for name in clean}
    return Constraint(columns=columns, limits=clean, rows=backend.rows)


def fitness_key(value: float) -> float:
    """Sort key of an objective value: NaN ranks below everything."""
    return -math.inf if math.isnan(value) else value


class BaseAgent:
    """Shared state and helpers: space, seeded generator, objective, history, constraint.

    Subclasses implement :meth:`ask` and override :meth:`_observe` (called by
    :meth:`tell` after the result is recorded). ``history`` holds
    ``(arch, objective)`` in the order told; ``best`` is the best of the
    evaluations made at the highest fidelity seen.

    Parallel drivers (:func:`~blox_env.agents.parallel.run_parallel_search`) call :meth:`pending`
    with the models in flight before each ask; :meth:`sample` avoids them while it can, and a told
    model stops being pending. ``parallel_asks = False`` marks an agent that can have only one
    evaluation outstanding (its ask waits for the previous tell).
    """

    name = "base"
    #: Whether several evaluations may be outstanding at once (False: a driver must use one worker).
    parallel_asks: bool = True
    #: Whether asking again before a tell gives a fresh proposal (simulated workers re-ask to avoid models in flight).
    reaskable: bool = False

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator, metric: str = "val_top1",
                 constraint: Callable[[Arch], bool] | None = None) -> None:
        if not isinstance(space, SubSpace):
            raise InvalidArgumentError(f"space must be a blox_env.space.SubSpace, got {type(space).__name__}")
        if not isinstance(metric, str) or not metric:
            raise InvalidArgumentError(f"metric must be a metric name such as 'val_top1', got {metric!r}")
        if constraint is not None and not callable(constraint):
            raise InvalidArgumentError(f"constraint must be a callable Arch -> bool or None, got {constraint!r}")
        self.space = space
        self.rng = make_rng(seed)
        self.metric = metric
        self.constraint = constraint
        self.fidelity: int | None = None
        self.history: list[tuple[Arch, float]] = []
        self.fidelities: list[int | None] = []
        self._feasible: np.ndarray | None = None
        self._pending: frozenset[int] = frozenset()

    # ------------------------------------------------------------------ in flight
    def pending(self, archs: Iterable[Arch]) -> None:
        """Set the models now being evaluated (asked, not yet told), so the next asks avoid proposing them."""
        if isinstance(archs, (str, bytes, Arch)) or not isinstance(archs, Iterable):
            raise InvalidArgumentTypeError(f"pending takes an iterable of Arch (the models in flight), got {archs!r}")
        items = tuple(archs)
        bad = [a for a in items if not isinstance(a, Arch)]
        if bad:
            raise InvalidArgumentTypeError(f"pending takes Arch objects only, got {bad[0]!r} ({type(bad[0]).__name__})")
        self._pending = frozenset(a.index for a in items)

    @property
    def pending_indices(self) -> frozenset[int]:
        """Model indices in flight, as last given to :meth:`pending` (less those told since)."""
        return self._pending

    # ------------------------------------------------------------------ results
    def tell(self, arch: Arch, evaluation: Evaluation) -> None:
        """Record the objective of ``arch`` and let the agent update its state."""
        metrics = evaluation.metrics
        if self.metric not in metrics:
            raise InvalidArgumentError(
                f"the evaluation has no metric {self.metric!r}: it has {', '.join(sorted(metrics))}; "
                "construct the agent with metric= one of those"
            )
        value = float(metrics[self.metric])
        if arch.index in self._pending:
            self._pending = self._pending - {arch.index}
        self.history.append((arch, value))
        self.fidelities.append(evaluation.fidelity)
        self._observe(arch, value, evaluation)

    def _observe(self, arch: Arch, value: float, evaluation: Evaluation) -> None:
        """Hook for subclasses: react to a told result (already in ``history``)."""

    @property
    def best(self) -> tuple[Arch, float] | None:
        """``(arch, objective)`` of the best evaluation at the highest fidelity told, or None."""
        if not self.history:
            return None
        known = [f for f in self.fidelities if f is not None]
        top = max(known) if known else None
        cands = [(a, v) for (a, v), f in zip(self.history, self.fidelities) if top is None or f == top]
        return max(cands, key=lambda item: fitness_key(item[1]))

    # ------------------------------------------------------------------ constraint
    def allowed(self, arch: Arch) -> bool:
        """Whether ``arch`` is a member of the space and satisfies the constraint."""
        return arch in self.space and (self.constraint is None or bool(self.constraint(arch)))

    def feasible_indices(self) -> np.ndarray:
        """Sorted model indices of the space that satisfy the constraint (computed once).

        Raises :class:`InvalidArgumentError` if there are none.
        """
        if self._feasible is None:
            idx = self.space.indices()
            if self.constraint is not None:
                mask_fn = getattr(self.constraint, "mask", None)
                if callable(mask_fn):
                    mask = np.asarray(mask_fn(idx), dtype=bool)
                else:
                    mask = np.fromiter((bool(self.constraint(Arch.from_index(int(i)))) for i in idx), bool, len(idx))
                idx = idx[mask]
            if len(idx) == 0:
                raise InvalidArgumentError(
                    f"no model of the space ({self.space.size} models) satisfies the constraint {self.constraint!r}: "
                    "loosen the limits"
                )
            self._feasible = idx
        return self._feasible

    def sample(self, *, exclude: Container[int] = ()) -> Arch:
        """A uniformly random feasible arch, avoiding model indices in ``exclude`` and pending models while possible.

        Rejection sampling first (bounded tries); then an explicit draw from the
        enumerated feasible set. When every feasible model is excluded or pending the
        draw avoids only ``exclude``, and when every one is excluded it ignores
        ``exclude`` too (repeats become unavoidable).
        """
        busy = self._pending
        blocks = self.space.blocks
        for _ in range(_REJECTION_TRIES):
            arch = Arch(tuple(b[int(self.rng.integers(len(b)))] for b in blocks))  # type: ignore[arg-type]
            if arch.index not in exclude and arch.index not in busy \
                    and (self.constraint is None or self.constraint(arch)):
                return arch
        feasible = self.feasible_indices()
        fresh = np.array([i for i in feasible.tolist() if i not in exclude], dtype=np.int64)
        idle = fresh[~np.isin(fresh, np.fromiter(busy, np.int64, len(busy)))] if busy else fresh
        pool = idle if len(idle) else fresh if len(fresh) else feasible
        return Arch.from_index(int(pool[int(self.rng.integers(len(pool)))]))

    def close(self) -> None:
        """Nothing to release (agents holding threads or processes override this)."""

    def signature_blocks(self) -> list[tuple[int, int]]:
        """No block signatures are read (DONNA and LANA read every block's)."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(space={self.space.sizes}, metric={self.metric!r}, told={len(self.history)})"


def check_search_budget(budget: Any, cost_unit: Any) -> float:
    """A search's budget: a positive, finite number of ``cost_unit`` (a search needs one; None is refused)."""
    value = check_budget(budget, cost_unit if isinstance(cost_unit, str) else "cost units")
    if value is None:
        raise InvalidArgumentError(f"budget must be a positive, finite number of {cost_unit} (a search stops when "
                                   "it is spent), got None")
    return value


def check_asked(agent: Agent, arch: Any) -> Arch:
    """What ``agent.ask()`` returned, if it is an :class:`~blox_env.space.Arch` (else a clear error)."""
    if not isinstance(arch, Arch):
        raise InvalidArgumentTypeError(f"agent {agent.name!r} ({type(agent).__name__}) returned {arch!r} "
                                       f"({type(arch).__name__}) from ask(): ask() must return a blox_env.Arch "
                                       "(e.g. Arch.from_index(i) or Arch.from_blocks(b0, b1, b2))")
    return arch


def check_agent(agent: Any) -> Agent:
    """``agent`` if it implements the :class:`~blox_env.agents.base.Agent` Protocol (else a clear error)."""
    if not isinstance(agent, Agent):
        have = set(dir(agent))  # only to name what is missing
        missing = [m for m in ("name", "fidelity", "parallel_asks", "reaskable", "ask", "tell", "pending",
                               "feasible_indices", "close", "signature_blocks") if m not in have]
        raise InvalidArgumentTypeError(f"{type(agent).__name__} is not a search agent: it lacks {', '.join(missing)} "
                                       "(subclass blox_env.agents.BaseAgent, which gives every member but ask() a "
                                       "default)")
    return agent
