"""Option parsing shared by the command modules: comma-separated lists, each with one clear error."""

from __future__ import annotations

from blox_env.errors import InvalidArgumentError

__all__ = ["float_list", "int_list"]


def int_list(text: str, *, option: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]`` (blank items skipped); InvalidArgumentError naming ``option`` otherwise."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise InvalidArgumentError(f"{option} takes comma-separated integers, got {text!r}") from exc


def float_list(text: str, *, option: str) -> list[float]:
    """``"1.5,3"`` -> ``[1.5, 3.0]`` (blank items skipped); InvalidArgumentError naming ``option`` otherwise."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise InvalidArgumentError(f"{option} takes comma-separated numbers, got {text!r}") from exc
