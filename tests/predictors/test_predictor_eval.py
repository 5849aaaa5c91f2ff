"""Predictor evaluation protocol, its CLI, and the surrogate reward in the env."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from typer.testing import CliRunner

import blox_env  # noqa: F401
from blox_env.cli.root import app
from blox_env.datasets.store.core import open_store
from blox_env.datasets.synthetic import synthetic_store
from blox_env.errors import InvalidArgumentError
from blox_env.predictors.evaluation import EvalSpec, noise_ceiling, run_evaluation, summarise
from blox_env.reports.predictors import plot_results
from blox_env.rewards.surrogate import SurrogateReward
from blox_env.space import Arch, SubSpace

SPACE = SubSpace(((0, 9, 21, 30), (1, 10, 12, 36), (2, 11, 23, 44)))  # 64 models


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("pe") / "s.zarr"
    synthetic_store(path, space=SPACE, seeds=(0, 1), epochs=6, seed=3).close()
    return open_store(path)


def test_protocol_rows_summary_and_plot(store, tmp_path) -> None:
    spec = EvalSpec(predictors=("tree", "constant"), train_sizes=(10, 30), seeds=2, test_size=20)
    rows = run_evaluation(store, spec=spec, progress=False)
    assert len(rows) == 2 * 2 * 2
    assert {"spearman", "kendall_tau", "pearson", "mae", "precision@5", "fit_s", "predict_s"} <= set(rows[0])
    summary = summarise(rows)
    assert summary[("tree", 30)][0] > 0.5  # block effects are additive in the synthetic store
    assert np.isnan(summary[("constant", 30)][0]) or summary[("constant", 30)][0] < summary[("tree", 30)][0]
    manual = np.mean([r["spearman"] for r in rows if r["predictor"] == "tree" and r["train_size"] == 30])
    assert summary[("tree", 30)][0] == pytest.approx(manual)
    assert 0 < rows[0]["noise_ceiling"] <= 1 and 0 < noise_ceiling(store) <= 1
    png = plot_results(rows, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidArgumentError, match="exceed"):
        run_evaluation(store, spec=EvalSpec(predictors=("tree",), train_sizes=(60,), test_size=20), progress=False)
    with pytest.raises(InvalidArgumentError, match="unknown predictor"):
        EvalSpec(predictors=("xgboost",))


def test_cli_eval_and_train(store, tmp_path) -> None:
    pytest.importorskip("dgl")  # the command needs the [predictors] extra (skipped only in core-only runs)
    runner = CliRunner()
    res = runner.invoke(app, ["predictors", "eval", "--store", store.location, "--predictors", "tree,mlp",
                              "--sizes", "20", "--seeds", "1", "--test-size", "20",
                              "--out", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert len(data["rows"]) == 2 and (tmp_path / "r.png").exists()
    res = runner.invoke(app, ["predictors", "train", "--model", "tree", "--store", store.location,
                              "--train-size", "40", "--out", str(tmp_path / "tree")])
    assert res.exit_code == 0 and "spearman" in res.output and (tmp_path / "tree").exists()


def test_surrogate_reward_in_the_env(store) -> None:
    from blox_env.predictors import TreePredictor

    archs = [Arch.from_index(int(i)) for i in store.index]
    y = store.get("val_top1", seed="mean")
    pred = TreePredictor().fit(archs[:40], y[:40], seed=0)
    backend = SurrogateReward(pred, space=SPACE, holdout_spearman=0.8)
    env = gym.make("Blox-v0", backend=backend)
    env.reset(seed=0)
    for a in (1, 2, 3):
        *_, info = env.step(a)
    assert info["source"] == "surrogate" and info["metrics"]["surrogate_spearman"] == 0.8
    arch = Arch.from_index(info["arch_index"])
    assert info["metrics"]["val_top1"] == pytest.approx(pred.predict([arch])[0])
    env2 = gym.make("BloxOneShot-v0", reward="surrogate", predictor=pred, space=SPACE, holdout_spearman=0.8)
    env2.reset(seed=0)
    _, r, *_ = env2.step(np.array([0, 0, 0]))
    assert 0 < r < 1
    with pytest.raises(InvalidArgumentError, match="predictor"):
        gym.make("Blox-v0", reward="surrogate")
