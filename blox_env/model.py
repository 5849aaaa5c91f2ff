"""PyTorch models of the BLOX space, faithful to the original at the default config.

Every conv is conv(bias) -> BN -> ReLU. A model is
``stem -> [block_s -> reduction_s] x 3 -> global pool -> linear``; each stage's
block is a swappable module (blockwise distillation replaces them one by one),
and ``forward(x, return_features=True)`` returns every stage's input and output.
Convolutions are :class:`~blox_env.kernels.FastConv2d` (exact faster CPU paths at small maps, same parameters;
``BLOX_FAST_KERNELS=0`` runs the plain kernels). torch is imported here only, so ``import blox_env`` stays light.
The op modules take ``stack=S``: S copies side by side in the channels (conv groups times S, BatchNorm per
copy), which ``benchmarks/stacked_seeds.py`` uses to time several seeds as one set of ops.
"""

from __future__ import annotations

import torch
from torch import nn

from blox_env.errors import InvalidArgumentError
from blox_env.kernels import FastConv2d
from blox_env.shapes import ModelConfig
from blox_env.space import BLOCK_GRAPHS, BLOCKS, N_STAGES, Arch

__all__ = [
    "BloxBlock",
    "BloxModel",
    "BottleneckBlock",
    "ConvBNReLU",
    "ConvBlock",
    "MBConvBlock",
    "Reduction",
    "Stage",
    "build_model",
    "make_op",
]


class ConvBNReLU(nn.Sequential):
    """conv (with bias) -> BatchNorm -> ReLU (``stack`` copies side by side: channels and groups times ``stack``)."""

    def __init__(self, cin: int, cout: int, kernel: int, *, stride: int = 1, groups: int = 1,
                 padding: int | None = None, stack: int = 1) -> None:
        pad = kernel // 2 if padding is None else padding
        super().__init__(
            FastConv2d(stack * cin, stack * cout, kernel, stride=stride, padding=pad, groups=stack * groups,
                       bias=True),
            nn.BatchNorm2d(stack * cout),
            nn.ReLU(inplace=True),
        )


class ConvBlock(nn.Sequential):
    """Four 3x3 convs at constant width."""

    def __init__(self, channels: int, *, stack: int = 1) -> None:
        super().__init__(*(ConvBNReLU(channels, channels, 3, stack=stack) for _ in range(4)))


class SqueezeExcite(nn.Module):
    """Global pool, 1x1 conv, ReLU, 1x1 conv, sigmoid gate (hidden width = input width)."""

    def __init__(self, channels: int, *, stack: int = 1) -> None:
        super().__init__()
        self.reduce = FastConv2d(stack * channels, stack * channels, 1, groups=stack)
        self.expand = FastConv2d(stack * channels, stack * channels, 1, groups=stack)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        s = torch.sigmoid(self.expand(torch.relu(self.reduce(s))))
        return x * s


class _Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MBConvBlock(nn.Sequential):
    """Two residual sub-blocks of [3x3 conv C->2C, squeeze-excite, 1x1 conv 2C->C]."""

    def __init__(self, channels: int, *, stack: int = 1) -> None:
        c2 = 2 * channels
        super().__init__(*(
            _Residual(nn.Sequential(ConvBNReLU(channels, c2, 3, stack=stack), SqueezeExcite(c2, stack=stack),
                                    ConvBNReLU(c2, channels, 1, stack=stack)))
            for _ in range(2)
        ))


