"""The shipped record of the study's live iterative row: export after a live run, replay without weights.

A live run (``blox study --live-store FOLDER``) trains, distils and fine-tunes the iterative strategy's promoted
teachers for real, recording every result in ``FOLDER``'s ``blockwise/<teacher hash>/`` groups (run names carry
the distillation config, the fine-tuning length, KD alpha and temperature and the seed; the run attributes the
recipe). :func:`export_live_record` copies those groups (no weights) to ``<out>/live-teachers.zip`` and writes
``<out>/live-teachers.json``: the teachers (index, hash), the number of searches, the tables' recipe and
distillation/fine-tuning configuration; the live searches' traces (:data:`TRACE_FIELDS`) go to
``<out>/live-teachers-traces.json.gz``.
:func:`replay_store` lays the record over a copy of the benchmark store, where the live backend in
``replay_only`` mode reads every result back (a result missing from the record raises
:class:`~blox_env.errors.LiveResultMissingError` naming the teacher), so ``blox study`` reproduces the row from
the repository.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blox_env.errors import InvalidArgumentError, StoreError

__all__ = ["RECORD_JSON", "RECORD_TRACES", "RECORD_ZIP", "export_live_record", "has_live_record", "promoted_teachers",
           "read_live_record", "read_live_traces", "replay_store"]

RECORD_ZIP = "live-teachers.zip"
RECORD_JSON = "live-teachers.json"
RECORD_TRACES = "live-teachers-traces.json.gz"
_WEIGHTS = ("library", "teacher")  # block and teacher weights: not part of the record
#: What a shipped trace row keeps (what the report reads and a replay is compared on), and of its metrics.
TRACE_FIELDS = ("step", "arch_index", "fidelity", "objective", "cost", "full_cost", "cumulative_cost", "select",
                "phase", "paper_step", "round", "teacher", "promoted", "score", "plan_budget")
TRACE_METRICS = ("val_top1", "test_top1", "normal_val_top1", "normal_test_top1", "train_time_s", "distill_cost_s")


def promoted_teachers(traces: Sequence[Sequence[dict[str, Any]]], tabulated: Sequence[int]) -> list[int]:
    """The teachers of the traces' fine-tunes that are no tabulated full teacher (sorted model indices)."""
    seen = {int(r["teacher"]) for t in traces for r in t if r.get("paper_step") == 4}
    return sorted(seen - {int(i) for i in tabulated})


def export_live_record(live_store: str | Path, traces: Sequence[Sequence[dict[str, Any]]], out: str | Path, *,
                       tables: Any) -> Path:
    """Write ``<out>/live-teachers.zip`` and ``.json`` from a live run's store and traces (see the module docstring);
    returns the JSON's path. The files are written to temporary names first and moved into place together."""
    import gzip

    from blox_env.datasets.store.location import zip_directory
    from blox_env.space import Arch

    src, dest = Path(live_store), Path(out)
    tabulated = [tables.teachers[n].index for n in tables.full_teachers()]
    teachers = promoted_teachers(traces, tabulated)
    dest.mkdir(parents=True, exist_ok=True)
    tmp_zip, tmp_json, tmp_traces = (dest / f"{name}.tmp" for name in (RECORD_ZIP, RECORD_JSON, RECORD_TRACES))
    work = dest / ".live-record.tmp"
    shutil.rmtree(work, ignore_errors=True)
    try:
        for index in teachers:
            group = src / "blockwise" / Arch.from_index(index).hash
            if not group.is_dir():
                raise StoreError(f"the live store {src} holds no results of promoted teacher {index}")
            shutil.copytree(group, work / "blockwise" / group.name, ignore=lambda d, names, top=group: [
                n for n in names if Path(d) == top and n in _WEIGHTS])
        work.mkdir(parents=True, exist_ok=True)
        zip_directory(work, tmp_zip)
        attrs = tables.attrs
        manifest = {"teachers": [{"index": i, "hash": Arch.from_index(i).hash} for i in teachers],
                    "searches": len(traces), "recipe": attrs["recipe"], "distill": attrs["distill"][-1],
                    "ft_epochs": attrs["ft_epochs"], "alpha": attrs["alpha"], "temperature": attrs["temperature"],
                    "seed": attrs["seed"], "data": attrs["data"], "traces": RECORD_TRACES}
        tmp_json.write_text(json.dumps(manifest, default=_plain, indent=1) + "\n")
        text = json.dumps([[_slim(r) for r in t] for t in traces], default=_plain, separators=(",", ":"))
        tmp_traces.write_bytes(gzip.compress(text.encode(), mtime=0))
        tmp_zip.replace(dest / RECORD_ZIP)
        tmp_traces.replace(dest / RECORD_TRACES)
        tmp_json.replace(dest / RECORD_JSON)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for tmp in (tmp_zip, tmp_json, tmp_traces):
            tmp.unlink(missing_ok=True)
    return dest / RECORD_JSON


