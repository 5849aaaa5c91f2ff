"""Blox-mini as a Syne Tune blackbox, Syne Tune's simulator on it, and the on-disk export.

Syne Tune itself runs (no mocks): its ``BlackboxTabular``, ``UserBlackboxBackend``, ``Tuner`` with the
simulator callback, ``RandomSearch`` and ``ASHA``, and its own loader for the exported folder. Every reported
value is checked against the store's own reads (``store.get`` per seed and epoch).
"""

from __future__ import annotations

import numpy as np
import pytest

from blox_env.datasets.store.core import open_store
from blox_env.errors import InvalidArgumentError
from blox_env.extras import missing_modules

pytestmark = pytest.mark.skipif(bool(missing_modules("syne-tune")),
                                reason='needs the syne-tune extra: pip install "blox-env[syne-tune]"')
MINI_BLOCKS = [1, 8, 9, 10, 11, 23, 24, 27, 33]
MINI_SEEDS = (0, 1, 2)
CURVES = ("val_top1", "val_loss", "val_top5", "train_top1", "train_loss", "train_top5")


@pytest.fixture(scope="module")
def store():
    return open_store("blox-mini")


@pytest.fixture(scope="module")
def bb(store):
    from blox_env.integrations.syne_tune import blackbox

    return blackbox(store)


def index_of(stage0: int, stage1: int, stage2: int) -> int:
    return int(stage0) + 45 * int(stage1) + 2025 * int(stage2)


def store_values(store, index: int, seed: int, epoch: int) -> dict[str, float]:
    """What the blackbox must report for a model at a seed label and epoch, read from the store."""
    out = {f"metric_{m}": float(store.get(m, [index], seed=seed, epoch=epoch, best=False)[0]) for m in CURVES}
    out["metric_valid_error"] = 1.0 - out["metric_val_top1"] / 100.0
    elapsed = float(store.get("train_time_s", [index], seed=seed, epoch=epoch)[0])
    before = float(store.get("train_time_s", [index], seed=seed, epoch=epoch - 1)[0]) if epoch > 1 else 0.0
    out["metric_elapsed_time"], out["metric_runtime"] = elapsed, elapsed - before
    out["metric_params"] = float(store.get("params", [index])[0])
    out["metric_flops"] = float(store.get("flops", [index])[0])
    return out


def test_the_blackbox_has_the_space_fidelities_seeds_and_named_objectives(store, bb) -> None:
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
    from syne_tune.config_space import Categorical

    assert isinstance(bb, BlackboxTabular)
    assert list(bb.configuration_space) == ["stage0", "stage1", "stage2"]
    for domain in bb.configuration_space.values():
        assert isinstance(domain, Categorical) and sorted(domain.categories) == MINI_BLOCKS
    assert list(bb.fidelity_space) == ["epochs"] and bb.fidelity_space["epochs"].upper == 12
    assert bb.fidelity_values.tolist() == list(range(1, 13)) and bb.fidelity_name() == "epochs"
    assert bb.num_seeds == 3 and len(bb.hyperparameters) == 729
    assert all(n.startswith("metric_") for n in bb.objectives_names)
    assert {"metric_valid_error", "metric_elapsed_time", "metric_runtime", "metric_val_top1"} <= set(
        bb.objectives_names)
    meta = bb.metadata
    assert meta["metric_elapsed_time"] == "metric_elapsed_time" and meta["metric_default"] == "metric_valid_error"
    assert meta["time_attr"] == "epochs" and meta["seeds"] == list(MINI_SEEDS) and meta["benchmark"] == "blox-mini"
    assert meta["modes"]["metric_val_top1"] == "max" and meta["modes"]["metric_valid_error"] == "min"
    assert meta["models_left_out"] == 0 and sorted(meta["model_index"]) == sorted(np.asarray(store.index).tolist())


