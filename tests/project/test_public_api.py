"""The public API: what ``blox_env`` and ``blox_env.datasets`` export, one import path per class, every error in
``errors.py``, a light import."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
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


ROOT = Path(__file__).resolve().parents[2]
SOURCE_FOLDERS = ("blox_env", "datasets", "predictors", "agents")


def _error_classes() -> dict[str, list[str]]:
    """Every class named ``*Error`` in the package's source -> the files (relative to the repo) that define it."""
    found: dict[str, list[str]] = {}
    for folder in SOURCE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                    found.setdefault(node.name, []).append(path.relative_to(ROOT).as_posix())
    return found


def test_every_error_class_is_defined_in_errors_and_exported() -> None:
    """DESIGN: every ``*Error`` class lives in ``blox_env/errors.py``, and ``blox_env`` exports each one."""
    found = _error_classes()
    assert len(found) >= 20, sorted(found)  # the scan saw the package (errors.py alone defines 20+)
    elsewhere = {name: files for name, files in found.items() if files != ["blox_env/errors.py"]}
    assert not elsewhere, f"*Error classes defined outside blox_env/errors.py: {elsewhere}"
    assert set(found) == set(errors.__all__), set(found) ^ set(errors.__all__)
    for name in found:
        assert name in blox_env.__all__ and getattr(blox_env, name) is getattr(errors, name), name
        assert issubclass(getattr(errors, name), errors.BloxError), name


def test_moved_errors_keep_their_bases() -> None:
    assert issubclass(errors.OutputExistsError, errors.InvalidArgumentError)
    assert issubclass(errors.OutputExistsError, FileExistsError)
    assert issubclass(errors.BuildSpecError, errors.InvalidArgumentError)
    assert issubclass(errors.PredictorFolderError, errors.InvalidArgumentError)
    assert issubclass(errors.PartialReleaseError, errors.ReleaseFormatError)
    assert issubclass(errors.ImageDataFormatError, ValueError)
    assert issubclass(errors.UnsafePickleError, errors.ImageDataFormatError)
    old = {
        "blox_env.datasets.store.location": "OutputExistsError",
        "blox_env.predictors.folders": "PredictorFolderError",
        "blox_env.datasets.release.importer": "PartialReleaseError",
        "blox_env.training.run_setup": "BuildSpecError",
        "blox_env.datasets.cifar": "UnsafePickleError",
        "blox_env.build.prepare": "BuildSpecError",
    }
    for module_name, name in old.items():  # no alias left behind (the project has had no release)
        assert name not in getattr(importlib.import_module(module_name), "__all__", ()), (module_name, name)


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        blox_env.nope  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        blox_env.datasets.nope  # noqa: B018


def test_datasets_exports() -> None:
    names = set(blox_env.datasets.__all__)
    assert {"import_release", "download_release", "load_data", "synthetic_store", "ArchGraphDataset",
            "arch_to_graph", "batch_graphs"} <= names
    for name in sorted(names):
        value = getattr(blox_env.datasets, name)
        assert getattr(value, "__name__", name) == name, name
    assert {"RunInfo", "FlatWeights"} <= set(blox_env.datasets.store.__all__)


#: Public names whose one documented import path is a package other than the one holding their module.
DOCUMENTED = {
    "BloxStore": "blox_env",
    "open_store": "blox_env",
    "Evaluation": "blox_env",
    "RunInfo": "blox_env.datasets.store",
    "FlatWeights": "blox_env.datasets.store",
}


def _packages() -> list[str]:
    """Every public package of the distribution (``blox_env`` and its sub-packages, the mapped three included)."""
    names: list[str] = []
    pending = ["blox_env", "blox_env.datasets", "blox_env.predictors", "blox_env.agents"]
    while pending:
        name = pending.pop()
        if name in names:
            continue
        names.append(name)
        module = importlib.import_module(name)
        pending += [info.name for info in pkgutil.iter_modules(module.__path__, f"{name}.") if info.ispkg]
    return sorted(names)


def test_one_documented_path_for_the_store_and_evaluation() -> None:
    import blox_env.datasets.store
    import blox_env.rewards

    packages = _packages()
    assert {"blox_env.datasets.store", "blox_env.datasets.release", "blox_env.rewards", "blox_env.agents"} <= set(
        packages)
    for name, home in DOCUMENTED.items():
        assert name in importlib.import_module(home).__all__, (home, name)
        for package in packages:
            if package != home:
                assert name not in getattr(importlib.import_module(package), "__all__", ()), (package, name)
    for package in (blox_env.datasets, blox_env.datasets.store):
        for name in ("BloxStore", "open_store"):
            with pytest.raises(AttributeError):
                getattr(package, name)
    with pytest.raises(AttributeError):
        blox_env.rewards.Evaluation  # noqa: B018


def test_each_class_is_exported_by_one_package() -> None:
    """A class name (CamelCase) is in the ``__all__`` of at most one public package (defining modules aside)."""
    homes: dict[str, list[str]] = {}
    for package in _packages():
        for name in getattr(importlib.import_module(package), "__all__", ()):
            if name[:1].isupper() and not name.isupper():
                homes.setdefault(name, []).append(package)
    assert {name: where for name, where in homes.items() if len(where) > 1} == {}


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
