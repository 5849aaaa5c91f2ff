"""Simulated parallel workers: one search, N workers on a simulated clock, async or sync.

No process runs in parallel: evaluations are still looked up (or trained) one after another,
but each occupies a simulated worker for its recorded cost, so the trace says when each result
would have been known with N workers. Every evaluation is charged through one
:class:`~blox_env.runs.SearchRun` (the budget rule of :mod:`blox_env.runs`: repeats free unless
``charge_repeats``, shared blockwise work charged once per run); cost units are the run's
``cost_unit``, and so are all clock times.

- ``mode="async"``: whenever a worker frees, the agent is told its result and asked for the
  next model (workers freeing at the same instant: all results are told, then each free worker
  gets a model, lowest worker id first).
- ``mode="sync"``: the agent is asked for a batch of ``workers`` models, all start together,
  and the next batch starts when the last of them has finished (results told in completion order).
- Pending evaluations: before every ask, the agent's ``pending(archs)`` is given the models in
  flight. An agent whose asks do not wait for tells (``reaskable``: random search, regularized
  evolution) is asked again, up to 32 times, when it proposes a model in flight. A model asked while it
  is in flight (free repeats) waits for the running evaluation: a repeat reuses its result, a
  longer fidelity continues from its checkpoint.
  An agent with ``parallel_asks = False`` (:class:`~blox_env.agents.sb3_agent.SB3Agent`) can have
  only one evaluation outstanding: more than one worker is refused.
- Budgets, named by ``budget_kind``: ``"compute"`` is the total cost charged (the run's ledger
  budget: an evaluation starts only while the compute charged so far, in-flight evaluations
  included, is under the budget; the one that crosses it completes and counts); ``"wall"`` is
  the simulated wall-clock (an evaluation starts only before that instant). Either way the
  evaluations running when the budget is hit are not cut: they complete, are charged in full and
  count (their ``sim_wall_clock`` may lie beyond a wall budget, the total compute beyond a compute
  budget by up to the ``workers - 1`` evaluations then in flight).
- Blockwise once-per-run work (a teacher's training and each distilled block: a tabular backend's
  ``shared_work()``, costs in seconds) is
  charged once, to the evaluation that starts first, and runs on its worker before its fine-tuning:
  the teacher, then its new blocks. A worker whose model needs a teacher or block still in work on
  another worker waits until it is done (``sim_wait``). In epochs or evaluations, which count
  fine-tuning only, shared work takes no simulated time. Live backends charge shared work to the
  paying evaluation but are not modelled as blocking.

Trace rows are those of :meth:`SearchRun.record` in completion order, plus ``worker``,
``sim_start``, ``sim_end``, ``sim_wait`` (time blocked) and ``sim_wall_clock`` (= ``sim_end``, the
simulated wall-clock at which the result is known), with ``cumulative_cost`` the total compute of
the evaluations completed so far (the running sum of ``cost``) and ``compute_committed`` the
compute charged so far, in-flight evaluations included. ``wall_time_s`` remains the real seconds
the simulator took. :func:`anytime_curves` gives best-so-far against both clocks.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from blox_env.agents.base import check_agent, check_asked
from blox_env.agents.summary import answers
from blox_env.checks import check_budget, check_choice, check_real, check_seed
from blox_env.errors import InvalidArgumentError
from blox_env.rewards.base import RewardBackend
from blox_env.runs import FreeRepeatStop, Outcome, SearchRun
from blox_env.space import Arch

__all__ = ["BUDGET_KINDS", "MAX_SIM_WORKERS", "MODES", "AnytimeCurves", "Curve", "anytime_curves",
           "run_parallel_search"]

MODES = ("async", "sync")
BUDGET_KINDS = ("compute", "wall")
#: Simulated workers per search at most (each holds a slot of the event loop's heaps).
MAX_SIM_WORKERS = 4_096
#: Asks of a ``reaskable`` agent (one whose ask does not wait for a tell) to replace a proposal already in flight.
_REASK_TRIES = 32


@dataclass
class _Job:
    order: int  # start order (ties)
    worker: int
    arch: Arch
    outcome: Outcome
    start: float
    end: float
    wait: float

    def __lt__(self, other: _Job) -> bool:
        return (self.end, self.order) < (other.end, other.order)


class _Simulator:
    """The event loop of :func:`run_parallel_search` (one instance per search)."""

    def __init__(self, agent: Any, backend: RewardBackend, run: SearchRun, *, workers: int, compute_limit: float,
                 wall_limit: float | None, seed: int, max_evaluations: int, fields: Mapping[str, Any] | None,
                 key: Hashable) -> None:
        self.agent, self.backend, self.run = agent, backend, run
        self.workers, self.compute_limit, self.wall_limit = workers, compute_limit, wall_limit
        self.max_evaluations, self.fields, self.key = max_evaluations, dict(fields or {}), key
        self.rng = np.random.default_rng(seed)
        self.free_repeats = not run.ledger.charge_repeats
        self.stop = FreeRepeatStop(len(agent.feasible_indices()), free_repeats=self.free_repeats,
                                   max_fidelity=backend.max_fidelity)
        self.n = 0
        self.now = 0.0
        self.free = list(range(workers))  # heap of free worker ids
        self.running: list[_Job] = []  # heap by (end, order)
        self.done_at: dict[Hashable, float] = {}  # shared work key -> when it is done
        self.model_ready: dict[Hashable, float] = {}  # ledger key -> when its latest evaluation finishes
        self.completed = 0.0
        self.stopped = False
        # shared work takes simulated time in seconds, for tabular backends (whose times are known up front)
        self.work = backend.shared_work() if run.cost_unit == "seconds" and backend.tabular else None

    # ------------------------------------------------------------------ starting
    def can_start(self) -> bool:
        if self.stopped or self.n >= self.max_evaluations or self.run.spent >= self.compute_limit:
            return False
        if self.wall_limit is not None and self.now >= self.wall_limit:
            return False
        return not self.stop.done

    def ask(self) -> Arch:
        pending = tuple(job.arch for job in sorted(self.running, key=lambda j: j.order))
        self.agent.pending(pending)
        arch = check_asked(self.agent, self.agent.ask())
        if pending and self.agent.reaskable:
            busy = {a.index for a in pending}
            for _ in range(_REASK_TRIES):
                if arch.index not in busy:
                    break
                arch = check_asked(self.agent, self.agent.ask())
        return arch

    def start(self, worker: int) -> bool:
        """Ask, evaluate and schedule one model on ``worker``; False once the run refuses (budget spent)."""
        arch = self.ask()
        shared = self._shared_plan(arch)
        outcome = self.run.evaluate(self.backend, arch, self.agent.fidelity, rng=self.rng, key=self.key)
        if outcome is None:
            self.stopped = True
            return False
        t = self.now
        own_total = 0.0
        if shared is not None:
            needed, own = shared  # own: the seconds this evaluation was charged for each item, by the budget rule
            for k in sorted(own, key=lambda k: k[0] != "teacher"):  # the teacher first, then the blocks
                if k[0] != "teacher":
                    t = max(t, self.done_at.get(("teacher", k[0]), -math.inf))
                seconds = own[k]
                t += seconds
                own_total += seconds
                self.done_at[k] = t
            t = max([t, *(self.done_at.get(k, -math.inf) for k in needed if k not in own)])
        work = max(0.0, outcome.charged - own_total)
        ledger_key = SearchRun.ledger_key(outcome.evaluation, self.key)  # a proxy is other work than training
        if self.free_repeats:  # a repeat reuses the running evaluation of the model, a longer one continues it
            t = max(t, self.model_ready.get(ledger_key, -math.inf))
        end = t + work
        if self.free_repeats:
            self.model_ready[ledger_key] = end
        busy = own_total + work
        job = _Job(self.n, worker, arch, outcome, self.now, end, max(0.0, (end - self.now) - busy))
        heapq.heappush(self.running, job)
        self.stop.observe(arch.index, outcome.evaluation.fidelity, outcome.charged)
        self.n += 1
        return True

    def _shared_plan(self, arch: Arch) -> tuple[dict[Hashable, float], dict[Hashable, float]] | None:
        """Shared work ``arch`` needs (all of it) and the part its evaluation will pay for (not yet charged), in
        seconds resolved by the budget rule (:meth:`~blox_env.runs.budget.SharedWork.seconds`, as the backend
        charges them); None without shared work."""
        if self.work is None:
            return None
        model = f"{arch.index} (hash {arch.hash}, blocks {arch.blocks})"
        needed = self.work.pending(arch)
        own, _ = self.work.seconds(self.work.pending(arch, self.run.shared), model=model)
        return needed, own

    # ------------------------------------------------------------------ finishing
    def finish(self, job: _Job) -> None:
        """Tell the agent and record the row of a finished evaluation; its worker is free again."""
        self.agent.tell(job.arch, job.outcome.evaluation)
        self.completed += job.outcome.charged
        self.run.record(job.outcome, fields={
            **self.fields, "worker": job.worker, "sim_start": job.start, "sim_end": job.end, "sim_wait": job.wait,
            "sim_wall_clock": job.end, "cumulative_cost": self.completed, "compute_committed": self.run.spent})
        heapq.heappush(self.free, job.worker)

    def pop_finished(self) -> list[_Job]:
        """Every running job ending at the earliest end (in start order); advances the clock to it."""
        first = heapq.heappop(self.running)
        done = [first]
        while self.running and self.running[0].end == first.end:
            done.append(heapq.heappop(self.running))
        self.now = max(self.now, first.end)
        return done

    def run_async(self) -> None:
        while True:
            while self.free and self.can_start():
                worker = heapq.heappop(self.free)
                if not self.start(worker):
                    heapq.heappush(self.free, worker)
            if not self.running:
                return
            for job in self.pop_finished():
                self.finish(job)

    def run_sync(self) -> None:
        while self.can_start():
            while self.free and self.can_start():  # every worker is free between batches
                worker = heapq.heappop(self.free)
                if not self.start(worker):
                    heapq.heappush(self.free, worker)
            if not self.running:
                return
            while self.running:
                for job in self.pop_finished():
                    self.finish(job)


def _check_workers(workers: Any) -> int:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) \
            or not 1 <= int(workers) <= MAX_SIM_WORKERS:
        raise InvalidArgumentError(f"sim_workers must be an integer in 1..{MAX_SIM_WORKERS:,} (simulated parallel "
                                   f"workers), got {workers!r}")
    return int(workers)


def run_parallel_search(agent: Any, backend: RewardBackend, *, sim_workers: int, budget: float, budget_kind: str,
                        cost_unit: str, seed: int, metric: str, mode: str = "async", charge_repeats: bool = False,
                        max_evaluations: int = 1_000_000, run: SearchRun | None = None,
                        stop_at: float | None = None, fields: Mapping[str, Any] | None = None,
                        key: Hashable = None) -> list[dict[str, Any]]:
    """Drive ``agent`` with ``sim_workers`` simulated workers until the budget is spent; returns the trace.

    ``budget_kind`` names the budget: ``"compute"`` (total cost charged, in ``cost_unit``) or ``"wall"``
    (simulated wall-clock, in ``cost_unit``). ``run``, ``stop_at`` (a compute limit), ``fields`` and ``key``
    are those of :func:`~blox_env.agents.loop.run_search`, which with one async worker gives the same trace
    (same models, costs and cumulative costs). See the module docstring for the clock and the budget rule.
    """
    workers = _check_workers(sim_workers)
    seed = check_seed("seed", seed)
    mode = check_choice("mode", mode, MODES)
    budget_kind = check_choice("budget_kind", budget_kind, BUDGET_KINDS)
    limit = check_budget(budget, cost_unit if isinstance(cost_unit, str) else "cost units")
    if limit is None:
        raise InvalidArgumentError(f"budget must be a positive number of {cost_unit} ({budget_kind}), got None")
    check_agent(agent)
    if workers > 1 and not agent.parallel_asks:
        raise InvalidArgumentError(f"agent {agent.name!r} can have only one evaluation outstanding (it waits for "
                                   "each result): use sim_workers=1")
    if stop_at is not None:
        stop_at = check_real("stop_at", stop_at)
    if run is None:
        run = SearchRun(budget=limit if budget_kind == "compute" else None, cost_unit=cost_unit,
                        charge_repeats=charge_repeats, metric=metric, seed=seed)
    compute_limit = limit if budget_kind == "compute" else math.inf
    if stop_at is not None:
        compute_limit = min(compute_limit, stop_at)
    sim = _Simulator(agent, backend, run, workers=workers, compute_limit=compute_limit,
                     wall_limit=limit if budget_kind == "wall" else None, seed=seed,
                     max_evaluations=max_evaluations, fields=fields, key=key)
    try:
        sim.run_async() if mode == "async" else sim.run_sync()
    finally:
        agent.close()
    return run.trace


# ---------------------------------------------------------------------------------------------- anytime curves
class Curve(NamedTuple):
    """A step function: after ``x[i]`` (a clock), the search's answer is worth ``best[i]`` (NaN before any)."""

    x: np.ndarray
    best: np.ndarray


