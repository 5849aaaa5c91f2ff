"""Your own search agent, benchmarked next to the built-in ones (the tutorial of docs/guides/agents.md).

``GreedyNeighbour`` is a first-improvement hill climber with random restarts, written only against the public
API: it subclasses :class:`blox_env.agents.BaseAgent` (which keeps the history, the seeded generator, the
constraint and every Agent Protocol member but ``ask``) and uses :func:`blox_env.space.neighbours`.

- ``ask()``: the next unvisited neighbour of the best model so far (one stage's block changed), in a random
  order; when every neighbour of it has been asked, a random unvisited model (a restart).
- ``_observe()``: nothing to learn: :attr:`~blox_env.agents.BaseAgent.best` already follows the told results.

Benchmark it against random search and regularized evolution on the bundled Blox-mini::

    blox bench --agents random,evolution,examples.custom_agent:GreedyNeighbour \\
        --seeds 10 --budgets 30,100 --cost-unit evaluations --executor serial

(from the repository root, so ``examples`` imports), or run this file: ``python examples/custom_agent.py
[--seeds N] [--budgets A,B]``, which does the same through :func:`blox_env.run_bench`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from blox_env import Arch, SubSpace
from blox_env.agents import BaseAgent
from blox_env.space import neighbours


class GreedyNeighbour(BaseAgent):
    """Hill climbing over one-block edits of the best model so far, with a random restart at a local optimum."""

    name = "greedy-neighbour"
    parallel_asks = True  # asks need no tell in between (the best so far may simply not have moved yet)
    reaskable = True  # asking again gives a fresh proposal (simulated workers re-ask to avoid models in flight)

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator, metric: str = "val_top1",
                 constraint: Callable[[Arch], bool] | None = None) -> None:
        super().__init__(space, seed=seed, metric=metric, constraint=constraint)
        self.asked: set[int] = set()

    def ask(self) -> Arch:
        best = self.best
        if best is not None:
            around = [a for a in neighbours(best[0], self.space)
                      if a.index not in self.asked and a.index not in self.pending_indices and self.allowed(a)]
            if around:
                arch = around[int(self.rng.integers(len(around)))]
                self.asked.add(arch.index)
                return arch
        arch = self.sample(exclude=self.asked)  # a restart (uniform over the feasible models not asked yet)
        self.asked.add(arch.index)
        return arch


def main(argv: list[str] | None = None) -> None:
    """Benchmark ``GreedyNeighbour`` against random search and regularized evolution; print the table."""
    from blox_env import BenchSpec, run_bench

    root = str(Path(__file__).resolve().parents[1])  # so that "examples.custom_agent" imports as a script, too
    if root not in sys.path:
        sys.path.insert(0, root)
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budgets", default="30,100", help="comma-separated budgets, in evaluations")
    args = parser.parse_args(argv)
    spec = BenchSpec.from_options(
        agents=("random", "evolution", "examples.custom_agent:GreedyNeighbour"), seeds=args.seeds,
        budgets=tuple(float(b) for b in args.budgets.split(",")), cost_unit="evaluations")
    result = run_bench(spec, executor="serial", progress=False)
    print(result.table())


if __name__ == "__main__":
    main()
