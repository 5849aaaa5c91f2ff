"""Shared test setup: one torch thread, an isolated BLOX_HOME for the whole session."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass


@pytest.fixture(scope="session", autouse=True)
def _blox_home(tmp_path_factory: pytest.TempPathFactory):
    """Never touch the user's cache: every test session gets its own BLOX_HOME.

    ``BLOX_TEST_HOME`` lets a developer reuse a warm cache across runs.
    """
    old = os.environ.get("BLOX_HOME")
    os.environ["BLOX_HOME"] = os.environ.get("BLOX_TEST_HOME") or str(tmp_path_factory.mktemp("blox_home"))
    yield
    if old is None:
        os.environ.pop("BLOX_HOME", None)
    else:
        os.environ["BLOX_HOME"] = old


@pytest.fixture(scope="session", autouse=True)
def _warm_hash_table(_blox_home: None) -> None:
    """Build (or load) the 91,125-model hash table once, into the session's BLOX_HOME, before any test runs.

    Every later lookup in this process is then an in-memory hit, and the CLI subprocesses the tests
    start (they inherit BLOX_HOME) load the table from disk instead of each building it cold.
    """
    from blox_env import hashes

    assert hashes.hash_to_index(str(hashes.all_hashes()[50_000])) == 50_000


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory):
    """A 27-model synthetic store (3 blocks per stage, 2 seeds, 12 epochs), opened read-only."""
    from blox_env.datasets.store.core import open_store
    from blox_env.datasets.synthetic import synthetic_store
    from blox_env.space import SubSpace

    path = tmp_path_factory.mktemp("stores") / "tiny.zarr"
    synthetic_store(path, space=SubSpace(((0, 9, 30), (1, 12, 36), (2, 21, 44))), seeds=(0, 1), epochs=12).close()
    return open_store(path, rng=0)