class AnytimeCurves(NamedTuple):
    """Best-so-far against the simulated wall-clock and against the total compute of completed evaluations."""

    sim_wall_clock: Curve
    compute: Curve


def anytime_curves(trace: Sequence[Mapping[str, Any]], *, report_metric: str | None = None) -> AnytimeCurves:
    """The anytime curves of one search's trace (rows in completion order, as the search wrote them).

    The answer after each row is the best-objective model so far among rows with ``select`` true at the
    highest fidelity seen (the harness's rule); its value is its ``objective`` or, with ``report_metric``, that
    metric of it (e.g. ``test_top1``). Sequential traces without ``sim_wall_clock`` are one worker: their
    simulated wall-clock is their ``cumulative_cost``.
    """
    rows = list(trace)
    if any(not isinstance(r, Mapping) or "cumulative_cost" not in r or "objective" not in r for r in rows):
        raise InvalidArgumentError("anytime_curves needs the rows of a search trace (with objective, cumulative_cost)")
    compute = np.array([float(r["cumulative_cost"]) for r in rows])
    wall = np.array([float(r.get("sim_wall_clock", r["cumulative_cost"])) for r in rows])
    if np.any(np.diff(wall) < 0) or np.any(np.diff(compute) < 0):
        raise InvalidArgumentError("trace rows must be in completion order (sim_wall_clock and cumulative_cost "
                                   "non-decreasing), as run_search and run_parallel_search write them")
    best = answers(rows, report_metric)
    return AnytimeCurves(Curve(wall, best.copy()), Curve(compute, best))
