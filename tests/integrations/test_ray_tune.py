"""BLOX searched on Ray Tune, live and tabular, every trial recorded by the driver in a trace store.

Ray Tune itself runs (no mocks) on a local Ray of 2 CPUs, shut down after the module. The trace written by
:class:`~blox_env.integrations.ray_tune.TraceCallback` is compared with Tune's own ``ResultGrid`` (every reported
epoch of every trial), tabular values with the store's reads, and a live trial with the same training run
in-process (same seed, one thread).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError
from blox_env.extras import missing_modules

pytestmark = pytest.mark.skipif(bool(missing_modules("ray-tune")),
                                reason='needs the ray-tune extra: pip install "blox-env[ray-tune]"')
MINI_BLOCKS = [1, 8, 9, 10, 11, 23, 24, 27, 33]
CURVES = ("val_top1", "val_loss", "val_top5", "train_top1", "train_loss", "train_top5")
TIMES: dict[str, float] = {}  # wall seconds of the searches


@pytest.fixture(scope="module")
def store():
    return open_store("blox-mini")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (2 CPUs, no dashboard) for the module's searches, always shut down."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def trace_rows(traces: BloxStore, name: str) -> tuple[dict[str, np.ndarray], dict]:
    return traces.read_trace(name), traces.trace_attrs(name)


def check_trace_equals_result_grid(search, columns: dict[str, np.ndarray], attrs: dict) -> int:
    """Every result Tune reports (its ResultGrid) is one trace record with equal values, and nothing else."""
    trials = {t["trial_id"]: t for t in attrs["trials"]}
    assert len(trials) == len(search.results) and attrs["status"] == "complete"
    n = 0
    for result in search.results:
        assert result.error is None
        df = result.metrics_dataframe.sort_values("training_iteration")
        entry = trials[result.metrics["trial_id"]]
        mine = columns["trial"] == entry["index"]
        assert entry["epochs_reported"] == len(df) == int(mine.sum())
        assert entry["status"] == "TERMINATED"
        assert entry["config"] == {k: int(result.config[k]) for k in ("stage0", "stage1", "stage2")}
        np.testing.assert_array_equal(columns["epoch"][mine], df["training_iteration"].to_numpy())
        np.testing.assert_array_equal(columns["epoch"][mine], np.arange(1, len(df) + 1))
        np.testing.assert_array_equal(columns["metrics/epoch"][mine], df["epoch"].to_numpy())
        for m in (*CURVES, "val_top1_best", "train_time_s", "params", "flops", "arch_index"):
            np.testing.assert_array_equal(columns[f"metrics/{m}"][mine], df[m].to_numpy(dtype=float), err_msg=m)
        assert set(columns["arch_index"][mine]) == {float(entry["arch_index"])}
        n += len(df)
    assert len(columns["trial"]) == n
    # cost per record is that epoch's training seconds; cumulative over the search in arrival order
    np.testing.assert_allclose(np.cumsum(columns["cost"]), columns["cumulative_cost"])
    assert np.all(np.diff(columns["wall_s"]) >= 0)
    return n


# ------------------------------------------------------------------------------------------ space and inputs


def test_search_space_is_one_choice_per_stage_of_the_stores_blocks(store) -> None:
    from ray.tune.search.sample import Categorical

    from blox_env.integrations.ray_tune import search_space
    from blox_env.space import SubSpace

    space = search_space(store)
    assert list(space) == ["stage0", "stage1", "stage2"]
    for domain in space.values():
        assert isinstance(domain, Categorical) and sorted(domain.categories) == MINI_BLOCKS
    assert all(d.categories == list(range(45)) for d in search_space(store, space="full").values())
    assert search_space(space=SubSpace(((1, 2), (3,), (4, 5, 6))))["stage2"].categories == [4, 5, 6]
    with pytest.raises(InvalidArgumentTypeError, match="space must be None"):
        search_space(store, space="all")


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"mode": "train"}, InvalidArgumentError, "mode must be one of 'live', 'tabular'"),
    ({"cpus": 0}, InvalidArgumentError, "cpus must be positive"),
    ({"cpus": "1"}, InvalidArgumentTypeError, "cpus must be a number"),
    ({"gpus": 1.5}, InvalidArgumentError, "gpus must be 0, a fraction in"),
    ({"gpus": -0.5}, InvalidArgumentError, "gpus must be 0, a fraction in"),
    ({"device": "cuda"}, InvalidArgumentError, "device='cuda' needs gpus > 0"),
    ({"device": "tpu"}, InvalidArgumentError, "device must be one of"),
    ({"seed": 7}, InvalidArgumentError, r"seed must be one of run 'digits''s seeds \[0, 1, 2\]"),
    ({"seed": -1}, InvalidArgumentError, "seed must be"),
    ({"epochs": 13}, InvalidArgumentError, r"epochs must be in 1..12 \(the run's 12 recorded epochs\)"),
    ({"epochs": 2.0}, InvalidArgumentTypeError, "epochs must be a positive integer"),
    ({"recipe": "digits_mini"}, InvalidArgumentError, "recipe=, data= and data_kwargs= are for mode='live'"),
    ({"space": "full"}, InvalidArgumentError, "a tabular search stays inside benchmark 'blox-mini'"),
    ({"run": "cifar"}, InvalidArgumentError, "cifar"),
    ({"mode": "live", "recipe": "nope"}, InvalidArgumentError, "unknown recipe 'nope'"),
    ({"mode": "live", "data": ""}, InvalidArgumentTypeError, "data must be a data spec"),
    ({"mode": "live", "epochs": 0}, InvalidArgumentError, "epochs must be in 1..10000"),
])
def test_trial_spec_refuses_bad_options_naming_what_is_allowed(store, kwargs, error, match) -> None:
    from blox_env.integrations.ray_tune import trial_spec

    with pytest.raises(error, match=match):
        trial_spec(benchmark=store, **kwargs)


def test_trial_spec_reads_the_live_protocol_from_the_benchmark_run(store) -> None:
    from blox_env.integrations.ray_tune import trial_spec

    spec = trial_spec(benchmark=store, mode="live", epochs=3, cpus=2, gpus=0.25)
    assert spec.benchmark == "blox-mini"  # the bundled store by name: its path differs between installs
    assert spec.recipe["name"] == "digits_mini_v2" and spec.recipe["epochs"] == 3 and spec.epochs == 3
    assert (spec.data, spec.data_kwargs) == ("digits", {"seed": 0})
    assert (spec.cpus, spec.gpus) == (2.0, 0.25)
    tab = trial_spec(benchmark=store, seed=2)
    assert (tab.mode, tab.epochs, tab.seed, tab.run) == ("tabular", 12, 2, "digits")
    prov = spec.provenance()
    assert prov["space"]["stage0"] == MINI_BLOCKS and prov["resources_per_trial"] == {"cpu": 2.0, "gpu": 0.25}


def test_trainable_carries_the_trials_resources(store) -> None:
    from ray.tune.execution.placement_groups import PlacementGroupFactory

    from blox_env.integrations.ray_tune import trainable, trial_spec

    fn = trainable(trial_spec(benchmark=store, cpus=2, gpus=0.5))
    pgf = fn._resources  # what tune.with_resources attached
    assert isinstance(pgf, PlacementGroupFactory) and pgf.required_resources == {"CPU": 2.0, "GPU": 0.5}
    with pytest.raises(InvalidArgumentTypeError, match="spec must be a TrialSpec"):
        trainable({"mode": "tabular"})


def test_tune_search_refuses_bad_search_options_before_starting_ray(store, tmp_path: Path) -> None:
    import ray

    from blox_env.integrations.ray_tune import tune_search

    for kwargs, match in [({"num_samples": 0}, "num_samples must be an integer in 1..1000000"),
                          ({"metric": "test_top1"}, "metric must be one of 'val_top1'"),
                          ({"scheduler": "hyperband"}, "scheduler must be one of 'asha', 'fifo'"),
                          ({"grace_period": 13}, r"grace_period must be an integer in 1..12"),
                          ({"reduction_factor": 1}, "reduction_factor must be a number above 1"),
                          ({"max_concurrent_trials": 0}, "max_concurrent_trials must be a positive integer")]:
        with pytest.raises(InvalidArgumentError, match=match):
            tune_search(traces=tmp_path / "t.zarr", benchmark=store, **kwargs)
    with pytest.raises(InvalidArgumentTypeError, match="traces must be a trace store folder"):
        tune_search(traces=3, benchmark=store)
    with pytest.raises(InvalidArgumentError, match="bundled Blox-mini benchmark"):
        tune_search(traces=store.location, benchmark=store)
    # a trace of the same name is refused up front, not after the search
    traces = BloxStore.open_traces(tmp_path / "t.zarr", benchmark=store)
    traces.write_trace("blox-tabular-s0", [{"arch_index": 1.0}])
    with pytest.raises(InvalidArgumentError, match="already has a trace 'blox-tabular-s0'"):
        tune_search(traces=traces, benchmark=store)
    traces.close()
    assert not ray.is_initialized()


def test_trace_callback_writes_only_into_a_trace_store_of_the_benchmark(store, tmp_path: Path) -> None:
    from blox_env.integrations.ray_tune import TraceCallback

    with pytest.raises(InvalidArgumentTypeError, match="traces must be a trace store"):
        TraceCallback(str(tmp_path), "x")
    with pytest.raises(InvalidArgumentError, match="not a trace store open for writing"):
        TraceCallback(store, "x")
    traces = BloxStore.open_traces(tmp_path / "t.zarr", benchmark=store)
    try:
        with pytest.raises(InvalidArgumentError, match="trace name must be non-empty"):
            TraceCallback(traces, "a/b", benchmark=store)
        assert TraceCallback(traces, "ok", benchmark=store).status == "running"
    finally:
        traces.close()


def test_on_epoch_hook_sees_every_epoch_as_recorded() -> None:
    from blox_env.datasets.images import load_data
    from blox_env.space import Arch
    from blox_env.training.recipes import DIGITS_MINI
    from blox_env.training.train import CURVES as TRAIN_CURVES
    from blox_env.training.train import train_model

    seen: list[tuple[int, dict[str, float]]] = []
    data = load_data("synthetic", seed=0, n_train=64, n_val=32, n_test=32)
    result = train_model(Arch.from_index(0), data, recipe=DIGITS_MINI.with_(epochs=2), seed=0, device="cpu",
                         on_epoch=lambda e, v: seen.append((e, dict(v))))
    assert [e for e, _ in seen] == [1, 2]
    for e, values in seen:
        for m in TRAIN_CURVES:
            assert values[m] == result.curves[m][e - 1]
    assert 0 < seen[0][1]["train_time_s"] < seen[1][1]["train_time_s"] == pytest.approx(result.train_time_s)


# ------------------------------------------------------------------------------------------ searches


def test_tabular_asha_search_reports_the_stores_values_and_traces_every_epoch(store, local_ray,
                                                                             tmp_path: Path) -> None:
    from blox_env.integrations.ray_tune import tune_search

    start = time.perf_counter()
    search = tune_search(traces=tmp_path / "traces.zarr", benchmark=store, mode="tabular", num_samples=6,
                         epochs=4, seed=1, storage_path=tmp_path / "ray", reuse_actors=True)
    TIMES["tabular"] = time.perf_counter() - start
    traces = BloxStore.open_traces(search.traces, benchmark=store, mode="r")
    columns, attrs = trace_rows(traces, search.trace)
    n = check_trace_equals_result_grid(search, columns, attrs)
    assert n == len(search.records) and attrs["scheduler"]["class"] == "ASHAScheduler"
    assert attrs["mode"] == "tabular" and attrs["seed"] == 1 and attrs["epochs"] == 4
    assert attrs["versions"]["ray"] == local_ray.__version__ and attrs["benchmark"] == "blox-mini"
    assert attrs["space"]["stage1"] == MINI_BLOCKS and attrs["num_samples"] == 6
    # every reported value is the store's (seed 1, value at the epoch; best so far; cumulative train time)
    for i in range(n):
        index, e = int(columns["arch_index"][i]), int(columns["epoch"][i])
        for m in CURVES:
            assert columns[f"metrics/{m}"][i] == store.get(m, [index], seed=1, epoch=e, best=False)[0], m
        assert columns["metrics/val_top1_best"][i] == store.get("val_top1", [index], seed=1, epoch=e, best=True)[0]
        assert columns["metrics/train_time_s"][i] == store.get("train_time_s", [index], seed=1, epoch=e)[0]
        assert columns["metrics/params"][i] == store.get("params", [index])[0]
        assert columns["seed"][i] == 1
    assert "metrics/test_top1" not in columns  # a run cut to 4 of 12 epochs has no test values
    traces.close()


@pytest.mark.slow
def test_tabular_full_protocol_reports_the_stores_test_values_with_the_last_epoch(store, local_ray,
                                                                                 tmp_path: Path) -> None:
    from blox_env.integrations.ray_tune import tune_search

    search = tune_search(traces=tmp_path / "traces.zarr", benchmark=store, num_samples=2, scheduler="fifo",
                         storage_path=tmp_path / "ray", reuse_actors=True)
    traces = BloxStore.open_traces(search.traces, benchmark=store, mode="r")
    columns, attrs = trace_rows(traces, search.trace)
    traces.close()
    assert check_trace_equals_result_grid(search, columns, attrs) == 24 and attrs["scheduler"] == {
        "class": "FIFOScheduler"}
    for i in np.flatnonzero(columns["epoch"] == 12):
        index = int(columns["arch_index"][i])
        for m in ("test_top1", "test_top5", "test_loss", "wall_time_s"):
            assert columns[f"metrics/{m}"][i] == store.get(m, [index], seed=0)[0], m
    assert np.isnan(columns["metrics/test_top1"][columns["epoch"] < 12]).all()


@pytest.mark.slow
def test_a_failing_trial_is_recorded_with_its_status(store, local_ray, tmp_path: Path) -> None:
    from ray import tune

    from blox_env.integrations.ray_tune import TraceCallback, trainable, trial_spec

    spec = trial_spec(benchmark=store, epochs=2)
    traces = BloxStore.open_traces(tmp_path / "traces.zarr", benchmark=store)
    callback = TraceCallback(traces, "bad", benchmark=store, attrs={"seed": 0})
    space = {"stage0": tune.choice([0]), "stage1": tune.choice([1]), "stage2": tune.choice([1])}  # block 0: outside
    grid = tune.Tuner(trainable(spec), param_space=space, tune_config=tune.TuneConfig(num_samples=1),
                      run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), callbacks=[callback],
                                                verbose=0)).fit()
    assert grid.num_errors == 1 and "is outside the search's space" in str(grid[0].error)
    attrs = traces.trace_attrs("bad")
    traces.close()
    assert attrs["status"] == "complete" and attrs["length"] == 0
    assert [(t["status"], t["epochs_reported"], t["arch_index"]) for t in attrs["trials"]] == [
        ("ERROR", 0, 0 + 45 * 1 + 2025 * 1)]


@pytest.mark.slow
def test_live_asha_search_trains_four_trials_on_digits_and_traces_every_epoch(store, local_ray,
                                                                             tmp_path: Path) -> None:
    from blox_env.datasets.images import load_data
    from blox_env.integrations.ray_tune import tune_search
    from blox_env.space import Arch
    from blox_env.training.recipes import DIGITS_MINI
    from blox_env.training.train import train_model

    start = time.perf_counter()
    search = tune_search(traces=tmp_path / "traces.zarr", benchmark=store, mode="live", recipe="digits_mini",
                         epochs=2, num_samples=4, seed=0, cpus=1, storage_path=tmp_path / "ray")
    TIMES["live"] = time.perf_counter() - start
    traces = BloxStore.open_traces(search.traces, benchmark=store, mode="r")
    columns, attrs = trace_rows(traces, search.trace)
    traces.close()
    n = check_trace_equals_result_grid(search, columns, attrs)
    assert len(search.results) == 4 and 4 <= n <= 8
    assert attrs["mode"] == "live" and attrs["recipe"]["name"] == "digits_mini" and attrs["recipe"]["epochs"] == 2
    assert attrs["data"] == "digits" and attrs["versions"]["torch"].startswith("2.")
    # a trial that ran both epochs reports the test values with its last epoch
    full = [r for r in search.results if r.metrics["training_iteration"] == 2]
    assert full and all(0 <= r.metrics["test_top1"] <= 100 and r.metrics["best_epoch"] in (1, 2) for r in full)
    # deterministic: the trial's numbers are the same training run in-process (same seed, one thread)
    result = full[0]
    arch = Arch.from_blocks(*(int(result.config[k]) for k in ("stage0", "stage1", "stage2")))
    again = train_model(arch, load_data("digits", seed=0), recipe=DIGITS_MINI.with_(epochs=2), seed=0, device="cpu")
    df = result.metrics_dataframe.sort_values("training_iteration")
    for m in CURVES:
        np.testing.assert_array_equal(df[m].to_numpy(dtype=float), np.asarray(again.curves[m]), err_msg=m)
    assert result.metrics["test_top1"] == again.test_top1


@pytest.mark.slow
def test_example_runs_at_tiny_settings(local_ray, tmp_path: Path) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "ray_tune_blox.py"
    spec = importlib.util.spec_from_file_location("ray_tune_blox", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--traces", str(tmp_path / "t.zarr"), "--store", "blox-mini", "--trials", "3", "--epochs",
                       "2", "--storage", str(tmp_path / "ray")])
    assert out["trials"] == 3 and 3 <= out["records"] <= 6 and out["trace"] == "blox-tabular-s0"
    assert set(out["config"]) == {"stage0", "stage1", "stage2"} and 0 <= out["val_top1_best"] <= 100
    # live, a trial holding both CPUs: its torch threads follow the trial's CPUs
    out = module.main(["--traces", str(tmp_path / "t.zarr"), "--store", "blox-mini", "--live", "--trials", "1",
                       "--recipe", "digits_mini", "--epochs", "1", "--cpus", "2", "--storage", str(tmp_path / "ray")])
    assert out["trials"] == 1 and out["records"] == 1 and out["trace"] == "blox-live-s0"
    traces = BloxStore.open_traces(out["traces"], benchmark=open_store("blox-mini"), mode="r")
    columns = traces.read_trace("blox-live-s0")
    traces.close()
    assert list(columns["metrics/torch_threads"]) == [2.0]

