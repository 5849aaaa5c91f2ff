"""Trace stores: search traces live in a store of their own, tied to one benchmark.

Before: ``blox bench --traces`` appended into any store (the packaged zip included), silently replaced earlier
traces (of another benchmark too), two writers tore ``traces/random-s0`` (6 of 14 columns, no attributes) and
``verify --deep`` still said OK.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from store_workers import hold_lock

from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.datasets.store.location import bundled_mini_path
from blox_env.datasets.store.verify import verify_store
from blox_env.datasets.synthetic import synthetic_store
from blox_env.errors import InvalidArgumentError, StoreBusyError, StoreReadOnlyError
from blox_env.space import SubSpace

SPACE = SubSpace(((0, 9, 30), (1, 12, 36), (2, 21, 44)))  # 27 models
RUN = "synthetic"
RECORDS = [{"arch_index": 3, "cost": 1.5, "cumulative_cost": 1.5, "metrics": {"val_top1": 50.0}},
           {"arch_index": 17, "cost": 2.0, "cumulative_cost": 3.5, "metrics": {"val_top1": 60.0, "params": 9.0}}]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("traces") / "bench.zarr"
    synthetic_store(path, space=SPACE, seeds=(0, 1), epochs=12).close()
    return path


@pytest.fixture
def bench_path(pristine: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "bench.zarr"
    shutil.copytree(pristine, dest)
    return dest


@pytest.fixture
def bench(bench_path: Path) -> BloxStore:
    return open_store(bench_path)


# ---------------------------------------------------------------------- identity
def test_benchmark_identity_is_stable_and_ignores_what_a_search_does_not_read(bench_path: Path) -> None:
    ident = open_store(bench_path).benchmark_identity()
    assert ident["name"] == open_store(bench_path).name and ident["n_rows"] == 27 and len(ident["digest"]) == 64
    assert ident == open_store(bench_path).benchmark_identity()
    st = BloxStore.open(bench_path, mode="a")
    st.write_blockwise_tables({"teacher": "x"})
    st.write_signatures("blockwise/abc/signatures/k", {"distill_loss": np.ones((3, 45))})
    st.write_trace("random-s0", RECORDS)
    st.close()
    assert open_store(bench_path).benchmark_identity() == ident
    st = BloxStore.open(bench_path, mode="a")
    st.write_metric(RUN, "test_top1", np.full((2, 27), 50.0))  # a value a search reads: another benchmark
    st.close()
    changed = open_store(bench_path).benchmark_identity()
    assert changed["digest"] != ident["digest"] and changed["arrays"] == ident["arrays"]


def test_benchmark_identity_of_a_store_without_checksums_is_computed(bench_path: Path) -> None:
    ident = open_store(bench_path).benchmark_identity()
    root = bench_path / "zarr.json"
    doc = json.loads(root.read_text())
    del doc["attributes"]["checksums"]
    root.write_text(json.dumps(doc))
    assert open_store(bench_path).benchmark_identity() == ident


# ---------------------------------------------------------------------- creating and opening
def test_open_traces_creates_a_trace_store_of_the_benchmark(bench: BloxStore, tmp_path: Path) -> None:
    ts = BloxStore.open_traces(tmp_path / "t.zarr", benchmark=bench)
    assert ts.is_trace_store and ts.attrs["kind"] == "traces"
    assert ts.attrs["benchmark"]["digest"] == bench.benchmark_identity()["digest"]
    assert ts.attrs["benchmark"]["location"] == bench.location and not ts.runs
    ts.write_trace("random-s0", RECORDS, attrs={"agent": "random", "seed": 0, "spec": "k1"})
    ts.close()
    again = BloxStore.open_traces(tmp_path / "t.zarr", benchmark=bench)
    assert again.trace_runs() == {"random-s0": {"length": 2, "agent": "random", "seed": 0, "spec": "k1"}}
    again.close()
    ro = BloxStore.open_traces(tmp_path / "t.zarr", benchmark=bench, mode="r")
    assert ro.read_trace("random-s0")["cost"].tolist() == [1.5, 2.0]
    with pytest.raises(StoreReadOnlyError):
        ro.write_trace("x", RECORDS)
    with pytest.raises(StoreReadOnlyError, match="read-only"):
        ro.check_traces_of(bench)
    assert verify_store(tmp_path / "t.zarr", deep=True).ok
    assert not list(tmp_path.glob(".t.zarr.tmp-*"))


def test_open_traces_refuses_the_bundled_benchmark(bench: BloxStore) -> None:
    mini = bundled_mini_path()
    assert mini is not None
    before = mini.stat().st_mtime_ns, mini.stat().st_size
    with pytest.raises(InvalidArgumentError, match="bundled Blox-mini"):
        BloxStore.open_traces(mini, benchmark=open_store("blox-mini"))
    with pytest.raises(InvalidArgumentError, match="bundled Blox-mini"):
        BloxStore.open_traces(mini, benchmark=bench)
    assert (mini.stat().st_mtime_ns, mini.stat().st_size) == before


def test_open_traces_refuses_benchmarks_files_and_other_stores(bench: BloxStore, bench_path: Path,
                                                               tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="the benchmark itself"):
        BloxStore.open_traces(bench_path, benchmark=bench)
    other = tmp_path / "other.zarr"
    shutil.copytree(bench_path, other)
    with pytest.raises(InvalidArgumentError, match="a benchmark store"):
        BloxStore.open_traces(other, benchmark=bench)
    with pytest.raises(InvalidArgumentError, match="a zip cannot be updated"):
        BloxStore.open_traces(tmp_path / "t.zip", benchmark=bench)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InvalidArgumentError, match="is a file"):
        BloxStore.open_traces(tmp_path / "notes.txt", benchmark=bench)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a").write_text("x")
    with pytest.raises(InvalidArgumentError, match="not a blox store"):
        BloxStore.open_traces(tmp_path / "full", benchmark=bench)
    with pytest.raises(InvalidArgumentError, match="local folder"):
        BloxStore.open_traces("memory://t", benchmark=bench)
    with pytest.raises(InvalidArgumentError, match="no trace store"):
        BloxStore.open_traces(tmp_path / "absent.zarr", benchmark=bench, create=False)
    (tmp_path / "empty").mkdir()
    BloxStore.open_traces(tmp_path / "empty", benchmark=bench).close()  # an empty folder is fine
    with pytest.raises(InvalidArgumentError, match="is a trace store, not a benchmark"):
        BloxStore.open_traces(tmp_path / "t2.zarr", benchmark=open_store(tmp_path / "empty"))
    with pytest.raises(InvalidArgumentError, match="BloxStore"):
        BloxStore.open_traces(tmp_path / "t2.zarr", benchmark=str(bench_path))  # type: ignore[arg-type]
    assert not (tmp_path / "t2.zarr").exists()


def test_open_traces_refuses_a_trace_store_of_another_benchmark(bench: BloxStore, bench_path: Path,
                                                                tmp_path: Path) -> None:
    BloxStore.open_traces(tmp_path / "t.zarr", benchmark=bench).close()
    st = BloxStore.open(bench_path, mode="a")
    st.write_metric(RUN, "test_top1", np.full((2, 27), 50.0))
    st.close()
    changed = open_store(bench_path)
    with pytest.raises(InvalidArgumentError, match=rf"belongs to benchmark {bench.name!r} \({bench.location}"):
        BloxStore.open_traces(tmp_path / "t.zarr", benchmark=changed)
    with pytest.raises(InvalidArgumentError, match="belongs to benchmark"):
        BloxStore.open_traces(tmp_path / "t.zarr", benchmark=changed, mode="r")
    with pytest.raises(InvalidArgumentError, match="belongs to benchmark"):
        BloxStore.open_traces(tmp_path / "t.zarr", benchmark=open_store("blox-mini"))


def test_open_traces_refuses_a_folder_it_cannot_write(bench: BloxStore, tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    BloxStore.open_traces(path, benchmark=bench).close()
    path.chmod(0o555)
    try:
        if os.access(path, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(StoreReadOnlyError, match="cannot be written"):
            BloxStore.open_traces(path, benchmark=bench)
    finally:
        path.chmod(0o755)


# ---------------------------------------------------------------------- writing traces
def test_write_trace_never_replaces_silently(bench: BloxStore, tmp_path: Path) -> None:
    ts = BloxStore.open_traces(tmp_path / "t.zarr", benchmark=bench)
    ts.write_trace("random-s0", RECORDS, attrs={"spec": "a"})
    with pytest.raises(InvalidArgumentError, match="already has a trace 'random-s0'.*replace=True"):
        ts.write_trace("random-s0", RECORDS[:1], attrs={"spec": "b"})
    assert ts.read_trace("random-s0")["cost"].tolist() == [1.5, 2.0]
    ts.write_trace("random-s0", RECORDS[:1], attrs={"spec": "b"}, replace=True)
    assert ts.read_trace("random-s0")["cost"].tolist() == [1.5]
    assert ts.trace_attrs("random-s0") == {"length": 1, "spec": "b"}
    assert "metrics/params" not in ts.read_trace("random-s0")  # the old columns went with the old trace
    with pytest.raises(InvalidArgumentError, match="may not set"):
        ts.write_trace("x", RECORDS, attrs={"length": 5})
    ts.close()
    assert verify_store(tmp_path / "t.zarr", deep=True).ok


def test_a_failed_trace_write_leaves_nothing(bench: BloxStore, tmp_path: Path) -> None:
    ts = BloxStore.open_traces(tmp_path / "t.zarr", benchmark=bench)
    ts.write_trace("a", RECORDS)
    with pytest.raises(InvalidArgumentError, match="missing from some records"):
        ts.write_trace("b", [{"cost": 1.0}, {"other": 2.0}])
    assert ts.traces == ["a"]
    ts.close()
    assert not [p for p in (tmp_path / "t.zarr" / "traces").iterdir() if p.name.startswith(".")]


def test_torn_traces_are_detected_and_not_listed_as_finished(bench: BloxStore, tmp_path: Path) -> None:
    ts = BloxStore.open_traces(tmp_path / "t.zarr", benchmark=bench)
    for name in ("ok", "cols", "attrs", "length"):
        ts.write_trace(name, RECORDS, attrs={"agent": name})
    ts.close()
    root = tmp_path / "t.zarr" / "traces"
    shutil.rmtree(root / "cols" / "metrics")  # columns missing (what a killed writer left)
    meta = json.loads((root / "attrs" / "zarr.json").read_text())
    meta["attributes"] = {}
    (root / "attrs" / "zarr.json").write_text(json.dumps(meta))  # no attributes
    meta = json.loads((root / "length" / "zarr.json").read_text())
    meta["attributes"]["length"] = 5
    (root / "length" / "zarr.json").write_text(json.dumps(meta))  # lengths disagree
    ro = open_store(tmp_path / "t.zarr")
    assert set(ro.trace_runs()) == {"ok"}
    assert any("lacks 2" in p for p in ro.trace_problems("cols"))
    assert any("no attributes" in p for p in ro.trace_problems("attrs"))
    assert any("do not hold its 5 records" in p for p in ro.trace_problems("length"))
    for deep in (False, True):
        report = verify_store(tmp_path / "t.zarr", deep=deep)
        assert not report.ok
        text = "\n".join(report.errors)
        assert "'cols'" in text and "'attrs'" in text and "'length'" in text and "'ok'" not in text


# ---------------------------------------------------------------------- one writer at a time
def test_a_second_writer_is_refused_naming_the_holder_or_waits(bench: BloxStore, tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=hold_lock, args=(str(path), bench.location, 3.0, ready))
    holder.start()
    try:
        assert ready.wait(120)
        with pytest.raises(StoreBusyError, match=rf"being written by pid {holder.pid} on .*wait for it to finish"):
            BloxStore.open_traces(path, benchmark=bench)
        t = time.monotonic()
        ts = BloxStore.open_traces(path, benchmark=bench, lock_timeout=60)  # waits for the holder to finish
        assert time.monotonic() - t < 60
        assert ts.trace_runs().keys() == {"first"}
        ts.write_trace("second", RECORDS)
        ts.close()
    finally:
        holder.join(60)
        if holder.is_alive():
            holder.kill()
    assert holder.exitcode == 0
    assert set(open_store(path).traces) == {"first", "second"}


def test_a_trace_store_opened_directly_still_has_one_writer(bench: BloxStore, tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    BloxStore.open_traces(path, benchmark=bench).close()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=hold_lock, args=(str(path), bench.location, 2.0, ready))
    holder.start()
    try:
        assert ready.wait(120)
        direct = BloxStore.open(path, mode="a")
        with pytest.raises(StoreBusyError, match=f"pid {holder.pid}"):
            direct.write_trace("x", RECORDS)
        direct.close()
    finally:
        holder.join(60)
    assert open_store(path).traces == ["first"]


def test_a_killed_writer_never_blocks_the_next(bench: BloxStore, tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    code = textwrap.dedent(f"""
        import os
        from blox_env.datasets.store.core import BloxStore, open_store
        ts = BloxStore.open_traces({str(path)!r}, benchmark=open_store({bench.location!r}))
        ts.write_trace("a", [{{"cost": 1.0}}])
        os._exit(9)
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent)  # never the repo root: it would shadow an install
    assert out.returncode == 9, out.stderr[-2000:]
    left = path / "traces" / ".blox-tmp-random-s0-0123abcd"  # what a writer killed mid-trace leaves
    left.mkdir()
    (left / "zarr.json").write_text("{}")
    assert any("hidden temporary" in w for w in verify_store(path).warnings)
    BloxStore.open_traces(path, benchmark=bench).close()
    assert not left.exists() and not verify_store(path).warnings and open_store(path).trace_runs().keys() == {"a"}


