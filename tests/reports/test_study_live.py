"""The shipped record of the study's live iterative row: export, replay without weights, a miss named."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from blox_env.build.synthetic_blockwise import synthetic_blockwise
from blox_env.datasets.store.blockwise import BlockwiseTables
from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.datasets.synthetic import synthetic_store
from blox_env.errors import InvalidArgumentError, LiveResultMissingError, StoreError
from blox_env.reports.study import LiveSource, StudyConfig
from blox_env.reports.study_live import (
    RECORD_JSON,
    RECORD_ZIP,
    export_live_record,
    promoted_teachers,
    read_live_record,
    read_live_traces,
    replay_store,
)
from blox_env.rewards.live import LiveReward
from blox_env.space import Arch, SubSpace

SPACE = SubSpace(((0, 9, 21), (1, 10, 12), (2, 11, 23)))  # 27 models


@pytest.fixture(scope="module")
def bw_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("live") / "s.zarr"
    synthetic_store(path, space=SPACE, seeds=(0,), epochs=6).close()
    synthetic_blockwise(path, ft_epochs=(2, 6), distill_epochs=(1, 2))
    return path


def test_promoted_teachers_are_the_step_4_teachers_that_are_not_tabulated() -> None:
    traces = [[{"paper_step": 1, "teacher": 5}, {"paper_step": 4, "teacher": 7}, {"paper_step": 4, "teacher": 3}],
              [{"paper_step": 4, "teacher": 9}, {"paper_step": 3, "teacher": -1}]]
    assert promoted_teachers(traces, tabulated=[3, 5]) == [7, 9]


def test_replay_only_refuses_to_train_and_names_the_teacher(bw_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "c.zarr"
    shutil.copytree(bw_path, copy)
    tables = BlockwiseTables(open_store(copy))
    teacher = next(a for a in open_store(copy) if a.index not in {t.index for t in tables.teachers.values()})
    store = BloxStore.open(copy, mode="a")
    live = LiveReward(store=store, data="synthetic", mode="blockwise", teacher=teacher, replay_only=True,
                      ft_epochs=2, space=SPACE)
    student = Arch.from_index(int(store.index[0]))
    with pytest.raises(LiveResultMissingError, match=f"model {student.index}.*teacher {teacher.index}.*replay_only") \
            as caught:
        live.evaluate(student)
    assert str(caught.value).startswith("no recorded result")  # not quoted as KeyError messages are
    assert not (copy / "blockwise" / teacher.hash / "teacher").exists()  # nothing was trained
    store.close()


def test_export_and_replay_round_trip(bw_path: Path, tmp_path: Path) -> None:
    """A record copies the promoted teachers' groups without weights; laid over a copy of the benchmark store it
    gives back the very rows the live store holds."""
    live = tmp_path / "live.zarr"
    shutil.copytree(bw_path, live)
    tables = BlockwiseTables(open_store(live))
    m1 = tables.teachers["M1"]
    promoted = next(a for a in open_store(live) if a.index not in {t.index for t in tables.teachers.values()})
    # stand in for a live run: the promoted teacher's group as the live backend lays it out (M1's, renamed),
    # plus fake weights that the record must leave out
    shutil.copytree(live / "blockwise" / m1.hash, live / "blockwise" / promoted.hash)
    lib = live / "blockwise" / promoted.hash / "library"
    lib.mkdir(exist_ok=True)
    (lib / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    st = BloxStore.open(live, mode="a")
    st.record_checksums()
    st.close()
    traces = [[{"paper_step": 4, "teacher": promoted.index, "arch_index": 1, "objective": np.float64(0.5)}],
              [{"paper_step": 4, "teacher": m1.index}]]
    out = tmp_path / "out"
    manifest_path = export_live_record(live, traces, out, tables=tables)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["searches"] == 2 and manifest["teachers"] == [{"index": promoted.index, "hash": promoted.hash}]
    assert manifest["distill"] == tables.attrs["distill"][-1] and manifest["recipe"] == tables.attrs["recipe"]
    names = zipfile.ZipFile(out / RECORD_ZIP).namelist()
    assert names and all(n.startswith(f"blockwise/{promoted.hash}/") for n in names)
    assert not any("/library/" in n or "/teacher/" in n for n in names)
    assert not list(out.glob("*.tmp")) and read_live_traces(out)[0][0]["objective"] == 0.5

    replay = replay_store(bw_path, out, tmp_path / "work")
    a, b = open_store(live), open_store(replay)
    run = tables.ft_run("M1").replace(m1.hash, promoted.hash)
    np.testing.assert_array_equal(a.get("test_top1", seed=0, run=run), b.get("test_top1", seed=0, run=run))
    from blox_env.datasets.store.verify import verify_store

    assert verify_store(replay, deep=True).ok


def test_bad_records(tmp_path: Path, bw_path: Path) -> None:
    assert read_live_record(tmp_path) is None
    (tmp_path / RECORD_ZIP).write_bytes(b"")
    (tmp_path / RECORD_JSON).write_text("{not json")
    with pytest.raises(StoreError, match="cannot be read"):
        read_live_record(tmp_path)
    (tmp_path / RECORD_JSON).write_text("{}")
    with zipfile.ZipFile(tmp_path / RECORD_ZIP, "w") as z:
        z.writestr("index/zarr.json", "{}")
    with pytest.raises(StoreError, match="only blockwise/ groups"):
        replay_store(bw_path, tmp_path, tmp_path / "work")
    with pytest.raises(InvalidArgumentError, match="holds no live record"):
        replay_store(bw_path, tmp_path / "nothing", tmp_path / "work")


def test_the_out_folder_is_the_default_record_only_when_it_holds_one(tmp_path: Path) -> None:
    from blox_env.cli.study import _record_in

    assert _record_in(str(tmp_path)) is None  # a plain study without a record: a tables-only row, not a miss
    (tmp_path / RECORD_ZIP).write_bytes(b"")
    (tmp_path / RECORD_JSON).write_text("{}")
    assert _record_in(str(tmp_path)) == str(tmp_path)


def test_study_labels_a_missing_record(bw_path: Path, tmp_path: Path) -> None:
    source = LiveSource.of(StudyConfig(live_record=str(tmp_path)), "iterative", str(bw_path))
    assert source.store is None and source.label is None and "no live record" in source.miss
    assert LiveSource.of(StudyConfig(live_record=str(tmp_path)), "plain", str(bw_path)).miss is None
    live = LiveSource.of(StudyConfig(live_store="x.zarr", live_seeds=3), "iterative", str(bw_path))
    assert live.label == "live" and live.seeds(10) == 3 and not live.replay


@pytest.mark.slow
def test_the_shipped_record_replays_the_studys_live_row() -> None:
    """``docs/study``'s live record, replayed over the bundled Blox-mini without weights, gives back the live run's
    traces row for row (the iterative row of study.md reproduces from the repository)."""
    from blox_env.reports.bench import best_model
    from blox_env.reports.study import METHODS, default_budgets, run_searches

    folder = Path(__file__).resolve().parents[2] / "docs" / "study"
    shipped = read_live_traces(folder)
    store = open_store()
    tables = BlockwiseTables(store)
    best = best_model(store, tables=tables)
    config = StudyConfig(methods=tuple(m for m in METHODS if m.strategy == "iterative"), live_record=str(folder),
                         executor="serial", workers=1)
    summary, traces = run_searches(store.location, tables, config=config,
                                   budgets=default_budgets(tables, config.budget_multiples), target=best.report,
                                   report=best.values or {}, best_index=best.index, best_report=best.report,
                                   progress=False)
    assert summary[0]["live"] == "replayed" and not summary[0]["not_reproduced"]
    replayed = next(iter(traces.values()))
    assert len(replayed) == len(shipped) == read_live_record(folder)["searches"]
    keys = ("arch_index", "fidelity", "objective", "cost", "teacher", "promoted", "paper_step", "plan_budget")
    for ours, theirs in zip(replayed, shipped):
        assert [tuple(r.get(k) for k in keys) for r in ours] == [tuple(r.get(k) for k in keys) for r in theirs]
