"""BRP-NAS (Dudziak et al., 2020): iterative search guided by the binary relation predictor.

1. The first ``initial`` asks are random feasible models (distinct).
2. Then, whenever the queue of picks is empty: fit the
   :class:`~blox_env.predictors.brp.BRPPredictor` on every model evaluated so
   far (objective values; NaN results are left out), draw a pool of up to
   ``pool`` feasible models not asked yet (uniformly; the whole remainder when
   it is smaller), score the pool with ``predict(pool, reference=evaluated)``
   (each candidate's mean win probability against the evaluated models) and
   rank it, best first.
3. Picks of one iteration (``k = per_iteration``, capped by the pool):

   - ``ceil(k / 2)`` exploitation picks: the top of the ranking;
   - ``floor(k / 2)`` exploration picks from the *best region*, the next
     ``region = min(len(rest), region_factor * k)`` candidates of the ranking
     after the top picks, sampled without replacement with probability
     proportional to ``region - j`` for the j-th of them (0-based): linearly
     decreasing in rank, so better-ranked candidates are likelier. This is the
     paper's "half from the top, half sampled proportionally to the ranking"
     rule made concrete.

   The picks are asked in that order (top first).

Round fits (the agent's cost): the first iteration trains a fresh predictor
for its configured epochs. Every later iteration *warm-starts* from the previous
iteration's weights and trains ``refit_steps`` (:data:`REFIT_STEPS`, 20)
mini-batch steps, each on all pairs of ``min(batch_size, n)`` evaluated models
drawn without replacement (the cosine learning rate restarts at ``lr`` each
round). A round's fit therefore costs the same however many models have been
evaluated, instead of ``epochs x ceil(n / batch_size)`` steps of a fresh model
(100 epochs, growing with the search). Over a 196-evaluation search on
Blox-mini (the main job's 600 s budget) that is 440 steps instead of 3,800,
and 20 instead of 300 in each late round. The predictor only needs to
re-rank after 10 new results, and its previous weights already rank the old
ones; the search quality at the bench budgets is unchanged within noise
(BENCHMARKS.md, "Agent overhead"). ``warm_start=False`` restores a fresh full
fit each round. Each iteration's fit uses a seed drawn from the agent's
generator, so a run is reproducible; ``fit_steps`` lists each fit's steps.

The predictor defaults to a small CPU configuration (:data:`SMALL_BRP`: GCN
hidden 64, 100 epochs at lr 1e-2, no dropout; with the few training models of
a search, dropout and short training hurt ranking). torch and DGL are imported
only when the first predictor is fitted, so ``import blox_env.agents`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from blox_env.agents.base import BaseAgent
from blox_env.errors import InvalidArgumentError
from blox_env.space import Arch, SubSpace

__all__ = ["REFIT_STEPS", "SMALL_BRP", "BRPNAS", "split_picks"]

#: Mini-batch steps of each warm-started refit (see the module docstring).
REFIT_STEPS = 20

#: BRPConfig overrides of the default CPU predictor. Measured on a 125-model synthetic store with 20
#: training models (Kendall tau over the space, 4 seeds): BRP-NAS's own defaults scaled down to hidden 64
#: and 40 epochs reach tau ~0.25; 100 epochs at lr 1e-2 ~0.55, and no dropout ~0.67 (about 1 s per fit).
SMALL_BRP: dict[str, Any] = {"hidden": 64, "classifier_hidden": 32, "epochs": 100, "batch_size": 64, "lr": 1e-2,
                             "dropout": 0.0}


def _int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def split_picks(n_ranked: int, k: int, *, rng: np.random.Generator, region_factor: int = 10) -> list[int]:
    """Positions in a ranking (0 = best) picked by the half-top, half-proportional rule above."""
    k = min(k, n_ranked)
    top = math.ceil(k / 2)
    picks = list(range(top))
    region = min(n_ranked - top, region_factor * k)
    extra = min(k - top, region)
    if extra > 0:
        weights = np.arange(region, 0, -1, dtype=np.float64)
        chosen = rng.choice(region, size=extra, replace=False, p=weights / weights.sum())
        picks += sorted(top + int(j) for j in chosen)
    return picks


class BRPNAS(BaseAgent):
    """Predictor-guided iterative search: fit BRP on evaluated models, evaluate the best-ranked pool picks.

    ``warm_start`` (default True): later iterations continue from the previous predictor's weights for
    ``refit_steps`` mini-batch steps (None: full ``epochs``); False fits a fresh predictor every iteration.
    """

    name = "brpnas"

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator, initial: int = 20, pool: int = 2000,
                 per_iteration: int = 10, region_factor: int = 10, predictor_config: Any = None,
                 warm_start: bool = True, refit_steps: int | None = REFIT_STEPS, metric: str = "val_top1",
                 constraint: Callable[[Arch], bool] | None = None) -> None:
        from blox_env.extras import require

        require("predictors", feature="the BRP-NAS agent (its graph predictor)")
        super().__init__(space, seed=seed, metric=metric, constraint=constraint)
        self.initial = _int(initial, "initial", 2)
        self.pool = min(_int(pool, "pool", 1), space.size)
        self.per_iteration = _int(per_iteration, "per_iteration", 1)
        self.region_factor = _int(region_factor, "region_factor", 1)
        if predictor_config is not None and not isinstance(predictor_config, Mapping) \
                and type(predictor_config).__name__ != "BRPConfig":
            raise InvalidArgumentError(
                f"predictor_config must be a BRPConfig, a dict of BRPConfig fields or None, got {predictor_config!r}"
            )
        self.predictor_config = predictor_config
        if not isinstance(warm_start, (bool, np.bool_)):
            raise InvalidArgumentError(f"warm_start must be True or False, got {warm_start!r}")
        self.warm_start = bool(warm_start)
        self.refit_steps = None if refit_steps is None else _int(refit_steps, "refit_steps", 1)
        self.fit_steps: list[int] = []  # mini-batch steps of each iteration's fit, in order
        self.iterations = 0
        self.predictor: Any = None
        self._queue: list[Arch] = []
        self._asked: set[int] = set()
        self._values: dict[int, float] = {}

    def _make_predictor(self) -> Any:
        from blox_env.predictors.brp import BRPConfig, BRPPredictor

        cfg = self.predictor_config
        if cfg is None:
            return BRPPredictor(config=BRPConfig(**SMALL_BRP))
        if isinstance(cfg, Mapping):
            return BRPPredictor(config=BRPConfig(**SMALL_BRP), **dict(cfg))
        return BRPPredictor(config=cfg)

    def ask(self) -> Arch:
        if len(self._asked) < self.initial:
            arch = self.sample(exclude=self._asked)
        else:
            if not self._queue:
                self._iterate()
            arch = self._queue.pop() if self._queue else self.sample(exclude=self._asked)
        self._asked.add(arch.index)
        return arch

    def _iterate(self) -> None:
        """One BRP-NAS iteration: fit, rank a fresh pool, queue the picks."""
        known = {i: v for i, v in self._values.items() if not math.isnan(v)}
        feasible = self.feasible_indices()
        fresh = feasible[~np.isin(feasible, np.fromiter(self._asked, np.int64, len(self._asked)))]
        if len(known) < 2 or len(fresh) == 0:
            return  # nothing to learn from or nothing left: ask() falls back to random sampling
        size = min(self.pool, len(fresh))
        pool = np.sort(self.rng.choice(fresh, size=size, replace=False))
        train = np.fromiter(known, np.int64, len(known))
        y = np.array([known[i] for i in train.tolist()])
        seed = int(self.rng.integers(0, 2**31 - 1))
        if self.warm_start and self.predictor is not None:
            predictor = self.predictor.fit(train, y, seed=seed, warm_start=True, steps=self.refit_steps)
        else:
            predictor = self._make_predictor().fit(train, y, seed=seed)
        self.fit_steps.append(int(predictor.fit_steps_))
        order = predictor.rank(pool, reference=train)
        picks = split_picks(len(pool), self.per_iteration, rng=self.rng, region_factor=self.region_factor)
        self._queue = [Arch.from_index(int(pool[order[p]])) for p in picks][::-1]
        self.predictor = predictor
        self.iterations += 1

    def _observe(self, arch: Arch, value: float, evaluation: Any) -> None:
        self._values[arch.index] = value
