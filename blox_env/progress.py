"""Progress bars for long loops, drawn with rich: the project's one progress library (the CLI prints with it too).

:class:`ProgressBar` has the small surface the loops need (``update``, ``close``, use as a context
manager) and :func:`track` wraps an iterable. Bars draw on stderr, so stdout stays clean for output
that is parsed (``--json``), and vanish when done unless ``keep=True``; a disabled bar does nothing
and imports nothing. Bars nest (a training bar inside a build bar): they share one console, and
rich (>= 14.1) stacks nested live displays.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from functools import lru_cache
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["ProgressBar", "track"]

T = TypeVar("T")


@lru_cache(maxsize=1)
def _console() -> Console:
    """The one stderr console every bar draws on (so nested bars stack instead of fighting)."""
    from rich.console import Console

    return Console(stderr=True)


class ProgressBar:
    """A rich progress bar over ``total`` steps (``None``: unknown), started at ``initial``; a no-op if disabled."""

    def __init__(self, total: int | None, *, description: str, initial: int = 0, enabled: bool = True,
                 keep: bool = False, refresh_per_second: float = 10.0) -> None:
        self._progress = None
        if not enabled:
            return
        from rich.progress import MofNCompleteColumn, Progress

        # each redraw costs the drawing process ~1 ms: loops that share the cores with workers redraw less often
        self._progress = Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=_console(),
                                  transient=not keep, refresh_per_second=refresh_per_second)
        self._task = self._progress.add_task(description, total=total, completed=initial)
        self._progress.start()

    def update(self, n: int = 1, *, description: str | None = None) -> None:
        """Advance by ``n`` steps (and optionally change the label)."""
        if self._progress is not None:
            self._progress.update(self._task, advance=n, description=description)

    def close(self) -> None:
        """Stop drawing (idempotent); a transient bar disappears."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def track(items: Iterable[T], *, description: str, total: int | None = None, enabled: bool = True,
          keep: bool = False) -> Iterator[T]:
    """Yield ``items`` while a bar counts them (``total`` defaults to ``len(items)`` when it has one)."""
    if not enabled:
        yield from items
        return
    if total is None and isinstance(items, Sized):
        total = len(items)
    with ProgressBar(total, description=description, enabled=True, keep=keep) as bar:
        for item in items:
            yield item
            bar.update()
