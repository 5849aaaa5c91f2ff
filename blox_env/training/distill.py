"""Blockwise distillation: train candidate blocks to mimic a teacher's stages.

A student for stage ``s`` is that stage's searchable block plus its reduction
(:class:`~blox_env.model.Stage`), trained to map the teacher's stage-``s``
input to the teacher's stage-``s`` output. All students (of one stage or of
all stages) are trained in one pass over the data: each batch goes through the
teacher once and its features feed every student. Each student has its own
seeded initialisation and optimiser, so the shared pass gives exactly the
result of distilling the blocks one by one, only faster.

Signatures per (teacher, stage, block): the final validation distillation loss
(DONNA) and the change of the teacher's validation top-1 when the block
replaces the teacher's own (LANA).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from blox_env.datasets.augment import iterate_batches
from blox_env.datasets.images import ImageData
from blox_env.errors import InvalidArgumentError
from blox_env.model import BloxModel, Stage
from blox_env.progress import ProgressBar
from blox_env.space import N_BLOCKS, N_STAGES
from blox_env.training.train import evaluate

__all__ = ["DistillConfig", "DistillResult", "distill_blocks", "distillation_loss"]

LOSSES = ("mse", "nsr")


@dataclass(frozen=True)
class DistillConfig:
    """How blocks are distilled (Adam, constant learning rate)."""

    epochs: int = 4
    loss: str = "nsr"
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InvalidArgumentError(f"distillation loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not isinstance(self.epochs, int) or self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise InvalidArgumentError(f"epochs, batch_size and lr must be positive, got {self}")

    @property
    def key(self) -> str:
        """Identifier of the config in the block library."""
        return f"e{self.epochs}-{self.loss}-lr{self.lr:g}-b{self.batch_size}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DistillResult:
    """One distilled block: its weights, signatures and cost."""

    stage: int
    block: int
    distill_loss: float  # final validation distillation loss (DONNA signature)
    lana_delta: float  # teacher val top-1 with this block minus without (LANA signature), points
    train_time_s: float  # own compute plus its share of the teacher passes
    val_losses: list[float] = field(default_factory=list)  # before training, then after each epoch
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """MSE, or noise-to-signal: per-channel MSE over the teacher channel's variance, averaged over channels.

    The variance is floored at 0.1% of the mean channel variance so that dead teacher channels (constant
    outputs) do not dominate the loss."""
    if kind == "mse":
        return nn.functional.mse_loss(student, teacher)
    if kind == "nsr":
        dims = (0, 2, 3)
        mse = ((student - teacher) ** 2).mean(dim=dims)
        var = teacher.var(dim=dims, unbiased=False)
        # dead (constant) teacher channels would make the ratio explode: floor at 0.1% of the mean variance
        var = var.clamp_min(1e-3 * float(var.mean()) + 1e-8)
        return (mse / var).mean()
    raise InvalidArgumentError(f"distillation loss must be one of {', '.join(LOSSES)}, got {kind!r}")


def student_seed(seed: int, stage: int, block: int) -> int:
    """Initialisation seed of one student, independent of which other students train alongside."""
    return seed * 1_000_003 + stage * 1_009 + block


def _student(stage: int, block: int, channels: int, seed: int) -> Stage:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(student_seed(seed, stage, block))
        return Stage(block, channels)


def distill_blocks(teacher: BloxModel, data: ImageData, *, candidates: Iterable[tuple[int, int]],
                   config: DistillConfig, device: torch.device, progress: bool = False,
                   eval_batch_size: int = 512) -> dict[tuple[int, int], DistillResult]:
    """Distil every ``(stage, block)`` candidate from ``teacher`` in one shared pass over the data."""
    todo = sorted(set(candidates))
    for s, b in todo:
        if s not in range(N_STAGES) or b not in range(N_BLOCKS):
            raise InvalidArgumentError(f"candidate (stage {s}, block {b}) out of range: stages 0..2, blocks 0..44")
    if not todo:
        return {}
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    cfg = teacher.config
    students = {key: _student(*key, cfg.channels(key[0]), config.seed).to(device) for key in todo}
    opts = {key: torch.optim.Adam(m.parameters(), lr=config.lr) for key, m in students.items()}
    own_time = dict.fromkeys(todo, 0.0)
    teacher_time = 0.0
    gen = torch.Generator().manual_seed(config.seed)
    # val_losses[0] is the untrained student's loss, then one value per epoch
    val_curves = {k: [v] for k, v in _val_losses(teacher, students, data, config, device, eval_batch_size).items()}
    with ProgressBar(config.epochs, description=f"distil {len(todo)} blocks", enabled=progress) as bar:
        for _ in range(config.epochs):
            for m in students.values():
                m.train()
            for x, _y in iterate_batches(data.train, batch_size=config.batch_size, shuffle=True, generator=gen,
                                         augment=None, mean=data.mean, std=data.std, device=device):
                t0 = time.perf_counter()
                with torch.no_grad():
                    _, feats = teacher(x, return_features=True)
                teacher_time += time.perf_counter() - t0
                for key, student in students.items():
                    t1 = time.perf_counter()
                    stage_in, stage_out = feats[key[0]]
                    loss = distillation_loss(student(stage_in), stage_out, config.loss)
                    opts[key].zero_grad(set_to_none=True)
                    loss.backward()
                    opts[key].step()
                    own_time[key] += time.perf_counter() - t1
            for key, loss in _val_losses(teacher, students, data, config, device, eval_batch_size).items():
                val_curves[key].append(loss)
            bar.update()
    _, base_acc, _ = evaluate(teacher, data.val, data=data, batch_size=eval_batch_size, device=device)
    results = {}
    for key, student in students.items():
        swapped = copy.deepcopy(teacher)
        swapped.stages[key[0]] = copy.deepcopy(student)
        _, acc, _ = evaluate(swapped, data.val, data=data, batch_size=eval_batch_size, device=device)
        results[key] = DistillResult(
            stage=key[0], block=key[1], distill_loss=val_curves[key][-1], lana_delta=acc - base_acc,
            train_time_s=own_time[key] + teacher_time / len(todo), val_losses=val_curves[key],
            state_dict={k: v.detach().cpu().clone() for k, v in student.state_dict().items()},
        )
    return results


@torch.no_grad()
def _val_losses(teacher: BloxModel, students: dict[tuple[int, int], nn.Module], data: ImageData,
                config: DistillConfig, device: torch.device, batch_size: int) -> dict[tuple[int, int], float]:
    """Mean validation distillation loss of every student (batch-weighted)."""
    totals = dict.fromkeys(students, 0.0)
    n = 0
    for m in students.values():
        m.eval()
    for x, _y in iterate_batches(data.val, batch_size=batch_size, shuffle=False, generator=None, augment=None,
                                 mean=data.mean, std=data.std, device=device):
        _, feats = teacher(x, return_features=True)
        for key, student in students.items():
            stage_in, stage_out = feats[key[0]]
            totals[key] += float(distillation_loss(student(stage_in), stage_out, config.loss)) * len(x)
        n += len(x)
    return {k: v / max(n, 1) for k, v in totals.items()}
