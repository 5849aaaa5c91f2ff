"""LANA-style blockwise search: minimise the sum of block signatures under a cost limit (an integer program).

LANA (Molchanov et al., 2022) scores a model by the sum over stages of a
per-block signature (e.g. ``-lana_delta``: minus the teacher's accuracy change
when the block replaces the teacher's; lower is better) and picks the best
models under a resource limit by solving::

    min  sum_{s,k} scores[s, k] * x[s, k]
    s.t. sum_k x[s, k] = 1                      (one block per stage)
         sum_{s,k} costs[s, k] * x[s, k] <= limit
         x binary

with :func:`scipy.optimize.milp` (HiGHS, ``mip_rel_gap=0`` so the optimum is
exact). Costs are per-block, so the model cost is modelled as additive (true of
parameters, and close to true of FLOPs and latency). NaN scores or costs mark
blocks that are unavailable. The *next* best solutions come from re-solving
with a no-good cut per solution already returned: ``sum_s x[s, k_s] <= 2``
excludes exactly that block triple.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.agents.base import BaseAgent
from blox_env.errors import InvalidArgumentError
from blox_env.space import N_BLOCKS, N_STAGES, Arch, SubSpace

if TYPE_CHECKING:
    from blox_env.rewards.base import Evaluation

__all__ = ["LanaSearch", "lana_optimum"]


def _matrix(values: Any, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{name} must be a numeric [3, K] array: {exc}") from None
    if arr.ndim != 2 or arr.shape[0] != N_STAGES or arr.shape[1] < 1 or (shape is not None and arr.shape != shape):
        want = f"{shape}" if shape is not None else "(3, K)"
        raise InvalidArgumentError(f"{name} must have shape {want}, got {arr.shape}")
    if np.isinf(arr).any():
        raise InvalidArgumentError(f"{name} must be finite (NaN marks an unavailable block), found inf")
    return arr


def lana_optimum(scores: np.ndarray, costs: np.ndarray | None = None, limit: float | None = None, *,
                 exclude: Sequence[tuple[int, int, int]] = ()) -> tuple[int, int, int]:
    """Column per stage ``(k0, k1, k2)`` minimising ``sum_s scores[s, k_s]`` with ``sum_s costs[s, k_s] <= limit``.

    ``exclude`` lists triples that must not be returned (no-good cuts), which
    is how the next-best solutions are enumerated. Raises
    :class:`InvalidArgumentError` when no (remaining) combination is feasible.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    s_arr = _matrix(scores, "scores")
    k = s_arr.shape[1]
    if (costs is None) != (limit is None):
        raise InvalidArgumentError("give costs and limit together (or neither)")
    available = ~np.isnan(s_arr)
    c_arr = None
    if costs is not None:
        c_arr = _matrix(costs, "costs", s_arr.shape)
        if isinstance(limit, bool) or not isinstance(limit, (int, float, np.integer, np.floating)) \
                or not np.isfinite(limit):
            raise InvalidArgumentError(f"limit must be a finite number, got {limit!r}")
        available &= ~np.isnan(c_arr)
    for s in range(N_STAGES):
        if not available[s].any():
            raise InvalidArgumentError(f"stage {s} has no available block (all scores/costs NaN)")
    n = N_STAGES * k
    rows = [np.kron(np.eye(N_STAGES)[s], np.ones(k)) for s in range(N_STAGES)]
    lower, upper = [1.0] * N_STAGES, [1.0] * N_STAGES
    if c_arr is not None:
        rows.append(np.nan_to_num(c_arr).ravel())
        lower.append(-np.inf)
        upper.append(float(limit))  # type: ignore[arg-type]
    for triple in exclude:
        cut = np.zeros(n)
        for s, col in enumerate(triple):
            if not 0 <= int(col) < k:
                raise InvalidArgumentError(f"excluded solution {tuple(triple)} has a column outside 0..{k - 1}")
            cut[s * k + int(col)] = 1.0
        rows.append(cut)
        lower.append(-np.inf)
        upper.append(N_STAGES - 1.0)
    result = milp(
        c=np.nan_to_num(s_arr).ravel(),
        constraints=LinearConstraint(np.array(rows), lower, upper),
        integrality=np.ones(n),
        bounds=Bounds(np.zeros(n), available.ravel().astype(np.float64)),
        options={"mip_rel_gap": 0.0},
    )
    if result.status != 0 or result.x is None:
        extra = f" with {len(exclude)} solution(s) excluded" if exclude else ""
        cheapest = ""
        if c_arr is not None:
            low = float(sum(np.min(c_arr[s][available[s]]) for s in range(N_STAGES)))
            cheapest = f"; the cheapest model costs {low:g} against the limit {float(limit):g}"  # type: ignore[arg-type]
        raise InvalidArgumentError(f"no feasible block combination{extra}{cheapest} ({result.message})")
    x = np.round(result.x).reshape(N_STAGES, k)
    return tuple(int(np.argmax(x[s])) for s in range(N_STAGES))  # type: ignore[return-value]


