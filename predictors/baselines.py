"""Baselines on the block encoding: one-hot MLP, tree ensemble, and a constant (mean) predictor.

The block encoding of a model is the concatenation of one one-hot vector per
stage over the 45 canonical blocks (``3 x 45 = 135`` binary features). It
knows nothing about the blocks' structure, which is exactly what a graph
predictor should beat. With ``features=ProxyFeatures(...)`` (:mod:`.features`) the
MLP and the tree ensemble see the one-hot encoding followed by the ``k`` transformed
zero-cost proxies of each model (``135 + k`` columns); the transform is fitted on the
training models in ``fit`` and saved with the predictor.

Saving. The MLP saves like the graph predictors (JSON + plain-tensor state
dict). The tree model is NOT pickled: it saves its hyperparameters, seed and
training data (model indices and targets, ``arrays.npz``) and refits on load.
scikit-learn's tree ensembles are deterministic for fixed data,
``random_state`` and ``n_jobs=1``, so the loaded model predicts exactly what
the saved one did (for the same scikit-learn version; with features, from the
saved feature table and statistics); refitting costs well under a second at
benchmark training sizes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from blox_env.errors import InvalidArgumentError
from blox_env.predictors.base import (
    ARRAYS_FILE,
    BasePredictor,
    TargetScaler,
    check_config,
    check_training_data,
    config_dict,
    config_from_dict,
    load_state,
    meta_keys,
    rng_seed,
    save_state,
    scaler_from_meta,
    seeded_torch,
    train_torch_regressor,
)
from blox_env.predictors.features import (
    ProxyFeatures,
    check_features,
    features_meta,
    read_features,
    write_features,
)
from blox_env.predictors.folders import load_arrays, number
from blox_env.space import N_BLOCKS, N_STAGES, as_indices, indices_to_blocks

__all__ = ["ConstantPredictor", "MLPConfig", "MLPPredictor", "TreePredictor", "one_hot_blocks"]


def one_hot_blocks(archs: Any) -> np.ndarray:
    """``[N, 135]`` float32 block encoding (stage s's block sets column ``45 * s + block``)."""
    blocks = indices_to_blocks(as_indices(archs))
    out = np.zeros((len(blocks), N_STAGES * N_BLOCKS), dtype=np.float32)
    rows = np.arange(len(blocks))
    for s in range(N_STAGES):
        out[rows, s * N_BLOCKS + blocks[:, s]] = 1.0
    return out


def _encode(idx: np.ndarray, features: ProxyFeatures | None) -> np.ndarray:
    """One-hot blocks, then (with fitted ``features``) the transformed proxies: ``[N, 135 + k]`` float32."""
    x = one_hot_blocks(idx)
    return x if features is None else np.concatenate([x, features.transform(idx)], axis=1)


@dataclass(frozen=True)
class MLPConfig:
    """Hyperparameters of the one-hot MLP."""

    layers: int = 2
    hidden: int = 256
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 200
    batch_size: int = 64
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_config(self)


class MLPPredictor(BasePredictor):
    """MLP regression on the one-hot block encoding (MSE on standardised targets, AdamW, cosine).

    ``features``: optional per-model proxy features appended to the encoding (module docstring).
    """

    def __init__(self, *, config: MLPConfig | None = None, features: ProxyFeatures | None = None,
                 **overrides: Any) -> None:
        base = config if config is not None else MLPConfig()
        names = {f.name for f in dataclasses.fields(MLPConfig)}
        if not isinstance(base, MLPConfig) or set(overrides) - names:
            raise InvalidArgumentError(f"give config=MLPConfig(...) and/or options among {sorted(names)}")
        self.config = dataclasses.replace(base, **overrides)
        self.features = check_features(features)
        self.scaler = TargetScaler()
        self.model: Any = None
        self.fitted_ = False
        self.fit_time_s_ = float("nan")

    def _build(self) -> Any:
        from torch import nn

        c = self.config
        dims = [self._in_dim()] + [c.hidden] * c.layers
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            mods += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(c.dropout)]
        mods.append(nn.Linear(dims[-1], 1))
        return nn.Sequential(*mods, nn.Flatten(0)).to(c.device)

    def _in_dim(self) -> int:
        return N_STAGES * N_BLOCKS + (0 if self.features is None else self.features.n_features)

    def _state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of :meth:`_build`'s state dict (``nn.Sequential`` indices), computed without building it."""
        c = self.config
        dims = [self._in_dim()] + [c.hidden] * c.layers
        shapes = {k: s for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))
                  for k, s in ((f"{3 * i}.weight", (b, a)), (f"{3 * i}.bias", (b,)))}
        return {**shapes, f"{3 * c.layers}.weight": (1, dims[-1]), f"{3 * c.layers}.bias": (1,)}

    def fit(self, archs: Any, y: Any, *, seed: int | np.random.Generator, **kw: Any) -> Self:
        """Train from scratch; ``seed`` fixes initialisation, dropout and shuffling; features are fitted on archs."""
        import torch

        idx, target = self._fit_inputs(archs, y, kw)
        s = rng_seed(seed)
        c = self.config
        if self.features is not None:
            self.features = self.features.fit(idx)
        x = torch.from_numpy(_encode(idx, self.features)).to(c.device)
        self.scaler = TargetScaler.fit(target)
        with seeded_torch(s):
            self.model = self._build()
            self.fit_time_s_ = train_torch_regressor(
                self.model, lambda pos: x[torch.from_numpy(pos).to(c.device)], self.scaler.transform(target),
                epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, weight_decay=c.weight_decay, seed=s,
                device=c.device)
        self.fitted_ = True
        return self

    def predict(self, archs: Any) -> np.ndarray:
        """Predicted metric in the units of the training targets."""
        import torch

        self._require_fitted()
        self.model.eval()
        with torch.no_grad():
            z = self.model(torch.from_numpy(_encode(as_indices(archs), self.features)).to(self.config.device))
            z = z.cpu().numpy()
        return self.scaler.inverse(z)

    def _meta(self) -> dict[str, Any]:
        return {"config": config_dict(self.config), "scaler": dataclasses.asdict(self.scaler),
                **features_meta(self.features)}

    def _write_arrays(self, folder: Path) -> None:
        save_state(folder, self.model)
        write_features(folder, self.features)

    @classmethod
    def _restore(cls, folder: Path, meta: dict[str, Any]) -> Self:
        meta_keys(meta, "config", "scaler", optional=("features",))
        pred = cls(config=config_from_dict(MLPConfig, meta["config"]),
                   features=read_features(folder, meta.get("features")))
        pred.scaler = scaler_from_meta(meta["scaler"])
        state = load_state(folder, pred._state_shapes())  # checked before the model is built
        pred.model = pred._build()
        pred.model.load_state_dict(state)
        pred.model.eval()
        pred.fitted_ = True
        return pred


