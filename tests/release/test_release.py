"""Official BLOX release files: writer and reader agree in all three formats; malformed files are refused."""

from __future__ import annotations

import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from blox_env.datasets.release.codec import decode_custom, encode_custom
from blox_env.datasets.release.header import KIND_COLUMNS, find_release_files, read_release_header
from blox_env.datasets.release.reader import read_release_file
from blox_env.datasets.release.types import ColumnType, accuracy_values, parse_column_type
from blox_env.datasets.release.writer import release_file_name, synthetic_release, write_release_file
from blox_env.errors import ReleaseFormatError
from blox_env.hashes import all_hashes
from blox_env.space import Arch

FORMATS = ("pickle", "csv", "custom")
EXT = {"pickle": "pickle", "csv": "csv", "custom": "blox"}


def _same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    return a == b


def _split(path: Path) -> tuple[bytes, bytes]:
    """(header YAML, payload) of a release file."""
    data = path.read_bytes()
    end = data.index(b"\n---\n")
    return data[4:end + 1], data[end + 5:]


def _join(path: Path, header: bytes, payload: bytes) -> Path:
    path.write_bytes(b"---\n" + header + b"---\n" + payload)
    return path


def _base_columns(n: int = 6, epochs: int = 5) -> dict:
    counts = (np.arange(n)[:, None] * 7 + np.arange(epochs)[None, :] * 113 + 1500) % 5000
    return {
        "model_hash": list(all_hashes()[:n]),
        "val_top1": accuracy_values(counts, 5000),
        "test_top1": accuracy_values(np.arange(n) * 37 + 5000, 10000),
        "train_time_s": np.arange(n) * 100 + 1000,
    }


def _expect(excinfo: pytest.ExceptionInfo, path: Path, *parts: str) -> None:
    msg = str(excinfo.value)
    assert path.name in msg, msg
    for part in parts:
        assert part in msg, msg


# --------------------------------------------------------------------------- agreement of the formats


def test_three_formats_read_back_identical(tmp_path: Path) -> None:
    reads = {}
    for fmt in FORMATS:
        paths = synthetic_release(tmp_path / fmt, n_models=50, epochs=12, seeds=(0, 3), fmt=fmt,
                                  devices=("cpu", "gtx-1080ti"))
        assert [p.name for p in paths] == [release_file_name(k, seed=s, device=d, fmt=fmt) for k, s, d in (
            ("info", None, None), ("base", 0, None), ("ext", 0, None), ("env", 0, None), ("base", 3, None),
            ("ext", 3, None), ("env", 3, None), ("bench", None, "cpu"), ("bench", None, "gtx-1080ti"))]
        reads[fmt] = {p.stem: read_release_file(p) for p in paths}
    for stem, ref in reads["pickle"].items():
        assert list(ref.columns) == list(KIND_COLUMNS[ref.kind])
        for fmt in ("csv", "custom"):
            other = reads[fmt][stem]
            assert other.kind == ref.kind and other.header.seed == ref.header.seed
            for col, values in ref.columns.items():
                assert _same(values, other.columns[col]), (stem, fmt, col)
    base, ext = reads["custom"]["blox-base-0"], reads["custom"]["blox-ext-0"]
    assert base.columns["val_top1"].shape == (50, 12) and base.columns["train_time_s"].dtype == np.int64
    assert np.array_equal(base.columns["val_top1"], accuracy_values(np.rint(base.columns["val_top1"] * 50), 5000))
    assert base.columns["test_top1"].min() >= 40 and base.columns["test_top1"].max() <= 80
    losses = ext.columns["train_loss"]
    assert np.array_equal(losses, np.rint(losses * 1e6) / 1e6) and losses.min() >= 0.5 and losses.max() <= 4.6
    info = reads["csv"]["blox-info"]
    h = info.columns["model_hash"][0]
    assert Arch.from_vec(info.columns["arch_vec"][0]).hash == h
    assert all(0.003 < x < 0.034 for x in reads["custom"]["blox-bench-cpu"].columns["latency"])
    assert reads["pickle"]["blox-env-0"].columns["torch_version"][0] == "1.5.0"


