"""Store integrity: damaged stores never read as plausible numbers.

Faults are injected into the files of a real store on disk: deleted, truncated
and garbage chunks; empty, invalid and incomplete ``zarr.json``; edited shapes;
a value changed through plain Zarr so that it still decodes. A format-1 store is
written here with plain Zarr as the old writer laid it out (fill 0, plain
differences), independently of the project's writer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner
from zarr.codecs import BloscCodec

from blox_env.cli.root import app
from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.datasets.store.encoding import Encoding
from blox_env.datasets.store.integrity import StoreDamageWarning, record_checksums
from blox_env.datasets.store.verify import verify_store
from blox_env.datasets.synthetic import synthetic_store
from blox_env.errors import StoreCorruptError
from blox_env.space import SubSpace

SPACE = SubSpace(((0, 9, 30), (1, 12, 36), (2, 21, 44)))  # 27 models: one chunk per seed and array
RUN = "synthetic"
# (array, chunk key of seed 0 / the only chunk, how to read it as float64 for every row of seed 0)
KINDS = {
    "val_top1": (f"runs/{RUN}/val_top1", "c/0/0/0", lambda st: st.get("val_top1", seed=0, best=False, epoch=5)),
    "val_top1_best": (f"runs/{RUN}/val_top1", "c/0/0/0", lambda st: st.get("val_top1", seed=0, best=True)),
    "test_top1": (f"runs/{RUN}/test_top1", "c/0/0", lambda st: st.get("test_top1", seed=0)),
    "train_time_s": (f"runs/{RUN}/train_time_s", "c/0/0", lambda st: st.get("train_time_s", seed=0)),
    "params": ("static/params", "c/0", lambda st: st.get("params")),
    "latency": ("latency/cpu", "c/0", lambda st: st.get("latency/cpu")),
    "worker": (f"runs/{RUN}/worker", "c/0/0", lambda st: st.get("worker", seed=0)),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("integrity") / "store.zarr"
    st = synthetic_store(path, space=SPACE, seeds=(0, 1), epochs=12)
    st.allocate_metric(RUN, "worker", encoding=Encoding("raw", "int32"), per_epoch=False)
    st.write_rows(RUN, "worker", st.index[:20], np.arange(20), seed=0)
    st.write_env({"gpu": [[f"gpu{i % 3}" for i in range(27)], ["x"] * 27]}, seeds=[0, 1])
    st.close()
    return path


@pytest.fixture
def store_path(pristine: Path, tmp_path: Path) -> Path:
    """A private copy of the pristine store, free to damage."""
    dest = tmp_path / "store.zarr"
    shutil.copytree(pristine, dest)
    return dest


def _open(path: Path) -> BloxStore:
    return open_store(path, rng=0)


# ---------------------------------------------------------------------- deleted chunks
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_deleted_chunk_reads_missing_and_is_reported(store_path: Path, kind: str) -> None:
    path, key, read = KINDS[kind]
    before = read(_open(store_path))
    assert np.isfinite(before).any()
    (store_path / path / key).unlink()
    st = _open(store_path)
    with pytest.warns(StoreDamageWarning, match=key):
        after = read(st)
    assert np.isnan(after).all()  # never 0, never another seed's or model's value
    report = verify_store(store_path)
    assert not report.ok and any(path in e and key in e for e in report.errors)


def test_deleted_curve_chunk_leaves_other_seed_and_single_queries(store_path: Path) -> None:
    seed1 = _open(store_path).get("val_top1", seed=1)
    (store_path / f"runs/{RUN}/val_top1/c/0/0/0").unlink()
    st = _open(store_path)
    model = int(st.index[4])
    with pytest.warns(StoreDamageWarning):
        assert np.isnan(st.val_acc(model, seed=0))
    assert np.isnan(st.curve("val_top1", model, seed=0)).all()
    np.testing.assert_array_equal(st.get("val_top1", seed=1), seed1)
    assert np.isfinite(st.test_acc(model, seed=0))  # other arrays are untouched
    assert np.isnan(st.full_info(model, seed=0)["val_top1_best"])


def test_deleted_static_chunk_makes_params_raise(store_path: Path) -> None:
    (store_path / "static/params/c/0").unlink()
    st = _open(store_path)
    with pytest.warns(StoreDamageWarning), pytest.raises(StoreCorruptError, match="static/params.*missing"):
        st.params(int(st.index[0]))
    with pytest.warns(StoreDamageWarning):
        assert _open(store_path).full_info(int(st.index[0]), seed=0)["params"] is None


def test_deleted_env_chunk_reads_empty_and_is_reported(store_path: Path) -> None:
    assert _open(store_path).env_info(int(_open(store_path).index[1]), seed=0) == {"gpu": "gpu1"}
    (store_path / "env/gpu/c/0/0").unlink()
    st = _open(store_path)
    with pytest.warns(StoreDamageWarning):
        assert st.env_info(int(st.index[1]), seed=0) == {"gpu": ""}
    assert any("env/gpu" in e for e in verify_store(store_path).errors)


def test_deleted_index_chunk_raises(store_path: Path) -> None:
    (store_path / "index/c/0").unlink()
    with pytest.raises(StoreCorruptError, match=r"'index'.*c/0.*missing.*blox data import"):
        _open(store_path)
    assert any("index" in e for e in verify_store(store_path).errors)


def _rewrite_index(path: Path, values: np.ndarray, dtype: str = "int32") -> None:
    grp = zarr.open_group(path, mode="r+")
    del grp["index"]
    arr = grp.create_array("index", shape=values.shape, dtype=dtype, chunks=values.shape or (1,))
    arr[...] = values


@pytest.mark.parametrize("case", ["unsorted", "duplicate", "out_of_range", "negative", "float", "2d", "short"])
def test_invalid_index_raises(store_path: Path, case: str) -> None:
    idx = np.asarray(_open(store_path).index)
    bad = {
        "unsorted": idx[::-1].copy(), "duplicate": np.r_[idx[:-1], idx[-2]], "out_of_range": np.r_[idx[:-1], 91125],
        "negative": np.r_[-1, idx[1:]], "float": idx.astype(float), "2d": idx.reshape(3, 9), "short": idx[:20],
    }[case]
    _rewrite_index(store_path, bad, "float64" if case == "float" else "int32")
    with pytest.raises(StoreCorruptError, match="'index'"):
        _open(store_path)
    assert not verify_store(store_path).ok


# ---------------------------------------------------------------------- garbage and truncation
@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
@pytest.mark.parametrize("kind", ["val_top1", "test_top1", "params", "latency"])
def test_damaged_chunk_raises_naming_array_and_chunk(store_path: Path, kind: str, damage: str) -> None:
    path, key, read = KINDS[kind]
    chunk = store_path / path / key
    data = chunk.read_bytes()
    chunk.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x13\x37garbage" * 9, "empty": b""}[damage])
    with pytest.raises(StoreCorruptError) as info:
        read(_open(store_path))
    msg = str(info.value)
    assert path in msg and key in msg and "blox data import" in msg and "blox build" in msg
    assert verify_store(store_path).ok  # structure intact: only decoding finds it ...
    deep = verify_store(store_path, deep=True)
    assert not deep.ok and any(path in e and key in e for e in deep.errors)  # ... which --deep does


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_index_chunk_raises(store_path: Path, damage: str) -> None:
    chunk = store_path / "index/c/0"
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"garbage" * 9)
    with pytest.raises(StoreCorruptError, match=r"'index'"):
        _open(store_path)
    assert not verify_store(store_path).ok


# ---------------------------------------------------------------------- metadata
@pytest.mark.parametrize("content", ["", "{not json", '{"zarr_format": 3, "node_type": "array"}', "[]"])
@pytest.mark.parametrize("node", ["", "index", "runs", f"runs/{RUN}", f"runs/{RUN}/val_top1", "static/params"])
def test_damaged_metadata_raises(store_path: Path, node: str, content: str) -> None:
    meta = store_path / node / "zarr.json"
    meta.write_text(content)
    with pytest.raises(StoreCorruptError) as info:
        st = _open(store_path)
        st.get("val_top1", seed=0)
        st.params(int(st.index[0]))
    assert "blox data import" in str(info.value)
    report = verify_store(store_path)
    assert not report.ok and any(f"{node}/zarr.json".lstrip("/") in e or repr(node) in e for e in report.errors)


def test_deleted_run_metadata_raises(store_path: Path) -> None:
    (store_path / f"runs/{RUN}/zarr.json").unlink()
    with pytest.raises(StoreCorruptError, match=f"runs/{RUN}"):
        _open(store_path).get("val_top1")
    assert any("unreachable" in e for e in verify_store(store_path).errors)


def test_deleted_array_metadata_raises(store_path: Path) -> None:
    (store_path / f"runs/{RUN}/val_top1/zarr.json").unlink()
    (store_path / "runs/empty_folder").mkdir()  # an empty folder (left by a deletion) is not damage
    with pytest.raises(StoreCorruptError, match=f"runs/{RUN}/val_top1/zarr.json is missing"):
        _open(store_path).get("val_top1")
    report = verify_store(store_path)
    assert any(f"runs/{RUN}/val_top1" in e and "missing" in e for e in report.errors)
    assert not any("empty_folder" in e for e in report.errors)


def _edit_shape(store_path: Path, path: str, shape: list[int]) -> None:
    meta_path = store_path / path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["shape"] = shape
    meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize(("path", "shape", "read"), [
    (f"runs/{RUN}/val_top1", [2, 20, 12], lambda st: st.val_acc(int(st.index[25]), seed=0)),
    (f"runs/{RUN}/val_top1", [2, 27, 10], lambda st: st.get("val_top1", seed=0)),
    (f"runs/{RUN}/test_top1", [1, 27], lambda st: st.get("test_top1", seed=1)),
    ("static/params", [30], lambda st: st.get("params")),
    ("latency/cpu", [20], lambda st: st.latency(int(st.index[26]), "cpu")),
])
def test_edited_shape_raises(store_path: Path, path: str, shape: list[int], read: object) -> None:
    _edit_shape(store_path, path, shape)
    with pytest.raises(StoreCorruptError, match=path):
        read(_open(store_path))  # type: ignore[operator]
    report = verify_store(store_path)
    assert any(path in e and "shape" in e for e in report.errors)


def test_edited_index_shape_raises(store_path: Path) -> None:
    _edit_shape(store_path, "index", [20])
    with pytest.raises(StoreCorruptError, match="27"):
        _open(store_path)


# ---------------------------------------------------------------------- fill values
def test_fill_value_is_missing_sentinel_for_every_array(store_path: Path) -> None:
    """Read with plain Zarr: an absent chunk of every data array unpacks to the missing sentinel."""
    grp = zarr.open_group(store_path, mode="r")
    assert grp["index"].fill_value == -1
    for path, *_ in KINDS.values():
        arr = grp[path]
        enc = Encoding.from_attrs(dict(arr.attrs)["encoding"])
        fill = np.full(arr.chunks, arr.fill_value, dtype=arr.dtype)
        assert np.isnan(enc.decode(enc.unpack(fill))).all(), path


def test_all_missing_chunks_are_written(tmp_path: Path) -> None:
    st = BloxStore.create(tmp_path / "s.zarr", index=np.arange(10))
    st.create_run("r", seeds=[0], epochs=3)
    st.allocate_metric("r", "test_top1", encoding=Encoding("count", "uint16", denominator=10000), per_epoch=False)
    st.allocate_metric("r", "val_top1", encoding=Encoding("count", "uint16", denominator=5000, delta=True),
                       per_epoch=True)
    st.close()
    st = BloxStore.open(tmp_path / "s.zarr", mode="a")
    st.write_rows("r", "test_top1", [3], [np.nan], seed=0)  # still all missing: the chunk must stay
    st.close()
    assert (tmp_path / "s.zarr/runs/r/test_top1/c/0/0").is_file()
    assert (tmp_path / "s.zarr/runs/r/val_top1/c/0/0/0").is_file()
    st = open_store(tmp_path / "s.zarr")
    assert np.isnan(st.get("val_top1", seed=0)).all() and np.isnan(st.get("test_top1", seed=0)).all()
    assert verify_store(st, deep=True).ok


def _legacy_store(path: Path) -> np.ndarray:
    """A format-1 store as the old writer laid it out (plain Zarr): curves with fill 0 and plain differences."""
    index = np.array([0, 5, 77, 2025])
    counts = np.array([[[100, 900, 2000], [50, 60, 70], [4000, 4100, 4050], [10, 10, 11]]], dtype=np.uint16)
    grp = zarr.open_group(path, mode="w")
    grp.create_array("index", shape=(4,), dtype="int32", chunks=(4,))[:] = index
    grp.attrs.update({"format": "blox-store", "format_version": 1, "name": "legacy", "default_run": "r"})
    run = grp.require_group("runs/r")
    run.attrs.update({"seeds": [0], "epochs": 3})
    disk = counts.copy()
    disk[..., 1:] = np.diff(counts, axis=-1)
    blosc = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
    arr = run.create_array("val_top1", shape=(1, 4, 3), chunks=(1, 2, 3), dtype="uint16", fill_value=0,
                           compressors=[blosc])
    arr.attrs["encoding"] = {"kind": "count", "dtype": "uint16", "denominator": 5000, "delta": True}
    arr[...] = disk
    return counts.astype(float) * 100 / 5000


def test_legacy_format1_store_reads_and_deleted_chunk_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "legacy.zarr"
    want = _legacy_store(path)
    np.testing.assert_allclose(open_store(path).get("val_top1", seed=0, epoch=3, best=False), want[0, :, 2])
    (path / "runs/r/val_top1/c/0/1/0").unlink()  # models 77 and 2025: fill 0 would read as 0 %
    st = open_store(path)
    with pytest.warns(StoreDamageWarning):
        got = st.get("val_top1", seed=0, epoch=3, best=False)
    np.testing.assert_allclose(got[:2], want[0, :2, 2])
    assert np.isnan(got[2:]).all()
    assert any("val_top1" in e and "c/0/1/0" in e for e in verify_store(path).errors)


def test_legacy_truncated_blosc_chunk_raises(tmp_path: Path) -> None:
    """A small blosc chunk is stored uncompressed: truncated, it used to decode past its end into numbers."""
    path = tmp_path / "legacy.zarr"
    _legacy_store(path)
    chunk = path / "runs/r/val_top1/c/0/0/0"
    chunk.write_bytes(chunk.read_bytes()[:20])
    with pytest.raises(StoreCorruptError, match="c/0/0/0.*truncated"):
        open_store(path).get("val_top1", seed=0)
    assert not verify_store(path, deep=True).ok


# ---------------------------------------------------------------------- checksums
def test_checksums_recorded_on_close(pristine: Path) -> None:
    st = open_store(pristine)
    sums = st.attrs["checksums"]
    assert {"index", f"runs/{RUN}/val_top1", f"runs/{RUN}/worker", "static/params", "latency/cpu", "env/gpu"} <= set(
        sums)
    report = verify_store(pristine, deep=True)
    assert report.ok and report.verified == len(sums) and not report.warnings


def test_checksum_definition_matches_independent_computation(pristine: Path) -> None:
    """sha256 over (chunk key, little-endian decoded chunk values) of every chunk, in grid order; ``meta``:
    sha256 of the array's zarr.json as canonical JSON (sorted keys, no spaces)."""
    arr = zarr.open_array(pristine, path=f"runs/{RUN}/test_top1", mode="r")
    h = hashlib.sha256()
    for seed in range(2):
        h.update(f"runs/{RUN}/test_top1/c/{seed}/0".encode())
        h.update(np.asarray(arr[seed : seed + 1], dtype="<u2").tobytes())
    doc = json.loads((pristine / f"runs/{RUN}/test_top1/zarr.json").read_text())
    meta = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    entry = open_store(pristine).attrs["checksums"][f"runs/{RUN}/test_top1"]
    assert entry == {"sha256": h.hexdigest(), "shape": [2, 27], "dtype": "uint16", "chunks": 2, "meta": meta}


