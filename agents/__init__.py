"""Search agents and the cost-budget harness; installed as ``blox_env.agents``.

Every agent follows :class:`Agent` (``ask() -> Arch``, ``tell(arch, evaluation)``,
``fidelity``) and takes ``space``, ``seed`` (int or Generator), ``metric`` (the
objective, higher is better) and ``constraint`` (``Arch -> bool``, e.g. from
:func:`make_constraint`) as keyword arguments. :data:`AGENTS` maps the names
used by ``blox bench`` to classes; :func:`make_agent` builds one by name.
Multi-objective agents (:mod:`.multiobjective`, :mod:`.scalarised`) also take ``objectives`` and
report their non-dominated set with ``front()``; :mod:`.asha` holds the asynchronous agents.
Importing this package loads numpy only: BRP-NAS imports torch/DGL when it first
fits its predictor, LANA imports SciPy's MILP solver when it first solves.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from blox_env.agents.asha import ASHA, AsyncEvolution
from blox_env.agents.base import Agent, BaseAgent, Constraint, make_constraint
from blox_env.agents.brpnas import BRPNAS
from blox_env.agents.donna import DonnaSearch
from blox_env.agents.evolution import LocalSearch, RegularizedEvolution
from blox_env.agents.halving import Hyperband, SuccessiveHalving
from blox_env.agents.lana import LanaSearch, lana_optimum
from blox_env.agents.multiobjective import MORandomSearch, MultiObjectiveAgent, NSGA2Evolution
from blox_env.agents.parallel import AnytimeCurves, anytime_curves, run_parallel_search
from blox_env.agents.random_search import RandomSearch
from blox_env.agents.reinforce import Reinforce
from blox_env.agents.sb3_agent import SB3Agent
from blox_env.agents.scalarised import MOBRPNAS, ParEGOLocalSearch
from blox_env.agents.screening import ProxyScreenedEvolution
from blox_env.errors import InvalidArgumentError
from blox_env.space import SubSpace

__all__ = [
    "AGENTS",
    "ASHA",
    "BRPNAS",
    "MOBRPNAS",
    "Agent",
    "AnytimeCurves",
    "AsyncEvolution",
    "BaseAgent",
    "Constraint",
    "DonnaSearch",
    "Hyperband",
    "LanaSearch",
    "SB3Agent",
    "LocalSearch",
    "MORandomSearch",
    "MultiObjectiveAgent",
    "NSGA2Evolution",
    "ParEGOLocalSearch",
    "ProxyScreenedEvolution",
    "RandomSearch",
    "RegularizedEvolution",
    "Reinforce",
    "SuccessiveHalving",
    "agent_options",
    "anytime_curves",
    "lana_optimum",
    "make_agent",
    "make_constraint",
    "run_parallel_search",
]

#: Agents by name. ``donna`` and ``lana`` also need ``signatures=`` (the harness takes them from a blockwise backend);
#: ``proxy-evolution`` a backend that answers a zero-cost proxy (``blox bench --proxy NAME``).
AGENTS: dict[str, type[BaseAgent]] = {
    "random": RandomSearch,
    "evolution": RegularizedEvolution,
    "proxy-evolution": ProxyScreenedEvolution,
    "local": LocalSearch,
    "reinforce": Reinforce,
    "sh": SuccessiveHalving,
    "hyperband": Hyperband,
    "brpnas": BRPNAS,
    "sb3": SB3Agent,
    "donna": DonnaSearch,
    "lana": LanaSearch,
    "asha": ASHA,
    "async-evolution": AsyncEvolution,
    "mo-random": MORandomSearch,
    "nsga2": NSGA2Evolution,
    "parego": ParEGOLocalSearch,
    "mo-brpnas": MOBRPNAS,
}


def agent_options(name: str) -> tuple[list[str], list[str]]:
    """``(needs, accepts)`` of the agent registered as ``name``: its keyword options beyond ``space`` and ``seed``.

    ``needs`` are the options without a default (``make_agent`` refuses the agent without them), ``accepts`` every
    option it takes, ``needs`` included, in signature order.
    """
    cls = AGENTS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InvalidArgumentError(f"unknown agent {name!r}: allowed {', '.join(AGENTS)}")
    params = [p for p in inspect.signature(cls).parameters.values()
              if p.name not in ("space", "seed") and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [p.name for p in params if p.default is p.empty], [p.name for p in params]


def _takes_any_keyword(cls: type) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls).parameters.values())


def make_agent(name: str, space: SubSpace, *, seed: int | np.random.Generator, **kw: Any) -> BaseAgent:
    """The agent registered as ``name`` in :data:`AGENTS`, built with ``space``, ``seed`` and options ``kw``.

    ``sh``, ``hyperband`` and ``asha`` need ``min_fidelity`` and ``max_fidelity`` (epochs); ``donna`` and
    ``lana`` need ``signatures``. The multi-objective agents (``mo-random``, ``nsga2``, ``parego``,
    ``mo-brpnas``) take ``objectives=`` (default: ``metric`` maximised and ``params`` minimised). A missing or
    unknown option is an :class:`~blox_env.errors.InvalidArgumentError` naming what the agent needs and
    accepts (:func:`agent_options`).
    """
    needs, accepts = agent_options(name)
    cls = AGENTS[name]
    missing = [k for k in needs if k not in kw]
    unknown = [] if _takes_any_keyword(cls) else sorted(k for k in kw if k not in accepts)
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing option{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
        raise InvalidArgumentError(
            f"agent {name!r}: {'; '.join(problems)}. It needs {', '.join(needs) or 'no option'} "
            f"(besides space and seed) and accepts {', '.join(accepts) or 'no option'}")
    return cls(space, seed=seed, **kw)
