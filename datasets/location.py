"""Where stores live and how a location string becomes a Zarr store object.

A location is a local directory, a ``.zip`` file, or any fsspec URL
(``memory://...`` in tests, ``s3://...``, ``https://...``). ``open_store()``
with no argument finds the imported full benchmark under the user cache
directory, else the Blox-mini store bundled with the package.
"""

from __future__ import annotations

import os
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import Any

from blox_env.errors import InvalidArgumentError, StoreNotFoundError
from blox_env.paths import blox_home

__all__ = [
    "BUNDLED_MINI",
    "atomic_directory",
    "bundled_mini_path",
    "commit_directory",
    "default_store_path",
    "resolve_location",
    "zarr_store",
    "zip_directory",
]

#: File name of Blox-mini inside the package's ``blox_env/data`` folder (built by the builder).
BUNDLED_MINI = "blox-mini.zip"

_MODES = ("r", "w", "a")


def default_store_path() -> Path:
    """Where ``blox data import`` puts the full benchmark by default."""
    return blox_home() / "stores" / "blox.zarr"


def bundled_mini_path() -> Path | None:
    """The bundled Blox-mini store, if this installation has one."""
    from importlib.resources import files

    candidate = Path(str(files("blox_env") / "data" / BUNDLED_MINI))
    return candidate if candidate.is_file() else None


def resolve_location(location: str | os.PathLike[str] | None) -> str | Path:
    """Names and ``None`` -> a concrete path or URL.

    ``None``: the imported full benchmark if present, else bundled Blox-mini.
    ``"blox"``: the imported full benchmark; ``"blox-mini"``: the bundled store.
    """
    if location is None or location in ("blox", "blox-mini"):
        full = default_store_path()
        mini = bundled_mini_path()
        if location in (None, "blox") and full.exists():
            return full
        if location in (None, "blox-mini") and mini is not None:
            return mini
        raise StoreNotFoundError(
            f"no benchmark store found (looked for {full}"
            + (" and the bundled Blox-mini" if location is None else "")
            + "): import the official release with `blox data import DIR` or `blox data download`, "
            "or pass a store path or URL"
        )
    if isinstance(location, str) and "://" in location:
        return location
    return Path(location).expanduser()


def zarr_store(location: str | Path, *, mode: str) -> Any:
    """A Zarr store object for a resolved location (checks existence when reading)."""
    from zarr.storage import FsspecStore, LocalStore, ZipStore

    if mode not in _MODES:
        raise InvalidArgumentError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
    read_only = mode == "r"
    if isinstance(location, str):
        if location.startswith("file://"):
            location = Path(location[len("file://") :])
        else:
            return FsspecStore.from_url(location, read_only=read_only)
    path = Path(location)
    if read_only and not path.exists():
        raise StoreNotFoundError(f"no store at {path}")
    if path.suffix == ".zip":
        return ZipStore(path, mode="r" if read_only else mode)
    return LocalStore(path, read_only=read_only)


def atomic_directory(final: Path, *, overwrite: bool) -> Path:
    """A fresh temporary sibling directory of ``final`` to build into; see :func:`commit_directory`."""
    if final.exists() and not overwrite:
        raise InvalidArgumentError(f"{final} exists: pass overwrite=True (--overwrite) to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def commit_directory(tmp: Path, final: Path) -> None:
    """Move a finished build into place; an old store is replaced only after the move succeeds."""
    if final.suffix == ".zip":
        zip_tmp = tmp.with_name(tmp.name + ".zip")
        zip_directory(tmp, zip_tmp)
        shutil.rmtree(tmp)
        os.replace(zip_tmp, final)
        return
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def zip_directory(src: Path, dest: Path) -> None:
    """Zip a store directory without recompression (chunks are compressed already)."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(src).as_posix())
