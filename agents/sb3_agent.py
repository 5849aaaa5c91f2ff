"""``SB3Agent``: any Stable-Baselines3 algorithm as an ask/tell search agent.

SB3 owns its training loop (``model.learn`` calls ``env.step``), while the
harness owns the evaluation loop. The bridge runs ``learn`` in a worker thread
on a Blox-v0-shaped environment (``Discrete(K)`` per stage, the same
observation); when the policy completes a model, the bridge hands the arch to
``ask()`` and blocks until ``tell()`` returns the evaluation, whose objective
(divided by 100 for accuracies) becomes the reward. So every evaluation SB3
asks for goes through the harness's backend and budget. Models outside the
constraint get reward 0 without being evaluated, as in the envs. Call
``close()`` (or let the harness do it) to stop the worker.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from blox_env.agents.base import BaseAgent
from blox_env.datasets.store.schema import is_accuracy
from blox_env.envs.base import observation_space, stage_observation
from blox_env.errors import InvalidArgumentError
from blox_env.space import Arch, SubSpace

__all__ = ["SB3Agent"]

_STOP = object()


class _BridgeEnv(gym.Env):
    """Blox-v0-shaped env (same spaces and observation) whose final reward is ``exchange(arch)``: the agent's tell."""

    def __init__(self, space: SubSpace, exchange: Callable[[Arch], float]) -> None:
        super().__init__()
        self.space = space
        self.exchange = exchange
        self.action_space = spaces.Discrete(max(space.sizes))
        self.observation_space = observation_space(space.sizes)
        self._chosen: list[int] = []

    def _obs(self) -> np.ndarray:
        return stage_observation(self.space.sizes, self._chosen)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._chosen = []
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        stage = len(self._chosen)
        a = int(np.asarray(action).reshape(()))
        self._chosen.append(min(a, self.space.sizes[stage] - 1))  # Discrete(max K): clip on smaller stages
        if len(self._chosen) < 3:
            return self._obs(), 0.0, False, False, {}
        arch = self.space.arch(tuple(self._chosen))
        return self._obs(), self.exchange(arch), True, False, {}


class SB3Agent(BaseAgent):
    """An SB3 algorithm (``"PPO"``, ``"A2C"``, ``"DQN"`` or a class) searching through ask/tell."""

    name = "sb3"
    parallel_asks = False  # the learner waits for each reward: one evaluation outstanding at a time

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator, algo: Any = "PPO",
                 algo_kwargs: dict[str, Any] | None = None, metric: str = "val_top1", constraint: Any = None) -> None:
        super().__init__(space, seed=seed, metric=metric, constraint=constraint)
        from blox_env.extras import require

        require("rl", feature="SB3Agent (Stable-Baselines3)")
        import stable_baselines3 as sb3

        cls = getattr(sb3, algo, None) if isinstance(algo, str) else algo
        if cls is None or not hasattr(cls, "learn"):
            raise InvalidArgumentError(
                f"algo must be an SB3 algorithm name (PPO, A2C, DQN, ...) or class, got {algo!r}"
            )
        kwargs = {"policy_kwargs": {"net_arch": [64]}, "device": "cpu", **(algo_kwargs or {})}
        if cls.__name__ == "PPO":
            kwargs = {"n_steps": 48, "batch_size": 24, **kwargs}
        self._asks: queue.Queue = queue.Queue(maxsize=1)
        self._tells: queue.Queue = queue.Queue(maxsize=1)
        seed_int = int(self.rng.integers(2**31 - 1))
        self.model = cls("MlpPolicy", _BridgeEnv(space, self._exchange), seed=seed_int, verbose=0, **kwargs)
        self._thread = threading.Thread(target=self._learn, daemon=True, name="sb3-agent")
        self._started = False
        self._error: BaseException | None = None

    def _learn(self) -> None:
        import torch

        torch.set_num_threads(1)
        try:
            self.model.learn(total_timesteps=10**9)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - surfaced to the caller of ask()
            self._error = exc
            self._asks.put(_STOP)

    def _exchange(self, arch: Arch) -> float:
        """Worker side: offer ``arch``; wait for its reward."""
        if not self.allowed(arch):
            return 0.0
        self._asks.put(arch)
        value = self._tells.get()
        if value is _STOP:
            raise _Stopped
        return float(value)

    def ask(self) -> Arch:
        if not self._started:
            self._started = True
            self._thread.start()
        arch = self._asks.get()
        if arch is _STOP:
            raise RuntimeError(f"the SB3 learner stopped: {self._error!r}") from self._error
        return arch

    def _observe(self, arch: Arch, value: float, evaluation: Any) -> None:
        reward = value / 100.0 if is_accuracy(self.metric) else value
        self._tells.put(0.0 if not np.isfinite(reward) else reward)

    def close(self) -> None:
        """Stop the learner thread (it is waiting for a tell)."""
        if self._started and self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._tells.put(_STOP, timeout=10)  # waits for the worker to take the last reward first
            self._thread.join(timeout=10)


class _Stopped(Exception):
    """Raised inside the learner thread to end ``learn`` when the agent is closed."""
