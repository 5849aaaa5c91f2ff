"""``.blox`` files as the ORIGINAL BLOX writer emits them, built here by an independent re-implementation.

Nothing in this file uses the project's encoder to make a file. :class:`BitWriter`
re-implements the original ``BitPacker`` write side bit by bit: ``write(v, n)``
appends n bits LSB-first and adds n to ``total_bits``; ``pad_write()`` adds the
bit offset within the current byte (not the bits up to the boundary) and moves
to the next byte; the row count is written through ``write``; the u64
``total_bits`` is prepended at the end and everything zlib-compressed. Files
wrap the payload as the original ``tools/make_datasets.py`` does:
``yaml.dump(header, explicit_start=True, sort_keys=False)``, ``---``, payload.
"""

from __future__ import annotations

import math
import pickle
import struct
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from blox_env.costs import macs_table, params_table
from blox_env.datasets.release.codec import MAX_ROWS, decode_custom, encode_custom
from blox_env.datasets.release.reader import read_release_file
from blox_env.datasets.release.types import parse_column_type
from blox_env.datasets.release.writer import write_release_file
from blox_env.datasets.store.schema import ENV_COLUMNS
from blox_env.errors import ReleaseFormatError
from blox_env.space import Arch


class BitWriter:
    """The original writer's bit buffer: LSB-first bits, and its ``total_bits`` counter with the pad quirk."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.offset = 0  # bit offset within the last byte (0 = aligned)
        self.total_bits = 0

    def write(self, value: int, nbits: int) -> None:
        assert 0 <= value < 2**nbits or nbits == 0 and value == 0, (value, nbits)
        for i in range(nbits):
            if self.offset == 0:
                self.buf.append(0)
            self.buf[-1] |= (value >> i & 1) << self.offset
            self.offset = (self.offset + 1) % 8
        self.total_bits += nbits

    def pad_write(self) -> None:
        self.total_bits += self.offset  # the quirk: the offset, not 8 - offset
        self.offset = 0

    def raw(self) -> bytes:
        return struct.pack("<Q", self.total_bits) + bytes(self.buf)


def _n_examples(name: str) -> int:
    return 45000 if "train" in name else 5000 if "val" in name else 10000


def _write_field(w: BitWriter, value: Any, t: str, name: str) -> None:
    if t == "hash":
        w.write(int(value, 16), 128)
    elif t == "str":
        data = value.encode("ascii")
        w.write(len(data), 8)
        w.write(int.from_bytes(data, "little"), 8 * len(data))
    elif t == "float":
        w.write(round(value * 1e6), 24)
    elif t == "int":
        w.write(value, 32)
    elif t == "arch":
        for (op_a,), (op_b, prev, inp, sc) in value:
            w.write(((op_a * 3 + op_b) << 3) | prev << 2 | inp << 1 | sc, 8)
    elif t.startswith("b_"):
        _, lo, _, bits = t.split("_")
        w.write(int(round(value * _n_examples(name))) // 100 - int(lo), int(bits))
    elif t.startswith("list["):
        w.write(len(value), 8)
        for item in value:
            _write_field(w, item, t[5:-1], name)
    else:
        raise AssertionError(t)


def original_raw(names: list[str], types: list[str], rows: list[list[Any]]) -> bytes:
    """``u64 total_bits`` + the buffer (u32 row count, rows), exactly as the original writer builds them."""
    w = BitWriter()
    w.write(len(rows), 32)
    for row in rows:
        for value, t, name in zip(row, types, names):
            _write_field(w, value, t, name)
            w.pad_write()
    return w.raw()


def acc(count: int, name: str) -> float:
    """What the original stores for ``count`` correct images: a percentage rounded to 3 decimals."""
    return round(count / _n_examples(name) * 100, 3)


def test_bitwriter_reproduces_the_quirk_of_the_issue() -> None:
    w = BitWriter()
    w.write(1, 32)
    w.write(9000, 14)
    w.pad_write()
    assert w.total_bits == 32 + 14 + 6 and len(w.buf) * 8 == 32 + 16
    w.write(5, 3)
    w.write(2, 3)
    w.pad_write()
    assert w.total_bits == 52 + 6 + 6 and bytes(w.buf[-1:]) == bytes([5 | 2 << 3])


# --------------------------------------------------------------------------- the decoder, type by type

_MIXED = {  # name -> type: every type of the format, list lengths varying per row
    "model_hash": "hash", "gpu": "str", "params": "int", "latency": "float", "arch_vec": "arch",
    "acc14": "b_100_9100_14", "test_acc13": "b_2000_7000_13", "val_acc3": "b_10_15_3",
    "val_curve": "list[b_1000_5000_13]", "val_short": "list[b_4500_4505_3]", "val_loss": "list[float]",
    "test_loss": "float", "train_top5x": "list[b_0_45000_16]",
}
_FIXED = {  # no str and equal list lengths: the decoder's fixed-record fast path
    "model_hash": "hash", "val_curve": "list[b_1000_5000_13]", "test_acc13": "b_2000_7000_13",
    "train_time_s": "int", "val_acc3": "b_10_15_3", "val_loss": "list[float]",
}


def _rows(columns: dict[str, str], nrows: int, rng: np.random.Generator, *, ragged: bool) -> list[list[Any]]:
    rows = []
    for r in range(nrows):
        n = int(rng.integers(0, 12)) if ragged else 9
        row: list[Any] = []
        for name, t in columns.items():
            if t.startswith("list[b_") or t.startswith("b_"):
                _, lo, hi, _ = t.removeprefix("list[").rstrip("]").split("_")
                counts = rng.integers(int(lo), int(hi) + 1, n if t.startswith("list") else 1)
                if "train" in name:  # the original's count = round(acc * N) // 100 is exact for these
                    counts = (counts // 9) * 9
                vals = [acc(int(c), name) for c in counts]
                row.append(vals if t.startswith("list") else vals[0])
            elif t == "list[float]":
                row.append([int(x) / 1e6 for x in rng.integers(0, 2**24, n)])
            elif t == "hash":
                row.append(f"{int(rng.integers(0, 2**62)):032x}"[::-1] if r % 2 else f"{r:032x}")
            elif t == "str":
                row.append("".join(chr(c) for c in rng.integers(32, 127, int(rng.integers(0, 40)))))
            elif t == "int":
                row.append(int(rng.integers(0, 2**32)))
            elif t == "float":
                row.append(int(rng.integers(0, 2**24)) / 1e6)
            else:  # arch: any raw config (the codec does not canonicalise)
                row.append([[[int(rng.integers(0, 3))], [int(rng.integers(0, 3)), *map(int, rng.integers(0, 2, 3))]]
                            for _ in range(3)])
        rows.append(row)
    return rows


def _check_decoded(columns: dict[str, str], rows: list[list[Any]], out: dict, lengths: dict) -> None:
    """Every decoded value equals the value written, claim by claim."""
    for j, (name, t) in enumerate(columns.items()):
        written = [row[j] for row in rows]
        if t.startswith("list["):
            assert lengths[name].tolist() == [len(v) for v in written], name
            for r, v in enumerate(written):
                assert out[name][r, :len(v)].tolist() == v, (name, r)
                assert np.isnan(out[name][r, len(v):]).all(), (name, r)
        elif t in ("hash", "str", "arch"):
            assert list(out[name]) == written, name
        else:
            assert out[name].tolist() == written, name


@pytest.mark.parametrize("nrows", [0, 1, 7, 100])
@pytest.mark.parametrize("layout", ["mixed", "fixed"])
def test_decoder_reads_original_payloads(nrows: int, layout: str) -> None:
    columns = _MIXED if layout == "mixed" else _FIXED
    rows = _rows(columns, nrows, np.random.default_rng(nrows), ragged=layout == "mixed")
    names, types = list(columns), list(columns.values())
    raw = original_raw(names, types, rows)
    total_bits = struct.unpack_from("<Q", raw)[0]
    if nrows:  # the files this test builds are the ones the old strict rule refused
        assert total_bits != 8 * (len(raw) - 12)
    out, lengths = decode_custom(zlib.compress(raw), names, [parse_column_type(t) for t in types])
    _check_decoded(columns, rows, out, lengths)


def test_decoder_reads_legacy_total_bits() -> None:
    """Files of earlier blox-env writers: total_bits = 8 * the bytes of rows (documented legacy rule)."""
    rows = _rows(_FIXED, 5, np.random.default_rng(1), ragged=False)
    raw = original_raw(list(_FIXED), list(_FIXED.values()), rows)
    legacy = struct.pack("<Q", 8 * (len(raw) - 12)) + raw[8:]
    out, lengths = decode_custom(zlib.compress(legacy), list(_FIXED), [parse_column_type(t) for t in _FIXED.values()])
    _check_decoded(_FIXED, rows, out, lengths)


# --------------------------------------------------------------------------- whole files, as the original makes them

_SPACE = {"shape": [[3, 5]] * 3, "nodes": 2, "stages": 3, "ops": ["conv", "mbconv", "bconv"]}


def _original_types(names: list[str], rows: list[list[Any]]) -> list[str]:
    """Column types as the original ``encode`` picks them (b_ bits = ceil(log2(range)), test bits a byte multiple)."""
    types = []
    for j, name in enumerate(names):
        first = rows[0][j]
        if name == "model_hash":
            types.append("hash")
        elif name == "arch_vec":
            types.append("arch")
        elif name not in ("test_top1", "val_top1", "train_top1", "train_top5", "test_top5", "val_top5"):
            types.append(f"list[{type(first[0]).__name__}]" if isinstance(first, list) else type(first).__name__)
        else:
            correct = (np.asarray([row[j] for row in rows]) * _n_examples(name)).round().astype(np.int32) // 100
            lo, hi = int(correct.min()), int(correct.max())
            bits = math.ceil(math.log2(hi - lo))
            if "test" in name and bits % 8:
                bits += 8 - bits % 8
            types.append(f"list[b_{lo}_{hi}_{bits}]" if isinstance(first, list) else f"b_{lo}_{hi}_{bits}")
    return types


def _write_original(folder: Path, stem: str, header: dict, rows: list[list[Any]]) -> dict[str, Path]:
    """The original ``_save_pickle`` and ``_save_custom``: YAML header, ``---``, payload."""
    paths = {}
    for fmt, ext in (("pickle", "pickle"), ("custom", "blox")):
        hdr = {**header, "format": fmt}
        if fmt == "custom":
            hdr["column_types"] = dict(zip(hdr["columns"], _original_types(hdr["columns"], rows)))
            payload = zlib.compress(original_raw(hdr["columns"], list(hdr["column_types"].values()), rows))
        else:
            payload = pickle.dumps(rows)
        paths[fmt] = folder / f"{stem}.{ext}"
        paths[fmt].write_bytes(yaml.dump(hdr, explicit_start=True, sort_keys=False).encode() + b"---\n" + payload)
    return paths


def _original_release(folder: Path, n: int = 7, epochs: int = 20) -> dict[str, dict[str, Path]]:
    """A complete original-format release (info, base, ext, env, bench) of ``n`` real models."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    idx = np.sort(rng.choice(91125, n, replace=False))
    archs = [Arch.from_index(int(i)) for i in idx]
    hashes = [a.hash for a in archs]

    def counts(name: str, lo: int, hi: int, size: Any) -> np.ndarray:
        c = np.clip(rng.integers(lo, hi, size), lo, hi - 3)
        c.flat[0], c.flat[-1] = lo, hi - 3  # a range that is not a power of two (the original needs that)
        return c * 9 if "train" in name else c

    def curve(name: str, lo: int, hi: int) -> list[list[float]]:
        return [[acc(int(c), name) for c in row] for row in counts(name, lo, hi, (n, epochs))]

    def final(name: str, lo: int, hi: int) -> list[float]:
        return [acc(int(c), name) for c in counts(name, lo, hi, n)]

    def loss(size: Any) -> Any:
        return (rng.integers(500_000, 4_600_000, size) / 1e6).tolist()

    common = {"version": 1, "search_space": _SPACE}
    out = {}
    info_rows = [[h, int(params_table()[i]), int(macs_table()[i]), a.vec] for h, i, a in zip(hashes, idx, archs)]
    out["info"] = _write_original(folder, "blox-info", {**common, "dataset_type": "static", "columns": [
        "model_hash", "params", "flops", "arch_vec"]}, info_rows)
    training = {**common, "dataset_type": "training", "seed": 0, "epochs": epochs, "dataset": "cifar100"}
    base_rows = [list(r) for r in zip(hashes, curve("val_top1", 1500, 4000), final("test_top1", 4000, 7000),
                                      rng.integers(3000, 9000, n).tolist())]
    out["base"] = _write_original(folder, "blox-base-0", {**training, "part": "base", "columns": [
        "model_hash", "val_top1", "test_top1", "train_time_s"]}, base_rows)
    ext_rows = [list(r) for r in zip(hashes, curve("train_top1", 1000, 4900), loss((n, epochs)),
                                     curve("train_top5", 2000, 4990), loss((n, epochs)), curve("val_top5", 3000, 4800),
                                     loss(n), final("test_top5", 8000, 9900))]
    out["ext"] = _write_original(folder, "blox-ext-0", {**training, "part": "ext", "columns": [
        "model_hash", "train_top1", "train_loss", "train_top5", "val_loss", "val_top5", "test_loss", "test_top5"]},
        ext_rows)
    env_rows = [[h, *[f"{c}-{r % 2}" for c in ENV_COLUMNS]] for r, h in enumerate(hashes)]
    out["env"] = _write_original(folder, "blox-env-0", {**common, "dataset_type": "env", "columns": [
        "model_hash", *ENV_COLUMNS], "seed": 0}, env_rows)
    bench_rows = [[h, int(x) / 1e6] for h, x in zip(hashes, rng.integers(4000, 30000, n))]
    out["bench"] = _write_original(folder, "blox-bench-cpu", {**common, "dataset_type": "benchmarking", "columns": [
        "model_hash", "latency"], "device": "cpu"}, bench_rows)
    return out


