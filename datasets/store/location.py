"""Where stores live and how a location string becomes a Zarr store object.

A location is a local directory, a ``.zip`` file, or any fsspec URL
(``memory://...`` in tests, ``s3://...``, ``https://...``). ``open_store()``
with no argument finds the imported full benchmark under the user cache
directory, else the Blox-mini store bundled with the package.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import shutil
import socket
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blox_env.datasets.store.schema import STORE_FORMAT
from blox_env.errors import InvalidArgumentError, OutputExistsError, StoreNotFoundError
from blox_env.paths import blox_home

__all__ = [
    "BUNDLED_MINI",
    "OWNER_SUFFIX",
    "atomic_directory",
    "bundled_mini_path",
    "check_output",
    "clean_stale_temporaries",
    "commit_directory",
    "default_store_path",
    "discard_directory",
    "is_blox_store",
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
    # the package's folder from its (already imported) spec: importlib.resources would cost ~1-5 ms of every
    # default gym.make; the store is opened as a file, so a package folder on disk is needed anyway
    spec = importlib.util.find_spec("blox_env")
    roots = list(spec.submodule_search_locations or ()) if spec is not None else []
    candidate = Path(roots[0]) / "data" / BUNDLED_MINI if roots else None
    return candidate if candidate is not None and candidate.is_file() else None


def resolve_location(location: str | os.PathLike[str] | None) -> str | Path:
    """Names and ``None`` -> a concrete path or URL.

    ``None``: the imported full benchmark if present, else bundled Blox-mini.
    ``"blox"``: the imported full benchmark; ``"blox-mini"``: the bundled store.
    """
    if location is None or location in ("blox", "blox-mini"):
        full = default_store_path()
        mini = bundled_mini_path()
        if location == "blox" and full.exists() and not is_blox_store(full):
            raise StoreNotFoundError(
                f"{full} exists but is not a blox store (an interrupted or failed command may have left it): "
                "remove it and import the official release with `blox data import DIR`"
            )
        if location in (None, "blox") and is_blox_store(full):
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
    """A Zarr store object for a resolved location (checks existence when reading; a zip is opened)."""
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
    if mode != "w" and not path.exists():  # reading or adding data never creates a store as a side effect
        raise StoreNotFoundError(f"no store at {path}")
    if path.suffix == ".zip":  # opened now: a ZipStore lists nothing before it is opened
        from zarr.core.sync import sync

        return sync(ZipStore.open(path, mode="r" if read_only else mode))
    return LocalStore(path, read_only=read_only)


#: Suffix of the ownership marker written next to every temporary build folder (``.NAME.tmp-XXXXXXXX.owner``).
OWNER_SUFFIX = ".owner"
_TOKEN = re.compile(r"[0-9a-f]{8}")
_MAX_META = 64 << 20  # a root zarr.json larger than this is not a blox store's


def is_blox_store(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (folder or ``.zip``) holds a blox store: root ``zarr.json`` with format ``blox-store``.

    Reads only that one metadata file, so it is cheap and safe to call before deleting anything.
    """
    p = Path(path)
    try:
        if p.is_dir():
            meta = p / "zarr.json"
            if not meta.is_file() or meta.stat().st_size > _MAX_META:
                return False
            raw = meta.read_bytes()
        elif p.is_file() and zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as zf:
                if zf.getinfo("zarr.json").file_size > _MAX_META:
                    return False
                raw = zf.read("zarr.json")
        else:
            return False
        doc = json.loads(raw)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return False
    attrs = doc.get("attributes") if isinstance(doc, dict) else None
    return doc.get("node_type") == "group" and isinstance(attrs, dict) and attrs.get("format") == STORE_FORMAT


