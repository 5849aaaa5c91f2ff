"""The build pool's driver and workers: batched writes that survive errors and Ctrl-C, warm workers, one thread each."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from blox_env.build import benchmark
from blox_env.build.benchmark import build_benchmark, estimated_cost, iter_pending, shipped_data, warm_worker
from blox_env.build.executors import ProcessExecutor
from blox_env.build.writer import ResultWriter
from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.errors import InvalidArgumentError
from blox_env.space import Arch, SubSpace
from blox_env.training.recipes import Recipe
from blox_env.training.train import CURVES, TrainResult

TINY = Recipe(name="tiny", epochs=2, batch_size=32, eval_batch_size=256, lr=0.05, stem_channels=2)
SPACE = SubSpace(((9, 30), (10,), (9, 11)))  # 4 cheap models
DATA = "synthetic"
METRICS = ("val_top1", "val_loss", "train_loss", "train_top1", "test_top1", "test_loss", "worker")


def _values(path: Path) -> dict[str, np.ndarray]:
    store = open_store(path)
    return {m: np.stack([store.get(m, seed=s, best=False, run="r") for s in (0, 1)]) for m in METRICS}


def _finished(path: Path) -> int:
    return 8 - len(list(iter_pending(open_store(path), "r")))


@pytest.fixture(scope="module")
def per_result(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: a serial build writing each result as it arrives (the behaviour before batching)."""
    path = tmp_path_factory.mktemp("one") / "s.zarr"
    build_benchmark(path, archs=SPACE, run="r", recipe=TINY, data=DATA, progress=False, write_every=1)
    return path