def test_original_release_files_read_exactly(tmp_path: Path) -> None:
    files = _original_release(tmp_path)
    for kind, paths in files.items():
        blox, ref = read_release_file(paths["custom"]), read_release_file(paths["pickle"])
        assert blox.kind == kind and list(blox.columns) == list(ref.columns)
        rows = pickle.loads(paths["pickle"].read_bytes().split(b"\n---\n", 1)[1])
        for j, (name, values) in enumerate(blox.columns.items()):
            written = [row[j] for row in rows]
            if isinstance(values, np.ndarray):
                assert np.array_equal(values, ref.columns[name]), (kind, name)
                assert values.tolist() == written, (kind, name)
            else:
                assert values == written == ref.columns[name], (kind, name)
    raw = zlib.decompress(files["base"]["custom"].read_bytes().split(b"\n---\n", 1)[1])
    total_bits, nrows = struct.unpack_from("<QI", raw)
    assert nrows == 7 and total_bits == 8 * (len(raw) - 12) + 32  # the old reader's rule refused this


def test_original_release_folder_imports_like_the_pickles(tmp_path: Path) -> None:
    import zarr

    from blox_env.datasets.release.importer import import_release

    files = _original_release(tmp_path / "both")
    stores = {}
    for fmt in ("custom", "pickle"):
        folder = tmp_path / fmt
        folder.mkdir()
        for paths in files.values():
            paths[fmt].rename(folder / paths[fmt].name)
        stores[fmt] = zarr.open_group(import_release(folder, out=tmp_path / f"{fmt}.zarr", progress=False,
                                                     allow_partial=True), mode="r")
    for key in ("runs/cifar100/val_top1", "runs/cifar100/test_top5", "runs/cifar100/train_loss", "static/params",
                "latency/cpu", "env/gpu"):
        got, ref = stores["custom"][key][...], stores["pickle"][key][...]
        assert got.shape == ref.shape and np.array_equal(got, ref), key


