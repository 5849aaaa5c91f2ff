"""BloxStore: schema, encodings, the query API, vectorised get, locations, errors."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from blox_env.costs import macs_table, params_table
from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.datasets.store.encoding import Encoding, detect_encoding
from blox_env.datasets.store.location import zip_directory
from blox_env.errors import (
    ArchitectureNotFoundError,
    BloxError,
    InvalidArgumentError,
    StoreError,
    StoreNotFoundError,
    StoreReadOnlyError,
)
from blox_env.space import Arch

S, E = 2, 12


def _values(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    start = rng.integers(500, 2500, (S, n, 1))
    val = np.minimum(start + np.cumsum(rng.integers(-20, 120, (S, n, E)), axis=2), 5000) * 100 / 5000
    return {
        "val_top1": val,
        "val_loss": np.round(rng.uniform(0.5, 4.6, (S, n, E)), 6),
        "train_top1": np.round(rng.integers(0, 45000, (S, n, E)) * 100 / 45000, 3),
        "test_top1": rng.integers(4000, 8000, (S, n)) * 100 / 10000,
        "test_loss": np.round(rng.uniform(0.8, 2.5, (S, n)), 6),
        "train_time_s": rng.integers(1000, 5000, (S, n)).astype(float),
    }


def _make(location: str | Path, index: np.ndarray, values: dict[str, np.ndarray]) -> BloxStore:
    store = BloxStore.create(location, index=index, name="test", provenance={"by": "tests"})
    store.create_run("r", seeds=[0, 7], epochs=E, attrs={"dataset": "synthetic"})
    for metric, v in values.items():
        store.write_metric("r", metric, v)
    store.write_static(params=params_table()[index], flops=macs_table()[index])
    store.write_latency("cpu", np.round(np.linspace(0.004, 0.03, len(index)), 6))
    return store


@pytest.fixture(scope="module")
def sub_store() -> tuple[BloxStore, np.ndarray, dict[str, np.ndarray]]:
    index = np.sort(np.random.default_rng(1).choice(91125, 5000, replace=False))  # 2 curve chunks
    values = _values(len(index))
    url = f"memory://store-{uuid.uuid4().hex}"
    _make(url, index, values).close()
    return open_store(url, rng=0), index, values


def test_queries_match_written_values(sub_store) -> None:
    store, index, v = sub_store
    for row in (0, 1, 4095, 4096, 4999):
        arch = Arch.from_index(int(index[row]))
        assert store.val_acc(arch, seed=0) == pytest.approx(v["val_top1"][0, row].max(), abs=1e-9)
        assert store.val_acc(arch, epoch=3, seed=7) == pytest.approx(v["val_top1"][1, row, :3].max(), abs=1e-9)
        assert store.val_acc(arch, epoch=5, best=False, seed=0) == pytest.approx(v["val_top1"][0, row, 4], abs=1e-9)
        assert store.test_acc(arch, seed=7) == v["test_top1"][1, row]
        assert store.test_loss(arch, seed=0) == v["test_loss"][0, row]
        assert store.val_loss(arch, epoch=2, seed=0) == v["val_loss"][0, row, 1]
        assert store.val_loss(arch, seed=0, best=True) == v["val_loss"][0, row].min()
        assert store.train_acc(arch, seed=7) == pytest.approx(v["train_top1"][1, row, -1], abs=1e-3)
        assert store.train_time(arch, seed=0) == v["train_time_s"][0, row]
        assert store.train_time(arch, epoch=3, seed=0) == pytest.approx(v["train_time_s"][0, row] * 3 / E)
        assert store.test_acc(arch, seed="mean") == pytest.approx(v["test_top1"][:, row].mean())
        assert store.params(arch) == params_table()[index[row]]
        assert store.flops(arch) == macs_table()[index[row]]
        assert store.latency(arch, "cpu") == store.latency(arch)["cpu"]


def test_exact_decoding_of_rounded_values(sub_store) -> None:
    store, index, v = sub_store
    got = store.get("val_top1", index, seed=0, best=False)
    assert np.array_equal(got, v["val_top1"][0, :, -1])  # exact, not approximately
    assert np.array_equal(store.get("val_loss", index, seed=7, epoch=4), v["val_loss"][1, :, 3])


def test_vectorised_get_equals_single_queries(sub_store) -> None:
    store, index, _ = sub_store
    rng = np.random.default_rng(3)
    pick = rng.permutation(index)[:300]
    archs = [Arch.from_index(int(i)) for i in pick]
    got = store.get("val_top1", pick, seed=7, epoch=9)
    assert np.array_equal(got, [store.val_acc(a, epoch=9, seed=7) for a in archs])
    assert np.array_equal(store.get("val_top1", archs, seed=7, epoch=9), got)
    assert np.array_equal(store.get("params", pick), [store.params(a) for a in archs])
    means = store.get("test_top1", pick, seed="mean")
    assert np.allclose(means, [store.test_acc(a, seed="mean") for a in archs])
    assert store.get("val_top1").shape == (len(index),)


def test_random_seed_is_reproducible_and_uses_both_seeds(sub_store) -> None:
    store, index, v = sub_store
    arch = Arch.from_index(int(index[10]))
    a = [store.test_acc(arch, rng=np.random.default_rng(5)) for _ in range(3)]
    assert len(set(a)) == 1
    seen = {store.test_acc(arch, rng=np.random.default_rng(s)) for s in range(40)}
    assert seen == set(v["test_top1"][:, 10].tolist())
    per_model = store.get("test_top1", index[:500], rng=np.random.default_rng(0))
    from_seed0 = per_model == v["test_top1"][0, :500]
    from_seed1 = per_model == v["test_top1"][1, :500]
    assert np.all(from_seed0 | from_seed1) and from_seed0.mean() > 0.3 and from_seed1.mean() > 0.3


def test_full_info_contains_everything(sub_store) -> None:
    store, index, v = sub_store
    arch = Arch.from_index(int(index[42]))
    info = store.full_info(arch, seed=7)
    assert info["index"] == arch.index and info["hash"] == arch.hash and info["seed"] == 7
    assert info["val_top1"] == v["val_top1"][1, 42].tolist()
    assert info["val_top1_best"] == v["val_top1"][1, 42].max()
    assert info["test_top1"] == v["test_top1"][1, 42]
    assert set(info["latency"]) == {"cpu"} and info["params"] == params_table()[arch.index]


def test_membership_iteration_and_missing_models(sub_store) -> None:
    store, index, _ = sub_store
    assert len(store) == 5000
    assert [a.index for a in store][:5] == index[:5].tolist()
    outside = next(i for i in range(91125) if i not in set(index.tolist()))
    assert Arch.from_index(int(index[3])) in store and outside not in store and "garbage" not in store
    with pytest.raises(ArchitectureNotFoundError, match="not in store") as info:
        store.val_acc(outside, seed=0)
    assert isinstance(info.value, KeyError)
    with pytest.raises(ArchitectureNotFoundError):
        store.get("val_top1", [int(index[0]), outside])


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda s, a: s.get("val_acc", [a]), "unknown metric 'val_acc': allowed .*val_top1"),
        (lambda s, a: s.val_acc(a, epoch=0), "epoch must be an integer in 1..12"),
        (lambda s, a: s.val_acc(a, epoch=13), "epoch"),
        (lambda s, a: s.val_acc(a, seed=3), r"seed must be one of \[0, 7\]"),
        (lambda s, a: s.val_acc(a, seed="median"), "seed must be"),
        (lambda s, a: s.latency(a, "gpu"), "unknown device 'gpu': allowed cpu"),
        (lambda s, a: s.run_info("other"), "unknown run 'other'"),
        (lambda s, a: s.curve("test_top1", a), "not a per-epoch metric"),
    ],
)
def test_bad_queries_raise_clear_errors(sub_store, call, needle: str) -> None:
    store, index, _ = sub_store
    with pytest.raises(InvalidArgumentError, match=needle) as info:
        call(store, int(index[0]))
    assert isinstance(info.value, ValueError) and isinstance(info.value, BloxError)


def test_read_only_and_missing_values_are_nan(tmp_path: Path) -> None:
    index = np.arange(0, 91125, 911)
    store = _make(tmp_path / "s.zarr", index, _values(len(index)))
    store.allocate_metric("r", "val_top5", encoding=Encoding("count", "uint16", denominator=5000, delta=True),
                          per_epoch=True)
    store.write_rows("r", "val_top5", [int(index[2])], [np.full(E, 80.0)], seed=7)
    ro = open_store(tmp_path / "s.zarr")
    assert np.isnan(ro.val_top5(int(index[1]), seed=7))
    assert ro.val_top5(int(index[2]), seed=7) == 80.0
    assert np.isnan(ro.val_top5(int(index[2]), seed=0, best=True))
    with pytest.raises(StoreReadOnlyError, match="read-only"):
        ro.write_latency("gpu", np.zeros(len(index)))
    with pytest.raises(InvalidArgumentError, match="open mode"):
        BloxStore.open(tmp_path / "s.zarr", mode="w")
    with pytest.raises(InvalidArgumentError, match="exists"):
        BloxStore.create(tmp_path / "s.zarr", index=index)


def test_zip_store_reads_identically(tmp_path: Path) -> None:
    index = np.arange(100, 400)
    values = _values(len(index), seed=4)
    _make(tmp_path / "d.zarr", index, values).close()
    zip_directory(tmp_path / "d.zarr", tmp_path / "d.zip")
    a, b = open_store(tmp_path / "d.zarr"), open_store(tmp_path / "d.zip")
    for metric in values:
        assert np.array_equal(a.get(metric, index, seed=7), b.get(metric, index, seed=7), equal_nan=True)
    assert b.attrs["provenance"] == {"by": "tests"} and b.attrs["search_space"]["n_blocks"] == 45


def test_create_validates_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="sorted"):
        BloxStore.create(tmp_path / "a.zarr", index=[5, 3])
    with pytest.raises(BloxError, match="outside"):
        BloxStore.create(tmp_path / "b.zarr", index=[0, 91125])
    store = BloxStore.create(tmp_path / "c.zarr", index=[1, 2, 3])
    with pytest.raises(InvalidArgumentError, match="seeds"):
        store.create_run("x", seeds=[1, 1], epochs=3)
    store.create_run("x", seeds=[0], epochs=3)
    with pytest.raises(InvalidArgumentError, match="shape"):
        store.write_metric("x", "val_top1", np.zeros((1, 2, 3)))
    with pytest.raises(InvalidArgumentError, match="one value per model"):
        store.write_static(params=[1, 2], flops=[1, 2])


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError) as info:
        open_store(tmp_path / "nothing.zarr")
    assert isinstance(info.value, FileNotFoundError)
    import zarr

    zarr.open_group(tmp_path / "other.zarr", mode="w").attrs["format"] = "something"
    with pytest.raises(StoreError, match="not a blox store"):
        open_store(tmp_path / "other.zarr")


def test_default_store_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLOX_HOME", str(tmp_path))
    monkeypatch.setattr("blox_env.datasets.store.location.bundled_mini_path", lambda: None)
    with pytest.raises(StoreNotFoundError, match="blox data import"):
        open_store()
    _make(tmp_path / "stores" / "blox.zarr", np.arange(10), _values(10)).close()
    assert len(open_store()) == 10 and len(open_store("blox")) == 10


def test_encodings_round_trip_exactly() -> None:
    rng = np.random.default_rng(0)
    for n in (45000, 5000, 10000):
        name = {45000: "train_top1", 5000: "val_top5", 10000: "test_top1"}[n]
        vals = np.round(rng.integers(0, n, 1000) * 100 / n, 3)
        enc = detect_encoding(name, vals)
        assert enc.kind == "count" and enc.denominator == n
        assert np.allclose(enc.decode(enc.encode(vals)), vals, atol=5e-4, rtol=0)
    losses = np.round(rng.uniform(0, 16, 1000), 6)
    enc = detect_encoding("val_loss", losses)
    assert enc.kind == "fixed" and np.array_equal(enc.decode(enc.encode(losses)), losses)
    assert detect_encoding("val_loss", np.array([-1.0, 2.0])).kind == "raw"
    curves = np.where(rng.random((4, 5, 6)) < 0.2, np.nan, rng.integers(0, 5000, (4, 5, 6)) / 50)
    enc = detect_encoding("val_top1", curves)
    assert enc.delta
    assert np.array_equal(enc.decode(enc.unpack(enc.pack(curves))), curves, equal_nan=True)
    with pytest.raises(StoreError, match="unknown encoding"):
        Encoding("zip", "uint8")
