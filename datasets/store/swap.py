"""Replacing an array or group of a local store so that a concurrent reader sees the old or the new one.

A writer builds the new node under a hidden sibling name (``.blox-tmp-<name>-<token>``, never listed as a
node) and swaps it in: ``renameat2(RENAME_EXCHANGE)`` exchanges the two folders atomically (Linux), then the
old one is removed; elsewhere the old folder is renamed aside first, leaving a moment in which the path is
absent (readers then retry and, if it persists, say the store is being written). A failed build removes its
temporary folder, so nothing it touched is left half-written.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import uuid
from pathlib import Path

__all__ = ["TMP_PREFIX", "exchange", "is_hidden", "swap_in", "temp_name"]

#: Prefix of the hidden folders new arrays and groups are built in.
TMP_PREFIX = ".blox-tmp-"
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


def temp_name(name: str) -> str:
    """A fresh hidden sibling name for building ``name``."""
    return f"{TMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}"


def is_hidden(path: str) -> bool:
    """Whether a store path lies under a hidden (temporary) component: never a node of the store."""
    return any(part.startswith(".") for part in path.split("/") if part)


def _renameat2() -> object | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


_EXCHANGE = _renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two existing paths; False where the system cannot (caller falls back)."""
    if _EXCHANGE is None:
        return False
    rc = _EXCHANGE(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)  # type: ignore[operator]
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _rename_noreplace(a: Path, b: Path) -> bool:
    """Rename ``a`` to ``b`` unless ``b`` exists (atomically where the system can): False when ``b`` exists."""
    if _EXCHANGE is not None:
        rc = _EXCHANGE(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_NOREPLACE)  # type: ignore[operator]
        if rc == 0:
            return True
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            return False
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), str(b))
    if b.exists() or b.is_symlink():
        return False
    try:
        os.rename(a, b)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True


def swap_in(tmp: Path, final: Path, *, replace: bool = True) -> bool:
    """Move the finished build ``tmp`` to ``final``, replacing what is there (see the module doc).

    With ``replace=False`` an existing ``final`` (even one another process put there a moment ago) is kept:
    returns False and leaves ``tmp`` for the caller to discard.
    """
    if not replace:
        return _rename_noreplace(tmp, final)
    if not (final.exists() or final.is_symlink()) and _rename_noreplace(tmp, final):
        return True
    if exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)  # ``tmp`` now holds the old node
        return True
    aside = final.with_name(temp_name(final.name))
    os.rename(final, aside)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(aside, final)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return True


def discard(tmp: Path) -> None:
    """Remove a failed build's temporary folder."""
    shutil.rmtree(tmp, ignore_errors=True)
