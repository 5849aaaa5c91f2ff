"""The official CIFAR-100/10 python files, read safely: folder layout, a restricted unpickler, raw arrays.

The standard pickles (``cifar-100-python/{train,test,meta}``,
``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``) are read with ``encoding="bytes"``
by a restricted unpickler that allows only the globals needed to rebuild a numpy array (plus
``_codecs.encode(str, "latin1")``, which Python 3 protocol-2 pickles use for ``bytes``); any other
global is refused before it is resolved, so a hostile file executes nothing. ``meta`` files are
optional (they only provide label names). :func:`read_cifar` returns the raw arrays;
:func:`blox_env.datasets.images.load_cifar` makes them an ``ImageData`` with the BLOX split.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from blox_env.errors import ImageDataFormatError, InvalidArgumentError, StoreNotFoundError, UnsafePickleError

__all__ = ["CifarFiles", "find_cifar_folder", "read_cifar", "restricted_unpickle"]


class CifarFiles(NamedTuple):
    """The raw content of a CIFAR folder: uint8 images ``[N, 3, 32, 32]``, int64 labels, optional label names."""

    folder: Path
    variant: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    label_names: list[str] | None


_CIFAR_LAYOUT: dict[int, tuple[str, tuple[str, ...], tuple[str, ...], str, bytes, bytes]] = {
    # folder, train files, test files, meta file, label key, label-name key
    100: ("cifar-100-python", ("train",), ("test",), "meta", b"fine_labels", b"fine_label_names"),
    10: ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "batches.meta",
         b"labels", b"label_names"),
}

try:  # numpy >= 2 (numpy 1.26 also ships numpy._core)
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - older numpy
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"refusing to rebuild an array of type {subtype!r}; only numpy.ndarray is allowed")
    return _np_reconstruct(subtype, shape, dtype)


def _dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    if not isinstance(spec, str | bytes):
        raise UnsafePickleError(f"refusing numpy dtype spec {spec!r}; only plain dtype strings are allowed")
    dtype = np.dtype(spec, bool(align), bool(copy))
    if dtype.hasobject:
        raise UnsafePickleError(f"refusing object dtype {spec!r}; image arrays hold numbers only")
    return dtype


def _encode(text: Any, encoding: Any = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("refusing _codecs.encode other than (str, 'latin1')")
    return text.encode("latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only :data:`_ALLOWED_GLOBALS` (each a checked wrapper); every other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS)
            raise UnsafePickleError(f"refusing global {module}.{name}; allowed: {allowed}") from None


def restricted_unpickle(path: str | Path) -> Any:
    """Load a CIFAR-style pickle (``encoding="bytes"``) without resolving any global outside the allow-list."""
    path = Path(path)
    with path.open("rb") as fh:
        try:
            return _RestrictedUnpickler(fh, encoding="bytes").load()
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{path}: {exc}") from None
        except OSError:
            raise
        except Exception as exc:  # truncated, garbage or inconsistent pickles: all format errors
            raise ImageDataFormatError(f"{path}: not a readable CIFAR python pickle ({exc})") from None


def _check_variant(variant: object) -> int:
    if isinstance(variant, bool) or variant not in _CIFAR_LAYOUT:
        raise InvalidArgumentError(f"variant must be 100 or 10, got {variant!r}")
    return int(variant)  # type: ignore[call-overload]


def find_cifar_folder(root: str | Path, *, variant: int = 100) -> Path | None:
    """The folder holding the CIFAR-``variant`` python files: ``root`` itself or its standard subfolder."""
    folder, train, test, *_ = _CIFAR_LAYOUT[_check_variant(variant)]
    root = Path(root).expanduser()
    for candidate in dict.fromkeys((root, root / folder)):
        if all((candidate / f).is_file() for f in (*train, *test)):
            return candidate
    return None


def _read_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    raw = restricted_unpickle(path)
    if not isinstance(raw, dict):
        raise ImageDataFormatError(f"{path}: expected a pickled dict, got {type(raw).__name__}")
    batch = {(k.encode() if isinstance(k, str) else k): v for k, v in raw.items()}
    data, labels = batch.get(b"data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} array {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ImageDataFormatError(f"{path}: b'data' must be a uint8 array [N, 3072], got {got}")
    problem = f"{path}: {label_key!r} must list {len(data)} int labels in [0, {num_classes})"
    if not isinstance(labels, list | np.ndarray):
        raise ImageDataFormatError(f"{problem}, got {type(labels).__name__}")
    try:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise ImageDataFormatError(f"{problem}; they are not integers") from None
    if len(y) != len(data) or (len(y) and (y.min() < 0 or y.max() >= num_classes)):
        raise ImageDataFormatError(f"{problem}, got {len(y)} in [{y.min(initial=0)}, {y.max(initial=0)}]")
    return data.reshape(-1, 3, 32, 32), y


def _label_names(path: Path, key: bytes) -> list[str] | None:
    if not path.is_file():
        return None
    meta = restricted_unpickle(path)
    names = meta.get(key, meta.get(key.decode())) if isinstance(meta, dict) else None
    if not isinstance(names, list):
        raise ImageDataFormatError(f"{path}: expected a dict with a list {key!r}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def read_cifar(root: str | Path, *, variant: int = 100) -> CifarFiles:
    """Every image and label of CIFAR-``variant`` (100 or 10) under ``root`` (the dataset folder or its parent)."""
    variant = _check_variant(variant)
    folder_name, train_files, test_files, meta_file, label_key, names_key = _CIFAR_LAYOUT[variant]
    folder = find_cifar_folder(root, variant=variant)
    if folder is None:
        base = Path(root).expanduser()
        raise StoreNotFoundError(
            f"no CIFAR-{variant} python data at {base}: looked for {', '.join((*train_files, *test_files))} in "
            f"{base} and in {base / folder_name}; extract the official {folder_name} archive there "
            "(blox-env never downloads it)")
    train_parts = [_read_batch(folder / f, label_key, variant) for f in train_files]
    test_parts = [_read_batch(folder / f, label_key, variant) for f in test_files]
    x_train, y_train = np.concatenate([p[0] for p in train_parts]), np.concatenate([p[1] for p in train_parts])
    x_test, y_test = np.concatenate([p[0] for p in test_parts]), np.concatenate([p[1] for p in test_parts])
    return CifarFiles(folder, variant, x_train, y_train, x_test, y_test, _label_names(folder / meta_file, names_key))
