"""``Blox-v0``: build one model stage by stage; the reward comes when the last block is chosen.

Spaces
    action: ``Discrete(K)`` with K the number of blocks per stage of the benchmark
    (45 for BLOX, 6 for Blox-mini): the local block id of the next stage. An id
    outside the current stage's range raises :class:`~blox_env.errors.InvalidActionError`.
    observation: ``MultiDiscrete([K0+1, K1+1, K2+1, 4])``: the blocks chosen so far
    (``K_s`` means unset) and the stage cursor (3 once the model is complete).
Rewards
    0 for the first two steps; on the third the evaluated metric: by default the
    best validation top-1 within ``epochs`` epochs as a fraction (losses are
    negated; ``reward_fn(metrics)`` overrides; models outside a ``constraint``
    or missing from the store give ``violation_reward`` without being evaluated).
Multi-objective rewards (``objectives=``)
    ``gym.make("Blox-v0", objectives=("val_top1", "latency:cpu-amd-epyc", "params"))``
    names store columns (``column[@epoch][:max|:min]``, see
    :func:`blox_env.objectives.parse_objectives`; default None: the scalar reward
    above, unchanged). The reward is then a ``float32`` array of shape ``(k,)`` in
    the MO-Gymnasium convention: one component per objective, in the order given,
    every one *higher is better* (minimised objectives such as params, FLOPs,
    latency, times and losses are negated; accuracies are fractions when
    ``normalize=True``). Steps that evaluate nothing return the zero vector; a
    model outside the ``constraint`` a vector filled with ``violation_reward``.
    ``info["objectives"]`` holds the raw store values (unnegated), keyed by
    objective name (``"params"``, ``"val_top1@4"``, ...). Run metrics are read for
    the evaluated seed at the env's fidelity (``epochs``), or at an objective's
    ``@epoch`` (at most ``epochs``); static columns from the store's static costs.
    ``env.unwrapped.reward_space`` is ``Box(low, high, (k,), float32)`` with
    finite bounds from the store's columns (in the reward's orientation, widened
    to hold the zero vector and ``violation_reward``); ``reward_dim`` is ``k``, and
    ``env.unwrapped.objectives`` the parsed :class:`~blox_env.objectives.Objective`
    tuple. So ``mo_gymnasium.wrappers.LinearReward`` and
    ``MORecordEpisodeStatistics`` work unchanged. ``metric`` still sets the run's
    ``best_so_far``; ``objectives`` with ``reward_fn`` raises
    ``InvalidArgumentError`` (both define the reward), and so does a backend
    without store columns (surrogate, live). Gymnasium's passive env checker
    (``gym.make``) expects scalar rewards and warns once on the first step:
    ``disable_env_checker=True`` (what ``mo_gymnasium.make`` passes) silences it.
    See :mod:`blox_env.envs.multi_objective`.
Episode end
    ``terminated=True`` after the third step. A search *run* spans episodes and
    has a cost ``budget`` (in ``cost_unit``: "seconds" of recorded training time,
    "epochs" or "evaluations"); the evaluation that crosses it completes and is
    charged, its step and every later one return ``truncated=True`` and
    ``info["budget_exhausted"]``. ``reset(options={"new_run": True})`` starts a
    new run, and so does ``reset(seed=...)`` (seeding starts a new experiment);
    a plain ``reset()`` continues the run. Stepping after an episode ended
    raises ``gymnasium.error.ResetNeeded``.
Info
    every step: ``action_mask`` for the next stage (int8, 1 = allowed), run
    state (``cumulative_cost``, ``budget_left``, ``evaluations``, ``best_so_far``).
    Final step: ``arch_index``, ``arch_hash``, ``blocks`` (full-space block ids),
    ``local_blocks``, ``metrics`` (``val_top1`` at the fidelity, ``test_top1``,
    ``train_time_s``, ``params``, ``flops``, ``latency/<device>``...), ``source``,
    ``fidelity``, ``seed``, ``cost`` (charged to the run), ``full_cost``.
Arguments
    ``benchmark`` (store path/URL/name or an open BloxStore; default: imported
    BLOX, else Blox-mini), ``reward`` ("tabular" | "surrogate" | "live", the
    latter two with ``backend=``), ``metric``, ``epochs`` (fidelity), ``seed_mode``
    ("random" | "mean" | a seed), ``budget``, ``cost_unit``, ``charge_repeats``
    (default False: a model is charged only for epochs beyond what was already
    paid), ``reward_fn``, ``normalize``, ``constraint`` (e.g. ``{"params": 2.5e6}``),
    ``violation_reward``, ``objectives`` (above), ``run``, ``render_mode`` ("ansi": one line of text;
    "rgb_array": a picture of the model's blocks and the run's best, see
    :mod:`blox_env.envs.render`), ``missing_cost``:
    what an evaluation whose recorded cost is missing (NaN, e.g. a partially built
    store) is charged: ``"error"`` (default) refuses it with ``MissingCostError``
    naming the model; ``"median"`` / ``"max"`` charge the median / maximum
    recorded cost of the run at that fidelity and set ``info["cost_imputed"]``
    (``info["cost_rule"]`` names the rule; it is ``"recorded"`` otherwise).
    Every argument is validated up front: wrong types raise
    ``InvalidArgumentTypeError`` (an ``InvalidArgumentError`` and a ``TypeError``),
    wrong values ``InvalidArgumentError``, each naming the argument and what is allowed.
    Tabular blockwise rewards (stores with blockwise tables, e.g. Blox-mini):
    ``mode="blockwise"``, ``teacher`` ("M1" | "M5" | its arch), ``ft_epochs``
    (fine-tuning length), ``distill_epochs``, ``charge_teacher``: the reward is the
    fine-tuned accuracy, the cost the recorded fine-tuning time plus the teacher and
    each distilled block once per run (see :mod:`blox_env.rewards.blockwise`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import error, spaces

from blox_env.envs.base import BloxSearchEnv, observation_space, stage_observation
from blox_env.envs.checks import check_reset
from blox_env.errors import InvalidActionError

__all__ = ["BloxEnv"]


def as_int_action(action: Any) -> int:
    """A scalar integer action, or InvalidActionError."""
    if isinstance(action, np.ndarray) and action.shape in ((), (1,)):
        action = action.reshape(()).item()
    if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
        raise InvalidActionError(f"action must be an integer block id, got {action!r}")
    return int(action)


class BloxEnv(BloxSearchEnv):
    """Blox-v0 (see the module docstring for spaces, rewards, episode end and arguments)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.action_space = spaces.Discrete(self.n_blocks)
        self.observation_space = observation_space(self.space_sizes)
        self._chosen: list[int] = []
        self._done = True

    def _obs(self) -> np.ndarray:
        return stage_observation(self.space_sizes, self._chosen)

    def _render_state(self) -> tuple[tuple[int, ...], int | None]:
        return tuple(self._chosen), None if self._done else len(self._chosen)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        seed, new_run = check_reset(seed, options)
        super().reset(seed=seed)
        self._reset_run(seed, new_run)
        self._chosen = []
        self._done = False
        self.last_info = {"action_mask": self.stage_mask(0, ()), **self.run_info()}
        return self._obs(), self.last_info

    def step(self, action: Any) -> tuple[np.ndarray, float | np.ndarray, bool, bool, dict[str, Any]]:
        if self._done:
            raise error.ResetNeeded("the episode has ended: call reset() before step()")
        a = as_int_action(action)
        stage = len(self._chosen)
        self._check_block(stage, a)
        if self.run.exhausted:
            self._done = True
            self.last_info = {**self.run_info(), "evaluated": False, "action_mask": self.stage_mask(stage, ())}
            return self._obs(), self._zero_reward(), False, True, self.last_info
        self._chosen.append(a)
        if stage < 2:
            prefix = tuple(self._chosen)
            self.last_info = {"action_mask": self.stage_mask(stage + 1, prefix), **self.run_info()}
            return self._obs(), self._zero_reward(), False, False, self.last_info
        reward, truncated, info = self._evaluate(tuple(self._chosen))  # type: ignore[arg-type]
        self._done = True
        info["action_mask"] = self.stage_mask(0, ())
        self.last_info = info
        return self._obs(), reward, True, truncated, info
