"""Blox-mini v2's definitions: the per-batch cosine schedule, the digits_mini_v2 recipe, the K = 9 sub-space."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import blox_env.training.train as train_mod
from blox_env.build.mini import MINI_V1, MINI_V2, MINI_VERSIONS, build_mini, get_mini_version
from blox_env.datasets.images import synthetic_images
from blox_env.datasets.store.core import BloxStore
from blox_env.errors import InvalidArgumentError
from blox_env.space import BLOCKS, Arch
from blox_env.training.distill import DistillConfig
from blox_env.training.recipes import (
    DIGITS_MINI,
    DIGITS_MINI_V2,
    SCHEDULES,
    Recipe,
    get_recipe,
    make_schedule,
    schedule_key,
)
from blox_env.training.train import train_model


def _lrs(schedule: str, *, epochs: int, batches: int) -> list[float]:
    """The learning rate used by every step of a run (before each optimiser step)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = make_schedule(opt, schedule, epochs=epochs, batches_per_epoch=batches)
    seen = []
    for _ in range(epochs):
        for _ in range(batches):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.after_batch()
        sched.after_epoch()
    seen.append(opt.param_groups[0]["lr"])  # after the run
    return seen


def test_cosine_step_anneals_within_a_one_epoch_run() -> None:
    lrs = _lrs("cosine_step", epochs=1, batches=10)
    assert lrs == pytest.approx([0.05 * (1 + math.cos(math.pi * k / 10)) for k in range(11)], abs=1e-12)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    # the per-epoch cosine stays at the peak for the whole of a 1-epoch run
    assert _lrs("cosine", epochs=1, batches=10)[:10] == [0.1] * 10
    two = _lrs("cosine_step", epochs=2, batches=5)
    assert two[5] == pytest.approx(0.05) and two[-1] == pytest.approx(0.0, abs=1e-12)
    assert _lrs("constant", epochs=2, batches=3) == [0.1] * 7
    with pytest.raises(InvalidArgumentError, match="schedule must be one of 'cosine', 'cosine_step', 'constant'"):
        make_schedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), "step", epochs=1,
                      batches_per_epoch=1)


def test_fit_steps_the_schedule_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    data = synthetic_images(n_train=96, n_val=32, n_test=32, num_classes=4, image_size=8, channels=1, seed=0)
    recipe = Recipe(name="t", epochs=2, batch_size=32, eval_batch_size=64, lr=0.05, stem_channels=2,
                    schedule="cosine_step")
    made = []
    real = train_mod.make_schedule

    def spy(opt, schedule, *, epochs, batches_per_epoch):  # noqa: ANN001, ANN202
        made.append((schedule, epochs, batches_per_epoch))
        out = real(opt, schedule, epochs=epochs, batches_per_epoch=batches_per_epoch)
        made.append(opt)
        return out

    monkeypatch.setattr(train_mod, "make_schedule", spy)
    step = train_model(Arch.from_blocks(9, 10, 9), data, recipe=recipe, seed=0, device="cpu")
    assert made[0] == ("cosine_step", 2, 3)  # 96 images / batch 32
    assert made[1].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # annealed to zero by the last batch
    epoch = train_model(Arch.from_blocks(9, 10, 9), data, recipe=recipe.with_(schedule="cosine"), seed=0,
                        device="cpu")
    assert step.curves["train_loss"] != epoch.curves["train_loss"]


def test_v2_recipe_and_distillation_keys() -> None:
    r = get_recipe("digits_mini_v2")
    assert r is DIGITS_MINI_V2 and (r.epochs, r.batch_size, r.schedule, r.stem_channels) == (12, 128, "cosine_step", 4)
    assert r.with_(schedule="cosine", epochs=8, name="digits_mini") == DIGITS_MINI  # otherwise v1's recipe
    assert set(SCHEDULES) == {"cosine", "cosine_step", "constant"}
    assert len({schedule_key(s) for s in SCHEDULES}) == 3
    v1, v2 = (DistillConfig.from_recipe(x, epochs=10) for x in (DIGITS_MINI, DIGITS_MINI_V2))
    assert v2.schedule == "cosine_step" and v1.key != v2.key and "-cst-" in v2.key and "-cos-" in v1.key
    with pytest.raises(InvalidArgumentError, match="Recipe.schedule must be one of"):
        DIGITS_MINI.with_(schedule="linear")


def test_v2_space_covers_every_op_and_wiring() -> None:
    assert set(MINI_VERSIONS) == {"v1", "v2"} and get_mini_version("v1") is MINI_V1
    assert MINI_V2.space.size == 729 and MINI_V2.seeds == (0, 1, 2) and MINI_V2.recipe == "digits_mini_v2"
    assert set(MINI_V1.blocks) < set(MINI_V2.blocks)  # v1's blocks kept, so v1 models are v2 models
    flags = [BLOCKS[b] for b in MINI_V2.blocks]  # (opA, opB, prev, inp, sc)
    chained = [f for f in flags if f[2]]
    assert {f[0] for f in chained} == {0, 1, 2} and {f[1] for f in flags} == {0, 1, 2}  # every op as A and as B
    assert any(f[4] for f in flags) and any(not f[4] for f in flags)  # residual and non-residual
    assert any(not f[2] and f[3] and f[4] for f in flags)  # parallel branches
    bw = MINI_V2.blockwise
    assert bw.recipe == "digits_mini_v2" and bw.ft_epochs == (1, 12) and bw.distill_epochs == (2, 10)
    with pytest.raises(InvalidArgumentError, match="unknown Blox-mini version 'v3': allowed v1, v2"):
        get_mini_version("v3")


def test_build_mini_refuses_a_folder_of_another_version(tmp_path: Path) -> None:
    out = tmp_path / "mini.zarr"
    BloxStore.create(out, index=MINI_V1.space.indices(), name="blox-mini").close()  # no version attr: v1
    with pytest.raises(InvalidArgumentError, match="holds Blox-mini v1, not v2"):
        build_mini(out, version="v2", executor="serial", progress=False)
