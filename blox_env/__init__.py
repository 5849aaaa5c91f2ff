"""blox-env: the BLOX macro NAS benchmark for today's NAS and RL research.

Public API: :class:`Arch`, :class:`SubSpace`, :func:`parse_arch` and the space's sizes; the env options
(:class:`EnvConfig`); the benchmark (:func:`run_bench`, :class:`BenchSpec`, :class:`BenchResult`,
:class:`BenchOutputs`); the store
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
    BuildSpecError,
    DownloadError,
    ImageDataFormatError,
    InvalidActionError,
    InvalidArchitectureError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    LiveResultMissingError,
    MissingCostError,
    MissingDependencyError,
    MissingMetricError,
    OutputExistsError,
    PartialReleaseError,
    PredictorFolderError,
    PredictorNotFittedError,
    ReleaseFormatError,
    StoreBusyError,
    StoreCorruptError,
    StoreError,
    StoreNotFoundError,
    StoreReadOnlyError,
    TrainingDivergedError,
    UnsafePickleError,
)
from blox_env.lazy import lazy_exports
from blox_env.space import N_BLOCKS, N_MODELS, N_STAGES, OPS, Arch, SubSpace, parse_arch

if TYPE_CHECKING:
    from blox_env.agents.spec import BenchSpec
    from blox_env.bench import BenchOutputs, BenchResult, run_bench
    from blox_env.datasets.store.core import BloxStore, open_store
    from blox_env.envs.config import EnvConfig
    from blox_env.rewards.base import Evaluation

__version__ = "0.1.0"

from blox_env.envs import register_envs  # noqa: E402 - registration after the version is known

register_envs()

#: Public names imported on first use -> their defining module (keeps ``import blox_env`` light). This package is
#: their one documented import path: ``blox_env.datasets``, ``blox_env.datasets.store`` and ``blox_env.rewards``
#: do not re-export them.
_LAZY = {
    "BloxStore": "blox_env.datasets.store.core",
    "open_store": "blox_env.datasets.store.core",
    "Evaluation": "blox_env.rewards.base",
    "EnvConfig": "blox_env.envs.config",
    "BenchSpec": "blox_env.agents.spec",
    "run_bench": "blox_env.bench",
    "BenchResult": "blox_env.bench",
    "BenchOutputs": "blox_env.bench",
}

__all__ = [
    "BenchOutputs",
    "BenchResult",
    "BenchSpec",
    "EnvConfig",
    "N_BLOCKS",
    "N_MODELS",
    "N_STAGES",
    "OPS",
    "Arch",
    "ArchitectureNotFoundError",
    "BloxError",
    "BloxStore",
    "BuildSpecError",
    "DownloadError",
    "Evaluation",
    "ImageDataFormatError",
    "InvalidActionError",
    "InvalidArchitectureError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "LiveResultMissingError",
    "MissingCostError",
    "MissingMetricError",
    "MissingDependencyError",
    "OutputExistsError",
    "PartialReleaseError",
    "PredictorFolderError",
    "PredictorNotFittedError",
    "ReleaseFormatError",
    "StoreBusyError",
    "StoreCorruptError",
    "StoreError",
    "StoreNotFoundError",
    "StoreReadOnlyError",
    "SubSpace",
    "TrainingDivergedError",
    "UnsafePickleError",
    "__version__",
    "open_store",
    "parse_arch",
    "run_bench",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
