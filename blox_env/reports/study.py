"""``blox study``: the BLOX paper's blockwise analysis, rerun on any store with blockwise tables.

Questions (numbering as in the paper's analysis; :mod:`.study_report` writes the report):

- Q1 student x teacher: every teacher Mi fine-tuned (full length) from every Mj, next to normal accuracy;
- Q2 Spearman between fine-tuned and normal accuracy over the space, per full teacher;
- Q3 per-stage Spearman of each signature (minus the distillation loss; the LANA accuracy change)
  against the oracle block ranking (best normal accuracy reachable with that block in that stage);
- Q4 predictors (DONNA, LANA, GCN, BRP) vs number of training models, on fine-tuned accuracy;
- Q5 short vs full fine-tuning: correlation, and search with short FT then full FT of the top;
- Q6 M1 vs M5 fine-tuning correlation, and the iterative teacher strategy;
- Table 2: conventional and blockwise searches at fixed costs and the cost to reach a target.

All searches are scored alike: the reported value of a search's answer is that model's *normal*
test accuracy (seed mean), i.e. what the architecture is worth, whichever signal selected it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blox_env.datasets.store.blockwise import BlockwiseTables, oracle_block_scores
from blox_env.errors import InvalidArgumentError

__all__ = ["METHODS", "Method", "StudyConfig", "StudyResults", "run_searches", "spearman", "study_numbers"]


@dataclass(frozen=True)
class Method:
    """One search method of the comparison: an agent, a reward mode, a teacher and a strategy."""

    label: str
    agent: str
    mode: str = "normal"
    teacher: str = "M1"
    strategy: str = "plain"
    ft: str = "full"  # "full" | "short": which fine-tuning table a plain blockwise search reads
    kind: str = "conventional"


METHODS: tuple[Method, ...] = (
    Method("random", "random"),
    Method("evolution", "evolution"),
    Method("brpnas", "brpnas"),
    Method("donna (M1)", "donna", "blockwise", kind="blockwise"),
    Method("lana (M1)", "lana", "blockwise", kind="blockwise"),
    Method("evolution, FT-full (M1)", "evolution", "blockwise", kind="blockwise"),
    Method("evolution, FT-short (M1)", "evolution", "blockwise", ft="short", kind="blockwise"),
    Method("evolution, FT-short + FT-full (M1)", "evolution", "blockwise", strategy="two-stage", kind="blockwise"),
    Method("evolution, FT-full (M5)", "evolution", "blockwise", teacher="M5", kind="blockwise"),
    Method("evolution, iterative teacher (from M5)", "evolution", "blockwise", teacher="M5", strategy="iterative",
           kind="blockwise"),
)


@dataclass(frozen=True)
class StudyConfig:
    """How much to run. Budgets default to multiples of the median normal training time of the store."""

    seeds: int = 10
    budget_multiples: tuple[float, ...] = (15.0, 40.0, 100.0)
    budgets: tuple[float, ...] | None = None
    target_quantile: float = 0.98
    predictors: tuple[str, ...] = ("donna", "lana", "gcn", "brp")
    predictor_sizes: tuple[int, ...] = (10, 25, 50, 100)
    predictor_seeds: int = 3
    predictor_test_size: int = 60
    methods: tuple[Method, ...] = METHODS
    executor: str = "process"
    workers: int = 2
    agent_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.seeds < 1 or self.predictor_seeds < 1:
            raise InvalidArgumentError(f"seeds and predictor_seeds must be >= 1, got {self.seeds}, "
                                       f"{self.predictor_seeds}")
        if not 0.0 < self.target_quantile <= 1.0:
            raise InvalidArgumentError(f"target_quantile must be in (0, 1], got {self.target_quantile}")


@dataclass
class StudyResults:
    """Everything the report shows (numbers, plus the search traces for the anytime plot)."""

    store_name: str
    teachers: dict[str, int]
    numbers: dict[str, Any]
    predictor_rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    traces: dict[str, list[list[dict[str, Any]]]]
    budgets: tuple[float, ...]
    target: float
    best_index: int
    best_report: float
    report: dict[int, float]
    seconds: dict[str, float] = field(default_factory=dict)
    benchmark: dict[str, Any] = field(default_factory=dict)  # describe_benchmark(store): which data this is


def spearman(a: Any, b: Any) -> float:
    """Spearman's rho over the pairs where both values are finite (NaN with fewer than 3 pairs)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(spearmanr(x[ok], y[ok]).statistic)


