"""``SurrogateReward``: any fitted predictor behind the env's reward Protocol.

For stores that cover only part of a space (or none of it): ``gym.make("Blox-v0",
reward="surrogate", backend=SurrogateReward(predictor, ...))``. Every evaluation
reports ``source="surrogate"`` and carries the predictor's held-out Spearman
(``metrics["surrogate_spearman"]``) so results are never mistaken for measured
ones. Pairwise predictors (BRP) score each model against a fixed ``reference``
set. Predictions are cached per model; the cost of a surrogate evaluation is
what the caller says it is (``cost_per_eval`` in the chosen unit, default 0 s,
1 evaluation, ``fidelity`` epochs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from blox_env.costs import static_costs
from blox_env.errors import InvalidArgumentError
from blox_env.rewards.base import BaseReward, Evaluation, unit_cost
from blox_env.shapes import ModelConfig
from blox_env.space import FULL_SPACE, Arch, SubSpace

__all__ = ["SurrogateReward"]


class SurrogateReward(BaseReward):
    """Predicted metrics of any model of ``space`` from a fitted predictor."""

    source = "surrogate"

    def __init__(self, predictor: Any, *, metric: str = "val_top1", space: SubSpace = FULL_SPACE,
                 holdout_spearman: float | None = None, max_fidelity: int = 1, cost_per_eval: float = 0.0,
                 model_config: ModelConfig | None = None, reference: list[Arch] | None = None) -> None:
        if not hasattr(predictor, "predict"):
            raise InvalidArgumentError(f"predictor must have predict(archs), got {type(predictor).__name__}")
        self.predictor = predictor
        self.metric = metric
        self.space = space
        self.max_fidelity = int(max_fidelity)
        self.holdout_spearman = float("nan") if holdout_spearman is None else float(holdout_spearman)
        self.cost_per_eval = float(cost_per_eval)
        self.model_config = model_config
        self.reference = reference
        if hasattr(predictor, "compare") and reference is None:
            raise InvalidArgumentError("a pairwise predictor (BRP) scores models against others: pass reference=archs")
        self._cache: dict[int, float] = {}

    def predict_many(self, archs: list[Arch]) -> np.ndarray:
        """Predictions for many models at once (cached)."""
        todo = [a for a in archs if a.index not in self._cache]
        if todo:
            kw = {"reference": self.reference} if self.reference is not None else {}
            for a, v in zip(todo, np.asarray(self.predictor.predict(todo, **kw), dtype=np.float64)):
                self._cache[a.index] = float(v)
        return np.array([self._cache[a.index] for a in archs])

    def evaluate(self, arch: Arch, fidelity: int | None = None, *, cost_unit: str = "seconds",
                 rng: np.random.Generator | None = None) -> Evaluation:
        e = self.fidelity(fidelity)
        if arch not in self.space:
            raise InvalidArgumentError(f"{arch!r} is outside this surrogate's space")
        unit = float(unit_cost(cost_unit, seconds=self.cost_per_eval, epochs=e))
        cost = static_costs(arch, self.model_config)
        metrics = {self.metric: float(self.predict_many([arch])[0]), "params": float(cost.params),
                   "flops": float(cost.macs), "surrogate_spearman": self.holdout_spearman}
        return Evaluation(arch, metrics, unit, cost_unit, self.source, e, None)
