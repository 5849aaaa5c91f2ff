"""The public API: what ``blox_env`` and ``blox_env.datasets`` export, one import path per class, a light import."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

import blox_env
import blox_env.datasets
from blox_env import errors


def test_top_level_exports() -> None:
    from blox_env import Arch, BloxStore, Evaluation, SubSpace, open_store, parse_arch
    from blox_env.datasets.store.core import BloxStore as StoreClass
    from blox_env.datasets.store.core import open_store as store_opener
    from blox_env.rewards.base import Evaluation as EvaluationClass

    assert BloxStore is StoreClass and open_store is store_opener and Evaluation is EvaluationClass
    assert parse_arch("blocks:1,2,3") == Arch.from_blocks(1, 2, 3) and Arch.from_index(0) in SubSpace.full()
    for name in blox_env.__all__:
        assert getattr(blox_env, name) is not None, name
    assert set(dir(blox_env)) >= set(blox_env.__all__)


def test_every_error_is_exported_from_the_top() -> None:
    for name in errors.__all__:
        assert name in blox_env.__all__ and getattr(blox_env, name) is getattr(errors, name), name
        assert issubclass(getattr(errors, name), errors.BloxError)


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        blox_env.nope  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        blox_env.datasets.nope  # noqa: B018


def test_datasets_exports() -> None:
    names = set(blox_env.datasets.__all__)
    assert {"BloxStore", "open_store", "import_release", "download_release", "load_data", "synthetic_store",
            "ArchGraphDataset", "arch_to_graph", "batch_graphs"} <= names
    for name in sorted(names):
        value = getattr(blox_env.datasets, name)
        assert getattr(value, "__name__", name) == name, name
    assert blox_env.datasets.BloxStore is blox_env.BloxStore


def _light_import(statement: str) -> dict[str, bool]:
    code = (f"import sys, json\n{statement}\n"
            "print(json.dumps({m: m in sys.modules for m in ('zarr', 'torch', 'dgl', 'blox_env.rewards', "
            "'blox_env.datasets.store')}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parent)  # never the repo root: it would shadow an install
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("statement", ["import blox_env", "import blox_env.datasets",
                                       "from blox_env import Arch, SubSpace, parse_arch, BloxError"])
def test_import_is_light(statement: str) -> None:
    loaded = _light_import(statement)
    assert not any(loaded.values()), loaded


def test_lazy_names_load_on_first_use() -> None:
    loaded = _light_import("import blox_env\nblox_env.BloxStore\nblox_env.Evaluation")
    assert loaded["blox_env.datasets.store"] and loaded["blox_env.rewards"] and not loaded["torch"]


def _public_classes(module_name: str) -> dict[str, type]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", [])
    return {n: getattr(module, n) for n in names if inspect.isclass(getattr(module, n, None))}


MODULES = (
    "blox_env.space", "blox_env.graph", "blox_env.hashes", "blox_env.costs", "blox_env.progress",
    "blox_env.datasets.images", "blox_env.datasets.cifar", "blox_env.datasets.augment",
    "blox_env.datasets.randaugment", "blox_env.datasets.graphs", "blox_env.datasets.release.reader",
    "blox_env.datasets.release.codec", "blox_env.datasets.release.header", "blox_env.datasets.release.types",
    "blox_env.datasets.release.writer", "blox_env.datasets.release.importer", "blox_env.datasets.release.download",
    "blox_env.datasets.release.manifest", "blox_env.datasets.release.records", "blox_env.predictors.base",
    "blox_env.predictors.evaluation", "blox_env.reports.bench", "blox_env.cli.options",
)


def test_one_import_path_per_class() -> None:
    """A class is listed in ``__all__`` only by the module that defines it (package ``__init__`` files aside)."""
    for module_name in MODULES:
        for name, cls in _public_classes(module_name).items():
            assert cls.__module__ == module_name, f"{module_name}.{name} re-exports {cls.__module__}.{name}"
