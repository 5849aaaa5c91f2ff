"""The builder: resumable after a killed worker, identical across executors, no duplicate or torn rows."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from blox_env.datasets.build import build_benchmark, iter_pending
from blox_env.datasets.store import open_store
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
                    workers=2, progress=False)
    a, b = _values(serial), _values(path)
    for m in METRICS:
        assert np.array_equal(a[m], b[m]), m


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_killed_worker_then_resume_gives_the_clean_result(serial: Path, tmp_path: Path) -> None:
    path = tmp_path / "k.zarr"
    code = textwrap.dedent(f"""
        from blox_env.datasets.build import build_benchmark
        from blox_env.space import SubSpace
        from blox_env.training.recipes import Recipe
        recipe = Recipe(name="tiny", epochs=2, batch_size=32, eval_batch_size=256, lr=0.05, stem_channels=2)
        build_benchmark({str(path)!r}, archs=SubSpace(((9, 30), (10,), (9, 11))), run="r", recipe=recipe,
                        data="synthetic", seeds=(0, 1), executor="process", workers=2, progress=False)
    """)
    driver = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    killed = False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and driver.poll() is None:
            finished = 0
            if (path / "runs" / "r" / "test_top1").exists():
                try:
                    store = open_store(path)
                    finished = int(np.isfinite(store.get("test_top1", seed=0, run="r")).sum())
                except Exception:  # noqa: BLE001 - the store may be mid-creation
                    finished = 0
            workers = [p for p in psutil.Process(driver.pid).children(recursive=True)
                       if "spawn_main" in " ".join(p.cmdline())]
            if finished >= 1 and workers:
                workers[0].kill()
                killed = True
                break
            time.sleep(0.05)
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    if not killed:
        pytest.skip("the build finished before a worker could be killed")
    assert driver.returncode != 0  # the driver reports the broken pool instead of pretending success
    partial = open_store(path)
    pending = list(iter_pending(partial, "r"))
    assert 0 < len(pending) < 8
    report = build_benchmark(path, archs=SPACE, run="r", recipe=TINY, data=DATA, seeds=(0, 1), progress=False)
    assert report.trained == len(pending) and report.skipped == 8 - len(pending)
    a, b = _values(serial), _values(path)
    for m in METRICS:
        assert np.array_equal(a[m], b[m]), m


def test_ray_executor_matches_serial(serial: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    path = tmp_path / "ray.zarr"
    try:
        build_benchmark(path, archs=SPACE, run="r", recipe=TINY, data=DATA, seeds=(0, 1), executor="ray",
                        workers=2, progress=False)
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