# ------------------------------------------------------------------------------------ the writer's rules
class FakeStore:
    """Records the writer's calls in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.attrs: dict[str, Any] = {"workers": ["old:1"]}

    def write_rows(self, run: str, metric: str, archs: list[int], values: list[Any], *, seed: int) -> None:
        self.calls.append(("rows", run, metric, tuple(archs), seed, list(values)))

    def run_info(self, run: str) -> Any:
        return type("Info", (), {"attrs": dict(self.attrs)})()

    def set_run_attrs(self, run: str, **attrs: Any) -> None:
        self.attrs.update(attrs)
        self.calls.append(("attrs", run, list(attrs["workers"])))


def _result(i: int) -> TrainResult:
    return TrainResult(i, 0, 2, {m: [1.0, 2.0] for m in CURVES}, 2, 0.5, 50.0, 90.0, 1.0, 1.1)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_writer_batches_by_count_and_by_expected_time() -> None:
    store, clock = FakeStore(), Clock()
    writer = ResultWriter(store, every=3, seconds=10.0, clock=clock)
    writer.add("r", _result(1), seed=0)  # the first result: nothing known of the pace, written at once
    assert (writer.writes, writer.pending) == (1, 0)
    for i in (2, 3):  # one per second: held
        clock.now += 1.0
        writer.add("r", _result(i), seed=0)
    assert (writer.writes, writer.pending) == (1, 2)
    clock.now += 1.0
    writer.add("r", _result(4), seed=0)  # the third waiting result: a batch
    assert (writer.writes, writer.pending, writer.written) == (2, 0, 4)
    for i in range(5, 30):  # results 20 s apart: each is written as it arrives
        clock.now += 20.0
        writer.add("r", _result(i), seed=0)
        if i > 6:
            assert writer.pending == 0
    fast = ResultWriter(FakeStore(), every=100, seconds=10.0, clock=clock)
    fast.add("r", _result(1), seed=0)
    for i in range(2, 12):  # 2 s apart: written once the next one would come 10 s after the last write
        clock.now += 2.0
        fast.add("r", _result(i), seed=0)
    assert fast.writes == 3 and fast.pending == 2  # batches of 4, 8 s apart


def test_writer_seals_each_batch_with_test_top1_and_names_workers_before_their_codes() -> None:
    store, clock = FakeStore(), Clock()
    writer = ResultWriter(store, every=10, seconds=1e9, worker_column=lambda run: run == "r", clock=clock)
    with writer:
        writer.add("r", _result(1), seed=0, worker="a:1")
        clock.now += 1
        writer.add("r", _result(2), seed=1, worker="old:1")
        writer.add("r", _result(3), seed=1, worker="b:2")
        writer.add("ft", _result(4), seed=0, worker="a:1")  # no worker column in this run
        assert writer.pending == 3
    assert writer.pending == 0 and writer.written == 4
    groups: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for call in store.calls:
        if call[0] == "rows":
            groups.setdefault((call[1], call[4]), []).append(call)
    for calls in groups.values():
        assert calls[-1][2] == "test_top1"  # the seal of every row of the batch comes last
    batch = groups[("r", 1)]
    assert batch[0][3] == (2, 3) and len(batch) == len(CURVES) + 1 + 5  # one write per metric for both rows
    assert [c[5] for c in batch if c[2] == "worker"] == [[0.0, 2.0]]  # old:1 kept its code, b:2 appended
    assert store.attrs["workers"] == ["old:1", "a:1", "b:2"]
    first_codes = next(i for i, c in enumerate(store.calls) if c[0] == "rows" and c[2] == "worker" and c[4] == 1)
    assert any(c[0] == "attrs" and "b:2" in c[2] for c in store.calls[:first_codes])
    assert not any(c[0] == "rows" and c[1] == "ft" and c[2] == "worker" for c in store.calls)


def test_batched_row_writes_equal_row_by_row_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import blox_env.datasets.store.write as write
    from blox_env.datasets.store.encoding import Encoding

    monkeypatch.setattr(write, "CURVE_CHUNK_ROWS", 3)  # 10 rows span 4 chunks
    monkeypatch.setattr(write, "VECTOR_CHUNK_ROWS", 4)
    index = np.arange(0, 200, 20)
    rng = np.random.default_rng(0)
    curves, finals = rng.integers(0, 100, (10, 3)).astype(float), rng.random(10)
    stores = []
    for name in ("one", "many"):
        st = BloxStore.create(tmp_path / f"{name}.zarr", index=index, name=name)
        st.create_run("r", seeds=[0], epochs=3)
        st.allocate_metric("r", "c", encoding=Encoding("raw", "float32"), per_epoch=True)
        st.allocate_metric("r", "v", encoding=Encoding("raw", "float64"), per_epoch=False)
        stores.append(st)
    order = [7, 2, 9, 0, 5, 3]  # out of order, several per chunk, rows 1, 4, 6, 8 left missing
    for i in order:
        stores[0].write_rows("r", "c", [index[i]], [curves[i]], seed=0)
        stores[0].write_rows("r", "v", [index[i]], [finals[i]], seed=0)
    stores[1].write_rows("r", "c", index[order], curves[order], seed=0)
    stores[1].write_rows("r", "v", index[order], finals[order], seed=0)
    for metric in ("c", "v"):
        a, b = (s.get(metric, seed=0, run="r", best=False) for s in stores)
        assert np.array_equal(a, b, equal_nan=True)
        assert np.isnan(b[[1, 4, 6, 8]]).all() and np.isfinite(b[order]).all()
    with pytest.raises(InvalidArgumentError, match="one value per model"):
        stores[1].write_rows("r", "v", index[:3], finals[:2], seed=0)


# ------------------------------------------------------------------------------ builds: batched, interrupted
def test_batched_build_equals_per_result_writes(per_result: Path, tmp_path: Path) -> None:
    path = tmp_path / "b.zarr"
    build_benchmark(path, archs=SPACE, run="r", recipe=TINY, data=DATA, progress=False, write_every=32,
                    write_seconds=1e6)
    a, b = _values(per_result), _values(path)
    for m in METRICS:
        assert np.array_equal(a[m], b[m], equal_nan=True), m
    assert open_store(path).run_info("r").attrs["workers"]


def test_tasks_go_out_longest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[int] = []
    real = benchmark.run_task

    def recording(task: Any) -> Any:
        order.append(task.arch_index)
        return real(task)

    monkeypatch.setattr(benchmark, "run_task", recording)
    build_benchmark(tmp_path / "o.zarr", archs=SPACE, run="r", recipe=TINY, data=DATA, seeds=(0,), progress=False)
    costs = [estimated_cost(i) for i in order]
    assert costs == sorted(costs, reverse=True) and len(set(costs)) == 4
    assert estimated_cost(Arch((30, 10, 11)).index) > estimated_cost(Arch((9, 10, 9)).index)


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_build_keeps_every_result_it_received(error: type[BaseException], per_result: Path,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, calls = tmp_path / "i.zarr", []
    real = benchmark.run_task

    def stop_at_fourth(task: Any) -> Any:
        calls.append(task)
        if len(calls) == 4:
            raise error("stop")
        return real(task)

    monkeypatch.setattr(benchmark, "run_task", stop_at_fourth)
    with pytest.raises(error):  # 3 results received; the first written at once, the others held in the batch
        build_benchmark(path, archs=SPACE, run="r", recipe=TINY, data=DATA, progress=False, write_every=100,
                        write_seconds=1e6)
    assert _finished(path) == 3  # flushed on the way out
    monkeypatch.setattr(benchmark, "run_task", real)
    report = build_benchmark(path, archs=SPACE, run="r", recipe=TINY, data=DATA, progress=False)
    assert (report.trained, report.skipped) == (5, 3)
    a, b = _values(per_result), _values(path)
    for m in METRICS[:-1]:
        assert np.array_equal(a[m], b[m]), m


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pool_failure_writes_the_results_received_then_rerun_completes(per_result: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import pool_helpers

    path = tmp_path / "f.zarr"
    monkeypatch.setattr(benchmark, "run_task", pool_helpers.failing_task)  # fails in a worker on (9, 10, 11)
    with pytest.raises(RuntimeError, match="planned failure"):
        build_benchmark(path, archs=SPACE, run="r", recipe=TINY, data=DATA, executor="process", jobs=2,
                        progress=False, write_every=100, write_seconds=1e6)
    done = _finished(path)
    assert done >= 1  # the results of the longest model (sent first) arrived before the failure and were kept
    store = open_store(path)
    assert not np.isfinite(store.get("test_top1", [Arch((9, 10, 11)).index], seed=0, run="r")).any()
    monkeypatch.undo()
    report = build_benchmark(path, archs=SPACE, run="r", recipe=TINY, data=DATA, executor="process", jobs=2,
                             progress=False)
    assert (report.trained, report.skipped) == (8 - done, done)
    a, b = _values(per_result), _values(path)
    for m in METRICS[:-1]:
        assert np.array_equal(a[m], b[m]), m


@pytest.mark.parametrize("kwargs", [{"write_every": 0}, {"write_every": 2.5}, {"write_seconds": -1.0},
                                    {"write_seconds": float("inf")}, {"write_every": True}])
def test_bad_batching_is_refused_before_anything_is_written(kwargs: dict[str, Any], per_result: Path,
                                                             tmp_path: Path) -> None:
    from blox_env.build.blockwise import BlockwiseSpec, build_blockwise

    with pytest.raises(InvalidArgumentError, match="every|seconds"):
        build_benchmark(tmp_path / "x.zarr", archs=SPACE, run="r", recipe=TINY, data=DATA, progress=False, **kwargs)
    assert not (tmp_path / "x.zarr").exists()
    with pytest.raises(InvalidArgumentError, match="every|seconds"):
        build_blockwise(per_result, spec=BlockwiseSpec(recipe=TINY, data=DATA, data_kwargs=(), normal_run="r"),
                        progress=False, **kwargs)
    assert open_store(per_result).read_blockwise_tables() is None


# ------------------------------------------------------------------------------------------ warm workers
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_warm_pool_starts_every_worker_with_one_thread_per_pool_and_the_data_loaded() -> None:
    import hashlib

    import pool_helpers

    data = benchmark.cached_data("digits", ())
    digest = hashlib.sha256()
    for split in (data.train, data.val, data.test):
        digest.update(split.x.numpy().tobytes() + split.y.numpy().tobytes())
    with shipped_data(data) as shipped:
        assert shipped is not None
        ex = ProcessExecutor(2, warm=partial(warm_worker, "digits", (), shipped))
        try:
            assert len(psutil.Process().children()) >= 2  # started with the pool, before any task
            states = [s for _, s in ex.map_unordered(pool_helpers.worker_state, [1.0] * 6)]
        finally:
            ex.close()
    assert len({s["pid"] for s in states}) == 2
    for s in states:
        assert s["torch_threads"] == 1 and s["interop_threads"] == 1  # no oversubscription on 2 cores
        assert s["pools"] and set(s["pools"]) == {1}  # OpenMP and BLAS (numpy's OpenBLAS would start 2)
        assert set(s["env"].values()) == {"1"}
        assert s["train_imported"]  # the training code was imported by the warm-up, not by the first task
        assert s["dynamo_imported"]  # ... and what torch imports at the first optimizer
        assert s["data"] == {("digits", ()): digest.hexdigest()}  # the driver's data, bit for bit
        assert not s["sklearn"]  # read from the shipped file: the digits loader's import was never paid


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_failing_warm_up_leaves_the_work_to_the_tasks() -> None:
    import pool_helpers

    ex = ProcessExecutor(1, warm=partial(warm_worker, "no-such-data", ()))
    try:
        (_, state), = list(ex.map_unordered(pool_helpers.worker_state, [0.0]))
    finally:
        ex.close()
    assert state["data"] == {} and state["torch_threads"] == 1


def test_builder_bars_redraw_once_a_second() -> None:
    from blox_env.build import blockwise

    for bar in (benchmark._bar(3, 0, True), blockwise._bar("finetune", 3, True)):
        try:
            assert bar._progress.live.refresh_per_second == benchmark.BAR_REFRESH == 1.0
        finally:
            bar.close()