def test_verify_deep_detects_a_changed_value_that_still_decodes(store_path: Path) -> None:
    arr = zarr.open_array(store_path, path=f"runs/{RUN}/test_top1", mode="r+")
    arr[1, 3] = int(arr[1, 3]) + 1  # one image more: a perfectly valid, plausible count
    assert verify_store(store_path).ok
    report = verify_store(store_path, deep=True)
    assert not report.ok and any("test_top1" in e and "sha256" in e for e in report.errors)
    result = CliRunner().invoke(app, ["data", "verify", str(store_path), "--deep"])
    assert result.exit_code == 1 and "test_top1" in result.output
    assert CliRunner().invoke(app, ["data", "verify", str(store_path)]).exit_code == 0


def test_deleted_array_in_checksum_table_is_reported(store_path: Path) -> None:
    shutil.rmtree(store_path / "latency/cpu")
    report = verify_store(store_path)
    assert any("latency/cpu" in e and "missing" in e for e in report.errors)


def test_recording_every_checksum_drops_entries_of_removed_arrays(store_path: Path) -> None:
    """Removing an array by hand, then recording every checksum, leaves a store that verifies."""
    shutil.rmtree(store_path / "latency/cpu")
    st = BloxStore.open(store_path, mode="a")
    sums = record_checksums(st)
    st.close()
    assert "latency/cpu" not in sums and "static/params" in sums
    assert verify_store(store_path, deep=True).ok


