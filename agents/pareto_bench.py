"""Multi-objective summaries of search traces: hypervolume at each budget, cost to a fraction of the true front.

A search has *found* the models it evaluated (records with ``select`` true at the highest fidelity it
used, the single-objective rule of :func:`~blox_env.agents.summary.answers`). Each found model is
scored by its **seed-mean** values of the objectives as stated (:func:`~blox_env.objectives.objective_matrix`,
``seed="mean"``), whatever single-seed values the search itself saw, so every agent is scored on the same
numbers as the true front (:func:`~blox_env.pareto.true_front`). Hypervolumes use one stated reference
point (:func:`~blox_env.pareto.reference_point` of every model of the store: each objective's worst value
pushed out by 10 % of its range) and are reported as a fraction of the true front's hypervolume (1 = the
search found a set as good as the front). A found set's hypervolume never falls as the search goes on, so
the cost to reach a fraction is simply the first time it is reached. Budgets are read on the harness's
clock (total compute or simulated wall-clock: :func:`~blox_env.agents.summary.clock_values`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.agents.summary import clock_values, mean_se
from blox_env.errors import InvalidArgumentError
from blox_env.objectives import Objective, directions, objective_matrix, parse_objectives
from blox_env.pareto import ParetoFront, hypervolume, nondominated, reference_point, true_front

if TYPE_CHECKING:
    from blox_env.agents.harness import BenchSpec
    from blox_env.datasets.store.core import BloxStore

__all__ = ["FRACTIONS", "ParetoReference", "cost_to_fraction", "found_front", "hypervolume_trace",
           "pareto_reference", "summarise_pareto"]

#: Fractions of the true front's hypervolume whose cost to reach the reports give.
FRACTIONS = (0.9, 0.95, 0.99)


@dataclass(frozen=True)
class ParetoReference:
    """What multi-objective searches are scored against: every model's seed-mean values, the true front,
    the reference point and the front's hypervolume (all in the objectives' own units and directions)."""

    objectives: tuple[Objective, ...]
    index: np.ndarray  # int64 [N] model indices (rows of ``values``)
    values: np.ndarray  # float64 [N, k] seed-mean objective values, own units (NaN where missing)
    front: ParetoFront
    reference: np.ndarray  # float64 [k]
    front_hv: float

    @property
    def directions(self) -> tuple[str, ...]:
        """"max" / "min" per objective."""
        return directions(self.objectives)

    def rows(self, indices: Sequence[int]) -> np.ndarray:
        """Rows of ``values`` for model indices (InvalidArgumentError naming one the store lacks)."""
        pos = np.searchsorted(self.index, np.asarray(indices, dtype=np.int64))
        pos = np.minimum(pos, len(self.index) - 1)
        bad = self.index[pos] != np.asarray(indices, dtype=np.int64)
        if bad.any():
            raise InvalidArgumentError(f"model {int(np.asarray(indices)[bad][0])} is not in the benchmark the "
                                       "Pareto reference was made from")
        return pos


def pareto_reference(store: BloxStore, objectives: Any, *, margin: float = 0.1) -> ParetoReference:
    """The :class:`ParetoReference` of ``store`` for ``objectives`` (specs or Objectives, see parse_objectives)."""
    objs = parse_objectives(objectives, store=store)
    sign = np.array([-1.0 if o.maximise else 1.0 for o in objs])
    values = objective_matrix(store, objs, seed="mean") * sign  # back to own units
    index = np.asarray(store.index, dtype=np.int64)
    order = np.argsort(index)
    index, values = index[order], values[order]
    ok = np.isfinite(values).all(axis=1)
    front = true_front(store, objs)
    ref = reference_point(values[ok], directions=directions(objs), margin=margin)
    hv = hypervolume(front.values, reference=ref, directions=directions(objs))
    return ParetoReference(objs, index, values, front, ref, hv)


def _found_rows(trace: Sequence[dict[str, Any]]) -> list[int]:
    """Positions of the records that add a found model (select true, highest fidelity, first time)."""
    eligible = [r for r in trace if r.get("select", True)]
    full = max((r["fidelity"] for r in eligible), default=0)
    seen: set[int] = set()
    rows = []
    for i, r in enumerate(trace):
        if r.get("select", True) and r["fidelity"] == full and r["arch_index"] not in seen:
            seen.add(r["arch_index"])
            rows.append(i)
    return rows


def hypervolume_trace(trace: Sequence[dict[str, Any]], ref: ParetoReference) -> np.ndarray:
    """The found set's hypervolume after each record, as a fraction of the true front's (0 before any)."""
    out = np.zeros(len(trace))
    if not trace or ref.front_hv <= 0:
        return out
    found = _found_rows(trace)
    pos = ref.rows([trace[i]["arch_index"] for i in found])
    pts = ref.values[pos]
    dirs = ref.directions
    current, last = 0.0, 0
    kept = np.zeros((0, pts.shape[1]))
    for j, i in enumerate(found):
        out[last:i] = current
        p = pts[j:j + 1]
        if np.isfinite(p).all():
            cand = np.vstack([kept, p])
            keep = nondominated(cand, directions=dirs)
            if keep[-1]:  # the new point is on the found front: it can only add hypervolume
                kept = cand[keep]
                current = hypervolume(kept, reference=ref.reference, directions=dirs) / ref.front_hv
        last = i
    out[last:] = current
    return out


def found_front(trace: Sequence[dict[str, Any]], ref: ParetoReference) -> np.ndarray:
    """The non-dominated seed-mean values ``[m, k]`` (own units) of the models a search found."""
    pos = ref.rows([trace[i]["arch_index"] for i in _found_rows(trace)])
    pts = ref.values[pos]
    pts = pts[np.isfinite(pts).all(axis=1)]
    return pts[nondominated(pts, directions=ref.directions)] if len(pts) else pts


def hv_at_each(trace: Sequence[dict[str, Any]], budgets: Sequence[float], ref: ParetoReference, *,
               clock: str = "cumulative_cost", hv: np.ndarray | None = None) -> np.ndarray:
    """Hypervolume fraction of the models found within each budget (the record crossing it counts, as for
    single-objective answers); ``hv`` is :func:`hypervolume_trace` when already computed."""
    if not trace:
        return np.zeros(len(budgets))
    hv = hypervolume_trace(trace, ref) if hv is None else hv
    times = clock_values(trace, clock)
    cut = np.minimum(np.searchsorted(times, np.asarray(budgets, dtype=np.float64), side="left"), len(trace) - 1)
    return hv[cut]


def cost_to_fraction(trace: Sequence[dict[str, Any]], fraction: float, ref: ParetoReference, *,
                     clock: str = "cumulative_cost", hv: np.ndarray | None = None) -> float:
    """When, on ``clock``, the found set first reaches ``fraction`` of the front's hypervolume (inf: never)."""
    if not 0 < fraction <= 1:
        raise InvalidArgumentError(f"fraction must be in (0, 1], got {fraction!r}")
    if not trace:
        return float("inf")
    hv = hypervolume_trace(trace, ref) if hv is None else hv
    hit = np.flatnonzero(hv >= fraction - 1e-12)
    return float(clock_values(trace, clock)[hit[0]]) if len(hit) else float("inf")


