"""Blockwise signature predictors: DONNA (second-order regression on distillation losses) and LANA.

Both read per-block signatures from a ``[3, 45]`` array (stage x canonical
block), normally the block library's (:meth:`BlockLibrary.signatures
<blox_env.training.library.BlockLibrary.signatures>`): ``distill_loss`` for DONNA,
``lana_delta`` (the change of the teacher's validation accuracy when the block
replaces the teacher's) for LANA. NaN marks a block that was not distilled;
asking about a model that uses one raises :class:`InvalidArgumentError`.

- :class:`DonnaPredictor` (Moons et al., 2021): features ``x_s = sig[s, b_s]``,
  standardised, expanded with all second-order terms (scikit-learn's
  ``PolynomialFeatures(degree=2)`` order: ``x0, x1, x2, x0^2, x0x1, ...``),
  fitted with ``Ridge``. Few parameters (9 + intercept): it needs few training
  models, which is why it beats graph predictors at small budgets.
- :class:`LanaPredictor` (Molchanov et al., 2022): score ``sum_s sig[s, b_s]``,
  a ranking score that needs no training; ``fit`` optionally learns a scale and
  offset (least squares) so ``predict`` returns target units.

Saving writes JSON only (signatures with NaN as ``null``, fitted coefficients):
no pickles; the fitted ridge is exported as its coefficient arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np

from blox_env.errors import InvalidArgumentError, PredictorFolderError
from blox_env.predictors.base import BasePredictor, meta_keys
from blox_env.predictors.folders import number
from blox_env.space import N_BLOCKS, N_STAGES, as_indices, indices_to_blocks

__all__ = ["DonnaPredictor", "LanaPredictor", "poly2", "signature_features"]


def _check_signatures(signatures: Any, what: str) -> np.ndarray:
    try:
        arr = np.array(signatures, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{what} signatures must be a numeric [3, 45] array: {exc}") from None
    if arr.shape != (N_STAGES, N_BLOCKS):
        raise InvalidArgumentError(f"{what} signatures must have shape ({N_STAGES}, {N_BLOCKS}), got {arr.shape}")
    if np.isinf(arr).any():
        raise InvalidArgumentError(f"{what} signatures must be finite (NaN marks a missing block), found inf")
    arr.setflags(write=False)
    return arr


def signature_features(signatures: np.ndarray, archs: Any) -> np.ndarray:
    """``[N, 3]``: the signature of each stage's block for every model (raises on missing blocks)."""
    blocks = indices_to_blocks(as_indices(archs))
    x = np.stack([signatures[s, blocks[:, s]] for s in range(N_STAGES)], axis=1) if len(blocks) else \
        np.zeros((0, N_STAGES))
    bad = np.isnan(x)
    if bad.any():
        row, stage = map(int, np.argwhere(bad)[0])
        raise InvalidArgumentError(
            f"stage {stage} block {int(blocks[row, stage])} has no signature (not distilled); "
            f"{int(bad.any(axis=1).sum())} model(s) affected: distil those blocks or keep to distilled ones"
        )
    return x


def poly2(x: np.ndarray) -> np.ndarray:
    """Degree-2 polynomial features without bias, in scikit-learn's ``PolynomialFeatures`` order."""
    cols = [x[:, i] for i in range(x.shape[1])]
    cols += [x[:, i] * x[:, j] for i in range(x.shape[1]) for j in range(i, x.shape[1])]
    return np.stack(cols, axis=1)


def _json_array(arr: np.ndarray) -> list[Any]:
    return [[None if np.isnan(v) else float(v) for v in row] for row in arr]


def _from_json_array(data: Any) -> np.ndarray:
    """Saved signatures: a ``[3][45]`` list of finite numbers or null (a block that was not distilled)."""
    if not isinstance(data, list) or len(data) != N_STAGES or not all(
            isinstance(row, list) and len(row) == N_BLOCKS for row in data):
        raise PredictorFolderError(f"signatures must be a [{N_STAGES}][{N_BLOCKS}] list of numbers or null")
    return np.array([[np.nan if v is None else number(v, what="signatures[...]") for v in row] for row in data],
                    dtype=np.float64)


