"""Install size and time: the light core (``pip install .``) against everything (``pip install ".[all]"``).

Run: ``python benchmarks/install.py [--python python3.11] [--source .] [--no-warmup] [--keep]``.

Each variant gets a fresh venv in a temporary folder (``PYTHON -m venv``) and a non-editable install of
the checkout with the tested pins, ``pip install -q -c .ci/constraints.txt SPEC``, timed on the wall
clock. The table gives that time, the venv's size on disk (``du -sk``, the empty venv subtracted too),
the number of installed distributions (``importlib.metadata``; the empty venv's pip and setuptools
excluded) and the largest of them (their RECORD files' sizes). By default each variant is installed
once beforehand (discarded), so pip's cache (where pip writes one) and the OS file cache are warm for the
timed install; ``--no-warmup`` times whatever state they are in. The header says what pip's cache held
after the runs (``pip cache info``): where it holds nothing, every wheel not on a local index was
downloaded again in the timed install.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = (("core", "."), ("all", ".[all]"))
#: Run in a venv: every distribution's name and installed size (its RECORD's files, compiled bytecode included).
SIZES = r"""
import importlib.metadata as m, json
out = {}
for d in m.distributions():
    size = 0
    for f in d.files or ():
        try:
            size += f.locate().stat().st_size
        except OSError:
            pass
    out[d.metadata["Name"].lower()] = size
print(json.dumps(out))
"""


def _du_kib(path: Path) -> int:
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def _venv(python: str, where: Path) -> Path:
    subprocess.run([python, "-m", "venv", str(where)], check=True)
    return where / "bin"


def _install(python: str, where: Path, source: Path, spec: str) -> tuple[float, Path]:
    """A fresh venv at ``where`` with ``spec`` installed from ``source``: (wall seconds of pip, bin folder)."""
    bin_dir = _venv(python, where)
    cmd = [str(bin_dir / "pip"), "install", "-q", "-c", ".ci/constraints.txt", spec]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=source, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall, bin_dir


def _sizes(bin_dir: Path) -> dict[str, int]:
    """Installed distributions of a venv -> bytes on disk."""
    out = subprocess.run([str(bin_dir / "python"), "-c", SIZES], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _largest(sizes: dict[str, int], skip: dict[str, int], top: int) -> str:
    ranked = sorted(((v, k) for k, v in sizes.items() if k not in skip), reverse=True)[:top]
    return ", ".join(f"{k} {v / 2**20:,.0f}" for v, k in ranked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="python3.11", help="interpreter for the venvs (default python3.11)")
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1], help="the checkout")
    parser.add_argument("--no-warmup", action="store_true", help="no discarded install first (cache as it is)")
    parser.add_argument("--keep", action="store_true", help="keep the venvs (prints where)")
    parser.add_argument("--top", type=int, default=6, help="largest distributions listed per variant")
    args = parser.parse_args()
    source = args.source.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="blox-install-"))
    try:
        empty = _venv(args.python, tmp / "empty").parent
        base_kib, base = _du_kib(empty), _sizes(empty / "bin")
        version = subprocess.run([args.python, "-c", "import platform; print(platform.python_version())"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        rows = []
        for label, spec in VARIANTS:
            if not args.no_warmup:
                _install(args.python, tmp / f"warmup-{label}", source, spec)
                shutil.rmtree(tmp / f"warmup-{label}")
            wall, bin_dir = _install(args.python, tmp / label, source, spec)
            kib = _du_kib(bin_dir.parent)
            sizes = _sizes(bin_dir)
            rows.append((label, spec, wall, kib, kib - base_kib, len(set(sizes) - set(base)),
                         _largest(sizes, base, args.top)))
            print(f"{label} done in {wall:.1f} s", file=sys.stderr)
        cache = "as it was" if args.no_warmup else "warmed (each variant installed once before, discarded)"
        info = subprocess.run([str(tmp / "core" / "bin" / "pip"), "cache", "info"], capture_output=True, text=True)
        held = "; ".join(line.strip() for line in info.stdout.splitlines() if line.strip().startswith("Number of"))
        print(f"Python {version} ({platform.machine()}), pip cache {cache}; after the runs: {held or 'n/a'}; "
              f"source {source}\n")
        print("| install | pip wall time | venv size | of which installed | distributions | largest (MiB) |")
        print("| --- | --- | --- | --- | --- | --- |")
        print(f"| empty venv (`{args.python} -m venv`) | | {base_kib / 1024:,.1f} MiB | | "
              f"{len(base)} ({', '.join(sorted(base))}) | |")
        for label, spec, wall, kib, added, n, largest in rows:
            print(f"| {label}: `pip install -c .ci/constraints.txt \"{spec}\"` | {wall:.1f} s | {kib / 1024:,.1f} MiB "
                  f"| {added / 1024:,.1f} MiB | {n} | {largest} |")
    finally:
        if args.keep:
            print(f"venvs kept under {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
