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
    "RandomSearch",
    "RegularizedEvolution",
    "Reinforce",
    "SuccessiveHalving",
    "anytime_curves",
    "lana_optimum",
    "make_agent",
    "make_constraint",
    "run_parallel_search",
]

#: Agents by name. ``donna`` and ``lana`` also need ``signatures=`` (the harness takes them from a blockwise backend).
AGENTS: dict[str, type[BaseAgent]] = {
    "random": RandomSearch,
    "evolution": RegularizedEvolution,
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


def make_agent(name: str, space: SubSpace, *, seed: int | np.random.Generator, **kw: Any) -> BaseAgent:
    """The agent registered as ``name`` in :data:`AGENTS`, built with ``space``, ``seed`` and options ``kw``.

    ``sh``, ``hyperband`` and ``asha`` need ``min_fidelity`` and ``max_fidelity`` (epochs). The
    multi-objective agents (``mo-random``, ``nsga2``, ``parego``, ``mo-brpnas``) take ``objectives=``
    (default: ``metric`` maximised and ``params`` minimised).
    """
    cls = AGENTS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InvalidArgumentError(f"unknown agent {name!r}: allowed {', '.join(AGENTS)}")
    return cls(space, seed=seed, **kw)