def has_live_record(folder: str | Path) -> bool:
    """Whether ``folder`` holds a live record (its manifest and its zip)."""
    return (Path(folder) / RECORD_JSON).is_file() and (Path(folder) / RECORD_ZIP).is_file()


def read_live_record(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of the record in ``folder`` (None when the folder holds none)."""
    path = Path(folder) / RECORD_JSON
    if not has_live_record(folder):
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"the live record {path} cannot be read ({exc}): rerun `blox study --live-store ...`") \
            from exc


def read_live_traces(folder: str | Path) -> list[list[dict[str, Any]]]:
    """The live searches' traces shipped with the record in ``folder``."""
    import gzip

    path = Path(folder) / RECORD_TRACES
    try:
        return json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError, EOFError) as exc:
        raise StoreError(f"the live traces {path} cannot be read ({exc}): rerun `blox study --live-store ...`") \
            from exc


def replay_store(store_location: str | Path, folder: str | Path, work: str | Path) -> Path:
    """A writable copy of the benchmark store in ``work`` with the record of ``folder`` laid over it (checksums of
    the record's tables recorded; the copy's own are kept as they were); returns its path."""
    from blox_env.datasets.store.core import BloxStore

    src, dest = Path(store_location), Path(work) / "replay.zarr"
    if read_live_record(folder) is None:
        raise InvalidArgumentError(f"{folder} holds no live record ({RECORD_ZIP} and {RECORD_JSON})")
    if dest.exists():
        shutil.rmtree(dest)
    if src.is_dir():  # without the teachers' and blocks' weights (blockwise/<hash>/library|teacher)
        shutil.copytree(src, dest, ignore=lambda d, names: [
            n for n in names if n in _WEIGHTS and Path(d).parent.name == "blockwise"])
    elif zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as z:
            z.extractall(dest)
    else:
        raise StoreError(f"the study replays a live record over a store folder or zip on this machine, not {src}")
    with zipfile.ZipFile(Path(folder) / RECORD_ZIP) as z:
        names = z.namelist()
        bad = [n for n in names if not n.startswith("blockwise/") or ".." in Path(n).parts]
        if bad:
            raise StoreError(f"the live record {Path(folder) / RECORD_ZIP} holds {bad[0]!r}: only blockwise/ groups")
        z.extractall(dest)
    st = BloxStore.open(dest, mode="a")
    st.record_checksums(sorted({n[: -len("/zarr.json")] for n in names if n.endswith("/zarr.json")}))  # the added
    st.close()
    return dest


def _slim(row: dict[str, Any]) -> dict[str, Any]:
    """A trace row as shipped: :data:`TRACE_FIELDS` and :data:`TRACE_METRICS` of its metrics."""
    out = {k: row[k] for k in TRACE_FIELDS if k in row}
    out["metrics"] = {k: v for k, v in row.get("metrics", {}).items() if k in TRACE_METRICS}
    return out


def _plain(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
