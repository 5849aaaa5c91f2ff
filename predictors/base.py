"""The Predictor Protocol and what every predictor shares: inputs, target scaling, saving, training.

Protocol (DESIGN.md): ``fit(archs, y, *, seed, **kw) -> self``, ``predict(archs) ->
ndarray``, ``save(path)``, ``classmethod load(path)``; pairwise predictors add
``compare(a, b)``. ``archs`` may be a list of :class:`~blox_env.space.Arch`, model
indices, anything :func:`~blox_env.space.parse_arch` reads, or an integer numpy array.

Saved predictors are a directory: ``predictor.json`` (class, format version,
config, scaler, fitted scalars) plus, for torch models, ``weights.pt`` holding a
plain-tensor ``state_dict`` written with ``torch.save`` and read back with
``torch.load(weights_only=True)``; numpy models write ``arrays.npz`` (read with
``allow_pickle=False``). Nothing is pickled, so loading cannot run code.

This module imports torch only inside the torch helpers, so the signature
predictors and the metrics stay light.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np

from blox_env.errors import InvalidArgumentError, PredictorFolderError, PredictorNotFittedError
from blox_env.predictors.folders import (
    READ_ERRORS,
    config_from_meta,
    load_tensors,
    number,
    read_meta,
    require_keys,
)
from blox_env.space import as_indices

if TYPE_CHECKING:
    import torch

__all__ = [
    "FORMAT_VERSION",
    "BasePredictor",
    "PairwisePredictor",
    "Predictor",
    "TargetScaler",
    "check_training_data",
    "seeded_torch",
    "train_torch_regressor",
]

FORMAT_VERSION = 1
MAX_LAYERS = 64
MAX_WIDTH = 16384
"""Bounds of layer counts and widths (``hidden``, ``classifier_hidden``): far beyond useful, far below an OOM."""
_WIDTHS = ("hidden", "classifier_hidden")
META_FILE = "predictor.json"
WEIGHTS_FILE = "weights.pt"
ARRAYS_FILE = "arrays.npz"


@runtime_checkable
class Predictor(Protocol):
    """What every accuracy predictor offers."""

    def fit(self, archs: Any, y: Any, *, seed: int | np.random.Generator, **kw: Any) -> Self: ...

    def predict(self, archs: Any) -> np.ndarray: ...

    def save(self, path: str | Path) -> Path: ...

    @classmethod
    def load(cls, path: str | Path) -> Self: ...


@runtime_checkable
class PairwisePredictor(Predictor, Protocol):
    """A predictor that also says how likely ``a`` beats ``b``."""

    def compare(self, a: Any, b: Any) -> np.ndarray: ...


def check_training_data(archs: Any, y: Any, *, min_size: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, float64 targets)`` after checking lengths match, targets are finite, enough models."""
    idx = as_indices(archs)
    target = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(target) != len(idx):
        raise InvalidArgumentError(f"got {len(idx)} architectures but {len(target)} targets: they must match")
    if len(idx) < min_size:
        raise InvalidArgumentError(f"need at least {min_size} training models, got {len(idx)}")
    if not np.isfinite(target).all():
        raise InvalidArgumentError(f"targets must be finite: {int((~np.isfinite(target)).sum())} are NaN or inf")
    return idx, target