@pytest.mark.parametrize(("config", "epoch"), [((1, 9, 10), 1), ((33, 33, 9), 5), ((10, 11, 23), 12)])
def test_objective_function_is_the_store_at_every_seed(store, bb, config, epoch) -> None:
    cfg = dict(zip(("stage0", "stage1", "stage2"), config))
    for i, label in enumerate(MINI_SEEDS):
        got = bb.objective_function(cfg, fidelity={"epochs": epoch}, seed=i)
        want = store_values(store, index_of(*config), label, epoch)
        assert {k: float(v) for k, v in got.items()} == pytest.approx(want, rel=1e-12)
    # the cumulative time at the last epoch is the run's recorded training time
    full = bb.objective_function(cfg, fidelity=12, seed=0)
    assert float(full["metric_elapsed_time"]) == pytest.approx(
        store.get("train_time_s", [index_of(*config)], seed=0)[0])


def check_results(store, df, *, seed_label: int | None) -> None:
    """Every reported row equals the store's value of its model at its epoch (and seed)."""
    for trial_id, rows in df.groupby("trial_id"):
        first = rows.iloc[0]
        index = index_of(first["config_stage0"], first["config_stage1"], first["config_stage2"])
        epochs = rows["epochs"].astype(int).tolist()
        assert epochs == list(range(1, len(epochs) + 1)), trial_id  # every epoch reported, in order
        labels = MINI_SEEDS if seed_label is None else (seed_label,)
        matches = [label for label in labels
                   if all(float(row[k]) == pytest.approx(v, rel=1e-12)
                          for _, row in rows.iterrows()
                          for k, v in store_values(store, index, label, int(row["epochs"])).items())]
        assert matches, f"trial {trial_id} (model {index}) does not match the store at seed(s) {labels}"


def test_random_search_on_the_simulator_with_4_workers_reports_the_stores_values(store, bb, tmp_path) -> None:
    from syne_tune.optimizer.baselines import RandomSearch

    from blox_env.integrations.syne_tune import simulate

    scheduler = RandomSearch(bb.configuration_space, metrics=["metric_valid_error"], random_seed=0)
    np.random.seed(0)  # Syne Tune 0.16's RandomSearcher samples from numpy's global RNG, not its random_seed
    df = simulate(bb, scheduler, n_workers=4, max_trials=12, seed=1, output_dir=tmp_path)
    assert df["trial_id"].nunique() == 12
    assert (df.groupby("trial_id")["epochs"].max() == 12).all()  # random search trains every trial fully
    check_results(store, df, seed_label=MINI_SEEDS[1])
    # four workers on the simulated clock: the first four trials run side by side
    starts = df.groupby("trial_id")["st_tuner_time"].min().sort_index()
    assert starts.iloc[3] < df[df["trial_id"] == 0]["st_tuner_time"].max()
    assert (tmp_path / "blox").parent == tmp_path and any(tmp_path.iterdir())  # Syne Tune's files went there
    np.random.seed(0)
    again = simulate(bb, RandomSearch(bb.configuration_space, metrics=["metric_valid_error"], random_seed=0),
                     n_workers=4, max_trials=12, seed=1, output_dir=tmp_path / "again")
    assert again[["trial_id", "epochs", "metric_val_top1"]].equals(df[["trial_id", "epochs", "metric_val_top1"]])


def test_asha_on_the_simulator_stops_trials_early_and_reports_the_stores_values(store, bb, tmp_path) -> None:
    from syne_tune.optimizer.baselines import ASHA

    from blox_env.integrations.syne_tune import simulate

    scheduler = ASHA(bb.configuration_space, metric="metric_valid_error", time_attr="epochs", max_t=12,
                     random_seed=0)
    df = simulate(bb, scheduler, n_workers=4, max_trials=16, seed=0, output_dir=tmp_path)
    assert df["trial_id"].nunique() == 16
    last = df.groupby("trial_id")["epochs"].max()
    assert (last < 12).any() and (last == 12).any()  # some trials stopped at a rung, some trained fully
    check_results(store, df, seed_label=MINI_SEEDS[0])


