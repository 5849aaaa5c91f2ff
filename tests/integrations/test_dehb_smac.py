"""DEHB and SMAC3 run for real on ``configuration_space()`` / ``objective()`` (no mocks).

Multi-fidelity (epochs as the budget), seeded, tiny runs on the bundled Blox-mini; every evaluation and the
incumbent are checked against the store's own reads (seed mean, as ``objective()`` reads by default).
SMAC >= 2.4 uses scikit-learn's random forest, so no pyrfr/SWIG build is needed. DEHB's latest release
(0.1.2) declares numpy<2; CI installs it with ``--no-deps`` and these tests show it works on numpy 2.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest

from blox_env.datasets.store.core import open_store
from blox_env.extras import missing_modules

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MINI_SEEDS = (0, 1, 2)
needs_dehb = pytest.mark.skipif(bool(missing_modules("dehb")),
                                reason='needs the dehb extra: pip install "blox-env[dehb]"')
needs_smac = pytest.mark.skipif(bool(missing_modules("smac")),
                                reason='needs the smac extra: pip install "blox-env[smac]"')


@pytest.fixture(scope="module")
def store():
    return open_store("blox-mini")


def _mean(store, metric: str, index: int, epoch: int | None = None) -> float:
    return float(np.mean([store.get(metric, [index], seed=s, epoch=epoch)[0] for s in MINI_SEEDS]))


def index_of(config) -> int:
    c = {k: int(v) for k, v in dict(config).items()}
    return c["stage0"] + 45 * c["stage1"] + 2025 * c["stage2"]


# ------------------------------------------------------------------------------------------ DEHB
def run_dehb(store, tmp_path: Path, *, seed: int, fevals: int):
    from dehb import DEHB

    from blox_env.integrations import configuration_space, objective

    dehb = DEHB(f=objective, cs=configuration_space(benchmark=store, seed=seed), min_fidelity=1, max_fidelity=12,
                eta=3, n_workers=1, seed=seed, output_path=str(tmp_path), log_level="ERROR")
    _, _, history = dehb.run(fevals=fevals, benchmark=store)
    return dehb, history


@needs_dehb
def test_dehb_multi_fidelity_run_matches_the_store(store, tmp_path) -> None:
    dehb, history = run_dehb(store, tmp_path / "a", seed=0, fevals=24)
    assert len(history) == 24
    fidelities = set()
    for _, _, fitness, cost, fidelity, info in history:
        epochs = int(round(float(fidelity)))
        assert info["fidelity"] == epochs
        fidelities.add(epochs)
        assert fitness == pytest.approx(-_mean(store, "val_top1", info["arch_index"], epochs))
        assert cost == pytest.approx(_mean(store, "train_time_s", info["arch_index"], epochs))
    assert fidelities == {1, 4, 12}  # eta=3 from 1 to 12 epochs: 1.33, 4, 12 rounded to the nearest epoch
    config, score = dehb.get_incumbents()
    best = min(history, key=lambda row: row[2])
    assert score == best[2] and index_of(config) == best[5]["arch_index"]
    assert -score == pytest.approx(_mean(store, "val_top1", index_of(config), best[5]["fidelity"]))
    # seeded: the same seed gives the same run
    _, again = run_dehb(store, tmp_path / "b", seed=0, fevals=24)
    assert [(r[5]["arch_index"], r[4]) for r in again] == [(r[5]["arch_index"], r[4]) for r in history]


# ------------------------------------------------------------------------------------------ SMAC
def run_smac(store, tmp_path: Path, *, seed: int, trials: int):
    from smac import MultiFidelityFacade, Scenario

    from blox_env.integrations import configuration_space, objective

    def target(config, seed: int = 0, budget: float = 1.0) -> float:
        return objective(config, budget, benchmark=store)["fitness"]

    scenario = Scenario(configuration_space(benchmark=store), deterministic=True, n_trials=trials, min_budget=1,
                        max_budget=12, seed=seed, output_directory=tmp_path)
    smac = MultiFidelityFacade(scenario, target, overwrite=True, logging_level=40,
                               initial_design=MultiFidelityFacade.get_initial_design(scenario, n_configs=5))
    return smac, smac.optimize()


@needs_smac
@pytest.mark.slow  # about 10 s: SMAC's random forest refits after every trial
def test_smac_multi_fidelity_run_matches_the_store(store, tmp_path) -> None:
    smac, incumbent = run_smac(store, tmp_path / "a", seed=0, trials=20)
    rh = smac.runhistory
    assert len(rh) == 20
    budgets = set()
    for key, value in rh.items():
        epochs = int(round(key.budget))
        budgets.add(epochs)
        index = index_of(rh.get_config(key.config_id))
        assert value.cost == pytest.approx(-_mean(store, "val_top1", index, epochs))
    assert budgets == {1, 4, 12}
    mine = [(key.budget, value.cost) for key, value in rh.items() if rh.get_config(key.config_id) == incumbent]
    budget, cost = max(mine)
    assert -cost == pytest.approx(_mean(store, "val_top1", index_of(incumbent), int(round(budget))))
    _, again = run_smac(store, tmp_path / "b", seed=0, trials=20)
    assert dict(again) == dict(incumbent)


# ------------------------------------------------------------------------------------------ examples
def run_example(name: str, argv: list[str]) -> dict:
    return runpy.run_path(str(EXAMPLES / name), run_name="example")["main"](argv)


@needs_dehb
def test_the_dehb_example_runs(store, tmp_path, capsys) -> None:
    out = run_example("dehb_blox.py", ["--store", "blox-mini", "--fevals", "10", "--out", str(tmp_path)])
    assert out["evaluations"] == 10
    assert -out["score"] == pytest.approx(_mean(store, "val_top1", out["arch_index"], out["fidelity"]))
    assert "incumbent:" in capsys.readouterr().out


@needs_smac
@pytest.mark.slow
def test_the_smac_example_runs(store, tmp_path, capsys) -> None:
    out = run_example("smac_blox.py", ["--store", "blox-mini", "--trials", "8", "--out", str(tmp_path)])
    assert out["trials"] == 8
    assert -out["cost"] == pytest.approx(_mean(store, "val_top1", index_of(out["config"]), out["epochs"]))
    assert "incumbent:" in capsys.readouterr().out
