"""Exact, faster CPU kernels for the tiny convolutions of BLOX models (Blox-mini: 8x8 maps, 2-32 channels).

Why: at these shapes oneDNN's convolutions cost a fixed 0.3-2 ms per forward + backward at batch 128 (a
depthwise 5x5 on 32 channels of 2x2 maps: 1.7 ms) while the arithmetic is a few hundred thousand
multiply-adds. Written as one matrix product the same sums run 1.3-5x faster on most Blox-mini shapes
(``benchmarks/kernels.py`` times every shape; a dense conv with a masked diagonal weight, the other
exact form of a depthwise conv, gains only 0.8-2.8x there and is not used).

What: :class:`FastConv2d` is an ``nn.Conv2d`` (same parameters, same ``state_dict``, same parameter count)
whose forward picks, per input shape, one of:

- ``"unrolled"`` (dense conv, small maps): ``y = x.view(B, C*H*W) @ T + bias`` with ``T`` the conv's
  ``(C*H*W) x (O*Ho*Wo)`` matrix, rebuilt each call from the weight through a 0/1 tap matrix, so ``T`` holds
  the weights exactly and gradients flow to the weight only;
- ``"unrolled_depthwise"`` (depthwise, maps up to 8x8): the same per channel, as a batched matmul;
- ``"pointwise"`` (1x1, stride 1): a batched matmul over channels, or a linear layer on maps up to 2x2;
- ``"native"``: ``F.conv2d`` (everything else, any non-CPU device, other dtypes, the switch off).

A grouped conv that is not depthwise (copies of a model stacked side by side, ``blox_env.model``'s ``stack=``)
follows the same rules per group and runs ``unrolled`` or ``pointwise`` as one batched product over the groups.

Every path computes the same sums of the same products as the convolution (plus exact zeros where the
window meets the padding); only the summation order differs, so results agree within float rounding
(``tests/space/test_fast_kernels.py`` states the tolerances). The choice is a fixed rule table (see
:func:`conv_strategy`) read off ``benchmarks/kernels.py``, not a per-process measurement: a measured choice
would depend on the machine's load at start-up, and since the paths round differently (and a training
amplifies rounding), a seeded run would no longer give the same numbers from one process to the next.
Switch: ``BLOX_FAST_KERNELS=0`` in the environment (read at import) or :func:`fast_kernels` (a context
manager) run the plain kernels; the training loop's other fast parts (``FlatSGD``, in-place copies of the
best weights) follow the same switch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from blox_env.errors import InvalidArgumentError

__all__ = ["MAX_UNROLLED", "STRATEGIES", "FastConv2d", "conv_strategy", "fast_kernels", "fast_kernels_enabled",
           "tap_matrix"]

#: The kernels a :class:`FastConv2d` can run.
STRATEGIES = ("native", "unrolled", "unrolled_depthwise", "pointwise")
#: Largest dense conv matrix ``(C*H*W) * (O*Ho*Wo)`` run unrolled (256 KB of float32; beyond it oneDNN wins).
MAX_UNROLLED = 65536
#: Largest map (H*W) a depthwise conv runs unrolled at (8x8: its per-channel matrix is 64 x 64).
MAX_DEPTHWISE_MAP = 64
#: Largest map (H*W) a pointwise conv runs as a linear layer at (beyond: batched matmul over channels).
MAX_LINEAR_MAP = 4

_state = {"enabled": os.environ.get("BLOX_FAST_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")}


def fast_kernels_enabled() -> bool:
    """Whether :class:`FastConv2d` runs its fast paths now (``BLOX_FAST_KERNELS=0`` turns them off)."""
    return _state["enabled"]


@contextmanager
def fast_kernels(enabled: bool) -> Iterator[None]:
    """Run the fast paths (``True``) or the plain kernels (``False``) inside the block, then restore."""
    if not isinstance(enabled, bool):
        raise InvalidArgumentError(f"enabled must be True or False, got {enabled!r}")
    before = _state["enabled"]
    _state["enabled"] = enabled
    try:
        yield
    finally:
        _state["enabled"] = before


def _out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


@lru_cache(maxsize=256)
def _taps(h: int, w: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int) -> torch.Tensor:
    """0/1 float64 ``[kh*kw, h*w, ho*wo]``: tap k carries input position p to output position q."""
    ho, wo = _out_size(h, kh, sh, ph), _out_size(w, kw, sw, pw)
    oy, ox = torch.meshgrid(torch.arange(ho), torch.arange(wo), indexing="ij")
    s = torch.zeros(kh * kw, h * w, ho * wo, dtype=torch.float64)
    q = (oy * wo + ox).reshape(-1)
    for dy in range(kh):
        for dx in range(kw):
            iy, ix = (oy * sh + dy - ph).reshape(-1), (ox * sw + dx - pw).reshape(-1)
            ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
            s[dy * kw + dx, (iy * w + ix)[ok], q[ok]] = 1.0
    return s


@lru_cache(maxsize=256)
def _taps_as(key: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    s = _taps(*key)
    return s.reshape(s.shape[0], -1).to(dtype=dtype, device=device)


def tap_matrix(size: tuple[int, int], *, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int]) -> torch.Tensor:
    """The 0/1 ``[kh*kw, H*W, Ho*Wo]`` matrix of a conv's taps on an ``H x W`` map (float64, cached)."""
    vals = (*size, *kernel, *stride, *padding)
    if len(vals) != 8 or any(isinstance(v, bool) or not isinstance(v, int) for v in vals) \
            or min(vals[:6]) < 1 or min(vals[6:]) < 0:
        raise InvalidArgumentError("size, kernel and stride must be pairs of positive ints and padding a pair of "
                                   f"non-negative ints, got {size}, {kernel}, {stride}, {padding}")
    if _out_size(size[0], kernel[0], stride[0], padding[0]) < 1 or _out_size(size[1], kernel[1], stride[1],
                                                                              padding[1]) < 1:
        raise InvalidArgumentError(f"a {kernel} kernel does not fit a {size} map padded by {padding}")
    return _taps(*vals)


