"""The builder: resumable after a killed worker, identical across executors, no duplicate or torn rows."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from blox_env.build.benchmark import build_benchmark, iter_pending
from blox_env.datasets.store.core import open_store
from blox_env.errors import InvalidArgumentError
from blox_env.space import SubSpace
from blox_env.training.recipes import Recipe

TINY = Recipe(name="tiny", epochs=2, batch_size=32, eval_batch_size=256, lr=0.05, stem_channels=2)
SPACE = SubSpace(((9, 30), (10,), (9, 11)))  # 4 cheap models
DATA = "synthetic"
METRICS = ("val_top1", "val_loss", "train_loss", "train_top1", "test_top1", "test_loss")


def _values(path: Path) -> dict[str, np.ndarray]:
    store = open_store(path)
    return {m: np.stack([store.get(m, seed=s, best=False, run="r") for s in (0, 1)]) for m in METRICS}


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("serial") / "s.zarr"
    report = build_benchmark(path, archs=SPACE, run="r", recipe=TINY, data=DATA, seeds=(0, 1), progress=False)
    assert report.trained == 8 and report.skipped == 0
    return path


def test_serial_build_is_complete_and_rerun_is_a_no_op(serial: Path) -> None:
    store = open_store(serial)
    assert len(store) == 4 and list(iter_pending(store, "r")) == []
    assert np.isfinite(store.get("test_top1", seed=1, run="r")).all()
    info = store.run_info("r")
    assert info.attrs["provenance"]["torch_threads_per_worker"] == 1 and info.attrs["workers"]
    assert np.all(store.get("wall_time_s", seed=0, run="r") > 0)
    again = build_benchmark(serial, archs=SPACE, run="r", recipe=TINY, data=DATA, seeds=(0, 1), progress=False)
    assert again.trained == 0 and again.skipped == 8


def test_process_pool_matches_serial(serial: Path, tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    build_benchmark(path, archs=SPACE, run="r", recipe=TINY, data=DATA, seeds=(0, 1), executor="process",
                    jobs=2, progress=False)
    a, b = _values(serial), _values(path)
    for m in METRICS:
        assert np.array_equal(a[m], b[m]), m


# A gate around the worker's task: the first task to arrive trains; every other one waits (marked by a
# ``waiting-<pid>`` file) until the test kills its worker, so the kill always lands mid-build.
GATE = """
import os, pathlib, time

from blox_env.build import benchmark

_train = benchmark.run_task


def gated_task(task):
    folder = pathlib.Path(os.environ["BLOX_TEST_GATE"])
    try:
        os.close(os.open(folder / "first", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        (folder / f"waiting-{os.getpid()}").touch()
        time.sleep(300)  # killed by the test (or with the broken pool) long before this ends
        raise RuntimeError("the test never killed a waiting worker")
    return _train(task)
"""


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_killed_worker_then_resume_gives_the_clean_result(serial: Path, tmp_path: Path) -> None:
    path, gate = tmp_path / "k.zarr", tmp_path / "gate"
    gate.mkdir()
    (gate / "gate.py").write_text(GATE)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(gate)!r})
        import gate
        from blox_env.build import benchmark
        from blox_env.space import SubSpace
        from blox_env.training.recipes import Recipe
        benchmark.run_task = gate.gated_task  # the workers import the gate by name (spawn keeps sys.path)
        recipe = Recipe(name="tiny", epochs=2, batch_size=32, eval_batch_size=256, lr=0.05, stem_channels=2)
        benchmark.build_benchmark({str(path)!r}, archs=SubSpace(((9, 30), (10,), (9, 11))), run="r", recipe=recipe,
                                  data="synthetic", seeds=(0, 1), executor="process", jobs=2, progress=False)
    """)
    driver = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "BLOX_TEST_GATE": str(gate)})
    killed = False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and driver.poll() is None:
            finished = 0
            if (path / "runs" / "r" / "test_top1").exists():
                try:
                    store = open_store(path)
                    finished = sum(int(np.isfinite(store.get("test_top1", seed=s, run="r")).sum()) for s in (0, 1))
                except Exception:  # noqa: BLE001 - the store may be mid-creation
                    finished = 0
            workers = {p.pid for p in psutil.Process(driver.pid).children(recursive=True)}
            waiting = [int(f.name.split("-")[1]) for f in gate.glob("waiting-*")]
            if finished >= 1 and any(pid in workers for pid in waiting):
                psutil.Process(next(pid for pid in waiting if pid in workers)).kill()  # a worker mid-task
                killed = True
                break
            time.sleep(0.05)
        _, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert killed, f"no worker was killed after the first result (driver exit {driver.returncode}): {err[-2000:]}"
    assert driver.returncode != 0  # the driver reports the broken pool instead of pretending success
    partial = open_store(path)
    pending = list(iter_pending(partial, "r"))
    assert len(pending) == 7  # exactly the one result that arrived before the kill was kept
    report = build_benchmark(path, archs=SPACE, run="r", recipe=TINY, data=DATA, seeds=(0, 1), progress=False)
    assert report.trained == len(pending) and report.skipped == 8 - len(pending)
    a, b = _values(serial), _values(path)
    for m in METRICS:
        assert np.array_equal(a[m], b[m]), m


