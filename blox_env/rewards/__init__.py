"""Reward backends: the Protocol (:mod:`.base`), every backend and the reward functions.

- :mod:`.base`: :class:`Evaluation`, the :class:`RewardBackend` Protocol, :class:`BaseReward` (its defaults),
  cost units and the missing-cost primitives, :class:`SharedCharges` (work charged once per search run);
- :mod:`.tabular` (store lookups), :mod:`.blockwise` (blockwise tables), :mod:`.live` (real training,
  needs the ``train`` extra), :mod:`.surrogate` (a fitted predictor);
- :mod:`.factory`: :func:`make_backend` (what ``gym.make(..., reward=...)`` builds), :func:`make_tabular_backend`;
- :mod:`.functions`: ready-made reward functions (``reward_fn=``).
"""

from __future__ import annotations

from blox_env.rewards.base import COST_UNITS, BaseReward, Evaluation, RewardBackend, SharedCharges
from blox_env.rewards.factory import BackendSpec, make_backend, make_tabular_backend
from blox_env.rewards.tabular import TabularReward

__all__ = ["COST_UNITS", "BackendSpec", "BaseReward", "Evaluation", "RewardBackend", "SharedCharges",
           "TabularReward", "make_backend", "make_tabular_backend"]
