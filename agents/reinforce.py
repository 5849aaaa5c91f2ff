"""REINFORCE over the three stage choices (the classic RL-NAS baseline, as in NAS-Bench-101/201).

The policy is a product of independent categorical distributions, one per
stage, over that stage's blocks in the space, parameterised by logits
``theta_s`` (all zero at the start: uniform). After each told result the
reward ``r = objective / 100`` (accuracies are percentages; NaN counts as 0)
drives one plain gradient-ascent step::

    theta_s += lr * (r - b) * (onehot(a_s) - softmax(theta_s)) + entropy * dH/dtheta_s

where ``b`` is an exponential moving average of past rewards (initialised to the
first reward, then ``b = decay * b + (1 - decay) * r`` after each update) and
``H`` the policy's entropy. With a constraint, asks are drawn from the policy
by rejection (bounded tries, then a random feasible model); the update still
uses the score function of the unconstrained policy (standard practice; the
bias only matters for very tight constraints).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from blox_env.agents.base import BaseAgent
from blox_env.errors import InvalidArgumentError
from blox_env.space import Arch, SubSpace

if TYPE_CHECKING:
    from blox_env.rewards.base import Evaluation

__all__ = ["Reinforce"]

_POLICY_TRIES = 256


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _number(value: object, name: str, *, low: float, high: float | None = None, open_low: bool = False) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > low if open_low else v >= low) and (high is None or v <= high) and math.isfinite(v)
    if not ok:
        span = f"{'(' if open_low else '['}{low:g}, {'inf)' if high is None else f'{high:g}]'}"
        raise InvalidArgumentError(f"{name} must be a number in {span}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


class Reinforce(BaseAgent):
    """Policy-gradient search with independent per-stage categorical logits and an EMA baseline."""

    name = "reinforce"

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator, lr: float = 0.1,
                 baseline_decay: float = 0.95, entropy: float = 0.0, metric: str = "val_top1",
                 constraint: Callable[[Arch], bool] | None = None) -> None:
        super().__init__(space, seed=seed, metric=metric, constraint=constraint)
        self.lr = _number(lr, "lr", low=0.0, open_low=True)
        self.baseline_decay = _number(baseline_decay, "baseline_decay", low=0.0, high=1.0)
        self.entropy = _number(entropy, "entropy", low=0.0)
        self.logits = [np.zeros(k) for k in space.sizes]
        self.baseline: float | None = None

    def probabilities(self) -> list[np.ndarray]:
        """The policy: per stage, the probability of each block of the space (in ``space.blocks`` order)."""
        return [_softmax(z) for z in self.logits]

    def ask(self) -> Arch:
        probs = self.probabilities()
        for _ in range(_POLICY_TRIES):
            local = [int(self.rng.choice(len(p), p=p)) for p in probs]
            arch = self.space.arch(local)
            if self.constraint is None or self.constraint(arch):
                return arch
        return self.sample()

    def _observe(self, arch: Arch, value: float, evaluation: Evaluation) -> None:
        if arch not in self.space:
            return  # not an action of this policy: nothing to learn from
        reward = 0.0 if math.isnan(value) else value / 100.0
        if self.baseline is None:
            self.baseline = reward
        advantage = reward - self.baseline
        for s, k in enumerate(self.space.local(arch)):
            p = _softmax(self.logits[s])
            grad = -p
            grad[k] += 1.0
            step = self.lr * advantage * grad
            if self.entropy:
                h = -float(np.sum(p * np.log(p + 1e-12)))
                step += self.entropy * (-p * (np.log(p + 1e-12) + h))
            self.logits[s] = self.logits[s] + step
        self.baseline = self.baseline_decay * self.baseline + (1.0 - self.baseline_decay) * reward
