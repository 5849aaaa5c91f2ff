"""Integrations refuse bad input: an objective epoch beyond the fidelity, every built-in Optuna sampler, seeds.

On the bundled Blox-mini (9 blocks per stage, 12 epochs, seeds 0, 1, 2); values checked against the store.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from blox_env.datasets.store.core import open_store
from blox_env.errors import BloxError, InvalidArgumentError
from blox_env.extras import missing_modules

pytestmark = pytest.mark.skipif(bool(missing_modules("integrations")),
                                reason='needs the integrations extra: pip install "blox-env[integrations]"')
MINI_SEEDS = (0, 1, 2)
CONFIG = {"stage0": 10, "stage1": 10, "stage2": 10}  # model 20710


@pytest.fixture(scope="module")
def store():
    return open_store("blox-mini")


def _mean(store, metric: str, index: int, epoch: int | None = None) -> float:
    return float(np.mean([store.get(metric, [index], seed=s, epoch=epoch)[0] for s in MINI_SEEDS]))


# ------------------------------------------------------------------------------ an objective epoch beyond the fidelity
def test_an_objective_epoch_beyond_the_fidelity_is_refused(store) -> None:
    from blox_env.integrations import BloxObjective, objective

    with pytest.raises(InvalidArgumentError, match=r"val_top1@12 read epochs beyond the fidelity of 3 epochs"):
        objective(CONFIG, 3, benchmark=store, objectives="val_top1@12")
    with pytest.raises(InvalidArgumentError, match="beyond the fidelity of 4"):
        BloxObjective(benchmark=store, objectives="params,val_top1@5")({**CONFIG, "epochs": 4})
    # at or below the fidelity it is read, and the cost is the fidelity's
    out = objective(CONFIG, 3, benchmark=store, objectives="val_top1@3")
    assert out["fitness"] == pytest.approx(-_mean(store, "val_top1", 20710, 3))
    assert out["cost"] == pytest.approx(_mean(store, "train_time_s", 20710, 3))
    out = objective(CONFIG, 12, benchmark=store, objectives="val_top1@12")
    assert out["fitness"] == pytest.approx(-_mean(store, "val_top1", 20710, 12))
    assert out["cost"] == pytest.approx(_mean(store, "train_time_s", 20710, 12))


# --------------------------------------------------------------------------------------- every built-in Optuna sampler
def _samplers(store) -> dict[str, object]:
    import optuna

    from blox_env.integrations.configspace import BloxObjective

    space = BloxObjective(benchmark=store).space.blocks
    grid = {f"stage{s}": list(b[:2]) for s, b in enumerate(space)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return {
            "GridSampler": optuna.samplers.GridSampler(grid, seed=0),
            "BruteForceSampler": optuna.samplers.BruteForceSampler(seed=0),
            "RandomSampler": optuna.samplers.RandomSampler(seed=0),
            "TPESampler": optuna.samplers.TPESampler(seed=0),
            "NSGAIISampler": optuna.samplers.NSGAIISampler(seed=0),
            "NSGAIIISampler": optuna.samplers.NSGAIIISampler(seed=0),
            "QMCSampler": optuna.samplers.QMCSampler(seed=0, warn_independent_sampling=False),
            "CmaEsSampler": optuna.samplers.CmaEsSampler(seed=0, warn_independent_sampling=False),
            "GPSampler": optuna.samplers.GPSampler(seed=0, n_startup_trials=3),
            "PartialFixedSampler": optuna.samplers.PartialFixedSampler({"stage0": space[0][0]},
                                                                      optuna.samplers.TPESampler(seed=0)),
        }


def test_the_list_covers_every_built_in_sampler(store) -> None:
    import optuna

    built_in = {n for n in optuna.samplers.__all__ if n.endswith("Sampler") and not n.startswith("Base")}
    assert built_in <= set(_samplers(store))


@pytest.mark.parametrize("name", ["GridSampler", "BruteForceSampler", "RandomSampler", "TPESampler", "NSGAIISampler",
                                  "NSGAIIISampler", "QMCSampler", "CmaEsSampler", "GPSampler", "PartialFixedSampler"])
def test_every_built_in_optuna_sampler_runs_and_keeps_its_results(store, name: str) -> None:
    from blox_env.integrations import optuna_search

    r = optuna_search(sampler=_samplers(store)[name], n_trials=8, benchmark=store)
    assert r.sampler == name and len(r.trials) == 8 and not r.budget_exhausted
    for t in r.trials:
        assert t["values"]["val_top1"] == pytest.approx(_mean(store, "val_top1", t["arch_index"]))
    assert r.best[0]["values"]["val_top1"] == max(t["values"]["val_top1"] for t in r.trials)
    if name == "PartialFixedSampler":
        assert {t["blocks"][0] for t in r.trials} == {1}  # Blox-mini's first stage-0 block, fixed


@pytest.mark.parametrize("extra", [0, 5])
def test_a_grid_sampler_ends_the_study_after_its_grid_with_every_result(store, extra: int) -> None:
    import optuna

    from blox_env.integrations import optuna_search

    grid = {"stage0": [1, 8], "stage1": [9], "stage2": [10, 11]}
    r = optuna_search(sampler=optuna.samplers.GridSampler(grid, seed=1), n_trials=4 + extra, benchmark=store)
    assert len(r.trials) == 4 and len(r.study.trials) == 4 and not r.budget_exhausted
    assert sorted(t["blocks"] for t in r.trials) == [(1, 9, 10), (1, 9, 11), (8, 9, 10), (8, 9, 11)]
    best = max(r.trials, key=lambda t: t["values"]["val_top1"])
    assert r.best == [best] and r.study.best_value == best["values"]["val_top1"]


def test_a_grid_value_that_is_not_a_block_of_the_store_is_refused(store) -> None:
    import optuna

    from blox_env.integrations import optuna_search

    grid = {"stage0": [0], "stage1": [9], "stage2": [10]}  # block 0 is not in Blox-mini
    with pytest.raises(InvalidArgumentError, match=r"stage0 that is not one of this store's blocks \[1, 8, 9"):
        optuna_search(sampler=optuna.samplers.GridSampler(grid), n_trials=1, benchmark=store)


def test_a_grid_sampler_under_a_budget_stops_at_the_budget(store) -> None:
    import optuna

    from blox_env.integrations import optuna_search

    grid = {"stage0": [1, 8, 9], "stage1": [9, 10], "stage2": [10, 11]}
    r = optuna_search(sampler=optuna.samplers.GridSampler(grid, seed=0), n_trials=12, budget=15.0, benchmark=store)
    assert r.budget_exhausted and 1 <= len(r.trials) < 12 and r.total_cost >= 15.0
    assert r.trials[-1]["cumulative_cost"] == pytest.approx(r.total_cost)


# --------------------------------------------------------------------------------------------------------- seed ranges
@pytest.mark.parametrize("seed", [-1, 2**32, 2**63])
def test_out_of_range_seeds_are_refused_naming_the_range(store, seed: int) -> None:
    from blox_env.integrations import configuration_space, optuna_search

    with pytest.raises(InvalidArgumentError, match=r"seed must be an integer in 0\.\.4294967295") as info:
        configuration_space(benchmark=store, seed=seed)
    assert isinstance(info.value, BloxError)
    with pytest.raises(InvalidArgumentError, match=r"seed must be an integer in 0\.\.4294967295"):
        optuna_search(benchmark=store, seed=seed, n_trials=1)


def test_the_ends_of_the_seed_range_work(store) -> None:
    from blox_env.integrations import configuration_space, optuna_search

    for seed in (0, 2**32 - 1):
        assert len(configuration_space(benchmark=store, seed=seed).sample_configuration(2)) == 2
        assert len(optuna_search(benchmark=store, seed=seed, n_trials=2, sampler="random").trials) == 2
