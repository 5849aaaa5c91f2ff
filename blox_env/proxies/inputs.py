"""The one minibatch every proxy sees: drawn once per job, the same for every model and initialisation seed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from blox_env.errors import InvalidArgumentError

__all__ = ["ProxyBatch", "proxy_batch"]


@dataclass(frozen=True)
class ProxyBatch:
    """Normalised images ``x [B, C, H, W]`` (float32), labels ``y [B]`` (int64) and where they came from."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor) or self.x.ndim != 4 or not self.x.is_floating_point():
            raise InvalidArgumentError("ProxyBatch.x must be a float tensor [batch, channels, height, width], got "
                                       f"{type(self.x).__name__} {tuple(getattr(self.x, 'shape', ()))}")
        if not isinstance(self.y, torch.Tensor) or self.y.ndim != 1 or self.y.dtype != torch.int64:
            raise InvalidArgumentError("ProxyBatch.y must be an int64 tensor [batch] of labels")
        if len(self.x) == 0:
            raise InvalidArgumentError("ProxyBatch is empty: a proxy needs at least 2 images")
        if len(self.x) < 2 or len(self.y) != len(self.x):
            raise InvalidArgumentError(f"ProxyBatch needs at least 2 images and one label per image, got "
                                       f"{len(self.x)} images and {len(self.y)} labels")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise InvalidArgumentError(f"ProxyBatch.num_classes must be an integer >= 2, got {self.num_classes!r}")
        if int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes:
            raise InvalidArgumentError(f"ProxyBatch.y holds labels outside 0..{self.num_classes - 1}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        return int(self.x.shape[1]), int(self.x.shape[2]), int(self.x.shape[3])


def _positive(name: str, value: object, *, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < low:
        raise InvalidArgumentError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def proxy_batch(data: Any = "digits", *, batch_size: int = 64, seed: int = 0,
                shape: tuple[int, int, int] | None = None, num_classes: int | None = None,
                **data_kwargs: Any) -> ProxyBatch:
    """One batch of ``batch_size`` training images drawn without replacement by ``seed``.

    ``data``: a spec of :func:`blox_env.datasets.images.load_data` (``"digits"``, ``"cifar100:PATH"``, a
    folder), an ``ImageData``, or ``"gaussian"`` (N(0, 1) images of ``shape`` = (C, H, W) with uniform labels
    over ``num_classes``, for stores without image data). Images are scaled to [0, 1] and normalised by the
    data set's per-channel mean and std.
    """
    batch_size = _positive("batch_size", batch_size, low=2)
    seed = _positive("seed", seed, low=0)
    rng = np.random.default_rng(seed)
    if isinstance(data, str) and data.strip().lower() == "gaussian":
        if shape is None or num_classes is None:
            raise InvalidArgumentError("data 'gaussian' needs shape=(channels, height, width) and num_classes")
        if len(shape) != 3:
            raise InvalidArgumentError(f"shape must be (channels, height, width), got {shape!r}")
        c, h, w = (_positive("shape", v) for v in shape)
        n_cls = _positive("num_classes", num_classes, low=2)
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(batch_size, c, h, w, generator=gen)
        y = torch.from_numpy(rng.integers(0, n_cls, batch_size).astype(np.int64))
        return ProxyBatch(x, y, n_cls, {"data": "gaussian", "batch_size": batch_size, "seed": seed,
                                         "shape": [c, h, w], "labels": "uniform"})
    from blox_env.datasets.images import ImageData, load_data

    images = data if isinstance(data, ImageData) else load_data(data, **data_kwargs)
    n = len(images.train.x)
    if n == 0:
        raise InvalidArgumentError(f"data {images.name!r} has no training images to draw a proxy batch from")
    if batch_size > n:
        raise InvalidArgumentError(f"batch_size {batch_size} exceeds the {n} training images of {images.name!r}")
    pick = np.sort(rng.choice(n, size=batch_size, replace=False))
    x = images.train.x[torch.from_numpy(pick)].float().div_(255.0)
    mean = torch.tensor(images.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(images.std, dtype=torch.float32).view(1, -1, 1, 1)
    x = (x - mean) / std
    y = images.train.y[torch.from_numpy(pick)].to(torch.int64)
    return ProxyBatch(x.contiguous(), y, int(images.num_classes),
                      {"data": images.name, "batch_size": batch_size, "seed": seed, "split": "train",
                       "normalise": "per-channel mean/std of the data set", "data_provenance": images.provenance})