def test_ragged_lists_and_csv_without_name_row(tmp_path: Path) -> None:
    cols = _base_columns(6, 5)
    cols["val_top1"] = cols["val_top1"].copy()
    cols["val_top1"][1, 3:] = np.nan  # row 1 trained 3 epochs only
    cols["val_top1"][4, 1:] = np.nan
    got = {}
    for fmt in FORMATS:
        path = write_release_file(tmp_path / f"blox-base-0.{EXT[fmt]}", kind="base", columns=cols, fmt=fmt, seed=0,
                                  epochs=8)
        got[fmt] = read_release_file(path)
        assert got[fmt].columns["val_top1"].shape == (6, 8)  # padded to the header's epochs
        assert np.isnan(got[fmt].columns["val_top1"][1, 3:]).all()
        for col in cols:
            assert _same(got[fmt].columns[col], got["pickle"].columns[col]), (fmt, col)
    header, payload = _split(tmp_path / "blox-base-0.csv")
    assert payload.startswith(b"model_hash,val_top1,test_top1,train_time_s\n")
    bare = _join(tmp_path / "bare.csv", header, payload.split(b"\n", 1)[1])
    assert all(_same(read_release_file(bare).columns[c], got["csv"].columns[c]) for c in cols)


def test_yaml_header_with_anchor_and_alias(tmp_path: Path) -> None:
    path = write_release_file(tmp_path / "blox-bench-cpu.pickle", kind="bench", fmt="pickle", device="cpu",
                              columns={"model_hash": list(all_hashes()[:3]), "latency": [0.01, 0.02, 0.015]})
    assert b"search_space: &space {" in path.read_bytes()
    _, payload = _split(path)
    header = (b"version: 1\n"
              b"defs: {cols: &x [model_hash, latency], ops: &ops [conv, mbconv, bconv]}\n"
              b"search_space: {shape: [3, 2], nodes: 2, stages: 3, ops: *ops}\n"
              b"dataset_type: benchmarking\ncolumns: *x\ndevice: cpu\nformat: pickle\n")
    got = read_release_file(_join(path, header, payload))
    assert got.header.columns == ("model_hash", "latency")
    assert got.header.search_space["ops"] == ["conv", "mbconv", "bconv"]
    assert got.header.raw["defs"]["cols"] == ["model_hash", "latency"]
    assert got.columns["latency"].tolist() == [0.01, 0.02, 0.015]
    assert read_release_header(path).device == "cpu"


# --------------------------------------------------------------------------- hostile and malformed files


class _Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (open, (str(self.target), "w"))


def test_pickle_with_globals_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    path = write_release_file(tmp_path / "blox-bench-cpu.pickle", kind="bench", fmt="pickle", device="cpu",
                              columns={"model_hash": list(all_hashes()[:1]), "latency": [0.01]})
    header, _ = _split(path)
    target = tmp_path / "pwned.txt"
    evil = pickle.dumps([[all_hashes()[0], _Evil(target)]])
    with pytest.raises(ReleaseFormatError, match="refusing global") as exc:
        read_release_file(_join(path, header, evil))
    _expect(exc, path)
    assert not target.exists()
    for payload in (pickle.dumps([[str(all_hashes()[0]), 0.01]]) + b"junk", pickle.dumps({"a": 1})):
        with pytest.raises(ReleaseFormatError):
            read_release_file(_join(path, header, payload))


@pytest.fixture()
def base_files(tmp_path: Path) -> dict[str, Path]:
    return {fmt: write_release_file(tmp_path / f"blox-base-0.{EXT[fmt]}", kind="base", columns=_base_columns(),
                                    fmt=fmt, seed=0) for fmt in FORMATS}


