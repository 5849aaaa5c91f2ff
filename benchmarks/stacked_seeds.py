"""Several seeds of one architecture as one set of ops: training-step time against separate models.

Run: ``python benchmarks/stacked_seeds.py [--archs 12] [--stack 3] [--rounds 5] [--seed 0]``.
The lever "Why it stops there" (BENCHMARKS.md) names: about half of a Blox-mini step is fixed per-op cost,
so ``S`` seeds of one architecture run as one module share it. The stacked module puts copy ``s`` in
channels ``s*C .. (s+1)*C - 1`` of every map (``blox_env.model``'s ``stack=`` argument: channels and conv
groups times ``S``; BatchNorm normalises each copy's channels on their own; a grouped conv runs as one
batched product per group, ``blox_env.kernels``), so the copies never mix. Per model of the Blox-mini
sample (seeded): one SGD step (forward, backward, ``FlatSGD``) at batch 128 on 8x8 inputs, ``S`` separate
models against the stacked one, interleaved, median of ``--rounds`` x 5 steps; also the largest gradient
difference (relative) between the two, a check that the stacked copies compute the same model.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import machine
from engine import BCONV_BLOCKS, sample
from torch import nn

from blox_env.model import ConvBNReLU, Stage, build_model
from blox_env.shapes import ModelConfig
from blox_env.space import N_STAGES, Arch
from blox_env.training.flat_sgd import FlatSGD

CONFIG = ModelConfig(stem_channels=4, in_channels=1, image_size=8, num_classes=10)  # Blox-mini's shape


class StackedLinear(nn.Module):
    """``S`` linear layers side by side: weight ``[S*out, in]``; ``[B, S*in]`` -> ``[B, S, out]``."""

    def __init__(self, in_features: int, out_features: int, *, stack: int) -> None:
        super().__init__()
        self.stack, self.out_features = stack, out_features
        self.weight = nn.Parameter(torch.zeros(stack * out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(stack * out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stack
        xs = x.reshape(x.shape[0], s, -1).transpose(0, 1)
        w = self.weight.view(s, self.out_features, -1).transpose(1, 2)
        return torch.baddbmm(self.bias.view(s, 1, self.out_features), xs, w).transpose(0, 1)


class StackedBloxModel(nn.Module):
    """``stack`` copies of the BloxModel of ``arch`` (the same ``state_dict`` keys, tensors concatenated)."""

    def __init__(self, arch: Arch, config: ModelConfig, *, stack: int) -> None:
        super().__init__()
        self.stem = ConvBNReLU(config.in_channels, config.stem_channels, 3, stack=stack)
        self.stages = nn.ModuleList(Stage(b, config.channels(s), stack=stack) for s, b in enumerate(arch.blocks))
        self.classifier = StackedLinear(config.channels(N_STAGES), config.num_classes, stack=stack)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        return self.classifier(h.mean(dim=(2, 3)))


def stacked_copy(models: list[nn.Module], arch: Arch) -> StackedBloxModel:
    """The stacked module holding exactly these models' weights and BatchNorm statistics."""
    stacked = StackedBloxModel(arch, CONFIG, stack=len(models))
    states = [m.state_dict() for m in models]
    stacked.load_state_dict({k: v if k.endswith("num_batches_tracked") else torch.cat([st[k] for st in states])
                             for k, v in states[0].items()})
    return stacked


def compare(arch: Arch, *, stack: int, rounds: int, seed: int) -> tuple[float, float, float]:
    """Median ms of one step of ``stack`` separate models and of the stacked one, and the gradient difference."""
    torch.manual_seed(seed)
    models = [build_model(arch, CONFIG) for _ in range(stack)]
    stacked = stacked_copy(models, arch)
    x, y = torch.randn(stack, 128, 1, 8, 8), torch.randint(0, 10, (stack, 128))
    xs, ys = x.permute(1, 0, 2, 3, 4).reshape(128, stack, 8, 8), y.t()
    opts = [FlatSGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4) for m in models]
    opt_s = FlatSGD(stacked.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

    def separate() -> None:
        for i, (m, opt) in enumerate(zip(models, opts)):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(m(x[i]), y[i]).backward()
            opt.step()

    def together() -> None:
        opt_s.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(stacked(xs).permute(0, 2, 1), ys, reduction="none").mean(0).sum().backward()
        opt_s.step()

    separate()
    together()
    g_sep = torch.stack([torch.cat([p.grad.reshape(-1) for p in m.parameters()]) for m in models])
    g_stk = torch.cat([p.grad.reshape(stack, -1) for p in stacked.parameters()], dim=1)
    diff = float((g_sep - g_stk).abs().max() / g_sep.abs().max())
    times: dict[str, list[float]] = {"separate": [], "stacked": []}
    for r in range(rounds):
        order = (("separate", separate), ("stacked", together))
        for name, fn in order if r % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            for _ in range(5):
                fn()
            times[name].append((time.perf_counter() - t) / 5 * 1e3)
    return statistics.median(times["separate"]), statistics.median(times["stacked"]), diff


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archs", type=int, default=12, help="models sampled from the Blox-mini space")
    parser.add_argument("--stack", type=int, default=3, help="seeds stacked into one module")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# stacked seeds, {machine()}, stack {args.stack}")
    print("| model | bottleneck | separate ms/step | stacked ms/step | speed-up | max grad diff (rel) |")
    print("| --- | --- | --- | --- | --- | --- |")
    tot_sep = tot_stk = 0.0
    for arch in sample(args.archs, args.seed):
        sep, stk, diff = compare(arch, stack=args.stack, rounds=args.rounds, seed=args.seed)
        tot_sep, tot_stk = tot_sep + sep, tot_stk + stk
        bconv = "yes" if BCONV_BLOCKS & set(arch.blocks) else "no"
        print(f"| {arch.blocks} | {bconv} | {sep:.1f} | {stk:.1f} | {sep / stk:.2f}x | {diff:.1e} |", flush=True)
    print(f"| **all** | | {tot_sep:.1f} | {tot_stk:.1f} | **{tot_sep / tot_stk:.2f}x** | |")


if __name__ == "__main__":
    main()
