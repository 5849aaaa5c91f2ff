"""The common base of Blox-v0 and BloxOneShot-v0: arguments, the search run, evaluating a chosen model, masks.

A *search run* spans episodes: a :class:`~blox_env.runs.SearchRun` holds its
cumulative cost, evaluation count and best-so-far, and is reset only by
``reset(options={"new_run": True})`` or ``reset(seed=...)``. The budget rule and
the ``missing_cost`` rule are the run's (see :mod:`blox_env.runs`): the step of
the evaluation that crosses the budget reports ``truncated=True`` with
``info["budget_exhausted"] = True``; every later step returns ``truncated=True``
without evaluating anything; an imputed cost sets ``info["cost_imputed"]``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from blox_env.datasets.store.schema import is_accuracy
from blox_env.envs.checks import check_reward_output
from blox_env.envs.config import EnvConfig
from blox_env.envs.multi_objective import ObjectiveReward, make_objective_reward
from blox_env.errors import InvalidActionError, InvalidArgumentError, InvalidArgumentTypeError, MissingMetricError
from blox_env.objectives import Objective
from blox_env.rewards.base import Evaluation, RewardBackend, local_to_indices
from blox_env.rewards.factory import make_backend
from blox_env.runs import PROXY_FIDELITY, CostLedger, SearchRun
from blox_env.space import Arch

__all__ = ["BloxSearchEnv", "announce_default_store", "constraint_grid", "evaluation_info", "observation_space",
           "reward_value", "stage_observation"]

_ANNOUNCED: set[str] = set()


def announce_default_store(store: Any) -> None:
    """Say in one line (once per process) which benchmark a default ``gym.make`` uses."""
    if store.location in _ANNOUNCED:
        return
    _ANNOUNCED.add(store.location)
    if store.name == "blox-mini":
        print(f"blox-env: using the bundled Blox-mini ({len(store):,} models trained on digits); "
              "import the full BLOX benchmark with `blox data import` to use it instead", file=sys.stderr)
    else:
        print(f"blox-env: using the benchmark store {store.name!r} at {store.location} ({len(store):,} models)",
              file=sys.stderr)


def observation_space(sizes: tuple[int, ...]) -> spaces.MultiDiscrete:
    """Blox-v0's observation: the block of each stage (``K_s`` = unset) and the stage cursor (0..3)."""
    return spaces.MultiDiscrete([*(k + 1 for k in sizes), 4])


def stage_observation(sizes: tuple[int, ...], chosen: Any) -> np.ndarray:
    """The observation after choosing the local blocks ``chosen`` (a prefix of the stages)."""
    obs = np.array([*sizes, len(chosen)], dtype=np.int64)
    obs[: len(chosen)] = chosen
    return obs


def reward_value(metrics: Mapping[str, Any], metric: str, *, normalize: bool,
                 reward_fn: Callable[[dict[str, Any]], Any] | None, batch: int | None = None) -> Any:
    """Reward of an evaluation: ``reward_fn(metrics)`` if given, else the metric (accuracy as a fraction,
    losses negated so that higher is better). Scalars in, float out; arrays (``batch`` sub-envs) in, array out.
    A ``reward_fn`` must return finite real numbers (InvalidArgumentError otherwise)."""
    if reward_fn is not None:
        return check_reward_output(reward_fn(dict(metrics)), metrics, batch=batch)
    value = metrics[metric]
    if "loss" in metric:
        return -value
    if normalize and is_accuracy(metric):
        return value / 100.0
    return value


def proxy_metric(backend: RewardBackend, cfg: EnvConfig) -> str:
    """The reward metric at the proxy fidelity: ``proxy:<name>`` of the backend's proxy, which must be the one the
    config names (a ``backend=`` object answers its own proxy)."""
    if backend.proxy != cfg.proxy:
        raise InvalidArgumentError(f"proxy={cfg.proxy!r} but the reward backend answers the proxy fidelity with "
                                   f"{backend.proxy!r}: name the backend's proxy")
    return f"proxy:{backend.proxy}"