def test_header_errors(tmp_path: Path, base_files: dict[str, Path]) -> None:
    path = write_release_file(tmp_path / "v2.csv", kind="base", columns=_base_columns(), fmt="csv", seed=0, version=2)
    with pytest.raises(ReleaseFormatError, match=r"unknown format version 2, supported: 1") as exc:
        read_release_file(path)
    _expect(exc, path)
    header, payload = _split(base_files["csv"])
    no_close = tmp_path / "noclose.csv"
    no_close.write_bytes(b"---\n" + header + payload)
    with pytest.raises(ReleaseFormatError, match="missing header delimiter") as exc:
        read_release_header(no_close)
    _expect(exc, no_close)
    no_open = tmp_path / "noopen.csv"
    no_open.write_bytes(header + b"---\n" + payload)
    with pytest.raises(ReleaseFormatError, match="missing header delimiter"):
        read_release_file(no_open)
    wrong = _join(tmp_path / "cols.csv", header.replace(b"test_top1, ", b""), payload)
    with pytest.raises(ReleaseFormatError, match="do not match a base file") as exc:
        read_release_file(wrong)
    _expect(exc, wrong)
    for bad, what in ((b"format: csv", b"format: xml"), (b"seed: 0", b"seed: -1"), (b"part: base", b"part: x")):
        with pytest.raises(ReleaseFormatError, match="header field"):
            read_release_file(_join(tmp_path / "f.csv", header.replace(bad, what), payload))
    renamed = tmp_path / "blox-ext-0.csv"
    renamed.write_bytes(base_files["csv"].read_bytes())
    with pytest.raises(ReleaseFormatError, match="file name disagrees"):
        read_release_file(renamed)


def test_wrong_field_count(tmp_path: Path, base_files: dict[str, Path]) -> None:
    header, _ = _split(base_files["pickle"])
    rows = [[h, [50.0], 60.0, 10] for h in all_hashes()[:3].tolist()]
    rows[2] = rows[2][:3]
    path = _join(tmp_path / "short.pickle", header, pickle.dumps(rows))
    with pytest.raises(ReleaseFormatError, match="row has 3 fields, expected 4") as exc:
        read_release_file(path)
    _expect(exc, path, "row 2")
    header, payload = _split(base_files["csv"])
    lines = payload.decode().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0]  # data row 1 loses train_time_s
    path = _join(tmp_path / "short.csv", header, "\n".join(lines).encode())
    with pytest.raises(ReleaseFormatError, match="row has 3 fields") as exc:
        read_release_file(path)
    _expect(exc, path, "row 1")


def test_bad_csv_literals(tmp_path: Path, base_files: dict[str, Path]) -> None:
    header, payload = _split(base_files["csv"])
    lines = payload.decode().splitlines()
    for row, bad in ((3, '"[30.0, abc, 1.0]"'), (0, '"__import__(\'os\')"'), (2, '"[1.0, true]"')):
        parts = lines[row + 1].split('"')
        edited = lines.copy()
        edited[row + 1] = parts[0] + bad + parts[2]
        path = _join(tmp_path / "lit.csv", header, "\n".join(edited).encode())
        with pytest.raises(ReleaseFormatError) as exc:
            read_release_file(path)
        _expect(exc, path, f"row {row}", "column 'val_top1'")
    edited = lines.copy()
    edited[2] = edited[2].rsplit(",", 1)[0] + ",12.5"
    with pytest.raises(ReleaseFormatError, match="expected an integer") as exc:
        read_release_file(_join(tmp_path / "int.csv", header, "\n".join(edited).encode()))
    _expect(exc, tmp_path / "int.csv", "row 1", "column 'train_time_s'")


@pytest.mark.parametrize("fmt", FORMATS)
def test_semantic_errors(tmp_path: Path, fmt: str) -> None:
    cols = _base_columns()
    cols["model_hash"][4] = "0" * 32
    path = write_release_file(tmp_path / f"h.{EXT[fmt]}", kind="base", columns=cols, fmt=fmt, seed=0)
    with pytest.raises(ReleaseFormatError, match="not a model of the BLOX space") as exc:
        read_release_file(path)
    _expect(exc, path, "row 4", "column 'model_hash'")
    assert read_release_file(path, validate=False).columns["model_hash"][4] == "0" * 32
    cols = _base_columns()
    cols["model_hash"][5] = cols["model_hash"][2]
    path = write_release_file(tmp_path / f"d.{EXT[fmt]}", kind="base", columns=cols, fmt=fmt, seed=0)
    with pytest.raises(ReleaseFormatError, match=r"duplicate hash .* \(first in row 2\)") as exc:
        read_release_file(path)
    _expect(exc, path, "row 5", "column 'model_hash'")
    hashes = list(all_hashes()[10:15])
    vecs = [Arch.from_hash(h).vec for h in hashes]
    vecs[3], vecs[4] = vecs[4], vecs[3]
    info = {"model_hash": hashes, "params": [1] * 5, "flops": [2] * 5, "arch_vec": vecs}
    path = write_release_file(tmp_path / f"a.{EXT[fmt]}", kind="info", columns=info, fmt=fmt)
    with pytest.raises(ReleaseFormatError, match="hashes to") as exc:
        read_release_file(path)
    _expect(exc, path, "row 3", "column 'arch_vec'")


