"""Numpy-batched vector versions of Blox-v0 and BloxOneShot-v0 (tabular rewards only).

``gym.make_vec("BloxOneShot-v0", num_envs=1024, vectorization_mode="vector_entry_point",
benchmark=...)`` evaluates all sub-environments' models with a handful of array
operations per step instead of a Python loop. Each sub-environment has its own
search run (cost ledger, budget, best-so-far) with the same rules as the scalar
envs. Autoreset mode is *same step*: a finished episode's last observation is
in ``info["final_obs"]`` and the returned observation is already the next
episode's first. ``reward_fn`` receives a dict of arrays.

Info keys of a step (arrays over sub-envs; ``_<key>`` masks mark where a key
is meaningful): ``arch_index``, ``cost``, every metric (``val_top1``,
``test_top1``, ``train_time_s``, ``params``, ...), ``cumulative_cost``,
``budget_left``, ``evaluations``, ``best_so_far``, ``budget_exhausted``, ``cost_imputed``
(True where ``missing_cost="median" | "max"`` replaced a missing recorded cost; the
rule is ``info["cost_rule"]``). With the default ``missing_cost="error"`` a step whose
models include one without a recorded cost raises ``MissingCostError`` naming it and
changes no sub-env's run. Arguments are validated as in the scalar envs;
``objectives=`` (vector rewards) is refused with ``InvalidArgumentError``: use the
scalar envs (in ``mo_gymnasium.wrappers.vector.MOSyncVectorEnv`` for a batch).
Repeat tracking keeps one byte per (sub-env, model): 93 MB at 1024 sub-envs on
the full 91,125-model store, 0.7 MB on Blox-mini.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from blox_env.envs.base import constraint_grid, observation_space, proxy_metric, reward_value
from blox_env.envs.checks import check_reset
from blox_env.envs.config import EnvConfig
from blox_env.errors import InvalidActionError, InvalidArgumentError, InvalidArgumentTypeError
from blox_env.rewards.base import RewardBackend
from blox_env.rewards.factory import make_backend
from blox_env.runs import PROXY_FIDELITY, BatchedRuns

__all__ = ["BloxOneShotVectorEnv", "BloxVectorEnv"]


class _BatchedSearch(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, config: EnvConfig | None = None, *, backend: Any = None,
                 **kwargs: Any) -> None:
        if isinstance(num_envs, (bool, np.bool_)) or not isinstance(num_envs, (int, np.integer)):
            raise InvalidArgumentTypeError(f"num_envs must be a positive integer, got {num_envs!r}")
        if num_envs < 1:
            raise InvalidArgumentError(f"num_envs must be a positive integer, got {num_envs!r}")
        if config is not None and kwargs:
            raise InvalidArgumentError(f"pass either config= or keyword options, not both (got {sorted(kwargs)})")
        cfg = self.config = config if config is not None else EnvConfig.from_kwargs(**kwargs)
        if not isinstance(cfg, EnvConfig):
            raise InvalidArgumentTypeError(f"config must be an EnvConfig, got {cfg!r}")
        if cfg.objectives is not None:
            raise InvalidArgumentError("objectives= (vector rewards) is not supported by the numpy-batched vector env: "
                                       "use gym.make('Blox-v0' or 'BloxOneShot-v0', objectives=...) and, for many "
                                       "sub-envs, mo_gymnasium.wrappers.vector.MOSyncVectorEnv over them")
        if cfg.render_mode is not None:
            raise InvalidArgumentError(f"the numpy-batched vector envs do not render (render_mode must be None, got "
                                       f"{cfg.render_mode!r}): render a scalar env")
        self.normalize = cfg.normalize
        self.violation_reward = float(cfg.violation_reward)
        self.missing_cost = cfg.missing_cost
        if backend is None:
            backend = make_backend(cfg.backend_spec())
        elif not isinstance(backend, RewardBackend):
            raise InvalidArgumentTypeError(f"backend must implement blox_env.rewards.RewardBackend (the vector envs "
                                           f"need the normal tabular one), got {backend!r}")
        if not backend.batched:
            raise InvalidArgumentError(f"the vector envs need the normal tabular reward backend, got "
                                       f"{type(backend).__name__} (live, surrogate and blockwise backends charge "
                                       "shared work once per run or evaluate one model at a time)")
        self.num_envs = int(num_envs)
        self.backend = backend
        self.fidelity = backend.fidelity(cfg.epochs)
        self.metric = proxy_metric(backend, cfg) if self.fidelity == PROXY_FIDELITY else cfg.metric
        self.reward_fn = cfg.reward_fn
        self.sizes = np.array(backend.space.sizes)
        self._allowed: np.ndarray | None = constraint_grid(backend, cfg.constraint)
        self.single_observation_space = observation_space(backend.space.sizes)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.run = BatchedRuns(self.num_envs, n_rows=backend.n_rows, budget=cfg.budget, cost_unit=cfg.cost_unit,
                               charge_repeats=cfg.charge_repeats, missing_cost=cfg.missing_cost)

    # ------------------------------------------------------------------ runs
    @property
    def budget(self) -> float | None:
        return self.run.budget

    @property
    def cost_unit(self) -> str:
        return self.run.cost_unit

    @property
    def spent(self) -> np.ndarray:
        """Cumulative cost of each sub-env's search run."""
        return self.run.spent

    @property
    def evaluations(self) -> np.ndarray:
        return self.run.evaluations

    def _reset_common(self, seed: int | None, options: dict[str, Any] | None) -> None:
        seed, new_run = check_reset(seed, options)
        if seed is not None:
            self._np_random, self._np_random_seed = np.random.default_rng(seed), seed
        if seed is not None or new_run:
            self.run.new_runs(np.ones(self.num_envs, dtype=bool))

    def _run_info(self, info: dict[str, Any]) -> dict[str, Any]:
        info.update(self.run.state())
        return info

    # ------------------------------------------------------------------ evaluation
    def _reward(self, metrics: dict[str, np.ndarray], n: int) -> Any:
        return reward_value(metrics, self.metric, normalize=self.normalize, reward_fn=self.reward_fn, batch=n)

    def _evaluate(self, envs: np.ndarray, local: np.ndarray, rewards: np.ndarray, truncated: np.ndarray,
                  info: dict[str, Any]) -> None:
        """Evaluate the models ``local[k]`` of sub-envs ``envs[k]`` in place into rewards/info."""
        live = ~self.run.exhausted()[envs]
        truncated[envs[~live]] = True
        envs, local = envs[live], local[live]
        index = self.backend.arch_of_local(local)
        rows = self.backend.rows(index)
        ok = rows >= 0
        if self._allowed is not None:
            ok &= self._allowed[local[:, 2], local[:, 1], local[:, 0]]
        rewards[envs[~ok]] = self.violation_reward
        envs, rows, index = envs[ok], rows[ok], index[ok]
        if len(envs) == 0:
            return
        out = self.run.evaluate(self.backend, envs, rows, index, self.fidelity, rng=self.np_random,
                                score=self._reward)
        rewards[envs] = out.values
        truncated[envs] |= self.run.exhausted()[envs]
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[envs] = True
        info["cost_rule"] = self.missing_cost if out.imputed.any() else "recorded"
        for key, values in (("arch_index", index), ("cost", out.charged), ("cost_imputed", out.imputed),
                            *out.metrics.items()):
            arr = np.zeros(self.num_envs, dtype=np.asarray(values).dtype)
            arr[envs] = values
            info[key], info[f"_{key}"] = arr, mask