@pytest.mark.slow
def test_ray_executor_matches_serial(serial: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    path = tmp_path / "ray.zarr"
    try:
        build_benchmark(path, archs=SPACE, run="r", recipe=TINY, data=DATA, seeds=(0, 1), executor="ray",
                        jobs=2, progress=False)
    finally:
        ray.shutdown()
    a, b = _values(serial), _values(path)
    for m in METRICS:
        assert np.array_equal(a[m], b[m]), m


def test_builder_rejects_bad_input(serial: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="seeds"):
        build_benchmark(tmp_path / "x.zarr", archs=SPACE, run="r", recipe=TINY, data=DATA, seeds=(1, 1))
    assert not (tmp_path / "x.zarr").exists()
    with pytest.raises(InvalidArgumentError, match="executor"):
        build_benchmark(tmp_path / "y.zarr", archs=SPACE, run="r", recipe=TINY, data=DATA, executor="mpi")
    assert not (tmp_path / "y.zarr").exists()  # refused before the store was created
    with pytest.raises(InvalidArgumentError, match="no rows"):
        build_benchmark(serial, archs=SubSpace(((0,), (0,), (0,))), run="r", recipe=TINY, data=DATA)
    with pytest.raises(InvalidArgumentError, match="exists with a different spec .*epochs: 2 in the store vs 3"):
        build_benchmark(serial, archs=SPACE, run="r", recipe=TINY.with_(epochs=3), data=DATA, seeds=(0,))


# ------------------------------------------------------------------------------ workers die with the driver
SLOW_TASK = """
import os, pathlib, time


def slow(folder):
    pathlib.Path(folder, str(os.getpid())).touch()
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_killing_the_driver_of_a_process_pool_kills_its_workers(tmp_path: Path) -> None:
    (tmp_path / "slowtask.py").write_text(SLOW_TASK)
    marks = tmp_path / "started"
    marks.mkdir()
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from slowtask import slow
        from blox_env.build.executors import ProcessExecutor
        for _ in ProcessExecutor(2).map_unordered(slow, [{str(marks)!r}] * 4):
            pass
    """)
    driver = subprocess.Popen([sys.executable, "-c", code])
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.1)
            workers = [int(p.name) for p in marks.iterdir()]
        assert len(workers) == 2, "the workers did not start"
        driver.kill()  # SIGKILL: no clean-up code of the driver runs
        driver.wait(timeout=30)
        deadline = time.monotonic() + 20  # a liveness bound, not a speed claim (the watchdog polls every 0.5 s)
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "workers outlived their driver"
    finally:
        if driver.poll() is None:
            driver.kill()
        for pid in workers:
            if _alive(pid):
                psutil.Process(pid).kill()


# ------------------------------------------------------------------------------ commands check inputs first
def _invoke(*args: str) -> Any:
    from typer.testing import CliRunner

    from blox_env.cli.root import app

    return CliRunner().invoke(app, list(args))


