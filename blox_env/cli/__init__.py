"""The ``blox`` command, one module per command group (each exposes ``register(app)``)."""

from __future__ import annotations

from blox_env.cli.root import app, main

__all__ = ["app", "main"]
