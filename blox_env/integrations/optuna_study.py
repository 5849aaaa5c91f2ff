"""Optuna driving ``BloxOneShot-v0`` through ask/tell: TPE, NSGA-II or random search on the benchmark.

:func:`optuna_search` creates a study whose directions come from the objectives (accuracies maximised,
costs minimised: :func:`blox_env.objectives.parse_objectives`), and per trial asks the sampler for one
block per stage (``trial.suggest_categorical("stage0", <the stage's block ids>)``, the names and choices
of :func:`~blox_env.integrations.configspace.configuration_space`), steps the env once with that model
and tells the study the env's values (``info["objectives"]``, the store's raw values: percent, counts,
seconds). The env's search run charges every evaluation (a repeat is free, as in every search here) and
stops the loop when a ``budget`` is spent. Samplers are seeded, so a search is reproducible.

The loop is Optuna's own ``study.optimize`` (one env step per trial), so every built-in sampler works,
including those that end the study themselves (``GridSampler`` and ``BruteForceSampler`` call
``study.stop()`` once their grid is exhausted; the trials run so far are kept). A trial asked after the
budget is spent is not evaluated: it is marked pruned and the study stops.
Needs the ``integrations`` extra (``pip install "blox-env[integrations]"``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from blox_env.checks import check_bool, check_budget, type_name
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError
from blox_env.extras import require
from blox_env.integrations.configspace import SEED_MAX, STAGES, open_benchmark
from blox_env.objectives import Objective, parse_objectives
from blox_env.space import Arch

if TYPE_CHECKING:
    import optuna

__all__ = ["SAMPLERS", "OptunaSearchResult", "make_sampler", "optuna_search"]

#: Sampler names :func:`optuna_search` builds (seeded); an ``optuna.samplers.BaseSampler`` is used as given.
SAMPLERS = ("tpe", "nsga2", "random")


@dataclass
class OptunaSearchResult:
    """What :func:`optuna_search` found: the study, every evaluation, the best trial(s) and the cost spent.

    ``trials`` holds one record per evaluated trial (``number``, ``arch_index``, ``blocks``, ``values``:
    objective name -> store value, ``cost``: charged to the run, ``cumulative_cost``); ``best`` the records of
    the best trial (one objective) or of the study's Pareto front (several: ``study.best_trials``), one per
    model (a model the sampler proposed again appears once, as its first trial).
    """

    study: optuna.Study
    objectives: tuple[Objective, ...]
    trials: list[dict[str, Any]]
    best: list[dict[str, Any]]
    total_cost: float
    cost_unit: str
    budget_exhausted: bool = False
    sampler: str = ""

    @property
    def archs(self) -> list[Arch]:
        """The models evaluated, in trial order (repeats included)."""
        return [Arch.from_index(t["arch_index"]) for t in self.trials]

    def values(self) -> np.ndarray:
        """``[n_trials, k]`` objective values of every evaluated trial, as the store records them."""
        return np.array([[t["values"][o.name] for o in self.objectives] for t in self.trials], dtype=np.float64)


@contextlib.contextmanager
def _optuna_quiet(verbose: bool) -> Iterator[None]:
    """Optuna's INFO lines (a study created, trials finished) only when ``verbose``; its verbosity is restored."""
    import optuna

    old = optuna.logging.get_verbosity()
    if not verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(old)


