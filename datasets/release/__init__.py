"""The official BLOX release files: :mod:`.reader` (safe loaders for ``.pickle``, ``.csv``, ``.blox``),
:mod:`.codec` (the bit-packed ``.blox`` payload), :mod:`.writer`, :mod:`.importer` (release -> store)
and :mod:`.download` (resumable, verified downloads).
"""

from __future__ import annotations

__all__ = ["download_release", "import_release"]


def __getattr__(name: str) -> object:
    """Lazy exports, so ``import blox_env.datasets.release`` stays cheap."""
    if name == "import_release":
        from blox_env.datasets.release.importer import import_release

        return import_release
    if name == "download_release":
        from blox_env.datasets.release.download import download_release

        return download_release
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
