"""``blox bench``: footnotes under the table say what regret, the per-budget scores and "evaluations" mean."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from blox_env.agents.harness import BenchSpec
from blox_env.cli.root import app
from blox_env.reports.bench import notes_markdown, table_notes


def test_notes_state_the_reference_and_why_regret_can_be_negative() -> None:
    notes = table_notes(BenchSpec.from_options(agents=("random",), seeds=2, budgets=(10.0, 20.0)), best_index=20710,
                        best_report=94.83)
    regret, scores, evaluations = notes
    assert regret.startswith("regret @ 20 = the benchmark's best minus the agent's mean `test_top1`")
    assert "seed-mean `test_top1` of the model with the best seed-mean `val_top1` (model 20710, 94.83)" in regret
    assert "can be negative" in regret and "seed noise" in regret
    assert "select on validation, report test" in scores
    assert evaluations.startswith("evaluations: trace records per search at the largest budget")
    assert "(they are free)" in evaluations and "phase" not in evaluations
    with_target = table_notes(BenchSpec.from_options(agents=("random",), seeds=2, budgets=(10.0,), target=93.0),
                              best_index=1, best_report=94.0)
    assert any(n.startswith("cost to 93: the first cumulative cost after which") for n in with_target)


@pytest.mark.parametrize(("strategy", "phrase"), [("two-stage", "Two-stage counts both phases"),
                                                   ("iterative", "Iterative counts every step")])
def test_blockwise_notes_explain_scores_and_phases(strategy: str, phrase: str) -> None:
    spec = BenchSpec.from_options(agents=("random",), seeds=1, budgets=(10.0,), mode="blockwise", strategy=strategy)
    notes = table_notes(spec, best_index=1, best_report=90.0)
    assert any(n.startswith("blockwise mode: answers are chosen on fine-tuned `val_top1`") and
               "lower normal accuracy" in n for n in notes)
    assert phrase in notes[-1]
    assert "seed noise" not in notes[0]  # blockwise answers are scored by seed means
    assert notes_markdown(notes).startswith("Notes:\n\n1. regret")


def test_bench_prints_and_reports_the_notes(tmp_path: Path) -> None:
    report = tmp_path / "r.md"
    args = ["bench", "--agents", "random", "--seeds", "1", "--budgets", "10,20", "--executor", "serial",
            "--plot", str(tmp_path / "p.png"), "--report", str(report)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    for text in (result.output, report.read_text()):
        table = text.index("| random |")
        notes = text.index("Notes:")
        assert table < notes
        assert "1. regret @ 20 = the benchmark's best" in text and "evaluations: trace records" in text
