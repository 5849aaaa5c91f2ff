"""Benchmark the store on a full-size synthetic release (91,125 models x 200 epochs, base + ext, one seed).

Run: ``python benchmarks/store.py [--work DIR] [--formats custom,pickle,csv]``. Writes the release
files with the project's official-format writer, imports each, and prints a Markdown table:
import time, size on disk vs the official files, open time, single-query latency (cold and
warm) and a full-column ``get``, next to loading the same data from the official files.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import machine, per_call

from blox_env.datasets.release.importer import import_release
from blox_env.datasets.release.reader import read_release_file
from blox_env.datasets.release.writer import synthetic_release
from blox_env.datasets.store.core import open_store

EXT = {"custom": "blox", "pickle": "pickle", "csv": "csv"}


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/blox-store-bench"))
    parser.add_argument("--formats", default="custom,pickle,csv")
    args = parser.parse_args()
    formats = args.formats.split(",")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    store_path = None
    for fmt in formats:
        folder = args.work / f"release-{fmt}"
        if not (folder / f"blox-base-0.{EXT[fmt]}").exists():
            t = time.perf_counter()
            synthetic_release(folder, n_models=91125, epochs=200, seeds=(0,), fmt=fmt, rng_seed=0,
                              kinds=("info", "base", "ext"))
            print(f"wrote {fmt} release in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        files = sorted(folder.glob(f"blox-*.{EXT[fmt]}"))
        t = time.perf_counter()
        for f in files:
            read_release_file(f)
        read_s = time.perf_counter() - t
        out = args.work / f"store-{fmt}.zarr"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        import_release(folder, out=out, progress=False)
        import_s = time.perf_counter() - t
        rows.append((fmt, sum(f.stat().st_size for f in files), read_s, import_s, size_of(out)))
        store_path = out

    assert store_path is not None
    code = ("import time; t=time.perf_counter(); from blox_env.datasets.store.core import open_store; "
            f"s=open_store('{store_path}'); t1=time.perf_counter(); s.val_acc(12345, seed=0); "
            "t2=time.perf_counter(); print(t1-t, t2-t1)")
    opens, colds = [], []
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        opens.append(float(out[0]))
        colds.append(float(out[1]))
    store = open_store(store_path)
    t = time.perf_counter()
    store.open(store_path)
    open_warm_import = time.perf_counter() - t
    from blox_env.space import Arch

    arch = Arch.from_index(4242)
    store.val_acc(arch, seed=0)
    warm = per_call(lambda: store.val_acc(arch, seed=0), calls=20000)
    fresh = open_store(store_path)
    t = time.perf_counter()
    col = fresh.get("val_top1", seed=0, epoch=200, best=False)
    get_cold = time.perf_counter() - t
    t = time.perf_counter()
    fresh.get("val_top1", seed=0, epoch=200, best=False)
    get_warm = time.perf_counter() - t
    t = time.perf_counter()
    fresh.get("val_top1", seed=0)
    get_best = time.perf_counter() - t
    assert np.isfinite(col).all()

    print(f"{time.strftime('%Y-%m-%d')}, {machine()}; 91,125 models x 200 epochs, base + ext + info, one seed")
    print("| format | official files | load official files (read + validate) | import into store | store size |")
    print("| --- | --- | --- | --- | --- |")
    for fmt, fsize, read_s, import_s, ssize in rows:
        print(f"| {fmt} | {fsize / 2**20:.1f} MiB | {read_s:.1f} s | {import_s:.1f} s | {ssize / 2**20:.1f} MiB "
              f"({ssize / fsize:.2f}x) |")
    print("\n| query on the store | value |\n| --- | --- |")
    print(f"| open (fresh process, incl. importing zarr and blox_env) | {np.median(opens) * 1e3:.0f} ms |")
    print(f"| open (already imported) | {open_warm_import * 1e3:.1f} ms |")
    print(f"| one val_acc query, cold (first chunk read) | {np.median(colds) * 1e3:.1f} ms |")
    print(f"| one val_acc query, warm | {warm * 1e6:.1f} us |")
    print(f"| get val_top1 at epoch 200 for all 91,125 models, cold | {get_cold * 1e3:.0f} ms |")
    print(f"| same, warm | {get_warm * 1e3:.1f} ms |")
    print(f"| get best val_top1 (max over 200 epochs) for all models, warm chunks | {get_best * 1e3:.0f} ms |")


if __name__ == "__main__":
    main()