def test_a_trace_written_meanwhile_by_another_process_is_never_replaced(bench: BloxStore, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Two writers of one plain store without the lock: the second never replaces the first's trace."""
    from blox_env.datasets.store import write

    st = BloxStore.create(tmp_path / "plain.zarr", index=bench.index)
    real = write.swap_in

    def racing(tmp: Path, final: Path, **kw: object) -> bool:
        other = BloxStore.open(tmp_path / "plain.zarr", mode="a")  # "another process" wins the race
        monkeypatch.setattr(write, "swap_in", real)
        other.write_trace("random-s0", RECORDS[:1], attrs={"by": "other"})
        other.close()
        return real(tmp, final, **kw)

    monkeypatch.setattr(write, "swap_in", racing)
    with pytest.raises(InvalidArgumentError, match="written by another process meanwhile"):
        st.write_trace("random-s0", RECORDS, attrs={"by": "me"})
    st.close()
    ro = open_store(tmp_path / "plain.zarr")
    assert ro.trace_attrs("random-s0") == {"length": 1, "by": "other"} and ro.trace_runs().keys() == {"random-s0"}
    assert not [p for p in (tmp_path / "plain.zarr" / "traces").iterdir() if p.name.startswith(".")]


def test_lock_timeout_is_checked(bench: BloxStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="lock timeout"):
        BloxStore.open_traces(tmp_path / "t.zarr", benchmark=bench, lock_timeout=float("nan"))
    assert not (tmp_path / "t.zarr").exists()
