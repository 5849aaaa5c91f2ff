"""Checks of user-facing arguments shared by every layer (runs, reward backends, envs).

Each names the argument, the value and what is allowed. Wrong types raise
:class:`~blox_env.errors.InvalidArgumentTypeError` (an ``InvalidArgumentError`` that is also a
``TypeError``); wrong values of the right type raise :class:`~blox_env.errors.InvalidArgumentError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError

__all__ = ["check_bool", "check_budget", "check_choice", "check_optional_str", "check_real", "check_seed", "is_real",
           "type_name"]


def type_name(value: Any) -> str:
    """The type's name, for error messages."""
    return type(value).__name__


def is_real(value: Any) -> bool:
    """True for a Python/numpy real number (0-d arrays included), False for bools, strings and arrays."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_bool(name: str, value: Any) -> bool:
    """A Python or numpy bool (strings such as ``"no"`` are refused rather than read as true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentTypeError(f"{name} must be a bool (True or False), got {value!r} ({type_name(value)})")
    return bool(value)


def check_real(name: str, value: Any, *, finite: bool = True) -> float:
    """A real number (int, float or numpy number; not a bool), finite unless ``finite=False`` (NaN never)."""
    if not is_real(value):
        raise InvalidArgumentTypeError(f"{name} must be a real number (int, float or numpy number, not a bool), "
                                       f"got {value!r} ({type_name(value)})")
    x = float(value)
    if math.isnan(x) or (finite and math.isinf(x)):
        raise InvalidArgumentError(f"{name} must be a {'finite ' if finite else ''}number, got {x!r}")
    return x


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of a fixed set of strings."""
    if not isinstance(value, str) or value not in choices:
        err = InvalidArgumentError if isinstance(value, str) else InvalidArgumentTypeError
        raise err(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return str(value)


def check_optional_str(name: str, value: Any, what: str) -> str | None:
    """None or a string (e.g. a metric or run name)."""
    if value is not None and not isinstance(value, str):
        raise InvalidArgumentTypeError(f"{name} must be {what} (a str) or None, got {value!r} ({type_name(value)})")
    return value


def check_seed(name: str, value: Any) -> int:
    """A seed for numpy's generators: an integer in ``0..2**63 - 1`` (bools and negative numbers refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentTypeError(f"{name} must be a non-negative integer, got {value!r} ({type_name(value)})")
    if not 0 <= int(value) < 2**63:
        raise InvalidArgumentError(f"{name} must be an integer in 0..2**63-1, got {value!r}")
    return int(value)


def check_budget(budget: Any, cost_unit: str) -> float | None:
    """None (no budget) or a positive, finite number of ``cost_unit`` (numpy numbers too; bools are refused)."""
    if budget is None:
        return None
    if not is_real(budget):
        raise InvalidArgumentTypeError(f"budget must be a positive number of {cost_unit} (int, float or numpy "
                                       f"number, not a bool) or None, got {budget!r} ({type_name(budget)})")
    b = float(budget)
    if not (math.isfinite(b) and b > 0):
        raise InvalidArgumentError(f"budget must be a positive, finite number of {cost_unit} or None "
                                   f"(None means no budget), got {budget!r}")
    return b
