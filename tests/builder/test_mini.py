"""The bundled Blox-mini store: opens, is complete for every seed, discriminates between architectures, and
carries the blockwise tables (teachers M1..M5, libraries' signatures at both lengths, fine-tuning, the 5 x 5
matrix). Written against :data:`MINI_BUNDLED`, so the same checks hold when v2 replaces v1 in the package."""

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
    default_paths,
)
from blox_env.datasets.store.core import open_store
from blox_env.datasets.store.location import bundled_mini_path
from blox_env.training.recipes import get_recipe


@pytest.fixture(scope="module")
def mini():
    path = bundled_mini_path()
    assert path is not None, "blox_env/data/blox-mini.zip must ship with the package (build: blox build-mini)"
    return open_store(path)


@pytest.fixture(scope="module")
def tables(mini):
    from blox_env.datasets.store.blockwise import BlockwiseTables

    return BlockwiseTables(mini)


def test_bundled_version_and_constants(mini) -> None:
    assert MINI_BUNDLED is MINI_V2 and MINI_SPACE.size == 729  # v2 is the bundled default; v1 stays buildable
    assert mini.attrs.get("mini_version", "v1") == MINI_BUNDLED.version  # stores before v2 carry no version
    bundled = (MINI_BUNDLED.blocks, MINI_BUNDLED.seeds, MINI_BUNDLED.blockwise)
    assert bundled == (MINI_BLOCKS, MINI_SEEDS, MINI_BLOCKWISE)
    assert MINI_SPACE.size == len(MINI_BLOCKS) ** 3
    assert MINI_V1.blocks == (1, 9, 10, 11, 23, 24) and MINI_V1.seeds == (0, 1)
    assert MINI_V2.blocks == (1, 8, 9, 10, 11, 23, 24, 27, 33) and MINI_V2.seeds == (0, 1, 2)
    # v1 keeps its folder of before v2; the bundled version is the one packaged into blox_env/data
    assert default_paths("v1")[0] == "build/blox-mini.zarr" and default_paths("v2")[0] == "build/blox-mini-v2.zarr"
    for v in (MINI_V1, MINI_V2):
        zip_path = default_paths(v)[1]
        assert (zip_path == "blox_env/data/blox-mini.zip") == (v is MINI_BUNDLED), (v.version, zip_path)


def test_mini_covers_its_sub_space_for_every_seed(mini) -> None:
    recipe = get_recipe(MINI_BUNDLED.recipe)
    assert mini.name == "blox-mini" and np.array_equal(mini.index, MINI_SPACE.indices())
    info = mini.run_info(MINI_RUN)
    assert info.seeds == MINI_SEEDS and info.epochs == recipe.epochs
    for seed in MINI_SEEDS:
        for metric in ("val_top1", "test_top1", "train_time_s", "train_loss"):
            assert np.isfinite(mini.get(metric, seed=seed)).all(), (metric, seed)
        curves = np.stack([mini.curve("val_top1", int(i), seed=seed) for i in mini.index[::37]])
        assert np.isfinite(curves).all() and curves.shape[1] == info.epochs
    assert np.isfinite(mini.get("params")).all() and mini.latency_devices
    assert np.isfinite(mini.get(f"latency/{mini.latency_devices[0]}")).all()
    prov = info.attrs["provenance"]
    assert {"code_version", "torch_version", "platform", "fast_kernels"} <= set(prov)  # which engine trained it
    assert info.attrs["dataset"] == "digits" and info.attrs["recipe"]["name"] == recipe.name
    assert info.attrs["recipe"]["schedule"] == recipe.schedule


def test_mini_meets_the_discrimination_bars(mini) -> None:
    """The bundled store's bars: test-accuracy range >= 30 points (seed mean), Spearman >= 0.6 between any two
    seeds."""
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
    assert "Blox-mini" in err and f"{MINI_SPACE.size:,} models" in err and len(err.strip().splitlines()) == 1
    assert env.action_space.n == len(MINI_BLOCKS)
    env.reset(seed=0)
    for a in (0, 1, 2):
        *_, info = env.step(a)
    assert info["arch_index"] in set(mini.index.tolist()) and info["blocks"] == MINI_BLOCKS[:3]


def test_mini_blockwise_specs_distil_at_the_papers_length() -> None:
    assert MINI_V1.blockwise.ft_epochs == (1, 8) and MINI_V2.blockwise.ft_epochs == (1, 12)
    for v in (MINI_V1, MINI_V2):
        spec = v.blockwise
        assert spec.recipe == v.recipe and spec.distill_epochs == (2, 10)
        assert max(spec.ft_epochs) == get_recipe(v.recipe).epochs  # full fine-tuning: as long as normal training
        assert (spec.distill_optimizer, spec.distill_augment) == ("sgd", True)
        assert (spec.distill_lr, spec.distill_batch_size) == (None, None)  # the recipe's


def test_bundled_blockwise_tables_were_distilled_as_the_original(tables) -> None:
    assert tables.distill_epochs == MINI_BLOCKWISE.distill_epochs and tables.ft_epochs == MINI_BLOCKWISE.ft_epochs
    recipe = tables.attrs["recipe"]
    assert recipe["name"] == MINI_BUNDLED.recipe
    for d in tables.attrs["distill"]:  # the recipe's SGD, schedule, batch and crop
        assert (d["optimizer"], d["schedule"], d["loss"]) == ("sgd", recipe["schedule"], "nsr")
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
        for e in tables.distill_epochs:
            loss = tables.signatures(name, e)["distill_loss"]
            for s in range(3):
                assert np.isfinite(loss[s, list(MINI_BLOCKS)]).all(), (name, e, s)
        for ft in tables.ft_epochs:
            for metric in ("val_top1", "test_top1", "train_time_s"):
                assert np.isfinite(tables.finetuned(name, ft, metric=metric)).all(), (name, ft, metric)
    assert np.isfinite(tables.matrix()).all()
    # the good teacher's students beat the bad one's, and M1 is the best model by seed-mean validation accuracy
    assert np.nanmean(tables.finetuned("M1")) > np.nanmean(tables.finetuned("M5"))
    assert mini.rows([tables.teachers["M1"]])[0] == int(np.argmax(tables.normal("val_top1")))


def test_bundled_teachers_follow_the_teacher_rule(mini, tables) -> None:
    """M1..M5 are the models at the 100th, 99th, 50th, 10th and 5th percentiles of seed-mean normal validation
    top-1, recomputed here by ranking the 729 models independently of the store's choice."""
    val = np.mean([mini.get("val_top1", seed=s) for s in mini.run_info().seeds], axis=0)
    order = np.lexsort((mini.index, -val))  # best first, ties by model index
    want = [int(mini.index[order[round(q * (len(order) - 1))]]) for q in (0.0, 0.01, 0.5, 0.9, 0.95)]
    assert [tables.teachers[n].index for n in ("M1", "M2", "M3", "M4", "M5")] == want
