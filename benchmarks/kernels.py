"""Per-shape timing of the conv kernels behind ``blox_env.kernels``' rule table (Blox-mini shapes, one thread).

Run: ``python benchmarks/kernels.py [--batch 128]``. Collects every conv shape of Blox-mini's models
(stem 4 on 8x8 digits) and times forward + backward at the training batch for: oneDNN (``F.conv2d``,
the plain engine), the path ``conv_strategy`` picks, and for depthwise convs also a dense conv with a
masked (diagonal) weight. Prints a Markdown table: the fixed rules in ``blox_env/kernels.py`` are read
off it (unrolled where it wins or ties, native where it loses).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import machine
from torch import nn

from blox_env.build.mini import MINI_BLOCKS
from blox_env.kernels import FastConv2d, conv_strategy, fast_kernels
from blox_env.model import build_model
from blox_env.shapes import ModelConfig
from blox_env.space import Arch

Shape = tuple[int, int, int, int, int, int, int]  # cin, cout, kernel, stride, padding, groups, map size


def mini_shapes() -> dict[Shape, int]:
    """Every conv shape of the Blox-mini models (each op at every stage), with how many layers have it."""
    cfg = ModelConfig(stem_channels=4, in_channels=1, image_size=8, num_classes=10)
    seen: dict[Shape, int] = {}
    for b in MINI_BLOCKS:
        model = build_model(Arch.from_blocks(b, b, b), cfg)

        def hook(mod: nn.Conv2d, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            key = (mod.in_channels, mod.out_channels, mod.kernel_size[0], mod.stride[0], mod.padding[0],
                   mod.groups, args[0].shape[-1])
            seen[key] = seen.get(key, 0) + 1

        for mod in model.modules():
            if isinstance(mod, nn.Conv2d):
                mod.register_forward_hook(hook)
        model(torch.randn(2, 1, 8, 8))
    return dict(sorted(seen.items()))


def ms(fn: Callable[[], None], *, reps: int = 20, blocks: int = 5) -> float:
    """Median milliseconds per call over ``blocks`` blocks of ``reps`` calls."""
    fn()
    times = []
    for _ in range(blocks):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - t) / reps)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{time.strftime('%Y-%m-%d')}, {machine()}, torch {torch.__version__}, 1 thread; forward + backward at "
          f"batch {args.batch}, ms (median)\n")
    print("| conv (cin->cout, kxk/stride, groups, map) | layers in the 6 models | oneDNN | fast path | picked | "
          "speed-up | masked dense |\n| --- | --- | --- | --- | --- | --- | --- |")
    for shape, n in mini_shapes().items():
        print(row(shape, n, batch=args.batch))


def row(shape: Shape, layers: int, *, batch: int) -> str:
    """One table row: oneDNN, the picked fast path and (depthwise) masked dense, fwd + bwd ms."""
    cin, cout, k, s, p, g, size = shape
    torch.manual_seed(0)
    conv = FastConv2d(cin, cout, k, stride=s, padding=p, groups=g)
    x = torch.randn(batch, cin, size, size, requires_grad=True)
    grad = torch.randn_like(conv(x))  # a dense gradient, as BatchNorm's backward hands the conv in training

    def step() -> None:
        conv(x).backward(grad)

    with fast_kernels(False):
        plain = ms(step)
    fast = ms(step)
    kind = conv_strategy(conv, x.shape)
    masked = "-"
    if g > 1:
        mask = torch.eye(cin).view(cin, cin, 1, 1)

        def dense() -> None:
            w = conv.weight.expand(cin, cin, k, k) * mask  # weight[o, 0] on the diagonal, zeros elsewhere
            F.conv2d(x, w, conv.bias, s, p).backward(grad)

        masked = f"{ms(dense):.3f}"
    return (f"| {cin}->{cout}, {k}x{k}/{s}, g{g}, {size}x{size} | {layers} | {plain:.3f} | {fast:.3f} | {kind} | "
            f"{plain / fast:.2f}x | {masked} |")


if __name__ == "__main__":
    main()
