"""Gymnasium environments of the BLOX space (registered on ``import blox_env``).

- ``Blox-v0`` (:mod:`.sequential`): one stage per step.
- ``BloxOneShot-v0`` (:mod:`.oneshot`): the whole model in one step.

Both derive from :class:`.base.BloxSearchEnv` (arguments, the search run, masks) and have a
numpy-batched vector version (:mod:`.vector`) used by
``gym.make_vec(..., vectorization_mode="vector_entry_point")``. :mod:`.wrappers` holds the
one-hot observation and the search-trace recorder.
"""

from __future__ import annotations

__all__ = ["register_envs"]


def register_envs() -> None:
    """Register the environment ids with Gymnasium (idempotent)."""
    import gymnasium as gym

    for env_id, module, cls, vec in (
        ("Blox-v0", "sequential", "BloxEnv", "BloxVectorEnv"),
        ("BloxOneShot-v0", "oneshot", "BloxOneShotEnv", "BloxOneShotVectorEnv"),
    ):
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=f"blox_env.envs.{module}:{cls}",
            vector_entry_point=f"blox_env.envs.vector:{vec}",
        )
