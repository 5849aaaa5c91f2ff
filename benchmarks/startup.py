"""Start-up cost: ``import gymnasium, zarr, numpy`` alone, then the project's share on top of it.

Run: ``python benchmarks/startup.py [LABEL=SITE ...] [--repeats 15] [--explain]``.

Each repeat is a fresh interpreter that times, in one process, (1) ``import gymnasium, zarr, numpy``
(the third-party floor every user pays) and then (2) the extra time of ``import blox_env;
gymnasium.make("Blox-v0")``, split into the import and the make. SITE is ``.`` (this checkout's
install) or a folder holding a ``blox_env`` package laid out as installed (see ``benchmarks/ab.py``),
so two checkouts can be compared in one run; versions alternate, so machine noise hits them alike.
``BLOX_HOME`` points at an empty folder, so the default store is the bundled Blox-mini zip. Modules
load from bytecode as in an installed wheel (pip compiles it at install): bytecode goes to a private
``PYTHONPYCACHEPREFIX`` (the checkouts stay clean), one discarded warm-up run per version writes it;
``--no-bytecode`` compiles every module from source instead (``PYTHONDONTWRITEBYTECODE=1``). The
table gives the median and the minimum over the repeats. ``--explain`` adds, for the first
version, ``-X importtime`` (the modules imported after the floor, by cumulative time) and a
cProfile of the ``gymnasium.make`` call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, time
t0 = time.perf_counter()
import gymnasium, zarr, numpy
t1 = time.perf_counter()
import blox_env
t2 = time.perf_counter()
env = gymnasium.make("Blox-v0")
t3 = time.perf_counter()
print(json.dumps({"floor": t1 - t0, "import": t2 - t1, "make": t3 - t2, "project": t3 - t1}))
"""

PROFILE = r"""
import cProfile, pstats, io
import gymnasium, zarr, numpy
import blox_env
prof = cProfile.Profile()
prof.enable()
gymnasium.make("Blox-v0")
prof.disable()
out = io.StringIO()
pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
print(out.getvalue())
"""

IMPORTTIME = r"""
import gymnasium, zarr, numpy
import sys
print("--- floor done ---", file=sys.stderr, flush=True)
import blox_env
gymnasium.make("Blox-v0")
"""

ROWS = (("floor", "import gymnasium, zarr, numpy"), ("import", "import blox_env (extra)"),
        ("make", 'gymnasium.make("Blox-v0") (extra)'), ("project", "project share: import + make"))


def _env(site: str, home: Path, *, bytecode: bool = True) -> dict[str, str]:
    env = dict(os.environ)
    env["BLOX_HOME"] = str(home)
    env.pop("PYTHONPYCACHEPREFIX", None)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(home.parent / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    if site != ".":
        env["PYTHONPATH"] = str(Path(site).resolve())
    return env


def _run(code: str, env: dict[str, str], cwd: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, *flags, "-c", code], env=env, capture_output=True, text=True, cwd=cwd)
    if proc.returncode:
        sys.exit(f"child failed:\n{proc.stderr[-3000:]}")
    return proc


def _importtime(stderr: str, top: int = 25) -> str:
    """The modules imported after the floor, largest cumulative time first (top-level ones marked)."""
    lines = stderr.split("--- floor done ---", 1)[-1].splitlines()
    rows = []
    for line in lines:
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line[len("import time:"):].split("|")
        try:
            self_us, cum_us = int(parts[0]), int(parts[1])
        except ValueError:
            continue
        rows.append((cum_us, self_us, parts[2].rstrip()))
    total_self = sum(r[1] for r in rows)
    out = [f"{len(rows)} modules imported after the floor, {total_self / 1e3:.1f} ms self time in all",
           "cumulative ms | self ms | module"]
    for cum, self_us, name in sorted(rows, reverse=True)[:top]:
        out.append(f"{cum / 1e3:12.1f} | {self_us / 1e3:7.1f} | {name}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", default=["this=."], help="LABEL=SITE (default: this=.)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--explain", action="store_true", help="importtime + cProfile of the make (first version)")
    parser.add_argument("--no-bytecode", action="store_true", help="compile every module from source (no .pyc)")
    args = parser.parse_args()
    versions = [v.split("=", 1) for v in args.versions]
    with tempfile.TemporaryDirectory() as tmp:
        home, cwd = Path(tmp) / "home", Path(tmp)
        home.mkdir()
        bytecode = not args.no_bytecode
        results: dict[str, list[dict[str, float]]] = {label: [] for label, _ in versions}
        for _, site in versions:  # warm-up: writes the bytecode, fills the OS file cache
            _run(CHILD, _env(site, home, bytecode=bytecode), cwd)
        for _ in range(args.repeats):
            for label, site in versions:
                proc = _run(CHILD, _env(site, home, bytecode=bytecode), cwd)
                results[label].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        if args.explain:
            label, site = versions[0]
            print(f"## {label}: python -X importtime (after the floor)\n")
            print(_importtime(_run(IMPORTTIME, _env(site, home, bytecode=bytecode), cwd, "-X", "importtime").stderr))
            print(f"\n## {label}: cProfile of gymnasium.make('Blox-v0')\n")
            print(_run(PROFILE, _env(site, home, bytecode=bytecode), cwd).stdout)
    labels = [label for label, _ in versions]
    kind = "from source, no bytecode" if args.no_bytecode else "from bytecode"
    print(f"{args.repeats} fresh processes per version ({kind}), median / min in ms\n")
    print("| measurement | " + " | ".join(labels) + " |")
    print("| --- |" + " --- |" * len(labels))
    for key, name in ROWS:
        cells = []
        for label in labels:
            vals = [r[key] * 1e3 for r in results[label]]
            cells.append(f"{statistics.median(vals):.1f} / {min(vals):.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
