"""The blockwise builder on a tiny real build: counts, determinism, resume, and agreement with live mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blox_env.build.benchmark import build_benchmark
from blox_env.build.blockwise import BlockwiseSpec, build_blockwise
from blox_env.datasets.store.blockwise import BlockwiseTables
from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.errors import InvalidArgumentError, StoreError
from blox_env.rewards.blockwise import BlockwiseTabularReward
from blox_env.space import SubSpace
from blox_env.training.recipes import Recipe

# 4 epochs: teachers good enough for SGD distillation with the unfloored NSR loss (2-epoch teachers have
# near-constant stage outputs, on which it blows up)
TINY = Recipe(name="tiny", epochs=4, batch_size=32, eval_batch_size=256, lr=0.05, stem_channels=2)
SPACE = SubSpace(((9,), (10,), (9, 11, 23, 2, 44)))  # 5 cheap models
SPEC = BlockwiseSpec(recipe=TINY, data="synthetic", data_kwargs=(), distill_epochs=(1, 2), ft_epochs=(1, 2))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    path = tmp_path_factory.mktemp("bwb") / "s.zarr"
    build_benchmark(path, archs=SPACE, run="r", recipe=TINY, data="synthetic", seeds=(0,), progress=False)
    return path, build_blockwise(path, spec=SPEC, progress=False)


@pytest.mark.slow
def test_build_counts_and_tables(built) -> None:
    path, report = built
    assert (report.trained_teachers, report.distill_passes, report.finetuned) == (5, 7, 2 * 2 * 5 + 3 * 5)
    tables = BlockwiseTables(open_store(path))
    assert np.isfinite(tables.matrix()).all()
    for e in (1, 2):
        assert np.isfinite(tables.finetuned("M1", e)).all() and np.isfinite(tables.finetuned("M5", e)).all()
        sig = tables.signatures("M1", e)
        assert np.isfinite(sig["distill_loss"][2, [9, 11, 23, 2, 44]]).all() and np.isnan(sig["distill_loss"]).sum() \
            == 135 - 7
    m3 = tables.signatures("M3")["lana_delta"]
    assert np.isfinite(m3).sum() == 7  # only the blocks of M1..M5: 1 + 1 + 5
    assert set(tables.attrs["build"]["seconds"]) == {"teacher", "distill", "finetune"}
    # distilled with the recipe's SGD, keeping each block's best-validation epoch (recorded with the block)
    assert [(d["epochs"], d["optimizer"], d["lr"], d["batch_size"]) for d in tables.attrs["distill"]] == [
        (1, "sgd", TINY.lr, TINY.batch_size), (2, "sgd", TINY.lr, TINY.batch_size)]
    import zarr

    m1, full = tables.teachers["M1"], SPEC.distill_configs()[-1]
    block = dict(zarr.open_group(path, mode="r")[tables.store.block_path(m1, full.key, 2, 11)].attrs)
    curve = block["val_losses"]
    assert block["distill_loss"] == min(curve[1:]) == tables.signatures("M1", 2)["distill_loss"][2, 11]
    assert block["best_epoch"] == 1 + curve[1:].index(min(curve[1:]))


@pytest.mark.slow
def test_teachers_retrain_to_the_runs_numbers(built) -> None:
    path, _ = built
    store = open_store(path)
    tables = BlockwiseTables(store)
    for arch in tables.teachers.values():
        attrs = store.teacher_attrs(arch)
        assert attrs["val_top1"] == pytest.approx(store.val_acc(arch, seed=0, run="r"), abs=1e-3)


@pytest.mark.slow
def test_rerun_is_a_no_op_and_a_torn_row_is_redone(built, tmp_path: Path) -> None:
    path, _ = built
    again = build_blockwise(path, spec=SPEC, progress=False)
    assert (again.trained_teachers, again.distill_passes, again.finetuned) == (0, 0, 0)
    store = BloxStore.open(path, mode="a")
    run = BlockwiseTables(store).ft_run("M5", 1)
    store.write_rows(run, "test_top1", [int(store.index[0])], [np.nan], seed=0)  # a row torn by a crash
    redo = build_blockwise(path, spec=SPEC, progress=False)
    assert redo.finetuned == 1 and np.isfinite(BlockwiseTables(open_store(path)).finetuned("M5", 1)).all()
    with pytest.raises(StoreError, match="built differently"):
        build_blockwise(path, spec=BlockwiseSpec(recipe=TINY, data="synthetic", data_kwargs=(), ft_epochs=(1, 3)),
                        progress=False)
    with pytest.raises(InvalidArgumentError, match="increasing positive"):
        BlockwiseSpec(ft_epochs=(8, 1))
    with pytest.raises(InvalidArgumentError, match="not one"):
        build_blockwise(tmp_path / "missing.zarr", spec=SPEC, progress=False)


@pytest.mark.slow
def test_live_blockwise_reads_the_same_rows(built) -> None:
    from blox_env.rewards.live import LiveReward
    from blox_env.training.distill import DistillConfig

    path, _ = built
    store = BloxStore.open(path, mode="a")
    tables = BlockwiseTables(store)
    live = LiveReward(store=store, data="synthetic", recipe=TINY, mode="blockwise", teacher=tables.teachers["M1"],
                      distill=DistillConfig.from_recipe(TINY, epochs=2), ft_epochs=2, device="cpu")
    tab = BlockwiseTabularReward(store, teacher="M1", ft_epochs=2)
    for arch in list(store)[:3]:
        a, b = live.evaluate(arch), tab.evaluate(arch)
        assert a.metrics["compute_s"] == 0.0  # read back, not retrained
        assert a.metrics["val_top1"] == b.metrics["val_top1"] and a.cost == pytest.approx(b.cost)


@pytest.mark.slow
def test_live_teachers_reproduce_the_tables_and_promote_for_real(built, tmp_path: Path) -> None:
    """live_teacher_backends reads the tables' own results back; any other teacher is trained, distilled and
    fine-tuned for real with the tables' recipe and recorded; the iterative teacher then uses the promoted
    model itself (no stand-in)."""
    import shutil

    from blox_env.agents import make_agent
    from blox_env.agents.strategies import iterative_teacher_search
    from blox_env.rewards.blockwise import TeacherBackends
    from blox_env.rewards.live import live_teacher_backends

    path, _ = built
    copy = tmp_path / "copy.zarr"
    shutil.copytree(path, copy)  # the module's build stays as built
    store = BloxStore.open(copy, mode="a")
    tables = BlockwiseTables(store)
    live = live_teacher_backends(store, device="cpu")
    student = next(a for a in store if a.index != tables.teachers["M1"].index)
    ev = live(tables.teachers["M1"], 2).evaluate(student)
    tab = BlockwiseTabularReward(store, teacher="M1", ft_epochs=2).evaluate(student)
    assert ev.metrics["compute_s"] == 0.0 and ev.metrics["test_top1"] == tab.metrics["test_top1"]  # same run names
    teachers = TeacherBackends(store, live=live)
    pair = teachers(tables.teachers["M3"])  # no full tables for M3: live
    assert pair.exact and pair.teacher == tables.teachers["M3"].index and pair.full is not pair.short
    first = pair.short.evaluate(student)  # M3's full-length fine-tunes are in the 5 x 5 matrix; short ones are not
    assert first.metrics["compute_s"] > 0 and first.cost > first.metrics["train_time_s"]  # teacher + blocks charged
    again = live_teacher_backends(store, device="cpu")(tables.teachers["M3"], 1).evaluate(student)
    assert again.metrics["compute_s"] == 0.0 and again.metrics["test_top1"] == first.metrics["test_top1"]
    unit = float(np.median(store.get("train_time_s", seed=0)))
    trace = iterative_teacher_search(lambda s, short: make_agent("random", short.space, seed=s), teachers,
                                     start_teacher=tables.teachers["M5"], budget=40 * unit, seed=0, rounds=2, top_k=1)
    later = [r for r in trace if r["round"] == 1]
    assert later and all(r["teacher"] == r["promoted"] for r in later)  # the promoted model itself is the teacher
