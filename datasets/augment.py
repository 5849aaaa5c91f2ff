"""The per-batch image pipeline in plain torch (torchvision is not a dependency): augment, normalise, batch.

What: :func:`augment_batch` turns a uint8 batch ``[B, C, H, W]`` into a normalised float32 batch,
:func:`normalise` is the eval-time transform, and :func:`iterate_batches` walks a split in (shuffled)
batches through either of them (re-exported by :mod:`blox_env.datasets.images`).
With :data:`BLOX_AUGMENT`, :func:`augment_batch` reproduces the original BLOX training transform::

    RandAugment(num_ops=2, magnitude=14) -> RandomHorizontalFlip(0.5) -> RandomCrop(32, padding=4)
    -> ToTensor + Normalize(mean, std) -> Cutout(16)

Why: per-image PIL transforms in data-loader workers dominate the cost of training small CIFAR
models on CPU; doing the same work on the whole batch (images grouped by the op they drew) costs about
30 ms per 256-image 32x32 batch on one CPU thread and runs on the GPU too.

RandAugment follows torchvision's (>= 0.11) tensor backend: the 14 ops Identity, ShearX, ShearY,
TranslateX, TranslateY, Rotate, Brightness, Color, Contrast, Sharpness, Posterize, Solarize,
AutoContrast, Equalize; 31 magnitude bins; a random sign for the signed ops; the same magnitude
tables, inverse affine matrices (shear about the top-left corner, rotation about the centre),
``_blend`` truncation to uint8, grayscale weights, sharpness kernel and Equalize lookup table;
geometric ops use nearest interpolation with fill 0.

Deviations from torchvision, on purpose:

- every random draw comes from the given ``torch.Generator`` in batched order (per RandAugment
  round: all op indices, then all signs; then flips; then crop offsets; then cutout centres), so the
  random stream differs from torchvision's global-RNG stream even for the same seed;
- the original BLOX pipeline ran RandAugment on PIL images; PIL rounds some colour ops and places
  affine sample points slightly differently, so single pixels may differ by a grey level or a pixel;
- geometric ops go through ``affine_grid``/``grid_sample`` (``align_corners=False``) with the
  matrix rescaled to normalised coordinates, where torchvision builds the grid in pixel units first:
  identical except for float ties at exactly half a pixel (rotate/shear only);
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

from blox_env.errors import InvalidArgumentError

if TYPE_CHECKING:
    from blox_env.datasets.images import ImageSplit

__all__ = [
    "BLOX_AUGMENT",
    "NUM_MAGNITUDE_BINS",
    "RANDAUGMENT_OPS",
    "AugmentConfig",
    "apply_op",
    "augment_batch",
    "cutout",
    "hflip",
    "iterate_batches",
    "normalise",
    "op_magnitude",
    "randaugment",
    "random_crop",
]

RANDAUGMENT_OPS: tuple[str, ...] = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
    "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
)
"""RandAugment's op pool, in torchvision's order."""

NUM_MAGNITUDE_BINS = 31
"""torchvision's default number of magnitude bins (magnitudes 0..30)."""

_SIGNED = frozenset({"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
                     "Contrast", "Sharpness"})
_GEOMETRIC = frozenset({"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"})


