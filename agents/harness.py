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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from blox_env.agents.loop import run_search
from blox_env.agents.parallel import run_parallel_search
from blox_env.agents.spec import BenchSpec, resolve_agent
from blox_env.agents.strategies import iterative_teacher_search, two_stage_search
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
from blox_env.runs import SearchRun

__all__ = ["BenchSpec", "SearchTask", "answers", "best_at", "best_at_each", "clock_values", "cost_to_reach",
           "make_search_agent", "mean_se",
           "plan_for", "planned", "run_benchmark", "summarise_traces"]


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
    blockwise backend's signatures (distillation loss; minus the accuracy change), whose blocks the
    search pays for before its first prediction (:func:`prepaid_run`).
    """
    from blox_env.agents import MultiObjectiveAgent, make_agent, make_constraint

    constraint = make_constraint(backend, spec.search.constraint) if spec.search.constraint else None
    kwargs = dict(spec.search.agent_kwargs.get(name, {}))
    cls = resolve_agent(name)
    if spec.search.objectives is not None and issubclass(cls, MultiObjectiveAgent):
        from blox_env.objectives import parse_objectives

        kwargs.setdefault("objectives", parse_objectives(spec.search.objectives, store=backend.store))
    if name in ("sh", "hyperband", "asha"):
        kwargs.setdefault("max_fidelity", backend.max_fidelity)
        kwargs.setdefault("min_fidelity", max(1, backend.max_fidelity // 9))
    if name in ("donna", "lana") and "signatures" not in kwargs:
        sig = backend.block_signatures()
        if sig is None:
            raise InvalidArgumentError(f"agent {name!r} needs block signatures: run it with mode='blockwise' on a "
                                       "store with blockwise tables (or pass signatures= in agent_kwargs)")
        kwargs["signatures"] = sig["distill_loss"] if name == "donna" else -sig["lana_delta"]
    if ":" in name:  # a user's own agent class (an import path)
        return cls(backend.space, seed=seed, metric=spec.search.metric, constraint=constraint, **kwargs)
    return make_agent(name, backend.space, seed=seed, metric=spec.search.metric, constraint=constraint, **kwargs)


def prepaid_run(agent: Any, backend: RewardBackend, *, spec: BenchSpec, budget: float,
                seed: int) -> tuple[SearchRun | None, dict[str, Any] | None]:
    """For a method that reads block signatures (DONNA, LANA) on a blockwise backend: a run that has paid, before
    the first prediction, the distillation of every block it reads and the teacher (``SearchRun.prepay``), and the
    trace fields saying so (``upfront_cost``); (None, None) for every other search."""
    blocks = agent.signature_blocks()
    if spec.mode != "blockwise" or not blocks:
        return None, None
    limit = budget if spec.budget.kind == "compute" or not spec.simulated else None
    run = SearchRun(budget=limit, cost_unit=spec.budget.cost_unit, charge_repeats=spec.budget.charge_repeats,
                    metric=spec.search.metric, seed=seed)
    return run, {"upfront_cost": run.prepay(backend, blocks)}


def _task(task: SearchTask) -> list[dict[str, Any]]:
    """Worker side: open the store read-only, build backend(s) + agent, search at the largest budget."""
    from blox_env.datasets.store.core import open_store
    from blox_env.rewards.factory import make_tabular_backend

    spec = task.spec
    search, bw = spec.search, spec.blockwise
    store = open_store(task.store)
    budget = max(spec.budget.budgets)
    blockwise = {"mode": "blockwise", "teacher": bw.teacher} if spec.mode == "blockwise" else {}
    # what every search of the task shares (the budget rule's options and the seed)
    common = {"cost_unit": spec.budget.cost_unit, "seed": task.seed, "metric": search.metric}

    def backend_at(ft_epochs: int | None) -> Any:
        extra = {**blockwise, "ft_epochs": ft_epochs} if blockwise else {}
        proxy = {"proxy": search.proxy} if search.proxy is not None else {}
        return make_tabular_backend(store, metric=search.metric, seed_mode=search.seed_mode, **extra, **proxy)

    if bw.strategy == "plain":
        backend = backend_at(bw.ft_epochs)
        agent = make_search_agent(task.agent, backend, seed=task.seed, spec=spec)
        run, fields = prepaid_run(agent, backend, spec=spec, budget=budget, seed=task.seed)
        plain = {**common, "budget": budget, "charge_repeats": spec.budget.charge_repeats, "run": run, "fields": fields}
        if spec.simulated:
            return run_parallel_search(agent, backend, sim_workers=spec.sim.sim_workers, mode=spec.sim.mode,
                                       budget_kind=spec.budget.kind, **plain)
        return run_search(agent, backend, **plain)
    # strategies plan their phases for a budget: one run per budget, records tagged with ``plan_budget``;
    # the backends are made once (each plan's SearchRun starts their shared charges anew)
    target = search.target if bw.stop_at_target else None
    trace: list[dict[str, Any]] = []
    if bw.strategy == "two-stage":
        full = make_tabular_backend(store, metric=search.metric, seed_mode=search.seed_mode, mode="blockwise",
                                    teacher=bw.full_teacher or bw.teacher, ft_epochs=None)
        short = backend_at(min(full.tables.ft_epochs))
        for plan in sorted(spec.budget.budgets):
            agent = make_search_agent(task.agent, short, seed=task.seed, spec=spec)
            part = two_stage_search(agent, short, full, budget=plan, target=target, **common, **bw.strategy_kwargs)
            trace += [{**r, "plan_budget": plan} for r in part]
        return trace
    from blox_env.rewards.blockwise import TeacherBackends

    live_store = live = None
    if bw.live_store is not None:  # promoted teachers trained live, recorded beside the tables
        from blox_env.datasets.store.core import BloxStore
        from blox_env.rewards.live import live_teacher_backends

        live_store = BloxStore.open(bw.live_store, mode="a")
        live = live_teacher_backends(live_store, replay_only=bw.live_replay)
    try:
        teachers = TeacherBackends(live_store or store, metric=search.metric, live=live)
        for plan in sorted(spec.budget.budgets):
            part = iterative_teacher_search(
                lambda s, short: make_search_agent(task.agent, short, seed=s, spec=spec), teachers,
                start_teacher=teachers.tables.teachers[bw.teacher], budget=plan, target=target, **common,
                **bw.strategy_kwargs)
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
            "complete store (re-import the release without --allow-partial, or build the missing models)"
        )


def run_benchmark(
    store: str,
    *,
    spec: BenchSpec,
    executor: str = "process",
    jobs: int = 2,
    progress: bool = True,
    only: Sequence[tuple[str, int]] | None = None,
    on_result: Callable[[str, int, list[dict[str, Any]]], None] | None = None,
) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Every (agent, seed) search (or those in ``only``), ``jobs`` at once on the chosen executor.

    ``on_result(agent, seed, trace)`` is called in this process as each search finishes (e.g. to keep it in a
    trace store at once). Ctrl-C stops launching searches and cancels those in flight (their work is lost,
    finished ones were handed to ``on_result``), then re-raises ``KeyboardInterrupt``.

    The store must hold every model of the product sub-space its rows span (the space agents search):
    a partial import (``blox data import --allow-partial``) is refused up front with the counts, rather
    than failing inside a search on the first missing model an agent proposes."""
    from blox_env.build.executors import make_executor

    check_complete(store)
    pairs = only if only is not None else [(a, s) for a in spec.search.agents for s in range(spec.search.seeds)]
    tasks = [SearchTask(str(store), a, s, spec) for a, s in pairs]
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    if not tasks:
        return out
    ex = make_executor(executor, jobs=jobs)
    bar = None
    if progress:
        from blox_env.progress import ProgressBar

        bar = ProgressBar(len(tasks), description="searches")
    interrupted = False
    try:
        for task, trace in ex.map_unordered(_task, tasks):
            out[(task.agent, task.seed)] = trace
            if on_result is not None:
                on_result(task.agent, task.seed, trace)
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        ex.cancel() if interrupted else ex.close()
        if bar is not None:
            bar.close()
    return out
