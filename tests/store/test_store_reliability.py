"""Store reliability: edited metadata, unbounded files, torn writes.

- an edited ``attributes.encoding`` (denominator, delta, emptied) in an array's ``zarr.json`` read as
  silently wrong numbers and passed ``verify --deep``; a store whose checksum table was removed verified "OK,
  0 checksums verified". Now the checksums cover each array's metadata.
- a chunk that is a symbolic link to ``/dev/zero`` made reads and ``blox data info`` read without limit.
  Those cases run in a subprocess with an address-space limit and a timeout, so the old behaviour cannot hurt
  the machine.
- a reader beside a writer saw torn values (NaN or mixed) or "damaged... re-import".
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from store_workers import N_ROWS, read_loop, rewrite_loop

from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.datasets.store.encoding import Encoding
from blox_env.datasets.store.verify import verify_store
from blox_env.datasets.synthetic import synthetic_store
from blox_env.errors import StoreBusyError, StoreCorruptError
from blox_env.space import SubSpace

SPACE = SubSpace(((0, 9, 30), (1, 12, 36), (2, 21, 44)))  # 27 models
RUN = "synthetic"
MINI = Path(__file__).resolve().parents[2] / "blox_env" / "data" / "blox-mini.zip"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reliability") / "store.zarr"
    synthetic_store(path, space=SPACE, seeds=(0, 1), epochs=12).close()
    return path


@pytest.fixture
def store_path(pristine: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "store.zarr"
    shutil.copytree(pristine, dest)
    return dest


def _edit_meta(path: Path, array: str, edit) -> None:  # noqa: ANN001 - a small callable
    meta_file = path / array / "zarr.json"
    doc = json.loads(meta_file.read_text())
    edit(doc["attributes"])
    meta_file.write_text(json.dumps(doc, indent=2))


EDITS = {
    "denominator": ("val_top1", lambda a: a["encoding"].update(denominator=a["encoding"]["denominator"] + 3)),
    "delta": ("val_top1", lambda a: a["encoding"].update(delta=False)),
    "emptied": ("val_top1", lambda a: a.update(encoding={})),
    "test_denominator": ("test_top1", lambda a: a["encoding"].update(denominator=10_300)),
}


# ---------------------------------------------------------------------- metadata under the checksums
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_edited_encoding_never_reads_as_numbers(store_path: Path, edit: str) -> None:
    metric, change = EDITS[edit]
    assert np.isfinite(open_store(store_path).get(metric, seed=0)).all()
    _edit_meta(store_path, f"runs/{RUN}/{metric}", change)
    with pytest.raises(StoreCorruptError, match=rf"metadata of array 'runs/{RUN}/{metric}'.*edited"):
        open_store(store_path).get(metric, seed=0)
    with pytest.raises(StoreCorruptError, match="edited"):
        open_store(store_path).full_info(int(open_store(store_path).index[0]), seed=0)
    report = verify_store(store_path, deep=True)
    assert not report.ok and any(f"runs/{RUN}/{metric}" in e and "metadata" in e for e in report.errors)


def test_metadata_check_is_once_per_array_and_store(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from blox_env.datasets.store import reads

    calls = []
    real = reads.meta_digest
    monkeypatch.setattr(reads, "meta_digest", lambda *a: calls.append(a[1]) or real(*a))
    st = open_store(store_path)
    for _ in range(5):
        st.get("val_top1", seed=0)
        st.val_acc(int(st.index[3]), seed=1)
    assert calls.count(f"runs/{RUN}/val_top1") == 1


def test_whitespace_only_rewrite_of_metadata_is_not_damage(store_path: Path) -> None:
    _edit_meta(store_path, f"runs/{RUN}/val_top1", lambda a: None)  # re-indented, same JSON
    before = open_store(store_path).get("val_top1", seed=0)
    assert np.isfinite(before).all() and verify_store(store_path, deep=True).ok


def test_missing_checksum_table_fails_deep_verify(store_path: Path) -> None:
    root = store_path / "zarr.json"
    doc = json.loads(root.read_text())
    del doc["attributes"]["checksums"]
    root.write_text(json.dumps(doc))
    report = verify_store(store_path, deep=True)
    assert not report.ok and "OK" not in report.summary()
    assert any("checksum table" in e for e in report.errors)
    assert verify_store(store_path).ok  # the structure itself is sound


def test_store_written_before_metadata_checksums_reads_and_says_what_is_unchecked(store_path: Path) -> None:
    """Checksum entries without ``meta`` (every store written before this work, e.g. the bundled zip)."""
    root = store_path / "zarr.json"
    doc = json.loads(root.read_text())
    for entry in doc["attributes"]["checksums"].values():
        entry.pop("meta")
    root.write_text(json.dumps(doc))
    st = open_store(store_path)
    assert np.isfinite(st.get("val_top1", seed=0)).all()
    report = verify_store(store_path, deep=True)
    assert report.ok and report.verified == len(report.meta_unchecked) > 0  # values checked, metadata not
    assert any("not covered" in w for w in report.warnings)
    assert "without their metadata" in report.summary()


def test_bundled_store_reads_and_verifies_with_its_old_checksums(tmp_path: Path) -> None:
    with zipfile.ZipFile(MINI) as zf:
        zf.extractall(tmp_path / "mini")
    st = open_store(tmp_path / "mini")
    assert np.isfinite(st.get("val_top1", seed="mean")).any()
    report = verify_store(tmp_path / "mini", deep=True)
    assert report.ok, report.errors


def test_closing_after_a_write_records_metadata_checksums(store_path: Path) -> None:
    st = BloxStore.open(store_path, mode="a")
    st.write_latency("gpu", np.linspace(0.01, 0.02, len(st)))
    st.close()
    entry = open_store(store_path).attrs["checksums"]["latency/gpu"]
    assert len(entry["meta"]) == 64
    report = verify_store(store_path, deep=True)
    assert report.ok and not report.meta_unchecked


# ---------------------------------------------------------------------- bounded reads
def _limited(code: str, *, timeout: float = 120, mem: int = 2 << 30) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter limited to ``mem`` bytes of address space and ``timeout`` seconds."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          cwd=Path(__file__).resolve().parent)  # never the repo root: it would shadow an install


def _dev_zero_chunk(store_path: Path) -> Path:
    chunk = store_path / f"runs/{RUN}/val_top1/c/0/0/0"
    chunk.unlink()
    chunk.symlink_to("/dev/zero")
    return chunk


def test_chunk_linked_to_dev_zero_is_refused_before_it_is_read(store_path: Path) -> None:
    _dev_zero_chunk(store_path)
    out = _limited(f"""
        from blox_env.datasets.store.core import open_store
        from blox_env.errors import StoreCorruptError
        st = open_store({str(store_path)!r})
        try:
            st.get("val_top1", seed=0)
        except StoreCorruptError as exc:
            print("REFUSED", exc)
        try:
            st.val_acc(int(st.index[0]), seed=0)
        except StoreCorruptError as exc:
            print("REFUSED", exc)
        """)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [x for x in out.stdout.splitlines() if x.startswith("REFUSED")]
    assert len(lines) == 2 and all("/dev/zero, outside the store: not followed" in x for x in lines), out.stdout


def test_blox_data_info_and_verify_on_a_dev_zero_chunk(store_path: Path) -> None:
    _dev_zero_chunk(store_path)
    for args, deep in (("info", False), ("verify", False), ("verify", True)):
        cmd = f"{args} {store_path}" + (" --deep" if deep else "")
        out = _limited(f"""
            import sys
            from typer.testing import CliRunner
            from blox_env.cli.root import app
            res = CliRunner().invoke(app, ["data", *{cmd.split()!r}])
            print("EXIT", res.exit_code)
            print(res.output)
            print(repr(res.exception))
            """)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "EXIT 1" in out.stdout and "/dev/zero, outside the store" in out.stdout, (cmd, out.stdout[-3000:])
        assert "DAMAGED" in out.stdout and "Traceback" not in out.stdout, (cmd, out.stdout[-3000:])


def test_oversized_chunk_file_is_refused_by_size(store_path: Path) -> None:
    chunk = store_path / f"runs/{RUN}/test_top1/c/0/0"
    chunk.write_bytes(chunk.read_bytes() + b"\0" * 100_000)  # far beyond 27 uint16 values, compressed or not
    with pytest.raises(StoreCorruptError, match=r"test_top1.*100,\d+ bytes, more than"):
        open_store(store_path).get("test_top1", seed=0)
    assert any("more than" in e for e in verify_store(store_path).errors)


def test_symbolic_links_out_of_the_store_are_not_followed(store_path: Path, tmp_path: Path) -> None:
    chunk = store_path / f"runs/{RUN}/test_top1/c/0/0"
    outside = tmp_path / "elsewhere.bin"
    shutil.copy(chunk, outside)  # a perfectly valid chunk, but outside the store
    chunk.unlink()
    chunk.symlink_to(outside)
    with pytest.raises(StoreCorruptError, match="outside the store"):
        open_store(store_path).get("test_top1", seed=0)
    # a folder link on the way out is refused as well
    (store_path / f"runs/{RUN}/test_top1/c/0/0").unlink()
    shutil.copytree(store_path / f"runs/{RUN}/test_top1/c", tmp_path / "cdir")
    shutil.copy(outside, tmp_path / "cdir/0/0")
    shutil.rmtree(store_path / f"runs/{RUN}/test_top1/c")
    (store_path / f"runs/{RUN}/test_top1/c").symlink_to(tmp_path / "cdir")
    with pytest.raises(StoreCorruptError, match="outside the store"):
        open_store(store_path).get("test_top1", seed=0)


def test_chunk_that_is_not_a_regular_file_is_refused(store_path: Path) -> None:
    chunk = store_path / f"runs/{RUN}/test_top1/c/0/0"
    chunk.unlink()
    os.mkfifo(chunk)  # reading a FIFO with no writer blocks forever: in a subprocess with a timeout
    out = _limited(f"""
        from blox_env.datasets.store.core import open_store
        from blox_env.errors import StoreCorruptError
        try:
            open_store({str(store_path)!r}).get("test_top1", seed=0)
        except StoreCorruptError as exc:
            print("REFUSED", exc)
        """, timeout=60)
    assert out.returncode == 0 and "REFUSED" in out.stdout and "not a regular file" in out.stdout, out


def test_metadata_linked_to_dev_zero_is_refused(store_path: Path) -> None:
    meta = store_path / f"runs/{RUN}/test_top1/zarr.json"
    meta.unlink()
    meta.symlink_to("/dev/zero")
    out = _limited(f"""
        from blox_env.datasets.store.core import open_store
        from blox_env.datasets.store.verify import verify_store
        from blox_env.errors import StoreCorruptError
        try:
            open_store({str(store_path)!r}).get("test_top1", seed=0)
        except StoreCorruptError as exc:
            print("REFUSED", exc)
        print("VERIFY", verify_store({str(store_path)!r}).ok)
        """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "REFUSED" in out.stdout and "/dev/zero, outside the store" in out.stdout and "VERIFY False" in out.stdout


# ---------------------------------------------------------------------- no torn values beside a writer


def test_reader_beside_a_writer_never_sees_torn_values(store_path: Path) -> None:
    st = BloxStore.open(store_path, mode="a")
    st.write_metric(RUN, "test_top1", np.full((2, N_ROWS), 1.0), encoding=Encoding("count", "uint16",
                                                                                     denominator=10_000))
    st.write_trace("t", [{"cost": 1.0, "metrics": {"val_top1": 1.0}}], replace=True)
    st.close()
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    writer = ctx.Process(target=rewrite_loop, args=(str(store_path), 6.0, ready))
    reader = ctx.Process(target=read_loop, args=(str(store_path), 4.0, out))
    writer.start()
    assert ready.wait(60)
    reader.start()
    try:
        reads, torn, errors = out.get(timeout=90)
    finally:
        reader.join(30)
        writer.join(60)
        for p in (reader, writer):
            if p.is_alive():
                p.kill()
    assert reads > 10
    assert torn == [], torn[:3]
    assert all(e.startswith("StoreBusyError") and "being" in e for e in errors), errors[:3]  # never "damaged"
    assert len(errors) <= reads // 10, errors[:3]  # "being written" at most now and then
    assert writer.exitcode == 0
    assert verify_store(store_path, deep=True).ok
    assert not [p for p in (store_path / f"runs/{RUN}").iterdir() if p.name.startswith(".")]


def test_failed_rewrite_leaves_the_old_array_whole(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = open_store(store_path).get("test_top1", seed=0)
    st = BloxStore.open(store_path, mode="a")
    from blox_env.datasets.store import write

    def boom(tmp: Path, final: Path, **kw: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(write, "swap_in", boom)
    with pytest.raises(OSError, match="disk full"):
        st.write_metric(RUN, "test_top1", np.full((2, N_ROWS), 3.0), encoding=Encoding("count", "uint16",
                                                                                         denominator=10_000))
    st.close()
    np.testing.assert_array_equal(open_store(store_path).get("test_top1", seed=0), before)
    assert not [p for p in (store_path / f"runs/{RUN}").iterdir() if p.name.startswith(".")]
    assert verify_store(store_path, deep=True).ok


def test_reader_of_a_store_being_written_is_told_so(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read that fails while a new version of the array sits beside it says "being written", not damaged."""
    from blox_env.datasets.store import reads

    monkeypatch.setattr(reads, "BUSY_RETRY_S", 0.2)
    chunk = store_path / f"runs/{RUN}/test_top1/c/0/0"
    (store_path / f"runs/{RUN}/.blox-tmp-test_top1-0123abcd").mkdir()  # a writer's new version, half built
    chunk.write_bytes(b"garbage")
    with pytest.raises(StoreBusyError, match="being written"):
        open_store(store_path).get("test_top1", seed=0)
    shutil.rmtree(store_path / f"runs/{RUN}/.blox-tmp-test_top1-0123abcd")
    with pytest.raises(StoreCorruptError, match="damaged") as info:  # no writer: it is damage
        open_store(store_path).get("test_top1", seed=0)
    assert not isinstance(info.value, StoreBusyError)


def test_verify_reports_a_leftover_temporary_folder(store_path: Path) -> None:
    tmp = store_path / f"runs/{RUN}/.blox-tmp-test_top1-0123abcd"
    shutil.copytree(store_path / f"runs/{RUN}/test_top1", tmp)
    report = verify_store(store_path, deep=True)
    assert report.ok and any("hidden temporary" in w and "left by a writer" in w for w in report.warnings)
    assert f"runs/{RUN}/.blox-tmp-test_top1-0123abcd" not in open_store(store_path).attrs["checksums"]
    assert open_store(store_path).run_info(RUN).metrics.count("test_top1") == 1
