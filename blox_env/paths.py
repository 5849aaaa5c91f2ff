"""Where blox-env keeps user data: ``$BLOX_HOME`` or ``$XDG_CACHE_HOME/blox-env``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["blox_home"]


def blox_home() -> Path:
    """Root of the user cache (imported stores, hash table, downloads); not created here."""
    env = os.environ.get("BLOX_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "blox-env"