def make_sampler(sampler: Any, *, seed: int) -> optuna.samplers.BaseSampler:
    """A seeded Optuna sampler by name (``"tpe"``, ``"nsga2"``, ``"random"``), or ``sampler`` itself."""
    import optuna

    if isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        err = InvalidArgumentError if isinstance(sampler, str) else InvalidArgumentTypeError
        raise err(f"sampler must be one of {', '.join(map(repr, SAMPLERS))} or an optuna.samplers.BaseSampler, "
                  f"got {sampler!r} ({type_name(sampler)})")
    if sampler == "tpe":  # multi-objective TPE (MOTPE) when there are several objectives
        return optuna.samplers.TPESampler(seed=seed)
    if sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def _check_int(name: str, value: Any, *, low: int, high: int | None = None) -> int:
    allowed = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentTypeError(f"{name} must be {allowed}, got {value!r} ({type_name(value)})")
    if int(value) < low or (high is not None and int(value) > high):
        raise InvalidArgumentError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def optuna_search(*, sampler: Any = "tpe", objectives: str | Sequence[str | Objective] = ("val_top1",),
                  n_trials: int = 100, budget: float | None = None, cost_unit: str = "seconds",
                  epochs: int | None = None, seed: int = 0, benchmark: Any = None, run: str | None = None,
                  seed_mode: int | str = "mean", verbose: bool = False) -> OptunaSearchResult:
    """Search the benchmark with an Optuna sampler through ask/tell on ``BloxOneShot-v0`` (one step per trial).

    Stops after ``n_trials`` trials or when the env's ``budget`` (in ``cost_unit``) is spent, whichever comes
    first. ``epochs`` is the fidelity every model is trained for (default: the full protocol); ``seed_mode``
    picks the run's seed values as the env does (default ``"mean"``: the mean over seeds, the values of
    :func:`blox_env.pareto.true_front`). ``seed`` seeds the sampler and the env.
    """
    n_trials = _check_int("n_trials", n_trials, low=1)
    seed = _check_int("seed", seed, low=0, high=SEED_MAX)
    verbose = check_bool("verbose", verbose)
    check_budget(budget, cost_unit)
    require("integrations", feature="optuna_search (Optuna driving the env)")
    import optuna

    store = open_benchmark(benchmark)
    objs = parse_objectives(objectives, store=store, run=run)
    study_sampler = make_sampler(sampler, seed=seed)
    # the vector reward of objectives= is MO-Gymnasium's convention, which Gymnasium's scalar-reward checker flags
    env = gym.make("BloxOneShot-v0", benchmark=store, objectives=objs, epochs=epochs, budget=budget,
                   cost_unit=cost_unit, seed_mode=seed_mode, run=run, disable_env_checker=True)
    try:
        choices = env.unwrapped.backend.space.blocks
        with _optuna_quiet(verbose):
            study = optuna.create_study(directions=[f"{o.direction}imize" for o in objs], sampler=study_sampler)
            records, exhausted = _ask_tell(env, study, objs, choices, n_trials=n_trials, seed=seed)
        ledger = env.unwrapped.ledger
        total, unit = float(ledger.spent), ledger.cost_unit
    finally:
        env.close()
    by_number = {r["number"]: r for r in records}
    best_trials = study.best_trials if len(objs) > 1 else [study.best_trial]
    best: list[dict[str, Any]] = []  # one record per model: the first trial that evaluated it, in trial order
    for t in sorted(best_trials, key=lambda t: t.number):
        if all(r["arch_index"] != by_number[t.number]["arch_index"] for r in best):
            best.append(by_number[t.number])
    name = sampler if isinstance(sampler, str) else type(sampler).__name__
    return OptunaSearchResult(study, objs, records, best, total, unit, exhausted, name)


def _ask_tell(env: gym.Env, study: optuna.Study, objs: tuple[Objective, ...],
              choices: tuple[tuple[int, ...], ...], *, n_trials: int, seed: int) -> tuple[list[dict[str, Any]], bool]:
    """The search loop (``study.optimize``): a trial's model is stepped in the env and its values returned;
    (records, budget spent). Records are kept whatever ends the study (n_trials, the budget, the sampler)."""
    import optuna

    records: list[dict[str, Any]] = []
    state = {"episodes": 0, "exhausted": False}
    env.reset(seed=seed)  # a new search run

    def evaluate(trial: optuna.Trial) -> list[float]:
        blocks = tuple(_suggest(trial, name, stage) for name, stage in zip(STAGES, choices))
        local = np.array([stage.index(b) for stage, b in zip(choices, blocks)], dtype=np.int64)
        if state["episodes"]:
            env.reset()  # the next episode of the same search run
        state["episodes"] += 1
        _, _, _, truncated, info = env.step(local)
        if not info.get("evaluated", False):  # nothing left of the budget: nothing was evaluated
            state["exhausted"] = True
            trial.study.stop()
            raise optuna.TrialPruned("the search run's budget is spent: the model was not evaluated")
        values = {o.name: float(info["objectives"][o.name]) for o in objs}
        records.append({"number": trial.number, "arch_index": int(info["arch_index"]), "blocks": blocks,
                        "values": values, "cost": float(info["cost"]),
                        "cumulative_cost": float(info["cumulative_cost"])})
        if truncated:
            state["exhausted"] = True
            trial.study.stop()
        return [values[o.name] for o in objs]

    study.optimize(evaluate, n_trials=n_trials, gc_after_trial=False, show_progress_bar=False)
    return records, bool(state["exhausted"])


def _suggest(trial: optuna.Trial, name: str, stage: tuple[int, ...]) -> int:
    """The sampler's block for one stage, refused (naming the stage's blocks) when it is not one of them."""
    try:
        block = trial.suggest_categorical(name, list(stage))
    except ValueError as exc:  # e.g. a GridSampler or PartialFixedSampler value that is not a choice
        raise InvalidArgumentError(f"the sampler proposed a {name} that is not one of this store's blocks "
                                   f"{list(stage)} ({exc}): a grid or fixed value must use those block ids") from exc
    if isinstance(block, (bool, np.bool_)) or not isinstance(block, (int, np.integer)) or int(block) not in stage:
        raise InvalidArgumentError(f"the sampler proposed {name}={block!r}, not one of this store's blocks "
                                   f"{list(stage)}")
    return int(block)
