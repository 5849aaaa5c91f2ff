"""``BloxOneShot-v0``: pick all three blocks in one step; one evaluation per episode.

Spaces
    action: ``MultiDiscrete([K0, K1, K2])``, the local block id of every stage.
    observation: ``MultiDiscrete([K0+1, K1+1, K2+1, 4])`` as in ``Blox-v0``:
    all unset with cursor 0 after reset, the chosen blocks with cursor 3 after the step.
Rewards, budget, info and arguments
    as ``Blox-v0`` (see :mod:`blox_env.envs.sequential`): the step evaluates the
    model and ends the episode (``terminated=True``); ``info["action_mask"]``
    holds one mask per stage (models allowed by a ``constraint`` exist with that
    block), as an int8 array ``[3, K]``.
    With ``objectives=`` (e.g. ``("val_top1", "params")``) the reward is a
    ``float32`` vector, every component higher-is-better (minimised objectives
    negated), with ``reward_space`` and ``reward_dim`` as MO-Gymnasium expects;
    ``info["objectives"]`` holds the raw values (see :mod:`blox_env.envs.sequential`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import error, spaces

from blox_env.envs.base import BloxSearchEnv, observation_space, stage_observation
from blox_env.envs.checks import check_reset
from blox_env.errors import InvalidActionError

__all__ = ["BloxOneShotEnv"]


def _as_triple(action: Any) -> tuple[int, int, int]:
    """Three integer block ids, or InvalidActionError."""
    if type(action) is np.ndarray and action.shape == (3,) and action.dtype.kind in "iu":
        return tuple(action.tolist())  # type: ignore[return-value]
    try:
        a = np.asarray(action)
        ok = a.shape == (3,) and a.dtype.kind in "iu"
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidActionError(f"action must be 3 integer block ids (one per stage), got {action!r}")
    return (int(a[0]), int(a[1]), int(a[2]))


class BloxOneShotEnv(BloxSearchEnv):
    """BloxOneShot-v0 (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.action_space = spaces.MultiDiscrete(list(self.space_sizes))
        self.observation_space = observation_space(self.space_sizes)
        self._unset = stage_observation(self.space_sizes, ())
        self._masks = np.stack([self.stage_mask(s, ()) for s in range(3)])
        self._done = True
        self._shown: tuple[int, ...] = ()  # the last model picked (the rgb_array picture)

    def _render_state(self) -> tuple[tuple[int, ...], int | None]:
        return self._shown, None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        seed, new_run = check_reset(seed, options)
        super().reset(seed=seed)
        self._reset_run(seed, new_run)
        self._done = False
        self._shown = ()
        self.last_info = {"action_mask": self._masks.copy(), **self.run_info()}
        return self._unset.copy(), self.last_info

    def step(self, action: Any) -> tuple[np.ndarray, float | np.ndarray, bool, bool, dict[str, Any]]:
        if self._done:
            raise error.ResetNeeded("the episode has ended: call reset() before step()")
        local = _as_triple(action)
        k0, k1, k2 = self.space_sizes
        if not (0 <= local[0] < k0 and 0 <= local[1] < k1 and 0 <= local[2] < k2):
            for s in range(3):
                self._check_block(s, local[s])
        reward, truncated, info = self._evaluate(local)
        self._done = True
        self._shown = local
        info["action_mask"] = self._masks.copy()
        self.last_info = info
        return stage_observation(self.space_sizes, local), reward, True, truncated, info