# --------------------------------------------------------------------------- damaged original files are refused


def _bench_header() -> bytes:
    hdr = {"version": 1, "search_space": _SPACE, "dataset_type": "benchmarking", "columns": ["model_hash", "latency"],
           "device": "cpu", "format": "custom", "column_types": {"model_hash": "hash", "latency": "float"}}
    return yaml.dump(hdr, explicit_start=True, sort_keys=False).encode() + b"---\n"


def test_damaged_original_files_are_refused(tmp_path: Path) -> None:
    files = _original_release(tmp_path / "src")
    path = files["base"]["custom"]
    header, payload = path.read_bytes().split(b"\n---\n", 1)
    raw = zlib.decompress(payload)
    total_bits, nrows = struct.unpack_from("<QI", raw)
    cases = {
        r"row 6, column 'train_time_s': the stream ends inside": raw[:-2],  # truncated body, prefix unchanged
        "trailing bytes after the last row": raw + b"\x00",
        f"total_bits = {total_bits + 3} does not match the row data: expected {total_bits}":
            struct.pack("<Q", total_bits + 3) + raw[8:],
        f"expected {total_bits} .* or {len(raw) * 8 - 96}": struct.pack("<Q", total_bits - 8) + raw[8:],
    }
    for match, data in cases.items():
        bad = tmp_path / "blox-base-0.blox"
        bad.write_bytes(header + b"\n---\n" + zlib.compress(data))
        with pytest.raises(ReleaseFormatError, match=match) as exc:
            read_release_file(bad)
        assert "blox-base-0.blox" in str(exc.value)
    corrupt = bytearray(payload)
    corrupt[len(corrupt) // 2] ^= 0x5A
    bad.write_bytes(header + b"\n---\n" + bytes(corrupt))
    with pytest.raises(ReleaseFormatError, match="blox-base-0.blox"):
        read_release_file(bad)


# --------------------------------------------------------------------------- our writer emits the original's layout


def test_our_writer_emits_the_original_bytes(tmp_path: Path) -> None:
    """Files we write equal, byte for byte, what the original writer makes of the same values and types."""
    files = _original_release(tmp_path / "src")
    for kind in ("info", "base", "ext", "env", "bench"):
        ref = read_release_file(files[kind]["pickle"])
        rows = pickle.loads(files[kind]["pickle"].read_bytes().split(b"\n---\n", 1)[1])
        ours = write_release_file(tmp_path / files[kind]["custom"].name, kind=kind, fmt="custom", seed=ref.header.seed,
                                  device=ref.header.device, epochs=ref.header.epochs,
                                  columns={k: v for k, v in ref.columns.items()})
        header = yaml.safe_load(ours.read_bytes().split(b"\n---\n", 1)[0])
        names, types = header["columns"], [header["column_types"][c] for c in header["columns"]]
        got = zlib.decompress(ours.read_bytes().split(b"\n---\n", 1)[1])
        assert got == original_raw(names, types, rows), kind
    # a ragged list and a lone 14-bit accuracy, straight through the codec
    names, types = ["val_a", "val_l", "name"], ["b_0_9000_14", "list[b_0_7_3]", "str"]
    rows = [[acc(9000, "val"), [acc(c, "val") for c in (1, 2, 3)], "ab"], [acc(5, "val"), [], ""]]
    counts = {"val_a": np.array([9000, 5]), "val_l": np.array([[1, 2, 3], [0, 0, 0]]), "name": ["ab", ""]}
    ours = encode_custom(names, [parse_column_type(t) for t in types], counts, {"val_l": np.array([3, 0])})
    assert zlib.decompress(ours) == original_raw(names, types, rows)


# --------------------------------------------------------------------------- resource bombs


def _peak_mb(fn: Any) -> float:
    tracemalloc.start()
    try:
        fn()
        raise AssertionError("expected a ReleaseFormatError")
    except ReleaseFormatError:
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_huge_row_count_is_refused_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "blox-bench-cpu.blox"
    # total_bits agrees with the 64 bytes (legacy rule), so only the row count is wrong
    path.write_bytes(_bench_header() + zlib.compress(struct.pack("<QI", 512, 0xFFFFFFFF) + bytes(64)))
    with pytest.raises(ReleaseFormatError, match=r"nrows = 4,294,967,295 .* at most one row per model"):
        read_release_file(path)
    assert _peak_mb(lambda: read_release_file(path)) < 8
    path.write_bytes(_bench_header() + zlib.compress(struct.pack("<QI", 512, MAX_ROWS) + bytes(64)))
    with pytest.raises(ReleaseFormatError, match=r"need at least 1,731,375 bytes, the stream holds 64"):
        read_release_file(path)


def test_zlib_bomb_stops_at_the_format_cap(tmp_path: Path) -> None:
    co = zlib.compressobj(9)  # 64 MiB of zeros after a prefix declaring MAX_ROWS rows, ~64 KiB compressed
    parts = [co.compress(struct.pack("<QI", 8 << 26, MAX_ROWS))]  # total_bits agrees with the 64 MiB
    parts += [co.compress(bytes(1 << 20)) for _ in range(64)]
    path = tmp_path / "blox-bench-cpu.blox"
    path.write_bytes(_bench_header() + b"".join(parts) + co.flush())
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ReleaseFormatError, match=r"exceed 1,731,375 bytes, the most 91,125 rows .* zlib bomb"):
        read_release_file(path)
    assert _peak_mb(lambda: read_release_file(path)) < 16  # 64 MiB inflate without the cap
    small = zlib.compress(struct.pack("<QI", 8 << 20, 2) + bytes(1 << 20))  # 2 rows of 19 bytes, then 1 MiB of zeros
    path.write_bytes(_bench_header() + small)
    with pytest.raises(ReleaseFormatError, match=r"exceed 38 bytes, the most 2 rows"):
        read_release_file(path)


def test_flops_column_says_what_it_counts(tmp_path) -> None:
    """Imported stores keep the release's ptflops field; built stores hold our MACs; the attribute says which."""
    import zarr

    from blox_env.datasets.store.core import BloxStore
    from blox_env.datasets.store.write import FLOPS_MACS, FLOPS_OFFICIAL

    for name, kwargs, want in (("s", {}, FLOPS_MACS), ("o", {"flops_counting": FLOPS_OFFICIAL}, FLOPS_OFFICIAL)):
        store = BloxStore.create(tmp_path / f"{name}.zarr", index=[0, 1])
        store.write_static(params=[1, 2], flops=[3, 4], **kwargs)
        store.close()
        assert zarr.open_group(tmp_path / f"{name}.zarr", mode="r")["static/flops"].attrs["counting"] == want