def study_numbers(tables: BlockwiseTables) -> dict[str, Any]:
    """Q1, Q2, Q3, Q5 and Q6 correlations and tables: pure functions of the stored tables."""
    store = tables.store
    normal = tables.normal("test_top1")
    names = list(tables.teachers)
    rows = store.rows([tables.teachers[n] for n in names])
    full = tables.full_teachers()
    short_e, full_e = min(tables.ft_epochs), max(tables.ft_epochs)
    ft = {(t, e): tables.finetuned(t, e) for t in full for e in tables.ft_epochs}
    out: dict[str, Any] = {
        "teachers": {n: {"index": tables.teachers[n].index, "normal_test_top1": float(normal[r]),
                         "blocks": list(tables.teachers[n].blocks)} for n, r in zip(names, rows)},
        "matrix": tables.matrix("test_top1").tolist(),
        "ft_epochs": [short_e, full_e], "distill_epochs": list(tables.distill_epochs),
    }
    m = np.array(out["matrix"])
    out["q1_teacher_quality_vs_student_mean"] = spearman(normal[rows], np.nanmean(m, axis=0))
    out["q1_diagonal_minus_offdiagonal"] = float(np.nanmean(np.diag(m)) - np.nanmean(m[~np.eye(len(m), dtype=bool)]))
    out["q2"] = {t: spearman(ft[(t, full_e)], normal) for t in full}
    out["q2_short"] = {t: spearman(ft[(t, short_e)], normal) for t in full}
    info = store.run_info(tables.normal_run)
    if len(info.seeds) >= 2:
        out["noise_ceiling"] = spearman(store.get("test_top1", None, seed=info.seeds[0], run=info.name),
                                        store.get("test_top1", None, seed=info.seeds[1], run=info.name))
    oracle = oracle_block_scores(store, normal)
    q3 = []
    for t in full:
        for e in tables.distill_epochs:
            sig = tables.signatures(t, e)
            for label, score in (("DONNA (-distill loss)", -sig["distill_loss"]), ("LANA (acc. change)",
                                                                                    sig["lana_delta"])):
                for s in range(3):
                    ok = np.isfinite(oracle[s])
                    q3.append({"teacher": t, "distill_epochs": e, "signature": label, "stage": s,
                               "rho": spearman(score[s, ok], oracle[s, ok]), "blocks": int(ok.sum())})
    out["q3"] = q3
    out["oracle"] = oracle.tolist()
    out["q5"] = {t: spearman(ft[(t, short_e)], ft[(t, full_e)]) for t in full}
    if len(full) >= 2:
        out["q6"] = spearman(ft[(full[0], full_e)], ft[(full[-1], full_e)])
        out["q6_short"] = spearman(ft[(full[0], short_e)], ft[(full[-1], short_e)])
    return out


def default_budgets(tables: BlockwiseTables, multiples: Sequence[float]) -> tuple[float, ...]:
    """Budgets (seconds) as multiples of the median normal training time of one model."""
    info = tables.store.run_info(tables.normal_run)
    t = float(np.nanmedian(tables.store.get("train_time_s", None, seed=info.seeds[0], run=info.name)))
    return tuple(round(m * t, 1) for m in multiples)


def run_searches(store_location: str, tables: BlockwiseTables, *, config: StudyConfig, budgets: tuple[float, ...],
                 target: float, report: dict[int, float], best_index: int, best_report: float,
                 progress: bool = True) -> tuple[list[dict[str, Any]], dict[str, list[list[dict[str, Any]]]]]:
    """Every method x seed on the tables; returns the summary rows and the traces per label."""
    from blox_env.agents.harness import BenchSpec, run_benchmark, summarise_traces

    summary, traces = [], {}
    short_e = min(tables.ft_epochs)
    for method in config.methods:
        spec = BenchSpec(agents=(method.agent,), seeds=config.seeds, budgets=budgets, target=target,
                         mode=method.mode, teacher=method.teacher, strategy=method.strategy,
                         ft_epochs=short_e if method.ft == "short" else None,
                         agent_kwargs=config.agent_kwargs)
        if progress:
            print(f"study: searching with {method.label} ({config.seeds} seeds)", flush=True)
        result = run_benchmark(store_location, spec=spec, executor=config.executor, workers=config.workers,
                               progress=progress)
        row = summarise_traces(result, spec=spec, best_index=best_index, best_report=best_report, report=report,
                               label=method.label)[0]
        row["kind"] = method.kind
        summary.append(row)
        traces[method.label] = [result[(method.agent, s)] for s in range(config.seeds)]
    return summary, traces


def run_study(store: Any, *, config: StudyConfig = StudyConfig(), progress: bool = True) -> StudyResults:
    """Compute every number, predictor curve and search of the study on a store with blockwise tables."""
    import time

    from blox_env.datasets.store.provenance import describe_benchmark
    from blox_env.predictors.evaluation import EvalSpec, run_evaluation
    from blox_env.reports.bench import best_model

    tables = BlockwiseTables(store)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    numbers = study_numbers(tables)
    seconds["tables"] = time.perf_counter() - t
    t = time.perf_counter()
    first = tables.full_teachers()[0]
    run = tables.ft_run(first)
    n_ft = int(np.isfinite(tables.finetuned(first)).sum())
    sizes = tuple(n for n in config.predictor_sizes if n + config.predictor_test_size <= n_ft)
    predictor_rows: list[dict[str, Any]] = []
    if sizes:
        spec = EvalSpec(predictors=config.predictors, train_sizes=sizes, seeds=config.predictor_seeds,
                        test_size=config.predictor_test_size, metric="test_top1", target_seed=0, run=run)
        predictor_rows = run_evaluation(store, spec=spec, signatures=tables.signatures(first), progress=progress)
    seconds["predictors"] = time.perf_counter() - t
    best = best_model(store, tables=tables)
    report = best.values or {}
    budgets = config.budgets or default_budgets(tables, config.budget_multiples)
    target = float(np.nanquantile(tables.normal("test_top1"), config.target_quantile))
    t = time.perf_counter()
    summary, traces = run_searches(store.location, tables, config=config, budgets=budgets, target=target,
                                   report=report, best_index=best.index, best_report=best.report, progress=progress)
    seconds["searches"] = time.perf_counter() - t
    return StudyResults(store.name, {n: a.index for n, a in tables.teachers.items()}, numbers, predictor_rows,
                        summary, traces, budgets, target, best.index, best.report, report, seconds,
                        describe_benchmark(store))
