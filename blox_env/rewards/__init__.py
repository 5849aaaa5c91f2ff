"""Reward backends: the Protocol (:mod:`.base`), every backend and the reward functions.

- :mod:`.base`: :class:`Evaluation`, the :class:`RewardBackend` Protocol, :class:`BaseReward` (its defaults)
  (cost units, missing costs and shared work are the budget rule's: :mod:`blox_env.runs.budget`);
- :mod:`.tabular` (store lookups), :mod:`.blockwise` (blockwise tables), :mod:`.live` (real training,
  needs the ``train`` extra), :mod:`.surrogate` (a fitted predictor);
- :mod:`.factory`: :func:`make_backend` (what ``gym.make(..., reward=...)`` builds), :func:`make_tabular_backend`;
- :mod:`.functions`: ready-made reward functions (``reward_fn=``).
"""

from __future__ import annotations

from blox_env.rewards.base import BaseReward, RewardBackend
from blox_env.rewards.factory import BackendSpec, make_backend, make_tabular_backend
from blox_env.rewards.tabular import TabularReward

__all__ = ["BackendSpec", "BaseReward", "RewardBackend",
           "TabularReward", "make_backend", "make_tabular_backend"]
