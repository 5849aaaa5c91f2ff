"""Blockwise distillation: train candidate blocks to mimic a teacher's stages, as the original BLOX trainer does.

A student for stage ``s`` is that stage's searchable block plus its reduction
(:class:`~blox_env.model.Stage`), trained to map the teacher's stage-``s``
input to the teacher's stage-``s`` output. All students (of one stage or of
all stages) are trained in one pass over the data: each batch goes through the
teacher once and its features feed every student. Each student has its own
seeded initialisation and optimiser, so the shared pass gives exactly the
result of distilling the blocks one by one, only faster.

Faithful to the original trainer's ``--blockwise`` path by default: the
recipe's SGD (momentum, weight decay) with a cosine schedule over the
distillation epochs, the recipe's training augmentation, 10 epochs (the
paper's length), the noise-to-signal loss with the unbiased teacher variance,
and each block keeps its best-validation-loss weights over epochs 1..E (the
untrained epoch-0 state never counts). Adam, a constant learning rate and no
augmentation remain options of :class:`DistillConfig` for comparison.

Signatures per (teacher, stage, block): the best validation distillation loss
(DONNA) and the change of the teacher's validation top-1 when the kept block
replaces the teacher's own (LANA).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from blox_env.datasets.augment import AugmentConfig, iterate_batches
from blox_env.datasets.images import ImageData
from blox_env.errors import InvalidArgumentError, TrainingDivergedError
from blox_env.kernels import fast_kernels_enabled
from blox_env.model import BloxModel, Stage
from blox_env.progress import ProgressBar
from blox_env.space import N_BLOCKS, N_STAGES
from blox_env.training.flat_sgd import FlatSGD
from blox_env.training.recipes import DIGITS_MINI, Recipe, StepSchedule, get_recipe, make_schedule, schedule_key
from blox_env.training.train import evaluate

__all__ = ["DistillConfig", "DistillResult", "distill_blocks", "distillation_loss"]

LOSSES = ("mse", "nsr")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "cosine_step", "constant")
#: Learning rate of the Adam option when none is given (the project's earlier default).
ADAM_LR = 1e-3


@dataclass(frozen=True)
class DistillConfig:
    """How blocks are distilled. The defaults are the original trainer's path with the ``digits_mini`` recipe's
    optimiser, batch size and augmentation; :meth:`from_recipe` takes them from another recipe.

    ``optimizer="adam"`` uses Adam (``lr``, ``weight_decay``; momentum and nesterov unused); ``augment=None``
    turns augmentation off. The project's earlier defaults were ``DistillConfig(epochs=4, optimizer="adam",
    lr=1e-3, weight_decay=0, schedule="constant", batch_size=64, augment=None)`` (with the old loss).
    """

    epochs: int = 10
    loss: str = "nsr"
    optimizer: str = "sgd"
    lr: float = DIGITS_MINI.lr
    momentum: float = DIGITS_MINI.momentum
    nesterov: bool = DIGITS_MINI.nesterov
    weight_decay: float = DIGITS_MINI.weight_decay
    schedule: str = "cosine"  # over the distillation epochs, stepped once per epoch
    batch_size: int = DIGITS_MINI.batch_size
    augment: AugmentConfig | None = DIGITS_MINI.augment()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InvalidArgumentError(f"distillation loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.optimizer not in OPTIMIZERS:
            raise InvalidArgumentError(f"distillation optimizer must be one of {', '.join(OPTIMIZERS)}, "
                                       f"got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise InvalidArgumentError(f"distillation schedule must be one of {', '.join(SCHEDULES)}, "
                                       f"got {self.schedule!r}")
        for name in ("epochs", "batch_size", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "seed" else 1):
                raise InvalidArgumentError(f"DistillConfig.{name} must be a positive integer (seed: >= 0), "
                                           f"got {value!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise InvalidArgumentError(f"DistillConfig.lr must be a positive number, got {self.lr!r}")
        for name in ("momentum", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InvalidArgumentError(f"DistillConfig.{name} must be a number >= 0, got {value!r}")
        if self.augment is not None and not isinstance(self.augment, AugmentConfig):
            raise InvalidArgumentError(f"DistillConfig.augment must be an AugmentConfig or None, "
                                       f"got {type(self.augment).__name__}")

    @classmethod
    def from_recipe(cls, recipe: str | Recipe, *, epochs: int = 10, loss: str = "nsr", seed: int = 0,
                    optimizer: str = "sgd", augment: bool = True, lr: float | None = None,
                    batch_size: int | None = None) -> DistillConfig:
        """The original trainer's distillation for a recipe: its SGD settings, batch size and augmentation.

        ``optimizer="adam"`` takes Adam at ``lr`` (default 1e-3), no weight decay and a constant rate instead;
        ``augment=False`` drops the augmentation; ``lr``/``batch_size`` override the recipe's."""
        r = get_recipe(recipe)
        if optimizer == "adam":
            opt: dict[str, Any] = {"lr": ADAM_LR if lr is None else lr, "weight_decay": 0.0, "schedule": "constant"}
        else:
            opt = {"lr": r.lr if lr is None else lr, "momentum": r.momentum, "nesterov": r.nesterov,
                   "weight_decay": r.weight_decay, "schedule": r.schedule}
        return cls(epochs=epochs, loss=loss, optimizer=optimizer, batch_size=r.batch_size if batch_size is None
                   else batch_size, augment=r.augment() if augment else None, seed=seed, **opt)

    @property
    def key(self) -> str:
        """Identifier of the config in the block library (every field that changes the result)."""
        if self.optimizer == "sgd":
            opt = f"sgd-lr{self.lr:g}-m{self.momentum:g}{'n' if self.nesterov else ''}-wd{self.weight_decay:g}"
        else:
            opt = f"adam-lr{self.lr:g}-wd{self.weight_decay:g}"
        return (f"e{self.epochs}-{self.loss}-{opt}-{schedule_key(self.schedule)}-b{self.batch_size}-"
                f"{_aug_key(self.augment)}-s{self.seed}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistillConfig:
        """The config :meth:`to_dict` wrote (e.g. into a store's blockwise-table description); unknown keys refused."""
        if not isinstance(data, dict):
            raise InvalidArgumentError(f"a DistillConfig description must be a dict, got {type(data).__name__}")
        allowed = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise InvalidArgumentError(f"unknown DistillConfig field(s) {unknown}: "
                                       f"allowed {', '.join(sorted(allowed))}")
        fields = dict(data)
        if isinstance(fields.get("augment"), dict):
            fields["augment"] = AugmentConfig(**fields["augment"])
        return cls(**fields)

    def make_optimizer(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        """This config's optimiser over ``params``."""
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if fast_kernels_enabled():  # the same update over one flat buffer (bitwise equal, a few ops a step)
            return FlatSGD(params, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                           weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                               weight_decay=self.weight_decay)

    def make_schedule(self, opt: torch.optim.Optimizer, *, batches_per_epoch: int) -> StepSchedule:
        """The learning-rate schedule (per epoch for ``cosine``, per batch for ``cosine_step``, none if constant)."""
        return make_schedule(opt, self.schedule, epochs=self.epochs, batches_per_epoch=batches_per_epoch)


def _aug_key(augment: AugmentConfig | None) -> str:
    if augment is None:
        return "noaug"
    parts = [f"ra{augment.randaugment_ops}x{augment.randaugment_magnitude}" if augment.randaugment_ops else "",
             f"hf{augment.hflip:g}" if augment.hflip else "", f"c{augment.crop_padding}" if augment.crop_padding
             else "", f"co{augment.cutout}" if augment.cutout else ""]
    return "aug" + "".join(p for p in parts if p) if any(parts) else "noaug"


@dataclass
class DistillResult:
    """One distilled block: its kept (best-validation) weights, signatures and cost."""

    stage: int
    block: int
    distill_loss: float  # best validation distillation loss over epochs 1..E (DONNA signature)
    lana_delta: float  # teacher val top-1 with the kept block minus without (LANA signature), points
    train_time_s: float  # own compute plus its share of the shared work (batches, teacher passes)
    val_losses: list[float] = field(default_factory=list)  # before training, then after each epoch
    best_epoch: int = 0  # the epoch (1..E) whose weights are kept: argmin of val_losses[1:], first on ties
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """MSE, or noise-to-signal: per-channel MSE over the teacher channel's unbiased variance, averaged over channels.

    As the original (no floor on the variance), except that a channel whose teacher output is exactly constant
    over the batch (variance 0: the ratio is undefined) is left out of the mean instead of returning inf/NaN."""
    if kind == "mse":
        return nn.functional.mse_loss(student, teacher)
    if kind == "nsr":
        dims = (0, 2, 3)
        if teacher.shape[0] * teacher.shape[2] * teacher.shape[3] < 2:
            raise InvalidArgumentError("the noise-to-signal loss needs at least 2 values per channel (the unbiased "
                                       f"variance of one is undefined), got teacher output {tuple(teacher.shape)}")
        mse = ((student - teacher) ** 2).mean(dim=dims)
        var = teacher.var(dim=dims, unbiased=True)
        keep = var > 0
        if not bool(keep.any()):
            raise InvalidArgumentError("the noise-to-signal loss is undefined: every teacher channel is constant "
                                       "over the batch")
        return (mse[keep] / var[keep]).mean()
    raise InvalidArgumentError(f"distillation loss must be one of {', '.join(LOSSES)}, got {kind!r}")


def student_seed(seed: int, stage: int, block: int) -> int:
    """Initialisation seed of one student, independent of which other students train alongside."""
    return seed * 1_000_003 + stage * 1_009 + block


def _student(stage: int, block: int, channels: int, seed: int) -> Stage:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(student_seed(seed, stage, block))
        return Stage(block, channels)


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def distill_blocks(teacher: BloxModel, data: ImageData, *, candidates: Iterable[tuple[int, int]],
                   config: DistillConfig, device: torch.device, progress: bool = False,
                   eval_batch_size: int = 512) -> dict[tuple[int, int], DistillResult]:
    """Distil every ``(stage, block)`` candidate from ``teacher`` in one shared pass over the data; each keeps
    its best-validation-loss weights (see the module docstring)."""
    if not isinstance(config, DistillConfig):
        raise InvalidArgumentError(f"config must be a DistillConfig, got {type(config).__name__}")
    todo = sorted(set(candidates))
    for s, b in todo:
        if s not in range(N_STAGES) or b not in range(N_BLOCKS):
            raise InvalidArgumentError(f"candidate (stage {s}, block {b}) out of range: stages 0..2, blocks 0..44")
    if not todo:
        return {}
    if len(data.val.y) < 2:
        raise InvalidArgumentError(f"distillation needs at least 2 validation images, got {len(data.val.y)}")
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    cfg = teacher.config
    students = {key: _student(*key, cfg.channels(key[0]), config.seed).to(device) for key in todo}
    opts = {key: config.make_optimizer(m.parameters()) for key, m in students.items()}
    own_time = dict.fromkeys(todo, 0.0)
    shared_time = 0.0
    gen = torch.Generator().manual_seed(config.seed)
    # a last training batch of one image is dropped: its unbiased variance is undefined on 1x1 maps
    drop_last = len(data.train.y) % config.batch_size == 1
    batches = len(data.train.y) // config.batch_size if drop_last else math.ceil(len(data.train.y) / config.batch_size)
    scheds = {key: config.make_schedule(opt, batches_per_epoch=batches) for key, opt in opts.items()}
    # val_losses[0] is the untrained student's loss, then one value per epoch
    val_curves = {k: [v] for k, v in _val_losses(teacher, students, data, config, device, eval_batch_size).items()}
    best: dict[tuple[int, int], tuple[float, int, dict[str, torch.Tensor] | None]] = \
        dict.fromkeys(todo, (math.inf, 0, None))
    with ProgressBar(config.epochs, description=f"distil {len(todo)} blocks", enabled=progress) as bar:
        for epoch in range(1, config.epochs + 1):
            for m in students.values():
                m.train()
            t0 = time.perf_counter()
            for x, _y in iterate_batches(data.train, batch_size=config.batch_size, shuffle=True, generator=gen,
                                         augment=config.augment, mean=data.mean, std=data.std, device=device,
                                         drop_last=drop_last):
                with torch.no_grad():
                    _, feats = teacher(x, return_features=True)
                shared_time += time.perf_counter() - t0
                for key, student in students.items():
                    t1 = time.perf_counter()
                    stage_in, stage_out = feats[key[0]]
                    loss = distillation_loss(student(stage_in), stage_out, config.loss)
                    if not torch.isfinite(loss):
                        raise TrainingDivergedError(
                            f"distillation loss became {float(loss.detach())} at epoch {epoch} (block {key[1]} of "
                            f"stage {key[0]}, config {config.key}): lower the learning rate"
                        )
                    opts[key].zero_grad(set_to_none=True)
                    loss.backward()
                    opts[key].step()
                    scheds[key].after_batch()
                    own_time[key] += time.perf_counter() - t1
                t0 = time.perf_counter()
            for sched in scheds.values():
                sched.after_epoch()
            for key, loss in _val_losses(teacher, students, data, config, device, eval_batch_size).items():
                val_curves[key].append(loss)
                if loss < best[key][0]:  # strict: the first epoch wins ties; NaN never wins
                    best[key] = (loss, epoch, _state(students[key]))
            bar.update()
    _, base_acc, _ = evaluate(teacher, data.val, data=data, batch_size=eval_batch_size, device=device)
    results = {}
    for key, student in students.items():
        loss, epoch, state = best[key]
        if state is None:
            raise TrainingDivergedError(f"block {key[1]} of stage {key[0]} has no finite validation distillation "
                                        f"loss in any epoch (config {config.key}): lower the learning rate")
        student.load_state_dict(state)
        swapped = copy.deepcopy(teacher)
        swapped.stages[key[0]] = copy.deepcopy(student)
        _, acc, _ = evaluate(swapped, data.val, data=data, batch_size=eval_batch_size, device=device)
        results[key] = DistillResult(
            stage=key[0], block=key[1], distill_loss=loss, lana_delta=acc - base_acc,
            train_time_s=own_time[key] + shared_time / len(todo), val_losses=val_curves[key], best_epoch=epoch,
            state_dict=state,
        )
    return results


@torch.no_grad()
def _val_losses(teacher: BloxModel, students: dict[tuple[int, int], nn.Module], data: ImageData,
                config: DistillConfig, device: torch.device, batch_size: int) -> dict[tuple[int, int], float]:
    """Mean validation distillation loss of every student (batch-weighted; a last batch of one image is left out,
    its unbiased variance being undefined on 1x1 maps)."""
    totals = dict.fromkeys(students, 0.0)
    n = 0
    for m in students.values():
        m.eval()
    drop_last = len(data.val.y) % batch_size == 1
    for x, _y in iterate_batches(data.val, batch_size=batch_size, shuffle=False, generator=None, augment=None,
                                 mean=data.mean, std=data.std, device=device, drop_last=drop_last):
        _, feats = teacher(x, return_features=True)
        for key, student in students.items():
            stage_in, stage_out = feats[key[0]]
            totals[key] += float(distillation_loss(student(stage_in), stage_out, config.loss)) * len(x)
        n += len(x)
    return {k: v / max(n, 1) for k, v in totals.items()}