def constraint_grid(backend: RewardBackend, constraint: Mapping[str, float] | None) -> np.ndarray:
    """Boolean ``[K2, K1, K0]`` grid over local coordinates: allowed (the backend has the model, within limits)."""
    sizes = backend.space.sizes
    grid_local = np.stack(np.meshgrid(*(np.arange(k) for k in reversed(sizes)), indexing="ij"), axis=-1)[..., ::-1]
    rows = backend.rows(local_to_indices(backend.space, grid_local))
    allowed = rows >= 0
    if not constraint:
        return allowed  # the static columns are read only when a constraint needs them
    static = backend.static_costs()
    if not static:
        raise InvalidArgumentError("constraints need a tabular backend (static costs per model)")
    for metric, limit in constraint.items():
        column = static.get(metric)
        if column is None:
            raise InvalidArgumentError(f"constraint key {metric!r} is not a static cost of this benchmark: allowed "
                                       f"{', '.join(map(repr, sorted(static)))}")
        allowed &= np.where(rows >= 0, column[np.maximum(rows, 0)] <= limit, False)
    return allowed


def evaluation_info(ev: Evaluation, *, charged: float, run: SearchRun, local: tuple[int, ...],
                    model_hash: str) -> dict[str, Any]:
    """The ``info`` dict of a step that evaluated a model."""
    return {
        "arch_index": ev.arch.index,
        "arch_hash": model_hash,
        "blocks": ev.arch.blocks,
        "local_blocks": local,
        "metrics": ev.metrics,
        "source": ev.source,
        "fidelity": ev.fidelity,
        "seed": ev.seed,
        "cost": charged,
        "full_cost": ev.cost,
        "cost_unit": ev.cost_unit,
        "cost_imputed": ev.cost_imputed is not None,
        "cost_rule": ev.cost_imputed or "recorded",
        **run.state(),
    }


