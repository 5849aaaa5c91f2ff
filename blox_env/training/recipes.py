"""Training recipes as frozen dataclasses: the original BLOX protocol and a CPU recipe for digits.

``digits_mini`` is this project's choice for CPU runs (Blox-mini, examples): the
model at stem width 4 (stages at 4/8/16 channels) on 8x8 digits, SGD (lr 0.1,
momentum 0.9, weight decay 5e-4) with a cosine schedule over 8 epochs at batch
128, a 1-px random crop as the only augmentation. One model trains in 4-16 s on
one core of the 2-core development machine (bottleneck-heavy models are the
slowest: their many tiny depthwise convolutions are overhead-bound on CPU).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

from blox_env.errors import InvalidArgumentError

__all__ = ["CIFAR100_BLOX", "DIGITS_MINI", "DIGITS_MINI_V2", "RECIPES", "SCHEDULES", "Recipe", "StepSchedule",
           "get_recipe", "live_run_name", "make_schedule", "schedule_key"]

#: Learning-rate schedules: cosine annealing stepped once per epoch (the original protocol), cosine annealing
#: stepped once per batch (anneals within a 1-epoch run), or a constant rate.
SCHEDULES = ("cosine", "cosine_step", "constant")


@dataclass(frozen=True)
class Recipe:
    """Everything that defines how a model is trained (except data and seed)."""

    name: str
    epochs: int
    batch_size: int
    eval_batch_size: int
    lr: float
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # "cosine": stepped once per epoch; "cosine_step": once per batch; "constant"
    stem_channels: int = 32
    randaugment_ops: int = 0
    randaugment_magnitude: int = 0
    hflip: float = 0.0
    crop_padding: int = 0
    cutout: int = 0
    device: str = "auto"  # "auto" = CUDA if available, else CPU
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size", "stem_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgumentError(f"Recipe.{name} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise InvalidArgumentError(f"Recipe.lr must be positive, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise InvalidArgumentError(f"Recipe.schedule must be one of {', '.join(map(repr, SCHEDULES))}, got "
                                       f"{self.schedule!r}")

    def with_(self, **changes: Any) -> Recipe:
        """A copy with some fields changed (e.g. ``epochs`` for fine-tuning lengths)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def augment(self) -> Any:
        """The :class:`~blox_env.datasets.augment.AugmentConfig` of this recipe (None if no augmentation)."""
        from blox_env.datasets.augment import AugmentConfig

        if not (self.randaugment_ops or self.hflip or self.crop_padding or self.cutout):
            return None
        return AugmentConfig(randaugment_ops=self.randaugment_ops, randaugment_magnitude=self.randaugment_magnitude,
                             hflip=self.hflip, crop_padding=self.crop_padding, cutout=self.cutout)


#: The original benchmark's protocol (CIFAR-100, 200 epochs).
CIFAR100_BLOX = Recipe(
    name="cifar100_blox", epochs=200, batch_size=256, eval_batch_size=100, lr=0.01, momentum=0.9, nesterov=False,
    weight_decay=5e-4, schedule="cosine", stem_channels=32, randaugment_ops=2, randaugment_magnitude=14, hflip=0.5,
    crop_padding=4, cutout=16,
)

#: CPU recipe for 8x8 digits at reduced width (Blox-mini, tests, examples).
DIGITS_MINI = Recipe(
    name="digits_mini", epochs=8, batch_size=128, eval_batch_size=512, lr=0.1, momentum=0.9, nesterov=False,
    weight_decay=5e-4, schedule="cosine", stem_channels=4, crop_padding=1,
)

#: Blox-mini v2's recipe: as ``digits_mini`` but 12 epochs with the cosine annealed per batch, so that a
#: 1-epoch fine-tune (the short one) ends annealed and costs about 9 % of a normal training, the full fine-tune
#: (12 epochs) as much as normal training: the paper's proportions (FT10 and FT200 of 200 epochs). Chosen by
#: measurement (``benchmarks/recipe_v2.py``, BENCHMARKS.md "Blox-mini v2 recipe").
DIGITS_MINI_V2 = DIGITS_MINI.with_(name="digits_mini_v2", epochs=12, schedule="cosine_step")

RECIPES = {r.name: r for r in (CIFAR100_BLOX, DIGITS_MINI, DIGITS_MINI_V2)}


def get_recipe(recipe: str | Recipe) -> Recipe:
    """A recipe by name (``cifar100_blox``, ``digits_mini``, ``digits_mini_v2``) or as given."""
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise InvalidArgumentError(f"unknown recipe {recipe!r}: allowed {', '.join(RECIPES)}")
    return RECIPES[recipe]


def live_run_name(recipe: Recipe, data_name: str, seed: int) -> str:
    """The run live normal trainings of ``recipe`` on ``data_name`` with ``seed`` are recorded in.

    One run per seed (a run's seed axis is fixed when it is created), so training another seed of a model
    never collides with the first; seed 0 keeps the name stores written before had."""
    return f"live-{recipe.name}-e{recipe.epochs}-{data_name}" + (f"-s{seed}" if seed else "")


class StepSchedule(NamedTuple):
    """A learning-rate scheduler (None: constant) and whether the loop steps it after every batch (else per epoch)."""

    scheduler: Any
    per_batch: bool

    def after_batch(self) -> None:
        """Call after every optimiser step."""
        if self.per_batch:
            self.scheduler.step()

    def after_epoch(self) -> None:
        """Call after every epoch."""
        if self.scheduler is not None and not self.per_batch:
            self.scheduler.step()


def make_schedule(optimizer: Any, schedule: str, *, epochs: int, batches_per_epoch: int) -> StepSchedule:
    """The schedule named ``schedule`` (see :data:`SCHEDULES`) for ``epochs`` of ``batches_per_epoch`` steps.

    ``cosine`` anneals over ``epochs`` stepped once per epoch (the original protocol); ``cosine_step`` anneals over
    every batch of the run, so even a 1-epoch run ends at a learning rate of zero."""
    import torch

    if schedule not in SCHEDULES:
        raise InvalidArgumentError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}, got {schedule!r}")
    if schedule == "cosine":
        return StepSchedule(torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs), False)
    if schedule == "cosine_step":
        total = max(1, epochs * batches_per_epoch)
        return StepSchedule(torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total), True)
    return StepSchedule(None, False)


def schedule_key(schedule: str) -> str:
    """Three letters naming a schedule in result keys (``cos``, ``cst``, ``con``), distinct for each."""
    return {"cosine": "cos", "cosine_step": "cst", "constant": "con"}[schedule]
