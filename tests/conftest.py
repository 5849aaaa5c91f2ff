"""Shared test setup: one torch thread, an isolated BLOX_HOME for the whole session.

Core-only runs (``BLOX_CORE_TESTS=1``, what CI does on Python 3.12/3.13 where the light core is
installed without extras): a test module or test that fails only because an extra's module is
not installed (``ModuleNotFoundError`` for torch, dgl, scikit-learn, networkx, Stable-Baselines3 or Ray, or
:class:`~blox_env.errors.MissingDependencyError`) is reported as skipped, naming the module. In a
normal run (all extras installed) nothing is converted, so a genuinely missing import still fails.
"""

from __future__ import annotations

import os

import pytest

_EXTRA_MODULES = ("torch", "dgl", "sklearn", "stable_baselines3", "ray", "networkx")
_CORE_ONLY = os.environ.get("BLOX_CORE_TESTS") == "1"


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # the light core (no [train] extra)
        pass


def _missing_extra(exc: BaseException | None) -> str | None:
    """The extra module whose absence caused ``exc`` (or its cause chain), else None."""
    from blox_env.errors import MissingDependencyError

    while exc is not None:
        if isinstance(exc, MissingDependencyError):
            return str(exc)
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in _EXTRA_MODULES:
            return f"needs {exc.name} (an extra)"
        exc = exc.__cause__ or exc.__context__
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    report = outcome.get_result()
    if _CORE_ONLY and report.failed and isinstance(collector, pytest.Module):
        call = getattr(report, "_blox_excinfo", None)
        text = str(report.longrepr)
        if call is None and any(f"No module named '{m}" in text for m in _EXTRA_MODULES):
            report.outcome = "skipped"
            report.longrepr = (str(collector.path), 0, "core-only run: the module needs an extra")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if _CORE_ONLY and report.failed and call.excinfo is not None:
        reason = _missing_extra(call.excinfo.value)
        if reason:
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0, f"core-only run: {reason}")


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
def blockwise_path(tmp_path_factory: pytest.TempPathFactory):
    """A synthetic store over ``BLOCKWISE_SPACE`` (125 models, 2 seeds, 12 epochs) with synthetic blockwise tables
    (fine-tuning 2 and 6 epochs, distillation 1 and 4); read-only: a test that writes copies it."""
    from blox_test_helpers import BLOCKWISE_SPACE

    from blox_env.build.synthetic_blockwise import synthetic_blockwise
    from blox_env.datasets.synthetic import synthetic_store

    path = tmp_path_factory.mktemp("blockwise") / "s.zarr"
    synthetic_store(path, space=BLOCKWISE_SPACE, seeds=(0, 1), epochs=12).close()
    synthetic_blockwise(path, ft_epochs=(2, 6), distill_epochs=(1, 4))
    return path


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory):
    """A 27-model synthetic store (3 blocks per stage, 2 seeds, 12 epochs), opened read-only."""
    from blox_env.datasets.store.core import open_store
    from blox_env.datasets.synthetic import synthetic_store
    from blox_env.space import SubSpace

    path = tmp_path_factory.mktemp("stores") / "tiny.zarr"
    synthetic_store(path, space=SubSpace(((0, 9, 30), (1, 12, 36), (2, 21, 44))), seeds=(0, 1), epochs=12).close()
    return open_store(path, rng=0)
