"""``SurrogateReward``: any fitted predictor behind the env's reward Protocol.

For stores that cover only part of a space (or none of it): ``gym.make("Blox-v0",
reward="surrogate", backend=SurrogateReward(predictor, ...))``. Every evaluation
reports ``source="surrogate"`` so results are never mistaken for measured ones.
``metrics["surrogate_spearman"]`` is the Spearman rank correlation between the
predictor's predictions and the true values on held-out models (ones it was not
fitted on): computed from ``holdout=(archs, values)`` or given as
``holdout_spearman=``. Without either, or with fewer than 3 labelled held-out
models, it is left out of the metrics (never NaN), ``spearman_note`` says why and
a warning says so once. Pairwise predictors (BRP) score each model against a fixed ``reference``
set. Predictions are cached per model; the cost of a surrogate evaluation is
what the caller says it is (``cost_per_eval`` in the chosen unit, default 0 s,
1 evaluation, ``fidelity`` epochs).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from blox_env.costs import static_costs
from blox_env.errors import InvalidArgumentError
from blox_env.rewards.base import BaseReward, Evaluation
from blox_env.runs.budget import unit_cost
from blox_env.shapes import ModelConfig
from blox_env.space import FULL_SPACE, Arch, SubSpace

__all__ = ["MIN_HOLDOUT", "SurrogateReward"]

#: Fewest labelled held-out models a rank correlation is computed from.
MIN_HOLDOUT = 3


class SurrogateReward(BaseReward):
    """Predicted metrics of any model of ``space`` from a fitted predictor."""

    source = "surrogate"

    def __init__(self, predictor: Any, *, metric: str = "val_top1", space: SubSpace = FULL_SPACE,
                 holdout_spearman: float | None = None, holdout: tuple[Sequence[Arch], Any] | None = None,
                 max_fidelity: int = 1, cost_per_eval: float = 0.0, model_config: ModelConfig | None = None,
                 reference: list[Arch] | None = None) -> None:
        if not hasattr(predictor, "predict"):
            raise InvalidArgumentError(f"predictor must have predict(archs), got {type(predictor).__name__}")
        self.predictor = predictor
        self.metric = metric
        self.space = space
        self.max_fidelity = int(max_fidelity)
        self.cost_per_eval = float(cost_per_eval)
        self.model_config = model_config
        self.reference = reference
        if hasattr(predictor, "compare") and reference is None:
            raise InvalidArgumentError("a pairwise predictor (BRP) scores models against others: pass reference=archs")
        self._cache: dict[int, float] = {}
        #: held-out Spearman (see the module docstring), or None with the reason in ``spearman_note``
        self.holdout_spearman: float | None = None
        self.spearman_note = ""
        self._set_holdout(holdout_spearman, holdout)

    def _set_holdout(self, given: float | None, holdout: tuple[Sequence[Arch], Any] | None) -> None:
        """Check or compute the held-out Spearman; record why it is missing (and warn once) otherwise."""
        if given is not None and holdout is not None:
            raise InvalidArgumentError("pass holdout_spearman= or holdout=(archs, values), not both")
        if given is not None:
            value = float(given)
            if not -1.0 <= value <= 1.0:
                raise InvalidArgumentError(f"holdout_spearman must be a rank correlation in -1..1, got {given!r}")
            self.holdout_spearman = value
            self.spearman_note = "given by the caller (holdout_spearman=)"
            return
        if holdout is None:
            self._omit("no held-out models given: pass holdout=(archs, values) with models the predictor was "
                       "not fitted on, or holdout_spearman=")
            return
        try:
            archs, values = holdout
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"holdout must be a pair (archs, values), got {holdout!r}") from exc
        archs = list(archs)
        y = np.asarray(values, dtype=np.float64)
        if y.shape != (len(archs),):
            raise InvalidArgumentError(f"holdout has {len(archs)} archs but values of shape {y.shape}: one value "
                                       "per arch")
        keep = np.isfinite(y)
        n = int(keep.sum())
        if n < MIN_HOLDOUT:
            self._omit(f"too few labelled held-out models: {n} with a finite value, at least {MIN_HOLDOUT} needed")
            return
        pred = self.predict_many([a for a, k in zip(archs, keep) if k])
        if np.ptp(pred) == 0 or np.ptp(y[keep]) == 0:
            self._omit("undefined on the held-out models: the predictions or the values are all equal")
            return
        from scipy.stats import spearmanr

        self.holdout_spearman = float(spearmanr(pred, y[keep]).statistic)
        self.spearman_note = f"computed on {n} held-out models"

    def _omit(self, reason: str) -> None:
        self.spearman_note = f"surrogate_spearman omitted: {reason}"
        warnings.warn(f"SurrogateReward: {self.spearman_note}", UserWarning, stacklevel=4)

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
                   "flops": float(cost.macs)}
        if self.holdout_spearman is not None:  # else omitted, never NaN: ``spearman_note`` says why
            metrics["surrogate_spearman"] = self.holdout_spearman
        return Evaluation(arch, metrics, unit, cost_unit, self.source, e, None)