def test_without_a_seed_each_trial_uses_one_of_the_runs_seeds(store, bb, tmp_path) -> None:
    from syne_tune.optimizer.baselines import RandomSearch

    from blox_env.integrations.syne_tune import simulate

    df = simulate(bb, RandomSearch(bb.configuration_space, metrics=["metric_valid_error"], random_seed=3),
                  max_trials=6, output_dir=tmp_path)
    check_results(store, df, seed_label=None)


@pytest.mark.parametrize("name", ["REA", "TPE", "BORE", "CQR", "BOHB", "ASHABORE", "ASHACQR"])
def test_more_syne_tune_schedulers_run_on_the_simulator(store, bb, tmp_path, name: str) -> None:
    from syne_tune.optimizer import baselines

    cls = getattr(baselines, name)
    multi_fidelity = name.startswith(("ASHA", "BOHB"))
    kwargs = {"time_attr": "epochs", "max_t": 12} if multi_fidelity else {}
    scheduler = cls(bb.configuration_space, metric="metric_valid_error", random_seed=0, **kwargs)
    from blox_env.integrations.syne_tune import simulate

    df = simulate(bb, scheduler, n_workers=4, max_trials=10, seed=2, output_dir=tmp_path)
    assert df["trial_id"].nunique() == 10
    check_results(store, df, seed_label=MINI_SEEDS[2])


def test_the_export_loads_back_in_syne_tune_with_equal_values(store, bb, tmp_path) -> None:
    from syne_tune.blackbox_repository.blackbox_tabular import deserialize
    from syne_tune.blackbox_repository.serialize import deserialize_metadata

    from blox_env.integrations.syne_tune import export, load

    folder = export(tmp_path / "blox-mini", store)
    tasks = deserialize(str(folder))  # Syne Tune's own loader
    assert list(tasks) == ["digits"]
    back = tasks["digits"]
    assert back.objectives_names == bb.objectives_names
    assert back.fidelity_values.tolist() == list(range(1, 13)) and back.num_seeds == 3
    assert {k: sorted(v.categories) for k, v in back.configuration_space.items()} == {
        k: MINI_BLOCKS for k in ("stage0", "stage1", "stage2")}
    assert back.fidelity_space["epochs"].upper == 12
    assert back.hyperparameters.astype(int).equals(bb.hyperparameters.astype(int))
    # the format stores float32: the loaded values are the store's values rounded to float32, exactly
    assert np.array_equal(back.objectives_evaluations, bb.objectives_evaluations.astype(np.float32))
    cfg = {"stage0": 33, "stage1": 33, "stage2": 9}
    got = back.objective_function(cfg, fidelity=7, seed=2)
    for k, v in store_values(store, index_of(33, 33, 9), MINI_SEEDS[2], 7).items():
        assert float(got[k]) == float(np.float32(v)), k
    meta = deserialize_metadata(str(folder))
    assert meta["metric_elapsed_time"] == "metric_elapsed_time" and meta["task_names"] == ["digits"]
    assert meta["seeds"] == list(MINI_SEEDS)
    assert load(folder)["digits"].metadata["benchmark"] == "blox-mini"


def test_an_exported_blackbox_runs_on_the_simulator(store, tmp_path) -> None:
    from syne_tune.optimizer.baselines import RandomSearch

    from blox_env.integrations.syne_tune import export, load, simulate

    back = load(export(tmp_path / "bb", store))["digits"]
    df = simulate(back, RandomSearch(back.configuration_space, metrics=["metric_valid_error"], random_seed=1),
                  max_trials=4, seed=0, output_dir=tmp_path / "st")
    assert df["trial_id"].nunique() == 4
    for _, row in df.iterrows():
        index = index_of(row["config_stage0"], row["config_stage1"], row["config_stage2"])
        want = store.get("val_top1", [index], seed=0, epoch=int(row["epochs"]), best=False)[0]
        assert float(row["metric_val_top1"]) == float(np.float32(want))


