"""Checks of a saved predictor folder, run before anything is built or allocated.

A predictor folder is user input: it may be truncated, hand-edited or swapped. Loading reads
``predictor.json`` (bounded size, strict keys and types), validates every hyperparameter (the
config dataclass's own checks, which bound widths and depths), derives the tensor shapes the config
implies, checks the weights file's size against them, and only then reads it (``weights_only``) and
compares every tensor's name, shape, dtype and finiteness. ``arrays.npz`` members are checked from
their ``.npy`` headers before they are read. Every failure is one :class:`PredictorFolderError`
(a :class:`~blox_env.errors.InvalidArgumentError`, so a ``ValueError``); ``BasePredictor.load``
adds the folder and the expected class to the message.
"""

from __future__ import annotations

import json
import math
import pickle
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.errors import InvalidArgumentError, PredictorFolderError

if TYPE_CHECKING:
    import torch

__all__ = [
    "MAX_META_BYTES", "config_from_meta", "known_predictors", "load_arrays",
    "load_tensors", "number", "read_meta", "require_keys",
]

MAX_META_BYTES = 16 << 20
"""``predictor.json`` holds configs and small arrays (signatures: 135 numbers): 16 MiB is far beyond any."""
_SLACK_BYTES = 1 << 20  # torch's zip container around the tensor bytes (names, pickle, alignment)
READ_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError, OSError, EOFError,
    pickle.UnpicklingError, zipfile.BadZipFile,
)
"""What reading a damaged file can raise (torch, numpy, zipfile); loading turns them into PredictorFolderError."""


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def known_predictors() -> list[str]:
    """Names of the predictor classes a folder may hold (for messages)."""
    from blox_env import predictors

    return sorted(n for n in predictors.__all__ if n.endswith("Predictor") and n not in (
        "Predictor", "BasePredictor", "PairwisePredictor"))