class LanaSearch(BaseAgent):
    """Asks the models with the best (lowest) signature sums in order, under an optional additive cost limit.

    ``signatures`` and ``costs`` are ``[3, 45]`` arrays over canonical blocks
    (only the space's blocks are used). ``ranking`` holds the first ``top``
    solutions, computed at construction; asks beyond them extend the ranking
    with further no-good-cut solves. Solutions rejected by ``constraint`` are
    skipped. Once every feasible combination has been asked the agent falls
    back to random feasible models (repeats).
    """

    name = "lana"

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator, signatures: Any, costs: Any = None,
                 limit: float | None = None, top: int = 10, metric: str = "val_top1",
                 constraint: Callable[[Arch], bool] | None = None) -> None:
        super().__init__(space, seed=seed, metric=metric, constraint=constraint)
        sig = _matrix(signatures, "signatures", (N_STAGES, N_BLOCKS))
        if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or int(top) < 1:
            raise InvalidArgumentError(f"top must be an integer >= 1, got {top!r}")
        width = max(space.sizes)
        self._scores = np.full((N_STAGES, width), np.nan)
        self._costs = None if costs is None else np.full((N_STAGES, width), np.nan)
        cost_arr = None if costs is None else _matrix(costs, "costs", (N_STAGES, N_BLOCKS))
        for s, blocks in enumerate(space.blocks):
            self._scores[s, : len(blocks)] = sig[s, list(blocks)]
            if self._costs is not None and cost_arr is not None:
                self._costs[s, : len(blocks)] = cost_arr[s, list(blocks)]
        self.limit = limit
        self.top = int(top)
        self.ranking: list[Arch] = []
        self._cuts: list[tuple[int, int, int]] = []
        self._exhausted = False
        self._next = 0
        self._extend(self.top)

    def signature_blocks(self) -> list[tuple[int, int]]:
        """Every ``(stage, block)`` whose signature this method reads: all blocks of its space (the harness charges
        their distillation, and the teacher's training, before the first prediction)."""
        return [(s, int(b)) for s, blocks in enumerate(self.space.blocks) for b in blocks]

    def _extend(self, count: int) -> None:
        """Append up to ``count`` further solutions (that satisfy the constraint) to ``ranking``."""
        added = 0
        while added < count and not self._exhausted:
            try:
                sol = lana_optimum(self._scores, self._costs, self.limit, exclude=self._cuts)
            except InvalidArgumentError:
                if not self._cuts and not self.ranking:
                    raise
                self._exhausted = True
                break
            self._cuts.append(sol)
            arch = self.space.arch(sol)
            if self.constraint is None or self.constraint(arch):
                self.ranking.append(arch)
                added += 1

    def ask(self) -> Arch:
        if self._next >= len(self.ranking):
            self._extend(self.top)
        if self._next < len(self.ranking):
            self._next += 1
            return self.ranking[self._next - 1]
        return self.sample()

    def _observe(self, arch: Arch, value: float, evaluation: Evaluation) -> None:
        """Nothing to learn: the ranking is fixed by the signatures."""
