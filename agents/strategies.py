"""The BLOX paper's blockwise search strategies, on one cost ledger, as harness options.

- :func:`two_stage_search` ("FT-short + FT-full", the paper's FT10 + FT200): an agent searches with
  short fine-tuning until ``search_fraction`` of the budget is spent (the paper starts the full
  fine-tuning at cost 30 of 40: 0.75); then the searched models are fully fine-tuned down their
  short-fine-tuned ranking until the budget is spent or a fully fine-tuned model's objective reaches
  ``target``. The full fine-tuning may use another teacher than the search (the paper's "retrained
  with M1" row). Only full fine-tunes are eligible as the answer (``select``).
- :func:`iterative_teacher_search` (the paper's "FT10 + FT200 iterative"): in each of ``rounds``
  rounds an agent searches with short fine-tuning under the current teacher, the round's ``top_k``
  are fully fine-tuned, and the best fully fine-tuned model found so far becomes the next teacher (its
  blocks are distilled anew, charged to the run). The last round then fine-tunes fully down its ranking
  as FT-short + FT-full does. Only full fine-tunes are eligible as the answer.

Both take reward backends: tabular blockwise tables make them run at tabular speed, live backends
run them for real. All phases share one :class:`~blox_env.runs.SearchRun` (one budget, one trace),
so a teacher's training and each of its blocks' distillation are charged once per run whichever
backend uses them. Trace records carry ``phase`` codes (:data:`PHASES`), ``teacher`` (the model whose
blocks the evaluation used) and, for the iterative teacher, ``round`` and ``promoted`` (the model the
strategy promoted; it differs from ``teacher`` when the backends could only approximate it by a
tabulated teacher, see :class:`~blox_env.rewards.blockwise.TeacherBackends`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from blox_env.agents.loop import run_search
from blox_env.errors import InvalidArgumentError
from blox_env.rewards.base import RewardBackend
from blox_env.rewards.blockwise import TeacherPair
from blox_env.runs import SearchRun
from blox_env.space import Arch

__all__ = ["PHASES", "STRATEGIES", "iterative_teacher_search", "two_stage_search"]

PHASES = {"search": 0, "full": 1}
STRATEGIES = ("plain", "two-stage", "iterative")


def _fraction(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise InvalidArgumentError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def _count(value: int | None, name: str, *, optional: bool = False) -> int | None:
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgumentError(f"{name} must be an integer >= 1{' or None' if optional else ''}, got {value!r}")
    return int(value)


def _target(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise InvalidArgumentError(f"target must be a finite number or None, got {value!r}")
    return float(value)


def ranked(trace: list[dict[str, Any]], phases: tuple[int, ...], *, since: int = 0) -> list[int]:
    """Model indices of the records of ``phases`` (from record ``since`` on), best objective first, each once."""
    best: dict[int, float] = {}
    for r in trace[since:]:
        if r["phase"] in phases and np.isfinite(r["objective"]):
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


def _fine_tune_down(run: SearchRun, backend: RewardBackend, ranking: list[int], *, limit: int | None,
                    target: float | None, fields: dict[str, Any], done: set[tuple[int, int]]) -> str:
    """Fully fine-tune ``ranking`` in order (at most ``limit``; models already done with this teacher skipped).

    Returns why it stopped: ``"budget"``, ``"target"`` (a fine-tune's objective reached ``target``) or
    ``"ranking"`` (nothing left to fine-tune)."""
    teacher = _teacher_index(backend, -1)
    todo = [i for i in ranking if (teacher, i) not in done]
    for index in todo[:limit]:
        row = _evaluate(run, backend, index, key=("full", teacher), fields=fields)
        if row is None:
            return "budget"
        done.add((teacher, index))
        if target is not None and row["objective"] >= target:
            return "target"
        if run.exhausted:
            return "budget"
    return "ranking"


def two_stage_search(agent: Any, short_backend: RewardBackend, full_backend: RewardBackend, *, budget: float,
                     cost_unit: str = "seconds", seed: int = 0, metric: str = "val_top1",
                     search_fraction: float = 0.75, top_k: int | None = None,
                     target: float | None = None) -> list[dict[str, Any]]:
    """FT-short search, then full fine-tuning down the ranking to the budget or ``target`` (module docstring).

    ``top_k`` caps the number of full fine-tunes (None: down the whole ranking); ``target`` is on the
    objective ``metric`` of the full fine-tunes (e.g. their validation top-1).
    """
    fraction = _fraction(search_fraction, "search_fraction")
    top_k, target = _count(top_k, "top_k", optional=True), _target(target)
    run = SearchRun(budget=budget, cost_unit=cost_unit, metric=metric, seed=seed)
    teacher = _teacher_index(short_backend, -1)
    run_search(agent, short_backend, budget=budget, cost_unit=cost_unit, seed=seed, metric=metric, run=run,
               stop_at=budget * fraction, key=("short", teacher),
               fields={"phase": PHASES["search"], "select": False, "teacher": teacher})
    _fine_tune_down(run, full_backend, ranked(run.trace, (PHASES["search"],)), limit=top_k, target=target,
                    fields={"phase": PHASES["full"], "select": True, "teacher": _teacher_index(full_backend, -1)},
                    done=set())
    return run.trace


def iterative_teacher_search(make_agent: Callable[[int, RewardBackend], Any],
                             teachers: Callable[[Arch], TeacherPair], *, start_teacher: Arch, budget: float,
                             cost_unit: str = "seconds", seed: int = 0, metric: str = "val_top1",
                             search_fraction: float = 0.75, rounds: int = 3, top_k: int = 3,
                             target: float | None = None) -> list[dict[str, Any]]:
    """Search, fully fine-tune the top, promote the best fine-tuned model to teacher, repeat (module docstring).

    ``make_agent(seed, short_backend)`` makes each round's agent; ``teachers(arch)`` gives the short and full
    fine-tuning backends of a teacher. Round ``r`` searches until ``search_fraction * budget * (r + 1) /
    rounds`` is spent. A promotion happens only when the best fine-tuned model has not been a teacher yet.
    """
    fraction = _fraction(search_fraction, "search_fraction")
    rounds, top_k, target = _count(rounds, "rounds"), _count(top_k, "top_k"), _target(target)
    run = SearchRun(budget=budget, cost_unit=cost_unit, metric=metric, seed=seed)
    promoted = start_teacher.index
    pair = teachers(start_teacher)
    used = {promoted}
    done: set[tuple[int, int]] = set()
    for r in range(rounds):
        fields = {"select": False, "teacher": pair.teacher, "round": r, "promoted": promoted}
        start = len(run.trace)
        run_search(make_agent(seed + r, pair.short), pair.short, budget=budget, cost_unit=cost_unit,
                   seed=seed + r, metric=metric, run=run, stop_at=budget * fraction * (r + 1) / rounds,
                   key=("short", pair.teacher), fields={**fields, "phase": PHASES["search"]})
        ranking = ranked(run.trace, (PHASES["search"],), since=start)
        last = r == rounds - 1
        why = _fine_tune_down(run, pair.full, ranking, limit=None if last else top_k, target=target,
                              fields={**fields, "phase": PHASES["full"], "select": True}, done=done)
        if why != "ranking" or last or run.exhausted:
            break
        best = ranked(run.trace, (PHASES["full"],))
        if not best or best[0] in used:
            continue  # nothing new to learn from: search again with the same teacher
        promoted = best[0]
        used.add(promoted)
        pair = teachers(Arch.from_index(promoted))
    return run.trace
