"""Multi-objective search agents through the ask/tell protocol: shared machinery, random search and NSGA-II.

Every multi-objective agent takes ``objectives`` (a sequence of
:class:`~blox_env.objectives.Objective`, e.g. from :func:`~blox_env.objectives.parse_objectives`;
default: the agent's ``metric`` maximised and ``params`` minimised, the benchmark's accuracy-vs-size
trade-off) and reads their values from the metrics of each told
:class:`~blox_env.rewards.base.Evaluation` (:func:`~blox_env.objectives.metrics_matrix`: static
columns such as ``params`` and ``latency/<device>`` are in every tabular evaluation). Objectives with
an ``epoch`` set the agent's ``fidelity`` (they must agree). ``metric`` remains the scalar the
:class:`~blox_env.agents.base.BaseAgent` history and ``best`` track (higher is better) and must be in
the evaluations too. :meth:`MultiObjectiveAgent.front` is the non-dominated set of the models told so
far (each model's latest values; models with a missing value are left out), for reports. Constraints,
seeding and the ``pending`` hook are those of every agent.

- :class:`MORandomSearch` (``mo-random``): random search without repeats
  (:class:`~blox_env.agents.random_search.RandomSearch`), keeping the front.
- :class:`NSGA2Evolution` (``nsga2``): regularized (aging) evolution whose tournament uses NSGA-II's
  crowded comparison (Deb et al., 2002): the population (the last ``population`` models told) is
  ranked by non-dominated sorting, ties broken by larger crowding distance within the rank (then by
  age, older first); the winner of ``sample_size`` members drawn uniformly is mutated by one block
  (children as :class:`~blox_env.agents.asha.AsyncEvolution`: feasible, not in flight, new while
  possible) and the oldest member leaves. Members with a missing value rank last.

ParEGO-like local search and BRP-NAS with a scalarisation are in :mod:`.scalarised`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.agents.asha import AsyncEvolution
from blox_env.agents.base import BaseAgent
from blox_env.agents.random_search import RandomSearch
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError
from blox_env.objectives import Objective, metrics_matrix
from blox_env.pareto import ParetoFront, nondominated, pareto_ranks
from blox_env.space import Arch, SubSpace

if TYPE_CHECKING:
    from blox_env.rewards.base import Evaluation

__all__ = ["MORandomSearch", "MultiObjectiveAgent", "NSGA2Evolution", "check_objectives", "crowding_distance",
           "nsga2_order"]


def check_objectives(objectives: Any, *, metric: str) -> tuple[Objective, ...]:
    """``objectives`` as a tuple of distinct :class:`Objective` (None: ``metric`` max and ``params`` min)."""
    if objectives is None:
        return (Objective(metric, "max"), Objective("params", "min"))
    if isinstance(objectives, Objective):
        objectives = (objectives,)
    if isinstance(objectives, (str, bytes, Mapping)) or not isinstance(objectives, Sequence) or not objectives:
        raise InvalidArgumentTypeError(f"objectives must be a non-empty sequence of Objective (build them with "
                                       f"blox_env.objectives.parse_objectives(specs, store=...)), got {objectives!r}")
    bad = [o for o in objectives if not isinstance(o, Objective)]
    if bad:
        raise InvalidArgumentTypeError(f"objectives must be Objective instances (parse_objectives turns specs such "
                                       f"as 'val_top1' or 'latency:cpu' into them), got {bad[0]!r}")
    names = [o.name for o in objectives]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidArgumentError(f"objective(s) {', '.join(repeated)} given more than once: {names}")
    return tuple(objectives)


def _objective_fidelity(objectives: Sequence[Objective]) -> int | None:
    """The epochs every evaluation must be read at: the objectives' common ``epoch`` (None: the full protocol)."""
    run_objs = [o for o in objectives if not o.static]
    epochs = {o.epoch for o in run_objs}
    if len(epochs) > 1:
        raise InvalidArgumentError(f"objectives are read from one evaluation, so their epochs must agree: got "
                                   f"{', '.join(o.name for o in run_objs)} (give every run metric the same @epoch)")
    return next(iter(epochs), None)


def crowding_distance(points: Any) -> np.ndarray:
    """NSGA-II crowding distance of each point within its set ``[n, k]``: boundary points inf, spread-normalised.

    Per objective the points are sorted; each interior point adds the gap between its two neighbours
    divided by the objective's range (an objective without spread adds nothing).
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2:
        raise InvalidArgumentError(f"points must be an [n, k] array, got shape {pts.shape}")
    n, k = pts.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, math.inf)
    for j in range(k):
        order = np.argsort(pts[:, j], kind="stable")
        col = pts[order, j]
        span = col[-1] - col[0]
        dist[order[0]] = dist[order[-1]] = math.inf
        if span > 0:
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


def nsga2_order(points: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(rank, crowding)`` per row of minimisation-convention ``points``: NaN rows get the last rank, crowding 0."""
    pts = np.asarray(points, dtype=np.float64)
    rank = np.zeros(len(pts), dtype=np.int64)
    crowd = np.zeros(len(pts))
    ok = np.isfinite(pts).all(axis=1) if len(pts) else np.zeros(0, dtype=bool)
    if ok.any():
        rank[ok] = pareto_ranks(pts[ok], directions="min")
        rows = np.flatnonzero(ok)
        for r in np.unique(rank[ok]):
            members = rows[rank[rows] == r]
            crowd[members] = crowding_distance(pts[members])
    rank[~ok] = (rank[ok].max() + 1) if ok.any() else 0
    return rank, crowd


