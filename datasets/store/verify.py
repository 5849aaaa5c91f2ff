"""``blox data verify``: check a store's structure and, with ``deep``, its checksums.

Structure (cheap: lists keys and parses metadata, decodes nothing but
``index``): every ``zarr.json`` parses and every node's parent group has
metadata; the root is a blox store of a readable format version; ``index`` is
valid; every array recorded in the checksum table exists; table arrays have
shapes consistent with ``index`` and their run's seeds and epochs; every chunk
file is present. Deep: every chunk decodes and every recorded checksum
matches. A format-1 array (fill 0, written before every chunk was kept) with
an absent chunk is only a warning: such a chunk may never have been written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from blox_env.datasets.store.bounds import META_LIMIT, file_problem, max_chunk_bytes
from blox_env.datasets.store.integrity import (
    CHECKSUMS_ATTR,
    RECOVERY,
    array_digest,
    chunk_coords,
    chunk_key,
    guard,
    index_problems,
    is_run_group,
    is_table_array,
    list_keys,
    shape_problem,
    sync,
)
from blox_env.datasets.store.schema import READABLE_VERSIONS, STORE_FORMAT
from blox_env.datasets.store.swap import is_hidden
from blox_env.datasets.store.traces import trace_group_problems
from blox_env.errors import BloxError, StoreCorruptError

__all__ = ["VerifyReport", "verify_store"]


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_store`: ``errors`` (damage), ``warnings`` (doubts), counts of what was checked."""

    location: str
    deep: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    arrays: int = 0
    chunks: int = 0
    verified: int = 0
    meta_unchecked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        what = f"{self.arrays} arrays, {self.chunks} chunk files"
        if self.deep:
            what += f", {self.verified} checksums verified"
            if self.meta_unchecked:
                what += f" ({len(self.meta_unchecked)} without their metadata)"
        if self.ok:
            return f"store {self.location}: OK ({what})"
        return f"store {self.location}: DAMAGED, {len(self.errors)} problem(s) ({what}); {RECOVERY}"


def _read_json(zstore: Any, key: str) -> dict[str, Any]:
    from zarr.core.buffer import default_buffer_prototype

    problem = file_problem(zstore, key, META_LIMIT)
    if problem:
        raise ValueError(problem)
    buf = sync(zstore.get(key, prototype=default_buffer_prototype()))
    if buf is None:
        raise FileNotFoundError(key)
    meta = json.loads(buf.to_bytes() or b"null")
    if not isinstance(meta, dict) or meta.get("node_type") not in ("array", "group"):
        raise ValueError("not a zarr v3 node (no node_type array/group)")
    return meta


def verify_store(store: Any = None, *, deep: bool = False) -> VerifyReport:
    """Check a store (a :class:`BloxStore`, or a location as :func:`open_store` takes it)."""
    from blox_env.datasets.store.core import BloxStore
    from blox_env.datasets.store.location import resolve_location, zarr_store

    resolved = None
    if isinstance(store, BloxStore):
        zstore, location = store.backing_store, store.location
    else:
        resolved = resolve_location(store if store is None or isinstance(store, str) else os.fspath(store))
        zstore, location = None, str(resolved)
    report = VerifyReport(location, deep)
    try:
        if zstore is None:
            zstore = zarr_store(resolved, mode="r")  # opens a zip: an unreadable one cannot be listed
        keys = set(list_keys(zstore))
    except BloxError:  # e.g. no store at that path
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. plain HTTP: nothing to list
        report.warnings.append(f"cannot list the store's files ({type(exc).__name__}: {exc}): structure not checked")
        return report
    hidden = {k for k in keys if is_hidden(k)}
    if hidden:
        report.warnings.append(_hidden_note(hidden, store, resolved))
        keys -= hidden
    nodes: dict[str, dict[str, Any]] = {}
    for key in sorted(k for k in keys if k == "zarr.json" or k.endswith("/zarr.json")):
        path = key[: -len("zarr.json")].rstrip("/")
        try:
            nodes[path] = _read_json(zstore, key)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            report.errors.append(f"{key}: metadata does not parse ({type(exc).__name__}: {exc})")
    root = nodes.get("")
    if root is None:
        if "zarr.json" not in keys:
            report.errors.append("zarr.json (the root metadata) is missing: not a store, or its metadata was deleted")
        return report
    attrs = root.get("attributes") or {}
    if root.get("node_type") != "group" or attrs.get("format") != STORE_FORMAT or attrs.get(
            "format_version") not in READABLE_VERSIONS:
        report.errors.append(f"zarr.json (the root metadata): a {root.get('node_type')} with format "
                             f"{attrs.get('format')!r} version {attrs.get('format_version')!r}, not a readable blox "
                             f"store (a group with format {STORE_FORMAT!r}, version in {READABLE_VERSIONS})")
        return report
    if deep and attrs.get("format_version", 1) >= 2 and not isinstance(attrs.get(CHECKSUMS_ATTR), dict):
        report.errors.append(f"zarr.json (the root metadata): format version {attrs.get('format_version')} records "
                             "a checksum table ('checksums'), this store has none: removed, or written by a session "
                             "that never closed the store; nothing can be verified")
    _check_arrays(report, zstore, keys, nodes, attrs, deep)
    _check_traces(report, nodes)
    return report