class BloxSearchEnv(gym.Env):
    """Shared machinery; use :class:`~blox_env.envs.sequential.BloxEnv` or ``BloxOneShotEnv``."""

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, config: EnvConfig | None = None, *, backend: RewardBackend | None = None,
                 **kwargs: Any) -> None:
        """Options as ``gym.make`` keyword arguments (see :class:`~blox_env.envs.config.EnvConfig`), or a ``config``;
        ``backend``: a reward backend object used as it is (not closed by the env)."""
        super().__init__()
        if config is not None and kwargs:
            raise InvalidArgumentError(f"pass either config= or keyword options, not both (got {sorted(kwargs)})")
        # every argument is checked before the (possibly slow) backend is built
        cfg = self.config = config if config is not None else EnvConfig.from_kwargs(**kwargs)
        if not isinstance(cfg, EnvConfig):
            raise InvalidArgumentTypeError(f"config must be an EnvConfig, got {cfg!r}")
        self.run = SearchRun(budget=cfg.budget, cost_unit=cfg.cost_unit, charge_repeats=cfg.charge_repeats,
                             missing_cost=cfg.missing_cost, metric=cfg.metric)
        self.normalize = cfg.normalize
        self.missing_cost = cfg.missing_cost
        self._owns_backend = backend is None
        if backend is None:
            backend = make_backend(cfg.backend_spec())
            if cfg.benchmark is None and backend.tabular:
                announce_default_store(backend.store)
        elif not isinstance(backend, RewardBackend):
            raise InvalidArgumentTypeError(f"backend must implement blox_env.rewards.RewardBackend (e.g. subclass "
                                           f"BaseReward), got {backend!r}")
        self.backend = backend
        if cfg.verbose:
            where = backend.store.name if backend.store is not None else f"{backend.space.size:,} models"
            print(f"blox-env: {type(backend).__name__} on {where}")
        self.fidelity = backend.fidelity(cfg.epochs)
        # at the proxy fidelity the reward and the run's best-so-far are the proxy's score
        self.metric = self.run.metric = proxy_metric(backend, cfg) if self.fidelity == PROXY_FIDELITY else cfg.metric
        self.reward_fn = cfg.reward_fn
        self.render_mode = cfg.render_mode
        self.space_sizes: tuple[int, ...] = backend.space.sizes
        self.n_blocks = max(self.space_sizes)
        #: the vector reward of ``objectives=`` (None: the scalar reward); see :mod:`blox_env.envs.multi_objective`
        self.objective_reward: ObjectiveReward | None = None
        self.objectives: tuple[Objective, ...] = ()
        if cfg.objectives is not None:
            self.objective_reward = make_objective_reward(cfg.objectives, backend, fidelity=self.fidelity,
                                                          normalize=self.normalize,
                                                          violation_reward=cfg.violation_reward)
            self.objectives = self.objective_reward.objectives
            self.reward_space = self.objective_reward.reward_space  # the MO-Gymnasium attributes
            self.reward_dim = self.objective_reward.dim
            self.violation_reward: float | np.ndarray = self.objective_reward.violation
        else:
            self.violation_reward = float(cfg.violation_reward)
        constraint = cfg.constraint
        self._allowed: np.ndarray | None = constraint_grid(backend, constraint)  # [K2, K1, K0]
        if not constraint and self._allowed.all():
            self._allowed = None  # every model present, nothing excluded: no masking work at all
        self._mask_cache: dict[tuple[int, ...], np.ndarray] = {}
        if self._allowed is not None and not self._allowed.any():
            raise InvalidArgumentError(f"no model of the benchmark satisfies the constraint {dict(constraint or {})}")
        self._archs: dict[tuple[int, ...], Arch] = {}
        self._hashes: dict[int, str] = {}
        self._hash_table: np.ndarray | None = None
        self.last_info: dict[str, Any] = {}
        self._last_value: float | None = None  # reward of the last evaluated model (the rgb_array picture)
        self._raw: dict[str, float] | None = None  # objectives' raw values of the evaluation being scored

    @property
    def ledger(self) -> CostLedger:
        """The search run's cost ledger (spent, budget, evaluations, best-so-far)."""
        return self.run.ledger

    # ------------------------------------------------------------------ run and seeding
    def _reset_run(self, seed: int | None, new_run: bool) -> None:
        """``reset(seed=...)`` starts a new search run (a new experiment); plain ``reset()`` continues it
        (``new_run``: the checked ``options["new_run"]``, see :func:`~blox_env.envs.checks.check_reset`)."""
        if seed is not None or new_run:
            self.run.new_run()
            self._last_value = None

    def _hash(self, index: int) -> str:
        """Model hash: from the cached table for large benchmarks, computed once per model for small ones."""
        if self._hash_table is None and self.backend.space.size > 5000:
            from blox_env.hashes import all_hashes

            self._hash_table = all_hashes()
        if self._hash_table is not None:
            return str(self._hash_table[index])
        h = self._hashes.get(index)
        if h is None:
            h = self._hashes[index] = Arch.from_index(index).hash
        return h

    def run_info(self) -> dict[str, Any]:
        """Cumulative state of the search run (also in every ``info``)."""
        return self.run.state()

    def close(self) -> None:
        """Close the reward backend if this env built it (a ``backend=`` passed in stays open)."""
        if self._owns_backend:
            self.backend.close()
        super().close()

    # ------------------------------------------------------------------ masks
    def stage_mask(self, stage: int, prefix: tuple[int, ...]) -> np.ndarray:
        """Allowed local blocks of ``stage`` given earlier choices (padded to ``n_blocks``; a fresh array)."""
        key = (stage, *prefix)
        cached = self._mask_cache.get(key)
        if cached is None:
            cached = self._mask_cache[key] = self._compute_mask(stage, prefix)
        return cached.copy()

    def _compute_mask(self, stage: int, prefix: tuple[int, ...]) -> np.ndarray:
        mask = np.zeros(self.n_blocks, dtype=np.int8)
        k = self.space_sizes[stage]
        if self._allowed is None:
            mask[:k] = 1
            return mask
        grid = self._allowed  # axes (stage2, stage1, stage0)
        for s, b in enumerate(prefix):
            grid = np.take(grid, [b], axis=2 - s)
        other = tuple(ax for ax in range(3) if ax != 2 - stage)
        mask[:k] = grid.any(axis=other).astype(np.int8)
        return mask

    # ------------------------------------------------------------------ evaluation
    def _check_block(self, stage: int, b: int) -> None:
        if not 0 <= b < self.space_sizes[stage]:
            raise InvalidActionError(
                f"action {b} for stage {stage} is outside 0..{self.space_sizes[stage] - 1} (this benchmark has "
                f"{self.space_sizes[stage]} blocks at stage {stage})"
            )

    def _score(self, ev: Evaluation) -> float:
        """The reward (scalar) or, with ``objectives=``, the first component, computed before the run charges
        anything: a missing (NaN) metric raises :class:`MissingMetricError` here under ``missing_metric="error"``,
        so a refused evaluation costs nothing. The objectives' raw values are kept for the step's info."""
        vec = self.objective_reward
        if vec is None:
            value = reward_value(ev.metrics, self.metric, normalize=self.normalize, reward_fn=self.reward_fn)
            missing = [self.metric] if self.reward_fn is None and math.isnan(value) else []
        else:
            self._raw = vec.raw(ev)
            missing = [name for name, v in self._raw.items() if math.isnan(v)]
            value = float(vec.reward(self._raw)[0])
        if missing and self.config.missing_metric == "error":
            raise MissingMetricError(
                f"model {ev.arch.index} (hash {ev.arch.hash}) has no recorded {', '.join(missing)} (NaN in the "
                f"benchmark, seed {ev.seed}, {ev.fidelity} epochs): a NaN reward would fall outside the reward space. "
                "Pass missing_metric='violation_reward' to give such models the violation reward (flagged in "
                "info['metric_missing']), or complete the store; nothing was charged")
        self._metric_missing = bool(missing)
        return value

    def _zero_reward(self) -> float | np.ndarray:
        """The reward of a step that evaluates nothing: 0.0, or the zero vector with ``objectives=``."""
        return 0.0 if self.objective_reward is None else self.objective_reward.zero()

    def _violation(self) -> float | np.ndarray:
        """The reward of a model outside the constraint (a fresh array with ``objectives=``)."""
        v = self.violation_reward
        return v.copy() if isinstance(v, np.ndarray) else v

    def _evaluate(self, local: tuple[int, int, int]) -> tuple[float | np.ndarray, bool, dict[str, Any]]:
        """Evaluate the model at (validated) local coordinates through the search run: (reward, truncated, info).

        The reward is a float, or with ``objectives=`` a float32 vector (``info["objectives"]``: the raw values).
        """
        vec = self.objective_reward
        if self.run.exhausted:
            return self._zero_reward(), True, {**self.run_info(), "evaluated": False, "local_blocks": local}
        arch = self._archs.get(local)
        if arch is None:
            b = self.backend.space.blocks
            arch = self._archs[local] = Arch.from_blocks(b[0][local[0]], b[1][local[1]], b[2][local[2]])
        index = arch.index
        if self._allowed is not None and not self._allowed[local[2], local[1], local[0]]:
            missing = bool(self.backend.rows(np.array([index]))[0] < 0)
            info = {**self.run_info(), "evaluated": False, "arch_index": index, "local_blocks": local,
                    "constraint_violated": True, "missing": missing}
            return self._violation(), False, info
        outcome = self.run.evaluate(self.backend, arch, self.fidelity, rng=self.np_random, score=self._score)
        if outcome is None:  # not reached: the budget was checked above
            return self._zero_reward(), True, {**self.run_info(), "evaluated": False, "local_blocks": local}
        info = evaluation_info(outcome.evaluation, charged=outcome.charged, run=self.run, local=local,
                               model_hash=self._hash(index))
        info["evaluated"] = True
        info["metric_missing"] = self._metric_missing
        if vec is None:
            value = float(self.violation_reward) if self._metric_missing else float(outcome.value)
            self._last_value = value
            return value, self.run.exhausted, info
        raw = info["objectives"] = self._raw
        reward = self._violation() if self._metric_missing else vec.reward(raw)
        self._last_value = float(reward[0])
        return reward, self.run.exhausted, info

    def _render_state(self) -> tuple[tuple[int, ...], int | None]:
        """What the picture shows: the local blocks chosen so far and the stage picked next (None: none)."""
        return (), None

    def render(self) -> str | np.ndarray | None:
        """``"ansi"``: one line on the last model; ``"rgb_array"``: the picture of :mod:`blox_env.envs.render`."""
        if self.render_mode == "rgb_array":
            from blox_env.envs.render import render_model

            local, cursor = self._render_state()
            space_blocks, led = self.backend.space.blocks, self.run.ledger
            blocks = [space_blocks[s][b] for s, b in enumerate(local)]
            used = None if led.budget is None else (led.spent / led.budget if led.budget > 0 else 1.0)
            return render_model(blocks, cursor=cursor, best=led.best, last=self._last_value, budget_used=used)
        if self.render_mode != "ansi":
            return None
        info, led = self.last_info, self.run.ledger
        if "arch_index" not in info:
            return f"no model evaluated yet; run cost {led.spent:.1f} {led.cost_unit}"
        return (f"model {info['arch_index']} blocks {info.get('blocks')} -> {info.get('metrics')} "
                f"(cost {info.get('cost', 0):.1f}, run {led.spent:.1f}/{led.budget})")
