"""``render_mode="rgb_array"``: a small numpy picture of the model being built and of the search run.

Layout (``HEIGHT x WIDTH x 3`` uint8, white background), drawn from the space's own block table
(:data:`blox_env.graph.BLOCKS`, raw configs ``(opA, opB, prev, inp, sc)``, and :data:`~blox_env.graph.OPS`):

* one panel per stage, left to right. A chosen block shows op ``A`` (left box) and op ``B`` (right
  box) in its op's colour (:data:`OP_COLOURS`: conv blue, mbconv orange, bconv green), the stage
  input entering ``A``, and one wire per connection bit that is set: ``prev`` (A -> B, dark),
  ``inp`` (stage input -> B, purple, below) and ``sc`` (A added to the output, red, above).
  An unset stage is an empty grey panel; the stage the agent picks next has a yellow frame.
* three bars underneath: the run's best-so-far reward (cyan), the last evaluated reward (grey)
  and the share of the budget spent (brown, empty without a budget). Rewards in [0, 1] fill that
  share of the bar, rewards in (1, 100] are read as percents; anything else is clipped.

Only numpy: rendering costs a few microseconds and imports nothing (video recorders call it every step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from blox_env.graph import BLOCKS, OPS

__all__ = ["HEIGHT", "OP_COLOURS", "WIDTH", "render_model"]

_PANEL_W, _PANEL_H, _GAP, _BAR_H = 64, 56, 4, 6
#: Picture size in pixels (both even, which video encoders want).
WIDTH = _GAP + 3 * (_PANEL_W + _GAP)
HEIGHT = 96

_PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (140, 86, 75), (227, 119, 194))
#: Colour of each op of :data:`blox_env.graph.OPS`, by op id.
OP_COLOURS: dict[str, tuple[int, int, int]] = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(OPS)}
_WHITE, _UNSET, _FRAME, _CURSOR = (255, 255, 255), (225, 225, 225), (90, 90, 90), (240, 200, 0)
_PREV, _INP, _SC = (40, 40, 40), (148, 103, 189), (214, 39, 40)
_BEST, _LAST, _BUDGET, _TRACK = (23, 190, 207), (127, 127, 127), (140, 86, 75), (235, 235, 235)


def _rect(img: np.ndarray, y0: int, y1: int, x0: int, x1: int, colour: tuple[int, int, int]) -> None:
    img[y0:y1, x0:x1] = colour


def _frame(img: np.ndarray, y0: int, y1: int, x0: int, x1: int, colour: tuple[int, int, int], width: int = 1) -> None:
    img[y0:y0 + width, x0:x1] = colour
    img[y1 - width:y1, x0:x1] = colour
    img[y0:y1, x0:x0 + width] = colour
    img[y0:y1, x1 - width:x1] = colour


def _wire(img: np.ndarray, points: Sequence[tuple[int, int]], colour: tuple[int, int, int]) -> None:
    """A 2-pixel wire through ``(y, x)`` points joined by horizontal or vertical segments."""
    for (ya, xa), (yb, xb) in zip(points, points[1:]):
        _rect(img, min(ya, yb), max(ya, yb) + 2, min(xa, xb), max(xa, xb) + 2, colour)


def _block(img: np.ndarray, y: int, x: int, block: int) -> None:
    """Draw canonical block ``block`` into the panel whose top-left corner is ``(y, x)``."""
    op_a, op_b, prev, inp, sc = BLOCKS[block]
    mid = y + 27
    _wire(img, [(mid, x + 1), (mid, x + 8)], _PREV)  # stage input -> A
    _wire(img, [(mid, x + 52), (mid, x + _PANEL_W - 2)], _PREV)  # B -> stage output
    if inp:
        _wire(img, [(mid, x + 3), (y + 46, x + 3), (y + 46, x + 43), (mid, x + 43)], _INP)
    if sc:
        _wire(img, [(mid, x + 15), (y + 8, x + 15), (y + 8, x + 58), (mid, x + 58)], _SC)
    if prev:
        _wire(img, [(mid, x + 24), (mid, x + 36)], _PREV)
    _rect(img, y + 20, y + 36, x + 8, x + 24, OP_COLOURS[OPS[op_a]])
    _rect(img, y + 20, y + 36, x + 36, x + 52, OP_COLOURS[OPS[op_b]])


def _fraction(value: float | None) -> float:
    """Share of a bar a reward fills: [0, 1] as is, (1, 100] as a percent, the rest clipped (NaN: empty)."""
    if value is None or not math.isfinite(value):
        return 1.0 if value == math.inf else 0.0
    if 1.0 < value <= 100.0:
        value /= 100.0
    return min(max(value, 0.0), 1.0)


def _bar(img: np.ndarray, y: int, fraction: float, colour: tuple[int, int, int]) -> None:
    x0, x1 = _GAP, WIDTH - _GAP
    _rect(img, y, y + _BAR_H, x0, x1, _TRACK)
    _rect(img, y, y + _BAR_H, x0, x0 + round(fraction * (x1 - x0)), colour)


def render_model(blocks: Sequence[int | None], *, cursor: int | None, best: float | None, last: float | None,
                 budget_used: float | None) -> np.ndarray:
    """The picture: canonical block id (or None, unset) per stage, the stage picked next, best/last reward, budget.

    ``budget_used`` is the spent share of the budget (None: no budget). Returns a fresh ``HEIGHT x WIDTH x 3`` uint8.
    """
    img = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    img[:] = _WHITE
    for s in range(3):
        block = blocks[s] if s < len(blocks) else None
        y, x = _GAP, _GAP + s * (_PANEL_W + _GAP)
        if block is None:
            _rect(img, y, y + _PANEL_H, x, x + _PANEL_W, _UNSET)
        else:
            _block(img, y, x, int(block))
        if cursor == s:
            _frame(img, y, y + _PANEL_H, x, x + _PANEL_W, _CURSOR, width=2)
        elif block is not None:
            _frame(img, y, y + _PANEL_H, x, x + _PANEL_W, _FRAME)
    y = 2 * _GAP + _PANEL_H
    for value, colour in ((_fraction(best), _BEST), (_fraction(last), _LAST),
                          (0.0 if budget_used is None else min(max(budget_used, 0.0), 1.0), _BUDGET)):
        _bar(img, y, value, colour)
        y += _BAR_H + 3
    return img
