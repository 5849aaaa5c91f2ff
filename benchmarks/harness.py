"""Agent overhead: evaluations per second per search agent, BRP-NAS search quality, main-job time; old vs new.

Three measurements, each comparable between two installs of ``blox_env`` (e.g. this checkout and an
older commit installed in a second venv, see below), run side by side so machine noise hits both alike:

``rate``
    Evaluations per second of every agent of the main job (``blox bench``'s defaults: random, evolution,
    local, reinforce, hyperband, brpnas) on the bundled store at the main job's largest budget (600 s of
    recorded training, repeats free, seed mode "random": the :class:`BenchSpec` defaults). Per agent and
    seed: build the agent, run one search with ``run_search`` on a backend built once, and divide the
    evaluations in the traces by the wall time (agent construction included; the store is opened once,
    and one short untimed search per agent first pays for imports and caches). Torch gets one thread.
``quality``
    BRP-NAS's summary at the bench budgets (100, 300, 600 s; 20 seeds): per budget the mean and
    standard error of the test top-1 of the best-validation model within the budget (the harness's
    summary rule, :func:`summarise_traces`).
``mainjob``
    Wall time of ``blox bench`` with its defaults (``--jobs 2``) under each interpreter, back to back.

``compare`` drives ``rate`` (and optionally the others) under several interpreters in alternation
(ABAB...), each in a fresh process, checks which ``blox_env`` each one imports, and prints Markdown tables.

Set-up for "before" (the code at commit 3cab18a)::

    git worktree add /tmp/blox-old 3cab18a
    python -m venv /tmp/venv-old
    echo $PWD/.venv/lib/python3.11/site-packages > /tmp/venv-old/lib/python3.11/site-packages/main.pth
    /tmp/venv-old/bin/pip install --no-deps /tmp/blox-old

Then::

    python benchmarks/harness.py compare old=/tmp/venv-old/bin/python new=.venv/bin/python --rounds 2
    python benchmarks/harness.py compare old=... new=... --what quality --seeds 20 --jobs 2
    python benchmarks/harness.py compare old=... new=... --what mainjob --rounds 1

Only APIs present in both versions are used (``BenchSpec``, ``make_search_agent``, ``run_search``,
``run_benchmark``, ``summarise_traces``, ``reports.bench.best_model``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

AGENTS = ("random", "evolution", "local", "reinforce", "hyperband", "brpnas")
BUDGETS = (100.0, 300.0, 600.0)


def _spec(agents: tuple[str, ...], seeds: int, budgets: tuple[float, ...]) -> Any:
    """The main job's spec for ``agents``: v3's grouped ``BenchSpec.from_options`` or the flat v2 constructor."""
    from blox_env.agents.harness import BenchSpec

    if hasattr(BenchSpec, "from_options"):
        return BenchSpec.from_options(agents=agents, seeds=seeds, budgets=budgets)
    return BenchSpec(agents=agents, seeds=seeds, budgets=budgets)


def _option(spec: Any, name: str) -> Any:
    """A spec option by its flat name, whichever layout (v3 groups it under ``search``/``budget``)."""
    for group in ("search", "budget"):
        if hasattr(getattr(spec, group, None), name):
            return getattr(getattr(spec, group), name)
    return getattr(spec, name)


def _backend(store: Any) -> Any:
    try:
        from blox_env.rewards.factory import make_tabular_backend
    except ImportError:  # pragma: no cover - a later layout
        from blox_env.rewards import make_tabular_backend  # type: ignore[no-redef]
    return make_tabular_backend(store, metric="val_top1", seed_mode="random")


def rate(*, agents: tuple[str, ...], seeds: int, budget: float) -> dict[str, Any]:
    """Evaluations per second per agent: summed evaluations over summed wall time of ``seeds`` searches."""
    import torch

    import blox_env
    from blox_env.agents.harness import make_search_agent
    from blox_env.agents.loop import run_search
    from blox_env.datasets.store.core import open_store

    torch.set_num_threads(1)
    store = open_store(None)
    spec = _spec(agents, seeds, (budget,))
    out: dict[str, Any] = {"blox_env": blox_env.__file__, "store": store.name, "models": len(store.index),
                           "agents": {}}
    for name in agents:
        backend = _backend(store)
        warm = make_search_agent(name, backend, seed=seeds, spec=spec)  # imports and caches, untimed
        run_search(warm, backend, budget=min(budget, 30.0), cost_unit=_option(spec, "cost_unit"), seed=seeds,
                   metric=_option(spec, "metric"), charge_repeats=_option(spec, "charge_repeats"))
        evals, secs = 0, 0.0
        for seed in range(seeds):
            start = time.perf_counter()
            agent = make_search_agent(name, backend, seed=seed, spec=spec)
            trace = run_search(agent, backend, budget=budget, cost_unit=_option(spec, "cost_unit"), seed=seed,
                               metric=_option(spec, "metric"), charge_repeats=_option(spec, "charge_repeats"))
            secs += time.perf_counter() - start
            evals += len(trace)
        out["agents"][name] = {"evaluations": evals, "seconds": secs, "per_s": evals / secs,
                               "us_per_eval": 1e6 * secs / evals}
    return out


def quality(*, agent: str, seeds: int, budgets: tuple[float, ...], jobs: int) -> dict[str, Any]:
    """The harness summary of ``agent`` (mean, SE per budget) plus each seed's best test top-1 per budget."""
    import blox_env
    from blox_env.agents.harness import run_benchmark, summarise_traces
    from blox_env.agents.summary import best_at_each
    from blox_env.datasets.store.core import open_store
    from blox_env.reports import bench as report_bench

    store = open_store(None)
    spec = _spec((agent,), seeds, budgets)
    report_metric = _option(spec, "report_metric")
    best = report_bench.best_model(store, metric=_option(spec, "metric"), report_metric=report_metric, tables=None)
    start = time.perf_counter()
    workers = {"jobs": jobs} if "jobs" in inspect.signature(run_benchmark).parameters else {"workers": jobs}
    traces = run_benchmark(store.location, spec=spec, executor="process" if jobs > 1 else "serial", progress=False,
                           **workers)
    secs = time.perf_counter() - start
    row = summarise_traces(traces, spec=spec, best_index=best.index, best_report=best.report,
                           report=best.values)[0]
    per_seed = [best_at_each(traces[(agent, s)], budgets, report_metric, best.values).tolist()
                for s in range(seeds)]
    return {"blox_env": blox_env.__file__, "agent": agent, "seeds": seeds, "seconds": secs,
            "evaluations": [len(traces[(agent, s)]) for s in range(seeds)],
            "best": {f"{b:g}": row[f"best@{b:g}"] for b in budgets}, "per_seed": per_seed}