def test_bad_arguments_are_refused(store, bb, tmp_path) -> None:
    from blox_env.integrations.syne_tune import export, simulate, simulator_backend

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InvalidArgumentError, match="exists and is not an empty folder"):
        export(tmp_path / "full", store)
    with pytest.raises(InvalidArgumentError, match="parent folder does not exist"):
        export(tmp_path / "no" / "such", store)
    for seed in (-1, 3, True):
        with pytest.raises(InvalidArgumentError, match=r"seed must be None or a blackbox seed in 0\.\.2"):
            simulator_backend(bb, seed=seed)
    with pytest.raises(InvalidArgumentError, match="n_workers must be an integer in 1..100000"):
        simulate(bb, None, n_workers=0, output_dir=tmp_path)


@pytest.mark.parametrize("scheduler", ["random", "asha"])
def test_the_syne_tune_example_runs(store, tmp_path, capsys, scheduler: str) -> None:
    import runpy
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "syne_tune_blox.py"
    out = runpy.run_path(str(example), run_name="example")["main"](
        ["--store", "blox-mini", "--scheduler", scheduler, "--trials", "8", "--out", str(tmp_path / "st"),
         "--export", str(tmp_path / "bb")])
    assert out["trials"] == 8
    index = index_of(out["config"]["stage0"], out["config"]["stage1"], out["config"]["stage2"])
    assert out["val_top1"] == pytest.approx(store.get("val_top1", [index], seed=0, epoch=out["epochs"],
                                                      best=False)[0])
    assert (tmp_path / "bb" / "metadata.json").is_file()
    assert "best:" in capsys.readouterr().out


def test_a_blockwise_blackbox_is_the_teachers_fine_tuning(store, tmp_path) -> None:
    from syne_tune.blackbox_repository.blackbox_tabular import deserialize
    from syne_tune.optimizer.baselines import ASHA

    from blox_env.datasets.store.blockwise import BlockwiseTables
    from blox_env.integrations.syne_tune import blackbox, export, simulate

    tables = BlockwiseTables(store)
    run = tables.ft_run("M1")
    bw = blackbox(store, teacher="M1")
    meta = bw.metadata
    assert (meta["mode"], meta["teacher"], meta["run"]) == ("blockwise", "M1", run)
    assert meta["teacher_index"] == tables.teachers["M1"].index and meta["teacher_train_time_s"] > 0
    seconds = tables.signatures("M1")["distill_time_s"]
    assert meta["distill_time_s"]["stage1"]["9"] == pytest.approx(seconds[1][9])
    assert sum(len(v) for v in meta["distill_time_s"].values()) == int(np.isfinite(seconds).sum())
    assert bw.num_seeds == 1 and bw.fidelity_values.tolist() == list(range(1, 13))
    index = index_of(1, 9, 10)
    got = bw.objective_function({"stage0": 1, "stage1": 9, "stage2": 10}, fidelity=5, seed=0)
    assert float(got["metric_val_top1"]) == store.get("val_top1", [index], seed=0, epoch=5, best=False, run=run)[0]
    assert float(got["metric_elapsed_time"]) == pytest.approx(
        store.get("train_time_s", [index], seed=0, epoch=5, run=run)[0])
    df = simulate(bw, ASHA(bw.configuration_space, metric="metric_valid_error", time_attr="epochs", max_t=12,
                           random_seed=0), max_trials=8, seed=0, output_dir=tmp_path / "st")
    for _, row in df.iterrows():
        i = index_of(row["config_stage0"], row["config_stage1"], row["config_stage2"])
        assert float(row["metric_val_top1"]) == store.get("val_top1", [i], seed=0, epoch=int(row["epochs"]),
                                                          best=False, run=run)[0]
    assert list(deserialize(str(export(tmp_path / "bw", store, teacher="M1")))) == ["digits-blockwise-M1"]
    with pytest.raises(InvalidArgumentError, match="not both"):
        blackbox(store, run="digits", teacher="M1")
    with pytest.raises(InvalidArgumentError, match="only for the 5 x 5"):
        blackbox(store, teacher="M2")
