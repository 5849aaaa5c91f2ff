"""``blox study``: the BLOX paper's blockwise analysis, rerun on any store with blockwise tables.

Questions (numbering as in the paper's analysis; :mod:`.study_report` writes the report and
:mod:`.study_claims` sets each result next to the paper's claim with a verdict):

- Q1 student x teacher: every teacher Mi fine-tuned (full length) from every Mj, next to normal accuracy,
  and whether students of M1 beat M1;
- Q2 Spearman between fine-tuned and normal accuracy over the space, per full teacher;
- Q3 per-stage Spearman of each signature (minus the distillation loss; the LANA accuracy change)
  against two oracle block rankings (the best normal, and the best fine-tuned, accuracy reachable with
  that block in that stage), each over the stage's K blocks;
- Q4 predictors (DONNA, LANA, GCN, BRP) vs number of training models, on fine-tuned accuracy;
- Q5 short vs full fine-tuning: correlation, and search with short FT then full FT down the ranking;
- Q6 M1 vs M5 fine-tuning correlation, and the iterative teacher strategy;
- Table 2: conventional and blockwise searches at fixed costs (in units of one normal training, as the
  paper) and the cost after which a search's answer stays at or above the target (the best normally
  trained model's test accuracy, as the paper's 76.6).

Blockwise answers are scored twice: by the test accuracy of the fine-tuned model the search returns
(what the paper's Table 2 reports for blockwise methods) and by the architecture's normal test accuracy
(seed mean: what it is worth trained normally, the score conventional searches get).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blox_env.datasets.store.blockwise import BlockwiseTables, oracle_block_scores
from blox_env.errors import InvalidArgumentError, LiveResultMissingError, StoreError
from blox_env.reports.study_claims import question_claims, spearman, table2_conclusions
from blox_env.space import indices_to_blocks

__all__ = ["METHODS", "Method", "StudyConfig", "StudyResults", "add_plan_figures", "cost_on_plan",
           "iterative_progress", "macs_limit_kwargs", "plan_40", "run_searches", "study_numbers",
           "table2_rows", "teacher_summary"]


@dataclass(frozen=True)
class Method:
    """One search method of Table 2: an agent, a reward mode, teachers, a strategy, and the paper's row if any."""

    label: str
    agent: str
    mode: str = "normal"
    teacher: str = "M1"
    strategy: str = "plain"
    ft: str = "full"  # "full" | "short": which fine-tuning table a plain blockwise search reads
    kind: str = "conventional"
    full_teacher: str | None = None  # two-stage: the teacher of the full fine-tuning ("retrained with M1")
    macs_limit: str | None = None  # "median": LANA's integer program (and every answer) under a MACs limit
    paper: str | None = None  # the paper's Table 2 row this method reproduces (a key of PAPER_TABLE2)


METHODS: tuple[Method, ...] = (
    Method("random", "random"),
    Method("evolution", "evolution", paper="regularized evolution"),
    Method("brpnas", "brpnas", paper="BRP-NAS"),
    Method("evolution, FT-full (M1)", "evolution", "blockwise", kind="blockwise", paper="FT200 (M1)"),
    Method("evolution, FT-short (M1)", "evolution", "blockwise", ft="short", kind="blockwise", paper="FT10 (M1)"),
    Method("evolution, FT-short + FT-full (M1)", "evolution", "blockwise", strategy="two-stage", kind="blockwise",
           paper="FT10 + FT200 (M1)"),
    Method("donna (M1)", "donna", "blockwise", kind="blockwise"),
    Method("lana (M1)", "lana", "blockwise", kind="blockwise"),
    Method("lana (M1), MACs <= median", "lana", "blockwise", kind="blockwise", macs_limit="median"),
    Method("evolution, FT-full (M5)", "evolution", "blockwise", teacher="M5", kind="blockwise"),
    Method("evolution, FT-short (M5)", "evolution", "blockwise", teacher="M5", ft="short", kind="blockwise",
           paper="FT10 (M5)"),
    Method("evolution, FT-short + FT-full (M5)", "evolution", "blockwise", teacher="M5", strategy="two-stage",
           kind="blockwise", paper="FT10 + FT200 (M5)"),
    Method("evolution, FT-short (M5) + FT-full with M1", "evolution", "blockwise", teacher="M5",
           strategy="two-stage", full_teacher="M1", kind="blockwise", paper="FT10 + FT200 retrained with M1 (M5)"),
    Method("evolution, FT-short + FT-full, iterative teacher (from M5)", "evolution", "blockwise", teacher="M5",
           strategy="iterative", kind="blockwise", paper="FT10 + FT200 iterative (M5)"),
)


