"""The bundled Blox-mini store: opens, is complete, discriminates between architectures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from blox_env.build.mini import MINI_RUN, MINI_SEEDS, MINI_SPACE
from blox_env.datasets.store.core import open_store
from blox_env.datasets.store.location import bundled_mini_path


@pytest.fixture(scope="module")
def mini():
    path = bundled_mini_path()
    assert path is not None, "blox_env/data/blox-mini.zip must ship with the package (build: blox build-mini)"
    return open_store(path)


def test_mini_covers_its_sub_space_for_every_seed(mini) -> None:
    assert mini.name == "blox-mini" and np.array_equal(mini.index, MINI_SPACE.indices())
    info = mini.run_info(MINI_RUN)
    assert info.seeds == MINI_SEEDS and info.epochs >= 5
    for seed in MINI_SEEDS:
        for metric in ("val_top1", "test_top1", "train_time_s"):
            assert np.isfinite(mini.get(metric, seed=seed)).all(), (metric, seed)
        curves = np.stack([mini.curve("val_top1", int(i), seed=seed) for i in mini.index[::37]])
        assert np.isfinite(curves).all() and curves.shape[1] == info.epochs
    assert np.isfinite(mini.get("params")).all() and mini.latency_devices
    prov = info.attrs["provenance"]
    assert {"code_version", "torch_version", "platform"} <= set(prov)
    assert info.attrs["dataset"] == "digits" and info.attrs["recipe"]["name"] == "digits_mini"


def test_mini_discriminates_between_architectures(mini) -> None:
    test = mini.get("test_top1", seed="mean")
    assert test.max() - test.min() >= 10.0
    rho = spearmanr(mini.get("test_top1", seed=0), mini.get("test_top1", seed=1)).statistic
    assert rho >= 0.5


def test_default_env_uses_mini_and_says_so(mini, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    import gymnasium as gym

    import blox_env  # noqa: F401
    from blox_env.envs import base

    monkeypatch.setattr(base, "_ANNOUNCED", set())
    env = gym.make("Blox-v0")
    err = capsys.readouterr().err
    assert "Blox-mini" in err and len(err.strip().splitlines()) == 1
    assert env.action_space.n == 6
    env.reset(seed=0)
    for a in (0, 1, 2):
        *_, info = env.step(a)
    assert info["arch_index"] in set(mini.index.tolist()) and info["blocks"] == (1, 9, 10)


def test_mini_blockwise_spec_distils_at_the_papers_length() -> None:
    from blox_env.build.mini import MINI_BLOCKWISE

    assert MINI_BLOCKWISE.distill_epochs == (2, 10) and MINI_BLOCKWISE.ft_epochs == (1, 8)
    assert (MINI_BLOCKWISE.distill_optimizer, MINI_BLOCKWISE.distill_augment) == ("sgd", True)
    assert (MINI_BLOCKWISE.distill_lr, MINI_BLOCKWISE.distill_batch_size) == (None, None)  # the recipe's


def test_bundled_blockwise_tables_were_distilled_as_the_original(mini) -> None:
    from blox_env.datasets.store.blockwise import BlockwiseTables

    tables = BlockwiseTables(mini)
    assert tables.distill_epochs == (2, 10) and tables.ft_epochs == (1, 8)
    recipe = tables.attrs["recipe"]
    for d in tables.attrs["distill"]:  # the digits_mini recipe's SGD, cosine schedule, batch and crop
        assert (d["optimizer"], d["schedule"], d["loss"]) == ("sgd", "cosine", "nsr")
        assert (d["lr"], d["momentum"], d["weight_decay"], d["batch_size"]) == (
            recipe["lr"], recipe["momentum"], recipe["weight_decay"], recipe["batch_size"])
        assert d["augment"]["crop_padding"] == recipe["crop_padding"] == 1
    assert tables.attrs["spec"]["distill_epochs"] == [2, 10]
    for name in tables.teachers:
        for e in tables.attrs["signature_groups"][name]:
            loss = tables.signatures(name, int(e))["distill_loss"]
            assert np.isfinite(loss).any() and (loss[np.isfinite(loss)] > 0).all()
