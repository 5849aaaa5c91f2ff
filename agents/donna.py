"""DONNA-style blockwise search (Moons et al., 2021): a signature predictor, evolution over it, then the top.

1. The first ``n_init`` asks are random feasible models (distinct); evaluated through a blockwise
   backend, their objective is the *fine-tuned* accuracy (the "fine-tuned samples").
2. Whenever the queue of picks is empty: fit a :class:`~blox_env.predictors.signatures.DonnaPredictor`
   (ridge regression on the degree-2 terms of the per-stage distillation losses) on every model
   evaluated so far, run regularized evolution *over the predictor* (free: ``cycles`` mutations,
   tournament of ``sample_size`` in an aging population of ``population``, seeded from the best
   predicted models), and queue the ``top`` best-predicted models it visited that were not asked yet.
3. The queued models are asked in predicted order, so the harness fine-tunes (evaluates) the top of
   the predictor's ranking; after each batch the predictor is refitted on the grown sample.

Signatures are ``[3, 45]`` distillation losses over canonical blocks (e.g.
``BlockwiseTables.signatures("M1")["distill_loss"]``); the ``donna`` entry of ``blox bench`` takes
them from the blockwise backend.
"""

from __future__ import annotations

import importlib.util
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.agents.base import BaseAgent
from blox_env.agents.evolution import positive_int
from blox_env.errors import InvalidArgumentError
from blox_env.extras import require
from blox_env.space import Arch, SubSpace, mutate

if TYPE_CHECKING:
    from blox_env.rewards.base import Evaluation

__all__ = ["DonnaSearch"]


class DonnaSearch(BaseAgent):
    """Random fine-tuned samples, then the top of a signature predictor searched by evolution."""

    name = "donna"

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator, signatures: Any, n_init: int = 10,
                 top: int = 5, population: int = 30, sample_size: int = 8, cycles: int = 300,
                 alpha: float | str = "auto", metric: str = "val_top1",
                 constraint: Callable[[Arch], bool] | None = None) -> None:
        if importlib.util.find_spec("sklearn") is None:  # the ridge predictor is scikit-learn's
            require("predictors", feature="DonnaSearch (its ridge predictor needs scikit-learn)")
        super().__init__(space, seed=seed, metric=metric, constraint=constraint)
        from blox_env.predictors.signatures import DonnaPredictor

        self.predictor = DonnaPredictor(signatures=signatures, alpha=alpha)
        self.n_init = positive_int(n_init, "n_init", 3)  # a degree-2 ridge needs a few points
        self.top = positive_int(top, "top")
        self.population_size = positive_int(population, "population", 2)
        self.sample_size = positive_int(sample_size, "sample_size")
        self.cycles = positive_int(cycles, "cycles", 0)
        if self.sample_size > self.population_size:
            raise InvalidArgumentError(f"sample_size ({self.sample_size}) must be at most population "
                                       f"({self.population_size})")
        self._asked: set[int] = set()
        self._queue: deque[Arch] = deque()
        self.refits = 0

    def signature_blocks(self) -> list[tuple[int, int]]:
        """Every ``(stage, block)`` whose signature this method reads: all blocks of its space (the harness charges
        their distillation, and the teacher's training, before the first prediction)."""
        return [(s, int(b)) for s, blocks in enumerate(self.space.blocks) for b in blocks]

    def ask(self) -> Arch:
        if len(self._asked) < self.n_init or not self._fit_data()[0]:
            arch = self.sample(exclude=self._asked)
        else:
            if not self._queue:
                self._refill()
            arch = self._queue.popleft() if self._queue else self.sample(exclude=self._asked)
        self._asked.add(arch.index)
        return arch

    def _fit_data(self) -> tuple[list[int], list[float]]:
        """Last objective per evaluated model (NaN results left out)."""
        last: dict[int, float] = {}
        for arch, value in self.history:
            last[arch.index] = value
        idx = [i for i, v in last.items() if np.isfinite(v)]
        return idx, [last[i] for i in idx]

    def _refill(self) -> None:
        """Refit the predictor, evolve over it, queue the best predicted models not asked yet."""
        idx, y = self._fit_data()
        self.predictor.fit(np.array(idx), np.array(y))
        self.refits += 1
        predicted: dict[int, float] = {}

        def score(archs: list[Arch]) -> list[float]:
            new = [a.index for a in archs if a.index not in predicted]
            if new:
                for i, v in zip(new, self.predictor.predict(np.array(new)).tolist()):
                    predicted[i] = v
            return [predicted[a.index] for a in archs]

        seeds = [Arch.from_index(i) for i in idx] + [self.sample() for _ in range(self.population_size)]
        ranked = sorted(zip(score(seeds), range(len(seeds))), reverse=True)[: self.population_size]
        population = deque(seeds[j] for _, j in ranked)
        for _ in range(self.cycles):
            picks = self.rng.choice(len(population), size=min(self.sample_size, len(population)), replace=False)
            members = [population[int(p)] for p in picks]
            parent = members[int(np.argmax(score(members)))]
            child = self._mutate(parent)
            score([child])
            population.append(child)
            population.popleft()
        fresh = sorted((v, i) for i, v in predicted.items() if i not in self._asked)
        fresh.reverse()
        self._queue.extend(Arch.from_index(i) for _, i in fresh[: self.top])

    def _mutate(self, parent: Arch) -> Arch:
        """A feasible one-block mutation of ``parent`` (a random feasible model if none is found quickly)."""
        for _ in range(16):
            child = mutate(parent, seed=self.rng, space=self.space)
            if self.constraint is None or self.constraint(child):
                return child
        return self.sample()

    def _observe(self, arch: Arch, value: float, evaluation: Evaluation) -> None:
        """Results feed the next refit (see ``_fit_data``)."""
