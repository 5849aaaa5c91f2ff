"""Which benchmark a result was computed on: one description of a store's data provenance for every report.

:func:`describe_benchmark` reads only the store's attributes (and, for a store that is
one local file such as the bundled Blox-mini zip, that file's size and sha256) and
returns a JSON-ready dict; :func:`benchmark_lines` renders it as Markdown lines and
:func:`benchmark_summary` as the one line printed at the top of ``blox bench``. The
store's ``kind`` is ``official`` (an import of the official BLOX release, with the
name, size and sha256 of every file as imported), ``blox-mini`` (the bundled
benchmark, with its build provenance), ``built`` (another store made by
``blox build``), ``synthetic`` (generated numbers, no trained model) or ``other``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

__all__ = ["OFFICIAL_NOTE", "SYNTHETIC_NOTE", "benchmark_lines", "benchmark_summary", "describe_benchmark"]

#: Shown with every result on the official data: its numbers are not the paper's.
OFFICIAL_NOTE = ("The official BLOX release tables were regenerated after the paper (to fix a bug in model "
                 "construction), so the released numbers differ from those printed in the paper.")
#: Shown with every result on a synthetic store.
SYNTHETIC_NOTE = "Synthetic store: generated numbers for tests and demos, not trained models."

_HASHED_FILE_LIMIT = 256 << 20  # hash a single-file store (a zip) up to this size; bigger ones are only sized


def describe_benchmark(store: Any) -> dict[str, Any]:
    """The data provenance of ``store`` (a :class:`BloxStore`) as a JSON-ready dict; see the module docstring."""
    attrs = dict(store.attrs)
    prov = dict(attrs.get("provenance") or {})
    info: dict[str, Any] = {"name": store.name, "location": str(store.location), "models": len(store),
                            "format_version": attrs.get("format_version"), "kind": _kind(store.name, prov)}
    info.update(_store_file(store.location))
    if info["kind"] == "official":
        info["files"] = [{k: f.get(k) for k in ("name", "bytes", "sha256", "kind", "format", "version") if k in f}
                         for f in prov.get("files", [])]
        info["imported_at"], info["imported_with"] = prov.get("imported_at"), prov.get("imported_with")
        coverage = attrs.get("coverage") or {}
        if coverage:
            info["complete"] = bool(coverage.get("complete"))
        info["note"] = OFFICIAL_NOTE
    elif info["kind"] == "synthetic":
        info["generator"] = {k: v for k, v in prov.items() if k != "synthetic"}
        info["note"] = SYNTHETIC_NOTE
    elif info["kind"] in ("blox-mini", "built"):
        info["model_config"] = attrs.get("model_config")
        info["runs"] = [_run_build(name, store.run_info(name).attrs) for name in store.runs]
        versions = sorted({r["code_version"] for r in info["runs"] if r.get("code_version")})
        info["version"] = ", ".join(versions) or None
    else:
        info["provenance"] = prov
    return info


def _kind(name: str, prov: dict[str, Any]) -> str:
    if prov.get("source") == "official BLOX release":
        return "official"
    if prov.get("synthetic") or name == "blox-synthetic":
        return "synthetic"
    if prov.get("source") == "blox-env builder":
        return "blox-mini" if name == "blox-mini" else "built"
    return "other"


def _store_file(location: Any) -> dict[str, Any]:
    """Size and sha256 of a store that is one local file (e.g. the bundled zip): the exact data version."""
    path = Path(str(location))
    if "://" in str(location) or not path.is_file():
        return {}
    size = path.stat().st_size
    if size > _HASHED_FILE_LIMIT:
        return {"store_bytes": size}
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"store_bytes": size, "store_sha256": digest.hexdigest()}


def _run_build(name: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """What a built run was trained on, how, and where: data, width, recipe, seeds, hardware, code."""
    recipe = attrs.get("recipe") or {}
    prov = attrs.get("provenance") or {}
    data = attrs.get("data_provenance") or {}
    out = {"run": name, "dataset": attrs.get("dataset"), "data_source": data.get("source"),
           "split_sizes": attrs.get("split_sizes"), "recipe": recipe.get("name"), "epochs": attrs.get("epochs"),
           "seeds": list(attrs.get("seeds", [])), "width": recipe.get("stem_channels"),
           "code_version": prov.get("code_version"), "torch_version": prov.get("torch_version"),
           "hardware": {k: prov[k] for k in ("processor", "cpu_count", "platform", "torch_threads_per_worker")
                        if k in prov}}
    return {k: v for k, v in out.items() if v not in (None, {}, [])}


def benchmark_summary(info: dict[str, Any]) -> str:
    """One line naming the benchmark (what ``blox bench`` prints first)."""
    head = f"{info['name']} ({info['kind']}, {info['models']:,} models"
    if info["kind"] == "official":
        files = info.get("files", [])
        head += f", {len(files)} release file(s) imported {info.get('imported_at') or '?'})"
        return f"{head}. Note: {info['note']}"
    if info["kind"] in ("blox-mini", "built"):
        head += f", built with {info.get('version') or 'unknown code version'}"
    if info.get("store_sha256"):
        head += f", sha256 {info['store_sha256'][:12]}"
    head += ")"
    return f"{head}. {info['note']}" if info.get("note") else head


def benchmark_lines(info: dict[str, Any]) -> list[str]:
    """The description as Markdown lines (a ``## Benchmark data`` section of a report)."""
    lines = ["## Benchmark data", "",
             f"`{info['name']}` ({info['kind']}): {info['models']:,} models, store format version "
             f"{info.get('format_version')}, file `{_basename(info['location'])}`."]
    if info.get("store_sha256"):
        lines.append(f"Store file: {info['store_bytes']:,} bytes, sha256 `{info['store_sha256']}`.")
    if info.get("note"):
        lines += ["", f"**Note:** {info['note']}"]
    if info["kind"] == "official":
        lines += ["", f"Imported {info.get('imported_at') or '?'} with {info.get('imported_with') or '?'}"
                  + ("" if info.get("complete", True) else " (partial release: see the store's coverage)") + ".",
                  "", "| file | bytes | sha256 |", "| --- | --- | --- |"]
        lines += [f"| {f.get('name')} | {f.get('bytes', 0):,} | `{f.get('sha256')}` |" for f in info.get("files", [])]
    elif info["kind"] == "synthetic":
        lines.append(f"Generator: {_flat(info.get('generator') or {})}.")
    elif info["kind"] in ("blox-mini", "built"):
        lines.append(f"Built with {info.get('version') or 'an unknown code version'}; model config "
                     f"{_flat(info.get('model_config') or {})}.")
        for run in info.get("runs", []):
            lines.append(f"- run `{run['run']}`: {_flat({k: v for k, v in run.items() if k != 'run'})}")
    elif info.get("provenance"):
        lines.append(f"Provenance: {_flat(info['provenance'])}.")
    return lines


def _basename(location: str) -> str:
    """The store's file or folder name: reports name the data, not the machine's paths."""
    return location.rstrip("/").rsplit("/", 1)[-1]


def _flat(d: dict[str, Any]) -> str:
    """``k v, k v`` with nested dicts in braces: compact and readable in Markdown and on a terminal."""
    parts = []
    for k, v in d.items():
        parts.append(f"{k} {{{_flat(v)}}}" if isinstance(v, dict) else f"{k} {v}")
    return ", ".join(parts)
