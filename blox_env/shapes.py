"""Model shape configuration, kept torch-free so cost tables need no torch import."""

from __future__ import annotations

from dataclasses import dataclass

from blox_env.errors import InvalidArgumentError
from blox_env.space import N_STAGES

__all__ = ["ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a model: stem width, input channels, image size, classes.

    The default is the original benchmark (CIFAR-100 at 32 px, 32-channel stem).
    Stage ``s`` runs at ``stem_channels * 2**s`` channels.
    """

    stem_channels: int = 32
    in_channels: int = 3
    image_size: int = 32
    num_classes: int = 100

    def __post_init__(self) -> None:
        for name in ("stem_channels", "in_channels", "image_size", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgumentError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.stem_channels % 2:
            raise InvalidArgumentError(
                f"ModelConfig.stem_channels must be even (bottleneck blocks use C/2), got {self.stem_channels}"
            )
        if self.image_size < 2**N_STAGES:
            raise InvalidArgumentError(f"ModelConfig.image_size must be at least {2**N_STAGES}, got {self.image_size}")

    def channels(self, stage: int) -> int:
        """Channels inside stage ``stage`` (the reduction doubles them)."""
        return self.stem_channels * 2**stage

    def resolution(self, stage: int) -> int:
        """Spatial size inside stage ``stage`` (each reduction halves it, rounding up)."""
        size = self.image_size
        for _ in range(stage):
            size = (size + 1) // 2
        return size
