"""The cost-budget harness: agents x seeds x budgets under one enforced simulated clock.

Every search is :func:`~blox_env.agents.loop.run_search` (or a blockwise strategy of
:mod:`~blox_env.agents.strategies`) through a :class:`~blox_env.runs.SearchRun`: the same
accounting as the environments (repeats free unless ``charge_repeats``, the evaluation that
crosses the budget completes and counts). A search stops once its budget is spent. Results are
traces (one record per evaluation with arch, metrics, cost, cumulative cost and wall time),
written to a store's ``traces/`` when one is given, and summarised per agent:

- *best test accuracy at cost b*: test top-1 of the model with the best search
  metric (validation) among those evaluated within cumulative cost ``b`` — the
  usual "select on validation, report test" rule;
- *cost to reach a target*: the first cumulative cost after which the search's
  answer (that model) stays at or above ``target`` test accuracy for the rest of
  the search ("not reached" otherwise; a transient hit does not count), and the
  cost to evaluate the benchmark's best model;
- in blockwise mode also the *fine-tuned* test accuracy of the answer (the
  record's own ``report_metric``: what the paper's Table 2 reports for blockwise
  methods) next to its normal test accuracy, and the cost to reach the target
  on that score;
- *regret*: the benchmark's best test accuracy (of its best-validation model)
  minus the agent's, and the evaluations used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from blox_env.agents.loop import run_search
from blox_env.agents.parallel import run_parallel_search
from blox_env.agents.strategies import STRATEGIES, iterative_teacher_search, two_stage_search
from blox_env.agents.summary import (
    answers,
    best_at,
    best_at_each,
    clock_values,
    cost_to_reach,
    mean_se,
    plan_for,
    planned,
    summarise_traces,
)
from blox_env.errors import InvalidArgumentError
from blox_env.rewards.base import RewardBackend

__all__ = ["BenchSpec", "SearchTask", "answers", "best_at", "best_at_each", "clock_values", "cost_to_reach",
           "make_search_agent", "mean_se",
           "plan_for", "planned", "run_benchmark", "summarise_traces"]


@dataclass(frozen=True)
class BenchSpec:
    """What to run: agents, seeds, budgets (in ``cost_unit``), objective, reporting metric."""

    agents: tuple[str, ...] = ("random", "evolution", "local", "reinforce", "hyperband", "brpnas")
    seeds: int = 20
    budgets: tuple[float, ...] = (150.0, 400.0, 800.0)
    cost_unit: str = "seconds"
    metric: str = "val_top1"
    report_metric: str = "test_top1"
    target: float | None = None
    seed_mode: int | str = "random"
    charge_repeats: bool = False
    constraint: dict[str, float] | None = None
    agent_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    mode: str = "normal"  # "blockwise": rewards from the store's blockwise tables
    teacher: str = "M1"
    ft_epochs: int | None = None  # blockwise fine-tuning length (default: the full one)
    strategy: str = "plain"  # "two-stage" (FT-short + FT-full) | "iterative" (iterative teacher)
    strategy_kwargs: dict[str, Any] = field(default_factory=dict)
    full_teacher: str | None = None  # two-stage: the teacher of the full fine-tuning (default: ``teacher``)
    stop_at_target: bool = False  # strategies stop fine-tuning once an answer's objective reaches ``target``
    live_store: str | None = None  # iterative: promoted teachers run live in this writable store (else stand-ins)
    #: Multi-objective: objective specs (``blox_env.objectives.parse_objectives``), given to the agents that take
    #: ``objectives`` and used by the Pareto summary (:mod:`blox_env.agents.pareto_bench`).
    objectives: tuple[str, ...] | None = None
    workers: int = 1  # simulated parallel workers per search (blox_env.agents.parallel); 1 = sequential
    worker_mode: str = "async"  # "async" | "sync"
    budget_kind: str = "compute"  # the budgets' clock: "compute" (total cost charged) | "wall" (simulated wall-clock)

    @property
    def clock(self) -> str:
        """The trace column the budgets are read on: ``cumulative_cost`` (compute) or ``sim_wall_clock``."""
        return "cumulative_cost" if self.budget_kind == "compute" else "sim_wall_clock"

    @property
    def simulated(self) -> bool:
        """True when searches run on simulated parallel workers (more than one, sync, or a wall-clock budget)."""
        return self.workers != 1 or self.worker_mode != "async" or self.budget_kind != "compute"

    def budget_name(self) -> str:
        """What the budgets measure, in words (every report names it: never an ambiguous "time")."""
        unit = {"seconds": "seconds of recorded training", "epochs": "training epochs",
                "evaluations": "evaluations"}.get(self.cost_unit, self.cost_unit)
        if self.budget_kind == "wall":
            return (f"simulated wall-clock ({unit} on the simulated clock) with {self.workers} {self.worker_mode} "
                    f"worker{'s' if self.workers != 1 else ''}")
        workers = (f", {self.workers} {self.worker_mode} simulated worker{'s' if self.workers != 1 else ''}"
                   if self.simulated else "")
        return f"total compute ({unit}, summed over evaluations{workers})"

    def __post_init__(self) -> None:
        from blox_env.agents import AGENTS
        from blox_env.agents.parallel import BUDGET_KINDS, MODES

        unknown = [a for a in self.agents if a not in AGENTS]
        if unknown:
            raise InvalidArgumentError(f"unknown agent(s) {unknown}: allowed {', '.join(AGENTS)}")
        if self.seeds < 1 or not self.budgets or min(self.budgets) <= 0:
            raise InvalidArgumentError(f"need seeds >= 1 and positive budgets, got {self.seeds}, {self.budgets}")
        if self.mode not in ("normal", "blockwise"):
            raise InvalidArgumentError(f"mode must be 'normal' or 'blockwise', got {self.mode!r}")
        if self.strategy not in STRATEGIES:
            raise InvalidArgumentError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.strategy != "plain" and self.mode != "blockwise":
            raise InvalidArgumentError(f"strategy {self.strategy!r} is a blockwise strategy: use mode='blockwise'")
        if self.full_teacher is not None and self.strategy != "two-stage":
            raise InvalidArgumentError(f"full_teacher is an option of the two-stage strategy, not {self.strategy!r}")
        if self.live_store is not None and self.strategy != "iterative":
            raise InvalidArgumentError(f"live_store is an option of the iterative strategy, not {self.strategy!r}")
        if self.stop_at_target and self.target is None:
            raise InvalidArgumentError("stop_at_target needs a target")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise InvalidArgumentError(f"workers (simulated workers per search) must be an int >= 1, got "
                                       f"{self.workers!r}")
        if self.worker_mode not in MODES or self.budget_kind not in BUDGET_KINDS:
            raise InvalidArgumentError(f"worker_mode must be one of {', '.join(MODES)} and budget_kind one of "
                                       f"{', '.join(BUDGET_KINDS)}, got {self.worker_mode!r}, {self.budget_kind!r}")
        if self.simulated and self.strategy != "plain":
            raise InvalidArgumentError(f"simulated workers run plain searches; strategy {self.strategy!r} runs its "
                                       "phases one evaluation at a time (use workers=1, async, a compute budget)")
        if self.objectives is not None:
            if isinstance(self.objectives, str) or not isinstance(self.objectives, tuple) or not self.objectives \
                    or not all(isinstance(o, str) and o for o in self.objectives):
                raise InvalidArgumentError(f"objectives must be a non-empty tuple of specs such as ('val_top1', "
                                           f"'params'), got {self.objectives!r}")
            if self.mode != "normal":
                raise InvalidArgumentError("multi-objective benchmarks run in mode='normal' (the blockwise tables "
                                           "score one accuracy)")


@dataclass(frozen=True)
class SearchTask:
    """One search (agent x seed) at the largest budget; picklable for process pools."""

    store: str
    agent: str
    seed: int
    spec: BenchSpec


def make_search_agent(name: str, backend: RewardBackend, *, seed: int, spec: BenchSpec) -> Any:
    """The agent ``name`` for one search on ``backend``, with the spec's options.

    Multi-fidelity agents get the backend's epoch range; ``donna`` and ``lana`` get the
    blockwise backend's signatures (distillation loss; minus the accuracy change).
    """
    from blox_env.agents import AGENTS, MultiObjectiveAgent, make_agent, make_constraint

    constraint = make_constraint(backend, spec.constraint) if spec.constraint else None
    kwargs = dict(spec.agent_kwargs.get(name, {}))
    if spec.objectives is not None and issubclass(AGENTS.get(name, object), MultiObjectiveAgent):
        from blox_env.objectives import parse_objectives

        kwargs.setdefault("objectives", parse_objectives(spec.objectives, store=backend.store))
    if name in ("sh", "hyperband", "asha"):
        kwargs.setdefault("max_fidelity", backend.max_fidelity)
        kwargs.setdefault("min_fidelity", max(1, backend.max_fidelity // 9))
    if name in ("donna", "lana") and "signatures" not in kwargs:
        sig = backend.block_signatures()
        if sig is None:
            raise InvalidArgumentError(f"agent {name!r} needs block signatures: run it with mode='blockwise' on a "
                                       "store with blockwise tables (or pass signatures= in agent_kwargs)")
        kwargs["signatures"] = sig["distill_loss"] if name == "donna" else -sig["lana_delta"]
    return make_agent(name, backend.space, seed=seed, metric=spec.metric, constraint=constraint, **kwargs)


def _task(task: SearchTask) -> list[dict[str, Any]]:
    """Worker side: open the store read-only, build backend(s) + agent, search at the largest budget."""
    from blox_env.datasets.store.core import open_store
    from blox_env.rewards.factory import make_tabular_backend

    spec = task.spec
    store = open_store(task.store)
    budget = max(spec.budgets)
    blockwise = {"mode": "blockwise", "teacher": spec.teacher} if spec.mode == "blockwise" else {}

    def backend_at(ft_epochs: int | None) -> Any:
        extra = {**blockwise, "ft_epochs": ft_epochs} if blockwise else {}
        return make_tabular_backend(store, metric=spec.metric, seed_mode=spec.seed_mode, **extra)

    if spec.strategy == "plain":
        backend = backend_at(spec.ft_epochs)
        agent = make_search_agent(task.agent, backend, seed=task.seed, spec=spec)
        if spec.simulated:
            return run_parallel_search(agent, backend, workers=spec.workers, mode=spec.worker_mode, budget=budget,
                                       budget_kind=spec.budget_kind, cost_unit=spec.cost_unit, seed=task.seed,
                                       metric=spec.metric, charge_repeats=spec.charge_repeats)
        return run_search(agent, backend, budget=budget, cost_unit=spec.cost_unit, seed=task.seed,
                          metric=spec.metric, charge_repeats=spec.charge_repeats)
    # strategies plan their phases for a budget: one run per budget, records tagged with ``plan_budget``;
    # the backends are made once (each plan's SearchRun starts their shared charges anew)
    target = spec.target if spec.stop_at_target else None
    trace: list[dict[str, Any]] = []
    if spec.strategy == "two-stage":
        full = make_tabular_backend(store, metric=spec.metric, seed_mode=spec.seed_mode, mode="blockwise",
                                    teacher=spec.full_teacher or spec.teacher, ft_epochs=None)
        short = backend_at(min(full.tables.ft_epochs))
        for plan in sorted(spec.budgets):
            agent = make_search_agent(task.agent, short, seed=task.seed, spec=spec)
            part = two_stage_search(agent, short, full, budget=plan, cost_unit=spec.cost_unit, seed=task.seed,
                                    metric=spec.metric, target=target, **spec.strategy_kwargs)
            trace += [{**r, "plan_budget": plan} for r in part]
        return trace
    from blox_env.rewards.blockwise import TeacherBackends

    live_store = live = None
    if spec.live_store is not None:  # promoted teachers trained live, recorded beside the tables
        from blox_env.datasets.store.core import BloxStore
        from blox_env.rewards.live import live_teacher_backends

        live_store = BloxStore.open(spec.live_store, mode="a")
        live = live_teacher_backends(live_store)
    try:
        teachers = TeacherBackends(live_store or store, metric=spec.metric, live=live)
        for plan in sorted(spec.budgets):
            part = iterative_teacher_search(
                lambda s, short: make_search_agent(task.agent, short, seed=s, spec=spec), teachers,
                start_teacher=teachers.tables.teachers[spec.teacher], budget=plan, cost_unit=spec.cost_unit,
                seed=task.seed, metric=spec.metric, target=target, **spec.strategy_kwargs)
            trace += [{**r, "plan_budget": plan} for r in part]
    finally:
        if live_store is not None:
            live_store.close()  # records the checksums of what the live teachers wrote
    return trace


def check_complete(location: str) -> None:
    """Refuse a store whose rows do not fill the product sub-space they span (see :func:`run_benchmark`)."""
    from blox_env.datasets.store.core import open_store
    from blox_env.rewards.tabular import space_of_index

    st = open_store(location)
    space = space_of_index(st.index)
    if len(st.index) != space.size:
        raise InvalidArgumentError(
            f"store {st.name} holds {len(st.index):,} of the {space.size:,} models of the sub-space its rows span "
            f"(blocks per stage {[len(b) for b in space.blocks]}): searches would propose models it lacks. Search a "
            "complete store (re-import the release without --allow-partial, or build the missing models)")


def run_benchmark(store: str, *, spec: BenchSpec, executor: str = "process", workers: int = 2,
                  progress: bool = True) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Every (agent, seed) search; parallel over searches on the chosen executor.

    The store must hold every model of the product sub-space its rows span (the space agents search):
    a partial import (``blox data import --allow-partial``) is refused up front with the counts, rather
    than failing inside a search on the first missing model an agent proposes."""
    from blox_env.build.executors import make_executor

    check_complete(store)
    tasks = [SearchTask(str(store), a, s, spec) for a in spec.agents for s in range(spec.seeds)]
    ex = make_executor(executor, workers=workers)
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    bar = None
    if progress:
        from blox_env.progress import ProgressBar

        bar = ProgressBar(len(tasks), description="searches")
    try:
        for task, trace in ex.map_unordered(_task, tasks):
            out[(task.agent, task.seed)] = trace
            if bar is not None:
                bar.update(1)
    finally:
        ex.close()
        if bar is not None:
            bar.close()
    return out