@dataclass(frozen=True)
class StudyConfig:
    """How much to run. Budgets default to multiples of the median normal training time of the store
    (40, the paper's Table 2 budget, among them); the target defaults to the test accuracy of the best
    normally trained model (best seed-mean validation accuracy), as the paper's 76.6."""

    seeds: int = 10
    budget_multiples: tuple[float, ...] = (15.0, 40.0, 100.0)
    budgets: tuple[float, ...] | None = None
    target: float | None = None
    search_fraction: float = 0.75  # the paper starts full fine-tuning at cost 30 of 40
    predictors: tuple[str, ...] = ("donna", "lana", "gcn", "brp")
    predictor_sizes: tuple[int, ...] = (10, 25, 50, 100)
    predictor_seeds: int = 3
    predictor_test_size: int = 60
    methods: tuple[Method, ...] = METHODS
    executor: str = "process"
    workers: int = 2
    live_store: str | None = None  # the iterative teacher trains promoted teachers live in this writable store
    live_seeds: int = 3  # searches of a live method (each trains for real: minutes, not milliseconds)
    #: a folder holding the shipped record of a live run (study_live): replayed when there is no live_store
    live_record: str | None = None
    agent_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.seeds < 1 or self.predictor_seeds < 1:
            raise InvalidArgumentError(f"seeds and predictor_seeds must be >= 1, got {self.seeds}, "
                                       f"{self.predictor_seeds}")
        if self.target is not None and not np.isfinite(self.target):
            raise InvalidArgumentError(f"target must be a finite accuracy or None, got {self.target}")
        if self.live_seeds < 1:
            raise InvalidArgumentError(f"live_seeds must be >= 1, got {self.live_seeds}")
        if not 0.0 < self.search_fraction < 1.0:
            raise InvalidArgumentError(f"search_fraction must be in (0, 1), got {self.search_fraction}")


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
    unit: float = float("nan")  # seconds of one (median) normal training: the paper's unit of cost
    table2: list[dict[str, Any]] = field(default_factory=list)  # table2_rows(...)
    teacher_info: dict[str, Any] = field(default_factory=dict)  # teacher_summary(tables): M1-M5 and the rule
    questions: dict[str, Any] = field(default_factory=dict)  # study_claims.question_claims + "Table 2" conclusions
    short_predictor_rows: list[dict[str, Any]] = field(default_factory=list)  # DONNA / LANA, shortest distillation


