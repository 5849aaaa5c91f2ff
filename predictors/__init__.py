"""Accuracy predictors (GCN, BRP, GIN, DONNA/LANA signature models); installed as ``blox_env.predictors``.

Every predictor follows :class:`~blox_env.predictors.base.Predictor`:
``fit(archs, y, *, seed) -> self``, ``predict(archs) -> ndarray``, ``save(dir)``,
``Cls.load(dir)``; :class:`BRPPredictor` adds ``compare(a, b)`` and ``rank(archs)``.
Graph predictors (torch + DGL) and the rest are imported lazily on first use, so
``import blox_env.predictors`` (and the light ones: metrics, DONNA/LANA,
constant) does not pay for torch and DGL.

- graph: :class:`GCNPredictor`, :class:`GINPredictor`, :class:`BRPPredictor`
- blockwise signatures: :class:`DonnaPredictor`, :class:`LanaPredictor`
- baselines on the one-hot block encoding: :class:`MLPPredictor`, :class:`TreePredictor`, :class:`ConstantPredictor`
- per-model extra features (zero-cost proxies from a store) for the baselines, GCN and GIN:
  :class:`ProxyFeatures` (``features=``)
- evaluation: :func:`evaluate_predictions`
"""

from __future__ import annotations

from blox_env.lazy import lazy_exports

#: Public name -> its defining module under ``blox_env`` (each class has that one import path besides this one;
#: errors, ``PredictorNotFittedError`` included, come from :mod:`blox_env.errors`).
_EXPORTS = {
    "BasePredictor": "predictors.base",
    "PairwisePredictor": "predictors.base",
    "Predictor": "predictors.base",
    "TargetScaler": "predictors.base",
    "GCNConfig": "predictors.gcn",
    "GCNPredictor": "predictors.gcn",
    "GINConfig": "predictors.gin",
    "GINPredictor": "predictors.gin",
    "BRPConfig": "predictors.brp",
    "BRPPredictor": "predictors.brp",
    "DonnaPredictor": "predictors.signatures",
    "LanaPredictor": "predictors.signatures",
    "ConstantPredictor": "predictors.baselines",
    "MLPConfig": "predictors.baselines",
    "MLPPredictor": "predictors.baselines",
    "TreePredictor": "predictors.baselines",
    "one_hot_blocks": "predictors.baselines",
    "ProxyFeatures": "predictors.features",
    "evaluate_predictions": "predictors.metrics",
    "precision_at_k": "predictors.metrics",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, {k: f"blox_env.{m}" for k, m in _EXPORTS.items()}, globals())