@pytest.fixture()
def measured(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace the minutes of latency measurement by a constant table; records each call."""
    import blox_env.latency as latency
    from blox_env.space import N_BLOCKS, N_STAGES

    calls: list[int] = []

    def fake(config: Any = None, *, progress: bool = False, seed: int = 0) -> Any:
        calls.append(seed)
        return latency.ComponentLatency(1e-4, tuple((1e-5,) * N_BLOCKS for _ in range(N_STAGES)), (1e-5,) * 3, 1e-5)

    monkeypatch.setattr(latency, "component_latencies", fake)
    return calls


@pytest.mark.parametrize("where", ["nope.zarr", "empty.zarr", "blox"])
def test_latency_with_no_store_fails_before_measuring_and_leaves_nothing(
        where: str, measured: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from blox_env.datasets.store.location import default_store_path
    from blox_env.errors import StoreNotFoundError

    monkeypatch.setenv("BLOX_HOME", str(tmp_path / "home"))
    (tmp_path / "empty.zarr").mkdir()
    store = where if where == "blox" else str(tmp_path / where)
    result = _invoke("latency", "--store", store, "--validate", "0", "--repeats", "1")
    assert isinstance(result.exception, StoreNotFoundError), result.output
    assert measured == []  # refused before measuring
    assert not (tmp_path / "nope.zarr").exists() and not default_store_path().exists()
    assert list((tmp_path / "empty.zarr").iterdir()) == []


def test_latency_rejects_bad_counts_before_measuring(measured: list[int]) -> None:
    assert isinstance(_invoke("latency", "--validate", "-1").exception, InvalidArgumentError)
    assert isinstance(_invoke("latency", "--validate", "91126").exception, InvalidArgumentError)
    assert isinstance(_invoke("latency", "--repeats", "0").exception, InvalidArgumentError)
    assert measured == []


def test_latency_is_written_into_an_existing_store(measured: list[int], tmp_path: Path) -> None:
    from blox_env.datasets.synthetic import synthetic_store
    from blox_env.latency import device_name

    path = tmp_path / "s.zarr"
    synthetic_store(path, space=SubSpace(((0, 1), (2,), (3,))), latency=False).close()
    result = _invoke("latency", "--store", str(path), "--validate", "0", "--repeats", "1")
    assert result.exit_code == 0, result.output
    assert measured == [0]
    assert open_store(path).get(f"latency/{device_name()}") == pytest.approx(1e-4 + 3e-5 + 3e-5 + 1e-5)


@pytest.mark.parametrize("args", [
    ("--executor", "mpi"), ("--jobs", "0"), ("--seeds", "1,1"), ("--seeds", "a"), ("--blocks", "1,9;10"),
    ("--blocks", "1;2;99"), ("--device", "cdua"), ("--recipe", "nope"), ("--data", "nope"),
])
def test_build_command_refuses_bad_input_before_creating_the_store(args: tuple[str, ...], tmp_path: Path) -> None:
    from blox_env.errors import BloxError

    result = _invoke("build", str(tmp_path / "x.zarr"), "--data", "synthetic", *args)
    assert isinstance(result.exception, BloxError), result.output
    assert list(tmp_path.iterdir()) == []


def test_blockwise_and_mini_commands_refuse_bad_input_before_writing(serial: Path, tmp_path: Path) -> None:
    from blox_env.errors import BloxError

    before = sorted(p.relative_to(serial) for p in serial.rglob("*"))
    for args in (("--executor", "mpi"), ("--run", "nope"), ("--ft-epochs", "2,1")):
        result = _invoke("build-blockwise", str(serial), "--data", "synthetic", "--recipe", "digits_mini", *args)
        assert isinstance(result.exception, BloxError), (args, result.output)
    assert sorted(p.relative_to(serial) for p in serial.rglob("*")) == before  # not even a blockwise group
    for args in (("--executor", "mpi"), ("--package", str(tmp_path / "mini.tar"))):
        result = _invoke("build-mini", "--out", str(tmp_path / "mini.zarr"), *args)
        assert isinstance(result.exception, BloxError), (args, result.output)
    assert list(tmp_path.iterdir()) == []


class _FakeRay:
    """Just enough of Ray's API to watch what the executor submits and cancels."""

    def __init__(self) -> None:
        self.cancelled: list[tuple[Any, bool]] = []

    def is_initialized(self) -> bool:
        return True

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": 2.0}

    def remote(self, **options: Any) -> Any:
        class Remote:
            def __init__(self, fn: Any) -> None:
                self.remote = lambda task: ("ref", task)

        return Remote

    def wait(self, refs: list[Any], num_returns: int = 1) -> tuple[list[Any], list[Any]]:
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref: Any) -> Any:
        return ref[1]

    def cancel(self, ref: Any, *, force: bool = False, recursive: bool = True) -> None:
        self.cancelled.append((ref, force))


def test_ray_tasks_in_flight_are_force_cancelled_when_the_driver_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    from blox_env.build.executors import RayExecutor

    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    ex = RayExecutor()
    results = ex.map_unordered(abs, range(10))
    assert next(results) == (0, 0)  # 4 submitted (2 per CPU), 1 collected
    results.close()  # the driver raised or was interrupted while consuming
    assert fake.cancelled == [(("ref", t), True) for t in (1, 2, 3)]
    fake.cancelled.clear()
    results = ex.map_unordered(abs, range(10))
    next(results)
    ex.close()  # closing the executor stops what is still running
    assert sorted(fake.cancelled) == [(("ref", t), True) for t in (1, 2, 3)]
