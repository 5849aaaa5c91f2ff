"""Predictors: each beats a constant on held-out synthetic data, BRP consistency, save/load, signatures, metrics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from blox_env.errors import InvalidArgumentError, PredictorNotFittedError
from blox_env.predictors import (
    BRPPredictor,
    ConstantPredictor,
    DonnaPredictor,
    GCNPredictor,
    GINPredictor,
    LanaPredictor,
    MLPPredictor,
    PairwisePredictor,
    Predictor,
    TreePredictor,
    evaluate_predictions,
    one_hot_blocks,
    precision_at_k,
)
from blox_env.space import N_BLOCKS, N_STAGES, Arch, SubSpace, as_indices, indices_to_blocks

SPACE = SubSpace(((0, 5, 9, 20, 30), (1, 12, 17, 36, 40), (2, 8, 21, 33, 44)))  # 125 models
TINY = {"hidden": 32, "epochs": 40, "batch_size": 32, "lr": 3e-3}

FACTORIES = {
    "gcn": lambda: GCNPredictor(**TINY),
    "gin": lambda: GINPredictor(**TINY),
    "brp": lambda: BRPPredictor(**TINY, classifier_hidden=16),
    "mlp": lambda: MLPPredictor(hidden=64, epochs=60, batch_size=32, lr=3e-3),
    "tree": lambda: TreePredictor(n_estimators=100),
    "constant": ConstantPredictor,
}
REGRESSORS = ["gcn", "gin", "mlp", "tree"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """60 train / 40 test models of a synthetic store; targets = seed-mean best validation top-1."""
    from blox_env.datasets.synthetic import synthetic_store

    store = synthetic_store(tmp_path_factory.mktemp("pred") / "s.zarr", space=SPACE, latency=False)
    idx = store.index
    y = store.get("val_top1", seed="mean")
    perm = np.random.default_rng(0).permutation(len(idx))
    tr, te = perm[:60], perm[60:100]
    return idx[tr], y[tr], idx[te], y[te]


@pytest.fixture(scope="module")
def fitted(data):
    """Predictors fitted once per module, on first request."""
    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            x, y, _, _ = data
            cache[name] = FACTORIES[name]().fit(x, y, seed=0)
        return cache[name]

    return get


def test_protocols(fitted):
    for name in ("gcn", "constant"):
        assert isinstance(fitted(name), Predictor)
    assert isinstance(fitted("brp"), PairwisePredictor)
    assert not isinstance(fitted("gcn"), PairwisePredictor)


@pytest.mark.parametrize("name", REGRESSORS)
def test_regressors_beat_a_constant_on_held_out_models(name, data, fitted):
    _, _, xt, yt = data
    constant = evaluate_predictions(yt, fitted("constant").predict(xt))
    scores = evaluate_predictions(yt, fitted(name).predict(xt), top_k=(5, 10))
    assert scores["spearman"] > 0.3, scores
    assert scores["mae"] < constant["mae"], (scores, constant)


def test_graph_predictors_report_throughput(fitted):
    for name in ("gcn", "gin", "brp"):
        pred = fitted(name)
        assert pred.throughput_ > 0 and pred.fit_time_s_ > 0 and pred.n_train_ == 60


def test_brp_ranks_held_out_models(data, fitted):
    _, _, xt, yt = data
    assert evaluate_predictions(yt, fitted("brp").predict(xt))["spearman"] > 0.3


def test_brp_ranking_is_consistent_with_pairwise_outputs(data, fitted):
    brp = fitted("brp")
    xt = data[2][:25]
    n = len(xt)
    w = brp.win_matrix(xt)
    np.testing.assert_allclose(w + w.T, 1.0, atol=1e-6)
    np.testing.assert_allclose(np.diag(w), 0.5, atol=1e-6)
    i, j = np.triu_indices(n, 1)
    np.testing.assert_allclose(brp.compare(xt[i], xt[j]), w[i, j], atol=1e-5)
    np.testing.assert_allclose(brp.compare(xt[0], xt[1:]), w[0, 1:], atol=1e-5)  # one side broadcast
    score = brp.predict(xt)
    np.testing.assert_allclose(score, (w.sum(axis=1) - 0.5) / (n - 1), atol=1e-5)
    order = brp.rank(xt)
    assert np.all(np.diff(score[order]) <= 1e-12)
    wins = (w > 0.5).sum(axis=1)  # Copeland / Borda-style count of pairwise wins
    assert evaluate_predictions(wins, score)["spearman"] > 0.9
    assert w[order[0], order[-1]] > 0.5
    # against a fixed reference set, scores no longer depend on the other candidates
    ref_set = data[0][:10]
    alone = np.array([brp.predict([a], reference=ref_set)[0] for a in xt[:3]])
    np.testing.assert_allclose(alone, brp.predict(xt, reference=ref_set)[:3], atol=1e-5)
    # more candidates than max_reference: scores against an evenly spaced reference subset
    brp_small = BRPPredictor(config=dataclasses.replace(brp.config, max_reference=6))
    brp_small.model, brp_small.fitted_ = brp.model, True
    ref = np.unique(np.linspace(0, n - 1, 6).round().astype(int))
    col = w[:, ref]
    in_ref = np.isin(np.arange(n), ref)
    np.testing.assert_allclose(brp_small.predict(xt), (col.sum(axis=1) - 0.5 * in_ref) / (len(ref) - in_ref),
                               atol=1e-5)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_save_load_gives_identical_predictions(name, data, fitted, tmp_path):
    pred = fitted(name)
    xt = data[2]
    pred.save(tmp_path / name)
    loaded = type(pred).load(tmp_path / name)
    np.testing.assert_array_equal(loaded.predict(xt), pred.predict(xt))
    assert not any(p.suffix in (".pkl", ".pickle") for p in (tmp_path / name).iterdir())


def test_loading_the_wrong_class_or_folder_fails(fitted, tmp_path):
    fitted("constant").save(tmp_path / "c")
    with pytest.raises(InvalidArgumentError, match="ConstantPredictor"):
        GCNPredictor.load(tmp_path / "c")
    with pytest.raises(InvalidArgumentError, match="missing"):
        GCNPredictor.load(tmp_path / "nothing")


def test_training_is_seeded_and_leaves_global_rng_alone(data):
    x, y, xt, _ = data
    state = torch.random.get_rng_state()
    a = GCNPredictor(hidden=16, epochs=3, batch_size=32).fit(x, y, seed=5).predict(xt)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = GCNPredictor(hidden=16, epochs=3, batch_size=32).fit(x, y, seed=5).predict(xt)
    c = GCNPredictor(hidden=16, epochs=3, batch_size=32).fit(x, y, seed=6).predict(xt)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_predictor_input_errors(data):
    x, y, xt, _ = data
    with pytest.raises(PredictorNotFittedError):
        GCNPredictor(hidden=8).predict(xt)
    with pytest.raises(InvalidArgumentError, match="targets"):
        ConstantPredictor().fit(x, y[:-1])
    with pytest.raises(InvalidArgumentError, match="finite"):
        ConstantPredictor().fit(x[:3], [1.0, np.nan, 2.0])
    with pytest.raises(InvalidArgumentError, match="unknown option"):
        GCNPredictor(width=3)
    with pytest.raises(InvalidArgumentError, match="epochs"):
        GCNPredictor(epochs=0)
    with pytest.raises(InvalidArgumentError, match="dropout"):
        BRPPredictor(dropout=1.5)
    with pytest.raises(InvalidArgumentError, match="kind"):
        TreePredictor(kind="xgb")
    with pytest.raises(InvalidArgumentError, match="seed"):
        GCNPredictor(hidden=8, epochs=1).fit(x, y, seed=-1)
    with pytest.raises(InvalidArgumentError, match="equally long"):
        BRPPredictor(hidden=8, epochs=1).fit(x, y, seed=0).compare(xt[:3], xt[:2])


def test_arch_inputs_and_one_hot():
    arch = Arch.from_blocks(3, 4, 5)
    assert as_indices([arch, 7]).tolist() == [arch.index, 7]
    assert as_indices(np.array([1, 2])).tolist() == [1, 2]
    assert as_indices(arch).tolist() == [arch.index]
    assert as_indices(5).tolist() == [5] and as_indices(np.int64(6)).tolist() == [6]
    assert as_indices([arch.vec]).tolist() == [arch.index]
    with pytest.raises(ValueError):
        as_indices("not an arch")
    enc = one_hot_blocks([arch])
    assert enc.shape == (1, N_STAGES * N_BLOCKS) and np.flatnonzero(enc[0]).tolist() == [3, 45 + 4, 90 + 5]


# ---------------------------------------------------------------- signature predictors
@pytest.fixture(scope="module")
def signatures():
    rng = np.random.default_rng(7)
    loss = rng.uniform(0.1, 1.0, (N_STAGES, N_BLOCKS))
    delta = rng.normal(-1.0, 0.5, (N_STAGES, N_BLOCKS))
    return loss, delta


def _sig_features(sig: np.ndarray, idx: np.ndarray) -> np.ndarray:
    b = indices_to_blocks(idx)
    return np.stack([sig[s, b[:, s]] for s in range(N_STAGES)], axis=1)


def test_donna_recovers_a_second_order_function(signatures):
    loss, _ = signatures
    rng = np.random.default_rng(1)
    idx = rng.choice(N_BLOCKS**3, 200, replace=False)
    x = _sig_features(loss, idx)
    y = 75 - 6 * x.sum(axis=1) + 4 * x[:, 0] * x[:, 1] - 3 * x[:, 2] ** 2
    donna = DonnaPredictor(signatures=loss).fit(idx[:40], y[:40], seed=0)
    scores = evaluate_predictions(y[40:], donna.predict(idx[40:]))
    assert scores["spearman"] > 0.99 and scores["mae"] < 0.05


def test_lana_sum_ranks_additive_targets_perfectly(signatures, tmp_path):
    _, delta = signatures
    idx = np.random.default_rng(2).choice(N_BLOCKS**3, 300, replace=False)
    y = 70 + 2.5 * _sig_features(delta, idx).sum(axis=1)
    lana = LanaPredictor(signatures=delta)
    assert evaluate_predictions(y, lana.predict(idx))["spearman"] == pytest.approx(1.0)
    lana.save(tmp_path / "raw")  # needs no fitting
    np.testing.assert_array_equal(LanaPredictor.load(tmp_path / "raw").predict(idx), lana.predict(idx))
    lana.fit(idx[:20], y[:20])
    assert lana.scale_ == pytest.approx(2.5) and lana.offset_ == pytest.approx(70)
    np.testing.assert_allclose(lana.predict(idx), y)


def test_signature_predictors_from_a_library_and_missing_blocks(signatures, tmp_path):
    loss, delta = signatures

    class FakeLibrary:  # the two methods' only dependency on BlockLibrary
        def signatures(self, config):
            return {"distill_loss": loss, "lana_delta": delta, "distill_time_s": np.ones_like(loss)}

    idx = np.arange(0, N_BLOCKS**3, 997)
    y = _sig_features(loss, idx).sum(axis=1)
    donna = DonnaPredictor.from_library(FakeLibrary(), config=None).fit(idx, y)
    donna.save(tmp_path / "d")
    np.testing.assert_array_equal(DonnaPredictor.load(tmp_path / "d").predict(idx), donna.predict(idx))
    np.testing.assert_array_equal(LanaPredictor.from_library(FakeLibrary(), None).score(idx),
                                  _sig_features(delta, idx).sum(axis=1))
    holey = loss.copy()
    holey[1, 12] = np.nan
    with pytest.raises(InvalidArgumentError, match="stage 1 block 12"):
        DonnaPredictor(signatures=holey).fit([Arch.from_blocks(0, 12, 0), Arch.from_blocks(1, 1, 1)], [1.0, 2.0])
    with pytest.raises(InvalidArgumentError, match="shape"):
        LanaPredictor(signatures=np.zeros((3, 44)))
    with pytest.raises(PredictorNotFittedError):
        DonnaPredictor(signatures=loss).predict(idx)


# ---------------------------------------------------------------- metrics
def test_metrics():
    y = np.arange(20, dtype=float)
    perfect = evaluate_predictions(y, 2 * y + 1, top_k=(5, 50))
    assert perfect["spearman"] == pytest.approx(1) and perfect["kendall_tau"] == pytest.approx(1)
    assert perfect["pearson"] == pytest.approx(1) and perfect["mae"] == pytest.approx(np.mean(y + 1))
    assert perfect["precision@5"] == 1.0 and perfect["precision@50"] == 1.0  # k clipped to n
    worst = evaluate_predictions(y, -y, top_k=5)
    assert worst["spearman"] == pytest.approx(-1) and worst["precision@5"] == 0.0
    assert precision_at_k(y, 3 * y, k=5, higher_is_better=False) == 1.0
    assert precision_at_k(y, -y, k=5, higher_is_better=False) == 0.0
    flat = evaluate_predictions(y, np.ones(20))
    assert np.isnan(flat["spearman"]) and np.isnan(flat["pearson"])
    with pytest.raises(InvalidArgumentError):
        evaluate_predictions(y, y[:-1])
    with pytest.raises(InvalidArgumentError):
        precision_at_k(y, y, k=21)


def test_donna_picks_its_penalty_by_leave_one_out(signatures, tmp_path):
    """At 10 noisy training models the automatic penalty regularises, and ranks held-out models better than the
    nearly unregularised fixed 1e-3 (the old default) on average over splits."""
    loss, _ = signatures
    rng = np.random.default_rng(3)
    auto_rho, fixed_rho = [], []
    for _ in range(20):
        idx = rng.choice(N_BLOCKS**3, 210, replace=False)
        x = _sig_features(loss, idx)
        y = 75 - 6 * x.sum(axis=1) + rng.normal(0, 4, len(idx))  # noisy, additive truth
        auto = DonnaPredictor(signatures=loss).fit(idx[:10], y[:10])
        fixed = DonnaPredictor(signatures=loss, alpha=1e-3).fit(idx[:10], y[:10])
        auto_rho.append(evaluate_predictions(y[10:], auto.predict(idx[10:]))["spearman"])
        fixed_rho.append(evaluate_predictions(y[10:], fixed.predict(idx[10:]))["spearman"])
        assert auto.alpha_ in DonnaPredictor.ALPHAS and fixed.alpha_ == 1e-3
    assert np.mean(auto_rho) > np.mean(fixed_rho)
    auto.save(tmp_path / "auto")
    back = DonnaPredictor.load(tmp_path / "auto")
    assert back.alpha == "auto" and back.alpha_ == auto.alpha_
    np.testing.assert_array_equal(back.predict(idx), auto.predict(idx))
    with pytest.raises(InvalidArgumentError, match="'auto' or a non-negative"):
        DonnaPredictor(signatures=loss, alpha="best")