class TreePredictor(BasePredictor):
    """scikit-learn tree ensemble on the one-hot block encoding.

    ``kind="gbrt"`` (default): ``GradientBoostingRegressor``; ``kind="rf"``:
    ``RandomForestRegressor``. ``n_estimators``, ``max_depth`` and
    ``learning_rate`` (boosting only) are passed through. ``features``: optional
    per-model proxy features appended to the encoding. Saved by training data
    and refitted on load (see the module docstring).
    """

    KINDS: ClassVar[tuple[str, ...]] = ("gbrt", "rf")
    MAX_ESTIMATORS: ClassVar[int] = 100_000
    MAX_DEPTH: ClassVar[int] = 256

    def __init__(self, *, kind: str = "gbrt", n_estimators: int = 300, max_depth: int | None = 3,
                 learning_rate: float = 0.05, features: ProxyFeatures | None = None) -> None:
        if kind not in self.KINDS:
            raise InvalidArgumentError(f"kind must be one of {', '.join(self.KINDS)}, got {kind!r}")
        if isinstance(n_estimators, bool) or not isinstance(n_estimators, int) or not (
                1 <= n_estimators <= self.MAX_ESTIMATORS):
            raise InvalidArgumentError(f"n_estimators must be an integer in 1..{self.MAX_ESTIMATORS}, "
                                       f"got {n_estimators!r}")
        if max_depth is not None and (isinstance(max_depth, bool) or not isinstance(max_depth, int) or not (
                1 <= max_depth <= self.MAX_DEPTH)):
            raise InvalidArgumentError(f"max_depth must be an integer in 1..{self.MAX_DEPTH} or None, "
                                       f"got {max_depth!r}")
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float) or not (
                0 < learning_rate < float("inf")):
            raise InvalidArgumentError(f"learning_rate must be a positive finite number, got {learning_rate!r}")
        self.kind, self.n_estimators, self.max_depth, self.learning_rate = kind, n_estimators, max_depth, learning_rate
        self.features = check_features(features)
        self.fitted_ = False
        self.seed_ = 0
        self.train_indices_ = np.zeros(0, dtype=np.int64)
        self.train_targets_ = np.zeros(0)
        self._model: Any = None

    def _make(self, seed: int) -> Any:
        from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

        if self.kind == "gbrt":
            return GradientBoostingRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                             learning_rate=self.learning_rate, subsample=0.8, random_state=seed)
        return RandomForestRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth, n_jobs=1,
                                     random_state=seed)

    def fit(self, archs: Any, y: Any, *, seed: int | np.random.Generator, **kw: Any) -> Self:
        """Fit the ensemble; ``seed`` is its ``random_state``; features are fitted on ``archs``."""
        idx, target = self._fit_inputs(archs, y, kw)
        if self.features is not None:
            self.features = self.features.fit(idx)
        return self._fit_ensemble(idx, target, rng_seed(seed))

    def _fit_ensemble(self, idx: np.ndarray, target: np.ndarray, seed: int) -> Self:
        self.seed_ = seed
        self._model = self._make(self.seed_).fit(_encode(idx, self.features), target)
        self.train_indices_, self.train_targets_ = idx, target
        self.fitted_ = True
        return self

    def predict(self, archs: Any) -> np.ndarray:
        """Predicted metric in the units of the training targets."""
        self._require_fitted()
        return np.asarray(self._model.predict(_encode(as_indices(archs), self.features)), dtype=np.float64)

    def _meta(self) -> dict[str, Any]:
        import sklearn

        return {"kind": self.kind, "n_estimators": self.n_estimators, "max_depth": self.max_depth,
                "learning_rate": self.learning_rate, "seed": self.seed_, "sklearn": sklearn.__version__,
                **features_meta(self.features)}

    def _write_arrays(self, folder: Path) -> None:
        np.savez(folder / ARRAYS_FILE, indices=self.train_indices_, targets=self.train_targets_)
        write_features(folder, self.features)

    @classmethod
    def _restore(cls, folder: Path, meta: dict[str, Any]) -> Self:
        meta_keys(meta, "kind", "n_estimators", "max_depth", "learning_rate", "seed", "sklearn",
                  optional=("features",))
        pred = cls(kind=meta["kind"], n_estimators=meta["n_estimators"], max_depth=meta["max_depth"],
                   learning_rate=meta["learning_rate"],  # the constructor bounds the ensemble's size
                   features=read_features(folder, meta.get("features")))  # fitted: the saved statistics
        seed = number(meta["seed"], what="seed", integer=True, minimum=0)
        data = load_arrays(folder / ARRAYS_FILE, {"indices": (1, "iu"), "targets": (1, "f")})
        idx, target = check_training_data(data["indices"], data["targets"])  # lengths, range, finiteness
        return pred._fit_ensemble(idx, target, seed)


class ConstantPredictor(BasePredictor):
    """Predicts the training mean for every model (the floor any predictor must clear)."""

    def __init__(self) -> None:
        self.value_ = 0.0
        self.fitted_ = False

    def fit(self, archs: Any, y: Any, *, seed: int | np.random.Generator | None = None, **kw: Any) -> Self:
        """Remember the mean target (``seed`` accepted and unused)."""
        _, target = check_training_data(archs, y, min_size=1)
        self.value_ = float(target.mean())
        self.fitted_ = True
        return self

    def predict(self, archs: Any) -> np.ndarray:
        self._require_fitted()
        return np.full(len(as_indices(archs)), self.value_)

    def _meta(self) -> dict[str, Any]:
        return {"value": self.value_}

    @classmethod
    def _restore(cls, folder: Path, meta: dict[str, Any]) -> Self:
        meta_keys(meta, "value")
        pred = cls()
        pred.value_ = float(number(meta["value"], what="value"))
        pred.fitted_ = True
        return pred