def _describe(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "a broken symbolic link"
    if path.is_dir():
        n = sum(1 for _ in path.iterdir())
        return f"a folder with {n} entr{'y' if n == 1 else 'ies'} that is not a blox store"
    return "a file that is not a blox store"


def check_output(final: Path, *, overwrite: bool, protect: Sequence[str | os.PathLike[str]] = ()) -> None:
    """Refuse an output path a build may not take, before anything is written or deleted.

    ``protect`` lists source folders: the output may not be one of them or contain one. An existing
    output is replaced only with ``overwrite`` and only when it is a blox store or an empty folder.
    """
    target = final.resolve()
    for src in protect:
        source = Path(src).resolve()
        if target == source or target in source.parents:
            raise OutputExistsError(
                f"output {final} is the source folder {src} or contains it: replacing it would delete the "
                "source files; choose an --out outside the source folder"
            )
    if not (final.exists() or final.is_symlink()):
        return
    replaceable = is_blox_store(final) or (final.is_dir() and not final.is_symlink() and not any(final.iterdir()))
    if not replaceable:
        raise OutputExistsError(
            f"output {final} exists and is {_describe(final)}: overwrite only ever replaces a blox store "
            "(or an empty folder); choose another --out, or move that path away yourself"
        )
    if not overwrite:
        raise OutputExistsError(f"{final} exists: pass overwrite=True (--overwrite) to replace it")


def atomic_directory(final: Path, *, overwrite: bool, protect: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """A fresh temporary sibling directory of ``final`` to build into; see :func:`commit_directory`.

    The output is checked first (:func:`check_output`). An ownership marker (pid, host, process start)
    is written next to the folder before it exists, so :func:`clean_stale_temporaries` can later remove
    exactly what a dead build left and nothing else.
    """
    final = Path(final)
    check_output(final, overwrite=overwrite, protect=protect)
    final.parent.mkdir(parents=True, exist_ok=True)
    while True:
        token = uuid.uuid4().hex[:8]
        tmp = final.parent / f".{final.name}.tmp-{token}"
        marker = _marker(tmp)
        if not (tmp.exists() or marker.exists()):
            break
    owner = {"tool": "blox-env", "final": final.name, "token": token, "pid": os.getpid(),
             "host": socket.gethostname(), "start": _process_start(os.getpid())}
    with marker.open("x", encoding="utf-8") as fh:
        json.dump(owner, fh)
    tmp.mkdir()
    return tmp


def _marker(tmp: Path) -> Path:
    return tmp.with_name(tmp.name + OWNER_SUFFIX)


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), so a recycled pid is not taken for the original owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _owner_alive(owner: dict[str, Any]) -> bool | None:
    """True/False for a process on this host; None when the owner ran elsewhere (cannot tell)."""
    if owner.get("host") != socket.gethostname():
        return None
    pid = owner.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return None
    start, recorded = _process_start(pid), owner.get("start")
    return not (start is not None and recorded is not None and start != recorded)


def _read_owner(marker: Path, final: Path, token: str) -> dict[str, Any] | None:
    try:
        owner = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(owner, dict) or owner.get("tool") != "blox-env":
        return None
    if owner.get("final") != final.name or owner.get("token") != token:
        return None
    return owner


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def discard_directory(tmp: Path) -> None:
    """Remove a temporary build (its folder, zip and marker; the marker last so a crash here stays cleanable)."""
    for p in (tmp.with_name(tmp.name + ".zip"), tmp):
        try:
            _remove(p)
        except OSError:
            return
    marker = _marker(tmp)
    marker.with_name(marker.name + ".partial").unlink(missing_ok=True)
    marker.unlink(missing_ok=True)


def clean_stale_temporaries(final: str | os.PathLike[str]) -> list[str]:
    """Remove what dead builds of ``final`` left beside it; returns one message per action.

    Only siblings named ``.NAME.tmp-XXXXXXXX`` whose ownership marker names this output and a process
    that is no longer running are touched: their temporary folder, zip and replaced old store. An old
    store whose replacement never took the final name is moved back. Anything else is left alone.
    """
    final = Path(final)
    parent, prefix = final.parent, f".{final.name}.tmp-"
    if not parent.is_dir():
        return []
    messages = []
    for marker in sorted(parent.glob(glob.escape(prefix) + "*" + OWNER_SUFFIX)):
        token = marker.name[len(prefix) : -len(OWNER_SUFFIX)]
        owner = _read_owner(marker, final, token) if _TOKEN.fullmatch(token) else None
        if owner is None:
            continue
        tmp = parent / (prefix + token)
        who = f"pid {owner.get('pid')} on {owner.get('host')}"
        if _owner_alive(owner) is not False:
            if tmp.exists():
                messages.append(f"kept {tmp}: the build that owns it ({who}) may still be running")
            continue
        old = parent / f".{final.name}.old-{token}"
        if owner.get("old") == old.name and (old.exists() or old.is_symlink()):
            if not (final.exists() or final.is_symlink()):
                os.replace(old, final)
                messages.append(f"restored {final} from {old.name}: a replacement by {who} was interrupted")
            else:
                _remove(old)
                messages.append(f"removed {old}: the store replaced by a build ({who}) that died before removing it")
        for p in (tmp.with_name(tmp.name + ".zip"), tmp):
            if p.exists() or p.is_symlink():
                _remove(p)
                messages.append(f"removed {p}: left by an interrupted build ({who}, no longer running)")
        marker.with_name(marker.name + ".partial").unlink(missing_ok=True)
        marker.unlink(missing_ok=True)
    return messages


def _set_old(tmp: Path, old: Path) -> None:
    """Record in the marker which old-store name a commit is about to use (for crash recovery)."""
    marker = _marker(tmp)
    try:
        owner = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    owner["old"] = old.name
    partial = marker.with_name(marker.name + ".partial")
    partial.write_text(json.dumps(owner), encoding="utf-8")
    os.replace(partial, marker)


def commit_directory(tmp: Path, final: Path) -> None:
    """Move a finished build into place; an old store is replaced only after the move succeeds.

    The old store is first renamed to ``.NAME.old-XXXXXXXX`` (recorded in the marker); if the final
    move fails it is moved back at once, and if the process dies in between the next build restores it.
    """
    final = Path(final)
    if (final.exists() or final.is_symlink()) and not (
        is_blox_store(final) or (final.is_dir() and not final.is_symlink() and not any(final.iterdir()))
    ):
        raise OutputExistsError(f"output {final} became {_describe(final)} during the build: not replacing it")
    src = tmp
    if final.suffix == ".zip":
        src = tmp.with_name(tmp.name + ".zip")
        zip_directory(tmp, src)
    old = None
    if final.exists() or final.is_symlink():
        old = final.parent / f".{final.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
        _set_old(tmp, old)
        os.replace(final, old)
    try:
        os.replace(src, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        _remove(old)
    if src != tmp:
        shutil.rmtree(tmp)
    _marker(tmp).unlink(missing_ok=True)


def zip_directory(src: Path, dest: Path) -> None:
    """Zip a store directory without recompression (chunks are compressed already)."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(src).as_posix())
