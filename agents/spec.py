"""``BenchSpec``: what a benchmark run searches, grouped by concern, checked before anything runs.

- :class:`SearchSpec` (``spec.search``): the agents (built-in names or ``module:Class`` import paths),
  seeds, the search metric, the reported metric, a target, the store's seed mode, a constraint,
  multi-objective objectives and per-agent options;
- :class:`BudgetSpec` (``spec.budget``): the budgets, their cost unit, what they measure (``kind``:
  total compute or simulated wall-clock) and whether repeats are charged;
- :class:`SimSpec` (``spec.sim``): simulated parallel workers per search (``sim_workers`` on a
  simulated clock; never OS processes, which are ``jobs`` of :func:`~blox_env.agents.harness.run_benchmark`);
- :class:`BlockwiseSpec` (``spec.blockwise``, used when ``spec.mode == "blockwise"``): teacher,
  fine-tuning length and the paper's strategies.

``BenchSpec.from_options(**flat)`` builds one from the command line's flat options (``agents=``,
``budgets=``, ``sim_workers=``, ...); the defaults are the command line's. Every check that needs no
store runs here: names, counts bounded by stated limits (:data:`MAX_SEEDS`, :data:`MAX_SIM_WORKERS`),
finite, positive, distinct budgets, a finite target, distinct agents and objectives, combinations.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from blox_env.agents.parallel import BUDGET_KINDS, MAX_SIM_WORKERS
from blox_env.agents.parallel import MODES as SIM_MODES
from blox_env.checks import check_bool, check_choice, is_real, type_name
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError
from blox_env.runs.budget import COST_UNITS

__all__ = ["BUDGET_KINDS", "DEFAULT_AGENTS", "DEFAULT_BUDGETS", "DEFAULT_MO_AGENTS", "MAX_SEEDS", "MAX_SIM_WORKERS",
           "SIM_MODES", "BenchSpec", "BlockwiseSpec", "BudgetSpec", "SearchSpec", "SimSpec", "resolve_agent"]

DEFAULT_AGENTS = ("random", "evolution", "local", "reinforce", "hyperband", "brpnas")
DEFAULT_MO_AGENTS = ("mo-random", "nsga2", "parego")  # with objectives
DEFAULT_BUDGETS = (100.0, 300.0, 600.0)
#: Searches per agent at most (each is one trace in memory and in the trace store).
MAX_SEEDS = 10_000
STRATEGIES = ("plain", "two-stage", "iterative")
MODES = ("normal", "blockwise")


def resolve_agent(name: str) -> type:
    """The agent class of a built-in name (:data:`~blox_env.agents.AGENTS`) or an import path ``module:Class``.

    An import path must name a class following the Agent Protocol (e.g. a
    :class:`~blox_env.agents.base.BaseAgent` subclass) built as ``Class(space, seed=, metric=, constraint=)``.
    """
    from blox_env.agents import AGENTS
    from blox_env.agents.base import BaseAgent

    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError(f"agent names must be non-empty strings: a built-in name ({', '.join(AGENTS)}) "
                                   f"or an import path 'module:Class', got {name!r}")
    if name in AGENTS:
        return AGENTS[name]
    if ":" not in name:
        raise InvalidArgumentError(f"unknown agent {name!r}: allowed {', '.join(AGENTS)}, or an import path "
                                   "'module:Class' of your own agent (e.g. 'mypkg.agents:MyAgent')")
    module_name, _, attr = name.partition(":")
    here = os.getcwd()
    if here not in {os.path.abspath(p) for p in sys.path}:
        sys.path.append(here)  # the working folder, as `python -m` has it (the `blox` script's path has not)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidArgumentError(f"agent {name!r}: cannot import module {module_name!r} ({exc}); is it on the "
                                   "Python path (installed, or in the working folder)?") from exc
    cls = module
    for part in attr.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            raise InvalidArgumentError(f"agent {name!r}: module {module_name!r} has no attribute {attr!r}")
    if not isinstance(cls, type):
        raise InvalidArgumentTypeError(f"agent {name!r} must name a class, got {cls!r} ({type_name(cls)})")
    members = ("ask", "tell", "pending", "feasible_indices", "close", "signature_blocks")
    missing = [m for m in members if not callable(getattr(cls, m, None))]
    if missing and not issubclass(cls, BaseAgent):
        raise InvalidArgumentTypeError(
            f"agent {name!r} is not a search agent: it lacks {', '.join(missing)} "
            "(subclass blox_env.agents.BaseAgent, which gives every member but ask())"
        )
    return cls


def _count(name: str, value: Any, *, low: int, high: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentTypeError(
            f"{name} must be an integer in {low}..{high:,}, got {value!r} ({type_name(value)})"
        )
    if not low <= int(value) <= high:
        raise InvalidArgumentError(f"{name} must be an integer in {low}..{high:,}, got {value!r}")
    return int(value)


def _names(name: str, value: Any, what: str) -> tuple[str, ...]:
    """A non-empty tuple of distinct non-empty strings."""
    if (
        isinstance(value, str)
        or not isinstance(value, (tuple, list))
        or not value
        or not all(isinstance(v, str) and v.strip() for v in value)
    ):
        raise InvalidArgumentError(f"{name} must be a non-empty tuple of {what}, got {value!r}")
    items = tuple(v.strip() for v in value)
    dupes = sorted({v for v in items if items.count(v) > 1})
    if dupes:
        raise InvalidArgumentError(f"{name} lists {', '.join(map(repr, dupes))} more than once: give each once")
    return items


@dataclass(frozen=True, kw_only=True)
class SearchSpec:
    """What to search: agents x seeds, selecting on ``metric`` and reporting ``report_metric``."""

    agents: tuple[str, ...] = DEFAULT_AGENTS
    seeds: int = 20
    metric: str = "val_top1"
    report_metric: str = "test_top1"
    target: float | None = None
    seed_mode: int | str = "random"
    constraint: dict[str, float] | None = None
    #: Multi-objective: objective specs (``blox_env.objectives.parse_objectives``) for the agents that take them.
    objectives: tuple[str, ...] | None = None
    agent_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: A zero-cost proxy of the store the backend answers at the proxy fidelity (for ``proxy-evolution``); None: none.
    proxy: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "agents", _names("agents", self.agents, "agent names or 'module:Class' paths"))
        if self.proxy is not None and (not isinstance(self.proxy, str) or not self.proxy):
            raise InvalidArgumentError(f"proxy must be the name of one of the store's zero-cost proxies (e.g. "
                                       f"'synflow') or None, got {self.proxy!r}")
        for a in self.agents:
            resolve_agent(a)
        object.__setattr__(self, "seeds", _count("seeds", self.seeds, low=1, high=MAX_SEEDS))
        for name in ("metric", "report_metric"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise InvalidArgumentError(
                    f"{name} must be a metric name such as 'val_top1', got {getattr(self, name)!r}"
                )
        if self.target is not None:
            if not is_real(self.target) or not math.isfinite(float(self.target)):
                raise InvalidArgumentError(
                    f"target must be a finite number (a {self.report_metric} value) or None, got {self.target!r}"
                )
            object.__setattr__(self, "target", float(self.target))
        if self.objectives is not None:
            object.__setattr__(
                self,
                "objectives",
                _names("objectives", self.objectives, "objective specs such as ('val_top1', 'params')"),
            )


@dataclass(frozen=True, kw_only=True)
class BudgetSpec:
    """The budgets (in ``cost_unit``), what they measure and whether repeats are charged."""

    budgets: tuple[float, ...] = DEFAULT_BUDGETS
    cost_unit: str = "seconds"
    kind: str = "compute"  # "compute" (total cost charged) | "wall" (simulated wall-clock)
    charge_repeats: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "cost_unit", check_choice("cost_unit", self.cost_unit, COST_UNITS))
        object.__setattr__(self, "kind", check_choice("budget kind", self.kind, BUDGET_KINDS))
        object.__setattr__(self, "charge_repeats", check_bool("charge_repeats", self.charge_repeats))
        values = self.budgets
        if (
            isinstance(values, (str, bytes))
            or not isinstance(values, (tuple, list))
            or not values
            or not all(is_real(b) for b in values)
        ):
            raise InvalidArgumentError(
                f"budgets must be a non-empty tuple of positive, finite numbers of {self.cost_unit}, got {values!r}"
            )
        budgets = tuple(float(b) for b in values)
        bad = [b for b in budgets if not (math.isfinite(b) and b > 0)]
        if bad:
            raise InvalidArgumentError(
                f"budgets must be positive, finite numbers of {self.cost_unit}, got {', '.join(map(repr, bad))}"
            )
        if len(set(budgets)) != len(budgets):
            raise InvalidArgumentError(f"budgets must be distinct, got {', '.join(f'{b:g}' for b in budgets)}")
        object.__setattr__(self, "budgets", budgets)

    @property
    def clock(self) -> str:
        """The trace column the budgets are read on: ``cumulative_cost`` (compute) or ``sim_wall_clock``."""
        return "cumulative_cost" if self.kind == "compute" else "sim_wall_clock"


@dataclass(frozen=True, kw_only=True)
class SimSpec:
    """Simulated parallel workers per search (:mod:`blox_env.agents.parallel`); 1 async worker = sequential."""

    sim_workers: int = 1
    mode: str = "async"  # "async" | "sync"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sim_workers", _count("sim_workers", self.sim_workers, low=1, high=MAX_SIM_WORKERS))
        object.__setattr__(self, "mode", check_choice("worker mode", self.mode, SIM_MODES))


@dataclass(frozen=True, kw_only=True)
class BlockwiseSpec:
    """Blockwise mode: rewards from the store's blockwise tables, and the paper's strategies."""

    teacher: str = "M1"
    ft_epochs: int | None = None  # fine-tuning length (default: the full one)
    strategy: str = "plain"  # "two-stage" (FT-short + FT-full) | "iterative" (iterative teacher)
    strategy_kwargs: dict[str, Any] = field(default_factory=dict)
    full_teacher: str | None = None  # two-stage: the teacher of the full fine-tuning (default: ``teacher``)
    stop_at_target: bool = False  # strategies stop fine-tuning once an answer's objective reaches the target
    live_store: str | None = None  # iterative: promoted teachers run live in this writable store (else stand-ins)
    live_replay: bool = False  # with live_store: only read recorded results back (a shipped record), never train

    def __post_init__(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        if self.full_teacher is not None and self.strategy != "two-stage":
            raise InvalidArgumentError(f"full_teacher is an option of the two-stage strategy, not {self.strategy!r}")
        if self.live_store is not None and self.strategy != "iterative":
            raise InvalidArgumentError(f"live_store is an option of the iterative strategy, not {self.strategy!r}")
        if self.live_replay and self.live_store is None:
            raise InvalidArgumentError("live_replay replays the results recorded in live_store: give live_store")


@dataclass(frozen=True, kw_only=True)
class BenchSpec:
    """One benchmark run (see the module docstring); ``mode`` is ``"normal"`` or ``"blockwise"``."""

    search: SearchSpec = field(default_factory=SearchSpec)
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    sim: SimSpec = field(default_factory=SimSpec)
    mode: str = "normal"
    blockwise: BlockwiseSpec = field(default_factory=BlockwiseSpec)

    @classmethod
    def from_options(cls, **options: Any) -> BenchSpec:
        """A spec from flat options named as on the command line (``agents``, ``seeds``, ``budgets``,
        ``cost_unit``, ``budget_kind``, ``sim_workers``, ``worker_mode``, ``mode``, ``teacher``, ...)."""
        groups: dict[str, dict[str, Any]] = {"search": {}, "budget": {}, "sim": {}, "blockwise": {}}
        renames = {"budget_kind": ("budget", "kind"), "worker_mode": ("sim", "mode")}
        where = {
            f.name: g
            for g, c in (("search", SearchSpec), ("budget", BudgetSpec), ("sim", SimSpec), ("blockwise", BlockwiseSpec))
            for f in fields(c)
        }
        where.pop("kind"), where.pop("mode")
        top: dict[str, Any] = {}
        for key, value in options.items():
            if key in renames:
                group, name = renames[key]
                groups[group][name] = value
            elif key in where:
                groups[where[key]][key] = value
            elif key == "mode":
                top["mode"] = value
            else:
                allowed = sorted([*where, *renames, "mode"])
                raise InvalidArgumentError(f"unknown benchmark option {key!r}: allowed {', '.join(allowed)}")
        return cls(
            search=SearchSpec(**groups["search"]),
            budget=BudgetSpec(**groups["budget"]),
            sim=SimSpec(**groups["sim"]),
            blockwise=BlockwiseSpec(**groups["blockwise"]),
            **top,
        )

    def __post_init__(self) -> None:
        for name, kind in (
            ("search", SearchSpec),
            ("budget", BudgetSpec),
            ("sim", SimSpec),
            ("blockwise", BlockwiseSpec),
        ):
            if not isinstance(getattr(self, name), kind):
                raise InvalidArgumentTypeError(
                    f"BenchSpec.{name} must be a {kind.__name__}, got {getattr(self, name)!r}"
                )
        check_choice("mode", self.mode, MODES)
        bw = self.blockwise
        if bw.strategy != "plain" and self.mode != "blockwise":
            raise InvalidArgumentError(f"strategy {bw.strategy!r} is a blockwise strategy: use mode='blockwise'")
        if bw.stop_at_target and self.search.target is None:
            raise InvalidArgumentError("stop_at_target needs a target")
        if self.simulated and bw.strategy != "plain":
            raise InvalidArgumentError(
                f"simulated workers run plain searches; strategy {bw.strategy!r} runs its "
                "phases one evaluation at a time (use sim_workers=1, async, a compute budget)"
            )
        if self.search.proxy is not None and self.mode != "normal":
            raise InvalidArgumentError("proxy= (the zero-cost proxy fidelity) runs in mode='normal'")
        if self.search.objectives is not None and self.mode != "normal":
            raise InvalidArgumentError(
                "multi-objective benchmarks run in mode='normal' (the blockwise tables score one accuracy)"
            )

    @property
    def simulated(self) -> bool:
        """True when searches run on simulated parallel workers (more than one, sync, or a wall-clock budget)."""
        return self.sim.sim_workers != 1 or self.sim.mode != "async" or self.budget.kind != "compute"

    def budget_name(self) -> str:
        """What the budgets measure, in words (every report names it: never an ambiguous "time")."""
        unit = {"seconds": "seconds of recorded training", "epochs": "training epochs", "evaluations": "evaluations"}[
            self.budget.cost_unit
        ]
        n, mode = self.sim.sim_workers, self.sim.mode
        if self.budget.kind == "wall":
            return f"simulated wall-clock ({unit} on the simulated clock) with {n} {mode} worker{'s' if n != 1 else ''}"
        workers = f", {n} {mode} simulated worker{'s' if n != 1 else ''}" if self.simulated else ""
        return f"total compute ({unit}, summed over evaluations{workers})"

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (JSON-able): recorded with every trace so a rerun can resume it."""
        from dataclasses import asdict

        return asdict(self)