def _hidden_note(hidden: set[str], store: Any, resolved: Any) -> str:
    """Hidden folders are nodes being built by a writer (see .swap) or left by one that was killed."""
    from blox_env.datasets.store.lock import lock_holder

    tops = sorted({_hidden_top(k) for k in hidden})
    where = getattr(store, "location", None) or resolved
    owner = lock_holder(where) if where is not None and "://" not in str(where) else None
    state = (f"being written by pid {owner.get('pid')}" if owner else
             "left by a writer that stopped (safe to delete when no process writes the store)")
    return f"{len(tops)} hidden temporary folder(s) ({', '.join(tops[:3])}{', ...' if len(tops) > 3 else ''}): {state}"


def _hidden_top(key: str) -> str:
    """The path of a key up to its first hidden component (the temporary folder it lies in)."""
    parts = key.split("/")
    first = next(i for i, part in enumerate(parts) if part.startswith("."))
    return "/".join(parts[: first + 1])


def _check_traces(report: VerifyReport, nodes: dict[str, dict[str, Any]]) -> None:
    """Torn traces: a ``traces/<name>`` group without attributes, with missing columns or disagreeing lengths."""
    groups = sorted(p for p, m in nodes.items() if m.get("node_type") == "group" and p.startswith("traces/")
                    and p.count("/") == 1)
    for path in groups:
        shapes = {p[len(path) + 1:]: tuple(int(x) for x in (m.get("shape") or ()))
                  for p, m in nodes.items() if m.get("node_type") == "array" and p.startswith(path + "/")}
        attrs = nodes[path].get("attributes") or {}
        for problem in trace_group_problems(path.split("/", 1)[1], attrs, shapes):
            report.errors.append(problem)


