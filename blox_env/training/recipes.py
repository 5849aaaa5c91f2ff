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
from typing import Any

from blox_env.errors import InvalidArgumentError

__all__ = ["CIFAR100_BLOX", "DIGITS_MINI", "RECIPES", "Recipe", "get_recipe", "live_run_name"]


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
    schedule: str = "cosine"  # stepped once per epoch
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
        if self.schedule not in ("cosine", "constant"):
            raise InvalidArgumentError(f"Recipe.schedule must be 'cosine' or 'constant', got {self.schedule!r}")

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

RECIPES = {r.name: r for r in (CIFAR100_BLOX, DIGITS_MINI)}


def get_recipe(recipe: str | Recipe) -> Recipe:
    """A recipe by name (``cifar100_blox``, ``digits_mini``) or as given."""
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
