"""Fine-tuning of a student assembled from library blocks, with knowledge distillation from the teacher.

Loss per batch: ``(1 - alpha) * CE(s, y) + alpha * KL(softmax(t / T) || softmax(s / T))`` with the
KL term averaged over the batch (``batchmean``); alpha 0.9 and T 1 by default, as the BLOX paper.
No ``T**2`` factor is applied (with T = 1 it makes no difference; set it in ``alpha`` if needed).
"""

from __future__ import annotations

import torch
from torch import nn

from blox_env.datasets.images import ImageData
from blox_env.errors import InvalidArgumentError
from blox_env.space import Arch
from blox_env.training.distill import DistillConfig
from blox_env.training.library import BlockLibrary
from blox_env.training.recipes import Recipe
from blox_env.training.train import TrainResult, fit, resolve_device

__all__ = ["finetune", "kd_loss"]


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
            alpha: float = 0.9, temperature: float = 1.0) -> torch.Tensor:
    """``(1-alpha) * CE + alpha * KL(softmax(t/T) || softmax(s/T))``, KL with batchmean."""
    if not 0.0 <= alpha <= 1.0 or not temperature > 0:
        raise InvalidArgumentError(f"alpha must be in [0, 1] and temperature positive, got {alpha}, {temperature}")
    ce = nn.functional.cross_entropy(student_logits, labels)
    kl = nn.functional.kl_div(nn.functional.log_softmax(student_logits / temperature, dim=1),
                              nn.functional.softmax(teacher_logits / temperature, dim=1), reduction="batchmean")
    return (1.0 - alpha) * ce + alpha * kl


def finetune(arch: Arch, data: ImageData, *, library: BlockLibrary, distill: DistillConfig, recipe: Recipe,
             seed: int, alpha: float = 0.9, temperature: float = 1.0, device: str | torch.device | None = None,
             progress: bool = False) -> TrainResult:
    """Assemble ``arch`` from the library (teacher stem/head + distilled blocks) and fine-tune it with KD."""
    if not 0.0 <= alpha <= 1.0 or not temperature > 0:
        raise InvalidArgumentError(f"alpha must be in [0, 1] and temperature positive, got {alpha}, {temperature}")
    dev = resolve_device(device if device is not None else recipe.device)
    student = library.assemble(arch, distill).to(dev)
    teacher = library.teacher_model().to(dev).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def criterion(logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t_logits = teacher(x)
        return kd_loss(logits, t_logits, y, alpha=alpha, temperature=temperature)

    return fit(student, data, recipe=recipe, seed=seed, device=dev, criterion=criterion, arch_index=arch.index,
               progress=progress)
