"""The per-batch image pipeline in plain torch (torchvision is not a dependency): augment, normalise, batch.

What: :func:`augment_batch` turns a uint8 batch ``[B, C, H, W]`` into a normalised float32 batch,
:func:`normalise` is the eval-time transform, and :func:`iterate_batches` walks a split in (shuffled)
batches through either of them. With :data:`BLOX_AUGMENT`, :func:`augment_batch` reproduces the
original BLOX training transform::

    RandAugment(num_ops=2, magnitude=14) -> RandomHorizontalFlip(0.5) -> RandomCrop(32, padding=4)
    -> ToTensor + Normalize(mean, std) -> Cutout(16)

Why: per-image PIL transforms in data-loader workers dominate the cost of training small CIFAR
models on CPU; doing the same work on the whole batch (images grouped by the op they drew) costs about
30 ms per 256-image 32x32 batch on one CPU thread and runs on the GPU too.

RandAugment itself (torchvision's tensor backend, ported) is :mod:`blox_env.datasets.randaugment`.
Deviations from torchvision, on purpose:

- every random draw comes from the given ``torch.Generator`` in batched order (per RandAugment
  round: all op indices, then all signs; then flips; then crop offsets; then cutout centres), so the
  random stream differs from torchvision's global-RNG stream even for the same seed;
- the generator may live on the CPU while the batch lives on a GPU: random parameters are drawn on
  the generator's device and moved to the batch.

Cutout follows DeVries & Taylor's reference code: a centre uniform over all pixels, rows/columns
``[c - size // 2, c + size // 2)`` clipped at the borders, set to 0 after normalisation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from blox_env.datasets.randaugment import (
    NUM_MAGNITUDE_BINS,
    check_generator,
    check_image_batch,
    check_int,
    draw_ints,
    randaugment,
)
from blox_env.errors import InvalidArgumentError

if TYPE_CHECKING:
    from blox_env.datasets.images import ImageSplit

__all__ = [
    "BLOX_AUGMENT",
    "AugmentConfig",
    "augment_batch",
    "cutout",
    "hflip",
    "iterate_batches",
    "normalise",
    "random_crop",
]


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation; every field 0 means "off".

    ``randaugment_ops``/``randaugment_magnitude``: RandAugment's N and M (M on the 0..30 scale);
    ``hflip``: flip probability; ``crop_padding``: zero padding of the random crop (output keeps the
    input size); ``cutout``: side of the square hole in pixels.
    """

    randaugment_ops: int = 0
    randaugment_magnitude: int = 0
    hflip: float = 0.0
    crop_padding: int = 0
    cutout: int = 0

    def __post_init__(self) -> None:
        check_int("randaugment_ops", self.randaugment_ops, low=0)
        check_int("randaugment_magnitude", self.randaugment_magnitude, low=0, high=NUM_MAGNITUDE_BINS - 1)
        check_int("crop_padding", self.crop_padding, low=0)
        check_int("cutout", self.cutout, low=0)
        if isinstance(self.hflip, bool) or not isinstance(self.hflip, int | float) or not 0.0 <= self.hflip <= 1.0:
            raise InvalidArgumentError(f"hflip must be a probability in [0, 1], got {self.hflip!r}")


BLOX_AUGMENT = AugmentConfig(randaugment_ops=2, randaugment_magnitude=14, hflip=0.5, crop_padding=4, cutout=16)
"""The original BLOX CIFAR training transform."""


