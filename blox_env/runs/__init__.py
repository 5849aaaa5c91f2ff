"""Search runs and the budget rule: :mod:`.budget` (units, charging, missing costs, shared work, the free-repeat
stop rule) and :mod:`.search` (:class:`SearchRun`, :class:`BatchedRuns`), used by every search path."""

from __future__ import annotations

from blox_env.runs.budget import (
    COST_UNITS,
    MISSING_COST_RULES,
    PROXY_FIDELITY,
    CostLedger,
    FreeRepeatStop,
    SharedCharges,
    SharedWork,
    charge_amount,
    check_missing_cost,
    cost_is_missing,
    proxy_cost,
    resolve_missing,
    unit_cost,
)
from blox_env.runs.search import BatchedRuns, BatchOutcome, Outcome, SearchRun

__all__ = ["COST_UNITS", "MISSING_COST_RULES", "PROXY_FIDELITY", "BatchOutcome", "BatchedRuns", "CostLedger",
           "FreeRepeatStop", "Outcome", "SearchRun", "SharedCharges", "SharedWork", "charge_amount",
           "check_missing_cost", "cost_is_missing", "proxy_cost", "resolve_missing", "unit_cost"]
