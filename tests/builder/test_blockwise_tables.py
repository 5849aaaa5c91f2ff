"""Blockwise tables: teacher choice, oracle ranking, tabular blockwise rewards, strategies, DonnaSearch, the study."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from blox_test_helpers import BLOCKWISE_SPACE
from gymnasium.utils.env_checker import check_env

from blox_env.agents import DonnaSearch, make_agent
from blox_env.agents.harness import BenchSpec, run_benchmark, summarise_traces
from blox_env.agents.strategies import PHASES, two_stage_search
from blox_env.datasets.store.blockwise import BlockwiseTables, choose_teachers, oracle_block_scores
from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.errors import ArchitectureNotFoundError, InvalidArgumentError, StoreError
from blox_env.rewards.blockwise import BlockwiseTabularReward
from blox_env.space import Arch, SubSpace


@pytest.fixture(scope="module")
def tables(blockwise_path: Path) -> BlockwiseTables:
    return BlockwiseTables(open_store(blockwise_path))


def test_teachers_are_chosen_by_rank_as_the_paper_did(tiny_store) -> None:
    teachers = choose_teachers(tiny_store)
    val = np.mean([tiny_store.get("val_top1", seed=s) for s in (0, 1)], axis=0)
    order = np.argsort(-val, kind="stable")
    assert teachers["M1"]["index"] == int(tiny_store.index[order[0]])
    assert teachers["M5"]["index"] == int(tiny_store.index[order[25]])  # the 5th percentile of 27, not the worst
    assert teachers["M3"]["index"] == int(tiny_store.index[order[13]])  # median of 27
    assert [t["rank"] for t in teachers.values()] == [1, 2, 14, 24, 26]  # distinct, best first
    with pytest.raises(InvalidArgumentError, match="increasing"):
        choose_teachers(tiny_store, quantiles=(1.0, 0.5, 0.0, 0.2, 0.3))


def test_oracle_block_ranking_by_hand(tmp_path: Path) -> None:
    space = SubSpace(((0, 9), (1,), (2, 11)))  # 4 models
    store = BloxStore.create(tmp_path / "o.zarr", index=space.indices())
    archs = [Arch.from_index(int(i)) for i in store.index]
    values = np.array([10.0, 40.0, 30.0, np.nan])
    oracle = oracle_block_scores(store, values)
    by = {a.blocks: v for a, v in zip(archs, values)}
    assert oracle[0, 0] == np.nanmax([by[(0, 1, 2)], by[(0, 1, 11)]])
    assert oracle[0, 9] == np.nanmax([by[(9, 1, 2)], by[(9, 1, 11)]])
    assert oracle[1, 1] == 40.0 and oracle[2, 2] == max(by[(0, 1, 2)], by[(9, 1, 2)])
    assert np.isnan(oracle[1, 0]) and np.isnan(oracle[0, 44])  # blocks no model uses
    with pytest.raises(InvalidArgumentError, match="one entry per store row"):
        oracle_block_scores(store, values[:2])


def test_tables_read_back(tables: BlockwiseTables) -> None:
    assert list(tables.teachers) == ["M1", "M2", "M3", "M4", "M5"] and tables.full_teachers() == ["M1", "M5"]
    m = tables.matrix()
    assert m.shape == (5, 5) and np.isfinite(m).all()
    assert np.isfinite(tables.finetuned("M1", 2)).all() and np.isnan(tables.finetuned("M2")).sum() == 120
    assert tables.signatures("M1", 1)["distill_loss"].shape == (3, 45)
    assert tables.teacher_name(tables.teachers["M5"].index) == "M5"
    with pytest.raises(InvalidArgumentError, match="no fine-tuning of length 3"):
        tables.ft_run("M1", 3)
    with pytest.raises(InvalidArgumentError, match="no signatures of length 1"):
        tables.signatures("M3", 1)
    with pytest.raises(ArchitectureNotFoundError, match="not a tabulated teacher"):
        tables.teacher_name(Arch.from_index(int(BLOCKWISE_SPACE.indices()[0])))
    with pytest.raises(InvalidArgumentError, match="teacher must be one of"):
        tables.teacher_name("M9")


def test_store_without_tables_says_how_to_build_them(tiny_store) -> None:
    with pytest.raises(StoreError, match="build-blockwise"):
        BlockwiseTables(tiny_store)


def test_tabular_blockwise_env(blockwise_path: Path, tables: BlockwiseTables) -> None:
    env = gym.make("Blox-v0", benchmark=str(blockwise_path), reward="tabular", mode="blockwise", teacher="M1",
                   ft_epochs=2)
    check_env(env.unwrapped)
    backend = env.unwrapped.backend
    assert isinstance(backend, BlockwiseTabularReward) and backend.max_fidelity == 2
    env.reset(seed=0)
    for a in (1, 2, 3):
        _, reward, terminated, _, info = env.step(a)
    assert terminated
    arch = Arch.from_index(info["arch_index"])
    row = int(tables.store.rows([arch])[0])
    assert info["metrics"]["val_top1"] == pytest.approx(tables.finetuned("M1", 2, metric="val_top1")[row])
    assert info["metrics"]["normal_test_top1"] == pytest.approx(tables.normal("test_top1")[row])
    sig = tables.signatures("M1")["distill_time_s"]
    teacher_s = float(tables.store.teacher_attrs(tables.teachers["M1"])["train_time_s"])
    ft_s = tables.finetuned("M1", 2, metric="train_time_s")[row]
    first = ft_s + teacher_s + sum(sig[s, b] for s, b in enumerate(arch.blocks))
    assert info["cumulative_cost"] == pytest.approx(first)  # fine-tuning + the teacher + each block, once
    env.reset()
    for a in (1, 2, 4):  # shares two blocks with the first model: only the new block is charged
        _, _, _, _, info2 = env.step(a)
    arch2 = Arch.from_index(info2["arch_index"])
    ft2 = tables.finetuned("M1", 2, metric="train_time_s")[int(tables.store.rows([arch2])[0])]
    assert info2["cumulative_cost"] - first == pytest.approx(ft2 + sig[2, arch2.blocks[2]])
    env.reset(seed=1)  # a new search run pays for the teacher and the blocks again
    for a in (1, 2, 3):
        _, _, _, _, info3 = env.step(a)
    assert info3["cumulative_cost"] == pytest.approx(first)


def test_tabular_blockwise_bad_input(blockwise_path: Path) -> None:
    store = open_store(blockwise_path)
    with pytest.raises(InvalidArgumentError, match="only for the 5 x 5"):
        BlockwiseTabularReward(store, teacher="M2")
    with pytest.raises(InvalidArgumentError, match="mode must be"):
        gym.make("Blox-v0", benchmark=str(blockwise_path), mode="fancy")
    with pytest.raises(InvalidArgumentError, match="need mode='blockwise'"):
        gym.make("Blox-v0", benchmark=str(blockwise_path), teacher="M1")
    with pytest.raises(InvalidArgumentError, match="allowed: charge_teacher"):
        gym.make("Blox-v0", benchmark=str(blockwise_path), mode="blockwise", temperature=2.0)
    with pytest.raises(InvalidArgumentError, match="vector envs need the normal tabular"):
        gym.make_vec("Blox-v0", num_envs=2, vectorization_mode="vector_entry_point", benchmark=str(blockwise_path),
                     mode="blockwise")


def _check_budget(trace: list[dict], budget: float) -> None:
    assert all(r["cumulative_cost"] < budget for r in trace[:-1])
    assert np.isclose(trace[-1]["cumulative_cost"], sum(r["cost"] for r in trace))


def test_two_stage_strategy_spends_the_budget_down_the_ranking(blockwise_path: Path) -> None:
    store = open_store(blockwise_path)
    short = BlockwiseTabularReward(store, teacher="M1", ft_epochs=2)
    full = BlockwiseTabularReward(store, teacher="M1", ft_epochs=6)
    budget = 40 * float(np.median(short.column("train_time_s", 2)))
    agent = make_agent("evolution", short.space, seed=0, population=6, sample_size=3)
    trace = two_stage_search(agent, short, full, budget=budget, seed=0, search_fraction=0.5)
    _check_budget(trace, budget)
    search = [r for r in trace if r["phase"] == PHASES["search"]]
    finals = [r for r in trace if r["phase"] == PHASES["full"]]
    assert search[-1]["cumulative_cost"] >= budget / 2 and all(not r["select"] for r in search)
    assert search[-2]["cumulative_cost"] < budget / 2  # the search phase stops at the fraction
    assert all(r["select"] and r["fidelity"] == 6 for r in finals)
    best_short: dict[int, float] = {}
    for r in search:
        best_short[r["arch_index"]] = max(best_short.get(r["arch_index"], -1.0), r["objective"])
    ranked = sorted(best_short, key=lambda i: (-best_short[i], i))
    assert [r["arch_index"] for r in finals] == ranked[: len(finals)]  # down the ranking, in order
    assert trace[-1]["cumulative_cost"] >= budget or len(finals) == len(ranked)  # until the budget is spent
    assert len(finals) > 3  # not a fixed top-k
    assert all(r["metrics"]["distill_cost_s"] == 0 for r in finals)  # blocks were paid for in the search
    # stops at the target: the first full fine-tune whose objective reaches it ends the search
    agent = make_agent("evolution", short.space, seed=0, population=6, sample_size=3)
    target = sorted(r["objective"] for r in finals)[-2]
    stopped = two_stage_search(agent, short, full, budget=budget, seed=0, search_fraction=0.5, target=target)
    stopped_finals = [r for r in stopped if r["phase"] == PHASES["full"]]
    assert stopped_finals[-1]["objective"] >= target
    assert all(r["objective"] < target for r in stopped_finals[:-1])
    # the full fine-tuning may use another teacher (the paper's "retrained with M1")
    m5 = BlockwiseTabularReward(store, teacher="M5", ft_epochs=2)
    agent = make_agent("random", m5.space, seed=0)
    mixed = two_stage_search(agent, m5, full, budget=budget, seed=0, top_k=2)
    assert {r["teacher"] for r in mixed if r["phase"] == PHASES["search"]} == {m5.teacher.index}
    assert [r["teacher"] for r in mixed if r["phase"] == PHASES["full"]] == [full.teacher.index] * 2
    first_full = next(r for r in mixed if r["phase"] == PHASES["full"])
    assert first_full["metrics"]["distill_cost_s"] > 0  # M1's teacher and blocks are charged when first used
    for bad in ({"search_fraction": 1.5}, {"top_k": 0}, {"target": float("nan")}):
        with pytest.raises(InvalidArgumentError):
            two_stage_search(agent, short, full, budget=budget, **bad)


def test_harness_blockwise_modes_and_plan_budgets(blockwise_path: Path, tables: BlockwiseTables) -> None:
    report = dict(zip(tables.store.index.tolist(), tables.normal("test_top1").tolist()))
    t = float(np.median(tables.finetuned("M1", 6, metric="train_time_s")))
    budgets = (15 * t, 40 * t)
    for strategy, agents in (("plain", ("donna", "lana")), ("two-stage", ("random",)), ("iterative", ("random",))):
        spec = BenchSpec.from_options(agents=agents, seeds=2, budgets=budgets, mode="blockwise", strategy=strategy,
                         teacher="M5" if strategy == "iterative" else "M1")
        traces = run_benchmark(str(blockwise_path), spec=spec, executor="serial", progress=False)
        rows = summarise_traces(traces, spec=spec, best_index=0, best_report=100.0, report=report)
        for row, agent in zip(rows, agents):
            for b in budgets:
                vals = []
                for s in range(2):  # by hand: the run planned for b, cut after the crossing record, best eligible
                    run = [r for r in traces[(agent, s)] if r.get("plan_budget", b) == b]
                    cut = next((i for i, r in enumerate(run) if r["cumulative_cost"] >= b), len(run) - 1)
                    eligible = [r for r in run[: cut + 1] if r["select"]]
                    if eligible:
                        vals.append(report[max(eligible, key=lambda r: r["objective"])["arch_index"]])
                assert row[f"answered@{b:g}"] == len(vals)
                if vals:
                    assert row[f"best@{b:g}"][0] == pytest.approx(np.mean(vals)), (strategy, agent, b)
    with pytest.raises(InvalidArgumentError, match="blockwise strategy"):
        BenchSpec.from_options(strategy="two-stage")
    with pytest.raises(InvalidArgumentError, match="needs block signatures"):
        run_benchmark(str(blockwise_path), spec=BenchSpec.from_options(agents=("donna",), seeds=1, budgets=(10.0,)),
                      executor="serial", progress=False)


def test_donna_search_refits_and_asks_the_predicted_top(tables: BlockwiseTables) -> None:
    backend = BlockwiseTabularReward(tables.store, teacher="M1")
    agent = DonnaSearch(backend.space, seed=0, signatures=tables.signatures("M1")["distill_loss"], n_init=10, top=5,
                        cycles=80)
    for _ in range(20):
        arch = agent.ask()
        agent.tell(arch, backend.evaluate(arch, cost_unit="evaluations"))
    assert agent.refits == 2 and len({a.index for a, _ in agent.history}) == 20
    batch = [a.index for a, _ in agent.history[15:20]]
    unseen = np.setdiff1d(backend.space.indices(), [a.index for a, _ in agent.history[:15]])
    predicted = agent.predictor.predict(unseen)
    assert np.mean(agent.predictor.predict(np.array(batch))) >= np.mean(predicted)  # the top of its ranking
    with pytest.raises(InvalidArgumentError, match="n_init"):
        DonnaSearch(backend.space, seed=0, signatures=tables.signatures("M1")["distill_loss"], n_init=1)


@pytest.mark.slow
def test_study_end_to_end_on_a_tiny_store(blockwise_path: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from blox_env.cli.root import app

    path = tmp_path / "copy.zarr"
    shutil.copytree(blockwise_path, path)
    out = tmp_path / "study"
    t = float(np.median(open_store(blockwise_path).get("train_time_s", seed=0)))
    budgets = (8 * t, 20 * t)
    res = CliRunner().invoke(app, ["study", "--store", str(path), "--out", str(out), "--seeds", "2",
                                   "--predictor-sizes", "10,25", "--predictor-seeds", "1", "--executor", "serial",
                                   "--predictors", "donna,lana,gcn", "--budgets", ",".join(f"{b:g}" for b in budgets),
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    text = (out / "study.md").read_text()
    for section in ("## Q1", "## Q2", "## Q3", "## Q4", "## Q5", "## Q6", "## Table 2"):
        assert section in text
    for fig in ("q1_matrix", "q2_finetuned_vs_normal", "q3_signatures", "q4_predictors", "q5_short_vs_full",
                "q6_teachers", "table2_anytime"):
        assert (out / f"{fig}.png").read_bytes()[:4] == b"\x89PNG" and f"({fig}.png)" in text
    assert "| M1 |" in text and "0.25" in text and "| lana (M1) |" in text and "| lana (M1), MACs <= median |" in text
    assert text.count("**Verdict:**") >= 6  # every question: the paper's claim, ours, a verdict
    data = json.loads((out / "study.json").read_text())
    for q in ("Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Table 2"):
        assert {"paper", "ours", "verdict", "claims"} <= set(data["questions"][q]), q
        assert data["questions"][q]["verdict"] in ("agrees", "disagrees", "inconclusive")
        for c in data["questions"][q]["claims"]:
            assert {"claim", "paper", "ours", "ci95", "verdict"} <= set(c) and len(c["ci95"]) == 2
    assert [c["paper"] for c in data["questions"]["Q2"]["claims"]] == [0.25, 0.31]
    assert set(data["teachers"]["models"]) == {"M1", "M2", "M3", "M4", "M5"} and data["teachers"]["rule"]
    fields = {"method", "teacher", "budget", "finetuned_test_top1", "normal_test_top1", "cost", "cost_to_target",
              "plan_budget", "upfront_cost", "normal_test_top1_se", "normal_test_top1_ci95"}
    assert data["table2"] and all(fields <= set(r) for r in data["table2"])
    assert {r["method"] for r in data["table2"]} >= {"random", "evolution, FT-short + FT-full (M1)",
                                                    "evolution, FT-short + FT-full, iterative teacher (from M5)"}
    assert {r["paper_row"] for r in data["table2_vs_paper"]} >= {"FT10 + FT200 (M1)", "BRP-NAS"}
    conventional = next(r for r in data["table2"] if r["method"] == "random")
    assert conventional["finetuned_test_top1"] is None and conventional["normal_test_top1"] > 0


def test_bench_cli_in_blockwise_mode(blockwise_path: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from blox_env.cli.root import app

    t = float(np.median(open_store(blockwise_path).get("train_time_s", seed=0)))
    res = CliRunner().invoke(app, ["bench", "--store", str(blockwise_path), "--mode", "blockwise", "--agents", "random",
                                   "--strategy", "two-stage", "--seeds", "2", "--budgets", f"{10 * t:g},{20 * t:g}",
                                   "--executor", "serial", "--plot", str(tmp_path / "p.png"),
                                   "--report", str(tmp_path / "r.md")])
    assert res.exit_code == 0, res.output
    assert "| random+two-stage |" in res.output and "Blockwise mode" in (tmp_path / "r.md").read_text()
    assert "fine-tuned / normal test_top1 @" in res.output  # both scores of each answer
    row = next(line for line in res.output.splitlines() if line.startswith("| random+two-stage |"))
    assert row.split("|")[2].count("±") == 2


def test_table2_fields_recomputed_by_hand_from_traces(blockwise_path: Path, tables: BlockwiseTables) -> None:
    """Fine-tuned and normal scoring of each answer and the sticky cost to target, from the raw traces."""
    from blox_env.reports.study import Method, StudyConfig, run_searches, table2_rows

    normal = dict(zip(tables.store.index.tolist(), tables.normal("test_top1").tolist()))
    unit = float(np.median(tables.store.get("train_time_s", seed=0)))
    budgets = (10 * unit, 25 * unit)
    target = float(np.nanquantile(list(normal.values()), 0.9))
    methods = (Method("evolution", "evolution"),
               Method("two-stage (M1)", "evolution", "blockwise", strategy="two-stage", kind="blockwise"),
               Method("M5 + M1", "random", "blockwise", teacher="M5", strategy="two-stage", full_teacher="M1",
                      kind="blockwise"))
    config = StudyConfig(seeds=2, methods=methods, executor="serial", search_fraction=0.5)
    summary, traces = run_searches(str(blockwise_path), tables, config=config, budgets=budgets, target=target,
                                   report=normal, best_index=0, best_report=100.0, progress=False)
    rows = {(r["method"], r["budget"]): r for r in table2_rows(summary, budgets, unit)}

    def answer_after_each(run: list[dict], score) -> list[float]:
        eligible = [r for r in run if r["select"]]
        top = max(r["fidelity"] for r in eligible)
        out, best, val = [], -np.inf, np.nan
        for r in run:
            if r["select"] and r["fidelity"] == top and r["objective"] > best:
                best, val = r["objective"], score(r)
            out.append(val)
        return out

    scores = {"normal": lambda r: normal[r["arch_index"]], "finetuned": lambda r: r["metrics"]["test_top1"]}
    for m in methods:
        for b in budgets:
            for name, score in scores.items():
                if name == "finetuned" and m.kind != "blockwise":
                    assert rows[(m.label, b)]["finetuned_test_top1"] is None
                    continue
                vals = []
                for run in traces[m.label]:
                    plan = [r for r in run if r.get("plan_budget", b) == min(p for p in budgets if p >= b)]
                    cut = next((i for i, r in enumerate(plan) if r["cumulative_cost"] >= b), len(plan) - 1)
                    v = answer_after_each(plan, score)[cut]
                    if np.isfinite(v):
                        vals.append(v)
                assert rows[(m.label, b)][f"{name}_test_top1"] == pytest.approx(np.mean(vals)), (m.label, b, name)
            for name, score in scores.items():
                if name == "finetuned" and m.kind != "blockwise":
                    continue
                at40 = min(budgets, key=lambda x: abs(x / unit - 40))  # the 40-unit plan (here the nearest: 25)
                costs, longest = [], []
                for run in traces[m.label]:
                    for p_budget, out in ((at40, costs), (max(budgets), longest)):
                        plan = [r for r in run if r.get("plan_budget", p_budget) == p_budget]
                        if out is costs:  # cut at the record crossing the plan; reached later: not by the plan
                            cut = next((i for i, r in enumerate(plan) if r["cumulative_cost"] >= p_budget), len(plan))
                            plan = plan[: cut + 1]
                        ans = answer_after_each(plan, score)
                        below = [i for i, v in enumerate(ans) if not v >= target]
                        first = below[-1] + 1 if below else 0
                        cost = plan[first]["cumulative_cost"] if first < len(plan) else np.inf
                        out.append(np.inf if out is costs and cost > p_budget else cost)
                key = "cost_to_target_finetuned" if name == "finetuned" else "cost_to_target"
                assert rows[(m.label, b)][key] == pytest.approx(float(np.median(costs))), (m.label, name)
                assert rows[(m.label, b)][f"{key}_longest_plan"] == pytest.approx(float(np.median(longest)))
    assert rows[("M5 + M1", budgets[0])]["full_teacher"] == "M1"


def test_study_reasons_quote_the_stores_own_figures() -> None:
    """The verdicts' reasons name the store's size, epochs, fine-tuning lengths and K (not v1's constants)."""
    from blox_env.reports.study_claims import reasons

    why = reasons({"models": 729, "normal_epochs": 12, "ft_epochs": [1, 12], "blocks_per_stage": 9})
    assert "729 narrow models" in why["proxy"] and "12-epoch trainings" in why["proxy"]
    assert "1 of 12 epochs" in why["short"] and "(9 here)" in why["blocks"]
    old = reasons({"ft_epochs": [2, 8]})  # a study.json written before these figures were recorded
    assert "narrow models" in old["proxy"] and "2 of 8 epochs" in old["short"] and "(few here)" in old["blocks"]