def rng_seed(seed: int | np.random.Generator) -> int:
    """An int seed from a seed or a Generator (draws once from the Generator)."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**31 - 1))
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise InvalidArgumentError(f"seed must be a non-negative integer or a numpy Generator, got {seed!r}")
    return int(seed)


@dataclass(frozen=True)
class TargetScaler:
    """Standardisation of targets (``(y - mean) / std``) so losses and learning rates are scale-free."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, y: np.ndarray) -> TargetScaler:
        std = float(np.std(y))
        return cls(float(np.mean(y)), std if std > 1e-12 else 1.0)

    def transform(self, y: np.ndarray) -> np.ndarray:
        return (np.asarray(y, dtype=np.float64) - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * self.std + self.mean


def check_config(config: Any) -> None:
    """Reject non-positive sizes/rates and out-of-range dropout in a predictor config dataclass."""
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name == "dropout":
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise InvalidArgumentError(f"dropout must be in [0, 1), got {value!r}")
        elif f.name == "weight_decay":
            if not isinstance(value, (int, float)) or value < 0:
                raise InvalidArgumentError(f"weight_decay must be >= 0, got {value!r}")
        elif isinstance(value, (bool, str)):
            continue
        elif isinstance(f.default, int) and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
            raise InvalidArgumentError(f"{f.name} must be a positive integer, got {value!r}")
        elif isinstance(value, (int, float)) and not value > 0:
            raise InvalidArgumentError(f"{f.name} must be positive, got {value!r}")
        elif (f.name == "layers" and value > MAX_LAYERS) or (f.name in _WIDTHS and value > MAX_WIDTH):
            limit = MAX_LAYERS if f.name == "layers" else MAX_WIDTH
            raise InvalidArgumentError(f"{f.name} = {value!r} is too large: allowed 1..{limit}")
    if getattr(config, "device", "cpu") not in ("cpu", "cuda") and not str(config.device).startswith("cuda:"):
        raise InvalidArgumentError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {config.device!r}")


class BasePredictor:
    """Shared plumbing: fitted-state checks and the directory save format (see the module docstring)."""

    fitted_: bool = False
    _format_name: ClassVar[str] = ""

    def _fit_inputs(self, archs: Any, y: Any, options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Checked ``(indices, targets)`` for ``fit``; unknown fit options are a TypeError."""
        if options:
            raise TypeError(f"{type(self).__name__}.fit got unexpected options {sorted(options)}")
        return check_training_data(archs, y)

    def _require_fitted(self) -> None:
        if not self.fitted_:
            raise PredictorNotFittedError(f"{type(self).__name__} is not fitted: call fit(archs, y, seed=...) first")

    # subclasses provide these three -------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        """JSON-able state (config, scaler, fitted scalars)."""
        raise NotImplementedError

    def _write_arrays(self, folder: Path) -> None:
        """Write tensors/arrays next to the JSON (nothing by default)."""

    @classmethod
    def _restore(cls, folder: Path, meta: dict[str, Any]) -> Self:
        raise NotImplementedError

    # -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted predictor to the directory ``path`` (created); returns it."""
        self._require_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self._write_arrays(folder)
        meta = {"predictor": type(self).__name__, "format_version": FORMAT_VERSION, **self._meta()}
        (folder / META_FILE).write_text(json.dumps(meta, indent=1, allow_nan=False))
        return folder

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a predictor written by :meth:`save` (of this class), validating the folder before building.

        Any problem (missing or damaged file, edited JSON, out-of-range hyperparameter, tensor that
        does not fit the config) raises one :class:`PredictorFolderError` naming the folder.
        """
        folder = Path(path)
        try:
            meta = read_meta(folder, meta_file=META_FILE, expected=cls.__name__, version=FORMAT_VERSION)
            return cls._restore(folder, meta)
        except READ_ERRORS as exc:  # PredictorFolderError included: say which folder and what was expected
            what = str(exc) if isinstance(exc, PredictorFolderError) else f"{type(exc).__name__}: {exc}"
            raise PredictorFolderError(f"{folder} is not a usable saved {cls.__name__}: {what}") from exc


def meta_keys(meta: dict[str, Any], *required: str, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """``meta`` after checking it has exactly the class's keys (plus the name and format version)."""
    return require_keys(meta, what=META_FILE, required=("predictor", "format_version", *required), optional=optional)


def scaler_from_meta(data: Any) -> TargetScaler:
    """A saved :class:`TargetScaler`: finite mean, positive finite std."""
    data = require_keys(data, what="scaler", required=("mean", "std"))
    return TargetScaler(float(number(data["mean"], what="scaler.mean")),
                        float(number(data["std"], what="scaler.std", positive=True)))


def config_from_dict(config_cls: type, data: Any) -> Any:
    """Rebuild a frozen config dataclass from its ``asdict`` form: all fields, their types, no unknown keys."""
    return config_from_meta(config_cls, data)


def config_dict(config: Any) -> dict[str, Any]:
    return asdict(config)


# torch helpers ----------------------------------------------------------------------
@contextlib.contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Seed torch inside the block only (``fork_rng`` restores the global state afterwards)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def save_state(folder: Path, module: torch.nn.Module) -> None:
    """``torch.save`` of a plain-tensor state dict (loadable with ``weights_only=True``)."""
    import torch

    torch.save({k: v.detach().cpu().clone() for k, v in module.state_dict().items()}, folder / WEIGHTS_FILE)


def load_state(folder: Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """The weights of a saved torch predictor, checked against the ``shapes`` its config implies (before building)."""
    return load_tensors(folder / WEIGHTS_FILE, shapes)


def train_torch_regressor(model: torch.nn.Module, make_input: Callable[[np.ndarray], Any], y: np.ndarray, *,
                          epochs: int, batch_size: int, lr: float, weight_decay: float, seed: int,
                          device: str = "cpu") -> float:
    """MSE training with AdamW and a per-epoch cosine schedule; returns seconds spent.

    ``make_input(positions)`` builds the model input of those training positions
    (e.g. a batched graph; a tuple is passed as the model's positional arguments, e.g.
    ``(graph, extra_features)``); ``y`` are already-normalised targets. Shuffling uses
    a numpy Generator from ``seed``; call inside :func:`seeded_torch` for dropout.
    """
    import torch

    rng = np.random.default_rng(seed)
    target = torch.as_tensor(y, dtype=torch.float32, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    n = len(y)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        perm = rng.permutation(n)
        for lo in range(0, n, batch_size):
            pos = perm[lo : lo + batch_size]
            if len(pos) < 2 and n >= 2:  # a lone sample gives a degenerate step; fold it into the next epoch
                continue
            opt.zero_grad(set_to_none=True)
            inputs = make_input(pos)
            out = model(*inputs) if isinstance(inputs, tuple) else model(inputs)
            loss = torch.nn.functional.mse_loss(out, target[torch.from_numpy(pos).to(device)])
            if not math.isfinite(float(loss.detach())):
                from blox_env.errors import TrainingDivergedError

                raise TrainingDivergedError("predictor training loss became NaN or infinite: lower the lr")
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    return time.perf_counter() - start
