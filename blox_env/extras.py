"""Optional dependencies: which extra each feature needs, and one clear error when it is missing.

``pip install blox-env`` is the light core (space, costs, store, release import, tabular envs,
numpy agents, harness, reports, CLI). Features that need PyTorch, DGL, Stable-Baselines3, Ray,
ConfigSpace or Optuna call :func:`require` at the point of use, which raises
:class:`~blox_env.errors.MissingDependencyError` (a ``BloxError`` and an ``ImportError``) naming the
feature and the exact ``pip install`` command, never a bare ``ModuleNotFoundError`` from deep inside.
"""

from __future__ import annotations

import importlib.util

from blox_env.errors import InvalidArgumentError, MissingDependencyError

__all__ = ["EXTRAS", "missing_modules", "require"]

#: extra -> the top-level modules it installs (import names, not distribution names).
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch", "sklearn"),
    "predictors": ("torch", "dgl", "sklearn"),
    "rl": ("torch", "stable_baselines3"),
    "distributed": ("ray",),
    "ray-tune": ("ray", "pandas", "pyarrow"),  # ray.tune refuses to import without pandas and pyarrow
    "integrations": ("ConfigSpace", "optuna"),
    "syne-tune": ("syne_tune", "pandas", "fastparquet", "huggingface_hub"),
    "dehb": ("dehb", "ConfigSpace", "distributed", "loguru", "pandas"),
    "smac": ("smac", "ConfigSpace"),
}


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (empty when the extra is installed)."""
    if extra not in EXTRAS:
        raise InvalidArgumentError(f"unknown extra {extra!r}: one of {', '.join(EXTRAS)}")
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def require(extra: str, *, feature: str) -> None:
    """Raise :class:`MissingDependencyError` unless every module of ``extra`` is importable."""
    missing = missing_modules(extra)
    if missing:
        raise MissingDependencyError(
            f"{feature} needs {', '.join(missing)} (the '{extra}' extra): pip install \"blox-env[{extra}]\""
        )
