"""Tasks for pool workers in tests/builder/test_pool.py (importable by name in spawned workers: tests/ is on
sys.path)."""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any


def worker_state(pause: float) -> dict[str, Any]:
    """What a worker holds when a task starts: its thread pools, the modules and data warmed before it
    (then waits ``pause`` seconds, so that the other workers get tasks too)."""
    import time

    import torch
    from threadpoolctl import threadpool_info

    from blox_env.build import benchmark

    data = {}
    for key, value in benchmark._DATA.items():  # the cache the warm-up fills
        digest = hashlib.sha256()
        for split in (value.train, value.val, value.test):
            digest.update(split.x.numpy().tobytes() + split.y.numpy().tobytes())
        data[key] = digest.hexdigest()
    state = {"pid": os.getpid(), "torch_threads": torch.get_num_threads(),
             "interop_threads": torch.get_num_interop_threads(),
             "pools": [p["num_threads"] for p in threadpool_info()],
             "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
             "train_imported": "blox_env.training.train" in sys.modules, "sklearn": "sklearn" in sys.modules,
             "dynamo_imported": "torch._dynamo" in sys.modules,
             "data": data}
    time.sleep(pause)
    return state


def failing_task(task: Any) -> Any:
    """``run_task``, except that model index 2025 * 11 + 45 * 10 + 9 (blocks 9, 10, 11) fails."""
    from blox_env.build.benchmark import run_task

    if task.arch_index == 2025 * 11 + 45 * 10 + 9:
        import time

        time.sleep(5.0)  # fail only after the other worker's results (tiny trainings) have reached the driver
        raise RuntimeError("planned failure")
    return run_task(task)