def test_custom_stream_errors(tmp_path: Path, base_files: dict[str, Path]) -> None:
    header, payload = _split(base_files["custom"])
    cases = {"truncated zlib stream": payload[:-7], "bad zlib stream": b"\x00\x01garbage" + payload[9:],
             "trailing bytes after the zlib stream": payload + b"\x00\x00"}
    raw = zlib.decompress(payload)
    total_bits, nrows = struct.unpack_from("<QI", raw)
    cases["does not match"] = zlib.compress(struct.pack("<QI", total_bits + 8, nrows) + raw[12:])
    cases["trailing bytes after the last row"] = zlib.compress(struct.pack("<QI", total_bits, nrows - 1) + raw[12:])
    cases["ends inside this value"] = zlib.compress(struct.pack("<QI", total_bits - 8, nrows) + raw[12:-1])
    for match, data in cases.items():
        path = _join(tmp_path / "s.blox", header, data)
        with pytest.raises(ReleaseFormatError, match=match) as exc:
            read_release_file(path)
        _expect(exc, path)
    with pytest.raises(ReleaseFormatError, match="row 5, column 'train_time_s'"):
        read_release_file(_join(tmp_path / "s.blox", header, cases["ends inside this value"]))


_DEEP = "[" * 5000 + "]" * 5000  # deeper than Python's recursion limit


def test_deeply_nested_csv_cells_are_refused_by_the_format(tmp_path: Path, base_files: dict[str, Path]) -> None:
    header, payload = _split(base_files["csv"])
    lines = payload.decode().splitlines()
    for cell, match in ((_DEEP, "nested deeper than the format allows"), ("[1.0, [2.0]]", "nested deeper"),
                        ("[1.0, " + "1" * 5000 + "]", "bad list literal")):
        edited = lines.copy()
        parts = edited[3].split('"')
        edited[3] = parts[0] + '"' + cell + '"' + parts[2]  # data row 2, column val_top1
        path = _join(tmp_path / "deep.csv", header, "\n".join(edited).encode())
        with pytest.raises(ReleaseFormatError, match=match) as exc:
            read_release_file(path)
        _expect(exc, path, "row 2", "column 'val_top1'")
    edited = lines.copy()
    edited[2] = edited[2].rsplit(",", 1)[0] + "," + "7" * 5000  # past Python's int digit limit
    with pytest.raises(ReleaseFormatError, match="does not fit in 64 bits") as exc:
        read_release_file(_join(tmp_path / "digits.csv", header, "\n".join(edited).encode()))
    _expect(exc, tmp_path / "digits.csv", "row 1", "column 'train_time_s'")
    hashes = list(all_hashes()[:3])
    info = write_release_file(tmp_path / "blox-info.csv", kind="info", fmt="csv", columns={
        "model_hash": hashes, "params": [1] * 3, "flops": [2] * 3, "arch_vec": [Arch.from_hash(h).vec for h in hashes]})
    header, payload = _split(info)
    lines = payload.decode().splitlines()
    lines[2] = lines[2].split('"')[0] + '"' + _DEEP + '"'
    with pytest.raises(ReleaseFormatError, match=r"nested deeper .* an arch vector is") as exc:
        read_release_file(_join(info, header, "\n".join(lines).encode()))
    _expect(exc, info, "row 1", "column 'arch_vec'")