def _check_int(name: str, value: object, *, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"an int in [{low}, {high}]" if high is not None else f"an int >= {low}"
        raise InvalidArgumentError(f"{name} must be {allowed}, got {value!r}")


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
        _check_int("randaugment_ops", self.randaugment_ops, low=0)
        _check_int("randaugment_magnitude", self.randaugment_magnitude, low=0, high=NUM_MAGNITUDE_BINS - 1)
        _check_int("crop_padding", self.crop_padding, low=0)
        _check_int("cutout", self.cutout, low=0)
        if isinstance(self.hflip, bool) or not isinstance(self.hflip, int | float) or not 0.0 <= self.hflip <= 1.0:
            raise InvalidArgumentError(f"hflip must be a probability in [0, 1], got {self.hflip!r}")


BLOX_AUGMENT = AugmentConfig(randaugment_ops=2, randaugment_magnitude=14, hflip=0.5, crop_padding=4, cutout=16)
"""The original BLOX CIFAR training transform."""


def _check_batch(x: object, *, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.ndim != 4:
        got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise InvalidArgumentError(f"{name} must be a uint8 tensor [B, C, H, W], got {got}")
    return x


def _check_generator(generator: object) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise InvalidArgumentError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


def _randint(high: int, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(high, (n,), generator=generator, device=generator.device).to(device)


def op_magnitude(op: str, *, magnitude: int, image_size: tuple[int, int]) -> float:
    """Unsigned magnitude of ``op`` at bin ``magnitude`` (0..30), from torchvision's RandAugment tables.

    ``image_size`` is ``(H, W)``; only the translations depend on it (up to 150/331 of the side).
    """
    if op not in RANDAUGMENT_OPS:
        raise InvalidArgumentError(f"unknown RandAugment op {op!r}; allowed: {', '.join(RANDAUGMENT_OPS)}")
    _check_int("magnitude", magnitude, low=0, high=NUM_MAGNITUDE_BINS - 1)
    bins = NUM_MAGNITUDE_BINS
    h, w = image_size
    if op in ("Identity", "AutoContrast", "Equalize"):
        return 0.0
    if op == "Posterize":
        return float(8 - (torch.arange(bins) / ((bins - 1) / 4)).round().int()[magnitude])
    high = {"ShearX": 0.3, "ShearY": 0.3, "TranslateX": 150.0 / 331.0 * w, "TranslateY": 150.0 / 331.0 * h,
            "Rotate": 30.0, "Solarize": 0.0}.get(op, 0.9)
    low = 255.0 if op == "Solarize" else 0.0
    return float(torch.linspace(low, high, bins)[magnitude])


def _blend(img: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    # torchvision computes ratio and 1 - ratio in double and multiplies in float32: same rounding here
    r = ratio.double().view(-1, 1, 1, 1)
    return (r.float() * img + (1.0 - r).float() * other).clamp(0, 255).to(torch.uint8)


def _grey(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(dim=1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).to(torch.uint8).unsqueeze(1)


def _blurred(x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    kernel = torch.ones((3, 3), dtype=torch.float32, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
    inner = F.conv2d(x.float(), kernel, groups=c).round().to(torch.uint8)
    out = x.clone()
    out[..., 1:-1, 1:-1] = inner
    return out


def _autocontrast(x: torch.Tensor) -> torch.Tensor:
    low = x.amin(dim=(-2, -1), keepdim=True).float()
    high = x.amax(dim=(-2, -1), keepdim=True).float()
    flat = high == low
    scale = torch.where(flat, torch.ones_like(low), 255.0 / (high - low).clamp_min(1.0))
    low = torch.where(flat, torch.zeros_like(low), low)
    return ((x - low) * scale).clamp(0, 255).to(torch.uint8)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    flat = x.reshape(b * c, h * w).long()
    hist = torch.zeros((b * c, 256), dtype=torch.long, device=x.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    # torchvision: step = (sum of the non-zero bins except the last one) // 255; the last non-zero bin is the max
    at_max = hist.gather(1, flat.amax(dim=1, keepdim=True))
    step = torch.div(h * w - at_max, 255, rounding_mode="floor")
    safe = step.clamp_min(1)
    lut = torch.div(hist.cumsum(1) + torch.div(safe, 2, rounding_mode="floor"), safe, rounding_mode="floor")
    lut = F.pad(lut, (1, 0))[:, :-1].clamp(0, 255)
    mapped = lut.gather(1, flat)
    out = torch.where(step == 0, flat, mapped)
    return out.to(torch.uint8).reshape(b, c, h, w)


def _affine_theta(op: str, m: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """torchvision's inverse affine matrix (centred pixel units), rescaled for ``affine_grid``."""
    m = m.double()
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    if op == "ShearX":  # affine(shear=[atan(m) deg, 0], center=[0, 0]): x_in = x + m * (y + h/2)
        rows = ((one, m, m * h / 2), (zero, one, zero))
    elif op == "ShearY":
        rows = ((one, zero, zero), (m, one, m * w / 2))
    elif op == "TranslateX":  # translate=[int(m), 0]
        rows = ((one, zero, -torch.trunc(m)), (zero, one, zero))
    elif op == "TranslateY":
        rows = ((one, zero, zero), (zero, one, -torch.trunc(m)))
    else:  # Rotate: rotate(angle=m) uses the inverse matrix of angle -m about the centre
        rad = torch.deg2rad(-m)
        rows = ((torch.cos(rad), torch.sin(rad), zero), (-torch.sin(rad), torch.cos(rad), zero))
    (a, b, tx), (c, d, ty) = rows
    theta = torch.stack([torch.stack([a, b * h / w, tx * 2 / w], -1), torch.stack([c * w / h, d, ty * 2 / h], -1)], 1)
    return theta.float()


def apply_op(x: torch.Tensor, *, op: str, magnitudes: torch.Tensor | float) -> torch.Tensor:
    """Apply one RandAugment op to every image of a uint8 batch; image i uses signed ``magnitudes[i]``.

    Magnitudes are in the op's own units (see :func:`op_magnitude`): shear factor, pixels, degrees,
    enhancement delta (factor ``1 + m``), bits, or threshold. Returns a new uint8 batch.
    """
    x = _check_batch(x)
    if op not in RANDAUGMENT_OPS:
        raise InvalidArgumentError(f"unknown RandAugment op {op!r}; allowed: {', '.join(RANDAUGMENT_OPS)}")
    b, c, h, w = x.shape
    m = torch.as_tensor(magnitudes, dtype=torch.float64).to(x.device).reshape(-1).expand(b)
    if op == "Identity" or b == 0:
        return x.clone()
    if op in _GEOMETRIC:
        grid = F.affine_grid(_affine_theta(op, m, h, w).to(x.device), [b, c, h, w], align_corners=False)
        out = F.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
        return out.round().to(torch.uint8)
    if op == "Brightness":
        return _blend(x, torch.zeros_like(x), 1.0 + m)
    if op == "Color":
        return x.clone() if c != 3 else _blend(x, _grey(x), 1.0 + m)
    if op == "Contrast":
        grey = _grey(x) if c == 3 else x
        return _blend(x, grey.float().mean(dim=(-3, -2, -1), keepdim=True), 1.0 + m)
    if op == "Sharpness":
        return x.clone() if h <= 2 or w <= 2 else _blend(x, _blurred(x), 1.0 + m)
    if op == "Posterize":
        keep = (256 - 2 ** (8 - m.round().long().clamp(0, 8))).to(torch.uint8)
        return x & keep.view(-1, 1, 1, 1)
    if op == "Solarize":
        return torch.where(x >= m.view(-1, 1, 1, 1), 255 - x, x)
    if op == "AutoContrast":
        return _autocontrast(x)
    return _equalize(x)


def randaugment(x: torch.Tensor, *, num_ops: int, magnitude: int, generator: torch.Generator,
                ops: Sequence[str] = RANDAUGMENT_OPS) -> torch.Tensor:
    """RandAugment on a uint8 batch: ``num_ops`` rounds, each image drawing one op from ``ops`` per round.

    Images that drew the same op are transformed together. ``ops`` restricts the pool (tests, ablations).
    """
    x = _check_batch(x)
    generator = _check_generator(generator)
    _check_int("num_ops", num_ops, low=0)
    _check_int("magnitude", magnitude, low=0, high=NUM_MAGNITUDE_BINS - 1)
    ops = tuple(ops)
    if not ops or any(op not in RANDAUGMENT_OPS for op in ops):
        raise InvalidArgumentError(f"ops must be a non-empty subset of {', '.join(RANDAUGMENT_OPS)}, got {ops!r}")
    b, _, h, w = x.shape
    out = x.clone()
    cpu = torch.device("cpu")
    for _ in range(num_ops):
        chosen = _randint(len(ops), b, generator, cpu)
        negative = _randint(2, b, generator, cpu).bool()
        for k, op in enumerate(ops):
            sel = (chosen == k).nonzero().flatten()
            if sel.numel() == 0 or op == "Identity":
                continue
            m = torch.full((sel.numel(),), op_magnitude(op, magnitude=magnitude, image_size=(h, w)))
            if op in _SIGNED:
                m = torch.where(negative[sel], -m, m)
            sel = sel.to(x.device)
            out[sel] = apply_op(out[sel], op=op, magnitudes=m)
    return out


def hflip(x: torch.Tensor, *, p: float, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability ``p``."""
    generator = _check_generator(generator)
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
        raise InvalidArgumentError(f"p must be a probability in [0, 1], got {p!r}")
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < p
    return torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def random_crop(x: torch.Tensor, *, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` on every side, then crop each image back to ``H x W`` at a uniform offset."""
    _check_int("padding", padding, low=0)
    b, _, h, w = x.shape
    if padding == 0 or b == 0:
        return x.clone()
    generator = _check_generator(generator)
    top = _randint(2 * padding + 1, b, generator, x.device)
    left = _randint(2 * padding + 1, b, generator, x.device)
    padded = F.pad(x, (padding, padding, padding, padding)).flatten(2)
    rows = top[:, None, None] + torch.arange(h, device=x.device)[:, None]
    cols = left[:, None, None] + torch.arange(w, device=x.device)
    flat = (rows * (w + 2 * padding) + cols).reshape(b, 1, h * w).expand(b, x.shape[1], h * w)
    return padded.gather(2, flat).view(x.shape)


def cutout(x: torch.Tensor, *, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one ``size x size`` square per image (centre uniform over the pixels, clipped at the borders)."""
    _check_int("size", size, low=0)
    b, _, h, w = x.shape
    if size == 0 or b == 0:
        return x.clone()
    generator = _check_generator(generator)
    cy = _randint(h, b, generator, x.device)
    cx = _randint(w, b, generator, x.device)
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
    x = _check_batch(x)
    c = x.shape[1]
    out = x.float().div_(255.0)
    out.sub_(_stats(mean, name="mean", channels=c, device=x.device))
    return out.div_(_stats(std, name="std", channels=c, device=x.device))


def augment_batch(x: torch.Tensor, *, config: AugmentConfig, mean: Sequence[float], std: Sequence[float],
                  generator: torch.Generator) -> torch.Tensor:
    """Training transform of a uint8 batch: RandAugment, flip, crop, normalise, cutout -> float32.

    Every random draw comes from ``generator``, so the same seed gives the same batch.
    """
    x = _check_batch(x)
    generator = _check_generator(generator)
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
    _check_batch(x, name="split.x")
    _check_int("batch_size", batch_size, low=1)
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