def test_write_drops_checksum_until_close(store_path: Path) -> None:
    st = BloxStore.open(store_path, mode="a")
    st.write_rows(RUN, "test_top1", [int(st.index[0])], [55.5], seed=0)
    # a crash now must leave the array unchecked, never falsely damaged
    assert f"runs/{RUN}/test_top1" not in open_store(store_path).attrs["checksums"]
    assert verify_store(store_path, deep=True).ok
    st.close()
    assert f"runs/{RUN}/test_top1" in open_store(store_path).attrs["checksums"]
    assert verify_store(store_path, deep=True).ok


def test_failed_with_block_records_no_checksum(store_path: Path) -> None:
    with pytest.raises(RuntimeError), BloxStore.open(store_path, mode="a") as st:
        st.write_rows(RUN, "test_top1", [int(st.index[0])], [55.5], seed=0)
        raise RuntimeError("crash mid-build")
    report = verify_store(store_path, deep=True)
    assert report.ok and any("no checksum" in w for w in report.warnings)
    st = BloxStore.open(store_path, mode="a")  # the next session that writes and closes checks it again
    st.write_rows(RUN, "train_time_s", [int(st.index[1])], [12.0], seed=1)
    st.close()
    report = verify_store(store_path, deep=True)
    assert report.ok and not report.warnings
    st = BloxStore.open(store_path, mode="a")
    assert set(record_checksums(st)) == set(st.attrs["checksums"])
    st.close()


# ---------------------------------------------------------------------- CLI
def test_info_exits_nonzero_on_deleted_chunk(store_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["data", "info", str(store_path)]).exit_code == 0
    (store_path / f"runs/{RUN}/val_top1/c/1/0/0").unlink()
    result = runner.invoke(app, ["data", "info", str(store_path)])
    assert result.exit_code == 1
    assert "c/1/0/0" in result.output and "DAMAGED" in result.output


def test_verify_cli_lists_every_problem(store_path: Path) -> None:
    (store_path / f"runs/{RUN}/test_top1/c/0/0").unlink()
    (store_path / "latency/cpu/c/0").unlink()
    result = CliRunner().invoke(app, ["data", "verify", str(store_path)])
    assert result.exit_code == 1
    assert "test_top1" in result.output and "latency/cpu" in result.output and "2 problem(s)" in result.output
