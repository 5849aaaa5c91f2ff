"""Static cost tables equal counts on the built torch modules."""

from __future__ import annotations

import numpy as np
import torch

from blox_env.costs import component_costs, macs_table, params_table, static_costs
from blox_env.model import BloxBlock, build_model
from blox_env.shapes import ModelConfig
from blox_env.space import N_BLOCKS, N_MODELS, Arch


def count_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    total = 0

    def hook(mod: torch.nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            total += out[0].numel() * (mod.in_channels // mod.groups) * k
        elif isinstance(mod, torch.nn.Linear):
            total += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return total


def test_tables_cover_the_space() -> None:
    p, m = params_table(), macs_table()
    assert p.shape == m.shape == (N_MODELS,)
    assert p.min() == 1_717_636 and p.max() == 3_784_036
    assert 1.0e8 <= m.min() < 1.1e8 and 3.0e8 <= m.max() <= 3.1e8


def test_every_block_component_matches_torch() -> None:
    costs = component_costs()
    for s in range(3):
        for b in range(N_BLOCKS):
            assert costs.blocks[s][b].params == sum(p.numel() for p in BloxBlock(b, 32 * 2**s).parameters())


def test_tables_match_built_models_on_a_sample() -> None:
    p, m = params_table(), macs_table()
    rng = np.random.default_rng(0)
    for i in rng.choice(N_MODELS, 6, replace=False).tolist():
        arch = Arch.from_index(i)
        model = build_model(arch)
        assert p[i] == sum(x.numel() for x in model.parameters())
        assert m[i] == count_macs(model, torch.randn(1, 3, 32, 32))
        assert static_costs(arch) == (p[i], m[i])


def test_narrow_config_costs_match() -> None:
    cfg = ModelConfig(stem_channels=8, in_channels=1, image_size=8, num_classes=10)
    p, m = params_table(cfg), macs_table(cfg)
    for i in (0, 777, 91124):
        model = build_model(Arch.from_index(i), cfg)
        assert p[i] == sum(x.numel() for x in model.parameters())
        assert m[i] == count_macs(model, torch.randn(1, 1, 8, 8))
