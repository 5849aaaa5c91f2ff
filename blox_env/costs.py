"""Static costs: exact parameter counts and MACs for every model, from per-component tables.

Costs are additive over stem, the three blocks, the three reductions and the
head, so each component is counted once analytically (mirroring
:mod:`blox_env.model` layer by layer) and the 91,125 totals are one broadcast sum.
MACs count the multiply-accumulates of convolutions (including squeeze-excite's
1x1 convs on the pooled map) and of the linear layer; BN, ReLU, adds and pooling
are not counted.

This is *not* what the official release's ``flops`` field holds: the original
counted with ptflops, which also counts BN, activations, pooling and the like,
so its values run 110M..307M where ours run 103.7M..302.0M for the same models.
Stores imported from the release keep the official field in ``static/flops``;
stores this project builds (Blox-mini, the builder) put these MACs there
(the array's ``counting`` attribute says which), so compare FLOPs only within
one store.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from blox_env.shapes import ModelConfig
from blox_env.space import BLOCK_GRAPHS, N_BLOCKS, N_STAGES, Arch

__all__ = ["ComponentCosts", "Cost", "additive_table", "clear_cache", "component_costs", "macs_table", "params_table",
           "static_costs"]


class Cost(NamedTuple):
    """Parameters and MACs of one component."""

    params: int
    macs: int

    def __add__(self, other: object) -> Cost:  # type: ignore[override]
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(self.params + other.params, self.macs + other.macs)


_ZERO = Cost(0, 0)


def _conv(cin: int, cout: int, kernel: int, out_hw: int, groups: int = 1, bn: bool = True) -> Cost:
    weights = kernel * kernel * (cin // groups) * cout
    return Cost(weights + cout + (2 * cout if bn else 0), weights * out_hw * out_hw)


def _op_cost(op: int, c: int, hw: int) -> Cost:
    if op == 0:  # conv: 4 x 3x3
        return sum((_conv(c, c, 3, hw) for _ in range(4)), _ZERO)
    if op == 1:  # mbconv: 2 x [3x3 C->2C, SE(2C), 1x1 2C->C]
        se = Cost(2 * (4 * c * c + 2 * c), 2 * 4 * c * c)
        sub = _conv(c, 2 * c, 3, hw) + se + _conv(2 * c, c, 1, hw)
        return sub + sub
    total = _ZERO  # bconv: 6 x [1x1 C->w, 5x5 dw, 1x1 w->C]
    for w in [c // 2, c, 2 * c] * 2:
        total = total + _conv(c, w, 1, hw) + _conv(w, w, 5, hw, groups=w) + _conv(w, c, 1, hw)
    return total


class ComponentCosts(NamedTuple):
    """Per-component costs: ``blocks[s][b]`` for block ``b`` at stage ``s``."""

    stem: Cost
    blocks: tuple[tuple[Cost, ...], ...]
    reductions: tuple[Cost, ...]
    head: Cost


def component_costs(config: ModelConfig | None = None) -> ComponentCosts:
    """Cost of each component at a :class:`ModelConfig` (default: the original benchmark)."""
    return _component_costs(config or ModelConfig())


def clear_cache() -> None:
    """Forget the cached component costs, so the next table is computed cold (the space benchmark times that)."""
    _component_costs.cache_clear()


@lru_cache(maxsize=16)
def _component_costs(shape: ModelConfig) -> ComponentCosts:
    c0, hw = shape.stem_channels, shape.image_size
    stem = _conv(shape.in_channels, c0, 3, hw)
    blocks, reductions = [], []
    for s in range(N_STAGES):
        c = c0 * 2**s
        per_block = []
        for b in range(N_BLOCKS):
            per_block.append(sum((_op_cost(op, c, hw) for op in BLOCK_GRAPHS[b].ops), _ZERO))
        blocks.append(tuple(per_block))
        out_hw = (hw + 1) // 2
        reductions.append(_conv(c, 2 * c, 3, out_hw) + _conv(2 * c, 2 * c, 3, out_hw) + _conv(c, 2 * c, 2, out_hw))
        hw = out_hw
    c_last = c0 * 2**N_STAGES
    head = Cost(c_last * shape.num_classes + shape.num_classes, c_last * shape.num_classes)
    return ComponentCosts(stem, tuple(blocks), tuple(reductions), head)


def additive_table(per_stage: Sequence[Sequence[float]], fixed: float) -> np.ndarray:
    """Sum of per-stage block costs plus a fixed part, for all 91,125 models in index order.

    ``per_stage[s][b]`` is block ``b``'s cost at stage ``s``; index = b0 + 45*b1 + 2025*b2, which is
    the C-order ravel of a (b2, b1, b0) grid, so the whole table is one broadcast sum.
    """
    p0, p1, p2 = (np.asarray(per_stage[s]) for s in range(N_STAGES))
    return (p2[:, None, None] + p1[None, :, None] + p0[None, None, :] + fixed).ravel()


def _table(costs: ComponentCosts, field: int) -> np.ndarray:
    fixed = costs.stem[field] + costs.head[field] + sum(r[field] for r in costs.reductions)
    per = [np.array([c[field] for c in costs.blocks[s]], dtype=np.int64) for s in range(N_STAGES)]
    return additive_table(per, fixed)


def params_table(config: ModelConfig | None = None) -> np.ndarray:
    """Parameter count of all 91,125 models in index order (int64)."""
    return _table(component_costs(config), 0)


def macs_table(config: ModelConfig | None = None) -> np.ndarray:
    """Multiply-accumulates of all 91,125 models in index order (int64)."""
    return _table(component_costs(config), 1)


def static_costs(arch: Arch, config: ModelConfig | None = None) -> Cost:
    """Params and MACs of one :class:`~blox_env.space.Arch`."""
    costs = component_costs(config)
    total = costs.stem + costs.head
    for s, b in enumerate(arch.blocks):
        total = total + costs.blocks[s][b] + costs.reductions[s]
    return total
