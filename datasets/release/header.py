"""Names, headers and column schema of the official BLOX release files.

A release file is ``---`` / YAML header / ``---`` / payload. The header (read with
``yaml.safe_load``, so anchors and aliases work) names the format version (1),
the search space, the data set type, the columns and the payload format. Five
kinds exist, told apart by the header's ``dataset_type`` (and ``part`` for
training files) and mirrored in the file names ``blox-info``, ``blox-base-{seed}``,
``blox-ext-{seed}``, ``blox-env-{seed}`` and ``blox-bench-{device}``; see
:data:`KIND_COLUMNS` for their columns and :data:`COLUMN_ROLES` for what each
holds (the env columns are the store's, :data:`blox_env.datasets.store.schema.ENV_COLUMNS`). A
recognised file name must agree with the header. The payloads are read by
:mod:`blox_env.datasets.release.reader`.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from blox_env.datasets.release.types import accuracy_denominator, parse_column_type, release_error
from blox_env.datasets.store.schema import ENV_COLUMNS
from blox_env.errors import ReleaseFormatError

__all__ = [
    "COLUMN_ROLES",
    "FORMAT_EXTENSIONS",
    "FORMAT_VERSION",
    "KIND_COLUMNS",
    "KIND_DATASET_TYPES",
    "LIST_ROLES",
    "ReleaseFileName",
    "ReleaseHeader",
    "check_file_name",
    "find_release_files",
    "is_int",
    "parse_header",
    "parse_release_file_name",
    "read_header_bytes",
    "read_release_header",
]

FORMAT_VERSION = 1
#: Header ``format`` -> file extension.
FORMAT_EXTENSIONS: dict[str, str] = {"pickle": "pickle", "csv": "csv", "custom": "blox"}
KIND_DATASET_TYPES: dict[str, str] = {
    "base": "training", "ext": "training", "info": "static", "env": "env", "bench": "benchmarking"}
#: Columns of each kind, in file order.
KIND_COLUMNS: dict[str, tuple[str, ...]] = {
    "base": ("model_hash", "val_top1", "test_top1", "train_time_s"),
    "ext": ("model_hash", "train_top1", "train_loss", "train_top5", "val_loss", "val_top5", "test_loss",
            "test_top5"),
    "info": ("model_hash", "params", "flops", "arch_vec"),
    "env": ("model_hash", *ENV_COLUMNS),
    "bench": ("model_hash", "latency"),
}
#: What each column holds: hash, acc_list / loss_list (per epoch), acc / loss / seconds (float), int, str, arch.
COLUMN_ROLES: dict[str, str] = {
    "model_hash": "hash", "val_top1": "acc_list", "train_top1": "acc_list", "train_top5": "acc_list",
    "val_top5": "acc_list", "train_loss": "loss_list", "val_loss": "loss_list", "test_top1": "acc",
    "test_top5": "acc", "test_loss": "loss", "latency": "seconds", "train_time_s": "int", "params": "int",
    "flops": "int", "arch_vec": "arch", **{c: "str" for c in ENV_COLUMNS},
}
LIST_ROLES: tuple[str, ...] = ("acc_list", "loss_list")
_ALLOWED_TYPES = {  # role -> custom column types it may be stored as ("b" = b_{min}_{max}_{bits})
    "hash": {"hash"}, "acc_list": {"list[b]", "list[float]"}, "loss_list": {"list[float]"},
    "acc": {"b", "float"}, "loss": {"float"}, "seconds": {"float"}, "int": {"int"}, "str": {"str"},
    "arch": {"arch"},
}
_DELIMS = (b"---\n", b"---\r\n", b"---")
_MAX_HEADER = 1 << 20
_NAME = re.compile(r"blox-(?:(info)|(base|ext|env)-(\d+)|(bench)-(.+))\.(pickle|csv|blox)")


# --------------------------------------------------------------------------- names and headers


class ReleaseFileName(NamedTuple):
    """A recognised release file: its path, kind, seed (base/ext/env), device (bench) and extension."""

    path: Path
    kind: str
    seed: int | None
    device: str | None
    ext: str


def parse_release_file_name(path: str | Path) -> ReleaseFileName | None:
    """Parse ``blox-{kind}[-{seed|device}].{pickle|csv|blox}``; ``None`` for any other name."""
    p = Path(path)
    m = _NAME.fullmatch(p.name)
    if m is None:
        return None
    info, kind, seed, bench, device, ext = m.groups()
    return ReleaseFileName(p, info or kind or bench, int(seed) if seed is not None else None, device, ext)


def find_release_files(folder: str | Path) -> list[ReleaseFileName]:
    """Release files directly inside ``folder``, sorted by name (other files, e.g. ``.part``, ignored)."""
    found = (parse_release_file_name(p) for p in sorted(Path(folder).iterdir()) if p.is_file())
    return [f for f in found if f is not None]


@dataclass(frozen=True)
class ReleaseHeader:
    """The parsed YAML header; ``raw`` keeps the whole mapping (extra fields included)."""

    version: int
    search_space: dict
    dataset_type: str
    columns: tuple[str, ...]
    format: str
    seed: int | None
    epochs: int | None
    dataset: str | None
    part: str | None
    device: str | None
    column_types: dict | None
    raw: dict

    @property
    def kind(self) -> str:
        """``info``, ``base``, ``ext``, ``env`` or ``bench``."""
        if self.dataset_type == "training":
            return str(self.part)
        return next(k for k, t in KIND_DATASET_TYPES.items() if t == self.dataset_type)


def read_header_bytes(fh: io.BufferedIOBase, path: Path) -> bytes:
    if fh.readline(_MAX_HEADER) not in _DELIMS:
        raise release_error(path, "missing header delimiter: the file must start with a line '---'")
    lines, size = [], 0
    while True:
        line = fh.readline(_MAX_HEADER)
        if line in _DELIMS:
            return b"".join(lines)
        size += len(line)
        if not line or size > _MAX_HEADER:
            raise release_error(path, "missing header delimiter: no closing '---' line after the YAML header")
        lines.append(line)


def _need(raw: dict, key: str, ok: Any, what: str, path: Path) -> Any:
    if key not in raw:
        raise release_error(path, f"header field {key!r} is missing: expected {what}")
    if not ok(raw[key]):
        raise release_error(path, f"header field {key!r} = {raw[key]!r} is invalid: expected {what}")
    return raw[key]


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_header(text: bytes, path: Path) -> ReleaseHeader:
    try:
        raw = yaml.safe_load(text.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise release_error(path, f"the header is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise release_error(path, "the header must be a YAML mapping")
    version = _need(raw, "version", is_int, f"the integer {FORMAT_VERSION}", path)
    if version != FORMAT_VERSION:
        raise release_error(path, f"unknown format version {version!r}, supported: {FORMAT_VERSION}")
    space = _need(raw, "search_space", lambda v: isinstance(v, dict), "a mapping", path)
    dtype = _need(raw, "dataset_type", lambda v: v in KIND_DATASET_TYPES.values(),
                  "one of training, static, env, benchmarking", path)
    columns = tuple(_need(raw, "columns", lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
                          "a list of column names", path))
    fmt = _need(raw, "format", lambda v: v in FORMAT_EXTENSIONS, "one of pickle, csv, custom", path)
    seed = epochs = dataset = part = device = None
    if dtype == "training":
        seed = _need(raw, "seed", lambda v: is_int(v) and v >= 0, "a seed >= 0", path)
        epochs = _need(raw, "epochs", lambda v: is_int(v) and v >= 1, "an epoch count >= 1", path)
        dataset = _need(raw, "dataset", lambda v: isinstance(v, str) and v, "a data set name", path)
        part = _need(raw, "part", lambda v: v in ("base", "ext"), "base or ext", path)
    elif dtype == "env" and "seed" in raw:
        seed = _need(raw, "seed", lambda v: is_int(v) and v >= 0, "a seed >= 0", path)
    elif dtype == "benchmarking":
        device = _need(raw, "device", lambda v: isinstance(v, str) and v, "a device name", path)
    kind = part if dtype == "training" else next(k for k, t in KIND_DATASET_TYPES.items() if t == dtype)
    if columns != KIND_COLUMNS[kind]:
        raise release_error(path, f"header columns {list(columns)} do not match a {kind} file: "
                                  f"expected {list(KIND_COLUMNS[kind])}")
    types = None
    if fmt == "custom":
        types = _need(raw, "column_types", lambda v: isinstance(v, dict) and set(v) == set(columns),
                      "a mapping from every column to its type", path)
        for col in columns:
            try:
                t = parse_column_type(types[col])
            except ReleaseFormatError as exc:
                raise release_error(path, str(exc), column=col) from None
            if t.family not in _ALLOWED_TYPES[COLUMN_ROLES[col]]:
                raise release_error(path, f"type {types[col]!r} cannot hold this column: allowed "
                                          f"{sorted(_ALLOWED_TYPES[COLUMN_ROLES[col]])}", column=col)
            if t.base == "b" and t.hi > accuracy_denominator(col):
                raise release_error(path, f"type {types[col]!r} allows counts above {accuracy_denominator(col)}",
                                    column=col)
    return ReleaseHeader(version, space, dtype, columns, fmt, seed, epochs, dataset, part, device, types, raw)


def check_file_name(header: ReleaseHeader, path: Path) -> None:
    """A recognised file name must agree with the header (kind, seed, device, extension)."""
    name = parse_release_file_name(path)
    if name is None:
        return
    problems = []
    if name.kind != header.kind:
        problems.append(f"kind {name.kind!r} vs {header.kind!r}")
    if name.ext != FORMAT_EXTENSIONS[header.format]:
        problems.append(f"extension .{name.ext} vs format {header.format!r}")
    if name.seed is not None and header.seed is not None and name.seed != header.seed:
        problems.append(f"seed {name.seed} vs {header.seed}")
    if name.device is not None and name.device != header.device:
        problems.append(f"device {name.device!r} vs {header.device!r}")
    if problems:
        raise release_error(path, "the file name disagrees with the header: " + "; ".join(problems))


def read_release_header(path: str | Path) -> ReleaseHeader:
    """Parse only the YAML header of a release file (cheap: the payload is not read)."""
    p = Path(path)
    with p.open("rb") as fh:
        header = parse_header(read_header_bytes(fh, p), p)
    check_file_name(header, p)
    return header
