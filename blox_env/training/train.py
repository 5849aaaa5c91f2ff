"""Normal training of a BLOX model: per-epoch curves, best epoch, test metrics at the best weights.

``fit`` is the generic loop (SGD + cosine schedule stepped per epoch, as in the
original protocol, or per batch with ``cosine_step``) shared by normal training and KD fine-tuning; ``train_model``
builds the model of an :class:`~blox_env.space.Arch` and trains it. Runs are
deterministic under a seed on CPU: the model's initialisation uses a forked
torch RNG state (the global state is left untouched) and the data order and
augmentation use their own ``torch.Generator``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from blox_env.datasets.augment import iterate_batches
from blox_env.datasets.images import ImageData, ImageSplit
from blox_env.errors import InvalidArgumentError, TrainingDivergedError
from blox_env.kernels import fast_kernels_enabled
from blox_env.model import BloxModel, build_model
from blox_env.progress import ProgressBar
from blox_env.shapes import ModelConfig
from blox_env.space import Arch
from blox_env.training.flat_sgd import FlatSGD
from blox_env.training.recipes import Recipe, make_schedule

__all__ = ["CURVES", "TrainResult", "evaluate", "fit", "init_model", "model_config_for", "resolve_device",
           "train_model"]

CURVES = ("train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5")
Criterion = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: ``on_epoch(epoch, values)``: called after each epoch of :func:`fit` (see there).
EpochHook = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    """Outcome of one training run (accuracies in percent, epochs count from 1)."""

    arch_index: int
    seed: int
    epochs: int
    curves: dict[str, list[float]]
    best_epoch: int
    test_loss: float
    test_top1: float
    test_top5: float
    train_time_s: float
    wall_time_s: float
    state_dict: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def best_val_top1(self) -> float:
        return self.curves["val_top1"][self.best_epoch - 1]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None: CUDA if available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidArgumentError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc


def model_config_for(data: ImageData, recipe: Recipe) -> ModelConfig:
    """Model shape for a data set at a recipe's width."""
    return ModelConfig(stem_channels=recipe.stem_channels, in_channels=data.channels, image_size=data.image_size,
                       num_classes=data.num_classes)


def init_model(arch: Arch, config: ModelConfig, *, seed: int) -> BloxModel:
    """The model of ``arch`` with a seeded initialisation (global RNG state untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(arch, config)


def _topk(logits: torch.Tensor, y: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == y[:, None]).any(dim=1).sum())


@torch.no_grad()
def evaluate(model: nn.Module, split: ImageSplit, *, data: ImageData, batch_size: int,
             device: torch.device) -> tuple[float, float, float]:
    """Mean cross-entropy, top-1 and top-5 (percent) of ``model`` on a split."""
    model.eval()
    loss_sum, top1, top5, n = 0.0, 0, 0, 0
    for x, y in iterate_batches(split, batch_size=batch_size, shuffle=False, generator=None, augment=None,
                                mean=data.mean, std=data.std, device=device):
        logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        top1 += _topk(logits, y, 1)
        top5 += _topk(logits, y, 5)
        n += len(y)
    if n == 0:
        raise InvalidArgumentError("cannot evaluate on an empty split")
    return loss_sum / n, 100.0 * top1 / n, 100.0 * top5 / n


def _copy_state(model: nn.Module, best: dict[str, torch.Tensor] | None, *,
                in_place: bool) -> dict[str, torch.Tensor]:
    """The model's weights as a copy: fresh the first time, then copied into the same tensors (exact, no allocation)."""
    state = model.state_dict()
    if best is None or not in_place:
        return copy.deepcopy(state)
    torch._foreach_copy_(list(best.values()), list(state.values()))
    return best


def _ce(logits: torch.Tensor, y: torch.Tensor, _x: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, y)