def conv_strategy(conv: nn.Conv2d, shape: tuple[int, ...] | torch.Size, *, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> str:
    """Which of :data:`STRATEGIES` ``conv`` runs for an input of ``shape`` (the fixed rule table).

    Rules (CPU, float32/64, zero padding, no dilation): 1x1 stride-1 convs -> ``pointwise`` (1.7-4.4x at
    Blox-mini shapes, 0.9-3.1x at CIFAR-size ones); depthwise convs on maps up to 8x8 -> ``unrolled_depthwise``
    (3.1-5x); other convs whose dense matrix has at most :data:`MAX_UNROLLED` entries -> ``unrolled`` (1-2.2x;
    the limit is where it stops winning: 4->8 channels 3x3 on 8x8 is 2x over it and oneDNN is faster there);
    everything else -> ``native``.
    """
    if not _state["enabled"] or len(shape) != 4 or (device is not None and device.type != "cpu") \
            or dtype not in (torch.float32, torch.float64) or isinstance(conv.padding, str) \
            or conv.padding_mode != "zeros" or conv.dilation != (1, 1):
        return "native"
    _, c, h, w = shape
    o, (kh, kw), (sh, sw), (ph, pw) = conv.out_channels, conv.kernel_size, conv.stride, conv.padding
    ho, wo = _out_size(h, kh, sh, ph), _out_size(w, kw, sw, pw)
    if ho < 1 or wo < 1 or c != conv.in_channels:  # the plain conv raises the shape errors
        return "native"
    g = conv.groups
    if g == c == o and g > 1:
        return "unrolled_depthwise" if h * w <= MAX_DEPTHWISE_MAP and ho * wo <= MAX_DEPTHWISE_MAP else "native"
    # dense or grouped (stacked models): the same rules per group; groups > 1 run as batched products
    if (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0):
        return "pointwise"
    return "unrolled" if (c // g) * h * w * (o // g) * ho * wo <= MAX_UNROLLED else "native"


class _Plan(NamedTuple):
    """How one call runs: the conv's kernel and geometry."""

    kind: str
    conv: nn.Conv2d
    taps: torch.Tensor | None
    out_hw: tuple[int, int]


def _plan(conv: nn.Conv2d, x: torch.Tensor, kind: str) -> _Plan:
    key = (x.shape[2], x.shape[3], *conv.kernel_size, *conv.stride, *conv.padding)
    taps = _taps_as(key, x.dtype, x.device) if kind in ("unrolled", "unrolled_depthwise") else None
    ho, wo = _out_size(key[0], key[2], key[4], key[6]), _out_size(key[1], key[3], key[5], key[7])
    return _Plan(kind, conv, taps, (ho, wo))


def _conv_forward(plan: _Plan, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The conv's output, composed of differentiable torch ops (autograd derives the exact gradients)."""
    if plan.conv.groups > 1 and plan.kind != "unrolled_depthwise":
        return _grouped_forward(plan, x, weight, bias)
    b, c, h, w = x.shape
    o, (ho, wo), p = weight.shape[0], plan.out_hw, h * w
    q = ho * wo
    if plan.kind == "unrolled":  # T[c, p, o, q] = weight[o, c, tap(p -> q)], exact copies of the weights
        t = (weight.reshape(o * c, -1) @ plan.taps).view(o, c, p, q).permute(1, 2, 0, 3).reshape(c * p, o * q)
        flat = x.reshape(b, c * p)
        y = flat @ t if bias is None else torch.addmm(bias.repeat_interleave(q), flat, t)
        return y.view(b, o, ho, wo)
    if plan.kind == "unrolled_depthwise":  # per channel: T_c[p, q] = weight[c, 0, tap(p -> q)]
        t = (weight.reshape(c, -1) @ plan.taps).view(c, p, q)
        xc = x.reshape(b, c, p).transpose(0, 1)
        y = torch.bmm(xc, t) if bias is None else torch.baddbmm(bias.view(c, 1, 1), xc, t)
        return y.transpose(0, 1).reshape(b, c, ho, wo)
    if plan.kind == "pointwise":
        w2 = weight.reshape(o, c)
        if p <= MAX_LINEAR_MAP:  # positions as rows: one [B*P, C] x [C, O] product
            xt = x.reshape(b, c, p).transpose(1, 2).reshape(b * p, c)
            y = xt @ w2.t() if bias is None else torch.addmm(bias, xt, w2.t())
            return y.view(b, p, o).transpose(1, 2).reshape(b, o, h, w)
        x3 = x.reshape(b, c, p)
        y = torch.matmul(w2, x3) if bias is None else torch.baddbmm(bias.view(1, o, 1).expand(b, o, 1),
                                                                     w2.expand(b, o, c), x3)
        return y.view(b, o, h, w)
    conv = plan.conv
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def _grouped_forward(plan: _Plan, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A grouped (not depthwise) conv as one batched product over groups: each group's dense conv, unrolled."""
    b, c, h, w = x.shape
    g, o, (ho, wo), p = plan.conv.groups, weight.shape[0], plan.out_hw, h * w
    cg, og, q = c // g, o // g, ho * wo
    if plan.kind == "unrolled":  # T_g[c, p, o, q] = weight[g, o, c, tap(p -> q)]
        t = (weight.reshape(o * cg, -1) @ plan.taps).view(g, og, cg, p, q).permute(0, 2, 3, 1, 4)
        t = t.reshape(g, cg * p, og * q)
        xg = x.reshape(b, g, cg * p).transpose(0, 1)
        y = torch.bmm(xg, t) if bias is None else torch.baddbmm(bias.view(g, 1, og).repeat_interleave(q, dim=2), xg, t)
        return y.transpose(0, 1).reshape(b, o, ho, wo)
    # pointwise: y[b, g] = W_g @ x[b, g] ([O_g, C_g] x [C_g, P]), the weight broadcast over the batch
    w4 = weight.reshape(1, g, og, cg)
    x4 = x.reshape(b, g, cg, p)
    y = torch.matmul(w4, x4) if bias is None else torch.matmul(w4, x4) + bias.view(1, g, og, 1)
    return y.view(b, o, h, w)


class FastConv2d(nn.Conv2d):
    """``nn.Conv2d`` with exact faster CPU paths for small maps (same parameters and ``state_dict``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kind = conv_strategy(self, x.shape, device=x.device, dtype=x.dtype) if _state["enabled"] else "native"
        if kind == "native" or x.dtype != self.weight.dtype:
            return super().forward(x)
        return _conv_forward(_plan(self, x, kind), x, self.weight, self.bias)