def _check_arrays(report: VerifyReport, zstore: Any, keys: set[str], nodes: dict[str, dict[str, Any]],
                  attrs: dict[str, Any], deep: bool) -> None:
    import zarr

    sums = attrs.get(CHECKSUMS_ATTR) or {}
    expected_rows = attrs.get("n_rows")
    arrays = sorted(p for p, m in nodes.items() if m.get("node_type") == "array")
    n_rows = None
    if "index" not in nodes:
        report.errors.append("array 'index': missing" + (" or its metadata does not parse" if "index/zarr.json" in keys
                                                         else ""))
    unchecked = []
    for path in [p for p in ("index",) if p in arrays] + [p for p in arrays if p != "index"]:
        report.arrays += 1
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        gap = next((a for a in _ancestors(path) if nodes.get(a, {}).get("node_type") != "group"), None)
        if gap is not None:
            report.errors.append(f"array {path!r}: group {gap or '/'} has no valid zarr.json, the array is unreachable")
            continue
        try:
            with guard(report.location, f"metadata of array {path!r}"):
                arr = zarr.open_array(zstore, path=path, mode="r")
        except BloxError as exc:
            report.errors.append(str(exc))
            continue
        want = [chunk_key(arr, c) for c in chunk_coords(arr)]
        limit = max_chunk_bytes(arr)
        refused = [(k, p) for k in want for p in [file_problem(zstore, k, limit)] if p]
        if refused:
            report.errors += [f"array {path!r}: chunk {p}" for _, p in refused[:4]]
            if len(refused) > 4:
                report.errors.append(f"array {path!r}: {len(refused) - 4} more chunk file(s) refused")
            continue
        present = {k for k in want if k in keys}
        absent = [k for k in want if k not in present]
        report.chunks += len(present)
        run_attrs = nodes[parent].get("attributes") if parent in nodes else None
        table = is_table_array(path, run_attrs)
        if path == "index":
            values = None
            if not absent:
                try:
                    with guard(report.location, "array 'index'"):
                        values = arr[:].astype("int64") if arr.ndim == 1 else None
                except BloxError as exc:
                    report.errors.append(str(exc))
                    continue
            problems = index_problems(arr, values, expected=expected_rows, absent=absent)
            report.errors += [f"array 'index': {p}" for p in problems]
            n_rows = None if problems else int(arr.shape[0])
            absent = []
        elif table and n_rows is not None:
            problem = shape_problem(path, arr.shape, n_rows=n_rows,
                                    run_attrs=run_attrs if is_run_group(run_attrs) else None)
            if problem:
                report.errors.append(f"array {path!r}: {problem}")
        if absent:
            enc = dict(arr.attrs).get("encoding") or {}
            line = (f"array {path!r}: {len(absent)} of {len(want)} chunk files missing "
                    f"({', '.join(absent[:4])}{', ...' if len(absent) > 4 else ''}): those rows read as missing")
            legacy = not (enc.get("fill_missing") or enc.get("delta") or path.startswith("traces/"))
            if legacy and not table:  # e.g. block weights: zarr's own rule, an absent chunk is its fill value
                absent = []
        if absent:
            (report.warnings if legacy else report.errors).append(
                line + (" (format-1 array: the chunk may never have been written)" if legacy else ""))
        if deep:
            _check_digest(report, arr, path, present, sums.get(path), table, unchecked)
    orphans = sorted({_owner(k) for k in keys if not k.endswith("zarr.json") and not _in_array(k, set(arrays))})
    for path in orphans:
        if path not in sums:
            report.errors.append(f"{path}: data files without metadata (its zarr.json is missing?)")
    for path in sorted(set(sums) - set(arrays)):
        report.errors.append(f"array {path!r}: recorded in the checksum table but missing from the store")
    if deep and report.meta_unchecked:
        report.warnings.append(f"the metadata of {len(report.meta_unchecked)} array(s) is not covered by their "
                               "checksums (recorded before metadata checksums existed; values are checked): an "
                               "edited encoding in their zarr.json cannot be detected, e.g. "
                               f"{', '.join(report.meta_unchecked[:4])}")
    if deep and unchecked:
        report.warnings.append(f"{len(unchecked)} table array(s) carry no checksum (written by a session that did not "
                               f"close the store, or before checksums existed), e.g. {', '.join(unchecked[:4])}")


def _check_digest(report: VerifyReport, arr: Any, path: str, present: set[str], want: dict[str, Any] | None,
                  table: bool, unchecked: list[str]) -> None:
    try:
        got = array_digest(arr, path, report.location, present=present)
    except StoreCorruptError as exc:
        report.errors.append(str(exc))
        return
    if want is None:
        if table:
            unchecked.append(path)
        return
    for key in ("shape", "dtype", "chunks", "sha256"):
        if want.get(key) != got[key]:
            report.errors.append(f"array {path!r}: checksum table says {key} {want.get(key)!r}, "
                                 f"the store has {got[key]!r}" + (" (values changed)" if key == "sha256" else ""))
            return
    if want.get("meta") is None:
        report.meta_unchecked.append(path)
    elif want["meta"] != got["meta"]:
        report.errors.append(f"array {path!r}: its metadata ({path}/zarr.json: encoding, fill value, codecs) "
                             "differs from the checksum recorded when it was written: edited after writing")
        return
    report.verified += 1


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts))]


def _in_array(key: str, arrays: set[str]) -> bool:
    parts = key.split("/")
    return any("/".join(parts[:i]) in arrays for i in range(1, len(parts)))


def _owner(key: str) -> str:
    """The array folder a stray chunk key would belong to (the part before ``/c/``)."""
    return key.split("/c/", 1)[0] if "/c/" in key else key.rsplit("/", 1)[0] if "/" in key else key
