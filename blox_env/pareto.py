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

Bounded work: exact hypervolume is O(n log n) in 2-D and 3-D but grows exponentially with the number of
objectives beyond (100 points in 10 objectives ran past a minute inside moocore's C code, where Ctrl-C is
not seen). :data:`EXACT_MAX_POINTS` states, per number of objectives k >= 4, how many points (those inside
the reference) are computed exactly in this process (each under about a second here). Above it,
``method="auto"`` (the default) refuses with an error that names the two ways on:
``method="monte-carlo"``, a seeded Monte Carlo estimate whose standard error
:func:`hypervolume_estimate` states (numpy in chunks: interruptible, memory bounded), or
``method="exact"``, the exact value computed in a separate process while this one waits interruptibly
(Ctrl-C or ``timeout`` ends the worker).

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

__all__ = ["EXACT_MAX_OBJECTIVES", "EXACT_MAX_POINTS", "HV_METHODS", "HypervolumeEstimate", "ParetoFront",
           "check_points", "exact_limit", "hypervolume", "hypervolume_estimate", "hypervolume_regret", "nondominated",
           "pareto_ranks", "reference_point", "true_front"]

#: Most points (inside the reference) whose hypervolume is computed exactly in this process, by number of
#: objectives k (the entry of the largest key <= k); 1-3 objectives have no limit (O(n log n)). Sized so that
#: the worst fronts measured (points on a simplex or a sphere) take about a second or less.
EXACT_MAX_POINTS: dict[int, int] = {4: 10_000, 5: 4_000, 6: 500, 7: 150, 8: 80, 9: 50, 10: 35, 11: 25, 12: 20,
                                    13: 15, 17: 12}
#: moocore's exact hypervolume takes at most this many objectives; beyond it only Monte Carlo is available.
EXACT_MAX_OBJECTIVES = 31
#: ``method=`` values of :func:`hypervolume` and :func:`hypervolume_estimate`.
HV_METHODS = ("auto", "exact", "monte-carlo")
#: Monte Carlo samples by default: a relative standard error of at most sqrt((1 - p) / (p * 1e5)) for a
#: dominated fraction p of the sampled box.
DEFAULT_SAMPLES = 100_000


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


def exact_limit(k: int) -> int | None:
    """Most points computed exactly in this process for ``k`` objectives (None: no limit, k <= 3)."""
    if k <= 3:
        return None
    return EXACT_MAX_POINTS[max(key for key in EXACT_MAX_POINTS if key <= k)]


class HypervolumeEstimate(NamedTuple):
    """A hypervolume and its stated error: ``stderr`` is 0 for an exact value, the Monte Carlo standard error
    (box volume x sqrt(p (1 - p) / samples), p the dominated fraction of the samples) for an estimate."""

    value: float
    stderr: float
    method: str  # "exact" | "monte-carlo"
    n_points: int  # points inside the reference (the others add nothing)
    samples: int  # Monte Carlo samples (0 for exact)
    seed: int | None  # Monte Carlo seed (None for exact)


