"""The space as a ConfigSpace ConfigurationSpace with an objective, and Optuna driving the env.

Everything runs on the bundled Blox-mini (9 blocks per stage, 12 epochs, seeds 0, 1 and 2); values are checked
against the store's own reads. Tests that need ConfigSpace/Optuna skip when the ``integrations`` extra is missing.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blox_env.datasets.store.core import open_store
from blox_env.errors import BloxError, InvalidArgumentError, InvalidArgumentTypeError, MissingDependencyError
from blox_env.extras import missing_modules

needs_extra = pytest.mark.skipif(bool(missing_modules("integrations")),
                                 reason='needs the integrations extra: pip install "blox-env[integrations]"')
MINI_BLOCKS = (1, 8, 9, 10, 11, 23, 24, 27, 33)  # the bundled v2, written out
MINI_SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def store():
    return open_store("blox-mini")


def _mean(store, metric: str, index: int, epoch: int | None = None) -> float:
    """The seed mean of a run metric, averaged here from the per-seed reads."""
    return float(np.mean([store.get(metric, [index], seed=s, epoch=epoch)[0] for s in MINI_SEEDS]))


# ------------------------------------------------------------------------------------------ ConfigSpace
@needs_extra
def test_configuration_space_has_the_three_stages_and_the_epoch_fidelity(store) -> None:
    from ConfigSpace import CategoricalHyperparameter, UniformIntegerHyperparameter

    from blox_env.integrations import configuration_space

    cs = configuration_space(benchmark=store)
    assert sorted(cs.keys()) == ["stage0", "stage1", "stage2"]
    for name in ("stage0", "stage1", "stage2"):
        hp = cs[name]
        assert isinstance(hp, CategoricalHyperparameter)
        assert len(hp.choices) == 9 and tuple(hp.choices) == MINI_BLOCKS
    fid = configuration_space(benchmark=store, fidelity=True)
    assert sorted(fid.keys()) == ["epochs", "stage0", "stage1", "stage2"]
    epochs = fid["epochs"]
    assert isinstance(epochs, UniformIntegerHyperparameter)
    assert (epochs.lower, epochs.upper, epochs.default_value) == (1, store.run_info().epochs, 12)
    assert epochs.meta["fidelity"] is True


@needs_extra
def test_a_seeded_space_samples_the_same_configs(store) -> None:
    from blox_env.integrations import configuration_space

    a = configuration_space(benchmark=store, fidelity=True, seed=3).sample_configuration(6)
    b = configuration_space(benchmark=store, fidelity=True, seed=3).sample_configuration(6)
    assert [dict(c) for c in a] == [dict(c) for c in b]


@needs_extra
def test_sampled_configs_evaluate_to_the_store_values(store) -> None:
    from blox_env.integrations import configuration_space, objective
    from blox_env.space import Arch

    configs = configuration_space(benchmark=store, fidelity=True, seed=0).sample_configuration(12)
    assert len({tuple(dict(c).values()) for c in configs}) > 6
    for config in configs:
        c = dict(config)
        arch = Arch((int(c["stage0"]), int(c["stage1"]), int(c["stage2"])))
        e = int(c["epochs"])
        val, params = _mean(store, "val_top1", arch.index, e), float(store.get("params", [arch.index])[0])
        seconds = _mean(store, "train_time_s", arch.index, e)
        out = objective(config, benchmark=store, objectives=("val_top1", "params"))
        assert out["fitness"] == pytest.approx([-val, params])  # minimised: the accuracy negated
        assert out["cost"] == pytest.approx(seconds)  # the recorded train time at that fidelity
        info = out["info"]
        assert info["values"] == pytest.approx({"val_top1": val, "params": params})
        assert (info["fidelity"], info["arch_index"], info["blocks"]) == (e, arch.index, arch.blocks)
        single = objective(config, benchmark=store)  # one objective: a float
        assert isinstance(single["fitness"], float) and single["fitness"] == pytest.approx(-val)
        one_seed = objective(config, benchmark=store, seed=1)
        assert one_seed["fitness"] == pytest.approx(-store.get("val_top1", [arch.index], seed=1, epoch=e)[0])
        assert one_seed["cost"] == pytest.approx(store.get("train_time_s", [arch.index], seed=1, epoch=e)[0])


@needs_extra
def test_the_fidelity_comes_from_the_argument_the_config_or_the_full_protocol(store) -> None:
    from blox_env.integrations import BloxObjective

    problem = BloxObjective(benchmark=store, objectives="val_top1@2,test_top1,params")
    config = {"stage0": 10, "stage1": 10, "stage2": 10}  # model 20710: (10, 10, 10)
    assert problem(config)["info"]["fidelity"] == 12
    assert problem({**config, "epochs": 4})["info"]["fidelity"] == 4
    out = problem(config, 2.6)  # DEHB's fidelities are floats: the nearest epoch
    assert out["info"]["fidelity"] == 3
    assert out["cost"] == pytest.approx(_mean(store, "train_time_s", 20710, 3))
    # an objective's own @epoch is kept; a column without epochs ignores the fidelity
    assert out["info"]["values"]["val_top1@2"] == pytest.approx(_mean(store, "val_top1", 20710, 2))
    assert out["info"]["values"]["test_top1"] == pytest.approx(_mean(store, "test_top1", 20710))
    assert problem({**config, "epochs": 5}, 5)["info"]["fidelity"] == 5
    with pytest.raises(InvalidArgumentError, match="epochs=5 but fidelity=3"):
        problem({**config, "epochs": 5}, 3)
    for bad in (0, 13, 0.4, float("nan")):
        with pytest.raises(InvalidArgumentError, match=r"1\.\.12"):
            problem(config, bad)
    for bad in (True, "4"):
        with pytest.raises(InvalidArgumentTypeError):
            problem(config, bad)


@needs_extra
def test_configs_from_another_space_are_refused(store) -> None:
    from ConfigSpace import ConfigurationSpace

    from blox_env.integrations import BloxObjective, objective

    other = ConfigurationSpace(seed=0, space={"x": (0.0, 1.0)}).sample_configuration()
    with pytest.raises(InvalidArgumentError, match="not from the BLOX configuration space.*unknown x.*missing stage0"):
        objective(other, benchmark=store)
    allowed = r"allowed \[1, 8, 9, 10, 11, 23, 24, 27, 33\]"
    with pytest.raises(InvalidArgumentError, match=r"stage0=0 is not a block .*" + allowed):
        objective({"stage0": 0, "stage1": 9, "stage2": 9}, benchmark=store)  # a block Blox-mini does not have
    with pytest.raises(InvalidArgumentError, match="stage2='10' is not a block"):
        objective({"stage0": 1, "stage1": 9, "stage2": "10"}, benchmark=store)
    with pytest.raises(InvalidArgumentTypeError, match="ConfigSpace Configuration or a dict"):
        objective([1, 9, 10], benchmark=store)
    with pytest.raises(InvalidArgumentError, match="unknown objective column"):
        objective({"stage0": 1, "stage1": 9, "stage2": 10}, benchmark=store, objectives=("val_acc",))
    for kwargs in ({"seed": 7}, {"seed": None}, {"cost_unit": "hours"}, {"missing_cost": "zero"}):
        with pytest.raises(InvalidArgumentError):
            BloxObjective(benchmark=store, **kwargs)
    with pytest.raises(InvalidArgumentTypeError):
        BloxObjective(benchmark=store).configuration_space(fidelity="yes")


# ------------------------------------------------------------------------------------------ Optuna
def _check_values_against_store(store, result) -> None:
    for t in result.trials:
        assert t["values"]["val_top1"] == pytest.approx(_mean(store, "val_top1", t["arch_index"]))
        if "params" in t["values"]:
            assert t["values"]["params"] == store.get("params", [t["arch_index"]])[0]


@needs_extra
def test_optuna_tpe_is_reproducible_within_budget_and_beats_the_median(store) -> None:
    from blox_env.integrations import optuna_search

    a = optuna_search(sampler="tpe", n_trials=40, seed=0, benchmark=store)
    b = optuna_search(sampler="tpe", n_trials=40, seed=0, benchmark=store)
    assert [t["arch_index"] for t in a.trials] == [t["arch_index"] for t in b.trials]
    assert len(a.trials) == 40 and len(a.study.trials) == 40 and not a.budget_exhausted
    _check_values_against_store(store, a)
    best = a.best[0]["values"]["val_top1"]
    assert best == max(t["values"]["val_top1"] for t in a.trials) == a.study.best_value
    assert best > float(np.median(store.get("val_top1", seed="mean")))
    # the run charges each model once (a repeat is free): the seed-mean train time of every distinct model
    distinct = {t["arch_index"] for t in a.trials}
    assert a.total_cost == pytest.approx(sum(_mean(store, "train_time_s", i) for i in distinct))
    assert a.cost_unit == "seconds" and a.archs[0].index == a.trials[0]["arch_index"]
    c = optuna_search(sampler="tpe", n_trials=40, seed=1, benchmark=store)
    assert [t["arch_index"] for t in c.trials] != [t["arch_index"] for t in a.trials]


@needs_extra
def test_optuna_nsga2_two_objectives_gives_a_non_dominated_front(store) -> None:
    import optuna

    from blox_env.integrations import optuna_search

    a = optuna_search(sampler="nsga2", objectives=("val_top1", "params"), n_trials=60, seed=0, benchmark=store)
    b = optuna_search(sampler="nsga2", objectives=("val_top1", "params"), n_trials=60, seed=0, benchmark=store)
    assert [t["arch_index"] for t in a.trials] == [t["arch_index"] for t in b.trials]
    assert a.study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert len(a.trials) == 60
    _check_values_against_store(store, a)
    values = a.values()  # [n, 2]: accuracy (max), params (min)

    def dominates(p: np.ndarray, q: np.ndarray) -> bool:
        return bool(p[0] >= q[0] and p[1] <= q[1] and (p[0] > q[0] or p[1] < q[1]))

    front = np.array([[t["values"]["val_top1"], t["values"]["params"]] for t in a.best])
    assert len(front) >= 2
    assert len({t["arch_index"] for t in a.best}) == len(a.best)  # one record per model
    assert {t["arch_index"] for t in a.best} == {a.trials[[r["number"] for r in a.trials].index(t.number)]
                                                 ["arch_index"] for t in a.study.best_trials}
    for i, p in enumerate(front):
        assert not any(dominates(q, p) for j, q in enumerate(front) if j != i)
    on_front = {t["number"] for t in a.best}
    for t, v in zip(a.trials, values):  # every trial off the front is dominated by (or equal to) one on it
        if t["number"] not in on_front:
            assert any(dominates(q, v) or np.array_equal(q, v) for q in front)


@needs_extra
def test_optuna_search_stops_when_the_budget_is_spent(store) -> None:
    import optuna

    from blox_env.integrations import optuna_search

    r = optuna_search(sampler=optuna.samplers.RandomSampler(seed=2), n_trials=100, budget=50.0, benchmark=store)
    assert r.budget_exhausted and len(r.trials) < 100 and r.sampler == "RandomSampler"
    assert r.total_cost >= 50.0 and r.trials[-1]["cumulative_cost"] == pytest.approx(r.total_cost)
    assert r.trials[-2]["cumulative_cost"] < 50.0
    fewer = optuna_search(sampler="random", objectives="val_top1@4", epochs=4, n_trials=5, benchmark=store)
    assert len(fewer.trials) == 5
    for t in fewer.trials:
        assert t["values"]["val_top1@4"] == pytest.approx(_mean(store, "val_top1", t["arch_index"], 4))


@needs_extra
@pytest.mark.parametrize(("kwargs", "err", "match"), [
    ({"sampler": "cmaes"}, InvalidArgumentError, "sampler must be one of 'tpe', 'nsga2', 'random'"),
    ({"sampler": 3}, InvalidArgumentTypeError, "sampler must be one of"),
    ({"n_trials": 0}, InvalidArgumentError, "n_trials must be an integer >= 1"),
    ({"n_trials": 2.0}, InvalidArgumentTypeError, "n_trials"),
    ({"seed": True}, InvalidArgumentTypeError, "seed"),
    ({"budget": -1.0}, InvalidArgumentError, "budget must be a positive"),
    ({"objectives": ("val_acc",)}, InvalidArgumentError, "unknown objective column"),
    ({"objectives": ()}, InvalidArgumentError, "objectives must be a non-empty"),
    ({"verbose": "no"}, InvalidArgumentTypeError, "verbose"),
    ({"benchmark": 3}, InvalidArgumentTypeError, "benchmark must be"),
])
def test_optuna_search_bad_input(store, kwargs, err, match) -> None:
    from blox_env.integrations import optuna_search

    with pytest.raises(err, match=match) as info:
        optuna_search(**{"benchmark": store, "n_trials": 3, **kwargs})
    assert isinstance(info.value, BloxError)


# ------------------------------------------------------------------------------------------ optional extra
def test_importing_the_package_imports_neither_library() -> None:
    code = ("import sys, json, blox_env.integrations\n"
            "print(json.dumps([m in sys.modules for m in ('ConfigSpace', 'optuna')]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parent)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [False, False]


@pytest.mark.parametrize(("hidden", "call"), [
    ("ConfigSpace", lambda s: __import__("blox_env.integrations", fromlist=["x"]).configuration_space(benchmark=s)),
    ("ConfigSpace", lambda s: __import__("blox_env.integrations", fromlist=["x"]).objective({}, benchmark=s)),
    ("optuna", lambda s: __import__("blox_env.integrations", fromlist=["x"]).optuna_search(benchmark=s)),
    ("syne_tune", lambda s: __import__("blox_env.integrations.syne_tune", fromlist=["x"]).blackbox(s)),
    ("fastparquet", lambda s: __import__("blox_env.integrations.syne_tune", fromlist=["x"]).export("/tmp/x", s)),
])
def test_a_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, store, hidden: str, call) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name.split(".")[0] == hidden else real(name, *a, **k))
    extra = "syne-tune" if hidden in ("syne_tune", "fastparquet") else "integrations"
    with pytest.raises(MissingDependencyError, match=rf'pip install "blox-env\[{extra}\]"'):
        call(store)
