"""Importing official-format release folders: identical stores from all formats, exact values, atomicity."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from blox_env.cli.root import app
from blox_env.datasets.release.importer import import_release
from blox_env.datasets.release.reader import read_release_file
from blox_env.datasets.release.writer import synthetic_release, write_release_file
from blox_env.datasets.store.core import open_store
from blox_env.errors import InvalidArgumentError, ReleaseFormatError, StoreNotFoundError
from blox_env.hashes import hash_to_index

N, E, SEEDS = 40, 200, (0, 1)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for fmt in ("custom", "pickle", "csv"):
        folder = tmp_path_factory.mktemp(f"release-{fmt}")
        synthetic_release(folder, n_models=N, epochs=E, seeds=SEEDS, fmt=fmt, rng_seed=3)
        out[fmt] = folder
    return out


@pytest.fixture(scope="module")
def stores(releases: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("imported")
    return {fmt: import_release(folder, out=base / f"{fmt}.zarr", progress=False, allow_partial=True)
            for fmt, folder in releases.items()}


def _all_arrays(path: Path) -> dict[str, np.ndarray]:
    import zarr

    group = zarr.open_group(path, mode="r")
    out = {}

    def walk(g, prefix: str) -> None:
        for name, arr in g.arrays():
            out[prefix + name] = arr[...]
        for name, sub in g.groups():
            walk(sub, prefix + name + "/")

    walk(group, "")
    return out


def test_all_formats_import_to_identical_stores(stores: dict[str, Path]) -> None:
    ref = _all_arrays(stores["custom"])
    assert {"runs/cifar100/val_top1", "runs/cifar100/train_loss", "static/params", "latency/cpu",
            "env/gpu"} <= set(ref)
    for fmt in ("pickle", "csv"):
        other = _all_arrays(stores[fmt])
        assert set(other) == set(ref)
        for key in ref:
            assert np.array_equal(ref[key], other[key]), (fmt, key)


def test_values_are_exact_through_every_query(releases: dict[str, Path], stores: dict[str, Path]) -> None:
    folder = releases["pickle"]
    store = open_store(stores["csv"])
    assert len(store) == N and store.run_info().seeds == SEEDS and store.run_info().epochs == E
    info = read_release_file(folder / "blox-info.pickle")
    for k, h in enumerate(info.columns["model_hash"][:10]):
        assert store.params(h) == info.columns["params"][k] and store.flops(h) == info.columns["flops"][k]
        assert store.full_info(h, seed=0)["arch_vec"] == info.columns["arch_vec"][k]
    for seed in SEEDS:
        base = read_release_file(folder / f"blox-base-{seed}.pickle")
        ext = read_release_file(folder / f"blox-ext-{seed}.pickle")
        for k, h in enumerate(base.columns["model_hash"][:8]):
            curve = base.columns["val_top1"][k]
            assert store.val_acc(h, seed=seed) == curve.max()
            assert store.val_acc(h, epoch=17, best=False, seed=seed) == curve[16]
            assert store.test_acc(h, seed=seed) == base.columns["test_top1"][k]
            assert store.train_time(h, seed=seed) == base.columns["train_time_s"][k]
            assert np.array_equal(store.curve("val_top1", h, seed=seed), curve)
        for k, h in enumerate(ext.columns["model_hash"][:8]):
            assert store.train_loss(h, epoch=5, seed=seed) == ext.columns["train_loss"][k][4]
            assert store.val_loss(h, seed=seed) == ext.columns["val_loss"][k][-1]
            assert store.val_top5(h, seed=seed) == ext.columns["val_top5"][k][-1]
            assert store.train_top5(h, epoch=3, seed=seed) == ext.columns["train_top5"][k][2]
            assert store.test_loss(h, seed=seed) == ext.columns["test_loss"][k]
            assert store.test_top5(h, seed=seed) == ext.columns["test_top5"][k]
            # train accuracies are counts of 45,000 images, decoded to the files' 3 decimals exactly
            assert store.train_acc(h, epoch=9, seed=seed) == ext.columns["train_top1"][k][8]
        env = read_release_file(folder / f"blox-env-{seed}.pickle")
        h = env.columns["model_hash"][0]
        assert store.env_info(h, seed)["gpu"] == env.columns["gpu"][0]
    bench = read_release_file(folder / "blox-bench-cpu.pickle")
    for k, h in enumerate(bench.columns["model_hash"][:5]):
        assert store.latency(h, "cpu") == bench.columns["latency"][k]
    # vectorised get agrees with the file for every model
    base = read_release_file(folder / "blox-base-1.pickle")
    idx = np.array([hash_to_index(h) for h in base.columns["model_hash"]])
    assert np.array_equal(store.get("test_top1", idx, seed=1), base.columns["test_top1"])
    prov = store.attrs["provenance"]
    assert prov["source"] == "official BLOX release" and len(prov["files"]) == 1 + 3 * len(SEEDS) + 1


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_failed_import_leaves_nothing(releases: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(releases["custom"], tmp_path / "rel")
    data = (folder / "blox-base-1.blox").read_bytes()
    (folder / "blox-base-1.blox").write_bytes(data[: len(data) - 50])  # truncated stream
    out = tmp_path / "out" / "store.zarr"
    with pytest.raises(ReleaseFormatError, match="blox-base-1.blox"):
        import_release(folder, out=out, progress=False, allow_partial=True)
    assert not out.exists() and list((tmp_path / "out").iterdir()) == []


def test_models_missing_from_info_are_reported(releases: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(releases["pickle"], tmp_path / "rel")
    info = read_release_file(folder / "blox-info.pickle")
    base_hashes = set(read_release_file(folder / "blox-base-0.pickle").columns["model_hash"])
    dropped = set(sorted(base_hashes)[:5])
    keep = [k for k, h in enumerate(info.columns["model_hash"]) if h not in dropped]
    assert len(keep) == N - 5  # the info file loses exactly five models the base file has
    write_release_file(folder / "blox-info.pickle", kind="info", fmt="pickle",
                       columns={c: [v[k] for k in keep] if isinstance(v, list) else v[keep]
                                for c, v in info.columns.items()})
    assert not base_hashes <= set(read_release_file(folder / "blox-info.pickle").columns["model_hash"])
    with pytest.raises(ReleaseFormatError, match="not in blox-info"):
        import_release(folder, out=tmp_path / "s.zarr", progress=False, allow_partial=True)
    assert not (tmp_path / "s.zarr").exists()


def test_import_errors(releases: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError):
        import_release(tmp_path / "nowhere", out=tmp_path / "x.zarr", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReleaseFormatError, match="no blox-base"):
        import_release(empty, out=tmp_path / "x.zarr", progress=False)
    out = import_release(releases["custom"], out=tmp_path / "y.zarr", progress=False, allow_partial=True)
    with pytest.raises(InvalidArgumentError, match="overwrite"):
        import_release(releases["custom"], out=out, progress=False, allow_partial=True)
    assert import_release(releases["custom"], out=out, overwrite=True, progress=False, allow_partial=True) == out


def test_zip_output_and_cli(releases: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["data", "import", str(releases["custom"]), "--out", str(tmp_path / "s.zip"), "--quiet",
                                 "--allow-partial"])
    assert res.exit_code == 0, res.output
    store = open_store(tmp_path / "s.zip")
    assert len(store) == N
    res = runner.invoke(app, ["data", "info", str(tmp_path / "s.zip")], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "cifar100" in res.output and "seed 0: 100.0%" in res.output
    h = read_release_file(releases["custom"] / "blox-base-0.blox").columns["model_hash"][0]
    res = runner.invoke(app, ["data", "query", h, "--store", str(tmp_path / "s.zip"), "--seed", "0"])
    assert res.exit_code == 0 and h in res.output and "test_top1" in res.output