class BottleneckBlock(nn.Sequential):
    """Six residual sub-blocks [1x1 C->w, 5x5 depthwise, 1x1 w->C], w cycling C/2, C, 2C."""

    def __init__(self, channels: int, *, stack: int = 1) -> None:
        widths = [channels // 2, channels, 2 * channels] * 2
        super().__init__(*(
            _Residual(nn.Sequential(
                ConvBNReLU(channels, w, 1, stack=stack), ConvBNReLU(w, w, 5, groups=w, stack=stack),
                ConvBNReLU(w, channels, 1, stack=stack)
            ))
            for w in widths
        ))


_OP_CLASSES: tuple[type[nn.Module], ...] = (ConvBlock, MBConvBlock, BottleneckBlock)


def make_op(op: int, channels: int, *, stack: int = 1) -> nn.Module:
    """The module of op ``op`` (0 conv, 1 mbconv, 2 bconv) at ``channels`` width (``stack`` copies side by side)."""
    if op not in range(len(_OP_CLASSES)):
        raise InvalidArgumentError(f"op must be 0 (conv), 1 (mbconv) or 2 (bconv), got {op!r}")
    if isinstance(stack, bool) or not isinstance(stack, int) or stack < 1:
        raise InvalidArgumentError(f"stack must be a positive integer (copies side by side), got {stack!r}")
    return _OP_CLASSES[op](channels, stack=stack)


class BloxBlock(nn.Module):
    """One searchable block: ops A and/or B wired by the canonical block's connections.

    A takes the stage input; B takes A (if prev) plus the input (if inp); the
    output is B, plus A if sc. Ops dropped by minimisation have no module.
    """

    def __init__(self, block: int, channels: int, *, stack: int = 1) -> None:
        super().__init__()
        if block not in range(len(BLOCKS)):
            raise InvalidArgumentError(f"block must be in 0..{len(BLOCKS) - 1}, got {block!r}")
        self.block = block
        op_a, op_b, prev, inp, sc = BLOCKS[block]
        # Minimised form: for single-op blocks the surviving op is kept as "b" (fed by the input).
        n_ops = len(BLOCK_GRAPHS[block].ops)
        self.has_a = n_ops == 2
        self.prev, self.inp, self.sc = bool(prev), bool(inp), bool(sc)
        if n_ops == 1:
            self.prev, self.inp, self.sc = False, True, False
            op_b = BLOCK_GRAPHS[block].ops[0]
        self.op_a = make_op(op_a, channels, stack=stack) if self.has_a else None
        self.op_b = make_op(op_b, channels, stack=stack)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.op_a(x) if self.op_a is not None else None
        if a is not None and self.prev and self.inp:
            b_in = a + x
        elif a is not None and self.prev:
            b_in = a
        else:
            b_in = x
        out = self.op_b(b_in)
        if a is not None and self.sc:
            out = out + a
        return out


class Reduction(nn.Module):
    """Stride-2 downsampling C->2C: [3x3/2 conv, 3x3 conv] plus a 2x2/2 conv projection."""

    def __init__(self, channels: int, *, stack: int = 1) -> None:
        super().__init__()
        c2 = 2 * channels
        self.main = nn.Sequential(ConvBNReLU(channels, c2, 3, stride=2, stack=stack),
                                  ConvBNReLU(c2, c2, 3, stack=stack))
        self.proj = ConvBNReLU(channels, c2, 2, stride=2, padding=0, stack=stack)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 or x.shape[-2] % 2:  # odd sizes: pad so both paths agree
            x = nn.functional.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return self.main(x) + self.proj(x)


class Stage(nn.Module):
    """A searchable block followed by its fixed reduction."""

    def __init__(self, block: int, channels: int, *, stack: int = 1) -> None:
        super().__init__()
        self.block = BloxBlock(block, channels, stack=stack)
        self.reduction = Reduction(channels, stack=stack)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.block(x))


class BloxModel(nn.Module):
    """A whole model of the space: stem, three stages, global pool, linear classifier."""

    def __init__(self, arch: Arch, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        if not isinstance(arch, Arch):
            raise InvalidArgumentError(f"arch must be an Arch, got {type(arch).__name__}")
        self.arch = arch
        self.config = config
        self.stem = ConvBNReLU(config.in_channels, config.stem_channels, 3)
        self.stages = nn.ModuleList(Stage(b, config.channels(s)) for s, b in enumerate(arch.blocks))
        self.classifier = nn.Linear(config.channels(N_STAGES), config.num_classes)

    def forward(self, x: torch.Tensor, return_features: bool = False):  # noqa: ANN201 (tuple or tensor)
        """Logits; with ``return_features=True`` also ``[(stage_in, stage_out)] * 3``."""
        h = self.stem(x)
        features = []
        for stage in self.stages:
            out = stage(h)
            features.append((h, out))
            h = out
        logits = self.classifier(h.mean(dim=(2, 3)))
        return (logits, features) if return_features else logits


def build_model(arch: Arch, config: ModelConfig = ModelConfig()) -> BloxModel:
    """Build the torch model of ``arch``."""
    return BloxModel(arch, config)