def fit(model: nn.Module, data: ImageData, *, recipe: Recipe, seed: int, device: torch.device,
        criterion: Criterion = _ce, arch_index: int = -1, progress: bool = False,
        keep_weights: bool = False, on_epoch: EpochHook | None = None) -> TrainResult:
    """Train ``model`` with the recipe's optimiser and schedule; select the best epoch on validation.

    Best epoch: highest val top-1, ties broken by lower val loss. Test metrics are
    computed once, with the best epoch's weights. ``criterion(logits, y, x)``
    lets fine-tuning add knowledge distillation. ``on_epoch(epoch, values)`` is called after each epoch
    (counted from 1) with that epoch's :data:`CURVES` values and the cumulative ``train_time_s``, so a
    caller can report progress (Ray Tune) or stop the run by raising.
    """
    start = time.perf_counter()
    model.to(device)
    fast = fast_kernels_enabled()
    # fast: one flat buffer for all parameters (and gradients), SGD's arithmetic in a few ops (see FlatSGD)
    opt = (FlatSGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                   weight_decay=recipe.weight_decay) if fast else
           torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                           weight_decay=recipe.weight_decay))
    sched = make_schedule(opt, recipe.schedule, epochs=recipe.epochs,
                          batches_per_epoch=math.ceil(len(data.train.y) / recipe.batch_size))
    gen = torch.Generator().manual_seed(seed)
    augment = recipe.augment()
    curves: dict[str, list[float]] = {k: [] for k in CURVES}
    best_key, best_state, best_epoch = (-math.inf, 0.0), None, 0
    train_time = 0.0
    with ProgressBar(recipe.epochs, description=f"train #{arch_index}", enabled=progress) as bar:
        for epoch in range(recipe.epochs):
            t0 = time.perf_counter()
            model.train()
            loss_sum, top1, top5, n = 0.0, 0, 0, 0
            for b, (x, y) in enumerate(iterate_batches(data.train, batch_size=recipe.batch_size, shuffle=True,
                                                       generator=gen, augment=augment, mean=data.mean, std=data.std,
                                                       device=device)):
                logits = model(x)
                loss = criterion(logits, y, x)
                if not torch.isfinite(loss):
                    raise TrainingDivergedError(
                        f"training loss became {float(loss.detach())} at epoch {epoch + 1}, batch {b} "
                        f"(model {arch_index}, seed {seed}): lower the learning rate"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.after_batch()
                loss_sum += float(loss.detach()) * len(y)
                with torch.no_grad():
                    top1 += _topk(logits, y, 1)
                    top5 += _topk(logits, y, 5)
                n += len(y)
            sched.after_epoch()
            train_time += time.perf_counter() - t0
            curves["train_loss"].append(loss_sum / n)
            curves["train_top1"].append(100.0 * top1 / n)
            curves["train_top5"].append(100.0 * top5 / n)
            vl, v1, v5 = evaluate(model, data.val, data=data, batch_size=recipe.eval_batch_size, device=device)
            curves["val_loss"].append(vl)
            curves["val_top1"].append(v1)
            curves["val_top5"].append(v5)
            if (v1, -vl) > best_key:
                best_key, best_epoch = (v1, -vl), epoch + 1
                best_state = _copy_state(model, best_state, in_place=fast)
            bar.update()
            if on_epoch is not None:
                on_epoch(epoch + 1, {**{k: curves[k][-1] for k in CURVES}, "train_time_s": train_time})
    if best_state is not None:
        model.load_state_dict(best_state)
    tl, t1, t5 = evaluate(model, data.test, data=data, batch_size=recipe.eval_batch_size, device=device)
    return TrainResult(arch_index, seed, recipe.epochs, curves, best_epoch, tl, t1, t5, train_time,
                       time.perf_counter() - start, best_state if keep_weights else None)


def train_model(arch: Arch, data: ImageData, *, recipe: Recipe, seed: int, device: str | torch.device | None = None,
                progress: bool = False, keep_weights: bool = False, on_epoch: EpochHook | None = None) -> TrainResult:
    """Train the model of ``arch`` normally on ``data`` with ``recipe`` (``on_epoch``: see :func:`fit`)."""
    if not isinstance(arch, Arch):
        raise InvalidArgumentError(f"arch must be an Arch, got {type(arch).__name__}")
    dev = resolve_device(device if device is not None else recipe.device)
    model = init_model(arch, model_config_for(data, recipe), seed=seed)
    return fit(model, data, recipe=recipe, seed=seed, device=dev, arch_index=arch.index, progress=progress,
               keep_weights=keep_weights, on_epoch=on_epoch)


def result_record(result: TrainResult) -> dict[str, Any]:
    """A JSON-friendly dict of a result (no weights)."""
    return {"arch_index": result.arch_index, "seed": result.seed, "epochs": result.epochs, "curves": result.curves,
            "best_epoch": result.best_epoch, "test_loss": result.test_loss, "test_top1": result.test_top1,
            "test_top5": result.test_top5, "train_time_s": result.train_time_s, "wall_time_s": result.wall_time_s}