def _vector(data: Any, n: int, what: str, *, positive: bool = False) -> np.ndarray:
    """A saved list of ``n`` finite numbers."""
    if not isinstance(data, list) or len(data) != n:
        raise PredictorFolderError(f"{what} must be a list of {n} numbers")
    return np.array([number(v, what=what, positive=positive) for v in data], dtype=np.float64)


def _library_signatures(library: Any, config: Any, name: str) -> np.ndarray:
    sigs = library.signatures(config)
    if name not in sigs:
        raise InvalidArgumentError(f"the block library has no {name!r} signatures: it has {sorted(sigs)}")
    return sigs[name]


class DonnaPredictor(BasePredictor):
    """Ridge regression with second-order terms over per-stage distillation-loss signatures.

    ``alpha="auto"`` (the default) picks the L2 penalty by efficient leave-one-out cross-validation over
    ``ALPHAS`` at every fit: with 10 training models and 9 features a fixed tiny penalty (the earlier
    default 1e-3) leaves the quadratic fit nearly unregularised, and it ranked held-out models worse than
    the graph predictors even at the smallest training sets.
    """

    ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))

    def __init__(self, *, signatures: Any, alpha: float | str = "auto") -> None:
        if alpha != "auto" and (isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha >= 0):
            raise InvalidArgumentError(f"alpha must be 'auto' or a non-negative number, got {alpha!r}")
        self.signatures = _check_signatures(signatures, "DONNA")
        self.alpha: float | str = alpha if alpha == "auto" else float(alpha)
        self.alpha_ = float("nan")  # the penalty used by the last fit
        self.fitted_ = False
        self.x_mean_ = np.zeros(N_STAGES)
        self.x_std_ = np.ones(N_STAGES)
        self.coef_ = np.zeros(0)
        self.intercept_ = 0.0

    @classmethod
    def from_library(cls, library: Any, config: Any, *, alpha: float | str = "auto") -> DonnaPredictor:
        """Use a :class:`~blox_env.training.library.BlockLibrary`'s ``distill_loss`` under ``config``."""
        return cls(signatures=_library_signatures(library, config, "distill_loss"), alpha=alpha)

    def _design(self, archs: Any) -> np.ndarray:
        return poly2((signature_features(self.signatures, archs) - self.x_mean_) / self.x_std_)

    def fit(self, archs: Any, y: Any, *, seed: int | np.random.Generator | None = None, **kw: Any) -> Self:
        """Least squares with an L2 penalty ``alpha`` (deterministic: ``seed`` is accepted and unused)."""
        from sklearn.linear_model import Ridge, RidgeCV

        idx, target = self._fit_inputs(archs, y, kw)
        x = signature_features(self.signatures, idx)
        self.x_mean_ = x.mean(axis=0)
        std = x.std(axis=0)
        self.x_std_ = np.where(std > 1e-12, std, 1.0)
        design = self._design(idx)
        if self.alpha == "auto" and len(idx) >= 3:
            ridge = RidgeCV(alphas=self.ALPHAS).fit(design, target)  # leave-one-out (GCV mode)
            self.alpha_ = float(ridge.alpha_)
        else:
            self.alpha_ = self.ALPHAS[len(self.ALPHAS) // 2] if self.alpha == "auto" else float(self.alpha)
            ridge = Ridge(alpha=self.alpha_).fit(design, target)
        self.coef_ = np.asarray(ridge.coef_, dtype=np.float64)
        self.intercept_ = float(ridge.intercept_)
        self.fitted_ = True
        return self

    def predict(self, archs: Any) -> np.ndarray:
        """Predicted metric in the units of the training targets."""
        self._require_fitted()
        return self._design(archs) @ self.coef_ + self.intercept_

    def _meta(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "alpha_": self.alpha_, "signatures": _json_array(self.signatures),
                "x_mean": self.x_mean_.tolist(),
                "x_std": self.x_std_.tolist(), "coef": self.coef_.tolist(), "intercept": self.intercept_}

    @classmethod
    def _restore(cls, folder: Path, meta: dict[str, Any]) -> Self:
        meta_keys(meta, "alpha", "signatures", "x_mean", "x_std", "coef", "intercept", optional=("alpha_",))
        alpha = meta["alpha"] if meta["alpha"] == "auto" else number(meta["alpha"], what="alpha")
        pred = cls(signatures=_from_json_array(meta["signatures"]), alpha=alpha)
        if "alpha_" in meta:  # folders saved before the automatic penalty lack it
            pred.alpha_ = float(number(meta["alpha_"], what="alpha_"))
        pred.x_mean_ = _vector(meta["x_mean"], N_STAGES, "x_mean")
        pred.x_std_ = _vector(meta["x_std"], N_STAGES, "x_std", positive=True)
        pred.coef_ = _vector(meta["coef"], poly2(np.zeros((1, N_STAGES))).shape[1], "coef")
        pred.intercept_ = float(number(meta["intercept"], what="intercept"))
        pred.fitted_ = True
        return pred


class LanaPredictor(BasePredictor):
    """Sum of per-stage accuracy-change signatures: a ranking score (higher = better model).

    Usable without fitting (``predict`` returns the raw sum); ``fit`` learns
    ``y ~ scale * sum + offset`` so predictions come in target units (the ranking
    is unchanged when ``scale > 0``).
    """

    def __init__(self, *, signatures: Any) -> None:
        self.signatures = _check_signatures(signatures, "LANA")
        self.scale_ = 1.0
        self.offset_ = 0.0
        self.fitted_ = False

    @classmethod
    def from_library(cls, library: Any, config: Any) -> LanaPredictor:
        """Use a :class:`~blox_env.training.library.BlockLibrary`'s ``lana_delta`` under ``config``."""
        return cls(signatures=_library_signatures(library, config, "lana_delta"))

    def score(self, archs: Any) -> np.ndarray:
        """The raw LANA score ``sum_s sig[s, b_s]``."""
        return signature_features(self.signatures, archs).sum(axis=1)

    def fit(self, archs: Any, y: Any, *, seed: int | np.random.Generator | None = None, **kw: Any) -> Self:
        """Fit scale and offset by least squares (deterministic: ``seed`` is accepted and unused)."""
        idx, target = self._fit_inputs(archs, y, kw)
        s = self.score(idx)
        if np.ptp(s) < 1e-12:
            self.scale_, self.offset_ = 0.0, float(target.mean())
        else:
            self.scale_, self.offset_ = (float(v) for v in np.polyfit(s, target, 1))
        self.fitted_ = True
        return self

    def predict(self, archs: Any) -> np.ndarray:
        """``scale * score + offset`` (the raw score before ``fit``)."""
        return self.scale_ * self.score(archs) + self.offset_

    def _require_fitted(self) -> None:
        """LANA needs no training: predicting and saving work before ``fit``."""

    def _meta(self) -> dict[str, Any]:
        return {"signatures": _json_array(self.signatures), "scale": self.scale_, "offset": self.offset_,
                "fitted": self.fitted_}

    @classmethod
    def _restore(cls, folder: Path, meta: dict[str, Any]) -> Self:
        meta_keys(meta, "signatures", "scale", "offset", "fitted")
        pred = cls(signatures=_from_json_array(meta["signatures"]))
        pred.scale_ = float(number(meta["scale"], what="scale"))
        pred.offset_ = float(number(meta["offset"], what="offset"))
        if not isinstance(meta["fitted"], bool):
            raise PredictorFolderError(f"fitted must be true or false, got {meta['fitted']!r}")
        pred.fitted_ = meta["fitted"]
        return pred
