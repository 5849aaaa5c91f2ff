"""Per-model extra features for the predictors: zero-cost proxies read from a store (:class:`ProxyFeatures`).

``MLPPredictor``, ``TreePredictor``, ``GCNPredictor`` and ``GINPredictor`` take ``features=ProxyFeatures(...)``
(keyword-only; ``None``, the default, leaves them exactly as without the option). ``fit`` fits the features'
transform on the training models only and keeps the fitted copy; ``predict`` transforms the queried models
with those statistics. The baselines concatenate the features to the one-hot block encoding; the graph
predictors concatenate them to the graph readout before the final linear layer (see :mod:`.gcn`).

The transform, column by column (one column per proxy), with statistics of the TRAINING models only:

1. signed log: ``z = sign(x) * log1p(|x|)``, for every proxy. The raw scores are heavy-tailed (synflow spans
   1e10 .. 1e24 on Blox-mini, grasp is signed with a long tail on both sides); the signed log is monotone,
   keeps 0 at 0 and the sign, so no proxy's ranking changes;
2. missing values (NaN: a proxy that was not computed or was not finite) are imputed with the training
   models' mean of ``z`` (NaN-aware), so an imputed entry is exactly 0 after step 3;
3. standardise: ``(z - mean) / std`` with the training models' NaN-aware mean and population std (ddof 0);
   a proxy constant on the training models gets ``std = 1``.

A proxy with no finite value among the training models cannot be fitted and is refused. Only the models of
the table (the store's rows) have features: asking for any other model is an
:class:`~blox_env.errors.ArchitectureNotFoundError`.

Saving (no pickle): a predictor with features writes ``features.npz`` (the table's model indices and raw
values, read back with ``allow_pickle=False``) and, in ``predictor.json`` under ``"features"``, the proxy
names, the init seed, the transform's name and the fitted mean and std; loading restores the fitted copy,
so a loaded predictor predicts exactly what the saved one did without the store. The table is stored whole
(13 proxies of 729 models: 76 KB; of all 91,125: 9.5 MB).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.errors import (
    ArchitectureNotFoundError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    PredictorFolderError,
    PredictorNotFittedError,
)
from blox_env.predictors.folders import load_arrays, number, require_keys
from blox_env.space import N_MODELS, as_indices

__all__ = ["FEATURES_FILE", "TRANSFORM", "ProxyFeatures", "check_features", "features_meta", "read_features",
           "signed_log1p", "write_features"]

FEATURES_FILE = "features.npz"
TRANSFORM = "signed_log1p+impute_train_mean+standardise_train"
"""Name of the transform (recorded in saved predictors; a folder naming another one is refused)."""


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)`` elementwise (NaN stays NaN)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass(frozen=True, eq=False)
class ProxyFeatures:
    """Zero-cost proxies of a store's models as predictor features: a table plus the transform's statistics.

    Build it with :meth:`from_store` (or directly from ``names``, sorted model ``indices`` and raw ``values``
    ``[len(indices), len(names)]``, NaN = missing). :meth:`fit` returns a fitted copy (``mean``/``std`` of the
    signed-log values on the training models); :meth:`transform` gives the ``[n, k]`` float32 features.
    The transform is described in the module docstring.
    """

    names: tuple[str, ...]
    indices: np.ndarray
    values: np.ndarray
    init_seed: int | str = "mean"
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def __post_init__(self) -> None:
        if isinstance(self.names, str) or not isinstance(self.names, Sequence) or not self.names or not all(
                isinstance(n, str) for n in self.names):
            raise InvalidArgumentTypeError(f"names must be a non-empty tuple of proxy names, got {self.names!r}")
        if len(set(self.names)) != len(self.names):
            raise InvalidArgumentError(f"proxy names repeat: {list(self.names)}")
        if not (self.init_seed == "mean" or (isinstance(self.init_seed, int | np.integer) and not isinstance(
                self.init_seed, bool) and int(self.init_seed) >= 0)):
            raise InvalidArgumentError(f"init_seed must be an integer >= 0 or 'mean', got {self.init_seed!r}")
        idx = np.asarray(self.indices)
        values = np.asarray(self.values, dtype=np.float64)
        if idx.ndim != 1 or idx.dtype.kind not in "iu" or (len(idx) and (idx.min() < 0 or idx.max() >= N_MODELS)):
            raise InvalidArgumentError(f"indices must be a 1-d integer array of model indices in 0..{N_MODELS - 1}")
        if len(idx) == 0 or np.any(np.diff(idx) <= 0):
            raise InvalidArgumentError("indices must be non-empty, sorted and distinct")
        if values.shape != (len(idx), len(self.names)):
            raise InvalidArgumentError(f"values must have shape (models, proxies) = ({len(idx)}, {len(self.names)}), "
                                       f"got {values.shape}")
        if np.isinf(values).any():
            raise InvalidArgumentError("values must be finite or NaN (missing), not infinite")
        stats = (self.mean is None, self.std is None)
        if stats[0] != stats[1]:
            raise InvalidArgumentError("give both mean and std (a fitted transform) or neither")
        if not stats[0]:
            mean, std = (np.asarray(a, dtype=np.float64) for a in (self.mean, self.std))
            if mean.shape != (len(self.names),) or std.shape != mean.shape:
                raise InvalidArgumentError(f"mean and std must have one value per proxy ({len(self.names)}), got "
                                           f"shapes {mean.shape} and {std.shape}")
            if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
                raise InvalidArgumentError("mean must be finite and std finite and > 0")
            object.__setattr__(self, "mean", _frozen(mean))
            object.__setattr__(self, "std", _frozen(std))
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "indices", _frozen(idx.astype(np.int64)))
        object.__setattr__(self, "values", _frozen(values))

    @classmethod
    def from_store(cls, store: Any, names: Sequence[str] | None = None, *,
                   init_seed: int | str = "mean") -> ProxyFeatures:
        """The proxies ``names`` (default: every proxy the store holds) of all the store's models at
        ``init_seed`` (one of ``store.proxy_init_seeds()`` or ``"mean"`` over them, NaN-aware); unfitted."""
        held = list(store.proxy_names())
        if not held:
            raise InvalidArgumentError("the store holds no zero-cost proxies: compute them with "
                                       "`blox build-proxies STORE` (the bundled Blox-mini has all 13)")
        if names is None:
            names = tuple(held)
        elif isinstance(names, str) or not isinstance(names, Sequence):
            raise InvalidArgumentTypeError(f"names must be a tuple of proxy names (e.g. ('snip',)), got {names!r}")
        unknown = [n for n in names if n not in held]
        if unknown:
            raise InvalidArgumentError(f"unknown proxy {', '.join(map(repr, unknown))}: this store has "
                                       f"{', '.join(held)}")
        seeds = list(store.proxy_init_seeds())
        if init_seed != "mean" and (isinstance(init_seed, bool) or init_seed not in seeds):
            raise InvalidArgumentError(f"init_seed must be one of {seeds} or 'mean', got {init_seed!r}")
        values = np.column_stack([store.get(f"proxy:{n}", init_seed=init_seed) for n in names])
        return cls(names=tuple(names), indices=np.asarray(store.index), values=values,
                   init_seed=init_seed if init_seed == "mean" else int(init_seed))

    # ------------------------------------------------------------------ use
    @property
    def n_features(self) -> int:
        return len(self.names)

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    def raw(self, archs: Any) -> np.ndarray:
        """``[n, k]`` raw proxy values (float64, NaN = missing) of ``archs``; every model must be in the table."""
        idx = as_indices(archs)
        pos = np.minimum(np.searchsorted(self.indices, idx), len(self.indices) - 1)
        missing = self.indices[pos] != idx
        if missing.any():
            raise ArchitectureNotFoundError(
                f"no proxy features for {int(missing.sum())} of {len(idx)} models (first: index "
                f"{int(idx[missing][0])}): the feature table covers the {len(self.indices)} models of its store")
        return self.values[pos]

    def fit(self, archs: Any) -> ProxyFeatures:
        """A copy with the transform's statistics fitted on the models ``archs`` (the training models)."""
        z = signed_log1p(self.raw(archs))
        finite = np.isfinite(z)
        empty = [n for n, ok in zip(self.names, finite.any(axis=0)) if not ok]
        if empty:
            raise InvalidArgumentError(f"proxy {', '.join(empty)} has no value for any of the {len(z)} training "
                                       "models: leave it out (names=...)")
        count = finite.sum(axis=0)
        mean = np.where(finite, z, 0.0).sum(axis=0) / count
        std = np.sqrt(np.where(finite, (z - mean) ** 2, 0.0).sum(axis=0) / count)
        return dataclasses.replace(self, mean=mean, std=np.where(std > 1e-12, std, 1.0))

    def transform(self, archs: Any) -> np.ndarray:
        """``[n, k]`` float32 features of ``archs`` (signed log, NaN -> training mean, standardised)."""
        if self.mean is None or self.std is None:
            raise PredictorNotFittedError("ProxyFeatures are not fitted: call .fit(train_archs) first "
                                          "(a predictor's fit does it)")
        z = signed_log1p(self.raw(archs))
        z = np.where(np.isnan(z), self.mean, z)
        return ((z - self.mean) / self.std).astype(np.float32)

    def __repr__(self) -> str:
        state = "fitted" if self.fitted else "unfitted"
        return (f"ProxyFeatures({len(self.names)} proxies {', '.join(self.names)}; init_seed={self.init_seed!r}; "
                f"{len(self.indices)} models; {state})")


