"""The BLOX paper's blockwise search strategies, on one cost ledger, as harness options.

- :func:`two_stage_search` ("FT-short + FT-full", the paper's FT10 + FT200): an agent searches with
  short fine-tuning until ``search_fraction`` of the budget is spent (the paper starts the full
  fine-tuning at cost 30 of 40: 0.75); then the searched models are fully fine-tuned down their
  short-fine-tuned ranking until the budget is spent or a fully fine-tuned model's objective reaches
  ``target``. The full fine-tuning may use another teacher than the search (the paper's "retrained
  with M1" row). Only full fine-tunes are eligible as the answer (``select``).
- :func:`iterative_teacher_search` (the paper's "FT10 + FT200 iterative", its steps 1-5): 1) an agent
  searches with short fine-tuning and the given teacher until ``search_fraction`` of the budget (30 of
  40); 2) the search stops and its top ``top_k`` models (by short-fine-tuned objective) are the
  candidates; 3) the candidates are trained normally (charged their normal training from the normal
  tables) and the best by validation accuracy becomes the teacher; 4) the candidates are fully
  fine-tuned with that teacher (its blocks distilled first, charged on first use, its training already
  paid in step 3) and the best becomes the next teacher; 5) step 4 repeats while the best validation
  accuracy among the candidates rises (step 3's normal value is the first reference) and budget
  remains. Normally trained and fine-tuned candidates are both answers (``select``), scored by their
  own test accuracy; rows say which (``score``).

Both take reward backends: tabular blockwise tables make them run at tabular speed, live backends
run them for real. All phases share one :class:`~blox_env.runs.SearchRun` (one budget, one trace),
so a teacher's training and each of its blocks' distillation are charged once per run whichever
backend uses them. Trace records carry ``phase`` codes (:data:`PHASES`), ``teacher`` (the model whose
blocks the evaluation used; -1 for normal trainings) and, for the iterative teacher, ``paper_step``,
``round``, ``score`` and ``promoted`` (the model the strategy promoted; it differs from ``teacher`` when
the backends could only approximate it by a tabulated teacher, see
:class:`~blox_env.rewards.blockwise.TeacherBackends`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from blox_env.agents.loop import run_search
from blox_env.errors import InvalidArgumentError
from blox_env.rewards.base import RewardBackend
from blox_env.rewards.blockwise import TeacherBackends, TeacherPair
from blox_env.runs import SearchRun
from blox_env.space import Arch

__all__ = ["PHASES", "STRATEGIES", "TOP_K", "iterative_teacher_search", "two_stage_search"]

PHASES = {"search": 0, "full": 1, "normal": 2}
#: Candidates the iterative teacher trains normally and fine-tunes (the paper does not state its k).
TOP_K = 3
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


def _normal_backend(teachers: Any, metric: str) -> RewardBackend:
    """Normal training of any model, from the normal tables the blockwise tables' teachers came from."""
    if not isinstance(teachers, TeacherBackends):
        raise InvalidArgumentError("the iterative teacher trains candidates normally (step 3): pass normal= (a "
                                   "backend of normal training) or teachers with blockwise tables (TeacherBackends)")
    from blox_env.rewards.tabular import TabularReward

    return TabularReward(teachers.store, metric=metric, run=teachers.tables.normal_run, seed_mode="random")


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row of best objective (ties: the lower model index)."""
    return max(rows, key=lambda r: (r["objective"], -r["arch_index"]))


def iterative_teacher_search(make_agent: Callable[[int, RewardBackend], Any],
                             teachers: Callable[[Arch], TeacherPair], *, start_teacher: Arch, budget: float,
                             cost_unit: str = "seconds", seed: int = 0, metric: str = "val_top1",
                             search_fraction: float = 0.75, top_k: int = TOP_K, rounds: int | None = None,
                             target: float | None = None, normal: RewardBackend | None = None) -> list[dict[str, Any]]:
    """The paper's iterative teacher, steps 1-5 (module docstring), on one run: returns its trace.

    ``make_agent(seed, short_backend)`` makes step 1's agent; ``teachers(arch)`` gives the short and full
    fine-tuning backends of a teacher; ``normal`` trains a model normally (default: the tables' normal run,
    one seed drawn per training). ``top_k`` candidates (default :data:`TOP_K`); ``rounds`` caps the step-4
    rounds (None: until the best candidate's validation accuracy stops rising or the budget is spent);
    ``target`` stops once an answer's objective reaches it. Rows carry ``paper_step`` (1, 3 or 4), ``round``
    (0 for steps 1 and 3, then 1, 2, ... for step 4), ``teacher`` (-1 for normal trainings), ``promoted`` and,
    for eligible answers, ``score`` ("normal": a candidate trained normally, scored by its normal test
    accuracy; "fine-tuned": scored by its fine-tuned test accuracy).
    """
    fraction = _fraction(search_fraction, "search_fraction")
    top_k, target = _count(top_k, "top_k"), _target(target)
    rounds = _count(rounds, "rounds", optional=True)
    normal = normal if normal is not None else _normal_backend(teachers, metric)
    run = SearchRun(budget=budget, cost_unit=cost_unit, metric=metric, seed=seed)
    promoted = start_teacher.index
    pair = teachers(start_teacher)

    def reached(row: dict[str, Any] | None) -> bool:
        return row is not None and target is not None and row["objective"] >= target

    # step 1: search with the short fine-tune and the given teacher up to the switch point
    run_search(make_agent(seed, pair.short), pair.short, budget=budget, cost_unit=cost_unit, seed=seed,
               metric=metric, run=run, stop_at=budget * fraction, key=("short", pair.teacher),
               fields={"phase": PHASES["search"], "paper_step": 1, "select": False, "teacher": pair.teacher,
                       "round": 0, "promoted": promoted})
    # step 2: stop, the candidates are the top k of the search
    candidates = ranked(run.trace, (PHASES["search"],))[:top_k]
    # step 3: train the candidates normally (charged from the normal tables), promote the best by validation
    rows: list[dict[str, Any]] = []
    for index in candidates:
        row = _evaluate(run, normal, index, key="normal",
                        fields={"phase": PHASES["normal"], "paper_step": 3, "select": True, "score": "normal",
                                "teacher": -1, "round": 0, "promoted": promoted})
        if row is None:
            return run.trace
        run.shared.commit([("teacher", index)])  # trained: as a teacher it is never charged again this run
        rows.append(row)
        if reached(row):
            return run.trace
    if not rows:
        return run.trace
    best = _best(rows)
    promoted, best_value = best["arch_index"], best["objective"]
    done: set[tuple[int, int]] = set()
    r = 1
    # steps 4-5: fine-tune the candidates with the promoted teacher, promote the best, while it improves
    while not run.exhausted and (rounds is None or r <= rounds):
        pair = teachers(Arch.from_index(promoted))
        fields = {"phase": PHASES["full"], "paper_step": 4, "select": True, "score": "fine-tuned",
                  "teacher": pair.teacher, "round": r, "promoted": promoted}
        rows = []
        for index in candidates:
            if (pair.teacher, index) in done:
                continue  # a stand-in teacher met again: these fine-tunes are in the trace already
            row = _evaluate(run, pair.full, index, key=("full", pair.teacher), fields=fields)
            if row is None:
                break
            done.add((pair.teacher, index))
            rows.append(row)
            if reached(row):
                return run.trace
        if not rows:
            break
        best = _best(rows)
        if not best["objective"] > best_value:
            break  # step 5: no further improvement
        promoted, best_value = best["arch_index"], best["objective"]
        r += 1
    return run.trace
