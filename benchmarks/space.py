"""Benchmark the search space: hashing all models (cold and warm), Arch round trips, cost tables.

Run: ``python benchmarks/space.py`` (uses a fresh temporary BLOX_HOME so "cold" is cold).
Prints a Markdown table to paste into BENCHMARKS.md.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time


def _timed_subprocess(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    home = tempfile.mkdtemp(prefix="blox_bench_")
    env = {**os.environ, "BLOX_HOME": home}
    load = "from blox_env.hashes import all_hashes, hash_to_index; h = all_hashes(); hash_to_index(h[-1])"
    cold = _timed_subprocess(load, env)
    warm = min(_timed_subprocess(load, env) for _ in range(3))
    bare = min(_timed_subprocess("import blox_env.hashes", env) for _ in range(3))

    os.environ["BLOX_HOME"] = home
    from blox_env.costs import macs_table, params_table
    from blox_env.hashes import compute_hashes
    from blox_env.space import N_MODELS, Arch

    t = time.perf_counter()
    compute_hashes(jobs=1, progress=False)
    serial = time.perf_counter() - t

    t = time.perf_counter()
    n = 0
    for i in range(0, N_MODELS, 3):
        a = Arch.from_index(i)
        assert Arch.from_vec(a.vec).index == i
        n += 1
    round_trips = n / (time.perf_counter() - t)

    t = time.perf_counter()
    for i in range(0, 2000):
        Arch.from_index(i * 45).hash  # noqa: B018
    single_hash_us = (time.perf_counter() - t) / 2000 * 1e6

    from blox_env import costs as costs_mod

    costs_mod.clear_cache()
    t = time.perf_counter()
    params_table()
    macs_table()
    tables = time.perf_counter() - t

    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| measurement | value |\n| --- | --- |")
    print(f"| all 91,125 hashes, first use (process pool, incl. interpreter start) | {cold:.2f} s |")
    print(f"| all 91,125 hashes, later use (disk cache + lookup dict, incl. interpreter start) | {warm:.2f} s |")
    print(f"| of which interpreter start + imports | {bare:.2f} s |")
    print(f"| all 91,125 hashes, computed serially in one process | {serial:.1f} s |")
    print(f"| one model hash computed from its graph | {single_hash_us:.0f} us |")
    print(f"| Arch round trips index -> vec -> Arch -> index | {round_trips:,.0f} /s |")
    print(f"| params + MACs tables for all 91,125 models (cold) | {tables * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
