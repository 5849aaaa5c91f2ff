"""DGL imported quietly with the project's backend: every ``dgl`` import of blox-env goes through here.

A bare ``import dgl`` without ``DGLBACKEND`` prints "DGL backend not selected or invalid ... Setting the
default backend" and writes ``~/.dgl/config.json`` in the user's home. blox-env's graph code is PyTorch
code, so this module chooses ``DGLBACKEND=pytorch`` before the first import (a value the user set is
kept) and suppresses nothing else.
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["BACKEND", "dgl", "import_dgl"]

#: The DGL backend blox-env's graph datasets and predictors are written for.
BACKEND = "pytorch"


def import_dgl() -> ModuleType:
    """Import DGL with the PyTorch backend chosen (unless ``DGLBACKEND`` is already set), without its notice."""
    os.environ.setdefault("DGLBACKEND", BACKEND)
    import dgl as module

    return module


dgl = import_dgl()
