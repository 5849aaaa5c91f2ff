"""The wheel cannot forget a package: pyproject's explicit package list equals the tree."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _tree_packages(package_dir: dict[str, str]) -> set[str]:
    """Every folder with an ``__init__.py`` under each mapped root, as its installed dotted name."""
    found = set()
    for dotted, folder in package_dir.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if "__pycache__" in rel.parts:
                continue
            found.add(".".join([dotted, *rel.parts]) if rel.parts else dotted)
    return found


def test_package_list_equals_the_tree() -> None:
    cfg = _config()
    listed = set(cfg["packages"])
    # each mapped root's folder holds its sub-packages (blox_env.datasets.store lives in datasets/store)
    in_tree = _tree_packages(dict(cfg["package-dir"]))
    assert listed == in_tree, f"listed but absent: {sorted(listed - in_tree)}; in the tree but not listed: " \
                              f"{sorted(in_tree - listed)}"


def test_bundled_data_is_package_data() -> None:
    data = _config()["package-data"]["blox_env"]
    assert any(Path(ROOT / "blox_env").glob(pattern) for pattern in data)
    assert (ROOT / "blox_env" / "data" / "blox-mini.zip").is_file()
