"""``run_bench(spec) -> BenchResult``: the benchmark as a Python call; ``blox bench`` is a thin shell over it.

One call checks everything before the first search (the spec, the store, every objective against the
store's columns *and* what a search records, the output paths, the trace store), runs every
(agent, seed) search (:func:`~blox_env.agents.harness.run_benchmark`, ``jobs`` OS processes), keeps
each finished search's trace in the trace store as it arrives, and summarises them (single- or
multi-objective). Writers for the table, the notes, the report and the plots are methods of the
:class:`BenchResult`, so a failed writer loses no search: the traces are kept and the message says
how to regenerate the outputs.

Trace stores (``traces=``) are stores of their own (:meth:`~blox_env.datasets.store.core.BloxStore.open_traces`:
never the benchmark, locked against a second writer). Each search is stored as
``<agent>-s<seed>-<spec key>`` where the spec key is a digest of everything but the agents and the seeds,
so a rerun with the same spec resumes (finished searches are read back and skipped), a different
spec adds runs under new names, and nothing is replaced. Ctrl-C stops launching searches, cancels
those in flight and keeps the finished ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.agents.spec import BenchSpec, resolve_agent
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError

__all__ = ["MAX_JOBS", "BenchOutputs", "BenchResult", "run_bench", "spec_key"]

#: OS processes running searches at once, at most.
MAX_JOBS = 256
Traces = dict[tuple[str, int], list[dict[str, Any]]]


#: (group, option, default) of BenchSpec options added after trace stores were first keyed by :func:`spec_key`.
_LATER_OPTIONS = (("search", "proxy", None), ("blockwise", "live_replay", False))


def spec_key(spec: BenchSpec) -> str:
    """12 hex digits naming what a search depends on besides its agent and seed (the resume key)."""
    data = spec.to_dict()
    # options added since traces were first keyed stay out while at their defaults, so that older traces resume
    for group, name, default in _LATER_OPTIONS:
        if data[group].get(name, default) == default:
            data[group].pop(name, None)
    data["search"] = {k: v for k, v in data["search"].items() if k not in ("agents", "seeds")}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------- outputs
def _check_file(kind: str, value: Any, suffix: str) -> Path | None:
    """An output file path: a non-empty str/PathLike with ``suffix``, not a folder, in a writable existing folder."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidArgumentTypeError(f"{kind} must be a file path (str) or None, got {value!r}")
    text = os.fspath(value)
    if not text.strip():
        raise InvalidArgumentError(f"{kind} must be a file path ending in {suffix}, got an empty string")
    path = Path(text).expanduser()
    if path.suffix.lower() != suffix:
        raise InvalidArgumentError(f"{kind} {text!r} must end in {suffix} (it is written as {suffix[1:].upper()})")
    if path.is_dir():
        raise InvalidArgumentError(f"{kind} {text!r} is a folder: give a file path ending in {suffix}")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise InvalidArgumentError(f"{kind} {text!r}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InvalidArgumentError(f"{kind} {text!r} cannot be written (no write permission in {parent})")
    return path


@dataclass(frozen=True, kw_only=True)
class BenchOutputs:
    """Where a run writes its report (Markdown, ``.md``) and plots (PNG, ``.png``; more plots beside it)."""

    report: str | os.PathLike[str] | None = None
    plot: str | os.PathLike[str] | None = "bench_anytime.png"

    def __post_init__(self) -> None:
        object.__setattr__(self, "report", _check_file("report", self.report, ".md"))
        object.__setattr__(self, "plot", _check_file("plot", self.plot, ".png"))

    def plots(self, spec: BenchSpec) -> list[Path]:
        """Exactly the plot files a run of ``spec`` writes."""
        if self.plot is None:
            return []
        base = Path(self.plot)
        if spec.search.objectives is not None:
            return [base.with_name(f"{base.stem}_hv.png"), base.with_name(f"{base.stem}_fronts.png")]
        out = [base]
        if spec.simulated:
            other = "compute" if spec.budget.kind == "wall" else "sim_wall_clock"
            out.append(base.with_name(f"{base.stem}_{other}.png"))
        return out

    def planned(self, spec: BenchSpec) -> list[Path]:
        """Every file a run of ``spec`` writes (plots, then the report)."""
        return self.plots(spec) + ([Path(self.report)] if self.report is not None else [])


# ---------------------------------------------------------------------------------------------- result
@dataclass
class BenchResult:
    """A finished benchmark: the traces by (agent, seed), the summary rows and what is needed to report them."""

    spec: BenchSpec
    store_name: str
    traces: Traces
    rows: list[dict[str, Any]]
    seconds: float
    benchmark: dict[str, Any]
    best_index: int | None = None
    best_report: float | None = None
    report_values: dict[int, float] | None = None
    pareto: Any = None  # the ParetoReference of a multi-objective run
    resumed: int = 0  # searches read back from the trace store instead of run
    trace_store: str | None = None
    written: list[Path] = field(default_factory=list)

    def table(self) -> str:
        """The summary table (Markdown)."""
        from blox_env.reports import bench as single
        from blox_env.reports import pareto_bench as multi

        if self.pareto is not None:
            return multi.markdown_table(self.rows, spec=self.spec)
        return single.markdown_table(self.rows, spec=self.spec)

    def notes(self) -> str:
        """What the table's numbers mean (Markdown)."""
        from blox_env.reports import bench as single
        from blox_env.reports import pareto_bench as multi

        if self.pareto is not None:
            return single.notes_markdown(multi.table_notes(self.spec, ref=self.pareto))
        return single.notes_markdown(single.table_notes(self.spec, best_index=self.best_index,
                                                        best_report=self.best_report))

    def write(self, outputs: BenchOutputs) -> list[Path]:
        """Write the plots and the report of ``outputs``; returns the files written."""
        from blox_env.reports import bench as single
        from blox_env.reports import pareto_bench as multi

        title = f"{self.store_name}: anytime search"
        out: list[Path] = []
        plots = outputs.plots(self.spec)
        if self.pareto is not None:
            if plots:
                out.append(multi.plot_hv_curves(self.traces, plots[0], spec=self.spec, ref=self.pareto,
                                                title=f"{self.store_name}: anytime hypervolume"))
                out.append(multi.plot_fronts(self.rows, plots[1], ref=self.pareto,
                                             title=f"{self.store_name}: final fronts (median-hypervolume seed)"))
            if outputs.report is not None:
                out.append(multi.write_report(outputs.report, rows=self.rows, spec=self.spec, ref=self.pareto,
                                              plots=tuple(out[:2]), store_name=self.store_name,
                                              seconds=self.seconds, benchmark=self.benchmark))
        else:
            if plots:
                out.append(single.plot_anytime(self.traces, plots[0], spec=self.spec, best=self.best_report,
                                               title=title, report=self.report_values))
            if len(plots) > 1:
                out.append(single.plot_anytime_other_clock(self.traces, plots[1], spec=self.spec,
                                                           best=self.best_report, title=title,
                                                           report=self.report_values))
            if outputs.report is not None:
                out.append(single.write_report(outputs.report, rows=self.rows, spec=self.spec,
                                               plot=out[0] if out else "", store_name=self.store_name,
                                               best_index=self.best_index, best_report=self.best_report,
                                               seconds=self.seconds, benchmark=self.benchmark))
        self.written = out
        return out


# ---------------------------------------------------------------------------------------------- checks
def record_metrics(store: Any, spec: BenchSpec) -> list[str]:
    """The metrics a search's records carry in this mode (what objectives and report metrics can read)."""
    from blox_env.rewards.factory import make_tabular_backend
    from blox_env.space import Arch

    extra = {"teacher": spec.blockwise.teacher} if spec.mode == "blockwise" else {}
    backend = make_tabular_backend(store, metric=spec.search.metric, seed_mode=spec.search.seed_mode,
                                   mode=spec.mode, **extra)
    ev = backend.evaluate(Arch.from_index(int(store.index[0])), None, cost_unit="evaluations",
                          rng=np.random.default_rng(0))
    return sorted(ev.metrics)


def check_against_store(spec: BenchSpec, store: Any) -> None:
    """Everything about ``spec`` that depends on the benchmark: objectives (store columns and record metrics,
    one objective per column, no ``@epoch``), the report metric, the constraint's columns."""
    from blox_env.agents.screening import ProxyScreenedEvolution

    needs = [a for a in spec.search.agents if issubclass(resolve_agent(a), ProxyScreenedEvolution)]
    if needs and spec.search.proxy is None:
        raise InvalidArgumentError(f"agent {needs[0]} screens models by a zero-cost proxy: name one with proxy= "
                                   f"(blox bench --proxy NAME; store {store.name} holds "
                                   f"{', '.join(store.proxy_names()) or 'none'})")
    if spec.search.proxy is not None and spec.search.proxy not in store.proxy_names():
        held = ", ".join(store.proxy_names()) or "none (compute them with `blox build-proxies`)"
        raise InvalidArgumentError(f"unknown proxy {spec.search.proxy!r}: store {store.name} holds {held}")
    recorded = record_metrics(store, spec)
    if spec.search.report_metric not in recorded:
        raise InvalidArgumentError(f"report_metric {spec.search.report_metric!r} is not recorded by a search on "
                                   f"{store.name}: allowed {', '.join(recorded)}")
    if spec.search.objectives is None:
        return
    from blox_env.objectives import parse_objectives

    parsed = parse_objectives(spec.search.objectives, store=store)
    columns = [o.column for o in parsed]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise InvalidArgumentError(f"objectives name column(s) {', '.join(map(repr, dupes))} more than once "
                                   f"({', '.join(spec.search.objectives)}): each objective must be another column")
    for spec_text, o in zip(spec.search.objectives, parsed):
        if o.epoch is not None:
            raise InvalidArgumentError(f"objective {spec_text!r}: a benchmark reads each objective from the search's "
                                       "records at the fidelity evaluated, so '@epoch' does not apply; drop it")
        if o.column not in recorded:
            raise InvalidArgumentError(f"objective {spec_text!r}: column {o.column!r} is in the store but not in "
                                       f"what a search records; objectives of a benchmark: {', '.join(recorded)}")


def _check_jobs(jobs: Any, executor: Any) -> None:
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or not 1 <= int(jobs) <= MAX_JOBS:
        raise InvalidArgumentError(f"jobs (searches run at once, OS processes) must be an integer in 1..{MAX_JOBS}, "
                                   f"got {jobs!r}")
    if executor not in ("serial", "process", "ray"):
        raise InvalidArgumentError(f"executor must be 'serial', 'process' or 'ray', got {executor!r}")


# ---------------------------------------------------------------------------------------------- traces
def _trace_name(agent: str, seed: int, key: str) -> str:
    return f"{agent}-s{seed}-{key}"


def _records(columns: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Trace records from a stored trace's columns (integer fields as ints, ``metrics`` as a dict)."""
    ints = {"arch_index", "step", "fidelity", "worker", "phase", "round", "teacher", "promoted"}
    scalars = {k: v for k, v in columns.items() if not k.startswith("metrics/")}
    metrics = {k[len("metrics/"):]: v for k, v in columns.items() if k.startswith("metrics/")}
    n = len(next(iter(columns.values()))) if columns else 0
    out = []
    for i in range(n):
        row: dict[str, Any] = {k: (int(v[i]) if k in ints and math.isfinite(v[i]) else float(v[i]))
                               for k, v in scalars.items()}
        if "select" in row:
            row["select"] = bool(row["select"])
        row["metrics"] = {k: float(v[i]) for k, v in metrics.items() if math.isfinite(v[i])}
        out.append(row)
    return out


def _finished(tstore: Any, spec: BenchSpec, key: str) -> Traces:
    """Searches of this spec already in the trace store (complete traces only)."""
    runs = tstore.trace_runs()
    out: Traces = {}
    for agent in spec.search.agents:
        for seed in range(spec.search.seeds):
            name = _trace_name(agent, seed, key)
            if name in runs and runs[name].get("spec_key") == key:
                out[(agent, seed)] = _records(tstore.read_trace(name))
    return out


# ---------------------------------------------------------------------------------------------- the run
def run_bench(spec: BenchSpec, *, store: Any = None, jobs: int = 2, executor: str = "process",
              traces: str | os.PathLike[str] | None = None, outputs: BenchOutputs | None = None,
              progress: bool = True, log: Any = None) -> BenchResult:
    """Run the benchmark ``spec`` on ``store`` (default: the imported BLOX, else the bundled Blox-mini).

    ``jobs`` searches run at once on ``executor`` (``"serial"``, ``"process"``, ``"ray"``); ``traces``: a
    trace store folder (created, or resumed when it holds finished searches of the same spec); ``outputs``:
    report and plots, checked before any search and written after the traces are kept (then listed in
    ``result.written``). ``log(line)`` receives progress lines (default: none). Raises a
    :class:`~blox_env.errors.BloxError` before any search for every bad input.
    """
    from blox_env.agents.harness import check_complete, run_benchmark, summarise_traces
    from blox_env.datasets.store.core import BloxStore, open_store
    from blox_env.datasets.store.provenance import describe_benchmark

    say = log if log is not None else (lambda line: None)
    if not isinstance(spec, BenchSpec):
        raise InvalidArgumentTypeError(f"spec must be a BenchSpec (e.g. BenchSpec.from_options(agents=...)), got "
                                       f"{spec!r}")
    _check_jobs(jobs, executor)
    if outputs is not None and not isinstance(outputs, BenchOutputs):
        raise InvalidArgumentTypeError(f"outputs must be a BenchOutputs or None, got {outputs!r}")
    st = store if isinstance(store, BloxStore) else open_store(store)
    check_complete(st.location)
    check_against_store(spec, st)
    key = spec_key(spec)
    tstore = BloxStore.open_traces(traces, benchmark=st) if traces is not None else None
    try:
        done = _finished(tstore, spec, key) if tstore is not None else {}
        todo = [(a, s) for a in spec.search.agents for s in range(spec.search.seeds) if (a, s) not in done]
        if done:
            say(f"resuming: {len(done)} finished searches read from {tstore.location}, {len(todo)} to run")
        results: Traces = dict(done)

        def keep(agent: str, seed: int, trace: list[dict[str, Any]]) -> None:
            results[(agent, seed)] = trace
            if tstore is not None:
                tstore.write_trace(_trace_name(agent, seed, key), trace, attrs={
                    "agent": agent, "seed": seed, "benchmark": st.name, "spec_key": key, "spec": spec.to_dict(),
                    "cost_unit": spec.budget.cost_unit, "mode": spec.mode, "strategy": spec.blockwise.strategy,
                    "objectives": list(spec.search.objectives or ()), "sim_workers": spec.sim.sim_workers,
                    "worker_mode": spec.sim.mode, "budget_kind": spec.budget.kind})

        t = time.perf_counter()
        try:
            run_benchmark(st.location, spec=spec, executor=executor, jobs=int(jobs), progress=progress,
                          only=todo, on_result=keep)
        except KeyboardInterrupt:
            kept = f" in {tstore.location}" if tstore is not None else " in memory only (pass --traces to keep them)"
            say(f"interrupted: {len(results) - len(done)} searches finished this run and were kept{kept}; "
                f"{len(todo) - (len(results) - len(done))} not finished. Rerun the same command to resume.")
            raise
        seconds = time.perf_counter() - t
    finally:
        if tstore is not None:
            tstore.close()
    ordered = {(a, s): results[(a, s)] for a in spec.search.agents for s in range(spec.search.seeds)}
    result = _summarise(spec, st, ordered, seconds=seconds, summarise=summarise_traces,
                        benchmark=describe_benchmark(st))
    result.resumed, result.trace_store = len(done), (str(traces) if traces is not None else None)
    if outputs is not None:
        try:
            result.write(outputs)
        except Exception as exc:
            where = (f"the traces are kept in {traces}: rerun the same command to regenerate the outputs without "
                     "searching" if traces is not None else "rerun with --traces FOLDER to keep traces")
            raise InvalidArgumentError(f"writing the outputs failed ({type(exc).__name__}: {exc}); {where}") from exc
    return result


def _summarise(spec: BenchSpec, st: Any, traces: Traces, *, seconds: float, summarise: Any,
               benchmark: dict[str, Any]) -> BenchResult:
    """The summary rows (single- or multi-objective) of finished traces."""
    if spec.search.objectives is not None:
        from blox_env.agents.pareto_bench import pareto_reference, summarise_pareto

        ref = pareto_reference(st, spec.search.objectives)
        rows = summarise_pareto(traces, spec=spec, ref=ref)
        return BenchResult(spec=spec, store_name=st.name, traces=traces, rows=rows, seconds=seconds,
                           benchmark=benchmark, pareto=ref)
    from blox_env.reports.bench import best_model

    tables = None
    if spec.mode == "blockwise":  # answers are scored by their normal accuracy, whichever signal picked them
        from blox_env.datasets.store.blockwise import BlockwiseTables

        tables = BlockwiseTables(st)
    best = best_model(st, metric=spec.search.metric, report_metric=spec.search.report_metric, tables=tables)
    rows = summarise(traces, spec=spec, best_index=best.index, best_report=best.report, report=best.values)
    return BenchResult(spec=spec, store_name=st.name, traces=traces, rows=rows, seconds=seconds,
                       benchmark=benchmark, best_index=best.index, best_report=best.report,
                       report_values=best.values)


def describe_plan(spec: BenchSpec, outputs: BenchOutputs | None, traces: Any) -> Sequence[str]:
    """What a run will write, in words (the CLI prints it before searching)."""
    files = [str(p) for p in (outputs.planned(spec) if outputs is not None else [])]
    if traces is not None:
        files.append(f"{traces} (trace store)")
    return files
