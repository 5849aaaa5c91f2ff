"""Asynchronous agents for simulated parallel workers: ASHA and asynchronous regularized evolution.

Both propose a model whenever asked, so with
:func:`~blox_env.agents.parallel.run_parallel_search` ``mode="async"`` no worker ever idles waiting
for the agent (only for the budget).

- :class:`ASHA` (asynchronous successive halving; Li et al., "A System for Massively Parallel
  Hyperparameter Tuning", MLSys 2020) on the epoch fidelity. Rungs are those of
  :func:`~blox_env.agents.halving.rung_fidelities`. On each ask, from the second-highest rung down
  to the lowest, a model of rung ``k`` is *promotable* when it is among the top
  ``floor(n_k / eta)`` of the ``n_k`` models whose rung-``k`` results are completed (told) and it
  was not promoted from rung ``k`` before; the best promotable model of the highest such rung is
  asked at rung ``k + 1``. Without one, a new random feasible model (distinct from every model
  asked so far and from those in flight) starts at rung 0. Nothing waits for a rung to fill:
  promotions use the completed results only, and in-flight models never count. Ties in a rung are
  broken by completion order (earlier first); NaN ranks last. A tabular space is finite: once
  every feasible model has been asked, the best model not yet promoted of the highest rung below
  the top is promoted instead (the top-``1/eta`` condition dropped), so the budget keeps buying
  higher fidelities; only when there is none either is a model asked again at rung 0.
- :class:`AsyncEvolution`: regularized (aging) evolution for asynchronous workers. Parents are
  drawn by tournament from the population of *completed* results only (the last ``population``
  told), and a child is proposed whenever asked; the first ``population`` asks are random
  feasible models (distinct, and never one in flight, while possible). A child is a uniformly
  random feasible one-block neighbour of the parent that is not in flight and was not asked
  before; failing that, one not in flight; failing that, the mutation
  :class:`~blox_env.agents.evolution.RegularizedEvolution` would make. With one worker it differs
  from regularized evolution only in avoiding repeats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from blox_env.agents.base import fitness_key
from blox_env.agents.evolution import RegularizedEvolution
from blox_env.agents.halving import RungAgent
from blox_env.space import Arch, SubSpace, neighbours

if TYPE_CHECKING:
    from blox_env.rewards.base import Evaluation

__all__ = ["ASHA", "AsyncEvolution"]


class ASHA(RungAgent):
    """Asynchronous successive halving: promote a model as soon as it is in the top 1/eta of its rung."""

    name = "asha"

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator, min_fidelity: int, max_fidelity: int,
                 eta: int = 3, metric: str = "val_top1", constraint: Callable[[Arch], bool] | None = None) -> None:
        super().__init__(space, seed=seed, min_fidelity=min_fidelity, max_fidelity=max_fidelity, eta=eta,
                         metric=metric, constraint=constraint)
        #: Completed results per rung: model index -> objective (latest told), in completion order.
        self.results: list[dict[int, float]] = [{} for _ in self.rungs]
        #: Model indices promoted out of each rung (asked at the next one).
        self.promoted: list[set[int]] = [set() for _ in self.rungs]
        self.fidelity = self.rungs[0]
        self._asked: set[int] = set()
        self._in_flight: dict[int, list[int]] = {}  # model index -> rungs asked, not yet told (FIFO)

    def promotable(self, rung: int) -> list[int]:
        """Model indices of ``rung`` now eligible for promotion, best first (see the module docstring)."""
        done = self.results[rung]
        ranked = sorted(done, key=lambda i: fitness_key(done[i]), reverse=True)  # stable: completion order on ties
        top = ranked[: len(done) // self.eta]
        return [i for i in top if i not in self.promoted[rung]]

    def ask(self) -> Arch:
        for rung in range(len(self.rungs) - 2, -1, -1):
            candidates = self.promotable(rung)
            if candidates:
                index = candidates[0]
                self.promoted[rung].add(index)
                return self._issue(Arch.from_index(index), rung + 1)
        if len(self._asked) >= len(self.feasible_indices()):  # nothing new left to start: promote the best left
            for rung in range(len(self.rungs) - 2, -1, -1):
                done = self.results[rung]
                left = [i for i in done if i not in self.promoted[rung] and i not in self.pending_indices]
                if left:
                    index = max(left, key=lambda i: fitness_key(done[i]))  # first completed on ties
                    self.promoted[rung].add(index)
                    return self._issue(Arch.from_index(index), rung + 1)
        return self._issue(self.sample(exclude=self._asked), 0)

    def _issue(self, arch: Arch, rung: int) -> Arch:
        self._asked.add(arch.index)
        self._in_flight.setdefault(arch.index, []).append(rung)
        self.fidelity = self.rungs[rung]
        return arch

    def _observe(self, arch: Arch, value: float, evaluation: Evaluation) -> None:
        queue = self._in_flight.get(arch.index)
        if queue:
            rung = queue.pop(0)
            if not queue:
                del self._in_flight[arch.index]
        elif evaluation.fidelity in self.rungs:  # a result the agent did not ask for: file it by its fidelity
            rung = self.rungs.index(evaluation.fidelity)
        else:
            return
        self.results[rung].pop(arch.index, None)  # a repeat moves to the end of the completion order
        self.results[rung][arch.index] = value


class AsyncEvolution(RegularizedEvolution):
    """Aging evolution whose parents come from completed results only and whose children avoid models in flight."""

    name = "async-evolution"

    def _mutate(self, parent: Arch) -> Arch:
        options = neighbours(parent, self.space)
        idx = np.array([a.index for a in options], dtype=np.int64)
        ok = np.ones(len(idx), dtype=bool)
        if self.constraint is not None:
            mask = getattr(self.constraint, "mask", None)
            ok = np.asarray(mask(idx), dtype=bool) if callable(mask) else np.array([bool(self.constraint(a))
                                                                                   for a in options], dtype=bool)
        busy = self.pending_indices
        idle = ok & np.array([i not in busy for i in idx.tolist()], dtype=bool)
        new = idle & np.array([i not in self._seen for i in idx.tolist()], dtype=bool)
        for keep in (new, idle):
            if keep.any():
                choices = np.flatnonzero(keep)
                return options[int(choices[int(self.rng.integers(len(choices)))])]
        return super()._mutate(parent)
