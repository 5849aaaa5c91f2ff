"""Builder crash windows: a kill at any setup write, then a rerun equal to a clean build.

Every write the builder's setup makes goes through one of the instrumented calls below (zarr group and
array creation, attribute writes, array writes, the store's write methods, the final rename). A kill
between two writes leaves exactly the state "before write k", so injecting a ``Killed`` (a
BaseException, like SIGKILL it skips every ``except Exception`` clean-up) before each write k, for
every k, covers every crash point of the setup. Training is replaced by replaying cached real results,
so the stores are comparable bit for bit.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import blox_env.build.benchmark as build_mod
from blox_env.build.benchmark import build_benchmark
from blox_env.build.prepare import prepare_run, run_setup_state
from blox_env.datasets.store import location
from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.errors import BuildSpecError, InvalidArgumentError, StoreCorruptError
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


def _final(path: str) -> str:
    """An array's final path: the store builds a new array under a hidden name beside it (``.blox-tmp-<name>-<token>``)
    and swaps it in, so the log names it by the name it takes."""
    return re.sub(r"\.blox-tmp-(.+)-[0-9a-f]{8}$", r"\1", path)


class Faults:
    """Logs every setup write; raises :class:`Killed` before write number ``kill_at``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, kill_at: int | None = None) -> None:
        self.log: list[str] = []
        self.kill_at = kill_at
        self.active = True
        for owner, name, label in (
            (zarr.Group, "create_array",
             lambda a, k: f"create_array {_final(a[1] if len(a) > 1 else k.get('name'))}"),
            (zarr.Group, "require_group", lambda a, k: f"require_group {a[1]}"),
            (zarr.Group, "update_attributes", lambda a, k: f"attrs {a[0].path or '/'} {_changed(a[0], a[1])}"),
            (zarr.Array, "update_attributes", lambda a, k: f"array attrs {a[0].path}"),
            (zarr.Array, "__setitem__", lambda a, k: f"array write {_final(a[0].path)}"),
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
    from blox_env.build.benchmark import BuildTask, run_task

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


#: Kill points named by the write they precede (label, occurrence) and what the store holds there.
STEPS = [
    ("create store", 0),  # nothing yet
    ("create_array index", 0),  # an empty root group in the temporary folder
    ("attrs / ['format']", 0),  # index written, root attributes not
    ("write_static", 0),  # skeleton without static costs (the old builder's first window)
    ("array write static/params", 0),  # params array created beside its name (described), values not written
    ("array write static/flops", 0),  # flops described, values not written
    ("set_attrs", 0),  # no model_config
    ("commit_directory", 0),  # complete skeleton, still under its temporary name
    ("create_run r", 0),  # the store in place, no run
    ("require_group runs/r", 0),
    ("attrs runs/r ['setup']", 0),  # run group with part of its attributes
    ("attrs runs/r ['seeds']", 0),  # "pending" written, seeds not
    ("allocate_metric train_loss", 0),  # run described, no arrays (the old builder's second window)
    ("array write runs/r/train_loss", 0),  # first array created beside its name, not filled
    ("array write runs/r/val_top1", 0),  # a delta curve described, its missing sentinel not written
    ("allocate_metric test_top1", 0),
    ("array write runs/r/test_top1", 0),
    ("allocate_metric wall_time_s", 0),
    ("allocate_metric worker", 0),
    ("create_run r", 1),  # every array allocated, no marker
    ("attrs runs/r ['setup']", 1),
    (None, 0),  # past the setup
]


def _kill_and_rerun(k: int, want: dict[str, Any], log: list[str], replay: list[Faults], tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Kill a fresh build before setup write ``k``, rerun it, and compare the store with the clean build."""
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
        assert report.trained == len(SPACE.indices()) * len(SEEDS), k  # no row was recorded before the kill
    else:
        _build(path)
    _assert_same(_snapshot(path), want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"], k  # no temporary left beside it
    store = open_store(path)
    assert np.isfinite(store.get("params")).all() and np.isfinite(store.get("test_top1", run="r", seed=0)).all()
    faults.disarm()


def test_setup_log_names_every_step(clean: tuple[dict[str, Any], list[str]]) -> None:
    _, log = clean
    for label, occurrence in STEPS:
        if label is not None:
            assert log.count(label) > occurrence, f"{label!r} #{occurrence} is not a setup write any more:\n{log}"
    assert log.index("write_static") < log.index("commit_directory") < log.index("create_run r")
    marker = len(log) - 1 - log[::-1].index("create_run r")
    after = [lab for lab in log[marker + 1:] if lab not in ("require_group runs/r", "attrs runs/r []")]
    assert after == ["attrs runs/r ['setup']"]  # the "complete" marker is the last change of the setup


@pytest.mark.parametrize(("label", "occurrence"), STEPS, ids=[f"{lab}#{o}" for lab, o in STEPS])
def test_kill_at_setup_step_then_rerun_equals_clean_build(
        label: str | None, occurrence: int, clean: tuple[dict[str, Any], list[str]], replay: list[Faults],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    want, log = clean
    k = len(log) if label is None else [i for i, lab in enumerate(log) if lab == label][occurrence]
    _kill_and_rerun(k, want, log, replay, tmp_path, monkeypatch)


@pytest.mark.slow
def test_kill_before_every_setup_write_then_rerun_equals_clean_build(
        clean: tuple[dict[str, Any], list[str]], replay: list[Faults], tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    want, log = clean
    for k in range(len(log) + 1):
        _kill_and_rerun(k, want, log, replay, tmp_path_factory.mktemp(f"k{k}"), monkeypatch)


# ------------------------------------------------------------------------------ stores of the old builder
def _arrays(path: Path) -> dict[str, Any]:
    return {k: v for k, v in _snapshot(path).items() if not k.endswith("/") and k}


def test_store_left_without_static_costs_by_the_old_builder_is_completed(
        clean: tuple[dict[str, Any], list[str]], replay: list[Faults], tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"  # the old builder killed between BloxStore.create and write_static
    BloxStore.create(path, index=SPACE.indices(), name="blox-synthetic", provenance={"source": "blox-env builder"})
    _build(path)
    want, _ = clean
    assert _arrays(path) == {k: v for k, v in want.items() if not k.endswith("/") and k}
    store = open_store(path)
    assert "static/params" in store.metric_paths() and store.attrs["model_config"] == want[""]["model_config"]


def test_run_wedged_mid_allocation_by_the_old_builder_is_completed(
        clean: tuple[dict[str, Any], list[str]], replay: list[Faults], tmp_path: Path) -> None:
    from blox_env.build.benchmark import cached_data as _data
    from blox_env.costs import macs_table, params_table
    from blox_env.training.results import result_encodings
    from blox_env.training.train import CURVES, model_config_for

    path = tmp_path / "s.zarr"  # the old builder killed after allocating the curves, before test_top1
    data = _data(DATA, ())
    config = model_config_for(data, TINY)
    store = BloxStore.create(path, index=SPACE.indices(), name="blox-synthetic",
                             provenance={"source": "blox-env builder"})
    store.write_static(params=params_table(config)[store.index], flops=macs_table(config)[store.index])
    store.set_attrs(model_config=vars(config))
    sizes = {"train": len(data.train.y), "val": len(data.val.y), "test": len(data.test.y)}
    store.create_run("r", seeds=list(SEEDS), epochs=TINY.epochs,
                     attrs={"dataset": data.name, "recipe": TINY.to_dict(), "split_sizes": sizes})
    for metric, enc in result_encodings(sizes).items():
        if metric in CURVES:
            store.allocate_metric("r", metric, encoding=enc, per_epoch=True)
    store.close()
    report = _build(path)  # the old builder: "unknown metric 'test_top1'" on every rerun
    assert report.trained == 2 and run_setup_state(open_store(path), "r") == "complete"
    want, _ = clean
    assert _arrays(path) == {k: v for k, v in want.items() if not k.endswith("/") and k}


def test_failed_setup_leaves_nothing_behind(replay: list[Faults], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(BloxStore, "write_static", full_disk)
    with pytest.raises(OSError, match="No space"):
        _build(tmp_path / "s.zarr")
    assert list(tmp_path.iterdir()) == []


def test_empty_folder_is_built_into_and_a_foreign_folder_is_refused(replay: list[Faults], tmp_path: Path) -> None:
    (tmp_path / "empty.zarr").mkdir()  # e.g. what a failed command used to leave
    assert _build(tmp_path / "empty.zarr").trained == 2
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(InvalidArgumentError, match="not a blox store"):
        _build(tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    with pytest.raises(InvalidArgumentError, match="zip"):
        _build(tmp_path / "s.zip")
    assert not (tmp_path / "s.zip").exists()


# ------------------------------------------------------------------------------ spec checks
@pytest.fixture()
def built(replay: list[Faults], tmp_path: Path) -> Path:
    path = tmp_path / "s.zarr"
    _build(path)
    return path


@pytest.mark.parametrize(("changes", "match"), [
    ({"recipe": TINY.with_(lr=0.1)}, r"run 'r' .* different spec \(recipe lr: 0.05 in the store vs 0.1 asked\)"),
    ({"recipe": TINY.with_(epochs=3)}, r"epochs: 2 in the store vs 3 asked"),
    ({"seeds": (0, 1)}, r"seeds: \[0\] in the store vs \[0, 1\] asked"),
    ({"data_kwargs": {"seed": 1}}, r"data_spec: .* in the store vs .*'seed': 1"),
    ({"data": "digits"}, r"another model configuration \(num_classes: 4 in the store vs 10 asked"),
    ({"archs": SubSpace(((9,), (10,), (12,)))}, r"no rows for 1 of the requested models"),
    ({"recipe": TINY.with_(stem_channels=4), "run": "other"}, r"another model configuration .*stem_channels"),
])
def test_rerun_with_another_spec_is_refused_and_changes_nothing(built: Path, changes: dict, match: str) -> None:
    before = _snapshot(built)
    with pytest.raises(BuildSpecError, match=match):
        _build(built, **changes)
    _assert_same(_snapshot(built), before)


def test_rerun_with_a_subset_of_the_spec_is_accepted(built: Path) -> None:
    report = _build(built, archs=SubSpace(((9,), (10,), (11,))))
    assert (report.trained, report.skipped) == (0, 1)


def test_run_damaged_after_setup_is_reported_not_silently_reallocated(built: Path) -> None:
    group = zarr.open_group(str(built), mode="r+")
    del group["runs/r/train_time_s"]
    with pytest.raises(StoreCorruptError, match="train_time_s.*rebuild"):
        _build(built)


def test_blockwise_run_path_setup_recovers_from_a_kill(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from blox_env.build.benchmark import cached_data as _data

    data = _data(DATA, ())
    run = "blockwise/0123/finetune/ft1"
    kwargs = {"seeds": [0], "recipe": TINY.with_(epochs=1), "data": data, "data_spec": {"data": data.name},
              "attrs": {"kind": "finetune"}}
    store = BloxStore.open(built, mode="a")
    faults = Faults(monkeypatch, kill_at=20)  # mid-allocation of the run's arrays
    with pytest.raises(Killed):
        prepare_run(store, run, **kwargs)
    faults.disarm()
    assert run_setup_state(store, run) == "pending"
    prepare_run(BloxStore.open(built, mode="a"), run, **kwargs)
    store = open_store(built)
    assert run_setup_state(store, run) == "complete"
    assert np.isnan(store.get("test_top1", run=run, seed=0)).all()  # allocated, all missing: nothing finished


# ------------------------------------------------------------------------------ blockwise: done = last write
def test_blockwise_counts_half_written_teachers_and_blocks_as_not_done(built: Path) -> None:
    import torch

    from blox_env.build.blockwise import _missing_blocks, _teacher_saved
    from blox_env.model import BloxModel
    from blox_env.shapes import ModelConfig
    from blox_env.space import Arch
    from blox_env.training.distill import DistillConfig, DistillResult
    from blox_env.training.library import BlockLibrary, flatten_state

    store = BloxStore.open(built, mode="a")
    teacher = Arch.from_blocks(9, 10, 9)
    lib = BlockLibrary(store, teacher)
    cfg = DistillConfig(epochs=1)
    zarr.open_group(built, mode="a").require_group(lib.key).create_array("teacher", shape=(4,), dtype="float32")
    # ^ killed inside the weights write: no tensor names yet
    assert lib.exists and not _teacher_saved(lib)
    model = BloxModel(teacher, ModelConfig(**store.attrs["model_config"]))
    lib.save_teacher(model, attrs={"seed": 0})
    assert _teacher_saved(lib)
    state = {"w": torch.ones(3)}
    store.write_block(teacher, cfg.key, 2, 9, flatten_state(state), config=cfg.to_dict())  # no signatures yet
    assert lib.has(2, 9, cfg) and _missing_blocks(lib, [(2, 9)], cfg) == [(2, 9)]
    lib.save(DistillResult(stage=2, block=9, distill_loss=0.5, lana_delta=-1.0, train_time_s=0.1, state_dict=state),
             cfg)
    assert _missing_blocks(lib, [(2, 9), (2, 11)], cfg) == [(2, 11)]


@pytest.mark.slow
def test_blockwise_build_killed_while_allocating_a_finetune_run_completes_on_rerun(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from blox_env.build.blockwise import BlockwiseSpec, build_blockwise
    from blox_env.datasets.store.blockwise import BlockwiseTables

    path = tmp_path / "s.zarr"
    recipe = TINY.with_(epochs=4)  # teachers trained enough for SGD distillation with the unfloored NSR loss
    build_benchmark(path, archs=SubSpace(((9,), (10,), (9, 11, 23, 2, 44))), run="r", recipe=recipe, data=DATA,
                    seeds=(0,), progress=False)
    spec = BlockwiseSpec(recipe=recipe, data=DATA, data_kwargs=(), distill_epochs=(1, 2), ft_epochs=(1, 2))
    allocate, calls = BloxStore.allocate_metric, []

    def killed_third_time(self: BloxStore, *args: Any, **kwargs: Any) -> None:
        calls.append(args[0])
        if len(calls) == 3:
            raise Killed("allocate_metric")
        allocate(self, *args, **kwargs)

    monkeypatch.setattr(BloxStore, "allocate_metric", killed_third_time)
    with pytest.raises(Killed):
        build_blockwise(path, spec=spec, progress=False)
    monkeypatch.setattr(BloxStore, "allocate_metric", allocate)
    report = build_blockwise(path, spec=spec, progress=False)  # the old builder: "unknown metric 'test_top1'"
    assert (report.trained_teachers, report.distill_passes) == (0, 0) and report.finetuned == 2 * 2 * 5 + 3 * 5
    tables = BlockwiseTables(open_store(path))
    assert np.isfinite(tables.finetuned("M1", 1)).all() and np.isfinite(tables.finetuned("M5", 2)).all()
