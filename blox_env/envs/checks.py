"""Validation of the envs' own arguments (generic checks: :mod:`blox_env.checks`): one clear error each.

Wrong types raise :class:`~blox_env.errors.InvalidArgumentTypeError` (an
:class:`~blox_env.errors.InvalidArgumentError` that is also a ``TypeError``);
wrong values of the right type raise :class:`~blox_env.errors.InvalidArgumentError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from blox_env.checks import check_bool, check_real, is_real
from blox_env.checks import type_name as _type_name
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError

__all__ = ["check_constraint", "check_epochs", "check_reset", "check_reward_output", "check_seed_mode"]


def check_epochs(epochs: Any) -> None:
    """Type of ``epochs`` (the range is checked against the benchmark by the backend)."""
    if epochs is not None and (isinstance(epochs, (bool, np.bool_)) or not isinstance(epochs, (int, np.integer))):
        raise InvalidArgumentTypeError(f"epochs (fidelity) must be an integer number of training epochs or None "
                                       f"(the full protocol), got {epochs!r} ({_type_name(epochs)})")


def check_seed_mode(seed_mode: Any, *, name: str = "seed_mode", what: str = "an integer seed of the benchmark's run") \
        -> None:
    """Type of ``seed_mode`` ('random' | 'mean' | a seed label; the seeds are checked by the backend)."""
    ok = isinstance(seed_mode, str) or (isinstance(seed_mode, (int, np.integer))
                                        and not isinstance(seed_mode, (bool, np.bool_)))
    if not ok:
        raise InvalidArgumentTypeError(f"{name} must be 'random', 'mean' or {what}, got {seed_mode!r} "
                                       f"({_type_name(seed_mode)})")


def check_constraint(constraint: Any) -> dict[str, float] | None:
    """None or a mapping of static-cost names (e.g. ``"params"``) to upper limits (real numbers, not NaN).

    The names are checked against the backend's static costs by :func:`~blox_env.envs.base.constraint_grid`.
    """
    if constraint is None:
        return None
    if not isinstance(constraint, Mapping):
        raise InvalidArgumentTypeError(f"constraint must be a dict of static-cost names to upper limits, e.g. "
                                       f"{{'params': 2.5e6}}, or None, got {constraint!r} ({_type_name(constraint)})")
    out: dict[str, float] = {}
    for key, limit in constraint.items():
        if not isinstance(key, str):
            raise InvalidArgumentTypeError(f"constraint keys must be static-cost names (str) such as 'params', "
                                           f"'flops' or 'latency/<device>', got {key!r}")
        out[key] = check_real(f"constraint[{key!r}]", limit, finite=False)
    return out


def check_reset(seed: Any, options: Any) -> tuple[int | None, bool]:
    """``reset`` arguments: (seed as a Python int or None, whether a new search run starts)."""
    if seed is not None:
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
            raise InvalidArgumentTypeError(f"seed must be a non-negative integer or None, got {seed!r} "
                                           f"({_type_name(seed)})")
        if seed < 0:
            raise InvalidArgumentError(f"seed must be a non-negative integer or None, got {seed!r}")
        seed = int(seed)
    if options is None:
        return seed, False
    if not isinstance(options, Mapping):
        raise InvalidArgumentTypeError(f"reset options must be a dict (allowed key: 'new_run') or None, got "
                                       f"{options!r} ({_type_name(options)})")
    unknown = set(options) - {"new_run"}
    if unknown:
        raise InvalidArgumentError(f"unknown reset options {sorted(map(str, unknown))}: allowed 'new_run'")
    return seed, check_bool("reset option 'new_run'", options.get("new_run", False))


def check_reward_output(out: Any, metrics: Mapping[str, Any], *, batch: int | None = None) -> Any:
    """What ``reward_fn`` returned, as a float (or, with ``batch``, a float array of that length): finite reals only."""
    arr = out if isinstance(out, np.ndarray) else None
    if arr is None and isinstance(out, (list, tuple)) and batch is not None:
        arr = np.asarray(out)
    if arr is not None and (batch is not None or arr.ndim == 0):
        ok_type = arr.dtype.kind in "iuf" and (arr.ndim == 0 or arr.shape == (batch,))
        values = arr.astype(np.float64) if ok_type else None
    else:
        ok_type = is_real(out)
        values = np.float64(out) if ok_type else None
    allowed = ("a finite real scalar (int, float or numpy number)" if batch is None else
               f"a finite real scalar or a real array of shape ({batch},), one reward per sub-env")
    if values is None:
        raise InvalidArgumentTypeError(f"reward_fn must return {allowed}, got {out!r} ({_type_name(out)}) "
                                       f"for the metrics {dict(metrics)!r}")
    if not np.isfinite(values).all():
        raise InvalidArgumentError(f"reward_fn must return {allowed}, got {out!r} for the metrics {dict(metrics)!r} "
                                   "(if a metric is missing, return a number of your choice for that case)")
    return float(values) if values.ndim == 0 else values