def _pickle_with(rows: list, opcodes: bytes) -> bytes:
    """Pickle ``rows``, then swap the placeholder string ``"XYZ"`` for raw pickle ``opcodes`` (one value)."""
    data = pickle.dumps(rows, protocol=2)
    assert data.count(b"X\x03\x00\x00\x00XYZ") == 1
    return data.replace(b"X\x03\x00\x00\x00XYZ", opcodes)


def test_deeply_nested_pickle_values_are_refused_by_the_format(tmp_path: Path, base_files: dict[str, Path]) -> None:
    header, _ = _split(base_files["pickle"])
    deep = b"]" * 100_000 + b"a" * 99_999  # a list nested 100,000 deep, built without recursion
    cycle = b"]q\xf0h\xf0a"  # a list that contains itself
    rows = [[h, [50.0] * 5, 60.0, 10] for h in all_hashes()[:3].tolist()]
    for col, name in enumerate(KIND_COLUMNS["base"]):
        for opcodes in (deep, cycle):
            edited = [list(r) for r in rows]
            edited[1][col] = "XYZ"
            path = _join(tmp_path / "deep.pickle", header, _pickle_with(edited, opcodes))
            with pytest.raises(ReleaseFormatError, match="nested deeper than the format allows") as exc:
                read_release_file(path)
            _expect(exc, path, "row 1", f"column '{name}'")
    edited = [list(r) for r in rows]
    edited[2][1] = [50.0, "XYZ", 50.0]  # the bad value inside an otherwise fine per-epoch list
    path = _join(tmp_path / "inner.pickle", header, _pickle_with(edited, deep))
    with pytest.raises(ReleaseFormatError, match="a per-epoch value is a flat list of numbers") as exc:
        read_release_file(path)
    _expect(exc, path, "row 2", "column 'val_top1'")
    hashes = all_hashes()[:3].tolist()
    info = write_release_file(tmp_path / "blox-info.pickle", kind="info", fmt="pickle", columns={
        "model_hash": hashes, "params": [1] * 3, "flops": [2] * 3, "arch_vec": [Arch.from_hash(h).vec for h in hashes]})
    header, _ = _split(info)
    info_rows = [[h, 1, 2, Arch.from_hash(h).vec] for h in hashes]
    info_rows[0][3] = [info_rows[0][3][0], info_rows[0][3][1], [[0], [0, 0, 0, "XYZ"]]]
    with pytest.raises(ReleaseFormatError, match=r"nested deeper .* an arch vector is") as exc:
        read_release_file(_join(info, header, _pickle_with(info_rows, deep)))
    _expect(exc, info, "row 0", "column 'arch_vec'")


def test_writer_refuses_unrepresentable_values(tmp_path: Path) -> None:
    bench = {"model_hash": list(all_hashes()[:3]), "latency": [0.01, 17.5, 0.02]}
    with pytest.raises(ReleaseFormatError, match="0 <= x < 16.777216") as exc:
        write_release_file(tmp_path / "b.blox", kind="bench", columns=bench, fmt="custom", device="cpu")
    _expect(exc, tmp_path / "b.blox", "row 1", "column 'latency'")
    cols = _base_columns()
    cols["test_top1"] = cols["test_top1"] + 60
    with pytest.raises(ReleaseFormatError, match="outside 0..100"):
        write_release_file(tmp_path / "a.blox", kind="base", columns=cols, fmt="custom", seed=0)
    assert not list(tmp_path.iterdir())  # nothing half-written


# --------------------------------------------------------------------------- names and custom types


def test_find_release_files(tmp_path: Path) -> None:
    names = ["blox-info.csv", "blox-base-0.pickle", "blox-ext-12.blox", "blox-env-3.csv", "blox-bench-gtx-1080ti.blox",
             "blox-base-0.pickle.part", "blox-base-x.csv", "blox-foo.csv", "README.md", "blox-info.json"]
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / "blox-base-1.csv").mkdir()
    found = {f.path.name: f for f in find_release_files(tmp_path)}
    assert set(found) == set(names[:5])
    assert found["blox-ext-12.blox"][1:] == ("ext", 12, None, "blox")
    assert found["blox-bench-gtx-1080ti.blox"][1:] == ("bench", None, "gtx-1080ti", "blox")
    assert found["blox-info.csv"][1:] == ("info", None, None, "csv")
    assert found["blox-env-3.csv"].seed == 3


