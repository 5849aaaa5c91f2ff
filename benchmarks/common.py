"""Shared helpers for the benchmark scripts: timing, machine description, synthetic full-size store."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def per_call(fn: Callable[[], object], *, calls: int = 1000, repeats: int = 7) -> float:
    """Median over ``repeats`` blocks of the mean seconds per call in a block of ``calls``."""
    fn()
    blocks = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        blocks.append((time.perf_counter() - start) / calls)
    return statistics.median(blocks)


def full_synthetic_store(path: Path, *, epochs: int = 200, seeds: tuple[int, ...] = (0, 1, 2)) -> Path:
    """A synthetic store over all 91,125 models (created once, reused)."""
    from blox_env.datasets.synthetic import synthetic_store
    from blox_env.space import FULL_SPACE

    if not path.exists():
        synthetic_store(path, space=FULL_SPACE, seeds=seeds, epochs=epochs).close()
    return path
