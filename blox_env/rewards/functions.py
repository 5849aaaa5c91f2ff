"""Ready-made reward functions: metrics dict (accuracies in percent) -> scalar reward.

Pass one as ``reward_fn=`` to ``gym.make("Blox-v0", ...)``. Each is a small
frozen dataclass, so it pickles (process pools) and prints well, and each works
on scalars and on numpy arrays alike (the vector envs pass arrays).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from blox_env.errors import InvalidArgumentError

__all__ = ["Accuracy", "MnasReward", "PenalizedAccuracy"]


def _need(metrics: dict[str, Any], name: str) -> Any:
    if name not in metrics:
        raise InvalidArgumentError(f"reward needs metric {name!r}; the evaluation has {sorted(metrics)}")
    return np.asarray(metrics[name], dtype=np.float64)


def _out(value: np.ndarray) -> Any:
    return float(value) if value.ndim == 0 else value


@dataclass(frozen=True)
class Accuracy:
    """``metric / 100`` (a fraction), the default reward."""

    metric: str = "val_top1"

    def __call__(self, metrics: dict[str, Any]) -> Any:
        return _out(_need(metrics, self.metric) / 100.0)


@dataclass(frozen=True)
class MnasReward:
    """MnasNet-style soft constraint: ``acc * (cost / target) ** w`` with ``w = alpha`` above target, else ``beta``."""

    cost_metric: str = "flops"
    target: float = 2.0e8
    alpha: float = -0.07
    beta: float = -0.07
    metric: str = "val_top1"

    def __post_init__(self) -> None:
        if not self.target > 0:
            raise InvalidArgumentError(f"target must be positive, got {self.target}")

    def __call__(self, metrics: dict[str, Any]) -> Any:
        acc = _need(metrics, self.metric) / 100.0
        ratio = _need(metrics, self.cost_metric) / self.target
        return _out(acc * ratio ** np.where(ratio > 1, self.alpha, self.beta))


@dataclass(frozen=True)
class PenalizedAccuracy:
    """``acc - weight * max(0, cost / limit - 1)``: linear penalty above a limit."""

    cost_metric: str = "params"
    limit: float = 2.5e6
    weight: float = 1.0
    metric: str = "val_top1"

    def __post_init__(self) -> None:
        if not self.limit > 0 or not math.isfinite(self.weight):
            raise InvalidArgumentError(f"limit must be positive and weight finite, got {self.limit}, {self.weight}")

    def __call__(self, metrics: dict[str, Any]) -> Any:
        acc = _need(metrics, self.metric) / 100.0
        return _out(acc - self.weight * np.maximum(0.0, _need(metrics, self.cost_metric) / self.limit - 1.0))
