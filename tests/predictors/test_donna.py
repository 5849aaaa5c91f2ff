"""``DonnaSearch`` needs scikit-learn (its ridge predictor): without it, one MissingDependencyError at construction."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from blox_env.errors import MissingDependencyError
from blox_env.space import SubSpace

SPACE = SubSpace(((0, 1), (0, 1), (0, 1)))


def test_donna_without_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    from blox_env.agents import make_agent

    real = importlib.util.find_spec

    def fake(name: str, *args: object, **kwargs: object):  # noqa: ANN202 - find_spec's stand-in
        return None if name.split(".")[0] == "sklearn" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(MissingDependencyError, match=r"DonnaSearch.*sklearn.*blox-env\[predictors\]") as info:
        make_agent("donna", SPACE, seed=0, signatures=np.zeros((3, 45)))
    assert isinstance(info.value, ImportError)


def test_donna_with_scikit_learn() -> None:
    pytest.importorskip("sklearn")
    from blox_env.agents import make_agent

    agent = make_agent("donna", SPACE, seed=0, signatures=np.zeros((3, 45)))
    assert agent.ask() in SPACE
