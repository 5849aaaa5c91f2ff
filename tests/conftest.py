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