def _frozen(a: np.ndarray) -> np.ndarray:
    out = np.array(a, copy=True)
    out.setflags(write=False)
    return out


# ---------------------------------------------------------------------- predictors' shared plumbing
def check_features(features: Any) -> ProxyFeatures | None:
    """A predictor's ``features=`` argument: ``None`` or a :class:`ProxyFeatures`."""
    if features is not None and not isinstance(features, ProxyFeatures):
        raise InvalidArgumentTypeError(f"features must be a ProxyFeatures (ProxyFeatures.from_store(store)) or None, "
                                       f"got {type(features).__name__}")
    return features


def features_meta(features: ProxyFeatures | None) -> dict[str, Any]:
    """The ``predictor.json`` entry of fitted features (``{}`` without features, so such folders are unchanged)."""
    if features is None:
        return {}
    if features.mean is None or features.std is None:
        raise PredictorNotFittedError("the predictor's features are not fitted")
    return {"features": {"kind": "proxies", "names": list(features.names), "init_seed": features.init_seed,
                         "transform": TRANSFORM, "mean": features.mean.tolist(), "std": features.std.tolist()}}


def write_features(folder: Path, features: ProxyFeatures | None) -> None:
    """Write the feature table next to the predictor (nothing without features)."""
    if features is not None:
        np.savez(folder / FEATURES_FILE, indices=features.indices, values=features.values)