class BloxOneShotVectorEnv(_BatchedSearch):
    """Vector BloxOneShot-v0: ``actions`` is ``[num_envs, 3]`` local block ids."""

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs, **kwargs)
        self.single_action_space = spaces.MultiDiscrete(list(self.backend.space.sizes))
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._first = np.tile(np.array([*self.backend.space.sizes, 0], dtype=np.int64), (num_envs, 1))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        self._reset_common(seed, options)
        return self._first.copy(), self._run_info({})

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        a = np.asarray(actions)
        if a.shape != (self.num_envs, 3) or a.dtype.kind not in "iu":
            raise InvalidActionError(f"actions must be integers of shape ({self.num_envs}, 3), got {a.shape} {a.dtype}")
        if (a < 0).any() or (a >= self.sizes).any():
            raise InvalidActionError(f"actions out of range: stage sizes are {self.sizes.tolist()}")
        rewards = np.zeros(self.num_envs)
        truncated = np.zeros(self.num_envs, dtype=bool)
        info: dict[str, Any] = {}
        self._evaluate(np.arange(self.num_envs), a, rewards, truncated, info)
        final = np.concatenate([a, np.full((self.num_envs, 1), 3)], axis=1).astype(np.int64)
        info["final_obs"], info["_final_obs"] = final, np.ones(self.num_envs, dtype=bool)
        terminated = np.ones(self.num_envs, dtype=bool)
        return self._first.copy(), rewards, terminated, truncated, self._run_info(info)


class BloxVectorEnv(_BatchedSearch):
    """Vector Blox-v0: ``actions`` is ``[num_envs]`` local block ids of each sub-env's next stage."""

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        super().__init__(num_envs, **kwargs)
        self.single_action_space = spaces.Discrete(int(self.sizes.max()))
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._chosen = np.zeros((num_envs, 3), dtype=np.int64)
        self._cursor = np.zeros(num_envs, dtype=np.int64)

    def _obs(self) -> np.ndarray:
        obs = np.where(np.arange(3)[None, :] < self._cursor[:, None], self._chosen, self.sizes[None, :])
        return np.concatenate([obs, self._cursor[:, None]], axis=1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        self._reset_common(seed, options)
        self._cursor[:] = 0
        return self._obs(), self._run_info({})

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or a.dtype.kind not in "iu":
            raise InvalidActionError(f"actions must be integers of shape ({self.num_envs},), got {a.shape} {a.dtype}")
        limit = self.sizes[self._cursor]
        if (a < 0).any() or (a >= limit).any():
            raise InvalidActionError(f"actions out of range for the current stages (sizes {self.sizes.tolist()})")
        envs = np.arange(self.num_envs)
        rewards = np.zeros(self.num_envs)
        truncated = self.run.exhausted().copy()
        self._chosen[envs, self._cursor] = a
        self._cursor += 1
        done = self._cursor == 3
        info: dict[str, Any] = {}
        if done.any():
            self._evaluate(envs[done], self._chosen[done], rewards, truncated, info)
        final = self._obs()
        ended = done | truncated
        info["final_obs"], info["_final_obs"] = final, ended
        self._cursor[ended] = 0
        return self._obs(), rewards, done, truncated, self._run_info(info)
