"""RandAugment on uint8 image batches in plain torch, following torchvision's (>= 0.11) tensor backend.

The 14 ops Identity, ShearX, ShearY, TranslateX, TranslateY, Rotate, Brightness, Color, Contrast,
Sharpness, Posterize, Solarize, AutoContrast, Equalize; 31 magnitude bins; a random sign for the
signed ops; the same magnitude tables, inverse affine matrices (shear about the top-left corner,
rotation about the centre), ``_blend`` truncation to uint8, grayscale weights, sharpness kernel and
Equalize lookup table; geometric ops use nearest interpolation with fill 0. Images that drew the
same op are transformed together, which is what makes it cheap on a whole batch.

Deviations from torchvision, on purpose (see also :mod:`blox_env.datasets.augment`):

- every random draw comes from the given ``torch.Generator`` in batched order (per round: all op
  indices, then all signs), so the random stream differs from torchvision's global-RNG stream;
- the original BLOX pipeline ran RandAugment on PIL images; PIL rounds some colour ops and places
  affine sample points slightly differently, so single pixels may differ by a grey level or a pixel;
- geometric ops go through ``affine_grid``/``grid_sample`` (``align_corners=False``) with the
  matrix rescaled to normalised coordinates, where torchvision builds the grid in pixel units first:
  identical except for float ties at exactly half a pixel (rotate/shear only).

The argument checks at the top are shared with :mod:`blox_env.datasets.augment`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from blox_env.errors import InvalidArgumentError

__all__ = [
    "NUM_MAGNITUDE_BINS",
    "RANDAUGMENT_OPS",
    "apply_op",
    "check_generator",
    "check_image_batch",
    "check_int",
    "draw_ints",
    "op_magnitude",
    "randaugment",
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


def check_int(name: str, value: object, *, low: int, high: int | None = None) -> None:
    """Raise InvalidArgumentError unless ``value`` is an int (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"an int in [{low}, {high}]" if high is not None else f"an int >= {low}"
        raise InvalidArgumentError(f"{name} must be {allowed}, got {value!r}")


def check_image_batch(x: object, *, name: str = "x") -> torch.Tensor:
    """``x`` itself if it is a uint8 tensor ``[B, C, H, W]``; InvalidArgumentError otherwise."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.ndim != 4:
        got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise InvalidArgumentError(f"{name} must be a uint8 tensor [B, C, H, W], got {got}")
    return x


def check_generator(generator: object) -> torch.Generator:
    """``generator`` itself if it is a ``torch.Generator`` (no global RNG is ever used)."""
    if not isinstance(generator, torch.Generator):
        raise InvalidArgumentError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


def draw_ints(high: int, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``n`` ints in ``[0, high)`` drawn on the generator's device, then moved to ``device``."""
    return torch.randint(high, (n,), generator=generator, device=generator.device).to(device)


def op_magnitude(op: str, *, magnitude: int, image_size: tuple[int, int]) -> float:
    """Unsigned magnitude of ``op`` at bin ``magnitude`` (0..30), from torchvision's RandAugment tables.

    ``image_size`` is ``(H, W)``; only the translations depend on it (up to 150/331 of the side).
    """
    if op not in RANDAUGMENT_OPS:
        raise InvalidArgumentError(f"unknown RandAugment op {op!r}; allowed: {', '.join(RANDAUGMENT_OPS)}")
    check_int("magnitude", magnitude, low=0, high=NUM_MAGNITUDE_BINS - 1)
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
    x = check_image_batch(x)
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
    x = check_image_batch(x)
    generator = check_generator(generator)
    check_int("num_ops", num_ops, low=0)
    check_int("magnitude", magnitude, low=0, high=NUM_MAGNITUDE_BINS - 1)
    ops = tuple(ops)
    if not ops or any(op not in RANDAUGMENT_OPS for op in ops):
        raise InvalidArgumentError(f"ops must be a non-empty subset of {', '.join(RANDAUGMENT_OPS)}, got {ops!r}")
    b, _, h, w = x.shape
    out = x.clone()
    cpu = torch.device("cpu")
    for _ in range(num_ops):
        chosen = draw_ints(len(ops), b, generator, cpu)
        negative = draw_ints(2, b, generator, cpu).bool()
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
