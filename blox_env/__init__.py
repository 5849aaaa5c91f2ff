"""blox-env: the BLOX macro NAS benchmark for today's NAS and RL research.

``import blox_env`` is light (numpy only): torch, dgl, zarr users import what they use.
"""

from __future__ import annotations

from blox_env.errors import BloxError, InvalidArchitectureError
from blox_env.space import N_BLOCKS, N_MODELS, N_STAGES, OPS, Arch, SubSpace, parse_arch

__version__ = "0.1.0"

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
