"""blox-env: the BLOX macro NAS benchmark for today's NAS and RL research.

``import blox_env`` is light (numpy + gymnasium for the env registration): torch, dgl
and zarr are imported by the modules that use them. Importing registers the
Gymnasium ids ``Blox-v0`` and ``BloxOneShot-v0``.
"""

from __future__ import annotations

from blox_env.errors import BloxError, InvalidArchitectureError
from blox_env.space import N_BLOCKS, N_MODELS, N_STAGES, OPS, Arch, SubSpace, parse_arch

__version__ = "0.1.0"

from blox_env.envs import register_envs  # noqa: E402 - registration after the version is known

register_envs()

__all__ = [
    "N_BLOCKS",
    "N_MODELS",
    "N_STAGES",
    "OPS",
    "Arch",
    "BloxError",
    "InvalidArchitectureError",
    "SubSpace",
    "__version__",
    "parse_arch",
]
