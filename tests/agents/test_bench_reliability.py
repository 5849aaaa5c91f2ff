"""Long benchmark campaigns: `blox bench` / run_bench check everything before a search, keep every finished
search, never write into a benchmark, resume, and refuse bad input with a clear error (exit code 2)."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from blox_test_helpers import interruptible
from typer.testing import CliRunner

import blox_env
from blox_env.agents import RandomSearch
from blox_env.agents import harness as harness_module
from blox_env.agents.loop import run_search
from blox_env.agents.parallel import run_parallel_search
from blox_env.agents.spec import BenchSpec
from blox_env.bench import BenchOutputs, run_bench
from blox_env.cli import app
from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.datasets.store.location import bundled_mini_path
from blox_env.datasets.synthetic import synthetic_store
from blox_env.errors import BloxError, InvalidArgumentError, MissingMetricError, StoreBusyError
from blox_env.objectives import parse_objectives
from blox_env.rewards import TabularReward
from blox_env.space import Arch, SubSpace

SPACE = SubSpace(((0, 9, 30), (1, 12, 36), (2, 21, 44)))  # 27 models
FAST = ["--agents", "random", "--seeds", "2", "--budgets", "5,10", "--cost-unit", "evaluations", "--executor",
        "serial"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> BloxStore:
    return synthetic_store(tmp_path_factory.mktemp("bench") / "s.zarr", space=SPACE)


def _bench(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["bench", *args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        code = 2 if isinstance(res.exception, BloxError) else 1  # what `blox` (cli.main) exits with
        return code, f"{res.output}{type(res.exception).__name__}: {res.exception}"
    return res.exit_code, res.output


@pytest.fixture
def no_search(monkeypatch):
    """Fail if any search starts: every refusal below happens before the first search."""
    def refuse(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a search ran")

    monkeypatch.setattr(harness_module, "_task", refuse)
    monkeypatch.setattr(harness_module, "run_benchmark", refuse)
    import blox_env.agents.harness as h

    monkeypatch.setattr(h, "run_benchmark", refuse)


# ---------------------------------------------------------------------------------------------- 1, 4, 5: traces
def test_traces_are_never_written_into_the_bundled_benchmark(no_search) -> None:
    mini = bundled_mini_path()
    before = hashlib.sha256(mini.read_bytes()).hexdigest()
    code, out = _bench(*FAST, "--traces", str(mini))
    assert code == 2 and "bundled Blox-mini" in out
    assert hashlib.sha256(mini.read_bytes()).hexdigest() == before


def test_a_second_writer_is_refused_naming_the_holder(store, tmp_path: Path, no_search) -> None:
    held = BloxStore.open_traces(tmp_path / "t.zarr", benchmark=store)
    try:
        code, out = _bench("--store", store.location, *FAST, "--traces", str(tmp_path / "t.zarr"),
                           "--plot", str(tmp_path / "p.png"))
        assert code == 2 and str(os.getpid()) in out, out
        with pytest.raises(StoreBusyError):
            run_bench(BenchSpec.from_options(agents=("random",), seeds=1, budgets=(5.0,), cost_unit="evaluations"),
                      store=store, executor="serial", traces=tmp_path / "t.zarr", progress=False)
    finally:
        held.close()


def test_a_rerun_resumes_a_new_spec_adds_runs_and_another_benchmark_is_refused(store, tmp_path: Path) -> None:
    traces = tmp_path / "t.zarr"
    spec = BenchSpec.from_options(agents=("random",), seeds=2, budgets=(5.0, 10.0), cost_unit="evaluations")
    first = run_bench(spec, store=store, executor="serial", traces=traces, progress=False)
    assert first.resumed == 0 and len(open_store(traces).traces) == 2
    more = run_bench(BenchSpec.from_options(agents=("random",), seeds=3, budgets=(5.0, 10.0),
                                            cost_unit="evaluations"), store=store, executor="serial", traces=traces,
                     progress=False)
    assert more.resumed == 2 and len(open_store(traces).traces) == 3  # one new search, nothing replaced
    assert [r[:2] for r in more.rows[0].items()] and more.traces[("random", 0)] == first.traces[("random", 0)]
    other = run_bench(BenchSpec.from_options(agents=("random",), seeds=1, budgets=(7.0,), cost_unit="evaluations"),
                      store=store, executor="serial", traces=traces, progress=False)
    assert other.resumed == 0 and len(open_store(traces).traces) == 4  # a different spec: a run of its own
    elsewhere = synthetic_store(tmp_path / "other.zarr", space=SPACE, seed=5)
    with pytest.raises(InvalidArgumentError, match="belongs to benchmark"):
        run_bench(spec, store=elsewhere, executor="serial", traces=traces, progress=False)


def test_a_failed_writer_keeps_the_traces_and_a_rerun_regenerates_the_outputs(store, tmp_path: Path,
                                                                                  monkeypatch) -> None:
    from blox_env.reports import bench as report_bench

    spec = BenchSpec.from_options(agents=("random",), seeds=2, budgets=(5.0,), cost_unit="evaluations")
    outputs = BenchOutputs(plot=tmp_path / "p.png", report=tmp_path / "r.md")

    def broken(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise OSError("disk full")

    monkeypatch.setattr(report_bench, "plot_anytime", broken)
    with pytest.raises(InvalidArgumentError, match="the traces are kept in .*rerun the same command"):
        run_bench(spec, store=store, executor="serial", traces=tmp_path / "t.zarr", outputs=outputs, progress=False)
    assert len(open_store(tmp_path / "t.zarr").traces) == 2
    monkeypatch.undo()
    again = run_bench(spec, store=store, executor="serial", traces=tmp_path / "t.zarr", outputs=outputs,
                      progress=False)
    assert again.resumed == 2 and (tmp_path / "p.png").is_file() and (tmp_path / "r.md").is_file()


# ---------------------------------------------------------------------------------------------- 2, 3, 9, 16, 17: inputs
@pytest.mark.parametrize("objectives", ["val_top1,val_loss", "val_top1,test_top5", "val_top1,wall_time_s",
                                        "val_top1@12,val_top1", "val_top1@²", ""])
def test_objectives_are_checked_against_the_store_and_the_records(objectives: str, no_search) -> None:
    code, out = _bench(*FAST, "--objectives", objectives)
    assert code == 2, out


def test_val_loss_is_a_store_column_but_not_a_search_record(store) -> None:
    spec = BenchSpec.from_options(agents=("mo-random",), seeds=1, budgets=(5.0,), objectives=("val_top1", "val_loss"))
    with pytest.raises(InvalidArgumentError, match="not in what a search records"):
        run_bench(spec, store=None, executor="serial", progress=False)
    with pytest.raises(InvalidArgumentError, match="epoch after '@' must be an integer"):
        parse_objectives("val_top1@²", store=open_store(None))


@pytest.mark.parametrize("args", [
    ["--plot", "p.txt"], ["--plot", ""], ["--report", "."], ["--report", "r.txt"], ["--plot", "nowhere/p.png"],
    ["--plot", "afile/p.png"], ["--budgets", "100,nan"], ["--budgets", "abc"], ["--budgets", ""],
    ["--budgets", "50,,100"], ["--budgets", "50,50"], ["--budgets", "-5"], ["--agents", ""],
    ["--agents", "random,random"],
    ["--agents", "nope"], ["--agents", "no_such_module:Agent"], ["--target", "nan"], ["--sim-workers", "0"],
    ["--seeds", "0"], ["--jobs", "0"],
])
def test_bad_options_fail_before_any_search_with_exit_code_2(args: list[str], tmp_path: Path, monkeypatch,
                                                               no_search) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    code, out = _bench(*FAST, *args)
    assert code == 2, out
    assert not (tmp_path / ".png").exists() and not list(tmp_path.glob("*.png"))


def test_outputs_say_exactly_what_will_be_written(tmp_path: Path) -> None:
    spec = BenchSpec.from_options(agents=("random",), sim_workers=4)
    out = BenchOutputs(plot=tmp_path / "a.png", report=tmp_path / "r.md")
    assert [p.name for p in out.planned(spec)] == ["a.png", "a_sim_wall_clock.png", "r.md"]
    mo = BenchSpec.from_options(agents=("nsga2",), objectives=("val_top1", "params"))
    assert [p.name for p in out.plots(mo)] == ["a_hv.png", "a_fronts.png"]


def test_run_search_and_the_simulator_refuse_bad_arguments_clearly() -> None:
    backend = TabularReward(open_store(None))
    agent = RandomSearch(backend.space, seed=0)
    with pytest.raises(InvalidArgumentError, match="budget must be a positive"):
        run_search(agent, backend, budget=None, cost_unit="seconds", seed=0, metric="val_top1")
    with pytest.raises(InvalidArgumentError, match="seed"):
        run_parallel_search(agent, backend, sim_workers=2, budget=100.0, budget_kind="compute", cost_unit="seconds",
                            seed=-1, metric="val_top1")
    with pytest.raises(InvalidArgumentError, match="search metric 'nope' is not among"):
        run_search(RandomSearch(backend.space, seed=0), backend, budget=100.0, cost_unit="seconds", seed=0,
                   metric="nope")


# ---------------------------------------------------------------------------------------------- 15: bounded work
@pytest.mark.parametrize("args", [["--sim-workers", "1000000000"], ["--seeds", "2147483648"]])
def test_huge_counts_are_refused_at_once_in_bounded_memory(args: list[str], tmp_path: Path) -> None:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "blox_env.cli", "bench", *args, "--executor", "serial"],
                          capture_output=True, text=True, timeout=120, preexec_fn=limit, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "must be an integer in 1.." in proc.stderr + proc.stdout and time.perf_counter() - t < 60


# ---------------------------------------------------------------------------------------------- 10, 11: rewards
def test_vector_violations_get_the_low_end_of_the_reward_space(store) -> None:
    limit = float(np.median(store.get("params")))
    env = gym.make("BloxOneShot-v0", benchmark=store, objectives="val_top1,params", constraint={"params": limit},
                   disable_env_checker=True)
    env.reset(seed=0)
    inner = env.unwrapped
    low = inner.reward_space.low
    allowed, violated = [], []
    for local in np.ndindex(*inner.space_sizes):
        _, r, _, _, info = env.step(np.array(local))
        env.reset()
        (violated if info.get("constraint_violated") else allowed).append(r)
    assert violated and allowed
    for r in violated:
        assert np.array_equal(r, low) and inner.reward_space.contains(r)
        assert all((a > r).all() for a in allowed)  # dominated by every allowed model: never on a front
    given = gym.make("BloxOneShot-v0", benchmark=store, objectives="val_top1,params", constraint={"params": limit},
                     violation_reward=(-1.0, -5e6), disable_env_checker=True).unwrapped
    assert given.violation_reward.tolist() == [-1.0, -5e6] and given.reward_space.low[1] <= -5e6


@pytest.fixture(scope="module")
def nan_metric_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[BloxStore, int]:
    path = tmp_path_factory.mktemp("nanmetric") / "s.zarr"
    st = synthetic_store(path, space=SPACE, seeds=(0, 1))
    info = st.run_info("synthetic")
    curves = np.stack([np.stack([st.get("val_top1", None, seed=s, epoch=e, best=False, run="synthetic")
                                 for e in range(1, info.epochs + 1)], axis=-1) for s in info.seeds])
    curves[:, 4, :] = np.nan  # model in row 4 has no validation curve
    st.write_metric("synthetic", "val_top1", curves)
    st.close()
    return open_store(path), 4


@pytest.mark.parametrize("objectives", [None, "val_top1,params"])
def test_a_missing_metric_follows_the_missing_value_rule(nan_metric_store, objectives) -> None:
    st, row = nan_metric_store
    local = SPACE.local(Arch.from_index(int(st.index[row])))
    env = gym.make("BloxOneShot-v0", benchmark=st, objectives=objectives, seed_mode=0, disable_env_checker=True)
    env.reset(seed=0)
    with pytest.raises(MissingMetricError, match="no recorded val_top1"):
        env.step(np.array(local))
    assert env.unwrapped.run.spent == 0  # nothing charged
    env = gym.make("BloxOneShot-v0", benchmark=st, objectives=objectives, seed_mode=0,
                   missing_metric="violation_reward", disable_env_checker=True)
    env.reset(seed=0)
    _, r, *_, info = env.step(np.array(local))
    assert info["metric_missing"] and not np.isnan(r).any()
    if objectives is not None:
        assert env.unwrapped.reward_space.contains(r)
    else:
        assert r == 0.0  # the scalar violation reward


# ---------------------------------------------------------------------------------------------- 18: Ctrl-C
def test_ctrl_c_stops_within_seconds_and_keeps_finished_searches(tmp_path: Path) -> None:
    traces = tmp_path / "t.zarr"
    cmd = [sys.executable, "-m", "blox_env.cli", "bench", "--agents", "random", "--seeds", "400", "--budgets",
           "1000000", "--executor", "process", "--jobs", "1", "--traces", str(traces), "--plot",
           str(tmp_path / "p.png")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            preexec_fn=interruptible)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (traces / "traces").is_dir():
            time.sleep(0.2)
        while time.time() < deadline and len([p for p in (traces / "traces").iterdir()
                                              if p.is_dir() and not p.name.startswith(".")]) < 2:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        t = time.time()
        out, _ = proc.communicate(timeout=60)
        assert time.time() - t < 15, "Ctrl-C must cancel the searches in flight within seconds"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "interrupted:" in out and "Rerun the same command to resume" in out, out
    kept = open_store(traces).traces
    assert 2 <= len(kept) < 400


# ---------------------------------------------------------------------------------------------- 19: own agent
def test_a_users_own_agent_by_import_path(tmp_path: Path, store) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "agents.py").write_text(textwrap.dedent('''
        from blox_env.agents import BaseAgent


        class MyAgent(BaseAgent):
            """Tries the models in index order (an agent written outside blox-env)."""

            name = "mine"

            def ask(self):
                feasible = self.feasible_indices()
                from blox_env import Arch
                return Arch.from_index(int(feasible[len(self.history) % len(feasible)]))
    '''))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "blox_env.cli", "bench", "--store", store.location, "--agents",
                           "random,mypkg.agents:MyAgent", "--seeds", "2", "--budgets", "5,10", "--cost-unit",
                           "evaluations", "--jobs", "2", "--plot", str(tmp_path / "p.png")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "| mypkg.agents:MyAgent |" in proc.stdout and "| random |" in proc.stdout
    script = Path(sys.executable).parent / "blox"  # the console script: the working folder is not on its path
    if script.exists():
        plain = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        own = subprocess.run([str(script), "bench", "--store", store.location, "--agents", "mypkg.agents:MyAgent",
                              "--seeds", "1", "--budgets", "5", "--cost-unit", "evaluations", "--executor", "serial",
                              "--plot", str(tmp_path / "q.png")], capture_output=True, text=True, timeout=300,
                             env=plain, cwd=tmp_path)
        assert own.returncode == 0 and "| mypkg.agents:MyAgent |" in own.stdout, own.stderr
    bad = subprocess.run([sys.executable, "-m", "blox_env.cli", "bench", "--agents", "mypkg.agents:Nope"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "has no attribute 'Nope'" in bad.stderr


def test_blox_env_exports_run_bench() -> None:
    assert blox_env.run_bench is run_bench and blox_env.BenchSpec is BenchSpec