def read_features(folder: Path, entry: Any) -> ProxyFeatures | None:
    """The fitted features of a saved predictor (``entry``: its ``"features"`` meta, ``None`` when absent)."""
    if entry is None:
        if (folder / FEATURES_FILE).exists():
            raise PredictorFolderError(f"{FEATURES_FILE} is present but predictor.json names no features")
        return None
    entry = require_keys(entry, what="features", required=("kind", "names", "init_seed", "transform", "mean", "std"))
    if entry["kind"] != "proxies" or entry["transform"] != TRANSFORM:
        raise PredictorFolderError(f"features: kind {entry['kind']!r} with transform {entry['transform']!r} is not "
                                   f"supported (this blox-env writes 'proxies' with {TRANSFORM!r})")
    for key in ("names", "mean", "std"):
        if not isinstance(entry[key], list):
            raise PredictorFolderError(f"features.{key} must be a list, got {entry[key]!r}")
    mean = [number(v, what="features.mean") for v in entry["mean"]]
    std = [number(v, what="features.std", positive=True) for v in entry["std"]]
    data = load_arrays(folder / FEATURES_FILE, {"indices": (1, "iu"), "values": (2, "f")})
    try:
        return ProxyFeatures(names=tuple(entry["names"]), indices=data["indices"], values=data["values"],
                             init_seed=entry["init_seed"], mean=np.asarray(mean), std=np.asarray(std))
    except InvalidArgumentError as exc:
        raise PredictorFolderError(f"features: {exc}") from None
