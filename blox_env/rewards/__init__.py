"""Reward backends (:mod:`.tabular`, :mod:`.blockwise`, :mod:`.live`, :mod:`.surrogate`) and reward functions."""

from __future__ import annotations

from blox_env.rewards.tabular import COST_UNITS, Evaluation, RewardBackend, TabularReward

__all__ = ["COST_UNITS", "Evaluation", "RewardBackend", "TabularReward"]
