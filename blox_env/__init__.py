"""blox-env: the BLOX macro NAS benchmark for today's NAS and RL research.

Public API: :class:`Arch`, :class:`SubSpace`, :func:`parse_arch` and the space's sizes; the store
(:class:`BloxStore`, :func:`open_store`); :class:`Evaluation` (what a reward backend returns); every
error of :mod:`blox_env.errors`. ``import blox_env`` is light (numpy + gymnasium for the env
registration): the store, rewards, torch, dgl and zarr are imported on first use, so
``blox_env.BloxStore`` is resolved lazily by the module ``__getattr__`` below. Importing registers
the Gymnasium ids ``Blox-v0`` and ``BloxOneShot-v0``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blox_env.errors import (
    ArchitectureNotFoundError,
    BloxError,
    DownloadError,
    InvalidActionError,
    InvalidArchitectureError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    MissingCostError,
    MissingDependencyError,
    PredictorNotFittedError,
    ReleaseFormatError,
    StoreCorruptError,
    StoreError,
    StoreNotFoundError,
    StoreReadOnlyError,
    TrainingDivergedError,
)
from blox_env.lazy import lazy_exports
from blox_env.space import N_BLOCKS, N_MODELS, N_STAGES, OPS, Arch, SubSpace, parse_arch

if TYPE_CHECKING:
    from blox_env.datasets.store import BloxStore, open_store
    from blox_env.rewards import Evaluation

__version__ = "0.1.0"

from blox_env.envs import register_envs  # noqa: E402 - registration after the version is known

register_envs()

#: Public names imported on first use -> the package that exports them (keeps ``import blox_env`` light).
_LAZY = {
    "BloxStore": "blox_env.datasets.store",
    "open_store": "blox_env.datasets.store",
    "Evaluation": "blox_env.rewards",
}

__all__ = [
    "N_BLOCKS",
    "N_MODELS",
    "N_STAGES",
    "OPS",
    "ArchitectureNotFoundError",
    "Arch",
    "BloxError",
    "BloxStore",
    "DownloadError",
    "Evaluation",
    "InvalidActionError",
    "InvalidArchitectureError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "MissingCostError",
    "MissingDependencyError",
    "PredictorNotFittedError",
    "ReleaseFormatError",
    "StoreCorruptError",
    "StoreError",
    "StoreNotFoundError",
    "StoreReadOnlyError",
    "SubSpace",
    "TrainingDivergedError",
    "__version__",
    "open_store",
    "parse_arch",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
