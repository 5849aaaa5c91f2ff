"""Import safety: overwrite only replaces a store, stale temporaries, partial releases, provenance."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import blox_env.datasets.release.importer as importer
from blox_env.cli.root import app
from blox_env.datasets.release.importer import import_release
from blox_env.datasets.release.writer import synthetic_release
from blox_env.datasets.store.core import open_store
from blox_env.datasets.store.location import atomic_directory, clean_stale_temporaries, is_blox_store
from blox_env.errors import BloxError, InvalidArgumentError, OutputExistsError, PartialReleaseError, ReleaseFormatError
from blox_env.hashes import all_hashes

N = 24


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rel")
    synthetic_release(folder, n_models=N, epochs=4, seeds=(0, 1), fmt="csv", rng_seed=5)
    return folder


@pytest.fixture
def rel(release: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(release, tmp_path / "rel"))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _imp(folder: Path, out: Path, **kw) -> Path:
    return import_release(folder, out=out, progress=False, allow_partial=True, **kw)


# ---------------------------------------------------------------- --overwrite replaces only a store


def test_overwrite_refuses_the_release_folder_itself(rel: Path) -> None:
    before = _snapshot(rel)
    with pytest.raises(OutputExistsError, match="source folder") as err:
        _imp(rel, rel, overwrite=True)
    assert isinstance(err.value, InvalidArgumentError) and isinstance(err.value, FileExistsError)
    assert _snapshot(rel) == before
    assert not [p for p in rel.parent.iterdir() if p.name.startswith(".")]  # no temp, no marker


def test_overwrite_refuses_a_store_that_contains_the_release(rel: Path, tmp_path: Path) -> None:
    store = _imp(rel, tmp_path / "s.zarr")
    inner = Path(shutil.copytree(rel, store / "rel"))
    before = _snapshot(inner)
    with pytest.raises(OutputExistsError, match="contains it"):
        _imp(inner, store, overwrite=True)
    assert _snapshot(inner) == before and is_blox_store(store)


@pytest.mark.parametrize("kind", ["file", "folder", "zarr-group"])
def test_overwrite_refuses_what_is_not_a_store(rel: Path, tmp_path: Path, kind: str) -> None:
    out = tmp_path / "myproject"
    if kind == "file":
        out.write_text("my notes\n")
    elif kind == "folder":
        out.mkdir()
        (out / "results.csv").write_text("a,b\n1,2\n")
    else:  # a zarr group of someone else: not a blox store
        out.mkdir()
        (out / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    before = _snapshot(out) if out.is_dir() else {"": out.read_bytes()}
    with pytest.raises(OutputExistsError, match="not a blox store") as err:
        _imp(rel, out, overwrite=True)
    assert "overwrite only ever replaces a blox store" in str(err.value) and str(out) in str(err.value)
    assert (_snapshot(out) if out.is_dir() else {"": out.read_bytes()}) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["myproject", "rel"]


def test_overwrite_replaces_a_store_and_an_empty_folder(rel: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    synthetic_release(small, n_models=7, epochs=4, seeds=(0,), fmt="csv", rng_seed=1)
    for name in ("s.zarr", "s.zip"):
        out = _imp(small, tmp_path / name)
        assert len(open_store(out)) == 7
        with pytest.raises(InvalidArgumentError, match="overwrite"):
            _imp(rel, out)
        assert _imp(rel, out, overwrite=True) == out and len(open_store(out)) == N
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    assert len(open_store(_imp(rel, empty, overwrite=True))) == N
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_is_blox_store_reads_only_the_root_metadata(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zarr.json").write_text("{not json")
    other = tmp_path / "other.zip"
    other.write_bytes(b"PK not really a zip")
    assert not is_blox_store(bad) and not is_blox_store(other) and not is_blox_store(tmp_path / "nothing")


def test_cli_overwrite_onto_the_release_folder_keeps_it(rel: Path) -> None:
    before = _snapshot(rel)
    res = CliRunner().invoke(app, ["data", "import", str(rel), "--out", str(rel), "--overwrite", "--quiet",
                                   "--allow-partial"])
    assert res.exit_code != 0 and isinstance(res.exception, BloxError)
    assert _snapshot(rel) == before


# ---------------------------------------------------------------- stale temporary siblings

_CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    mode, rel, out = sys.argv[1:4]
    if mode == "tmp":  # create a temporary the way the importer does, then exit without cleaning up
        from blox_env.datasets.store.location import atomic_directory
        (atomic_directory(Path(out), overwrite=False) / "chunk").write_bytes(b"x" * 100)
        os._exit(0)
    from blox_env.datasets.release.importer import import_release
    from blox_env.datasets.store.core import BloxStore
    if mode == "kill-build":  # SIGKILL in the middle of writing the store
        def die(*a, **k):
            os.kill(os.getpid(), signal.SIGKILL)
        BloxStore.write_seed = die
    else:  # kill-commit: SIGKILL right after the old store was moved aside
        real = os.replace
        def replace(a, b):
            real(a, b)
            if str(a) == out:
                os.kill(os.getpid(), signal.SIGKILL)
        os.replace = replace
    import_release(rel, out=out, progress=False, allow_partial=True, overwrite=True)
""")


