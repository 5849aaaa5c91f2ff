"""CPU inference latency: a per-component lookup table and its sum for every model.

Latency is measured at batch 1 with one torch thread, after warm-up, as the
median of repeats, for each component of the model (stem, each of the 45
blocks at each stage, the three reductions, pooling + classifier). Like params
and MACs, a model's latency is taken as the sum of its components (the table
for all 91,125 models is one broadcast sum); :func:`validate_table` measures
whole models end to end to report how good that approximation is. Kept apart
from :mod:`blox_env.costs` because it needs torch. Latency is the model's as PyTorch runs it for a user
(plain ``nn.Conv2d`` kernels): the training engine's fast paths (:mod:`blox_env.kernels`) are turned off
while measuring, so tables stay comparable across engine versions.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from blox_env.costs import additive_table
from blox_env.errors import InvalidArgumentError
from blox_env.kernels import fast_kernels
from blox_env.model import BloxBlock, ConvBNReLU, Reduction, build_model
from blox_env.progress import track
from blox_env.shapes import ModelConfig
from blox_env.space import N_BLOCKS, N_STAGES, Arch

__all__ = ["ComponentLatency", "LatencyConfig", "component_latencies", "device_name", "latency_table",
           "measure_model", "validate_table"]


@dataclass(frozen=True)
class LatencyConfig:
    """How latency is measured."""

    warmup: int = 10
    repeats: int = 30
    threads: int = 1
    model: ModelConfig = ModelConfig()

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.repeats < 1 or self.threads < 1:
            raise InvalidArgumentError(f"warmup >= 0, repeats >= 1 and threads >= 1 required, got {self}")


class ComponentLatency(NamedTuple):
    """Median seconds per component: ``blocks[s][b]`` for block ``b`` at stage ``s``."""

    stem: float
    blocks: tuple[tuple[float, ...], ...]
    reductions: tuple[float, ...]
    head: float


def device_name() -> str:
    """A short name of this CPU for ``latency/<device>``, e.g. ``cpu-amd-epyc``."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1]
                    break
    except OSError:
        pass
    words = [w for w in name.lower().replace("(r)", "").replace("(tm)", "").split() if w.isalnum()][:3]
    return "cpu-" + "-".join(words or ["unknown"])


@torch.no_grad()
def _median_seconds(module: nn.Module, x: torch.Tensor, cfg: LatencyConfig) -> float:
    module.eval()
    for _ in range(cfg.warmup):
        module(x)
    times = []
    for _ in range(cfg.repeats):
        t = time.perf_counter()
        module(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class _Head(nn.Module):
    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


def component_latencies(config: LatencyConfig = LatencyConfig(), *, progress: bool = False,
                        seed: int = 0) -> ComponentLatency:
    """Measure every component once (135 blocks, stem, reductions, head), with plain kernels."""
    with fast_kernels(False):
        return _component_latencies(config, progress=progress, seed=seed)


def _component_latencies(config: LatencyConfig, *, progress: bool, seed: int) -> ComponentLatency:
    old = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        m = config.model
        gen = torch.Generator().manual_seed(seed)

        def inp(channels: int, size: int) -> torch.Tensor:
            return torch.randn(1, channels, size, size, generator=gen)

        stem = _median_seconds(ConvBNReLU(m.in_channels, m.stem_channels, 3), inp(m.in_channels, m.image_size), config)
        items = [(s, b) for s in range(N_STAGES) for b in range(N_BLOCKS)]
        table = np.zeros((N_STAGES, N_BLOCKS))
        for s, b in track(items, description=f"latency of {len(items)} blocks", enabled=progress):
            table[s, b] = _median_seconds(BloxBlock(b, m.channels(s)), inp(m.channels(s), m.resolution(s)), config)
        reductions = tuple(_median_seconds(Reduction(m.channels(s)), inp(m.channels(s), m.resolution(s)), config)
                           for s in range(N_STAGES))
        head = _median_seconds(_Head(m.channels(N_STAGES), m.num_classes),
                               inp(m.channels(N_STAGES), m.resolution(N_STAGES)), config)
    finally:
        torch.set_num_threads(old)
    return ComponentLatency(stem, tuple(tuple(row) for row in table.tolist()), reductions, head)


def latency_table(components: ComponentLatency) -> np.ndarray:
    """Predicted latency (seconds) of all 91,125 models in index order."""
    return additive_table(components.blocks, components.stem + components.head + sum(components.reductions))


def measure_model(arch: Arch, config: LatencyConfig = LatencyConfig()) -> float:
    """End-to-end median latency of one whole model (seconds), with plain kernels."""
    old = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        model = build_model(arch, config.model)
        x = torch.randn(1, config.model.in_channels, config.model.image_size, config.model.image_size)
        with fast_kernels(False):
            return _median_seconds(model, x, config)
    finally:
        torch.set_num_threads(old)


def validate_table(components: ComponentLatency, archs: Sequence[Arch],
                   config: LatencyConfig = LatencyConfig()) -> dict[str, Any]:
    """Compare the additive table with end-to-end measurements: Spearman, MAPE, per-model values."""
    from scipy.stats import spearmanr

    predicted = latency_table(components)[[a.index for a in archs]]
    measured = np.array([measure_model(a, config) for a in archs])
    return {
        "n": len(archs),
        "spearman": float(spearmanr(predicted, measured).statistic),
        "mape": float(np.mean(np.abs(predicted - measured) / measured)),
        "mean_measured_s": float(measured.mean()),
        "mean_predicted_s": float(predicted.mean()),
        "predicted": predicted.tolist(),
        "measured": measured.tolist(),
    }
