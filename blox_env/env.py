"""Environment entry points (the envs live one per module in :mod:`blox_env.envs`).

``gym.make("Blox-v0")`` / ``gym.make("BloxOneShot-v0")`` after ``import blox_env``;
the classes are re-exported here for direct use.
"""

from __future__ import annotations

from blox_env.envs.oneshot import BloxOneShotEnv
from blox_env.envs.sequential import BloxEnv
from blox_env.envs.vector import BloxOneShotVectorEnv, BloxVectorEnv

__all__ = ["BloxEnv", "BloxOneShotEnv", "BloxOneShotVectorEnv", "BloxVectorEnv"]
