"""The BLOX paper's blockwise search strategies, on one cost ledger, as harness options.

- :func:`two_stage_search` ("FT-short + FT-full", the paper's FT10 + FT200): an agent searches with
  short fine-tuning until ``search_fraction`` of the budget is spent; then the ``top_k`` models by
  short-fine-tuned objective are fine-tuned fully, best first, until the budget is spent. Only the
  full fine-tunes are eligible as the answer (``select``).
- :func:`iterative_teacher_search`: an agent searches with a starting teacher (fine-tuned objective)
  until ``search_fraction`` of the budget is spent; the top ``candidates`` are trained normally; the
  best normally trained model becomes the new teacher if it beats the current one, the searched
  pool's top ``refine`` models are fine-tuned with it and re-ranked, and the next candidates are
  trained normally; this repeats until the best model stops improving, ``max_rounds`` or the
  budget. Only normal trainings are eligible as the answer.

Both take reward backends: tabular blockwise tables make them run at tabular speed, live backends
run them for real. All phases share one :class:`~blox_env.runs.SearchRun` (one budget, one trace),
so a teacher's training and each of its blocks' distillation are charged once per run whichever
backend uses them. Trace records carry ``phase`` codes (:data:`PHASES`) and ``teacher``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from blox_env.agents.loop import run_search
from blox_env.errors import InvalidArgumentError
from blox_env.rewards.base import RewardBackend
from blox_env.runs import SearchRun
from blox_env.space import Arch

__all__ = ["PHASES", "STRATEGIES", "iterative_teacher_search", "two_stage_search"]

PHASES = {"search": 0, "full": 1, "normal": 2, "refine": 3}
STRATEGIES = ("plain", "two-stage", "iterative")


def _fraction(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise InvalidArgumentError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def _count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _ranked(trace: list[dict[str, Any]], phases: tuple[int, ...], teacher: int | None = None) -> list[int]:
    """Model indices of the records of ``phases`` (and ``teacher``), best objective first, each once."""
    best: dict[int, float] = {}
    for r in trace:
        if r["phase"] in phases and (teacher is None or r["teacher"] == teacher) and np.isfinite(r["objective"]):
            best[r["arch_index"]] = max(best.get(r["arch_index"], -np.inf), r["objective"])
    return [i for i, _ in sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))]


def _evaluate(run: SearchRun, backend: RewardBackend, index: int, *, key: Hashable,
              fields: dict[str, Any]) -> dict[str, Any] | None:
    """Evaluate one model at full fidelity unless the run's budget is spent; returns its trace row."""
    outcome = run.evaluate(backend, Arch.from_index(int(index)), None, key=key)
    return None if outcome is None else run.record(outcome, fields=fields)


def _teacher_index(backend: RewardBackend, default: int) -> int:
    """Model index of the backend's teacher (``default`` for backends without one)."""
    return backend.teacher.index if backend.teacher is not None else default


def two_stage_search(agent: Any, short_backend: RewardBackend, full_backend: RewardBackend, *, budget: float,
                     cost_unit: str = "seconds", seed: int = 0, metric: str = "val_top1",
                     search_fraction: float = 0.5, top_k: int = 5) -> list[dict[str, Any]]:
    """FT-short search, then full fine-tuning of the ranked top (see the module docstring)."""
    fraction, top_k = _fraction(search_fraction, "search_fraction"), _count(top_k, "top_k")
    run = SearchRun(budget=budget, cost_unit=cost_unit, metric=metric, seed=seed)
    teacher = _teacher_index(short_backend, -1)
    run_search(agent, short_backend, budget=budget, cost_unit=cost_unit, seed=seed, metric=metric, run=run,
               stop_at=budget * fraction, key="short",
               fields={"phase": PHASES["search"], "select": False, "teacher": teacher})
    for index in _ranked(run.trace, (PHASES["search"],))[:top_k]:
        if _evaluate(run, full_backend, index, key="full",
                     fields={"phase": PHASES["full"], "select": True, "teacher": teacher}) is None:
            break
    return run.trace


def iterative_teacher_search(make_agent: Callable[[int], Any], backend_for: Callable[[Arch], RewardBackend],
                             normal_backend: RewardBackend, *, start_teacher: Arch, budget: float,
                             cost_unit: str = "seconds", seed: int = 0, metric: str = "val_top1",
                             search_fraction: float = 0.5, candidates: int = 3, refine: int = 10,
                             max_rounds: int = 4) -> list[dict[str, Any]]:
    """Search with a teacher, promote the best normally trained candidate to teacher, repeat (module docstring).

    ``backend_for(arch)`` returns the blockwise backend of a teacher; for tabular tables it may map the
    arch to the nearest tabulated teacher (its ``teacher`` attribute then says which one is used).
    """
    fraction = _fraction(search_fraction, "search_fraction")
    candidates, refine, max_rounds = (_count(candidates, "candidates"), _count(refine, "refine"),
                                      _count(max_rounds, "max_rounds"))
    run = SearchRun(budget=budget, cost_unit=cost_unit, metric=metric, seed=seed)
    backend = backend_for(start_teacher)
    teacher = _teacher_index(backend, start_teacher.index)
    run_search(make_agent(seed), backend, budget=budget, cost_unit=cost_unit, seed=seed, metric=metric, run=run,
               stop_at=budget * fraction, key=("ft", teacher),
               fields={"phase": PHASES["search"], "select": False, "teacher": teacher})
    teacher_value = float(normal_backend.evaluate(Arch.from_index(teacher), None, cost_unit=cost_unit,
                                                  rng=run.rng).metrics[metric])  # a given model: not charged
    pool = _ranked(run.trace, (PHASES["search"],))[:refine]
    ranking = pool
    trained: set[int] = set()
    for _round in range(max_rounds):
        for index in [i for i in ranking if i not in trained][:candidates]:
            trained.add(index)
            if _evaluate(run, normal_backend, index, key="normal",
                         fields={"phase": PHASES["normal"], "select": True, "teacher": teacher}) is None:
                return run.trace
        best = _ranked(run.trace, (PHASES["normal"],))
        best_value = max(r["objective"] for r in run.trace if r["phase"] == PHASES["normal"] and
                         r["arch_index"] == best[0]) if best else -np.inf
        if not best or not best_value > teacher_value:
            break
        new_backend = backend_for(Arch.from_index(best[0]))
        new_teacher = _teacher_index(new_backend, best[0])
        teacher_value = best_value
        if new_teacher == teacher:  # the tables offer no closer teacher: nothing new to learn
            break
        teacher, backend = new_teacher, new_backend
        for index in pool:
            if _evaluate(run, backend, index, key=("ft", teacher),
                         fields={"phase": PHASES["refine"], "select": False, "teacher": teacher}) is None:
                return run.trace
        ranking = _ranked(run.trace, (PHASES["refine"],), teacher=teacher)
    return run.trace
