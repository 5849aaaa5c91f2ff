"""Regularized (aging) evolution and local search over the block-per-stage encoding.

- :class:`RegularizedEvolution` (Real et al., 2019): the first ``population``
  asks are random feasible models; afterwards each ask draws ``sample_size``
  members of the population uniformly (without replacement), mutates the best
  of them (one stage's block replaced by another block of the space,
  :func:`blox_env.space.mutate`) and every told child joins the population while
  the *oldest* member leaves (aging, not worst-removal). A mutation that breaks
  the constraint is redrawn (bounded tries, then a random feasible neighbour,
  then a random feasible model).
- :class:`LocalSearch` (hill climbing, as in White et al., 2021): start at a
  random model, evaluate the feasible neighbours of the incumbent (all models one
  block away) in random order; ``strategy="first"`` moves to the first
  neighbour that improves on the incumbent, ``"best"`` evaluates all neighbours
  and moves to the best one if it improves. With no improving neighbour the
  incumbent is a local optimum and the search restarts from a random model not
  evaluated yet. Models already evaluated are never asked again while unseen
  ones remain; their known values are reused (at no cost) when met as neighbours.
  Neighbourhoods come from precomputed per-stage tables (:class:`NeighbourTable`),
  not from building every neighbour as an :class:`Arch`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from blox_env.agents.base import BaseAgent, fitness_key
from blox_env.errors import InvalidArgumentError
from blox_env.space import N_BLOCKS, N_MODELS, Arch, SubSpace, mutate, neighbours

if TYPE_CHECKING:
    from blox_env.rewards.base import Evaluation

__all__ = ["LocalSearch", "NeighbourTable", "RegularizedEvolution"]

_MUTATION_TRIES = 32


def positive_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int if it is one (not a bool) and at least ``minimum``; the agents' size arguments."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class RegularizedEvolution(BaseAgent):
    """Aging evolution: tournament selection of size ``sample_size``, one-block mutation, oldest removed."""

    name = "evolution"
    reaskable = True  # its asks do not wait for tells

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator, population: int = 20,
                 sample_size: int = 5, metric: str = "val_top1",
                 constraint: Callable[[Arch], bool] | None = None) -> None:
        super().__init__(space, seed=seed, metric=metric, constraint=constraint)
        self.population_size = positive_int(population, "population", 2)
        self.sample_size = positive_int(sample_size, "sample_size")
        if self.sample_size > self.population_size:
            raise InvalidArgumentError(f"sample_size ({self.sample_size}) must be at most population "
                                       f"({self.population_size})")
        if space.size < 2:
            raise InvalidArgumentError("evolution needs a space of at least 2 models to mutate between")
        self.population: deque[tuple[Arch, float]] = deque()
        self._initial_asked = 0
        self._seen: set[int] = set()

    def ask(self) -> Arch:
        if self._initial_asked < self.population_size or not self.population:
            self._initial_asked += 1
            arch = self.sample(exclude=self._seen)  # distinct initial members while possible
        else:
            arch = self._mutate(self._parent())
        self._seen.add(arch.index)
        return arch

    def _parent(self) -> Arch:
        members = list(self.population)
        k = min(self.sample_size, len(members))
        picks = self.rng.choice(len(members), size=k, replace=False)
        best = max(picks.tolist(), key=lambda i: (fitness_key(members[i][1]), -i))
        return members[best][0]

    def _mutate(self, parent: Arch) -> Arch:
        for _ in range(_MUTATION_TRIES):
            child = mutate(parent, seed=self.rng, space=self.space)
            if self.constraint is None or self.constraint(child):
                return child
        options = [a for a in neighbours(parent, self.space) if self.constraint is None or self.constraint(a)]
        if options:
            return options[int(self.rng.integers(len(options)))]
        return self.sample()

    def _observe(self, arch: Arch, value: float, evaluation: Evaluation) -> None:
        self.population.append((arch, value))
        while len(self.population) > self.population_size:
            self.population.popleft()


class NeighbourTable:
    """Neighbours of any member of a sub-space as model indices, from precomputed per-stage tables.

    A neighbour changes one stage's block. With strides ``(1, 45, 2025)`` the neighbours of model
    ``i`` with blocks ``(b0, b1, b2)`` in stage ``s`` are ``i - b_s * stride_s + others_s[b_s]``,
    where ``others_s[b]`` holds ``b' * stride_s`` for every other block ``b'`` of the stage (a
    ``[45, k_s - 1]`` table built once). The order is :func:`blox_env.space.neighbours`'s: stage by
    stage, blocks ascending, so a search that shuffles them draws the same models as before.
    """

    def __init__(self, space: SubSpace) -> None:
        self._others: list[np.ndarray] = []
        for s, stage in enumerate(space.blocks):
            blocks = np.asarray(stage, dtype=np.int64)
            table = np.full((N_BLOCKS, max(len(blocks) - 1, 0)), -1, dtype=np.int64)
            for b in stage:
                table[b] = blocks[blocks != b] * N_BLOCKS**s
            self._others.append(table)

    def __call__(self, index: int) -> np.ndarray:
        """Model indices of the neighbours of the member ``index`` (stage-major, blocks ascending)."""
        parts = []
        for s, table in enumerate(self._others):
            b = (index // N_BLOCKS**s) % N_BLOCKS
            parts.append(table[b] + (index - b * N_BLOCKS**s))
        return np.concatenate(parts)


class LocalSearch(BaseAgent):
    """Hill climbing over one-block neighbourhoods with random restarts at local optima.

    Neighbourhoods come from a :class:`NeighbourTable` and the constraint from a feasibility
    mask over model indices (when the constraint has a vectorised ``mask``, e.g. from
    :func:`~blox_env.agents.base.make_constraint`), so a move costs a few numpy operations rather
    than one :class:`Arch` and one constraint call per neighbour; the models asked are the same.
    """

    name = "local"

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator, strategy: str = "first",
                 metric: str = "val_top1", constraint: Callable[[Arch], bool] | None = None) -> None:
        super().__init__(space, seed=seed, metric=metric, constraint=constraint)
        if strategy not in ("first", "best"):
            raise InvalidArgumentError(f"strategy must be 'first' or 'best', got {strategy!r}")
        self.strategy = strategy
        self.incumbent: tuple[Arch, float] | None = None
        self.restarts = 0
        self.optima: list[tuple[Arch, float]] = []  # local optima met, in order (each ended a climb)
        self.table = NeighbourTable(space)
        self._values: dict[int, float] = {}
        self._queue: list[int] = []  # model indices, pop() from the end
        self._best_neighbour: tuple[int, float] | None = None
        self._pending_start: Arch | None = None
        self._ok: np.ndarray | None = None  # feasibility by model index (None: check with the callable)

    def _feasible_options(self, options: np.ndarray) -> np.ndarray:
        """The feasible ones of ``options`` (model indices of members), in order."""
        if self.constraint is None:
            return options
        if self._ok is None and callable(getattr(self.constraint, "mask", None)):
            ok = np.zeros(N_MODELS, dtype=bool)
            ok[self.feasible_indices()] = True
            self._ok = ok
        if self._ok is not None:
            return options[self._ok[options]]
        keep = [bool(self.constraint(Arch.from_index(int(i)))) for i in options.tolist()]
        return options[np.asarray(keep, dtype=bool)]

    def _move(self, arch: Arch, value: float) -> None:
        """Make ``arch`` the incumbent and queue its feasible neighbours in random order."""
        self.incumbent = (arch, value)
        self._best_neighbour = None
        options = self._feasible_options(self.table(arch.index))
        order = self.rng.permutation(len(options))
        self._queue = options[order][::-1].tolist()  # pop() from the end

    def _consider(self, index: int, value: float) -> bool:
        """Account for a neighbour's value; True if the search moved."""
        assert self.incumbent is not None  # internal invariant: only neighbours of an incumbent get here
        if self.strategy == "first":
            if fitness_key(value) > fitness_key(self.incumbent[1]):
                self._move(Arch.from_index(index), value)
                return True
            return False
        if self._best_neighbour is None or fitness_key(value) > fitness_key(self._best_neighbour[1]):
            self._best_neighbour = (index, value)
        return False

    def ask(self) -> Arch:
        while True:
            if self.incumbent is None:
                arch = self.sample(exclude=self._values)
                self._pending_start = arch
                return arch
            while self._queue:
                index = self._queue.pop()
                if index in self._values:
                    self._consider(index, self._values[index])  # known value: no evaluation needed
                    continue
                return Arch.from_index(index)
            nb = self._best_neighbour
            if self.strategy == "best" and nb is not None and fitness_key(nb[1]) > fitness_key(self.incumbent[1]):
                self._move(Arch.from_index(nb[0]), nb[1])
                continue
            self.optima.append(self.incumbent)  # local optimum: restart
            self.incumbent = None
            self.restarts += 1

    def _observe(self, arch: Arch, value: float, evaluation: Evaluation) -> None:
        self._values[arch.index] = value
        if arch == self._pending_start:
            self._pending_start = None
            self._move(arch, value)
        elif self.incumbent is not None and sum(a != b for a, b in zip(arch.blocks, self.incumbent[0].blocks)) == 1:
            self._consider(arch.index, value)