def read_meta(folder: Path, *, meta_file: str, expected: str, version: int) -> dict[str, Any]:
    """The parsed ``predictor.json`` of ``folder`` after checking size, JSON, class name and format version."""
    path = folder / meta_file
    if not path.is_file():
        where = "" if folder.is_dir() else " (the folder does not exist)"
        raise PredictorFolderError(f"{meta_file} is missing{where}")
    size = path.stat().st_size
    if size > MAX_META_BYTES:
        raise PredictorFolderError(f"{meta_file} is {size} bytes; a saved predictor's is at most {MAX_META_BYTES}")
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PredictorFolderError(f"{meta_file} is not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict):
        raise PredictorFolderError(f"{meta_file} must hold a JSON object, got {_kind(meta)}")
    kind = meta.get("predictor")
    if not isinstance(kind, str):
        raise PredictorFolderError(f"{meta_file} has no predictor name ('predictor' is {_kind(kind)})")
    if kind != expected:
        known = known_predictors()
        hint = "" if kind in known else f" (unknown kind; known: {', '.join(known)})"
        raise PredictorFolderError(f"it holds a {kind!r}, not a {expected}{hint}")
    found = meta.get("format_version")
    if isinstance(found, bool) or found != version:
        raise PredictorFolderError(f"predictor format {found!r} is not supported (this blox-env reads {version})")
    return meta


def require_keys(data: Any, *, what: str, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, Any]:
    """``data`` as a dict with exactly the ``required`` keys (plus any ``optional``); unknown keys are refused."""
    if not isinstance(data, dict):
        raise PredictorFolderError(f"{what} must be a JSON object, got {_kind(data)}")
    required, optional = set(required), set(optional)
    missing = sorted(required - set(data))
    unknown = sorted(set(data) - required - optional)
    if missing or unknown:
        parts = ([f"missing keys {missing}"] if missing else []) + ([f"unknown keys {unknown}"] if unknown else [])
        raise PredictorFolderError(f"{what}: {'; '.join(parts)}; expected {sorted(required | optional)}")
    return data


def number(value: Any, *, what: str, integer: bool = False, minimum: float | None = None,
           maximum: float | None = None, positive: bool = False) -> Any:
    """A finite JSON number (an int when ``integer``) within the given bounds; anything else is refused."""
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not math.isfinite(value):
        raise PredictorFolderError(f"{what} must be a finite {'integer' if integer else 'number'}, got {value!r}")
    if (positive and not value > 0) or (minimum is not None and value < minimum) or (
            maximum is not None and value > maximum):
        low = "> 0" if positive else (f">= {minimum}" if minimum is not None else "")
        bounds = " and ".join(b for b in (low, f"<= {maximum}" if maximum is not None else "") if b)
        raise PredictorFolderError(f"{what} = {value!r} is out of range: allowed {bounds}")
    return value


def config_from_meta(config_cls: type, data: Any, *, what: str = "config") -> Any:
    """Rebuild a config dataclass: every field present with its default's type, no others, then its own checks."""
    data = require_keys(data, what=what, required=[f.name for f in fields(config_cls)])
    for f in fields(config_cls):
        default, value = f.default, data[f.name]
        if default is MISSING:
            continue
        if isinstance(default, bool | str):
            if type(value) is not type(default):
                raise PredictorFolderError(f"{what}.{f.name} must be a {type(default).__name__}, got {value!r}")
        elif isinstance(default, int | float):
            number(value, what=f"{what}.{f.name}", integer=isinstance(default, int))
    try:
        return config_cls(**data)  # the dataclass's __post_init__ bounds sizes, depths and rates
    except InvalidArgumentError as exc:
        raise PredictorFolderError(f"{what}: {exc}") from None


def load_tensors(path: Path, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """The float32 tensors of a ``torch.save``d state dict, checked against ``shapes`` before and after reading."""
    import torch

    if not path.is_file():
        raise PredictorFolderError(f"{path.name} is missing")
    need = 4 * sum(math.prod(s) for s in shapes.values())
    size = path.stat().st_size
    if size < need:
        raise PredictorFolderError(f"{path.name} is {size} bytes, but the config implies {need} bytes of float32 "
                                   "weights: the file is truncated or the config was edited")
    if size > 2 * need + _SLACK_BYTES:
        raise PredictorFolderError(f"{path.name} is {size} bytes, far more than the {need} bytes of weights the "
                                   "config implies: the config was edited or the file replaced")
    if not zipfile.is_zipfile(path):
        raise PredictorFolderError(f"{path.name} is not a torch weights file (no zip archive): it is damaged")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except READ_ERRORS as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise PredictorFolderError(f"{path.name} cannot be read ({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise PredictorFolderError(f"{path.name} must hold a dict of named tensors, got {_kind(state)}")
    missing, extra = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
    if missing or extra:
        raise PredictorFolderError(f"{path.name} does not fit the config: missing tensors {missing}, "
                                   f"unexpected tensors {extra}")
    for name, shape in shapes.items():
        t = state[name]
        if tuple(t.shape) != tuple(shape) or t.dtype != torch.float32:
            raise PredictorFolderError(f"{path.name}: tensor {name!r} is {tuple(t.shape)} {t.dtype}, the config "
                                       f"implies {tuple(shape)} torch.float32")
        if not bool(torch.isfinite(t).all()):
            raise PredictorFolderError(f"{path.name}: tensor {name!r} holds NaN or infinite values")
    return state


def load_arrays(path: Path, spec: Mapping[str, tuple[int, str]]) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` (``name -> (ndim, dtype kinds)``), headers checked against member sizes first."""
    if not path.is_file():
        raise PredictorFolderError(f"{path.name} is missing")
    try:
        with zipfile.ZipFile(path) as zf:
            members = {i.filename: i for i in zf.infolist()}
            if set(members) != {f"{k}.npy" for k in spec}:
                raise PredictorFolderError(f"{path.name} holds {sorted(members)}, expected "
                                           f"{sorted(f'{k}.npy' for k in spec)}")
            for key, (ndim, kinds) in spec.items():
                with zf.open(members[f"{key}.npy"]) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(fh)
                if len(shape) != ndim or dtype.kind not in kinds:
                    raise PredictorFolderError(f"{path.name}: {key!r} is a {len(shape)}-d {dtype} array, "
                                               f"expected {ndim}-d of kind {kinds!r}")
                if math.prod(shape) * dtype.itemsize > members[f"{key}.npy"].file_size:
                    raise PredictorFolderError(f"{path.name}: {key!r} claims shape {shape} but holds fewer bytes")
        with np.load(path, allow_pickle=False) as data:
            return {key: np.asarray(data[key]) for key in spec}
    except PredictorFolderError:
        raise
    except READ_ERRORS as exc:
        raise PredictorFolderError(f"{path.name} cannot be read ({type(exc).__name__}: {exc})") from None