class MultiObjectiveAgent(BaseAgent):
    """Mixin for multi-objective agents: ``objectives``, the vector of each told model, :meth:`front`.

    Put it first among the bases and call :meth:`_init_objectives` after the base class's ``__init__``.
    """

    objectives: tuple[Objective, ...]

    def _init_objectives(self, objectives: Any) -> None:
        self.objectives = check_objectives(objectives, metric=self.metric)
        self.fidelity = _objective_fidelity(self.objectives)
        #: Latest objective vector (minimisation convention) of each told model, by model index.
        self.archive: dict[int, np.ndarray] = {}
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None  # (low, span) of the archive, cached

    def objective_vector(self, evaluation: Evaluation) -> np.ndarray:
        """The objectives of one evaluation as a ``[k]`` vector, maximised ones negated (minimisation)."""
        return metrics_matrix([evaluation.metrics], self.objectives)[0]

    def tell(self, arch: Arch, evaluation: Evaluation) -> None:
        """Record the objective vector of ``arch`` (then the scalar ``metric``, as every agent does)."""
        vec = self.objective_vector(evaluation)  # raises naming a missing column before any state changes
        if self.metric in evaluation.metrics:
            self.archive.pop(arch.index, None)
            self.archive[arch.index] = vec
            self._bounds = None
        super().tell(arch, evaluation)

    def front(self) -> ParetoFront:
        """The non-dominated models told so far: indices and values in the objectives' own units, best first."""
        idx = np.fromiter(self.archive, np.int64, len(self.archive))
        pts = np.array(list(self.archive.values())).reshape(len(idx), len(self.objectives))
        ok = np.isfinite(pts).all(axis=1)
        idx, pts = idx[ok], pts[ok]
        if len(idx):
            keep = nondominated(pts, directions="min")
            idx, pts = idx[keep], pts[keep]
            order = np.lexsort(pts.T[::-1])
            idx, pts = idx[order], pts[order]
        sign = np.array([-1.0 if o.maximise else 1.0 for o in self.objectives])
        return ParetoFront(idx, pts * sign, self.objectives)

    def normalised(self, points: np.ndarray) -> np.ndarray:
        """``points`` (minimisation) scaled per objective to [0, 1] by the ranges of the models told so far."""
        if self._bounds is None:
            known = np.array(list(self.archive.values())).reshape(-1, len(self.objectives))
            known = known[np.isfinite(known).all(axis=1)]
            k = len(self.objectives)
            lo, hi = (known.min(axis=0), known.max(axis=0)) if len(known) else (np.zeros(k), np.ones(k))
            self._bounds = (lo, np.where(hi > lo, hi - lo, 1.0))
        lo, span = self._bounds
        return (np.asarray(points, dtype=np.float64) - lo) / span


class MORandomSearch(MultiObjectiveAgent, RandomSearch):
    """Uniform random search without repeats that keeps the non-dominated set of the models it evaluated."""

    name = "mo-random"

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator,
                 objectives: Sequence[Objective] | None = None,
                 metric: str = "val_top1", constraint: Callable[[Arch], bool] | None = None) -> None:
        super().__init__(space, seed=seed, metric=metric, constraint=constraint)
        self._init_objectives(objectives)


class NSGA2Evolution(MultiObjectiveAgent, AsyncEvolution):
    """Aging evolution with NSGA-II's crowded-comparison tournament (non-dominated rank, then crowding)."""

    name = "nsga2"

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator,
                 objectives: Sequence[Objective] | None = None,
                 population: int = 20, sample_size: int = 5, metric: str = "val_top1",
                 constraint: Callable[[Arch], bool] | None = None) -> None:
        super().__init__(space, seed=seed, population=population, sample_size=sample_size, metric=metric,
                         constraint=constraint)
        self._init_objectives(objectives)
        self.points: deque[np.ndarray] = deque()  # objective vectors of ``population``, same order
        self._order: tuple[np.ndarray, np.ndarray] | None = None  # (rank, crowding) of the population, cached

    def population_order(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rank, crowding)`` of each population member, oldest first (recomputed when the population changes)."""
        if self._order is None:
            self._order = nsga2_order(np.array(self.points).reshape(len(self.points), len(self.objectives)))
        return self._order

    def _parent(self) -> Arch:
        members = list(self.population)
        k = min(self.sample_size, len(members))
        picks = self.rng.choice(len(members), size=k, replace=False).tolist()
        rank, crowd = self.population_order()
        best = min(picks, key=lambda i: (int(rank[i]), -float(crowd[i]), i))
        return members[best][0]

    def _observe(self, arch: Arch, value: float, evaluation: Evaluation) -> None:
        super()._observe(arch, value, evaluation)
        self.points.append(self.archive[arch.index])
        while len(self.points) > len(self.population):
            self.points.popleft()
        self._order = None
