"""``make_agent``: a missing or unknown option is an InvalidArgumentError naming what the agent needs and accepts."""

from __future__ import annotations

import re

import pytest

from blox_env.agents import AGENTS, Hyperband, agent_options, make_agent
from blox_env.errors import InvalidArgumentError
from blox_env.space import SubSpace

SPACE = SubSpace(((0, 1, 2), (1, 12, 36), (2, 21, 44)))
NEEDS = {"sh": ["min_fidelity", "max_fidelity"], "hyperband": ["min_fidelity", "max_fidelity"],
         "asha": ["min_fidelity", "max_fidelity"], "donna": ["signatures"], "lana": ["signatures"]}


def _listed(message: str, label: str) -> list[str]:
    """The comma-separated names after ``label`` in ``message`` (up to the next clause)."""
    found = re.search(rf"{label} ([\w, ]+?)(?: \(| and |\.|;|$)", message)
    assert found, (label, message)
    return [n.strip() for n in found.group(1).split(",")]


@pytest.mark.parametrize("name", list(AGENTS))
def test_options_come_from_the_signature(name: str) -> None:
    needs, accepts = agent_options(name)
    assert needs == NEEDS.get(name, []), name
    assert set(needs) <= set(accepts) and {"metric", "constraint"} <= set(accepts), name
    assert "space" not in accepts and "seed" not in accepts


@pytest.mark.parametrize("name", list(AGENTS))
def test_unknown_option_is_refused_and_named(name: str) -> None:
    kw = {k: 1 for k in NEEDS.get(name, [])} | {"bogus": 1, "min_fidelty": 2}
    with pytest.raises(InvalidArgumentError) as err:
        make_agent(name, SPACE, seed=0, **kw)
    message = str(err.value)
    assert repr(name) in message and "missing" not in message, message
    assert _listed(message, "unknown options") == ["bogus", "min_fidelty"], message
    needs, accepts = agent_options(name)
    assert _listed(message, "accepts") == accepts, message
    assert _listed(message, "needs") == (needs or ["no option"]), message


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_missing_option_is_refused_and_named(name: str) -> None:
    needs, accepts = agent_options(name)
    with pytest.raises(InvalidArgumentError) as err:
        make_agent(name, SPACE, seed=0)
    message = str(err.value)
    assert _listed(message, "missing options?") == needs and _listed(message, "needs") == needs, message
    assert _listed(message, "accepts") == accepts, message
    if len(needs) > 1:  # one option given, the other still missing
        with pytest.raises(InvalidArgumentError, match=rf"missing option {needs[1]}\b"):
            make_agent(name, SPACE, seed=0, **{needs[0]: 1})


def test_missing_and_unknown_together() -> None:
    with pytest.raises(InvalidArgumentError, match="missing option max_fidelity; unknown option max_epochs"):
        make_agent("hyperband", SPACE, seed=0, min_fidelity=1, max_epochs=9)


def test_hyperband_without_fidelities_is_not_a_raw_type_error() -> None:
    with pytest.raises(InvalidArgumentError, match="hyperband.*min_fidelity, max_fidelity"):
        make_agent("hyperband", SPACE, seed=0)
    agent = make_agent("hyperband", SPACE, seed=0, min_fidelity=1, max_fidelity=9, eta=3)
    assert isinstance(agent, Hyperband)


def test_unknown_agent() -> None:
    with pytest.raises(InvalidArgumentError, match="unknown agent 'nope': allowed random"):
        make_agent("nope", SPACE, seed=0)
    with pytest.raises(InvalidArgumentError, match="unknown agent"):
        agent_options("nope")
