"""Predictors with zero-cost proxy features: the transform, the unchanged path without them, save/load, bad input.

A tiny synthetic store (5 x 5 x 4 = 100 models) gets three proxies at two initialisation seeds: ``big`` is
heavy-tailed (1 .. 1e20), ``signed`` has both signs and a missing value, ``noise`` is plain N(0, 1).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.datasets.synthetic import synthetic_store
from blox_env.errors import (
    ArchitectureNotFoundError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    PredictorFolderError,
    PredictorNotFittedError,
)
from blox_env.predictors import GCNPredictor, GINPredictor, MLPPredictor, ProxyFeatures, TreePredictor, one_hot_blocks
from blox_env.predictors.evaluation import EvalSpec, make_predictor, run_evaluation
from blox_env.predictors.metrics import evaluate_predictions
from blox_env.space import Arch, SubSpace

SPACE = SubSpace(((0, 5, 9, 20, 30), (1, 12, 17, 36, 40), (2, 8, 21, 33)))  # 100 models
OUTSIDE = Arch.from_blocks(44, 44, 44).index  # a model the store does not hold
NAMES = ("big", "noise", "signed")
TINY_GCN = {"hidden": 16, "epochs": 4, "batch_size": 32}
FACTORIES = {
    "mlp": lambda f: MLPPredictor(hidden=16, epochs=8, batch_size=32, features=f),
    "tree": lambda f: TreePredictor(n_estimators=30, features=f),
    "gcn": lambda f: GCNPredictor(**TINY_GCN, features=f),
    "gin": lambda f: GINPredictor(**TINY_GCN, features=f),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> BloxStore:
    path = tmp_path_factory.mktemp("pf") / "s.zarr"
    synthetic_store(path, space=SPACE, seeds=(0, 1), epochs=4, latency=False).close()
    rng = np.random.default_rng(1)
    with BloxStore.open(path, mode="a") as st:
        n = len(st)
        st.create_proxies(list(NAMES), init_seeds=[0, 1])
        for init_seed in (0, 1):
            signed = rng.normal(0, 1, n) * 10.0 ** rng.uniform(0, 4, n)
            signed[3] = np.nan
            values = {"big": 10.0 ** rng.uniform(0, 20, n), "noise": rng.normal(0, 1, n), "signed": signed}
            st.write_proxies(st.index, init_seed=init_seed, values=values,
                             seconds={k: np.full(n, 0.1) for k in values})
    return open_store(path)


@pytest.fixture(scope="module")
def split(store: BloxStore) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    idx = store.index
    y = store.get("val_top1", seed="mean")
    perm = np.random.default_rng(0).permutation(len(idx))
    return idx[perm[:60]], y[perm[:60]], idx[perm[60:]], y[perm[60:]]


@pytest.fixture(scope="module")
def features(store: BloxStore) -> ProxyFeatures:
    return ProxyFeatures.from_store(store)


def _expected(raw_train: np.ndarray, raw_query: np.ndarray) -> np.ndarray:
    """The documented transform, computed independently: log(1 + |x|) with the sign, train stats, NaN -> mean."""
    def slog(x: np.ndarray) -> np.ndarray:
        return np.copysign(np.log(1.0 + np.abs(x)), x)

    zt = slog(raw_train)
    mean = np.array([zt[~np.isnan(zt[:, j]), j].mean() for j in range(zt.shape[1])])
    std = np.array([zt[~np.isnan(zt[:, j]), j].std() for j in range(zt.shape[1])])
    zq = slog(raw_query)
    zq[np.isnan(zq)] = np.broadcast_to(mean, zq.shape)[np.isnan(zq)]
    return (zq - mean) / std


def test_table_from_the_store_and_transform_against_numpy(store, split, features) -> None:
    x, _, xt, _ = split
    assert features.names == NAMES and features.init_seed == "mean" and not features.fitted
    assert features.n_features == 3 and len(features.indices) == len(store)
    raw = np.column_stack([store.get(f"proxy:{n}", init_seed=1) for n in NAMES])
    one = ProxyFeatures.from_store(store, ("signed", "big"), init_seed=1)
    np.testing.assert_array_equal(one.raw(store.index), raw[:, [2, 0]])
    mean_raw = (np.column_stack([store.get(f"proxy:{n}", init_seed=0) for n in NAMES]) + raw) / 2
    np.testing.assert_allclose(features.raw(store.index), mean_raw)  # NaN where both seeds miss it
    fitted = features.fit(x)
    assert fitted.fitted and not features.fitted  # fit returns a fitted copy
    query = np.concatenate([xt, store.index[[3]]])  # the model whose 'signed' proxy is missing
    got = fitted.transform(query)
    assert got.dtype == np.float32 and got.shape == (len(query), 3)
    want = _expected(features.raw(x), features.raw(query))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fitted.transform(x).mean(axis=0), 0.0, atol=1e-5)  # standardised on train
    # the heavy-tailed proxy spans 20 decades raw, a few standard deviations after the transform
    assert np.ptp(features.raw(store.index)[:, 0]) > 1e15 and np.abs(fitted.transform(store.index)[:, 0]).max() < 4


def test_predictions_unchanged_without_features(split, tmp_path) -> None:
    x, y, xt, _ = split
    tree = TreePredictor(n_estimators=30).fit(x, y, seed=3)
    from sklearn.ensemble import GradientBoostingRegressor

    direct = GradientBoostingRegressor(n_estimators=30, max_depth=3, learning_rate=0.05, subsample=0.8,
                                       random_state=3).fit(one_hot_blocks(x), y)
    np.testing.assert_array_equal(tree.predict(xt), direct.predict(one_hot_blocks(xt)))
    for name, make in FACTORIES.items():
        plain = (MLPPredictor(hidden=16, epochs=8, batch_size=32) if name == "mlp" else
                 TreePredictor(n_estimators=30) if name == "tree" else
                 (GCNPredictor if name == "gcn" else GINPredictor)(**TINY_GCN))
        a = plain.fit(x, y, seed=0).predict(xt)
        pred = make(None).fit(x, y, seed=0)
        np.testing.assert_array_equal(pred.predict(xt), a, err_msg=name)
        folder = pred.save(tmp_path / name)
        assert "features" not in json.loads((folder / "predictor.json").read_text())  # folder format unchanged
        assert not (folder / "features.npz").exists()
    mlp = MLPPredictor(hidden=16, epochs=1, features=None).fit(x, y, seed=0)
    assert mlp.model[0].weight.shape == (16, 135)
    gcn = GCNPredictor(hidden=16, epochs=1, features=None).fit(x, y, seed=0)
    assert gcn.model.head.weight.shape == (1, 16)


def test_features_shape_the_models_and_carry_signal(store, split, features) -> None:
    x, y, xt, _ = split
    mlp = MLPPredictor(hidden=16, epochs=2, features=features).fit(x, y, seed=0)
    assert mlp.model[0].weight.shape == (16, 135 + 3) and mlp.features.fitted and not features.fitted
    gcn = GCNPredictor(hidden=16, epochs=2, features=features).fit(x, y, seed=0)
    assert gcn.model.head.weight.shape == (1, 16 + 3)
    out = gcn.predict(xt)
    assert out.shape == (len(xt),) and np.isfinite(out).all()
    assert not np.array_equal(out, GCNPredictor(hidden=16, epochs=2).fit(x, y, seed=0).predict(xt))
    # a target that only a proxy explains: the tree learns it with the proxies and cannot without them
    target = np.log10(store.get("proxy:big", x, init_seed="mean"))
    truth = np.log10(store.get("proxy:big", xt, init_seed="mean"))
    with_ = evaluate_predictions(truth, TreePredictor(n_estimators=50, features=features).fit(x, target, seed=0)
                                 .predict(xt))["spearman"]
    without = evaluate_predictions(truth, TreePredictor(n_estimators=50).fit(x, target, seed=0).predict(xt))["spearman"]
    assert with_ > 0.9 and without < 0.5, (with_, without)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_save_load_keeps_fitted_statistics_and_predictions(name, split, features, tmp_path) -> None:
    x, y, xt, _ = split
    pred = FACTORIES[name](features).fit(x, y, seed=0)
    folder = pred.save(tmp_path / name)
    meta = json.loads((folder / "predictor.json").read_text())["features"]
    assert meta["names"] == list(NAMES) and meta["init_seed"] == "mean"
    np.testing.assert_array_equal(meta["mean"], pred.features.mean)
    loaded = type(pred).load(folder)
    np.testing.assert_array_equal(loaded.features.mean, pred.features.mean)
    np.testing.assert_array_equal(loaded.features.std, pred.features.std)
    np.testing.assert_array_equal(loaded.predict(xt), pred.predict(xt))
    assert not any(p.suffix in (".pkl", ".pickle") for p in folder.iterdir())


def test_bad_input(tmp_path, store, split, features) -> None:
    x, y, xt, _ = split
    with pytest.raises(InvalidArgumentError, match="unknown proxy 'snip': this store has big, noise, signed"):
        ProxyFeatures.from_store(store, ("big", "snip"))
    with pytest.raises(InvalidArgumentTypeError, match="tuple of proxy names"):
        ProxyFeatures.from_store(store, "big")
    with pytest.raises(InvalidArgumentError, match=r"init_seed must be one of \[0, 1\] or 'mean'"):
        ProxyFeatures.from_store(store, init_seed=7)
    bare = tmp_path / "bare.zarr"
    synthetic_store(bare, space=SPACE, epochs=2, latency=False).close()
    with pytest.raises(InvalidArgumentError, match="holds no zero-cost proxies"):
        ProxyFeatures.from_store(open_store(bare))
    with pytest.raises(InvalidArgumentError, match=r"shape \(models, proxies\) = \(3, 2\)"):
        ProxyFeatures(names=("a", "b"), indices=np.array([1, 2, 3]), values=np.zeros((3, 1)))
    with pytest.raises(InvalidArgumentError, match="one value per proxy"):
        ProxyFeatures(names=("a",), indices=np.array([1]), values=np.zeros((1, 1)), mean=np.zeros(2), std=np.ones(2))
    with pytest.raises(InvalidArgumentError, match="sorted and distinct"):
        ProxyFeatures(names=("a",), indices=np.array([2, 1]), values=np.zeros((2, 1)))
    with pytest.raises(PredictorNotFittedError, match="not fitted"):
        features.transform(xt)
    with pytest.raises(ArchitectureNotFoundError, match=f"first: index {OUTSIDE}.*covers the 100 models"):
        features.fit(np.append(x, OUTSIDE))
    mlp = MLPPredictor(hidden=8, epochs=1, features=features).fit(x, y, seed=0)
    with pytest.raises(ArchitectureNotFoundError, match="no proxy features for 1 of 2 models"):
        mlp.predict([int(xt[0]), OUTSIDE])
    nan_col = ProxyFeatures(names=("a", "b"), indices=np.array([1, 2, 3]), values=[[1, np.nan], [2, np.nan], [3, 4]])
    with pytest.raises(InvalidArgumentError, match="proxy b has no value for any of the 2 training models"):
        nan_col.fit([1, 2])
    with pytest.raises(InvalidArgumentTypeError, match="features must be a ProxyFeatures"):
        TreePredictor(features=("big",))
    with pytest.raises(TypeError):
        MLPPredictor(None, features)  # keyword-only
    with pytest.raises(InvalidArgumentError, match="brp takes no proxy features"):
        make_predictor("brp", features=features)


def test_damaged_feature_folders_are_refused(split, features, tmp_path) -> None:
    x, y, xt, _ = split
    saved = MLPPredictor(hidden=8, epochs=1, features=features).fit(x, y, seed=0).save(tmp_path / "ok")

    def damaged(name: str) -> Path:
        return Path(shutil.copytree(saved, tmp_path / name))

    short = damaged("short")
    np.savez(short / "features.npz", indices=features.indices, values=features.values[:, :2])
    with pytest.raises(PredictorFolderError, match=r"shape \(models, proxies\)"):
        MLPPredictor.load(short)
    edited = damaged("edited")
    meta = json.loads((edited / "predictor.json").read_text())
    meta["features"]["std"][1] = 0.0
    (edited / "predictor.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorFolderError, match="features.std"):
        MLPPredictor.load(edited)
    orphan = damaged("orphan")
    meta = json.loads((orphan / "predictor.json").read_text())
    del meta["features"]
    (orphan / "predictor.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorFolderError, match="names no features"):
        MLPPredictor.load(orphan)
    gone = damaged("gone")
    (gone / "features.npz").unlink()
    with pytest.raises(PredictorFolderError, match="features.npz is missing"):
        MLPPredictor.load(gone)


def test_evaluation_rows_with_features(store, features) -> None:
    spec = EvalSpec(predictors=("tree",), train_sizes=(30,), seeds=2, test_size=20)
    rows = run_evaluation(store, spec=spec, features=features, progress=False)
    plain = run_evaluation(store, spec=spec, progress=False)
    assert len(rows) == 2 and all(r["features"] for r in rows) and not any("features" in r for r in plain)
    assert [r["spearman"] for r in rows] != [r["spearman"] for r in plain]
