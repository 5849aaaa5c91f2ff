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
changes no sub-env's run. Arguments are validated as in the scalar envs.
Repeat tracking keeps one byte per (sub-env, model): 93 MB at 1024 sub-envs on
the full 91,125-model store, 0.7 MB on Blox-mini.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from blox_env.envs.base import BackendSpec, constraint_grid, make_backend, reward_value
from blox_env.envs.checks import (
    check_bool,
    check_budget,
    check_choice,
    check_constraint,
    check_epochs,
    check_optional_str,
    check_real,
    check_reset,
    check_seed_mode,
)
from blox_env.errors import InvalidActionError, InvalidArgumentError
from blox_env.rewards.tabular import (
    COST_UNITS,
    InvalidArgumentTypeError,
    TabularReward,
    check_missing_cost,
    cost_is_missing,
    impute_cost,
    missing_cost_error,
)
from blox_env.space import Arch

__all__ = ["BloxOneShotVectorEnv", "BloxVectorEnv"]


class _BatchedSearch(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, *, benchmark: Any = None, reward: str = "tabular", metric: str = "val_top1",
                 epochs: int | None = None, seed_mode: int | str = "random", budget: float | None = None,
                 cost_unit: str = "seconds", charge_repeats: bool = False,
                 reward_fn: Callable[[dict[str, Any]], Any] | None = None, normalize: bool = True,
                 constraint: Mapping[str, float] | None = None, violation_reward: float = 0.0,
                 backend: TabularReward | None = None, run: str | None = None, missing_cost: str = "error",
                 **backend_kwargs: Any) -> None:
        if isinstance(num_envs, (bool, np.bool_)) or not isinstance(num_envs, (int, np.integer)):
            raise InvalidArgumentTypeError(f"num_envs must be a positive integer, got {num_envs!r}")
        if num_envs < 1:
            raise InvalidArgumentError(f"num_envs must be a positive integer, got {num_envs!r}")
        if not isinstance(metric, str):
            raise InvalidArgumentTypeError(f"metric must be a metric name (a str) such as 'val_top1', got {metric!r}")
        check_optional_str("run", run, "the name of one of the store's runs")
        check_epochs(epochs)
        check_seed_mode(seed_mode)
        cost_unit = check_choice("cost_unit", cost_unit, COST_UNITS)
        budget = check_budget(budget, cost_unit)
        self.charge_repeats = check_bool("charge_repeats", charge_repeats)
        if reward_fn is not None and not callable(reward_fn):
            raise InvalidArgumentTypeError(f"reward_fn must be None or a callable dict of arrays -> finite reals, "
                                           f"got {reward_fn!r}")
        self.normalize = check_bool("normalize", normalize)
        self.violation_reward = check_real("violation_reward", violation_reward)
        constraint = check_constraint(constraint)
        self.missing_cost = check_missing_cost(missing_cost)
        if backend is None:
            backend = make_backend(BackendSpec(benchmark, reward, metric, run, seed_mode, backend_kwargs,
                                               self.missing_cost))
        if not isinstance(backend, TabularReward) or hasattr(backend, "block_charge"):
            err = InvalidArgumentError if isinstance(backend, TabularReward) else InvalidArgumentTypeError
            raise err("the vector envs need the normal tabular reward backend (not live, surrogate "
                                       "or blockwise: those charge shared work once per run)")
        self.num_envs = int(num_envs)
        self.backend = backend
        self.metric, self.cost_unit, self.budget = metric, cost_unit, budget
        self.fidelity = backend.fidelity(epochs)
        self.reward_fn = reward_fn
        self.sizes = np.array(backend.space.sizes)
        self._allowed = constraint_grid(backend, constraint)
        self.single_observation_space = spaces.MultiDiscrete([*(k + 1 for k in backend.space.sizes), 4])
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._paid: np.ndarray | None = None
        self._new_runs(np.ones(self.num_envs, dtype=bool))

    # ------------------------------------------------------------------ runs
    def _new_runs(self, which: np.ndarray) -> None:
        if not hasattr(self, "spent"):
            self.spent = np.zeros(self.num_envs)
            self.evaluations = np.zeros(self.num_envs, dtype=np.int64)
            self.best = np.full(self.num_envs, -np.inf)
            self.best_index = np.full(self.num_envs, -1, dtype=np.int64)
        self.spent[which], self.evaluations[which], self.best[which], self.best_index[which] = 0.0, 0, -np.inf, -1
        if self._paid is not None:
            self._paid[which] = 0

    def _reset_common(self, seed: int | None, options: dict[str, Any] | None) -> None:
        seed, new_run = check_reset(seed, options)
        if seed is not None:
            self._np_random, self._np_random_seed = np.random.default_rng(seed), seed
            self._new_runs(np.ones(self.num_envs, dtype=bool))
        if new_run:
            self._new_runs(np.ones(self.num_envs, dtype=bool))

    def _exhausted(self) -> np.ndarray:
        if self.budget is None:
            return np.zeros(self.num_envs, dtype=bool)
        return self.spent >= self.budget

    def _run_info(self, info: dict[str, Any]) -> dict[str, Any]:
        info.update(cumulative_cost=self.spent.copy(), evaluations=self.evaluations.copy(),
                    best_so_far=self.best.copy(), budget_exhausted=self._exhausted(),
                    budget_left=np.inf * np.ones(self.num_envs) if self.budget is None
                    else np.maximum(0.0, self.budget - self.spent))
        return info

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, envs: np.ndarray, local: np.ndarray, rewards: np.ndarray, truncated: np.ndarray,
                  info: dict[str, Any]) -> None:
        """Evaluate the models ``local[k]`` of sub-envs ``envs[k]`` in place into rewards/info."""
        live = ~self._exhausted()[envs]
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
        pos = self.backend.seed_positions(len(envs), self.np_random)
        metrics = self.backend.batch(rows, self.fidelity, pos)
        full = np.broadcast_to(np.asarray(self.backend.cost_of(metrics, self.fidelity, self.cost_unit), float),
                               (len(envs),))
        full, imputed = self._resolve_costs(full, index, pos)
        r = np.asarray(reward_value(metrics, self.metric, normalize=self.normalize, reward_fn=self.reward_fn,
                                    batch=len(envs)), dtype=np.float64)
        cost = self._charge(envs, rows, full)
        np.add.at(self.spent, envs, cost)
        np.add.at(self.evaluations, envs, 1)
        r = np.broadcast_to(r, (len(envs),))
        rewards[envs] = r
        better = r > self.best[envs]
        self.best[envs[better]], self.best_index[envs[better]] = r[better], index[better]
        truncated[envs] |= self._exhausted()[envs]
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[envs] = True
        info["cost_rule"] = self.missing_cost if imputed.any() else "recorded"
        for key, values in (("arch_index", index), ("cost", cost), ("cost_imputed", imputed), *metrics.items()):
            arr = np.zeros(self.num_envs, dtype=np.asarray(values).dtype)
            arr[envs] = values
            info[key], info[f"_{key}"] = arr, mask

    def _resolve_costs(self, full: np.ndarray, index: np.ndarray,
                       pos: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Costs with missing ones replaced by the ``missing_cost`` rule, and where; MissingCostError otherwise."""
        missing = cost_is_missing(full)
        if not missing.any():
            return full, missing
        known = self.backend.known_costs(self.fidelity, self.cost_unit)
        value = impute_cost(self.missing_cost, known)
        if value is None:
            k = int(np.flatnonzero(missing)[0])
            i = int(index[k])
            seed = "mean" if pos is None else self.backend.seeds[int(pos[k])]
            more = f" (and {int(missing.sum()) - 1} more in this step)" if missing.sum() > 1 else ""
            raise missing_cost_error(f"{i} (hash {Arch.from_index(i).hash}){more}",
                                     self.backend.describe_cost(self.fidelity, seed), float(full[k]), known,
                                     self.cost_unit)
        return np.where(missing, value, full), missing

    def _charge(self, envs: np.ndarray, rows: np.ndarray, full: np.ndarray) -> np.ndarray:
        if self.charge_repeats:
            return full.astype(float)
        if self._paid is None:
            dtype = np.uint8 if self.fidelity < 256 else np.uint16
            self._paid = np.zeros((self.num_envs, self.backend.n_rows), dtype=dtype)
        prev = self._paid[envs, rows].astype(np.int64)
        e = self.fidelity
        per_eval = self.cost_unit == "evaluations"
        cost = np.where(e > prev, full, 0.0) if per_eval else full * np.maximum(0, e - prev) / e
        self._paid[envs, rows] = np.maximum(prev, e)
        return cost


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
        truncated = self._exhausted().copy()
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
