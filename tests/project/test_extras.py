"""A feature whose extra is missing raises one clear MissingDependencyError at the point of use."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import pytest
from typer.testing import CliRunner

import blox_env  # noqa: F401 - registers the ids
from blox_env.errors import BloxError, MissingDependencyError
from blox_env.extras import EXTRAS, missing_modules, require


@pytest.fixture
def hide(monkeypatch: pytest.MonkeyPatch):
    """Make the named top-level modules look uninstalled to ``importlib.util.find_spec``."""
    real = importlib.util.find_spec

    def _hide(*names: str) -> None:
        def fake(name: str, *args: object, **kwargs: object):
            return None if name.split(".")[0] in names else real(name, *args, **kwargs)

        monkeypatch.setattr(importlib.util, "find_spec", fake)

    return _hide


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_each_extra_names_the_pip_command(hide, extra: str) -> None:
    hide(*EXTRAS[extra])
    with pytest.raises(MissingDependencyError, match=rf'pip install "blox-env\[{extra}\]"') as info:
        require(extra, feature="some feature")
    assert isinstance(info.value, ImportError) and isinstance(info.value, BloxError)
    assert "some feature" in str(info.value)
    assert missing_modules(extra) == list(EXTRAS[extra])


def test_installed_extras_pass() -> None:
    require("train", feature="x")  # torch and scikit-learn are installed in the test environment


def test_unknown_extra_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown extra"):
        missing_modules("gpu")


def test_live_reward_without_torch(hide) -> None:
    hide("torch")
    with pytest.raises(MissingDependencyError, match=r"reward='live'.*blox-env\[train\]"):
        gym.make("Blox-v0", reward="live")


def test_brpnas_agent_without_dgl(hide) -> None:
    from blox_env.agents import make_agent
    from blox_env.space import SubSpace

    hide("dgl")
    with pytest.raises(MissingDependencyError, match=r"BRP-NAS.*blox-env\[predictors\]"):
        make_agent("brpnas", space=SubSpace(((0, 1), (0, 1), (0, 1))), seed=0)


def test_sb3_agent_without_stable_baselines3(hide) -> None:
    from blox_env.agents import SB3Agent
    from blox_env.space import SubSpace

    hide("stable_baselines3")
    with pytest.raises(MissingDependencyError, match=r"blox-env\[rl\]"):
        SB3Agent(SubSpace(((0, 1), (0, 1), (0, 1))), seed=0)


@pytest.mark.parametrize(("args", "extra"), [
    (["train", "50000"], "train"),
    (["build", "/tmp/never-created.zarr", "--blocks", "1,9"], "train"),
    (["latency"], "train"),
    (["predictors", "eval"], "predictors"),
])
def test_cli_commands_without_their_extra(hide, args: list[str], extra: str) -> None:
    from blox_env.cli import app

    hide("torch")
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, MissingDependencyError)
    assert f'blox-env[{extra}]' in str(result.exception)
