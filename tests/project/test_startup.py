"""Start-up work of ``gym.make("Blox-v0")``: what it reads and imports (benchmarks/startup.py measures the time).

A default make reads the index and the run's metadata, not the static columns; a read-only store looks
up each metadata node once; the block sets of a store come from a presence table (numpy's ``unique``
imports ``numpy.ma``). Each of these showed up in the profile of the start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import blox_env  # noqa: F401  (registers the ids)
from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.datasets.store.location import bundled_mini_path
from blox_env.rewards.tabular import TabularReward, space_of_index
from blox_env.space import FULL_SPACE, N_MODELS, N_STAGES, SubSpace, indices_to_blocks


@pytest.fixture
def mini_path() -> Path:
    path = bundled_mini_path()
    assert path is not None
    return path


@pytest.mark.parametrize("seed", range(4))
def test_space_of_index_is_the_sorted_blocks_per_stage(seed: int) -> None:
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(N_MODELS, size=int(rng.integers(1, 500)), replace=False))
    blocks = indices_to_blocks(index)
    expected = tuple(tuple(sorted(set(blocks[:, s].tolist()))) for s in range(N_STAGES))
    space = space_of_index(index)
    assert isinstance(space, SubSpace) and space.blocks == expected
    assert space_of_index(FULL_SPACE.indices()).blocks == FULL_SPACE.blocks


def test_default_make_reads_no_static_column(mini_path: Path) -> None:
    env = gym.make("Blox-v0", benchmark=str(mini_path)).unwrapped
    backend = env.backend
    assert isinstance(backend, TabularReward)
    assert not any(path.startswith(("static/", "latency/")) for path in backend.store._arrays)
    static = backend.static_costs()  # read on first use, once, equal to the store's columns
    assert set(static) == {"params", "flops", *(f"latency/{d}" for d in backend.store.latency_devices)}
    assert backend.static_costs() is static
    for metric, values in static.items():
        np.testing.assert_array_equal(values, backend.store.get(metric))
    env.reset(seed=0)
    *_, info = env.step(0), env.step(0), env.step(0)
    row = int(backend.rows(np.array([info[-1]["arch_index"]]))[0])
    assert info[-1]["metrics"]["params"] == static["params"][row]
    env.close()


def test_a_constraint_reads_the_static_columns(mini_path: Path) -> None:
    store = open_store(mini_path)
    limit = float(np.median(store.get("params")))
    env = gym.make("Blox-v0", benchmark=store, constraint={"params": limit}).unwrapped
    assert env.backend._static is not None
    env.reset(seed=0)
    mask = env.stage_mask(0, ())
    assert 0 < int(mask.sum()) <= len(env.backend.space.blocks[0])


def test_read_only_store_looks_up_each_node_once(mini_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    lookup = BloxStore._lookup_node

    def counting(self: BloxStore, path: str) -> object:
        calls.append(path)
        return lookup(self, path)

    monkeypatch.setattr(BloxStore, "_lookup_node", counting)
    store = open_store(mini_path)
    first = (store.runs, store.metrics(), store.run_info().metrics)
    n = len(calls)
    assert n > 0 and len(set(calls)) == n  # no node looked up twice
    second = (store.runs, store.metrics(), store.run_info().metrics)
    assert second == first and len(calls) == n
    store.runs.append("changed")  # callers get copies: the cached listing stays as read
    assert "changed" not in store.runs


def test_writable_store_sees_new_nodes(tmp_path: Path) -> None:
    from blox_env.datasets.synthetic import synthetic_store

    path = tmp_path / "s.zarr"
    synthetic_store(path, space=SubSpace(((0, 1), (2,), (3, 4))), seeds=(0,), epochs=3).close()
    with open_store(path, mode="a") as store:
        before = store.runs
        store.create_run("extra", seeds=(0,), epochs=2)
        assert store.runs == sorted([*before, "extra"])


def test_default_make_imports_no_numpy_ma(tmp_path: Path) -> None:
    """numpy.ma costs ~8 ms of start-up; blox-env's own code must not be what imports it."""
    code = ("import sys, json, gymnasium, zarr, numpy\nbefore = 'numpy.ma' in sys.modules\nimport blox_env\n"
            "gymnasium.make('Blox-v0')\nprint(json.dumps([before, 'numpy.ma' in sys.modules]))\n")
    env = {**os.environ, "BLOX_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path,
                          check=True)
    before, after = json.loads(proc.stdout.strip().splitlines()[-1])
    assert before or not after
    assert "Blox-mini" in proc.stderr
