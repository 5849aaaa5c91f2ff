"""Successive halving and Hyperband on the epoch fidelity.

Rungs. With ``s_max = floor(log_eta(max_fidelity / min_fidelity))`` the rung
fidelities are ``round(max_fidelity * eta**(i - s_max))`` for ``i = 0..s_max``
(never below ``min_fidelity``, the last one exactly ``max_fidelity``).

A *bracket* starts ``n`` random feasible candidates (distinct while possible)
at some rung; once all of a rung's candidates are told, the top
``max(1, floor(len / eta))`` by the objective are re-evaluated at the next rung,
up to ``max_fidelity``. ``self.fidelity`` is set before each ask to the rung of
the arch being asked, so the harness trains it for that many epochs. When a
bracket finishes a new one starts, forever.

- :class:`SuccessiveHalving`: every bracket starts ``n_initial`` candidates
  (default ``eta**s_max``, i.e. one survivor at full fidelity) at rung 0.
- :class:`Hyperband` (Li et al., 2018): cycles brackets ``s = s_max .. 0``;
  bracket ``s`` starts ``ceil((s_max + 1) / (s + 1) * eta**s)`` candidates at rung
  ``s_max - s``, trading many cheap evaluations against few full ones.

The agent expects the harness's ask/tell alternation; a rung is promoted on the
results told so far once its queue is empty.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from blox_env.agents.base import BaseAgent, fitness_key
from blox_env.errors import InvalidArgumentError
from blox_env.space import Arch, SubSpace

if TYPE_CHECKING:
    from blox_env.rewards.base import Evaluation

__all__ = ["Hyperband", "RungAgent", "SuccessiveHalving", "rung_fidelities"]


def _int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def rung_fidelities(*, min_fidelity: int, max_fidelity: int, eta: int) -> list[int]:
    """Increasing rung fidelities from about ``min_fidelity`` to ``max_fidelity`` in factors of ``eta``."""
    lo = _int(min_fidelity, "min_fidelity", 1)
    hi = _int(max_fidelity, "max_fidelity", 1)
    e = _int(eta, "eta", 2)
    if lo > hi:
        raise InvalidArgumentError(f"min_fidelity ({lo}) must be at most max_fidelity ({hi})")
    s_max = int(math.floor(math.log(hi / lo) / math.log(e) + 1e-9))
    rungs = [max(lo, round(hi * e ** (i - s_max))) for i in range(s_max + 1)]
    return sorted(set(rungs))


class RungAgent(BaseAgent):
    """An agent over epoch-fidelity rungs (successive halving, Hyperband, ASHA): checks and holds the rungs."""

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator, min_fidelity: int, max_fidelity: int,
                 eta: int = 3, metric: str = "val_top1", constraint: Callable[[Arch], bool] | None = None) -> None:
        super().__init__(space, seed=seed, metric=metric, constraint=constraint)
        self.rungs = rung_fidelities(min_fidelity=min_fidelity, max_fidelity=max_fidelity, eta=eta)
        self.eta = int(eta)
        self.min_fidelity, self.max_fidelity = int(min_fidelity), int(max_fidelity)


class _Halving(RungAgent):
    """Bracket mechanics shared by both agents; subclasses choose each new bracket."""

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator, min_fidelity: int, max_fidelity: int,
                 eta: int = 3, metric: str = "val_top1", constraint: Callable[[Arch], bool] | None = None) -> None:
        super().__init__(space, seed=seed, min_fidelity=min_fidelity, max_fidelity=max_fidelity, eta=eta,
                         metric=metric, constraint=constraint)
        self.bracket = -1  # id of the current bracket (counts up from 0)
        self.rung = 0  # position in self.rungs of the current rung
        self._queue: list[Arch] = []
        self._results: list[tuple[Arch, float]] = []
        self._asked: set[int] = set()
        self._seen: set[int] = set()
        self.fidelity = self.rungs[0]

    @property
    def s_max(self) -> int:
        return len(self.rungs) - 1

    def _bracket_plan(self) -> tuple[int, int]:
        """``(n_candidates, first_rung)`` of the next bracket."""
        raise NotImplementedError

    def _start_bracket(self) -> None:
        n, first = self._bracket_plan()
        self.bracket += 1
        self.rung = first
        self._queue = []
        chosen: set[int] = set()
        for _ in range(n):
            arch = self.sample(exclude=self._seen | chosen)
            chosen.add(arch.index)
            self._queue.append(arch)
        self._seen |= chosen
        self._queue.reverse()  # pop() from the end in sampling order
        self._results = []
        self._asked = set()

    def _promote(self) -> None:
        ranked = sorted(self._results, key=lambda item: fitness_key(item[1]), reverse=True)
        keep = max(1, len(ranked) // self.eta)
        self.rung += 1
        self._queue = [a for a, _ in ranked[:keep]][::-1]
        self._results = []
        self._asked = set()

    def ask(self) -> Arch:
        while not self._queue:
            if self.bracket < 0 or self.rung >= self.s_max or not self._results:
                self._start_bracket()
            else:
                self._promote()
        arch = self._queue.pop()
        self._asked.add(arch.index)
        self.fidelity = self.rungs[self.rung]
        return arch

    def _observe(self, arch: Arch, value: float, evaluation: Evaluation) -> None:
        if arch.index in self._asked:
            self._asked.discard(arch.index)
            self._results.append((arch, value))


class SuccessiveHalving(_Halving):
    """Successive halving brackets of ``n_initial`` random candidates, repeated forever."""

    name = "sh"

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator, min_fidelity: int, max_fidelity: int,
                 eta: int = 3, n_initial: int | None = None, metric: str = "val_top1",
                 constraint: Callable[[Arch], bool] | None = None) -> None:
        super().__init__(space, seed=seed, min_fidelity=min_fidelity, max_fidelity=max_fidelity, eta=eta,
                         metric=metric, constraint=constraint)
        self.n_initial = self.eta**self.s_max if n_initial is None else _int(n_initial, "n_initial", 1)

    def _bracket_plan(self) -> tuple[int, int]:
        return self.n_initial, 0


class Hyperband(_Halving):
    """Hyperband: successive-halving brackets cycling from most exploratory to plain full-fidelity search."""

    name = "hyperband"

    def _bracket_plan(self) -> tuple[int, int]:
        s = self.s_max - (self.bracket + 1) % (self.s_max + 1)
        n = math.ceil((self.s_max + 1) / (s + 1) * self.eta**s)
        return n, self.s_max - s
