"""Builder crash windows (issue 13, defect 5): a kill at any setup write, then a rerun equal to a clean build.

Every write the builder's setup makes goes through one of the instrumented calls below (zarr group and
array creation, attribute writes, array writes, the store's write methods, the final rename). A kill
between two writes leaves exactly the state "before write k", so injecting a ``Killed`` (a
BaseException, like SIGKILL it skips every ``except Exception`` clean-up) before each write k, for
every k, covers every crash point of the setup. Training is replaced by replaying cached real results,
so the stores are comparable bit for bit.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import blox_env.datasets.build as build_mod
from blox_env.datasets import location
from blox_env.datasets.build import build_benchmark
from blox_env.datasets.build_setup import BuildSpecError, prepare_run, run_setup_state
from blox_env.datasets.encoding import Encoding
from blox_env.datasets.store import BloxStore, open_store
from blox_env.errors import InvalidArgumentError, StoreCorruptError
from blox_env.space import SubSpace
from blox_env.training.recipes import Recipe

TINY = Recipe(name="tiny", epochs=2, batch_size=32, eval_batch_size=256, lr=0.05, stem_channels=2)
SPACE = SubSpace(((9,), (10,), (9, 11)))  # 2 cheap models
DATA = "synthetic"
SEEDS = (0,)


class Killed(BaseException):
    """Stands for SIGKILL at one write: no ``except Exception`` handler runs."""


def _changed(node: Any, new: dict[str, Any]) -> list[str]:
    old = dict(node.metadata.attributes)
    return sorted(key for key in new if key not in old or old[key] != new[key])


class Faults:
    """Logs every setup write; raises :class:`Killed` before write number ``kill_at``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, kill_at: int | None = None) -> None:
        self.log: list[str] = []
        self.kill_at = kill_at
        self.active = True
        for owner, name, label in (
            (zarr.Group, "create_array", lambda a, k: f"create_array {a[1] if len(a) > 1 else k.get('name')}"),
            (zarr.Group, "require_group", lambda a, k: f"require_group {a[1]}"),
            (zarr.Group, "update_attributes", lambda a, k: f"attrs {a[0].path or '/'} {_changed(a[0], a[1])}"),
            (zarr.Array, "update_attributes", lambda a, k: f"array attrs {a[0].path}"),
            (zarr.Array, "__setitem__", lambda a, k: f"array write {a[0].path}"),
            (BloxStore, "write_static", lambda a, k: "write_static"),
            (BloxStore, "set_attrs", lambda a, k: "set_attrs"),
            (BloxStore, "create_run", lambda a, k: f"create_run {a[1]}"),
            (BloxStore, "allocate_metric", lambda a, k: f"allocate_metric {a[2]}"),
        ):
            monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name), label))
        create = BloxStore.create
        monkeypatch.setattr(BloxStore, "create", staticmethod(self._wrap(create, lambda a, k: "create store")))
        monkeypatch.setattr(location, "commit_directory",
                            self._wrap(location.commit_directory, lambda a, k: "commit_directory"))

    def disarm(self) -> None:
        """Stop killing and logging (the wrappers stay and pass every call through)."""
        self.kill_at = None
        self.active = False

    def _wrap(self, fn: Callable[..., Any], label: Callable[[tuple, dict], str]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self.active:
                if len(self.log) == self.kill_at:
                    raise Killed(label(args, kwargs))
                self.log.append(label(args, kwargs))
            return fn(*args, **kwargs)

        return wrapper


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, int], Any]:
    """Real training results of the space, cached so every build below records identical rows."""
    from blox_env.datasets.build import BuildTask, run_task

    return {(int(i), s): run_task(BuildTask(int(i), s, TINY, DATA)) for i in SPACE.indices() for s in SEEDS}


@pytest.fixture()
def replay(monkeypatch: pytest.MonkeyPatch, results: dict) -> Iterator[list[Faults]]:
    """Builds record the cached results; the first task ends a Faults' setup window."""
    faults: list[Faults] = []

    def run_task(task: Any) -> Any:
        for f in faults:
            f.active = False
        return results[(task.arch_index, task.seed)]

    monkeypatch.setattr(build_mod, "run_task", run_task)
    yield faults


def _build(path: Path, **changes: Any) -> Any:
    kwargs = {"archs": SPACE, "run": "r", "recipe": TINY, "data": DATA, "seeds": SEEDS, "progress": False}
    return build_benchmark(path, **{**kwargs, **changes})


def _snapshot(path: Path) -> dict[str, Any]:
    """Every node of a store read with zarr directly: attributes, shape, dtype and raw values."""
    group = zarr.open_group(str(path), mode="r")
    out: dict[str, Any] = {"": dict(group.attrs)}
    for name, node in group.members(max_depth=None):
        if isinstance(node, zarr.Array):
            out[name] = (node.shape, str(node.dtype), dict(node.attrs), np.asarray(node[...]).tobytes())
        else:
            out[name + "/"] = dict(node.attrs)
    return out


def _assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key] == b[key], key


def _pretend_owner_died(parent: Path) -> None:
    """The killed build ran in this test's process; mark its temporaries as owned by a dead process."""
    import json

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for marker in parent.glob(".*.owner"):
        owner = json.loads(marker.read_text())
        owner.update(pid=dead.pid, start=None)
        marker.write_text(json.dumps(owner))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, results: dict) -> tuple[dict[str, Any], list[str]]:
    """A clean build's snapshot and its setup write log."""
    mp = pytest.MonkeyPatch()
    try:
        faults = Faults(mp)

        def run_task(task: Any) -> Any:
            faults.active = False
            return results[(task.arch_index, task.seed)]

        mp.setattr(build_mod, "run_task", run_task)
        path = tmp_path_factory.mktemp("clean") / "s.zarr"
        _build(path)
    finally:
        mp.undo()
    return _snapshot(path), faults.log


#: The number of setup writes of a clean build (checked by test_setup_writes_are_all_covered).
N_SETUP_WRITES = 86


def test_setup_writes_are_all_covered(clean: tuple[dict[str, Any], list[str]]) -> None:
    _, log = clean
    assert len(log) == N_SETUP_WRITES, "\n".join(log)
    assert log[0] == "create store"
    assert log.index("write_static") < log.index("commit_directory") < log.index("create_run r")
    assert log[-1] == "attrs runs/r ['setup']" and log[-2] == "create_run r"  # the marker is the last write


@pytest.mark.parametrize("k", range(N_SETUP_WRITES + 1))
def test_kill_before_setup_write_k_then_rerun_equals_clean_build(
        k: int, clean: tuple[dict[str, Any], list[str]], replay: list[Faults], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    want, log = clean
    path = tmp_path / "s.zarr"
    faults = Faults(monkeypatch, kill_at=k)
    replay.append(faults)
    if k < len(log):
        with pytest.raises(Killed):
            _build(path)
        faults.disarm()
        _pretend_owner_died(tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "removed .s.zarr.tmp-...: left by an interrupted build"
            report = _build(path)
        assert report.trained == len(SPACE.indices()) * len(SEEDS)  # no row was recorded before the kill
    else:  # after the last setup write: the build completes
        _build(path)
    _assert_same(_snapshot(path), want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]  # no temporary left beside it
    store = open_store(path)
    assert np.isfinite(store.get("params")).all() and np.isfinite(store.get("test_top1", run="r", seed=0)).all()
