"""Worker functions that the store tests start in spawned processes (importable by name in the child:
``tests/`` is on the path, see pyproject's ``pythonpath``; a function defined in a test module is not)."""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np

from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.datasets.store.encoding import Encoding
from blox_env.errors import BloxError

RUN = "synthetic"
N_ROWS = 27
RECORDS = [{"arch_index": 3, "cost": 1.5, "cumulative_cost": 1.5, "metrics": {"val_top1": 50.0}},
           {"arch_index": 17, "cost": 2.0, "cumulative_cost": 3.5, "metrics": {"val_top1": 60.0, "params": 9.0}}]


def rewrite_loop(path: str, seconds: float, ready: mp.Event) -> None:  # type: ignore[valid-type]
    """Rewrite whole arrays in a loop: test_top1 = k everywhere (k = 1, 2, ...), and one trace of k records."""
    st = BloxStore.open(path, mode="a")
    enc = Encoding("count", "uint16", denominator=10_000)
    end = time.monotonic() + seconds
    k = 0
    ready.set()
    while time.monotonic() < end:
        k = k % 90 + 1
        st.write_metric(RUN, "test_top1", np.full((2, N_ROWS), float(k)), encoding=enc)
        st.write_trace("t", [{"cost": float(k), "metrics": {"val_top1": float(k)}}] * k, replace=True)
    st.close()


def read_loop(path: str, seconds: float, out: mp.Queue) -> None:  # type: ignore[valid-type]
    torn, errors, reads = [], [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            st = open_store(path)
            v = st.get("test_top1", seed="mean")
            if not (np.isfinite(v).all() and np.all(v == v[0]) and float(v[0]).is_integer()):
                torn.append(v.tolist())
            tr = st.read_trace("t")
            n = len(tr["cost"])
            if not (len(tr["metrics/val_top1"]) == n and np.all(tr["cost"] == n)
                    and np.all(tr["metrics/val_top1"] == n)):
                torn.append({k: c.tolist() for k, c in tr.items()})
            reads += 1
        except BloxError as exc:  # the old writers: "damaged... re-import", "no trace 't'"
            errors.append(f"{type(exc).__name__}: {exc}")
    out.put((reads, torn, errors))


def hold_lock(path: str, bench: str, seconds: float, ready: mp.Event) -> None:  # type: ignore[valid-type]
    ts = BloxStore.open_traces(path, benchmark=open_store(bench))
    ready.set()
    time.sleep(seconds)
    ts.write_trace("first", RECORDS)
    ts.close()
