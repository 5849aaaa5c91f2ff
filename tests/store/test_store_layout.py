"""The store owns its layout: round trips of every layout method, the on-disk paths, and no private reads outside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from blox_env import BloxStore, open_store
from blox_env.datasets.store import FlatWeights
from blox_env.datasets.store.blockwise import BlockwiseTables, finetune_run_name
from blox_env.datasets.store.location import bundled_mini_path
from blox_env.errors import ArchitectureNotFoundError, InvalidArgumentError, StoreCorruptError, StoreReadOnlyError
from blox_env.space import Arch

ROOT = Path(__file__).resolve().parents[2]
INDEX = [3, 17, 2025, 4051, 91_124]
TEACHER = Arch.from_index(2025)
WEIGHTS = FlatWeights(np.arange(7, dtype=np.float32) / 4, ["w", "b", "s"], [[2, 3], [], [0]],
                      ["float32", "float32", "int64"])


@pytest.fixture
def store(tmp_path: Path) -> BloxStore:
    st = BloxStore.create(tmp_path / "s.zarr", index=INDEX, name="layout")
    st.create_run("r", seeds=[0, 1], epochs=3, attrs={"dataset": "synthetic"})
    st.write_metric("r", "val_top1", np.full((2, 5, 3), 50.0))
    st.write_metric("r", "test_top1", np.arange(10.0).reshape(2, 5))
    return st


def _same(a: FlatWeights, b: FlatWeights) -> None:
    assert np.array_equal(a.values, b.values) and a.values.dtype == np.float32
    assert (a.names, a.shapes, a.dtypes) == (b.names, b.shapes, b.dtypes)


# ------------------------------------------------------------------------------ runs, static, latency
def test_runs_static_and_latency_round_trip(store: BloxStore, tmp_path: Path) -> None:
    assert store.run_attrs("r")["dataset"] == "synthetic" and store.run_attrs("absent") is None
    store.set_run_attrs("r", workers=["host:1", "host:2"])
    assert store.run_info("r").attrs["workers"] == ["host:1", "host:2"]  # the cached info is refreshed
    assert "encoding" in store.metric_attrs("r", "test_top1")
    with pytest.raises(InvalidArgumentError, match="no metric"):
        store.metric_attrs("r", "train_loss")
    store.write_static(params=[1, 2, 3, 4, 5], flops=[10, 20, 30, 40, 50])
    store.write_latency("cpu", [0.5, 0.25, np.nan, 1.0, 2.0])
    store.close()
    st = open_store(tmp_path / "s.zarr")
    assert st.get("params").tolist() == [1, 2, 3, 4, 5] and st.latency_devices == ["cpu"]
    assert np.array_equal(st.get("latency/cpu"), [0.5, 0.25, np.nan, 1.0, 2.0], equal_nan=True)
    assert st.get("test_top1", seed=1, run="r").tolist() == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert st.run_info("r").attrs["workers"] == ["host:1", "host:2"]
    with pytest.raises(StoreReadOnlyError):
        st.set_run_attrs("r", workers=[])


# ------------------------------------------------------------------------------ traces
def test_traces_round_trip(store: BloxStore, tmp_path: Path) -> None:
    records = [{"arch_index": 3, "cost": 1.5, "metrics": {"val_top1": 50.0}},
               {"arch_index": 17, "cost": 2.0, "metrics": {"val_top1": 60.0, "latency": 0.1}}]
    store.write_trace("random-s0", records, attrs={"agent": "random", "seed": 0})
    assert store.traces == ["random-s0"]
    store.close()
    st = open_store(tmp_path / "s.zarr")
    cols = st.read_trace("random-s0")
    assert cols["arch_index"].tolist() == [3.0, 17.0] and cols["cost"].tolist() == [1.5, 2.0]
    assert np.array_equal(cols["metrics/latency"], [np.nan, 0.1], equal_nan=True)
    assert st.trace_attrs("random-s0") == {"length": 2, "agent": "random", "seed": 0}
    assert (tmp_path / "s.zarr/traces/random-s0/metrics/val_top1/zarr.json").is_file()
    with pytest.raises(InvalidArgumentError, match="no trace"):
        st.read_trace("other")
    with pytest.raises(StoreReadOnlyError):
        st.write_trace("x", records)


# ------------------------------------------------------------------------------ blockwise/
def test_blockwise_tables_attribute_round_trip(store: BloxStore) -> None:
    assert store.read_blockwise_tables() is None
    store.write_blockwise_tables({"teachers": {"M1": {"index": 2025}}, "ft_epochs": [1, 2]})
    assert store.read_blockwise_tables() == {"teachers": {"M1": {"index": 2025}}, "ft_epochs": [1, 2]}


def test_teacher_round_trip_and_torn_write(store: BloxStore, tmp_path: Path) -> None:
    assert not store.has_teacher(TEACHER)
    with pytest.raises(ArchitectureNotFoundError):
        store.teacher_attrs(TEACHER)
    store.write_teacher(TEACHER, None, attrs={"train_time_s": 12.5})  # tables without weights (synthetic)
    assert store.teacher_attrs(TEACHER) == {"teacher_index": 2025, "train_time_s": 12.5}
    assert not store.has_teacher(TEACHER)
    store.write_teacher(TEACHER, WEIGHTS, attrs={"seed": 0})
    assert store.has_teacher(TEACHER) and store.has_teacher(TEACHER, complete=True)
    assert store.teacher_attrs(TEACHER) == {"teacher_index": 2025, "train_time_s": 12.5, "seed": 0}
    _same(store.read_teacher(TEACHER), WEIGHTS)
    store.close()
    path = tmp_path / "s.zarr"
    meta = zarr.open_group(path, mode="r")[f"blockwise/{TEACHER.hash}/teacher"]
    assert meta.dtype == np.float32 and dict(meta.attrs)["names"] == ["w", "b", "s"]  # flat float32 + names
    _same(open_store(path).read_teacher(TEACHER), WEIGHTS)

    other = Arch.from_index(4051)  # a write killed before the tensor names: present, not complete
    zarr.open_group(path, mode="a").require_group(f"blockwise/{other.hash}").create_array("teacher", shape=(4,),
                                                                                           dtype="float32")
    st = open_store(path)
    assert st.has_teacher(other) and not st.has_teacher(other, complete=True)
    with pytest.raises(StoreCorruptError):
        st.read_teacher(other)
    with pytest.raises(StoreReadOnlyError):
        st.write_teacher(TEACHER, WEIGHTS, attrs={})


def test_block_library_round_trip(store: BloxStore, tmp_path: Path) -> None:
    assert not store.has_block(TEACHER, "d1", 2, 9)
    with pytest.raises(ArchitectureNotFoundError):
        store.read_block(TEACHER, "d1", 2, 9)
    store.write_block(TEACHER, "d1", 2, 9, WEIGHTS, config={"epochs": 1}, attrs={"distill_loss": 0.5})
    assert store.has_block(TEACHER, "d1", 2, 9) and not store.has_block(TEACHER, "d1", 2, 10)
    _same(store.read_block(TEACHER, "d1", 2, 9), WEIGHTS)
    with pytest.raises(InvalidArgumentError, match="describe"):
        store.write_block(TEACHER, "d1", 0, 1, FlatWeights(np.zeros(3, np.float32), ["w"], [[2]], ["float32"]),
                          config={})
    store.close()
    group = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert dict(group[f"blockwise/{TEACHER.hash}/library/d1"].attrs) == {"config": {"epochs": 1}}
    assert dict(group[store.block_path(TEACHER, "d1", 2, 9)].attrs)["distill_loss"] == 0.5
    _same(open_store(tmp_path / "s.zarr").read_block(TEACHER, "d1", 2, 9), WEIGHTS)


def test_signatures_round_trip(store: BloxStore, tmp_path: Path) -> None:
    path = store.signatures_path(TEACHER, "d1")
    assert path == f"blockwise/{TEACHER.hash}/signatures/d1"
    empty = store.read_signatures(path)  # nothing distilled yet: all NaN
    assert set(empty) == {"distill_loss", "lana_delta", "distill_time_s"} and all(np.isnan(v).all()
                                                                                   for v in empty.values())
    with pytest.raises(StoreCorruptError):
        store.read_signatures(path, required=True)
    store.write_signature(path, 2, 9, {"distill_loss": 0.5, "lana_delta": -1.0, "distill_time_s": 3.0})
    store.write_signature(path, 0, 1, {"distill_loss": 0.25, "lana_delta": -2.0, "distill_time_s": 4.0})
    sig = store.read_signatures(path, required=True)
    assert sig["distill_loss"].shape == (3, 45) and np.isfinite(sig["distill_loss"]).sum() == 2
    assert (sig["distill_loss"][2, 9], sig["lana_delta"][0, 1], sig["distill_time_s"][2, 9]) == (0.5, -2.0, 3.0)
    whole = np.arange(135.0).reshape(3, 45)
    other = store.signatures_path(TEACHER, "d2")
    store.write_signatures(other, {"distill_loss": whole, "lana_delta": -whole, "distill_time_s": whole / 2})
    assert np.array_equal(open_store(tmp_path / "s.zarr").read_signatures(other)["lana_delta"], -whole)
    with pytest.raises(InvalidArgumentError, match="shape"):
        store.write_signatures(other, {"distill_loss": whole[:2]})
    with pytest.raises(InvalidArgumentError, match="signature must be one of"):
        store.write_signature(path, 0, 0, {"loss": 1.0})


def test_finetune_runs_nest_under_the_teacher(store: BloxStore, tmp_path: Path) -> None:
    run = finetune_run_name(TEACHER, "d1", 2, alpha=0.9, temperature=1.0, seed=0)
    store.create_run(run, seeds=[0], epochs=2, attrs={"kind": "finetune"})
    store.write_metric(run, "test_top1", np.arange(5.0)[None])
    store.close()
    st = open_store(tmp_path / "s.zarr")
    assert st.runs == ["r"] and st.run_info(run).attrs["kind"] == "finetune"  # not a top-level run
    assert st.get("test_top1", seed=0, run=run).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert (tmp_path / f"s.zarr/blockwise/{TEACHER.hash}/finetune/d1-ft2-a0.9-T1-s0/test_top1/zarr.json").is_file()


def test_bundled_mini_blockwise_tree_reads() -> None:
    path = bundled_mini_path()
    assert path is not None
    tables = BlockwiseTables(open_store(path))
    for name, teacher in tables.teachers.items():
        assert np.isfinite(tables.store.teacher_attrs(teacher)["train_time_s"])
        for e in tables.attrs["signature_groups"][name]:
            assert tables.signatures(name, int(e))["distill_loss"].shape == (3, 45)
    assert tables.matrix().shape == (5, 5)


# ------------------------------------------------------------------------------ nobody else reads the layout
def _sources() -> list[Path]:
    dirs = ("blox_env", "datasets", "predictors", "agents", "benchmarks", "examples", "tests")
    return [p for d in dirs for p in sorted((ROOT / d).rglob("*.py")) if ".venv" not in p.parts]


def test_no_module_outside_the_store_reads_its_zarr_group() -> None:
    needle = "._" + "group"  # spelled apart so this file does not match itself
    store_pkg = ROOT / "datasets" / "store"
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in _sources() if store_pkg not in p.parents
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if needle in line]
    assert not offenders, f"only datasets/store/ may touch the store's Zarr group: {offenders}"


def test_no_noqa_for_private_access() -> None:
    needle = "noqa: SLF" + "001"  # spelled apart so this file does not match itself
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in _sources()
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if needle in line]
    assert not offenders, f"ruff checks private access (SLF): fix the access, do not silence it: {offenders}"
