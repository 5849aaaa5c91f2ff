"""Torch models: reference parameter counts, component sizes, features, swappable blocks."""

from __future__ import annotations

import pytest
import torch

from blox_env.errors import InvalidArgumentError
from blox_env.model import BloxBlock, Reduction, build_model, make_op
from blox_env.shapes import ModelConfig
from blox_env.space import Arch


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("vec", "params"),
    [
        ([[[0], [2, 0, 1, 0]]] * 3, 1_717_636),
        ([[[1], [1, 0, 1, 1]]] * 3, 3_784_036),
        ([[[0], [1, 1, 1, 1]], [[1], [1, 1, 0, 0]], [[0], [0, 1, 1, 0]]], 3_104_164),
    ],
)
def test_reference_param_counts(vec: list, params: int) -> None:
    assert n_params(build_model(Arch.from_vec(vec))) == params


def test_component_param_counts() -> None:
    model = build_model(Arch.from_index(0))
    assert n_params(model.stem) == 960
    assert n_params(model.classifier) == 25_700
    expected = {0: (37_248, 148_224, 591_360), 1: (58_176, 231_040, 920_832), 2: (21_856, 72_384, 259_456)}
    for op, per_stage in expected.items():
        for s, count in enumerate(per_stage):
            assert n_params(make_op(op, 32 * 2**s)) == count
    for s, count in enumerate((64_064, 255_104, 1_018_112)):
        assert n_params(Reduction(32 * 2**s)) == count


def test_forward_shapes_and_features() -> None:
    model = build_model(Arch.from_index(50000)).eval()
    x = torch.randn(2, 3, 32, 32)
    logits, feats = model(x, return_features=True)
    assert logits.shape == (2, 100)
    shapes = [(tuple(i.shape), tuple(o.shape)) for i, o in feats]
    assert shapes == [
        ((2, 32, 32, 32), (2, 64, 16, 16)),
        ((2, 64, 16, 16), (2, 128, 8, 8)),
        ((2, 128, 8, 8), (2, 256, 4, 4)),
    ]
    # features chain: stage s output is stage s+1 input, and the plain forward agrees
    assert torch.equal(feats[0][1], feats[1][0])
    assert torch.allclose(model(x), logits)


def test_block_wiring_follows_the_connections() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 16, 8, 8)
    # block 21: A -> B plus shortcut: out = B(A(x)) + A(x)
    blk = BloxBlock(21, 16).eval()
    a = blk.op_a(x)
    assert torch.allclose(blk(x), blk.op_b(a) + a)
    # block 36: A -> B with input too and shortcut: out = B(A(x) + x) + A(x)
    blk = BloxBlock(36, 16).eval()
    a = blk.op_a(x)
    assert torch.allclose(blk(x), blk.op_b(a + x) + a)
    # block 30: parallel ops: out = B(x) + A(x)
    blk = BloxBlock(30, 16).eval()
    assert torch.allclose(blk(x), blk.op_b(x) + blk.op_a(x))
    # single-op block has no A module at all
    assert BloxBlock(10, 16).op_a is None


def test_blocks_are_swappable_and_narrow_configs_work() -> None:
    cfg = ModelConfig(stem_channels=8, in_channels=1, image_size=8, num_classes=10)
    model = build_model(Arch.from_index(0), cfg).eval()
    model.stages[1].block = BloxBlock(44, cfg.channels(1))
    out = model(torch.randn(3, 1, 8, 8))
    assert out.shape == (3, 10)
    odd = build_model(Arch.from_index(7), ModelConfig(stem_channels=4, image_size=9, num_classes=3))
    assert odd(torch.randn(1, 3, 9, 9)).shape == (1, 3)


def test_bad_model_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="stem_channels"):
        ModelConfig(stem_channels=0)
    with pytest.raises(InvalidArgumentError, match="even"):
        ModelConfig(stem_channels=7)
    with pytest.raises(InvalidArgumentError, match="image_size"):
        ModelConfig(image_size=4)
    with pytest.raises(InvalidArgumentError, match="op must be"):
        make_op(3, 8)
    with pytest.raises(InvalidArgumentError, match="Arch"):
        build_model(5)  # type: ignore[arg-type]