def summarise_pareto(traces: dict[tuple[str, int], list[dict[str, Any]]], *, spec: BenchSpec,
                     ref: ParetoReference, fractions: Sequence[float] = FRACTIONS) -> list[dict[str, Any]]:
    """One row per agent: hypervolume fraction at each budget (mean ± standard error over seeds), the median
    cost to each fraction of the front's hypervolume (and how many seeds reached it), evaluations, and the
    found front of the seed with the median final hypervolume (``front``, for the plot)."""
    rows = []
    for agent in spec.search.agents:
        seeds = [s for s in range(spec.search.seeds) if (agent, s) in traces]
        runs = [traces[(agent, s)] for s in seeds]
        hvs = [hypervolume_trace(t, ref) for t in runs]
        row: dict[str, Any] = {"agent": agent, "seeds": len(runs)}
        budgets, clock = spec.budget.budgets, spec.budget.clock
        at = np.array([hv_at_each(t, budgets, ref, clock=clock, hv=h) for t, h in zip(runs, hvs)])
        at = at.reshape(len(runs), len(spec.budget.budgets))
        for j, b in enumerate(spec.budget.budgets):
            row[f"hv@{b:g}"], _ = mean_se(at[:, j])
        for f in fractions:
            reach = [cost_to_fraction(t, f, ref, clock=spec.budget.clock, hv=h) for t, h in zip(runs, hvs)]
            row[f"cost_to_hv{f:g}_median"] = float(np.median(reach)) if reach else float("inf")
            row[f"reached_hv{f:g}"] = int(np.isfinite(reach).sum())
        row["evaluations_mean"] = float(np.mean([len(t) for t in runs])) if runs else 0.0
        if runs:
            final = np.array([h[-1] if len(h) else 0.0 for h in hvs])
            median_run = int(np.argsort(final)[len(final) // 2])
            row["front"] = found_front(runs[median_run], ref)
            row["front_seed"] = seeds[median_run]
        rows.append(row)
    return rows