def _check_method(method: Any, samples: Any, seed: Any, timeout: Any) -> None:
    if not isinstance(method, str) or method not in HV_METHODS:
        raise InvalidArgumentError(f"method must be one of {', '.join(map(repr, HV_METHODS))}, got {method!r}")
    if isinstance(samples, (bool, np.bool_)) or not isinstance(samples, (int, np.integer)) \
            or not 1 <= int(samples) <= 100_000_000:
        raise InvalidArgumentError(f"samples must be an integer in 1..100000000 (Monte Carlo samples), got {samples!r}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise InvalidArgumentError(f"seed must be an integer in 0..2**63-1 (the Monte Carlo seed), got {seed!r}")
    if timeout is not None and (isinstance(timeout, (bool, np.bool_)) or not isinstance(timeout, (int, float))
                                or not np.isfinite(timeout) or timeout <= 0):
        raise InvalidArgumentError(f"timeout must be None or a finite number of seconds > 0, got {timeout!r}")


def hypervolume_estimate(points: Any, *, reference: Any, directions: Any = "min", require_dominated: bool = False,
                         method: str = "auto", samples: int = DEFAULT_SAMPLES, seed: int = 0,
                         timeout: float | None = None) -> HypervolumeEstimate:
    """Hypervolume of ``points`` bounded by ``reference`` with its stated error (see :class:`HypervolumeEstimate`).

    ``method="auto"``: exact up to :func:`exact_limit` points, refused above it (naming the other methods);
    ``"exact"``: exact, above the limit in a separate process (interruptible; ``timeout`` seconds at most,
    then :class:`TimeoutError`); ``"monte-carlo"``: ``samples`` uniform points of the box between the best
    values and the reference, drawn with ``seed`` (the same value for the same inputs).
    """
    _check_method(method, samples, seed, timeout)
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
    inside = pts[(pts < ref_min).all(axis=1)]
    n, k = inside.shape
    if method == "monte-carlo":
        value, stderr = _monte_carlo(inside, ref_min, samples=int(samples), seed=int(seed))
        return HypervolumeEstimate(value, stderr, "monte-carlo", n, int(samples), int(seed))
    exact = HypervolumeEstimate(0.0, 0.0, "exact", n, 0, None)
    if n == 0:
        return exact
    if k > EXACT_MAX_OBJECTIVES:
        raise InvalidArgumentError(f"points: exact hypervolume takes at most {EXACT_MAX_OBJECTIVES} objectives, got "
                                   f"{k}: pass method='monte-carlo' (hypervolume_estimate() states its standard error)")
    limit = exact_limit(k)
    if limit is None or n <= limit:
        return exact._replace(value=float(_moocore().hypervolume(inside, ref=ref_min)))
    if method == "auto":
        raise InvalidArgumentError(
            f"points: {n} points inside the reference in {k} objectives are more than the {limit} whose hypervolume "
            f"is computed exactly here (EXACT_MAX_POINTS; exact work grows exponentially with the objectives): pass "
            f"method='monte-carlo' for a seeded estimate (hypervolume_estimate() states its standard error) or "
            f"method='exact' to compute it in a separate, interruptible process (optionally with timeout=)")
    return exact._replace(value=_exact_in_subprocess(inside, ref_min, timeout=timeout))


def hypervolume(points: Any, *, reference: Any, directions: Any = "min", require_dominated: bool = False,
                method: str = "auto", samples: int = DEFAULT_SAMPLES, seed: int = 0,
                timeout: float | None = None) -> float:
    """Hypervolume of ``points`` bounded by ``reference`` (both in the objectives' own units and directions).

    Points that do not strictly dominate ``reference`` add nothing (see the module docstring);
    ``require_dominated=True`` raises for them instead. An empty set has hypervolume 0. ``method``,
    ``samples``, ``seed`` and ``timeout`` bound the work (see :func:`hypervolume_estimate`, which also
    states the error of a Monte Carlo value).
    """
    return hypervolume_estimate(points, reference=reference, directions=directions,
                                require_dominated=require_dominated, method=method, samples=samples, seed=seed,
                                timeout=timeout).value


def _monte_carlo(pts: np.ndarray, ref: np.ndarray, *, samples: int, seed: int) -> tuple[float, float]:
    """(estimate, standard error) of the minimisation hypervolume of ``pts`` (all inside ``ref``)."""
    if len(pts) == 0:
        return 0.0, 0.0
    lo = pts.min(axis=0)
    width = ref - lo
    volume = float(np.prod(width))
    rng = np.random.default_rng(seed)
    n, k = pts.shape
    chunk = max(1, 4_000_000 // (n * k))  # about 4 MB of comparisons per step; each step returns to Python
    hits = 0
    for start in range(0, samples, chunk):
        m = min(chunk, samples - start)
        x = lo + rng.random((m, k)) * width
        hits += int((pts[None, :, :] <= x[:, None, :]).all(axis=2).any(axis=1).sum())
    p = hits / samples
    return volume * p, volume * float(np.sqrt(p * (1.0 - p) / samples))


def _exact_worker(conn: Any, pts: np.ndarray, ref: np.ndarray) -> None:
    """Child process: the exact hypervolume (or the error) sent back through ``conn``."""
    try:
        conn.send(("ok", float(_moocore().hypervolume(pts, ref=ref))))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _exact_in_subprocess(pts: np.ndarray, ref: np.ndarray, *, timeout: float | None) -> float:
    """The exact hypervolume computed in a spawned process; this one waits in short, interruptible polls."""
    import multiprocessing as mp
    import time

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_exact_worker, args=(child, pts, ref), daemon=True, name="blox-hypervolume")
    proc.start()
    child.close()
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    try:
        while not parent.poll(0.05):
            if not proc.is_alive() and not parent.poll(0):
                raise RuntimeError(f"the hypervolume worker process ended without a result (exit code "
                                   f"{proc.exitcode})")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the exact hypervolume of {len(pts)} points in {pts.shape[1]} objectives took "
                                   f"more than timeout={timeout!r} s; the worker was stopped (use "
                                   f"method='monte-carlo' for an estimate with a stated standard error)")
        status, value = parent.recv()
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=5)
        parent.close()
    if status != "ok":
        raise RuntimeError(f"the hypervolume worker process failed: {value}")
    return float(value)


def hypervolume_regret(found: Any, *, front: Any, reference: Any, directions: Any = "min", method: str = "auto",
                       samples: int = DEFAULT_SAMPLES, seed: int = 0, timeout: float | None = None) -> float:
    """The true front's hypervolume minus that of the ``found`` points (same reference and directions).

    0 when the search found the front (or a set as good); the front's hypervolume when it found nothing
    inside the reference. Negative only if ``found`` beats ``front``: then they were not read from the same
    values (e.g. single-seed evaluations against a seed-mean front). ``method``, ``samples``, ``seed`` and
    ``timeout`` as :func:`hypervolume` (both sets use the same ones).
    """
    ref = _reference(reference)
    found_pts = check_points(found, k=len(ref), name="found")
    front_pts = check_points(front, k=len(ref), name="front")
    kw: dict[str, Any] = {"reference": ref, "directions": directions, "method": method, "samples": samples,
                          "seed": seed, "timeout": timeout}
    return hypervolume(front_pts, **kw) - hypervolume(found_pts, **kw)


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