def study_numbers(tables: BlockwiseTables) -> dict[str, Any]:
    """Q1, Q2, Q3, Q5 and Q6 correlations and tables: pure functions of the stored tables."""
    store = tables.store
    normal = tables.normal("test_top1")
    names = list(tables.teachers)
    rows = store.rows([tables.teachers[n] for n in names])
    full = tables.full_teachers()
    short_e, full_e = min(tables.ft_epochs), max(tables.ft_epochs)
    ft = {(t, e): tables.finetuned(t, e) for t in full for e in tables.ft_epochs}
    info = store.run_info(tables.normal_run)
    out: dict[str, Any] = {
        "teachers": {n: {"index": tables.teachers[n].index, "normal_test_top1": float(normal[r]),
                         "blocks": list(tables.teachers[n].blocks)} for n, r in zip(names, rows)},
        "matrix": tables.matrix("test_top1").tolist(),
        "ft_epochs": [short_e, full_e], "distill_epochs": list(tables.distill_epochs),
        "models": len(store), "normal_epochs": info.epochs,
        "blocks_per_stage": int(max(len(np.unique(b)) for b in indices_to_blocks(store.index).T)),
    }
    m = np.array(out["matrix"])
    out["q1_teacher_quality_vs_student_mean"] = spearman(normal[rows], np.nanmean(m, axis=0))
    out["q1_diagonal_minus_offdiagonal"] = float(np.nanmean(np.diag(m)) - np.nanmean(m[~np.eye(len(m), dtype=bool)]))
    out["q2"] = {t: spearman(ft[(t, full_e)], normal) for t in full}
    out["q2_short"] = {t: spearman(ft[(t, short_e)], normal) for t in full}
    if len(info.seeds) >= 2:
        out["noise_ceiling"] = spearman(store.get("test_top1", None, seed=info.seeds[0], run=info.name),
                                        store.get("test_top1", None, seed=info.seeds[1], run=info.name))
    oracle = oracle_block_scores(store, normal)
    q3 = []
    for t in full:
        # two oracles, as the paper: the best normal accuracy, and the best accuracy fine-tuned with this teacher,
        # reachable with a block in a stage
        oracles = {"normal": oracle, "fine-tuned": oracle_block_scores(store, ft[(t, full_e)])}
        for e in tables.distill_epochs:
            sig = tables.signatures(t, e)
            for label, score in (("DONNA (-distill loss)", -sig["distill_loss"]), ("LANA (acc. change)",
                                                                                    sig["lana_delta"])):
                for which, orc in oracles.items():
                    for s in range(3):
                        ok = np.isfinite(orc[s]) & np.isfinite(score[s])
                        q3.append({"teacher": t, "distill_epochs": e, "signature": label, "oracle": which,
                                   "stage": s, "rho": spearman(score[s, ok], orc[s, ok]), "blocks": int(ok.sum())})
    out["q3"] = q3
    out["oracle"] = oracle.tolist()
    first = full[0]
    out["q1_best_student"] = {t: {"teacher_normal_test_top1": float(normal[store.rows([tables.teachers[t]])[0]]),
                                  "best_student_finetuned_test_top1": float(np.nanmax(ft[(t, full_e)])),
                                  "students_above_teacher": int(np.nansum(
                                      ft[(t, full_e)] > normal[store.rows([tables.teachers[t]])[0]]))}
                              for t in (first,)}
    out["q5"] = {t: spearman(ft[(t, short_e)], ft[(t, full_e)]) for t in full}
    if len(full) >= 2:
        out["q6"] = spearman(ft[(full[0], full_e)], ft[(full[-1], full_e)])
        out["q6_short"] = spearman(ft[(full[0], short_e)], ft[(full[-1], short_e)])
    return out


def normal_training_seconds(tables: BlockwiseTables) -> float:
    """The median recorded time of one normal training: the study's unit of cost (the paper's)."""
    info = tables.store.run_info(tables.normal_run)
    return float(np.nanmedian(tables.store.get("train_time_s", None, seed=info.seeds[0], run=info.name)))


def default_budgets(tables: BlockwiseTables, multiples: Sequence[float]) -> tuple[float, ...]:
    """Budgets (seconds) as multiples of the median normal training time of one model."""
    t = normal_training_seconds(tables)
    return tuple(round(m * t, 1) for m in multiples)


def macs_limit_kwargs(store: Any, quantile: float = 0.5) -> tuple[dict[str, Any], float]:
    """LANA's cost inputs for a MACs limit at the ``quantile`` of the store's models: per-block MACs at the
    store's width, the block budget (the limit minus the fixed stem/reduction/head MACs), and the limit."""
    from blox_env.costs import component_costs
    from blox_env.shapes import ModelConfig

    config = ModelConfig(**store.attrs["model_config"]) if "model_config" in store.attrs else ModelConfig()
    comp = component_costs(config)
    blocks = np.array([[c.macs for c in stage] for stage in comp.blocks], dtype=np.float64)
    fixed = float(comp.stem.macs + sum(r.macs for r in comp.reductions) + comp.head.macs)
    limit = float(np.quantile(store.get("flops"), quantile))
    return {"costs": blocks, "limit": limit - fixed}, limit


