"""Wrappers RL and NAS users want on the BLOX envs.

- :class:`OneHotObservation`: the ``MultiDiscrete`` observation as one flat
  one-hot ``Box`` (for MLP policies that do not one-hot by themselves).
- :class:`RecordSearchTrace`: every evaluation (arch, metrics, cost, cumulative
  cost, wall time) appended to a JSON-lines file, kept in memory as a list, and
  written to a store's ``traces/<name>`` with :meth:`RecordSearchTrace.save_to_store`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from blox_env.errors import InvalidArgumentError

__all__ = ["OneHotObservation", "RecordSearchTrace", "TRACE_FIELDS"]

TRACE_FIELDS = ("step", "arch_index", "arch_hash", "blocks", "metrics", "reward", "cost", "full_cost",
                "cumulative_cost", "cost_unit", "cost_imputed", "fidelity", "seed", "source", "wall_time_s")


class OneHotObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Flatten ``MultiDiscrete([n_0, ..., n_k])`` into a one-hot ``Box`` of size ``sum(n_i)``."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        if not isinstance(space, spaces.MultiDiscrete):
            raise InvalidArgumentError(f"OneHotObservation needs a MultiDiscrete observation space, got {space}")
        self._nvec = space.nvec.astype(np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(self._nvec)[:-1]])
        self.observation_space = spaces.Box(0.0, 1.0, shape=(int(self._nvec.sum()),), dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        out = np.zeros(self.observation_space.shape, dtype=np.float32)
        out[self._offsets + np.asarray(observation, dtype=np.int64)] = 1.0
        return out


class RecordSearchTrace(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Record every evaluation of the wrapped env; optionally append each as a JSON line to ``path``.

    ``trace`` (a list of dicts with :data:`TRACE_FIELDS`) survives episode resets
    and is cleared when a new search run starts (``reset(seed=...)`` or
    ``options={"new_run": True}``). Wall time counts from the first reset of the run.
    """

    def __init__(self, env: gym.Env, path: str | os.PathLike[str] | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, path=None if path is None else str(path))
        gym.Wrapper.__init__(self, env)
        self.path = Path(path) if path is not None else None
        if self.path is not None and self.path.suffix not in (".jsonl", ".json"):
            raise InvalidArgumentError(f"trace path must end with .jsonl, got {self.path}")
        self.trace: list[dict[str, Any]] = []
        self._start: float | None = None
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        if seed is not None or (options or {}).get("new_run") or self._start is None:
            self.trace = []
            self._start = time.perf_counter()
            self._steps = 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        if info.get("evaluated"):
            record = {
                "step": self._steps,
                "arch_index": int(info["arch_index"]),
                "arch_hash": info["arch_hash"],
                "blocks": list(info["blocks"]),
                "metrics": {k: float(v) for k, v in info["metrics"].items()},
                "reward": float(reward),
                "cost": float(info["cost"]),
                "full_cost": float(info["full_cost"]),
                "cumulative_cost": float(info["cumulative_cost"]),
                "cost_unit": info["cost_unit"],
                "cost_imputed": bool(info.get("cost_imputed", False)),  # charged by the missing_cost rule
                "fidelity": int(info["fidelity"]),
                "seed": info["seed"],
                "source": info["source"],
                "wall_time_s": time.perf_counter() - (self._start or time.perf_counter()),
            }
            self.trace.append(record)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")
        return obs, reward, terminated, truncated, info

    def save_to_store(self, store: Any, name: str) -> None:
        """Write the current trace into ``traces/<name>`` of a store opened for writing."""
        store.write_trace(name, self.trace, attrs={"env": self.env.spec.id if self.env.spec else "",
                                                    "cost_unit": self.trace[0]["cost_unit"] if self.trace else ""})
