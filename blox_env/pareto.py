"""Pareto tools: non-dominated sorting, a store's true front, hypervolume with a stated reference, regret.

Points are ``[n, k]`` arrays of objective values in their own units; ``directions`` says per
objective whether it is minimised or maximised (``"min"`` / ``"max"``, one string for all, or
the :class:`~blox_env.objectives.Objective` tuple itself). Every function converts to one
minimisation convention (maximised columns negated) before computing, so a reference point is
given in the objectives' own units too (e.g. ``(0.0, 50.0)`` for top-1 accuracy in percent,
maximised, and latency in ms, minimised).

Hypervolume is the measure of the region dominated by the points and bounded by the reference
point. A point that does not strictly dominate the reference (better in every objective)
contributes nothing; ``require_dominated=True`` refuses such a set instead, for reports that
promise their reference bounds every point. :func:`reference_point` states one from data (the
worst value of each objective pushed out by a margin of its range), so a report can print it.

Why moocore: it is a maintained library (the C core of the ``moocore`` R/Python packages, by
the authors of the standard hypervolume algorithms) with exact hypervolume in any dimension
(O(n log n) in 2-D and 3-D, WFG-style beyond), non-dominated sorting and filtering with
duplicate handling, abi3 wheels for every CPython >= 3.10 on Linux, macOS and Windows, and only
numpy, cffi and platformdirs as dependencies. pymoo would bring a whole optimisation framework
(autograd, cma, alive-progress, dill, ...) for the same two functions. Inputs are checked here
(shapes, NaN, directions) so that moocore only ever sees clean float arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError
from blox_env.objectives import Objective, objective_matrix, parse_objectives

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["ParetoFront", "check_points", "hypervolume", "hypervolume_regret", "nondominated", "pareto_ranks",
           "reference_point", "true_front"]


# ---------------------------------------------------------------------------------------------- input checks
def check_points(points: Any, *, k: int | None = None, name: str = "points") -> np.ndarray:
    """``points`` as a float64 ``[n, k]`` array (n may be 0) of finite values; raises naming what is wrong."""
    try:
        arr = np.array(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentTypeError(f"{name} must be an [n, k] array of numbers, got {points!r}") from exc
    if arr.ndim == 1 and arr.size == 0 and k is not None:
        arr = arr.reshape(0, k)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise InvalidArgumentError(f"{name} must be a 2-D [n, k] array with k >= 1 objectives, got shape {arr.shape}")
    if k is not None and arr.shape[1] != k:
        raise InvalidArgumentError(f"{name} has {arr.shape[1]} objectives per point, expected {k}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise InvalidArgumentError(f"{name}[{i}, {j}] is {float(arr[i, j])!r}: objective values must be finite "
                                   f"({int(bad.any(axis=1).sum())} point(s) affected; drop models without values)")
    return arr


def _directions(directions: Any, k: int) -> np.ndarray:
    """Sign per objective: +1 minimised, -1 maximised."""
    if isinstance(directions, str):
        directions = (directions,) * k
    if not isinstance(directions, Sequence):
        raise InvalidArgumentTypeError(f"directions must be 'min', 'max' or a sequence of them (or Objectives), "
                                       f"got {directions!r}")
    dirs = [d.direction if isinstance(d, Objective) else d for d in directions]
    if len(dirs) != k or any(d not in ("min", "max") for d in dirs):
        raise InvalidArgumentError(f"directions must give 'min' or 'max' for each of the {k} objectives, got "
                                   f"{list(directions)!r}")
    return np.array([-1.0 if d == "max" else 1.0 for d in dirs])


def _minimised(points: Any, directions: Any, *, name: str = "points", k: int | None = None) -> np.ndarray:
    arr = check_points(points, k=k, name=name)
    return arr * _directions(directions, arr.shape[1])


def _moocore() -> Any:
    import moocore  # imported on use: `import blox_env` stays light

    return moocore


# ---------------------------------------------------------------------------------------------- sorting
def pareto_ranks(points: Any, *, directions: Any = "min") -> np.ndarray:
    """Non-dominated sorting: rank 0 for points no other dominates, 1 for those only rank 0 dominates, ...

    Duplicated points share a rank. Returns int64 ``[n]``.
    """
    pts = _minimised(points, directions)
    if len(pts) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(_moocore().pareto_rank(pts), dtype=np.int64)


def nondominated(points: Any, *, directions: Any = "min", keep_duplicates: bool = True) -> np.ndarray:
    """Boolean mask of the points no other point dominates (``keep_duplicates=False``: first copy only)."""
    pts = _minimised(points, directions)
    if len(pts) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(_moocore().is_nondominated(pts, keep_weakly=bool(keep_duplicates)), dtype=bool)


# ---------------------------------------------------------------------------------------------- hypervolume
def _reference(reference: Any) -> np.ndarray:
    try:
        ref = np.array(reference, dtype=np.float64)
    except (TypeError, ValueError):
        ref = None
    if ref is None or ref.ndim != 1 or len(ref) < 1 or not np.isfinite(ref).all():
        raise InvalidArgumentError(f"reference must be a 1-D sequence of finite numbers (one per objective), "
                                   f"got {reference!r}")
    return ref


def hypervolume(points: Any, *, reference: Any, directions: Any = "min", require_dominated: bool = False) -> float:
    """Hypervolume of ``points`` bounded by ``reference`` (both in the objectives' own units and directions).

    Points that do not strictly dominate ``reference`` add nothing (see the module docstring);
    ``require_dominated=True`` raises for them instead. An empty set has hypervolume 0.
    """
    ref = _reference(reference)
    sign = _directions(directions, len(ref))
    pts = check_points(points, k=len(ref)) * sign
    ref_min = ref * sign
    if require_dominated:
        bad = ~(pts < ref_min).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            j = int(np.flatnonzero(~(pts[i] < ref_min))[0])
            raise InvalidArgumentError(
                f"reference {ref.tolist()} is not dominated by point {i} ({(pts[i] * sign).tolist()}): objective {j} "
                f"must be strictly {'above' if sign[j] < 0 else 'below'} {ref[j]:g}; "
                f"{int(bad.sum())} point(s) do not dominate it (choose a worse reference, e.g. reference_point())")
    inside = (pts < ref_min).all(axis=1)
    if not inside.any():
        return 0.0
    return float(_moocore().hypervolume(pts[inside], ref=ref_min))


def hypervolume_regret(found: Any, *, front: Any, reference: Any, directions: Any = "min") -> float:
    """The true front's hypervolume minus that of the ``found`` points (same reference and directions).

    0 when the search found the front (or a set as good); the front's hypervolume when it found nothing
    inside the reference. Negative only if ``found`` beats ``front``: then they were not read from the same
    values (e.g. single-seed evaluations against a seed-mean front).
    """
    ref = _reference(reference)
    found_pts = check_points(found, k=len(ref), name="found")
    front_pts = check_points(front, k=len(ref), name="front")
    return hypervolume(front_pts, reference=ref, directions=directions) - hypervolume(
        found_pts, reference=ref, directions=directions)


def reference_point(points: Any, *, directions: Any = "min", margin: float = 0.1) -> np.ndarray:
    """A stated reference: each objective's worst value in ``points`` pushed ``margin`` x its range further out.

    Objectives with no spread are pushed by ``margin`` x ``max(|worst|, 1)``. Returns the point in the
    objectives' own units; report it next to every hypervolume computed with it.
    """
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating)) \
            or not np.isfinite(margin) or margin < 0:
        raise InvalidArgumentError(f"margin must be a finite number >= 0, got {margin!r}")
    pts = check_points(points)
    if len(pts) == 0:
        raise InvalidArgumentError("reference_point needs at least one point")
    sign = _directions(directions, pts.shape[1])
    mins = pts * sign
    worst = mins.max(axis=0)
    spread = worst - mins.min(axis=0)
    push = np.where(spread > 0, spread, np.maximum(np.abs(worst), 1.0)) * float(margin)
    return (worst + push) * sign


# ---------------------------------------------------------------------------------------------- true front
class ParetoFront(NamedTuple):
    """The non-dominated models of a store: model indices and their objective values (own units), best first."""

    indices: np.ndarray  # int64 [m] model indices
    values: np.ndarray  # float64 [m, k] objective values in the objectives' units and directions
    objectives: tuple[Objective, ...]


def true_front(store: BloxStore, objectives: Any, *, seed: int | str = "mean", run: str | None = None) -> ParetoFront:
    """The Pareto front of every model of ``store`` for ``objectives`` (specs or Objectives, see parse_objectives).

    Values are read by :func:`~blox_env.objectives.objective_matrix` (``seed`` label or ``"mean"``); models with
    a missing value are left out. Duplicated objective vectors all stay on the front. Sorted by the first
    objective, best first (ties by the next ones).
    """
    objs = parse_objectives(objectives, store=store, run=run)
    mins = objective_matrix(store, objs, seed=seed, run=run)
    ok = np.isfinite(mins).all(axis=1)
    if not ok.any():
        raise InvalidArgumentError(f"no model of store {store.name!r} has values for all of "
                                   f"{', '.join(map(str, objs))}")
    idx = np.asarray(store.index, dtype=np.int64)[ok]
    mins = mins[ok]
    keep = nondominated(mins, directions="min")
    idx, mins = idx[keep], mins[keep]
    order = np.lexsort(mins.T[::-1])
    sign = _directions(objs, len(objs))
    return ParetoFront(idx[order], mins[order] * sign, objs)
