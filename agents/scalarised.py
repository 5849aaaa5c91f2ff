"""Multi-objective search by random scalarisations: ParEGO-like local search and BRP-NAS on a scalarisation.

Both scalarise with the augmented Chebyshev function of ParEGO (Knowles, 2006): with objectives in
the minimisation convention scaled to [0, 1] by the ranges of the models told so far
(:meth:`~blox_env.agents.multiobjective.MultiObjectiveAgent.normalised`) and weights ``w`` on the
simplex, ``s(x) = max_j w_j x_j + rho * sum_j w_j x_j`` (lower is better; a missing value scores
worst). Random weights are drawn uniformly from the simplex (a flat Dirichlet) with the agent's
generator.

- :class:`ParEGOLocalSearch` (``parego``): after ``initial`` random models, each *iteration* draws
  new weights and climbs from the best model told so far under them: the incumbent's feasible
  one-block neighbours are tried in random order (known ones from their told values, at no
  cost; ones in flight skipped, their results considered when told) and the search moves to the
  first that scores better (first improvement, scores recomputed with the ranges of the moment).
  With no better neighbour the incumbent is a local optimum and the iteration ends. An ask that
  finds nothing new to evaluate in 8 iterations in a row asks a random feasible model not
  evaluated and not in flight (while there is one).
- :class:`MOBRPNAS` (``mo-brpnas``): :class:`~blox_env.agents.brpnas.BRPNAS` whose predictor is
  trained, at every iteration, on minus the scalarisation of every model told (rescored with that
  iteration's ranges); ``weights=None`` draws new weights per iteration (ParEGO's rule), a
  sequence fixes them. It needs the ``[predictors]`` extra, as BRP-NAS does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.agents.brpnas import BRPNAS
from blox_env.agents.evolution import positive_int
from blox_env.agents.multiobjective import MultiObjectiveAgent
from blox_env.checks import check_real
from blox_env.errors import InvalidArgumentError
from blox_env.objectives import Objective
from blox_env.space import Arch, SubSpace, neighbours

if TYPE_CHECKING:
    from blox_env.rewards.base import Evaluation

__all__ = ["MOBRPNAS", "ParEGOLocalSearch", "chebyshev", "random_weights"]

_FRUITLESS = 8


def random_weights(k: int, *, rng: np.random.Generator) -> np.ndarray:
    """A weight vector drawn uniformly from the ``k``-simplex (non-negative, summing to 1)."""
    return rng.dirichlet(np.ones(positive_int(k, "k")))


def chebyshev(points: Any, weights: Any, *, rho: float = 0.05) -> np.ndarray:
    """Augmented Chebyshev scalarisation of normalised minimisation-convention ``points`` ``[n, k]`` (lower better).

    Rows with a missing (NaN) value score ``inf``.
    """
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (pts.shape[1],):
        raise InvalidArgumentError(f"weights must have one entry per objective ({pts.shape[1]}), got shape {w.shape}")
    wx = pts * w
    out = wx.max(axis=1) + rho * wx.sum(axis=1)
    return np.where(np.isfinite(out), out, math.inf)


def _check_rho(rho: Any) -> float:
    value = check_real("rho", rho)
    if value < 0:
        raise InvalidArgumentError(f"rho must be a number >= 0 (ParEGO uses 0.05), got {rho!r}")
    return value


def _check_weights(weights: Any, k: int) -> np.ndarray | None:
    if weights is None:
        return None
    try:
        w = np.array(weights, dtype=np.float64)
    except (TypeError, ValueError):
        w = np.array([np.nan])
    if w.shape != (k,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise InvalidArgumentError(f"weights must be None (random per iteration) or {k} non-negative numbers, one "
                                   f"per objective, not all 0; got {weights!r}")
    return w / w.sum()


class ParEGOLocalSearch(MultiObjectiveAgent):
    """Local search on a random augmented-Chebyshev scalarisation per iteration, from the best model told."""

    name = "parego"

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator,
                 objectives: Sequence[Objective] | None = None,
                 initial: int = 5, rho: float = 0.05, metric: str = "val_top1",
                 constraint: Callable[[Arch], bool] | None = None) -> None:
        super().__init__(space, seed=seed, metric=metric, constraint=constraint)
        self._init_objectives(objectives)
        self.initial = positive_int(initial, "initial")
        self.rho = _check_rho(rho)
        if space.size < 2:
            raise InvalidArgumentError("local search needs a space of at least 2 models to move between")
        self.weights = np.full(len(self.objectives), 1.0 / len(self.objectives))
        self.iterations = 0
        self.incumbent: Arch | None = None
        self.optima: list[Arch] = []  # local optima, one per finished iteration
        self._queue: list[Arch] = []
        self._asked: set[int] = set()

    def score(self, indices: Sequence[int]) -> np.ndarray:
        """Current scalarisation of told models (lower is better)."""
        pts = np.array([self.archive[i] for i in indices]).reshape(len(indices), len(self.objectives))
        return chebyshev(self.normalised(pts), self.weights, rho=self.rho)

    def _better(self, index: int) -> bool:
        assert self.incumbent is not None  # internal invariant: only called during a climb
        a, b = self.score([index, self.incumbent.index])
        return bool(a < b)

    def _move(self, arch: Arch) -> None:
        """Make ``arch`` the incumbent and queue its feasible neighbours in random order."""
        self.incumbent = arch
        options = [a for a in neighbours(arch, self.space) if self.constraint is None or self.constraint(a)]
        order = self.rng.permutation(len(options)).tolist()
        self._queue = [options[i] for i in order][::-1]  # pop() from the end

    def _new_iteration(self) -> None:
        """Draw weights and start a climb at the best model told under them."""
        self.weights = random_weights(len(self.objectives), rng=self.rng)
        self.iterations += 1
        told = list(self.archive)
        scores = self.score(told)
        self._move(Arch.from_index(told[int(np.argmin(scores))]))  # first told on ties

    def ask(self) -> Arch:
        if len(self._asked) < self.initial or not self.archive:
            return self._issue(self.sample(exclude=self._asked))
        fruitless = 0
        while fruitless < _FRUITLESS:
            if self.incumbent is None:
                self._new_iteration()
                fruitless += 1
            while self._queue:
                arch = self._queue.pop()
                if arch.index in self.archive:
                    if self._better(arch.index):
                        self._move(arch)  # a known better neighbour: move at no cost
                    continue
                if arch.index in self.pending_indices:
                    continue  # its result is considered when it is told
                return self._issue(arch)
            assert self.incumbent is not None  # internal invariant: set above, cleared only here
            self.optima.append(self.incumbent)
            self.incumbent = None
        return self._issue(self.sample(exclude=self.archive))

    def _issue(self, arch: Arch) -> Arch:
        self._asked.add(arch.index)
        return arch

    def _observe(self, arch: Arch, value: float, evaluation: Evaluation) -> None:
        inc = self.incumbent
        if inc is not None and arch != inc and sum(a != b for a, b in zip(arch.blocks, inc.blocks)) == 1 \
                and self._better(arch.index):
            self._move(arch)


class MOBRPNAS(MultiObjectiveAgent, BRPNAS):
    """BRP-NAS whose predictor learns a random (or fixed) augmented-Chebyshev scalarisation of the objectives."""

    name = "mo-brpnas"

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator,
                 objectives: Sequence[Objective] | None = None,
                 weights: Sequence[float] | None = None, rho: float = 0.05, initial: int = 20, pool: int = 2000,
                 per_iteration: int = 10, region_factor: int = 10, predictor_config: Any = None,
                 metric: str = "val_top1", constraint: Callable[[Arch], bool] | None = None) -> None:
        super().__init__(space, seed=seed, initial=initial, pool=pool, per_iteration=per_iteration,
                         region_factor=region_factor, predictor_config=predictor_config, metric=metric,
                         constraint=constraint)
        self._init_objectives(objectives)
        self.rho = _check_rho(rho)
        fixed = _check_weights(weights, len(self.objectives))
        self.random_weights = fixed is None
        self.weights = np.full(len(self.objectives), 1.0 / len(self.objectives)) if fixed is None else fixed

    def _iterate(self) -> None:
        if self.random_weights:
            self.weights = random_weights(len(self.objectives), rng=self.rng)
        told = list(self.archive)
        pts = np.array([self.archive[i] for i in told]).reshape(len(told), len(self.objectives))
        scores = chebyshev(self.normalised(pts), self.weights, rho=self.rho)
        self._values = {i: (-float(s) if math.isfinite(s) else math.nan) for i, s in zip(told, scores)}
        super()._iterate()
