"""The bundled Blox-mini store (v2): opens, is complete for every seed, discriminates between architectures,
and carries the blockwise tables (teachers M1..M5, libraries at both lengths, fine-tuning, the 5 x 5 matrix)."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from scipy.stats import spearmanr

from blox_env.build.mini import (
    MINI_BLOCKS,
    MINI_BLOCKWISE,
    MINI_BUNDLED,
    MINI_RUN,
    MINI_SEEDS,
    MINI_SPACE,
    MINI_V1,
    MINI_V2,
)
from blox_env.datasets.store.core import open_store
from blox_env.datasets.store.location import bundled_mini_path


@pytest.fixture(scope="module")
def mini():
    path = bundled_mini_path()
    assert path is not None, "blox_env/data/blox-mini.zip must ship with the package (build: blox build-mini)"
    return open_store(path)


@pytest.fixture(scope="module")
def tables(mini):
    from blox_env.datasets.store.blockwise import BlockwiseTables

    return BlockwiseTables(mini)


def test_bundled_version_is_v2_with_nine_blocks_and_three_seeds(mini) -> None:
    assert MINI_BUNDLED is MINI_V2 and mini.attrs["mini_version"] == "v2"
    assert MINI_BLOCKS == (1, 8, 9, 10, 11, 23, 24, 27, 33) and MINI_SEEDS == (0, 1, 2) and len(MINI_SPACE) == 729
    assert MINI_V1.blocks == (1, 9, 10, 11, 23, 24) and MINI_V1.seeds == (0, 1)  # v1 stays buildable by name


def test_mini_covers_its_sub_space_for_every_seed(mini) -> None:
    assert mini.name == "blox-mini" and np.array_equal(mini.index, MINI_SPACE.indices())
    info = mini.run_info(MINI_RUN)
    assert info.seeds == MINI_SEEDS and info.epochs == 12
    for seed in MINI_SEEDS:
        for metric in ("val_top1", "test_top1", "train_time_s", "train_loss"):
            assert np.isfinite(mini.get(metric, seed=seed)).all(), (metric, seed)
        curves = np.stack([mini.curve("val_top1", int(i), seed=seed) for i in mini.index[::37]])
        assert np.isfinite(curves).all() and curves.shape[1] == info.epochs
    assert np.isfinite(mini.get("params")).all() and mini.latency_devices
    assert np.isfinite(mini.latency(mini.latency_devices[0])).all()
    prov = info.attrs["provenance"]
    assert {"code_version", "torch_version", "platform", "fast_kernels"} <= set(prov)
    assert info.attrs["dataset"] == "digits" and info.attrs["recipe"]["name"] == "digits_mini_v2"
    assert info.attrs["recipe"]["schedule"] == "cosine_step"


def test_mini_meets_the_discrimination_bars(mini) -> None:
    """Issue 17's bars: test-accuracy range >= 30 points (seed mean), Spearman >= 0.6 between every two seeds."""
    test = mini.get("test_top1", seed="mean")
    assert test.max() - test.min() >= 30.0
    for a, b in combinations(MINI_SEEDS, 2):
        rho = spearmanr(mini.get("test_top1", seed=a), mini.get("test_top1", seed=b)).statistic
        assert rho >= 0.6, (a, b, rho)


def test_default_env_uses_mini_and_says_so(mini, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    import gymnasium as gym

    import blox_env  # noqa: F401
    from blox_env.envs import base

    monkeypatch.setattr(base, "_ANNOUNCED", set())
    env = gym.make("Blox-v0")
    err = capsys.readouterr().err
    assert "Blox-mini" in err and "729" in err and len(err.strip().splitlines()) == 1
    assert env.action_space.n == 9
    env.reset(seed=0)
    for a in (0, 1, 2):
        *_, info = env.step(a)
    assert info["arch_index"] in set(mini.index.tolist()) and info["blocks"] == (1, 8, 9)


def test_mini_blockwise_specs_distil_at_the_papers_length() -> None:
    assert MINI_BLOCKWISE is MINI_V2.blockwise and MINI_BLOCKWISE.recipe == "digits_mini_v2"
    assert MINI_BLOCKWISE.distill_epochs == (2, 10) and MINI_BLOCKWISE.ft_epochs == (1, 12)
    assert MINI_V1.blockwise.distill_epochs == (2, 10) and MINI_V1.blockwise.ft_epochs == (1, 8)
    for spec in (MINI_V1.blockwise, MINI_V2.blockwise):
        assert (spec.distill_optimizer, spec.distill_augment) == ("sgd", True)
        assert (spec.distill_lr, spec.distill_batch_size) == (None, None)  # the recipe's


def test_bundled_blockwise_tables_were_distilled_as_the_original(tables) -> None:
    assert tables.distill_epochs == (2, 10) and tables.ft_epochs == (1, 12)
    recipe = tables.attrs["recipe"]
    assert recipe["name"] == "digits_mini_v2"
    for d in tables.attrs["distill"]:  # the recipe's SGD, per-batch cosine schedule, batch and crop
        assert (d["optimizer"], d["schedule"], d["loss"]) == ("sgd", "cosine_step", "nsr")
        assert (d["lr"], d["momentum"], d["weight_decay"], d["batch_size"]) == (
            recipe["lr"], recipe["momentum"], recipe["weight_decay"], recipe["batch_size"])
        assert d["augment"]["crop_padding"] == recipe["crop_padding"] == 1
    assert tables.attrs["spec"]["distill_epochs"] == [2, 10]
    for name in tables.teachers:
        for e in tables.attrs["signature_groups"][name]:
            loss = tables.signatures(name, int(e))["distill_loss"]
            assert np.isfinite(loss).any() and (loss[np.isfinite(loss)] > 0).all()


def test_bundled_blockwise_tables_are_complete(mini, tables) -> None:
    """Teachers M1..M5; M1 and M5 distil every block at both lengths and fine-tune every model at both lengths;
    the 5 x 5 matrix is full."""
    assert list(tables.teachers) == ["M1", "M2", "M3", "M4", "M5"]
    assert tables.full_teachers() == ["M1", "M5"]
    for name in ("M1", "M5"):
        for e in (2, 10):
            loss = tables.signatures(name, e)["distill_loss"]
            for s in range(3):
                assert np.isfinite(loss[s, list(MINI_BLOCKS)]).all(), (name, e, s)
        for ft in (1, 12):
            for metric in ("val_top1", "test_top1"):
                assert np.isfinite(tables.finetuned(name, ft, metric=metric)).all(), (name, ft, metric)
    assert np.isfinite(tables.matrix()).all()
    # the students of the good teacher beat those of the bad one, and M1 is the best normal model
    assert np.nanmean(tables.finetuned("M1", 12)) > np.nanmean(tables.finetuned("M5", 12))
    normal = tables.normal("val_top1")
    assert mini.rows([tables.teachers["M1"]])[0] == int(np.argmax(normal))