def run_searches(store_location: str, tables: BlockwiseTables, *, config: StudyConfig, budgets: tuple[float, ...],
                 target: float, report: dict[int, float], best_index: int, best_report: float,
                 progress: bool = True) -> tuple[list[dict[str, Any]], dict[str, list[list[dict[str, Any]]]]]:
    """Every method x seed on the tables; returns the summary rows and the traces per label."""
    from blox_env.agents.harness import BenchSpec, run_benchmark, summarise_traces

    summary, traces = [], {}
    short_e = min(tables.ft_epochs)
    for method in config.methods:
        kwargs = {k: dict(v) for k, v in config.agent_kwargs.items()}
        constraint = None
        if method.macs_limit is not None:
            lana, limit = macs_limit_kwargs(tables.store)
            kwargs.setdefault(method.agent, {}).update(lana)
            constraint = {"flops": limit}
        strategy_kwargs = {"search_fraction": config.search_fraction} if method.strategy != "plain" else {}
        source = LiveSource.of(config, method.strategy, store_location)  # cleans up after itself if it fails
        live, seeds = source.store, source.seeds(config.seeds)
        options = dict(agents=(method.agent,), budgets=budgets, target=target, mode=method.mode,
                       teacher=method.teacher, strategy=method.strategy,
                       ft_epochs=short_e if method.ft == "short" else None, agent_kwargs=kwargs, constraint=constraint,
                       full_teacher=method.full_teacher, stop_at_target=method.strategy != "plain",
                       strategy_kwargs=strategy_kwargs)
        spec = BenchSpec.from_options(**options, seeds=seeds, live_store=live, live_replay=source.replay)
        if progress:
            print(f"study: searching with {method.label} ({seeds} seeds{source.describe()})", flush=True)
        # live teachers write to one store: one process
        executor, workers = ("serial", 1) if live else (config.executor, config.workers)
        try:
            result = run_benchmark(store_location, spec=spec, executor=executor, jobs=workers, progress=progress)
        except (LiveResultMissingError, StoreError, ImportError) as exc:  # a replay that cannot finish
            if not source.replay:
                raise
            source = source.missed(str(exc))  # the tables-only row, labelled not reproduced
            spec = BenchSpec.from_options(**options, seeds=config.seeds)
            result = run_benchmark(store_location, spec=spec, executor=config.executor, jobs=config.workers,
                                   progress=progress)
        finally:
            source.close()
        row = summarise_traces(result, spec=spec, best_index=best_index, best_report=best_report, report=report,
                               label=method.label)[0]
        row.update(kind=method.kind, teacher=method.teacher if method.mode == "blockwise" else None,
                   full_teacher=method.full_teacher, paper=method.paper, live=source.label,
                   not_reproduced=source.miss,
                   macs_limit=constraint["flops"] if constraint else None)
        runs = [result[(method.agent, s)] for s in range(spec.search.seeds)]
        add_plan_figures(row, runs, budgets=budgets, unit=normal_training_seconds(tables), target=target,
                         report=report, blockwise=method.mode == "blockwise")
        if method.strategy == "iterative":
            recs = [r for t in runs for r in t if r.get("paper_step") == 4]
            row["stand_in_evaluations"] = sum(1 for r in recs if r["promoted"] != r["teacher"])
            row["promoted_evaluations"] = len(recs)
            row["iterative"] = iterative_progress(runs, budgets)
        summary.append(row)
        traces[method.label] = runs
    return summary, traces