def mainjob(python: str, *, jobs: int) -> dict[str, Any]:
    """Wall and CPU time of ``blox bench`` (defaults, ``--jobs``) run by ``python``'s install, in a scratch folder.

    CPU time (user + system of the command and its worker processes) is the steadier figure on a shared machine.
    """
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(Path(python).with_name("blox")), "bench", "--jobs", str(jobs), "--plot",
               str(Path(tmp) / "anytime.png")]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
        secs = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(f"blox bench failed under {python}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": secs, "cpu_seconds": cpu, "table": done.stdout[-3000:]}


def _child(python: str, what: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [python, str(Path(__file__).resolve()), what, "--seeds", str(args.seeds), "--jobs", str(args.jobs),
           "--budget", str(args.budget)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd="/", env=env)
    if done.returncode:
        raise RuntimeError(f"{what} failed under {python}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> None:
    """Run ``args.what`` under each LABEL=PYTHON in alternation; print Markdown tables and save JSON."""
    versions = dict(v.split("=", 1) for v in args.versions)
    results: dict[str, list[dict[str, Any]]] = {label: [] for label in versions}
    for r in range(args.rounds):
        for label, python in versions.items():
            start = time.perf_counter()
            res = mainjob(python, jobs=args.jobs) if args.what == "mainjob" else _child(python, args.what, args)
            results[label].append(res)
            where = res.get("blox_env", python)
            print(f"round {r + 1} {label}: {time.perf_counter() - start:.1f} s ({where})", file=sys.stderr, flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    labels = list(versions)
    if args.what == "rate":
        print("| agent | " + " | ".join(f"{lb} eval/s (us/eval)" for lb in labels) + " | speed-up |")
        print("| --- " * (len(labels) + 2) + "|")
        for agent in AGENTS:
            # the fastest round of each version: the least disturbed by the shared machine
            best = {lb: max(res["agents"][agent]["per_s"] for res in results[lb]) for lb in labels}
            cells = [f"{best[lb]:,.1f} ({1e6 / best[lb]:,.0f})" for lb in labels]
            print(f"| {agent} | " + " | ".join(cells) + f" | {best[labels[-1]] / best[labels[0]]:.1f}x |")
    elif args.what == "quality":
        print("| version | " + " | ".join(f"best @ {b:g} s" for b in BUDGETS) + " | searches' wall time |")
        print("| --- " * (len(BUDGETS) + 2) + "|")
        for lb in labels:
            for res in results[lb]:
                cells = [f"{m:.2f} ± {se:.2f}" for m, se in (res["best"][f"{b:g}"] for b in BUDGETS)]
                print(f"| {lb} | " + " | ".join(cells) + f" | {res['seconds']:.0f} s |")
    else:
        for key in ("seconds", "cpu_seconds"):
            for lb in labels:
                secs = [res[key] for res in results[lb]]
                print(f"{key} {lb}: {', '.join(f'{s:.0f}' for s in secs)} (median {statistics.median(secs):.0f})")
            med = {lb: statistics.median(res[key] for res in results[lb]) for lb in labels}
            print(f"{key} ratio {labels[-1]}/{labels[0]}: {med[labels[-1]] / med[labels[0]]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("rate", "quality", "mainjob", "compare"))
    parser.add_argument("versions", nargs="*", help="compare: LABEL=PYTHON (the first is the baseline)")
    parser.add_argument("--what", dest="compare_what", choices=("rate", "quality", "mainjob"), default="rate")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3, help="rate: searches per agent; quality: 20 for the table")
    parser.add_argument("--jobs", type=int, default=2, help="quality/mainjob: searches run at once")
    parser.add_argument("--budget", type=float, default=max(BUDGETS), help="rate: the budget (seconds of training)")
    parser.add_argument("--out", help="compare: save every round's JSON here")
    args = parser.parse_args()
    if args.what == "compare":
        args.what = args.compare_what
        compare(args)
    elif args.what == "rate":
        print(json.dumps(rate(agents=AGENTS, seeds=args.seeds, budget=args.budget)))
    elif args.what == "quality":
        print(json.dumps(quality(agent="brpnas", seeds=args.seeds, budgets=BUDGETS, jobs=args.jobs)))
    else:
        print(json.dumps(mainjob(sys.executable, jobs=args.jobs)))


if __name__ == "__main__":
    main()