def test_custom_types_round_trip() -> None:
    h = [str(x) for x in all_hashes()[:4]]
    arch = np.array([[[0, 1, 1, 0, 0], [2, 2, 1, 1, 1], [1, 0, 0, 1, 0]]] * 4)
    counts = np.array([[4000, 4100, 4200], [4300, 4400, -1], [5000, -1, -1], [0, 1, 2]])
    lens = np.array([3, 2, 1, 3])
    floats = np.array([[0.5, 4.6, 16.777215], [1e-6, 0.0, np.nan], [2.25, np.nan, np.nan], [1, 2, 3]])
    names = ("h", "s", "i", "f", "a", "val_q", "val_list", "loss_list", "val_eq")
    types = [ColumnType("hash"), ColumnType("str"), ColumnType("int"), ColumnType("float"), ColumnType("arch"),
             parse_column_type("b_100_4999_13"), parse_column_type("list[b_0_5000_13]"),
             parse_column_type("list[float]"), parse_column_type("list[b_3_9_3]")]
    assert [str(t) for t in types][5:] == ["b_100_4999_13", "list[b_0_5000_13]", "list[float]", "list[b_3_9_3]"]
    cols = {"h": h, "s": ["", "x", "cuda 10.2", "a" * 255], "i": np.array([0, 1, 2**32 - 1, 7]),
            "f": np.array([0.0, 1.5, 16.777215, 0.000001]), "a": arch, "val_q": np.array([100, 4999, 2500, 101]),
            "val_list": counts, "loss_list": floats, "val_eq": 3 + (np.arange(20).reshape(4, 5) % 7)}
    lengths = {"val_list": lens, "loss_list": lens, "val_eq": np.full(4, 5)}
    out, out_lens = decode_custom(encode_custom(names, types, cols, lengths), names, types)
    assert out["h"] == h and out["s"] == cols["s"]
    assert out["i"].tolist() == [0, 1, 2**32 - 1, 7] and out["f"].tolist() == [0.0, 1.5, 16.777215, 0.000001]
    assert np.array_equal(np.array([[[v[0][0], *v[1]] for v in row] for row in out["a"]]), arch)
    assert np.array_equal(out["val_q"], accuracy_values(cols["val_q"], 5000))
    mask = np.arange(3) < lens[:, None]
    assert np.array_equal(out["val_list"][mask], accuracy_values(counts[mask], 5000))
    assert np.isnan(out["val_list"][~mask]).all() and out_lens["val_list"].tolist() == lens.tolist()
    assert np.array_equal(out["loss_list"], np.where(mask, floats, np.nan), equal_nan=True)
    assert np.array_equal(out["val_eq"], accuracy_values(cols["val_eq"], 5000))
    # exact bit layout: u8 length 3, then 1, 2, 3 as 3-bit values LSB-first: bits 100 010 110 -> 0xD1 0x00;
    # total_bits as the original writer counts it: 32 (nrows) + 8 (length) + 9 (values) + 9 % 8 (pad_write quirk)
    payload = encode_custom(["val_x"], [parse_column_type("list[b_0_7_3]")], {"val_x": np.array([[1, 2, 3]])},
                            {"val_x": np.array([3])})
    assert zlib.decompress(payload) == struct.pack("<QI", 50, 1) + bytes([3, 0xD1, 0x00])
    payload = encode_custom(["model_hash", "latency", "arch_vec"],
                            [ColumnType("hash"), ColumnType("float"), ColumnType("arch")],
                            {"model_hash": [h[0]], "latency": np.array([1.5]), "arch_vec": arch[:1]}, {})
    body = zlib.decompress(payload)[12:]
    assert body[:16] == int(h[0], 16).to_bytes(16, "little")
    assert body[16:19] == (1_500_000).to_bytes(3, "little")
    assert body[19:] == bytes([(1 << 3) | 4, (8 << 3) | 7, (3 << 3) | 2])
    with pytest.raises(ReleaseFormatError):
        parse_column_type("b_9_3_4")
    with pytest.raises(ReleaseFormatError):
        parse_column_type("list[str]")