@dataclass
class LiveSource:
    """Where the iterative row's promoted teachers come from: trained live (``store``), replayed from a shipped
    record (``store`` a temporary replay copy, ``replay``), or stood in for by tabulated teachers (neither)."""

    store: str | None = None
    replay: bool = False
    searches: int | None = None
    miss: str | None = None
    work: Any = None  # the temporary folder of a replay copy

    @classmethod
    def of(cls, config: StudyConfig, strategy: str, store_location: str) -> LiveSource:
        if strategy != "iterative":
            return cls()
        if config.live_store is not None:
            return cls(store=config.live_store, searches=config.live_seeds)
        if config.live_record is None:
            return cls()
        import tempfile
        import zipfile

        from blox_env.reports.study_live import read_live_record, replay_store

        work = tempfile.TemporaryDirectory(prefix="blox-study-replay-")
        try:
            record = read_live_record(config.live_record)
            if record is None:
                raise StoreError(f"no live record in {config.live_record} (blox study --live-store FOLDER makes one)")
            path = replay_store(store_location, config.live_record, work.name)
            return cls(store=str(path), replay=True, searches=int(record["searches"]), work=work)
        except (StoreError, OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            work.cleanup()
            return cls(miss=f"the live record in {config.live_record} cannot be replayed: {exc}")

    def seeds(self, default: int) -> int:
        """Searches of the row: a replay's recorded count, at most ``live_seeds`` live, else ``default``."""
        if self.replay and self.searches is not None:
            return self.searches
        return default if self.searches is None else min(default, self.searches)

    @property
    def label(self) -> str | None:
        """``"live"``, ``"replayed"`` or None (tables only)."""
        return None if self.store is None else "replayed" if self.replay else "live"

    def describe(self) -> str:
        return {"live": ", live", "replayed": ", replayed from the shipped live record"}.get(self.label or "", "")

    def missed(self, why: str) -> LiveSource:
        self.close()
        return LiveSource(miss=why)

    def close(self) -> None:
        if self.work is not None:
            self.work.cleanup()
            self.work = None


def plan_40(budgets: Sequence[float], unit: float) -> float:
    """The budget nearest 40 normal trainings: the paper's Table 2 plan (strategies switch at 30 of it)."""
    return min(budgets, key=lambda b: abs(b / unit - 40.0))


def cost_on_plan(trace: Sequence[dict[str, Any]], plan: float, target: float, report_metric: str,
                 report: dict[int, float] | None = None) -> float:
    """Cost to target measured on the run planned for ``plan`` (a plain search: its records up to the one that
    crosses ``plan``): the cost after which the answer stays at or above ``target``; inf when not reached by
    ``plan`` ("not reached by 40" on the 40-unit plan)."""
    from blox_env.agents.summary import clock_values, cost_to_reach, planned

    run = list(planned(trace, plan))
    if not run:
        return float("inf")
    cut = min(int(np.searchsorted(clock_values(run), plan, side="left")), len(run) - 1)
    cost = cost_to_reach(run[: cut + 1], target, report_metric, report)
    return cost if cost <= plan * (1 + 1e-9) else float("inf")


def add_plan_figures(row: dict[str, Any], runs: Sequence[Sequence[dict[str, Any]]], *, budgets: Sequence[float],
                     unit: float, target: float, report: dict[int, float], blockwise: bool,
                     n_boot: int | None = None) -> None:
    """Per-search values at each budget (each budget its own plan) with 95 % bootstrap intervals of the means,
    the cost to target on the 40-unit plan, and the distillation paid before the first prediction."""
    from blox_env.agents.summary import best_at
    from blox_env.reports.study_claims import N_BOOT, mean_ci

    boots = N_BOOT if n_boot is None else n_boot
    row["values"], row["ci95"] = {}, {}
    for b in budgets:
        vals = {"normal": [best_at(t, b, "test_top1", report) for t in runs]}
        if blockwise:
            vals["finetuned"] = [best_at(t, b, "test_top1") for t in runs]
        row["values"][f"{b:g}"] = vals
        row["ci95"][f"{b:g}"] = {k: list(mean_ci(v, n_boot=boots)) for k, v in vals.items()}
    at = plan_40(budgets, unit)
    row["plan_40"] = at
    for suffix, rep in (("", report), ("_finetuned", None)):
        if suffix and not blockwise:
            continue
        reach = [cost_on_plan(t, at, target, "test_top1", rep) for t in runs]
        row[f"cost_to_target_40{suffix}_median"] = float(np.median(reach))
        row[f"reached_target_40{suffix}"] = int(np.isfinite(reach).sum())
    upfront = [float(t[0].get("upfront_cost", 0.0)) if t else 0.0 for t in runs]
    row["upfront_cost"] = float(np.mean(upfront)) if upfront else 0.0


def iterative_progress(runs: Sequence[Sequence[dict[str, Any]]], budgets: Sequence[float]) -> dict[str, Any]:
    """How far the iterative strategy got on each plan: searches that trained candidates normally (step 3), the
    step-4 rounds reached (mean, max), and how many answers were normal trainings vs fine-tunes."""
    from blox_env.agents.summary import planned

    out: dict[str, Any] = {}
    for b in budgets:
        plans = [list(planned(t, b)) for t in runs]
        step3 = sum(any(r.get("paper_step") == 3 for r in p) for p in plans)
        rounds = [max((r.get("round", 0) for r in p if r.get("paper_step") == 4), default=0) for p in plans]
        kinds = {"normal": 0, "fine-tuned": 0}
        for p in plans:  # the answer: the best-objective eligible row (the first of equals), as the summaries
            best = None
            for r in p:
                better = best is None or r["objective"] > best["objective"]
                if r.get("select") and np.isfinite(r["objective"]) and better:
                    best = r
            if best is not None:
                kinds[best.get("score", "fine-tuned")] += 1
        out[f"{b:g}"] = {"searches": len(plans), "reached_step3": step3, "rounds_mean": float(np.mean(rounds)),
                         "rounds_max": int(max(rounds, default=0)), "answers": kinds}
    return out


def table2_rows(summary: Sequence[dict[str, Any]], budgets: Sequence[float], unit: float) -> list[dict[str, Any]]:
    """Flat Table 2 rows (method x budget, each budget its own plan: ``plan_budget``) with both scores of the
    answer (mean, standard error over searches, 95 % bootstrap interval), the distillation paid before the first
    prediction (``upfront_cost``, seconds) and the cost to target on the 40-unit plan (inf: not reached by 40;
    ``*_longest_plan``: on the largest budget's plan, reported separately), as ``study.json`` carries them."""
    rows = []
    for r in summary:
        for b in budgets:
            ft = r.get(f"finetuned@{b:g}")
            ci = r.get("ci95", {}).get(f"{b:g}", {})
            rows.append({"method": r["agent"], "kind": r["kind"], "teacher": r.get("teacher"),
                         "full_teacher": r.get("full_teacher"), "paper_row": r.get("paper"), "budget": b,
                         "plan_budget": b, "cost": b, "cost_normal_trainings": b / unit,
                         "upfront_cost": r.get("upfront_cost", 0.0),
                         "upfront_cost_normal_trainings": r.get("upfront_cost", 0.0) / unit,
                         "finetuned_test_top1": ft[0] if ft else None, "finetuned_test_top1_se": ft[1] if ft else None,
                         "finetuned_test_top1_ci95": ci.get("finetuned"),
                         "normal_test_top1": r[f"best@{b:g}"][0], "normal_test_top1_se": r[f"best@{b:g}"][1],
                         "normal_test_top1_ci95": ci.get("normal"),
                         "target_plan": r.get("plan_40"),
                         "cost_to_target": r.get("cost_to_target_40_median"),
                         "reached_target": r.get("reached_target_40"),
                         "cost_to_target_finetuned": r.get("cost_to_target_40_finetuned_median"),
                         "reached_target_finetuned": r.get("reached_target_40_finetuned"),
                         "cost_to_target_longest_plan": r.get("cost_to_target_median"),
                         "cost_to_target_finetuned_longest_plan": r.get("cost_to_target_finetuned_median"),
                         "iterative": (r.get("iterative") or {}).get(f"{b:g}"), "seeds": r["seeds"]})
    return rows


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
    short_rows: list[dict[str, Any]] = []
    if sizes:
        spec = EvalSpec(predictors=config.predictors, train_sizes=sizes, seeds=config.predictor_seeds,
                        test_size=config.predictor_test_size, metric="test_top1", target_seed=0, run=run)
        predictor_rows = run_evaluation(store, spec=spec, signatures=tables.signatures(first), progress=progress)
        sig_predictors = tuple(p for p in config.predictors if p in ("donna", "lana"))
        if sig_predictors and len(tables.distill_epochs) > 1:  # Q4's second finding: the shortest distillation
            short = EvalSpec(predictors=sig_predictors, train_sizes=sizes, seeds=config.predictor_seeds,
                             test_size=config.predictor_test_size, metric="test_top1", target_seed=0, run=run)
            short_rows = run_evaluation(store, spec=short, signatures=tables.signatures(first,
                                                                                        min(tables.distill_epochs)),
                                        progress=progress)
    seconds["predictors"] = time.perf_counter() - t
    best = best_model(store, tables=tables)
    report = best.values or {}
    budgets = config.budgets or default_budgets(tables, config.budget_multiples)
    target = config.target if config.target is not None else best.report
    t = time.perf_counter()
    summary, traces = run_searches(store.location, tables, config=config, budgets=budgets, target=target,
                                   report=report, best_index=best.index, best_report=best.report, progress=progress)
    seconds["searches"] = time.perf_counter() - t
    unit = normal_training_seconds(tables)
    t = time.perf_counter()
    questions = question_claims(tables, numbers, predictor_rows, short_rows)
    questions["Table 2"] = table2_conclusions(summary, budgets=budgets, unit=unit)
    seconds["claims"] = time.perf_counter() - t
    return StudyResults(store.name, {n: a.index for n, a in tables.teachers.items()}, numbers, predictor_rows,
                        summary, traces, budgets, target, best.index, best.report, report, seconds,
                        describe_benchmark(store), unit, table2_rows(summary, budgets, unit),
                        teacher_summary(tables), questions, short_rows)


def teacher_summary(tables: BlockwiseTables) -> dict[str, Any]:
    """M1-M5 of the tables (model, seed-mean normal val/test top-1, percentile of val among the store's models),
    the rule in force (:data:`~blox_env.datasets.store.blockwise.TEACHER_RULE`) and whether the tables were built
    with it (older tables: M5 the worst model; the rebuild is then pending)."""
    from blox_env.datasets.store.blockwise import TEACHER_PERCENTILES, TEACHER_QUANTILES, TEACHER_RULE

    val, test = tables.normal("val_top1"), tables.normal("test_top1")
    ok = np.isfinite(val)
    built = (tables.attrs.get("spec") or {}).get("quantiles")
    current = built is not None and np.allclose(list(built), TEACHER_QUANTILES)
    models = {}
    for name, arch in tables.teachers.items():
        row = int(tables.store.rows([arch])[0])
        below = int(np.sum(val[ok] < val[row])) + int(np.sum((val[ok] == val[row]) & (tables.store.index[ok] >
                                                                                       arch.index)))
        models[name] = {"index": arch.index, "hash": arch.hash, "blocks": list(arch.blocks),
                        "normal_val_top1": float(val[row]), "normal_test_top1": float(test[row]),
                        "percentile": round(100.0 * below / max(int(ok.sum()) - 1, 1), 2),
                        "rank": int(ok.sum()) - below}
    return {"models": models, "rule": TEACHER_RULE, "rule_percentiles": list(TEACHER_PERCENTILES),
            "tables_quantiles": list(built) if built is not None else None, "tables_follow_rule": bool(current),
            "note": "" if current else
            ("these tables were built with the earlier rule (rank quantiles "
             f"{list(built) if built is not None else 'unrecorded'} from the top: M5 = the worst model); their "
             "rebuild for the rule above is pending, so every M1-M5 figure here uses the earlier teachers")}
