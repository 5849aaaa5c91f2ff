"""The common base of Blox-v0 and BloxOneShot-v0: arguments, search run, evaluating a chosen model."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from blox_env.envs.base import (
    BackendSpec,
    CostLedger,
    constraint_grid,
    evaluation_info,
    make_backend,
    resolve_cost,
    reward_value,
)
from blox_env.envs.checks import (
    check_bool,
    check_constraint,
    check_epochs,
    check_optional_str,
    check_real,
    check_reset,
    check_seed_mode,
)
from blox_env.errors import InvalidActionError, InvalidArgumentError
from blox_env.rewards.tabular import (
    InvalidArgumentTypeError,
    RewardBackend,
    TabularReward,
    check_fidelity,
    check_missing_cost,
)
from blox_env.space import Arch

__all__ = ["BloxSearchEnv"]


class BloxSearchEnv(gym.Env):
    """Shared machinery; use :class:`~blox_env.envs.sequential.BloxEnv` or ``BloxOneShotEnv``."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, *, benchmark: Any = None, reward: str = "tabular", metric: str = "val_top1",
                 epochs: int | None = None, seed_mode: int | str = "random", budget: float | None = None,
                 cost_unit: str = "seconds", charge_repeats: bool = False,
                 reward_fn: Callable[[dict[str, float]], float] | None = None, normalize: bool = True,
                 constraint: Mapping[str, float] | None = None, violation_reward: float = 0.0,
                 backend: RewardBackend | None = None, run: str | None = None, render_mode: str | None = None,
                 verbose: bool = False, missing_cost: str = "error", **backend_kwargs: Any) -> None:
        super().__init__()
        # every argument is checked before the (possibly slow) backend is built
        if not isinstance(metric, str):
            raise InvalidArgumentTypeError(f"metric must be a metric name (a str) such as 'val_top1', got {metric!r}")
        check_optional_str("run", run, "the name of one of the store's runs")
        check_epochs(epochs)
        check_seed_mode(seed_mode)
        self.ledger = CostLedger(budget, cost_unit, check_bool("charge_repeats", charge_repeats))
        if reward_fn is not None and not callable(reward_fn):
            raise InvalidArgumentTypeError(f"reward_fn must be None or a callable metrics dict -> finite real "
                                           f"number, got {reward_fn!r}")
        self.normalize = check_bool("normalize", normalize)
        self.violation_reward = check_real("violation_reward", violation_reward)
        if render_mode is not None and (not isinstance(render_mode, str)
                                        or render_mode not in self.metadata["render_modes"]):
            err = InvalidArgumentError if isinstance(render_mode, str) else InvalidArgumentTypeError
            raise err(f"render_mode must be None or 'ansi', got {render_mode!r}")
        verbose = check_bool("verbose", verbose)
        constraint = check_constraint(constraint)
        self.missing_cost = check_missing_cost(missing_cost)
        if backend is None:
            backend = make_backend(BackendSpec(benchmark, reward, metric, run, seed_mode, backend_kwargs,
                                               self.missing_cost))
        elif not isinstance(backend, RewardBackend):
            raise InvalidArgumentTypeError(f"backend must implement RewardBackend (evaluate, space, max_fidelity, "
                                           f"source), got {backend!r}")
        self.backend = backend
        if verbose:
            print(f"blox-env: {type(backend).__name__} on {getattr(getattr(backend, 'store', None), 'name', '?')}")
        self.metric = metric
        self.fidelity = (backend.fidelity(epochs) if hasattr(backend, "fidelity")
                         else check_fidelity(epochs, backend.max_fidelity))
        self.reward_fn = reward_fn
        self.render_mode = render_mode
        self.space_sizes: tuple[int, ...] = backend.space.sizes
        self.n_blocks = max(self.space_sizes)
        self._allowed = constraint_grid(backend, constraint)  # [K2, K1, K0] or None
        if self._allowed is not None and not constraint and self._allowed.all():
            self._allowed = None  # every model present, nothing excluded: no masking work at all
        self._mask_cache: dict[tuple[int, ...], np.ndarray] = {}
        if constraint and self._allowed is None:
            raise InvalidArgumentError("constraints need a tabular backend (static costs per model)")
        if self._allowed is not None and not self._allowed.any():
            raise InvalidArgumentError(f"no model of the benchmark satisfies the constraint {dict(constraint or {})}")
        self._hashes: dict[int, str] = {}
        self._hash_table: np.ndarray | None = None
        self._tabular = isinstance(backend, TabularReward)
        self.last_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ run and seeding
    def _reset_run(self, seed: int | None, options: dict[str, Any] | None) -> None:
        """``reset(seed=...)`` starts a new search run (a new experiment); plain ``reset()`` continues it.

        Arguments are checked by :func:`~blox_env.envs.checks.check_reset` before ``gym.Env.reset``.
        """
        if seed is not None or check_reset(None, options)[1]:
            self.ledger.new_run()
            if hasattr(self.backend, "new_run"):  # backends that charge shared work once per run (blockwise)
                self.backend.new_run()

    def _hash(self, index: int) -> str:
        """Model hash: from the cached table for large benchmarks, computed once per model for small ones."""
        if self._hash_table is None and getattr(self.backend, "n_rows", 0) > 5000:
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
        return {"cumulative_cost": self.ledger.spent, "budget_left": self.ledger.left,
                "evaluations": self.ledger.evaluations, "best_so_far": self.ledger.best,
                "best_index": self.ledger.best_index, "budget_exhausted": self.ledger.exhausted}

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

    def _evaluate(self, local: tuple[int, int, int]) -> tuple[float, bool, dict[str, Any]]:
        """Evaluate the model at local coordinates: (reward, truncated, info)."""
        if self.ledger.exhausted:
            info = {**self.run_info(), "evaluated": False, "local_blocks": local}
            return 0.0, True, info
        b = self.backend.space.blocks
        arch = Arch._trusted((b[0][local[0]], b[1][local[1]], b[2][local[2]]))  # noqa: SLF001 - validated local
        index = arch.index
        allowed = self._allowed is None or bool(self._allowed[local[2], local[1], local[0]])
        missing = self._tabular and self.backend._row_of.item(index) < 0  # noqa: SLF001
        if not allowed or missing:
            info = {**self.run_info(), "evaluated": False, "arch_index": index, "local_blocks": local,
                    "constraint_violated": not allowed, "missing": bool(missing)}
            return self.violation_reward, False, info
        ev = self.backend.evaluate(arch, self.fidelity, cost_unit=self.ledger.cost_unit, rng=self.np_random)
        ev = resolve_cost(ev, rule=self.missing_cost, backend=self.backend, ledger=self.ledger,
                          model=f"{index} (hash {self._hash(index)}, blocks {arch.blocks})")
        reward = reward_value(ev.metrics, self.metric, normalize=self.normalize, reward_fn=self.reward_fn)
        charged = self.ledger.charge(index, ev.fidelity, ev.cost, imputed=ev.cost_imputed is not None)
        if math.isfinite(reward):
            self.ledger.observe(index, reward)
        info = evaluation_info(ev, charged=charged, ledger=self.ledger, local=local, model_hash=self._hash(index))
        info["evaluated"] = True
        return reward, self.ledger.exhausted, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        info = self.last_info
        if "arch_index" not in info:
            return f"no model evaluated yet; run cost {self.ledger.spent:.1f} {self.ledger.cost_unit}"
        return (f"model {info['arch_index']} blocks {info.get('blocks')} -> {info.get('metrics')} "
                f"(cost {info.get('cost', 0):.1f}, run {self.ledger.spent:.1f}/{self.ledger.budget})")
