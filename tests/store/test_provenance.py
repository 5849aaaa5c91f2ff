"""Data provenance in every report: `blox data info`, `blox bench` (header and report), the study and
the predictor evaluation name the benchmark; the official-data note appears for official imports only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import blox_env.reports.study_report as study_report
from blox_env.agents.harness import BenchSpec
from blox_env.build.synthetic_blockwise import synthetic_blockwise
from blox_env.cli.root import app
from blox_env.datasets.release.importer import import_release
from blox_env.datasets.release.writer import synthetic_release
from blox_env.datasets.store.blockwise import BlockwiseTables
from blox_env.datasets.store.core import open_store
from blox_env.datasets.store.provenance import (
    OFFICIAL_NOTE,
    SYNTHETIC_NOTE,
    benchmark_lines,
    benchmark_summary,
    describe_benchmark,
)
from blox_env.datasets.synthetic import synthetic_store
from blox_env.reports.bench import write_report
from blox_env.reports.study import StudyResults, study_numbers
from blox_env.space import SubSpace

MINI = Path(__file__).resolve().parents[2] / "blox_env" / "data" / "blox-mini.zip"
KINDS = ("mini", "official", "synthetic")


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rel")
    synthetic_release(folder, n_models=40, epochs=4, seeds=(0, 1), fmt="csv", rng_seed=3, kinds=("base",))
    return folder


@pytest.fixture(scope="module")
def stores(release: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stores")
    official = import_release(release, out=root / "official.zarr", progress=False, allow_partial=True)
    synthetic = root / "synthetic.zarr"
    synthetic_store(synthetic, space=SubSpace(((0, 9, 30), (1, 12, 36), (2, 21, 44))), seeds=(0, 1), epochs=12).close()
    synthetic_blockwise(synthetic, ft_epochs=(2, 6), distill_epochs=(1, 4))
    return {"mini": MINI, "official": Path(official), "synthetic": synthetic}


def _check(text: str, kind: str, info: dict) -> None:
    """The fields every report must show for a store of this kind, and the official note only where it belongs."""
    assert info["name"] in text
    if kind == "official":
        assert OFFICIAL_NOTE in text
        for f in info["files"]:
            assert f["name"] in text and f["sha256"] in text
            assert f"{f['bytes']:,}" in text or f'"bytes": {f["bytes"]}' in text  # Markdown or JSON
    else:
        assert OFFICIAL_NOTE not in text and "regenerated" not in text
    if kind == "mini":
        assert info["store_sha256"] in text and "blox-env" in text and "digits_mini" in text and "cpu_count" in text
    if kind == "synthetic":
        assert SYNTHETIC_NOTE in text


def test_describe_benchmark_by_kind(stores: dict[str, Path], release: Path) -> None:
    mini = describe_benchmark(open_store(stores["mini"]))
    assert mini["kind"] == "blox-mini" and mini["version"].startswith("blox-env")
    assert mini["store_sha256"] == hashlib.sha256(MINI.read_bytes()).hexdigest()
    run = mini["runs"][0]
    assert run["dataset"] == "digits" and run["epochs"] == 12 and run["seeds"] == [0, 1, 2] and run["width"] == 4
    assert run["hardware"]["cpu_count"] >= 1 and "note" not in mini
    official = describe_benchmark(open_store(stores["official"]))
    assert official["kind"] == "official" and official["note"] == OFFICIAL_NOTE and official["complete"] is False
    assert sorted(f["name"] for f in official["files"]) == sorted(p.name for p in release.iterdir())
    for f in official["files"]:
        data = (release / f["name"]).read_bytes()
        assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["bytes"] == len(data)
    synthetic = describe_benchmark(open_store(stores["synthetic"]))
    assert synthetic["kind"] == "synthetic" and synthetic["note"] == SYNTHETIC_NOTE
    json.dumps([mini, official, synthetic])  # JSON-ready: it goes into study.json and the predictor JSON


@pytest.mark.parametrize("kind", KINDS)
def test_data_info_names_the_benchmark(stores: dict[str, Path], kind: str) -> None:
    res = CliRunner().invoke(app, ["data", "info", str(stores[kind])], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    _check(res.output, kind, describe_benchmark(open_store(stores[kind])))


@pytest.mark.parametrize("kind", ["mini", "synthetic"])
def test_bench_header_and_report_name_the_benchmark(stores: dict[str, Path], kind: str, tmp_path: Path) -> None:
    report = tmp_path / "r.md"
    res = CliRunner().invoke(app, ["bench", "--store", str(stores[kind]), "--agents", "random", "--seeds", "1",
                                   "--budgets", "3", "--cost-unit", "evaluations", "--executor", "serial",
                                   "--plot", str(tmp_path / "p.png"), "--report", str(report)],
                             env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    info = describe_benchmark(open_store(stores[kind]))
    header = res.output.splitlines()[0]
    assert header == f"data: {benchmark_summary(info)}" and header.startswith(f"data: {info['name']} ({info['kind']}")
    assert OFFICIAL_NOTE not in header
    text = report.read_text()
    assert text.splitlines()[2].startswith("Data: ") and "## Benchmark data" in text
    _check(text, kind, info)


def test_bench_report_of_an_official_import(stores: dict[str, Path], tmp_path: Path) -> None:
    # A partial import (40 scattered models) is no searchable sub-space, so the report is written directly here;
    # `blox bench` prints `data: ` + benchmark_summary(info) first (tested above).
    info = describe_benchmark(open_store(stores["official"]))
    assert OFFICIAL_NOTE in benchmark_summary(info) and benchmark_summary(info).startswith("blox-")
    spec = BenchSpec.from_options(agents=("random",), seeds=1, budgets=(3.0,), cost_unit="evaluations")
    row = {"agent": "random", "best@3": (60.0, 0.0), "regret@3": 1.0, "cost_to_best_median": float("inf"),
           "found_best": 0, "seeds": 1, "evaluations_mean": 3.0}
    path = write_report(tmp_path / "r.md", rows=[row], spec=spec, plot=tmp_path / "p.png", store_name=info["name"],
                        best_index=0, best_report=61.0, seconds=1.0, benchmark=info)
    text = path.read_text()
    assert text.splitlines()[2] == f"Data: {benchmark_summary(info)}" and "## Benchmark data" in text
    _check(text, "official", info)


@pytest.mark.parametrize("kind", KINDS)
def test_predictor_evaluation_json_names_the_benchmark(stores: dict[str, Path], kind: str, tmp_path: Path) -> None:
    out = tmp_path / "e.json"
    res = CliRunner().invoke(app, ["predictors", "eval", "--store", str(stores[kind]), "--predictors", "tree",
                                   "--sizes", "5", "--seeds", "1", "--test-size", "5", "--out", str(out),
                                   "--plot", str(tmp_path / "e.png")], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    bench = json.loads(out.read_text())["benchmark"]
    assert bench == json.loads(json.dumps(describe_benchmark(open_store(stores[kind]))))
    _check(json.dumps(bench, ensure_ascii=False), kind, bench)


@pytest.mark.parametrize("kind", KINDS)
def test_study_report_and_json_name_the_benchmark(stores: dict[str, Path], kind: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The study's numbers need blockwise tables (the synthetic store's); the writer names whichever data it is given.
    monkeypatch.setattr(study_report, "_figures", lambda res, tables, out: {k: f"{k}.png" for k in
                                                                           ("q1", "q2", "q3", "q4", "q5", "q6",
                                                                            "table2")})
    tables = BlockwiseTables(open_store(stores["synthetic"]))
    info = describe_benchmark(open_store(stores[kind]))
    res = StudyResults(info["name"], {}, study_numbers(tables), [], [], {"random": [[]]}, (1.0,), 50.0, 0, 60.0,
                       {0: 60.0}, {"tables": 0.1}, info)
    path = study_report.write_study(res, tables, tmp_path)
    text = path.read_text()
    assert text.splitlines()[2].startswith("Data: ") and "## Benchmark data" in text
    _check(text, kind, info)
    assert json.loads((tmp_path / "study.json").read_text())["benchmark"] == json.loads(json.dumps(info))


def test_markdown_lines_of_a_store_with_unknown_provenance() -> None:
    class Bare:
        attrs = {"format_version": 1, "provenance": {"by": "hand"}}
        name, location = "custom", "/somewhere/custom.zarr"

        def __len__(self) -> int:
            return 3

    info = describe_benchmark(Bare())
    assert info["kind"] == "other" and "note" not in info
    text = "\n".join(benchmark_lines(info))
    assert "by hand" in text and "custom.zarr" in text and "/somewhere" not in text and not np.isnan(info["models"])
