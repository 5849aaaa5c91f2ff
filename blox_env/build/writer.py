"""Batched result writes for the builders: the driver, the store's only writer, records results in batches.

A store write costs the driver about the same for one row as for many (one read-modify-write of
each metric's chunk: ~25 ms of CPU per batch for a Blox-mini run), and on a 2-core machine every
millisecond the driver spends is taken from a worker. :class:`ResultWriter` therefore holds the
results that arrive close together and writes them in one go (:func:`~blox_env.training.results.record_results`:
``test_top1`` last for every row, so a batch torn by a crash leaves its rows unfinished, never half-used).

When it writes: as soon as ``every`` results wait, or when the time since the last write plus the
expected wait for the next result (a running mean of the gaps between results) reaches ``seconds``.
So results that arrive slower than one per ``seconds`` are written as they arrive, and a crash
loses at most ``every`` results and about ``seconds`` of results beyond the tasks in flight.
:meth:`ResultWriter.flush` writes whatever waits; leaving the ``with`` block flushes too, also on an
exception or Ctrl-C, so an interrupted build keeps every result it received and a rerun redoes
only the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from blox_env.errors import InvalidArgumentError

__all__ = ["WRITE_EVERY", "WRITE_SECONDS", "ResultWriter", "check_batching"]

WRITE_EVERY = 32  # results per batch at most
WRITE_SECONDS = 10.0  # and about this many seconds between writes at most
GAP_SMOOTHING = 0.3  # weight of the newest gap in the running mean


def check_batching(every: int, seconds: float) -> None:
    """Refuse a bad batching choice (before a builder touches anything)."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise InvalidArgumentError(f"every must be a positive integer (results per write), got {every!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < float("inf"):
        raise InvalidArgumentError(f"seconds must be a finite number >= 0 (between writes), got {seconds!r}")


class ResultWriter:
    """Buffer training results and record them in batches (see the module docstring).

    ``worker_column``: a run's name -> whether its rows get a ``worker`` code (an index into the
    run's ``workers`` attribute, updated before the codes that use it are written).
    """

    def __init__(self, store: Any, *, every: int = WRITE_EVERY, seconds: float = WRITE_SECONDS,
                 worker_column: Callable[[str], bool] = lambda run: False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        check_batching(every, seconds)
        self.store = store
        self.every = every
        self.seconds = float(seconds)
        self._worker_column = worker_column
        self._clock = clock
        self._pending: list[tuple[str, int, Any, str | None]] = []
        self._workers: dict[str, list[str]] = {}
        self._last_write = clock()
        self._last_add: float | None = None
        self._gap: float | None = None
        self.writes = 0  # batches written (for tests and benchmarks)
        self.written = 0  # results written

    @property
    def pending(self) -> int:
        """Results received and not written yet."""
        return len(self._pending)

    def add(self, run: str, result: Any, *, seed: int, worker: str | None = None) -> None:
        """Take one result for ``run``'s row of ``seed``; writes the batch when it is due."""
        now = self._clock()
        if self._last_add is not None:
            gap = now - self._last_add
            self._gap = gap if self._gap is None else (1 - GAP_SMOOTHING) * self._gap + GAP_SMOOTHING * gap
        self._last_add = now
        self._pending.append((run, int(seed), result, worker))
        expected = float("inf") if self._gap is None else self._gap  # first result: nothing known, write it
        if len(self._pending) >= self.every or now - self._last_write + expected >= self.seconds:
            self.flush()

    def flush(self) -> None:
        """Write every waiting result now (grouped by run and seed; ``test_top1`` last in each group)."""
        from blox_env.training.results import record_results

        groups: dict[tuple[str, int], list[tuple[Any, str | None]]] = {}
        for run, seed, result, worker in self._pending:
            groups.setdefault((run, seed), []).append((result, worker))
        for (run, seed), items in groups.items():
            extra = {"worker": self._worker_codes(run, [w for _, w in items])} if self._worker_column(run) else None
            record_results(self.store, run, [r for r, _ in items], seed=seed, extra=extra)
            self._pending = [p for p in self._pending if (p[0], p[1]) != (run, seed)]  # written: never twice
            self.written += len(items)
        self._last_write = self._clock()
        self.writes += bool(groups)

    def _worker_codes(self, run: str, workers: list[str | None]) -> list[float]:
        """Codes of ``workers`` in the run's ``workers`` attribute, adding the new names to it first
        (an unnamed worker: missing)."""
        seen = self._workers.get(run)
        if seen is None:
            seen = self._workers[run] = list(self.store.run_info(run).attrs.get("workers", []))
        new = [w for w in dict.fromkeys(workers) if w is not None and w not in seen]
        if new:
            seen.extend(new)
            self.store.set_run_attrs(run, workers=list(seen))
        return [float(seen.index(w)) if w is not None else float("nan") for w in workers]

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.flush()  # also on an error or Ctrl-C: every result received is kept
