"""Blockwise distillation as the original BLOX trainer: best-validation weights, unbiased NSR, SGD, cosine, augment."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from blox_env.datasets.augment import AugmentConfig
from blox_env.datasets.images import synthetic_images
from blox_env.errors import InvalidArgumentError
from blox_env.model import Stage
from blox_env.space import Arch
from blox_env.training import distill as distill_mod
from blox_env.training.distill import DistillConfig, distill_blocks, distillation_loss
from blox_env.training.flat_sgd import FlatSGD
from blox_env.training.recipes import CIFAR100_BLOX, DIGITS_MINI, Recipe
from blox_env.training.train import evaluate, init_model, model_config_for, train_model

CPU = torch.device("cpu")
TINY = Recipe(name="tiny", epochs=3, batch_size=32, eval_batch_size=256, lr=0.05, stem_channels=2, crop_padding=1)
ARCH = Arch.from_blocks(9, 10, 9)


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    return synthetic_images(n_train=192, n_val=64, n_test=64, num_classes=4, image_size=8, channels=1, seed=0)


@pytest.fixture(scope="module")
def teacher(data):
    """A trained teacher (an untrained one's features are nearly constant: NSR without a floor explodes on them)."""
    result = train_model(ARCH, data, recipe=TINY, seed=0, device="cpu", keep_weights=True)
    model = init_model(ARCH, model_config_for(data, TINY), seed=0)
    model.load_state_dict(result.state_dict)
    return model.eval()


# ------------------------------------------------------------------------------------------------ the NSR loss
def _nsr_by_hand(s: torch.Tensor, t: torch.Tensor) -> float:
    """Mean over channels of MSE / unbiased variance of the teacher channel, skipping constant channels."""
    s64, t64 = s.double(), t.double()
    ratios = []
    for c in range(t.shape[1]):
        tv, sv = t64[:, c].reshape(-1), s64[:, c].reshape(-1)
        n = tv.numel()
        mean = float(tv.sum()) / n
        var = sum((float(v) - mean) ** 2 for v in tv) / (n - 1)
        if var == 0:
            continue
        ratios.append(sum((float(a) - float(b)) ** 2 for a, b in zip(sv, tv)) / n / var)
    return sum(ratios) / len(ratios)


def test_nsr_is_unbiased_variance_without_floor() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(3, 4, 2, 2, generator=g)
    t[:, 2] *= 1e-4  # a nearly dead channel: a floor on the variance would change its ratio
    s = t + 0.01 * torch.randn(t.shape, generator=g)
    got = float(distillation_loss(s, t, "nsr"))
    assert got == pytest.approx(_nsr_by_hand(s, t), rel=1e-5)
    biased = float((((s - t) ** 2).mean(dim=(0, 2, 3)) / t.var(dim=(0, 2, 3), unbiased=False)).mean())
    assert got != pytest.approx(biased, rel=1e-3)  # 12 values per channel: the two differ by 11/12


def test_nsr_leaves_out_constant_teacher_channels() -> None:
    g = torch.Generator().manual_seed(1)
    t = torch.randn(4, 3, 2, 2, generator=g)
    t[:, 1] = 0.0  # a dead ReLU channel: exactly constant over the batch
    s = (t + 0.1 * torch.randn(t.shape, generator=g)).requires_grad_(True)
    loss = distillation_loss(s, t, "nsr")
    value = float(loss.detach())
    assert math.isfinite(value) and value == pytest.approx(_nsr_by_hand(s.detach(), t), rel=1e-5)
    keep = [0, 2]
    assert value == pytest.approx(float(distillation_loss(s[:, keep], t[:, keep], "nsr").detach()), rel=1e-6)
    loss.backward()
    assert torch.isfinite(s.grad).all() and float(s.grad[:, 1].abs().sum()) == 0.0
    with pytest.raises(InvalidArgumentError, match="every teacher channel is constant"):
        distillation_loss(s, torch.ones_like(t), "nsr")
    with pytest.raises(InvalidArgumentError, match="at least 2 values"):
        distillation_loss(s[:1, :, :1, :1], t[:1, :, :1, :1], "nsr")


# ------------------------------------------------------------------------------------------------ best epoch
def test_best_validation_epoch_is_kept_not_the_last(data, teacher, monkeypatch: pytest.MonkeyPatch) -> None:
    """The validation losses are scripted so that the last epoch is the worst and the untrained state the best."""
    scripted = [0.5, 2.0, 1.0, 3.0]  # untrained (never counts), epochs 1, 2, 3
    states: list[dict[str, torch.Tensor]] = []

    def fake_val(_teacher, students, *_args):  # noqa: ANN001, ANN202
        (key, student), = students.items()
        states.append(copy.deepcopy(student.state_dict()))
        return {key: scripted[len(states) - 1]}

    monkeypatch.setattr(distill_mod, "_val_losses", fake_val)
    cfg = DistillConfig(epochs=3, batch_size=16, lr=0.05, seed=3)
    res = distill_blocks(teacher, data, candidates=[(1, 9)], config=cfg, device=CPU)[(1, 9)]
    assert res.val_losses == scripted and res.best_epoch == 2
    assert res.distill_loss == min(res.val_losses[1:]) == 1.0
    assert set(res.state_dict) == set(states[2])
    assert all(torch.equal(res.state_dict[k], states[2][k]) for k in states[2])  # epoch 2's weights
    assert not all(torch.equal(res.state_dict[k], states[3][k]) for k in states[3])  # not the last epoch's
    # LANA is measured with the kept weights
    stage = Stage(9, teacher.config.channels(1))
    stage.load_state_dict(res.state_dict)
    swapped = copy.deepcopy(teacher)
    swapped.stages[1] = stage
    acc = evaluate(swapped, data.val, data=data, batch_size=512, device=CPU)[1]
    base = evaluate(teacher, data.val, data=data, batch_size=512, device=CPU)[1]
    assert res.lana_delta == acc - base


def test_real_run_reports_the_minimum_over_trained_epochs(data, teacher) -> None:
    cfg = DistillConfig(epochs=3, batch_size=16, lr=0.05, seed=0)
    for res in distill_blocks(teacher, data, candidates=[(0, 9), (2, 11)], config=cfg, device=CPU).values():
        assert len(res.val_losses) == 4 and res.distill_loss == min(res.val_losses[1:])
        assert res.best_epoch == 1 + res.val_losses[1:].index(res.distill_loss)


# ------------------------------------------------------------------------------------------------ defaults
def test_defaults_are_the_original_path() -> None:
    cfg = DistillConfig()
    assert (cfg.epochs, cfg.loss, cfg.optimizer, cfg.schedule) == (10, "nsr", "sgd", "cosine")
    assert (cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay, cfg.batch_size) == (
        DIGITS_MINI.lr, DIGITS_MINI.momentum, DIGITS_MINI.nesterov, DIGITS_MINI.weight_decay, DIGITS_MINI.batch_size)
    assert cfg.augment == DIGITS_MINI.augment() == AugmentConfig(crop_padding=1)
    assert DistillConfig.from_recipe("digits_mini") == cfg
    cifar = DistillConfig.from_recipe(CIFAR100_BLOX, epochs=10)
    assert (cifar.lr, cifar.batch_size, cifar.augment) == (0.01, 256, CIFAR100_BLOX.augment())
    adam = DistillConfig.from_recipe(DIGITS_MINI, optimizer="adam", augment=False)
    assert (adam.optimizer, adam.lr, adam.weight_decay, adam.schedule, adam.augment) == (
        "adam", 1e-3, 0.0, "constant", None)
    keys = {cfg.key, adam.key, cifar.key, DistillConfig.from_recipe(DIGITS_MINI, augment=False).key}
    assert len(keys) == 4 and cfg.key == "e10-nsr-sgd-lr0.1-m0.9-wd0.0005-cos-b128-augc1-s0"
    for bad in ({"optimizer": "rmsprop"}, {"schedule": "step"}, {"lr": 0.0}, {"momentum": -1.0},
                {"augment": "crop"}, {"epochs": 0}):
        with pytest.raises(InvalidArgumentError):
            DistillConfig(**bad)


def test_default_run_uses_sgd_cosine_and_augmentation(data, teacher, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = DistillConfig(batch_size=32)  # the defaults otherwise: 10 epochs, SGD, cosine, the recipe's crop
    opts: list[torch.optim.Optimizer] = []
    lrs: list[float] = []
    augments: list[AugmentConfig | None] = []
    augmented = []
    make_optimizer = DistillConfig.make_optimizer

    def spy_optimizer(self, params):  # noqa: ANN001, ANN202
        opts.append(make_optimizer(self, params))
        return opts[-1]

    real_iterate = distill_mod.iterate_batches

    def spy_iterate(split, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if kwargs["shuffle"]:  # a training pass: the learning rate of this epoch
            augments.append(kwargs["augment"])
            lrs.append(opts[0].param_groups[0]["lr"])
        return real_iterate(split, **kwargs)

    from blox_env.datasets import augment as augment_mod

    real_augment = augment_mod.augment_batch

    def spy_augment(x, **kwargs):  # noqa: ANN001, ANN003, ANN202
        augmented.append(len(x))
        return real_augment(x, **kwargs)

    monkeypatch.setattr(DistillConfig, "make_optimizer", spy_optimizer)
    monkeypatch.setattr(distill_mod, "iterate_batches", spy_iterate)
    monkeypatch.setattr(augment_mod, "augment_batch", spy_augment)
    res = distill_blocks(teacher, data, candidates=[(2, 9)], config=cfg, device=CPU)[(2, 9)]
    (opt,) = opts
    assert type(opt) in (torch.optim.SGD, FlatSGD)  # FlatSGD: the same update over one flat buffer (fast kernels)
    assert (opt.defaults["momentum"], opt.defaults["weight_decay"]) == (DIGITS_MINI.momentum, DIGITS_MINI.weight_decay)
    cosine = [DIGITS_MINI.lr * (1 + math.cos(math.pi * e / 10)) / 2 for e in range(10)]
    assert lrs == pytest.approx(cosine) and len(res.val_losses) == 11
    assert augments == [DIGITS_MINI.augment()] * 10
    assert sum(augmented) == 10 * 192  # every training image of every epoch went through the augmentation


def test_adam_without_augmentation_option(data, teacher, monkeypatch: pytest.MonkeyPatch) -> None:
    from blox_env.datasets import augment as augment_mod

    calls = []
    monkeypatch.setattr(augment_mod, "augment_batch", lambda *a, **k: calls.append(1))
    cfg = DistillConfig(epochs=2, optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="constant", augment=None,
                        batch_size=32)
    assert isinstance(cfg.make_optimizer(torch.nn.Linear(1, 1).parameters()), torch.optim.Adam)
    opt = cfg.make_optimizer(torch.nn.Linear(1, 1).parameters())
    assert cfg.make_schedule(opt, batches_per_epoch=3).scheduler is None
    res = distill_blocks(teacher, data, candidates=[(0, 10)], config=cfg, device=CPU)[(0, 10)]
    assert not calls and len(res.val_losses) == 3 and math.isfinite(res.distill_loss)


def test_blockwise_spec_passes_the_recipes_optimiser_and_augmentation() -> None:
    from blox_env.build.blockwise import BlockwiseSpec

    configs = BlockwiseSpec(recipe=TINY, data="synthetic", data_kwargs=(), distill_epochs=(1, 3)).distill_configs()
    assert [c.epochs for c in configs] == [1, 3]
    for c in configs:
        assert (c.optimizer, c.lr, c.momentum, c.weight_decay, c.schedule, c.batch_size) == (
            "sgd", TINY.lr, TINY.momentum, TINY.weight_decay, TINY.schedule, TINY.batch_size)
        assert c.augment == TINY.augment() == AugmentConfig(crop_padding=1)
    (adam,) = BlockwiseSpec(recipe=TINY, distill_epochs=(2,), distill_optimizer="adam",
                            distill_augment=False).distill_configs()
    assert (adam.optimizer, adam.lr, adam.augment) == ("adam", 1e-3, None)
    with pytest.raises(InvalidArgumentError, match="distill_optimizer"):
        BlockwiseSpec(distill_optimizer="rmsprop")