def _child(mode: str, rel: Path, out: Path) -> int:
    here = Path(__file__).resolve().parent  # never the repo root as cwd: its blox_env/ would shadow an install
    return subprocess.run([sys.executable, "-c", _CHILD, mode, str(rel), str(out)], timeout=120, cwd=here).returncode


def _temps(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_killed_import_leftover_is_removed_by_the_next_import(rel: Path, tmp_path: Path) -> None:
    out = tmp_path / "o" / "s.zarr"
    assert _child("kill-build", rel, out) == -9
    left = _temps(out)
    assert not out.exists() and len(left) == 2 and left[1] == left[0] + ".owner"
    assert (out.parent / left[0] / "zarr.json").is_file()  # a real partial store
    messages: list[str] = []
    _imp(rel, out, report=messages.append)
    assert _temps(out) == [] and len(open_store(out)) == N
    removed = [m for m in messages if m.startswith("removed")]
    assert len(removed) == 1 and left[0] in removed[0] and "no longer running" in removed[0]


def test_killed_overwrite_commit_is_restored(rel: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    small = tmp_path / "small"
    synthetic_release(small, n_models=7, epochs=4, seeds=(0,), fmt="csv", rng_seed=1)
    _imp(small, out)
    assert _child("kill-commit", rel, out) == -9
    assert not out.exists() and any(".old-" in n for n in _temps(out))  # the window between the two renames
    messages = clean_stale_temporaries(out)
    assert any(m.startswith("restored") for m in messages) and _temps(out) == []
    assert len(open_store(out)) == 7  # the old store, intact


def test_dead_owner_temp_removed_live_and_foreign_kept(rel: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    assert _child("tmp", rel, out) == 0  # its owner has exited: stale
    stale = _temps(out)[0]
    live = atomic_directory(out, overwrite=False)  # owned by this (running) process
    lookalike = tmp_path / ".s.zarr.tmp-deadbeef"  # a user folder named alike, no marker
    lookalike.mkdir()
    (lookalike / "keep.txt").write_text("mine")
    forged = tmp_path / ".s.zarr.tmp-0badc0de"  # marker not written by blox-env
    forged.mkdir()
    (tmp_path / ".s.zarr.tmp-0badc0de.owner").write_text('{"pid": 1}')
    messages: list[str] = []
    _imp(rel, out, report=messages.append)
    assert not (tmp_path / stale).exists() and not (tmp_path / (stale + ".owner")).exists()
    assert live.is_dir() and (lookalike / "keep.txt").read_text() == "mine" and forged.is_dir()
    assert any("removed" in m and stale in m for m in messages)
    assert any(m.startswith("kept") and live.name in m for m in messages)
    assert not any("deadbeef" in m or "0badc0de" in m for m in messages)


def test_recycled_pid_counts_as_dead(tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    tmp = atomic_directory(out, overwrite=False)
    marker = tmp.with_name(tmp.name + ".owner")
    owner = json.loads(marker.read_text())
    if owner["start"] is None:
        pytest.skip("no /proc start times on this platform")
    marker.write_text(json.dumps({**owner, "start": "1"}))  # same pid, other process start: not the owner
    assert any(tmp.name in m for m in clean_stale_temporaries(out)) and not tmp.exists()


def test_cli_prints_cleanup_as_plain_text(rel: Path, tmp_path: Path) -> None:
    out = tmp_path / "[bold]s.zarr"
    assert _child("tmp", rel, out) == 0
    res = CliRunner().invoke(app, ["data", "import", str(rel), "--out", str(out), "--quiet", "--allow-partial"],
                             env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert "removed" in res.output and ".[bold]s.zarr.tmp-" in res.output and _temps(out) == []


# ---------------------------------------------------------------- defects 7 and 8: empty and partial releases

_HEADER = """---
version: 1
search_space: &space {{shape: [3, 2], nodes: 2, stages: 3, ops: [conv, mbconv, bconv]}}
dataset_type: training
columns: [model_hash, val_top1, test_top1, train_time_s]
seed: {seed}
epochs: 1
dataset: "cifar100"
part: base
format: csv
---
model_hash,val_top1,test_top1,train_time_s
"""


def _base_csv(folder: Path, seed: int, hashes: list[str]) -> Path:
    """A base file written by hand (the layout the original writer uses), one epoch per model."""
    folder.mkdir(exist_ok=True)
    rows = "".join(f'{h},"[{40 + k % 50}.5]",{41 + k % 50}.25,{100 + k % 7}\n' for k, h in enumerate(hashes))
    path = folder / f"blox-base-{seed}.csv"
    path.write_text(_HEADER.format(seed=seed) + rows)
    return path


def test_header_only_release_is_refused(tmp_path: Path) -> None:
    _base_csv(tmp_path / "rel", 0, [])
    for partial in (False, True):
        with pytest.raises(ReleaseFormatError, match="blox-base-0.csv: a header and no rows"):
            import_release(tmp_path / "rel", out=tmp_path / "s.zarr", progress=False, allow_partial=partial)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rel"]


def _truncate_rows(path: Path, keep: int) -> None:
    """Cut a CSV release file at a row boundary after ``keep`` data rows."""
    lines = path.read_text().splitlines(keepends=True)
    body = lines.index("---\n", 1) + 2
    path.write_text("".join(lines[: body + keep]))


def test_truncated_file_refused_then_imported_with_coverage(rel: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "N_MODELS", N)  # the release is the whole "space": only the cut file is partial
    assert len(open_store(import_release(rel, out=tmp_path / "full.zarr", progress=False))) == N
    _truncate_rows(rel / "blox-ext-0.csv", N // 2)
    with pytest.raises(PartialReleaseError, match=rf"blox-ext-0.csv: rows for {N // 2} of the {N} models") as err:
        import_release(rel, out=tmp_path / "s.zarr", progress=False)
    assert "--allow-partial" in str(err.value) and not (tmp_path / "s.zarr").exists()
    messages: list[str] = []
    store = open_store(import_release(rel, out=tmp_path / "s.zarr", progress=False, allow_partial=True,
                                      report=messages.append))
    cov = store.attrs["coverage"]
    by_file = {e["file"]: e for e in cov["files"]}
    assert cov["complete"] is False and cov["models"] == N
    assert by_file["blox-ext-0.csv"] == {"file": "blox-ext-0.csv", "kind": "ext", "present": True, "seed": 0,
                                        "rows": N // 2, "expected": N, "missing": N - N // 2}
    assert by_file["blox-base-0.csv"]["missing"] == 0 and by_file["blox-info.csv"]["missing"] == 0
    assert np.isnan(store.get("val_loss", seed=0, best=False)).sum() == N - N // 2
    assert any("partial release" in m and "blox-ext-0.csv" in m for m in messages)
    assert open_store(tmp_path / "full.zarr").attrs["coverage"]["complete"] is True


def test_base_cut_at_row_boundary_refused_without_info(rel: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "N_MODELS", N)
    (rel / "blox-info.csv").unlink()
    _truncate_rows(rel / "blox-base-1.csv", 5)
    with pytest.raises(PartialReleaseError, match=f"blox-base-1.csv: rows for 5 of the {N} models .*"
                                                  f"{N - 5} of them present in other files"):
        import_release(rel, out=tmp_path / "s.zarr", progress=False)


def test_missing_seed_file_refused(rel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "N_MODELS", N)
    (rel / "blox-ext-1.csv").unlink()
    with pytest.raises(PartialReleaseError, match=r"blox-ext-1\..* is missing.*seeds \[0\]"):
        import_release(rel, out=tmp_path / "s.zarr", progress=False)
    store = open_store(import_release(rel, out=tmp_path / "s.zarr", progress=False, allow_partial=True))
    entry = next(e for e in store.attrs["coverage"]["files"] if e["file"] == "blox-ext-1")
    assert entry["present"] is False and entry["missing"] == N


def test_small_release_is_partial_against_the_full_space(rel: Path, tmp_path: Path) -> None:
    with pytest.raises(PartialReleaseError, match=f"rows for {N} of the 91,125 models"):
        import_release(rel, out=tmp_path / "s.zarr", progress=False)
    res = CliRunner().invoke(app, ["data", "import", str(rel), "--out", str(tmp_path / "s.zarr"), "--quiet"])
    assert res.exit_code != 0 and isinstance(res.exception, PartialReleaseError)
    res = CliRunner().invoke(app, ["data", "import", str(rel), "--out", str(tmp_path / "s.zarr"), "--quiet",
                                   "--allow-partial"], env={"COLUMNS": "300"})
    assert res.exit_code == 0 and "partial release imported" in res.output


@pytest.mark.slow
def test_full_space_release_imports_without_flag_and_truncation_is_refused(tmp_path: Path) -> None:
    hashes = [str(h) for h in all_hashes()]
    _base_csv(tmp_path / "rel", 0, hashes)
    store = open_store(import_release(tmp_path / "rel", out=tmp_path / "s.zarr", progress=False))
    assert len(store) == 91_125 and store.attrs["coverage"]["complete"] is True
    _base_csv(tmp_path / "rel", 1, hashes[: 91_125 // 2])  # a second seed cut at a row boundary
    with pytest.raises(PartialReleaseError, match="blox-base-1.csv: rows for 45,562 of the 91,125 models"):
        import_release(tmp_path / "rel", out=tmp_path / "t.zarr", progress=False)
    assert not (tmp_path / "t.zarr").exists()


# ---------------------------------------------------------------- provenance


def test_provenance_records_size_and_sha256_of_every_source(rel: Path, tmp_path: Path) -> None:
    store = open_store(_imp(rel, tmp_path / "s.zarr"))
    files = store.attrs["provenance"]["files"]
    assert sorted(f["name"] for f in files) == sorted(p.name for p in rel.iterdir())
    for f in files:
        data = (rel / f["name"]).read_bytes()
        assert f["bytes"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest() and "_stat" not in f


def test_file_changed_during_import_is_refused(rel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importer.read_release_file

    def read_then_edit(path: Path):
        out = real(path)
        if path.name == "blox-base-1.csv":
            with path.open("a") as fh:
                fh.write("\n")
        return out

    monkeypatch.setattr(importer, "read_release_file", read_then_edit)
    with pytest.raises(ReleaseFormatError, match="blox-base-1.csv: the file changed while it was being imported"):
        _imp(rel, tmp_path / "s.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rel"]
