"""CPU latency lookup table: additivity and agreement with end-to-end measurements."""

from __future__ import annotations

import numpy as np
import pytest

from blox_env.errors import InvalidArgumentError
from blox_env.latency import LatencyConfig, component_latencies, device_name, latency_table, validate_table
from blox_env.shapes import ModelConfig
from blox_env.space import Arch

SMALL = LatencyConfig(warmup=2, repeats=5, model=ModelConfig(stem_channels=8, image_size=16, num_classes=10))


@pytest.fixture(scope="module")
def components():
    return component_latencies(SMALL, seed=0)


def test_table_is_the_sum_of_components(components) -> None:
    table = latency_table(components)
    assert table.shape == (91125,) and (table > 0).all()
    arch = Arch.from_blocks(3, 17, 40)
    expected = (components.stem + components.head + sum(components.reductions)
                + sum(components.blocks[s][b] for s, b in enumerate(arch.blocks)))
    assert table[arch.index] == pytest.approx(expected)


def test_validation_on_a_small_sample(components) -> None:
    # cheap single-conv models vs bottleneck-heavy ones: latency differs several-fold
    archs = [Arch.from_blocks(9, 9, 9), Arch.from_blocks(9, 10, 9), Arch.from_blocks(44, 44, 44),
             Arch.from_blocks(35, 44, 35), Arch.from_blocks(11, 9, 9), Arch.from_blocks(44, 35, 44)]
    v = validate_table(components, archs, SMALL)
    assert v["n"] == 6 and len(v["measured"]) == 6 and all(m > 0 for m in v["measured"])
    cheap, heavy = np.mean(v["measured"][:2]), np.mean(v["measured"][2:4])
    assert heavy > 1.5 * cheap and v["spearman"] > 0
    assert 0 <= v["mape"] < 1.0


def test_config_and_device_name() -> None:
    assert device_name().startswith("cpu-")
    with pytest.raises(InvalidArgumentError):
        LatencyConfig(repeats=0)