def hflip(x: torch.Tensor, *, p: float, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability ``p``."""
    generator = check_generator(generator)
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
        raise InvalidArgumentError(f"p must be a probability in [0, 1], got {p!r}")
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < p
    return torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def random_crop(x: torch.Tensor, *, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` on every side, then crop each image back to ``H x W`` at a uniform offset."""
    check_int("padding", padding, low=0)
    b, _, h, w = x.shape
    if padding == 0 or b == 0:
        return x.clone()
    generator = check_generator(generator)
    top = draw_ints(2 * padding + 1, b, generator, x.device)
    left = draw_ints(2 * padding + 1, b, generator, x.device)
    padded = F.pad(x, (padding, padding, padding, padding)).flatten(2)
    rows = top[:, None, None] + torch.arange(h, device=x.device)[:, None]
    cols = left[:, None, None] + torch.arange(w, device=x.device)
    flat = (rows * (w + 2 * padding) + cols).reshape(b, 1, h * w).expand(b, x.shape[1], h * w)
    return padded.gather(2, flat).view(x.shape)


def cutout(x: torch.Tensor, *, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one ``size x size`` square per image (centre uniform over the pixels, clipped at the borders)."""
    check_int("size", size, low=0)
    b, _, h, w = x.shape
    if size == 0 or b == 0:
        return x.clone()
    generator = check_generator(generator)
    cy = draw_ints(h, b, generator, x.device)
    cx = draw_ints(w, b, generator, x.device)
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_rows = (ys >= (cy - size // 2)[:, None]) & (ys < (cy + size // 2)[:, None])
    in_cols = (xs >= (cx - size // 2)[:, None]) & (xs < (cx + size // 2)[:, None])
    return x.masked_fill((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0)


def _stats(values: Sequence[float], *, name: str, channels: int, device: torch.device) -> torch.Tensor:
    try:
        t = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a sequence of {channels} floats, got {values!r}") from None
    if t.numel() != channels or not torch.isfinite(t).all() or (name == "std" and (t <= 0).any()):
        rule = "positive " if name == "std" else ""
        raise InvalidArgumentError(f"{name} must hold {channels} finite {rule}floats (one per channel), got {values!r}")
    return t.to(device).view(1, channels, 1, 1)


def normalise(x: torch.Tensor, *, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Eval-time transform: uint8 ``[B, C, H, W]`` -> float32 ``(x / 255 - mean) / std`` per channel."""
    x = check_image_batch(x)
    c = x.shape[1]
    out = x.float().div_(255.0)
    out.sub_(_stats(mean, name="mean", channels=c, device=x.device))
    return out.div_(_stats(std, name="std", channels=c, device=x.device))


def augment_batch(x: torch.Tensor, *, config: AugmentConfig, mean: Sequence[float], std: Sequence[float],
                  generator: torch.Generator) -> torch.Tensor:
    """Training transform of a uint8 batch: RandAugment, flip, crop, normalise, cutout -> float32.

    Every random draw comes from ``generator``, so the same seed gives the same batch.
    """
    x = check_image_batch(x)
    generator = check_generator(generator)
    if not isinstance(config, AugmentConfig):
        raise InvalidArgumentError(f"config must be an AugmentConfig, got {type(config).__name__}")
    if config.randaugment_ops:
        x = randaugment(x, num_ops=config.randaugment_ops, magnitude=config.randaugment_magnitude,
                        generator=generator)
    if config.hflip > 0:
        x = hflip(x, p=config.hflip, generator=generator)
    if config.crop_padding:
        x = random_crop(x, padding=config.crop_padding, generator=generator)
    out = normalise(x, mean=mean, std=std)
    if config.cutout:
        out = cutout(out, size=config.cutout, generator=generator)
    return out


def iterate_batches(split: ImageSplit, *, batch_size: int, shuffle: bool, generator: torch.Generator | None,
                    augment: AugmentConfig | None, mean: Sequence[float], std: Sequence[float],
                    device: torch.device | str = "cpu", drop_last: bool = False
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x float32 normalised, y int64)`` batches on ``device``, one pass over ``split``.

    ``shuffle`` permutes the order with ``generator``; ``augment`` applies :func:`augment_batch` (also
    driven by ``generator``; images are moved to ``device`` as uint8 first, so a GPU augments them).
    Without ``drop_last`` every example appears exactly once per pass. Arguments are checked here,
    before the first batch is requested.
    """
    x, y = getattr(split, "x", None), getattr(split, "y", None)
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or y.shape != x.shape[:1]:
        raise InvalidArgumentError("split must be an ImageSplit of uint8 x [N, C, H, W] and labels y [N]")
    check_image_batch(x, name="split.x")
    check_int("batch_size", batch_size, low=1)
    if (shuffle or augment is not None) and not isinstance(generator, torch.Generator):
        raise InvalidArgumentError("shuffle/augment need a torch.Generator (no global RNG is used), "
                                   f"got generator={generator!r}")
    if augment is not None and not isinstance(augment, AugmentConfig):
        raise InvalidArgumentError(f"augment must be an AugmentConfig or None, got {type(augment).__name__}")
    device = torch.device(device)
    normalise(split.x[:0], mean=mean, std=std)  # validates mean/std against the channel count now
    return _batches(split, batch_size, shuffle, generator, augment, tuple(mean), tuple(std), device, drop_last)


def _batches(split: ImageSplit, batch_size: int, shuffle: bool, generator: torch.Generator | None,
             augment: AugmentConfig | None, mean: tuple[float, ...], std: tuple[float, ...],
             device: torch.device, drop_last: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    n = split.x.shape[0]
    if shuffle and generator is not None:
        order = torch.randperm(n, generator=generator, device=generator.device).cpu()
    else:
        order = torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size].to(split.x.device)
        x = split.x[idx].to(device, non_blocking=True)
        y = split.y[idx].to(device=device, dtype=torch.int64, non_blocking=True)
        if augment is not None and generator is not None:
            yield augment_batch(x, config=augment, mean=mean, std=std, generator=generator), y
        else:
            yield normalise(x, mean=mean, std=std), y
