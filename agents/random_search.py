"""Random search: the baseline every NAS method must beat.

With ``dedupe=True`` (default) the agent walks a random permutation of the
feasible models, so it draws uniformly *without* repeats until every feasible
model has been asked; then it starts a fresh permutation (repeats are
unavoidable from there on). ``dedupe=False`` draws uniformly with replacement.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from blox_env.agents.base import BaseAgent
from blox_env.space import Arch, SubSpace

__all__ = ["RandomSearch"]


class RandomSearch(BaseAgent):
    """Uniform random sampling of feasible models (without repeats while possible)."""

    name = "random"
    reaskable = True  # its asks do not wait for tells

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator, metric: str = "val_top1",
                 constraint: Callable[[Arch], bool] | None = None, dedupe: bool = True) -> None:
        super().__init__(space, seed=seed, metric=metric, constraint=constraint)
        self.dedupe = bool(dedupe)
        self._order: list[int] = []

    def ask(self) -> Arch:
        if not self.dedupe:
            return self.sample()
        if not self._order:
            # the feasible set is enumerated once; a permutation of it is one pass without repeats
            self._order = self.rng.permutation(self.feasible_indices()).tolist()[::-1]
        return Arch.from_index(self._order.pop())
