"""``SurrogateReward``'s ``surrogate_spearman``: a held-out rank correlation, or left out with a reason."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from scipy.stats import spearmanr

import blox_env  # noqa: F401 - registers the environments
from blox_env.errors import InvalidArgumentError
from blox_env.rewards.surrogate import MIN_HOLDOUT, SurrogateReward
from blox_env.space import Arch, SubSpace

SPACE = SubSpace(((0, 9, 30), (1, 12, 36), (2, 21, 44)))
ARCHS = [Arch.from_index(int(i)) for i in SPACE.indices()]


class Sum:
    """A stand-in predictor: the sum of the blocks."""

    def predict(self, archs: list[Arch]) -> np.ndarray:
        return np.array([float(sum(a.blocks)) for a in archs])


def _metrics(backend: SurrogateReward) -> dict[str, float]:
    return backend.evaluate(ARCHS[0]).metrics


def test_computed_on_held_out_models() -> None:
    y = np.array([float(sum(a.blocks)) + (5.0 if i % 4 == 0 else 0.0) for i, a in enumerate(ARCHS)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend = SurrogateReward(Sum(), space=SPACE, holdout=(ARCHS, y))
    expected = spearmanr(Sum().predict(ARCHS), y).statistic
    assert _metrics(backend)["surrogate_spearman"] == pytest.approx(expected) and 0 < expected < 1
    assert backend.spearman_note == f"computed on {len(ARCHS)} held-out models"


def test_given_number_is_reported() -> None:
    backend = SurrogateReward(Sum(), space=SPACE, holdout_spearman=0.8)
    assert _metrics(backend)["surrogate_spearman"] == 0.8


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({}, "no held-out models given"),
    ({"holdout": (ARCHS[:3], [1.0, np.nan, 2.0])}, f"too few labelled held-out models: 2 with a finite value, "
                                                    f"at least {MIN_HOLDOUT}"),
    ({"holdout": (ARCHS[:4], [1.0, 1.0, 1.0, 1.0])}, "undefined on the held-out models"),
])
def test_omitted_with_the_reason(kwargs: dict, reason: str) -> None:
    with pytest.warns(UserWarning, match="surrogate_spearman omitted") as record:
        backend = SurrogateReward(Sum(), space=SPACE, **kwargs)
    assert reason in backend.spearman_note and reason in str(record[0].message)
    metrics = _metrics(backend)
    assert "surrogate_spearman" not in metrics and all(not math.isnan(v) for v in metrics.values())


def test_in_the_env_info() -> None:
    y = Sum().predict(ARCHS) ** 2
    env = gym.make("BloxOneShot-v0", reward="surrogate", predictor=Sum(), space=SPACE, holdout=(ARCHS, y))
    env.reset(seed=0)
    *_, info = env.step(np.array([0, 0, 0]))
    assert info["source"] == "surrogate" and info["metrics"]["surrogate_spearman"] == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs", [{"holdout_spearman": 1.5}, {"holdout_spearman": 0.5, "holdout": ([], [])},
                                    {"holdout": (ARCHS[:2], [1.0])}, {"holdout": 3}])
def test_bad_holdout_is_refused(kwargs: dict) -> None:
    with pytest.raises(InvalidArgumentError, match="holdout"):
        SurrogateReward(Sum(), space=SPACE, **kwargs)
