"""Proxy columns in the store (``proxies/``, ``proxy:<name>`` queries) and the resumable ``build-proxies`` job."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.datasets.synthetic import synthetic_store
from blox_env.errors import InvalidArgumentError, StoreError, StoreReadOnlyError
from blox_env.space import SubSpace

MINI_CONFIG = {"stem_channels": 4, "in_channels": 1, "image_size": 8, "num_classes": 10}
SPACE = SubSpace(((9, 10), (9, 11), (9, 10, 24)))  # 12 models


def _store(path: Path) -> Path:
    st = synthetic_store(path, space=SPACE, seeds=(0, 1), epochs=4)
    st.set_attrs(model_config=MINI_CONFIG)
    st.close()
    return path


def test_columns_queries_and_errors(tmp_path: Path) -> None:
    path = _store(tmp_path / "s.zarr")
    with BloxStore.open(path, mode="a") as st:
        assert st.proxy_names() == [] and st.proxy_init_seeds() == ()
        assert st.create_proxies(["params", "snip"], init_seeds=[3, 5], attrs={"data": "digits"}) == ["params", "snip"]
        idx = st.index[:4]
        st.write_proxies(idx, init_seed=3, values={"params": [1, 2, 3, 4], "snip": [0.5, np.nan, 1, 2]},
                         seconds={"params": [0.1] * 4, "snip": [0.2] * 4})
        st.write_proxies(idx[:2], init_seed=5, values={"params": [10, 20], "snip": [1.5, 2.5]},
                         seconds={"params": [0.1] * 2, "snip": [0.2] * 2})
        with pytest.raises(InvalidArgumentError, match="one value and one time per model"):
            st.write_proxies(idx, init_seed=3, values={"params": [1]}, seconds={"params": [1]})
        with pytest.raises(StoreError, match="init seeds \\[3, 5\\], not \\[0\\]"):
            st.create_proxies(["zen"], init_seeds=[0])
        assert st.create_proxies(["params", "zen"], init_seeds=[3, 5]) == ["zen"]  # extend: only the new one
    st = open_store(path)
    assert st.proxy_names() == ["params", "snip", "zen"] and st.proxy_init_seeds() == (3, 5)
    assert st.proxy_attrs()["data"] == "digits"
    np.testing.assert_array_equal(st.get("proxy:params", idx, init_seed=3), [1, 2, 3, 4])
    np.testing.assert_array_equal(st.get("proxy:params", idx, init_seed="mean"), [5.5, 11, 3, 4])
    np.testing.assert_array_equal(st.get("proxy:params", idx), [5.5, 11, 3, 4])  # default: mean over init seeds
    assert np.isnan(st.get("proxy:params", init_seed=3)[4:]).all()  # not computed: missing, never 0
    # the static column and the proxy never collide
    assert st.get("params", idx).min() > 1000
    np.testing.assert_array_equal(st.get_proxy("snip", idx, init_seed=3, time=True), [0.2] * 4)
    done = st.proxy_done(["params", "snip"])
    assert done.shape == (2, 12) and done[0, :4].all() and done[1, :2].all() and done.sum() == 6  # NaN value: done
    with pytest.raises(InvalidArgumentError, match="initialisation seed, not a training seed: pass init_seed="):
        st.get("proxy:params", idx, seed=0)
    with pytest.raises(InvalidArgumentError, match="init_seed is for proxy:<name> metrics only"):
        st.get("params", idx, init_seed=0)
    with pytest.raises(InvalidArgumentError, match=r"init_seed must be one of \[3, 5\] or 'mean'"):
        st.get("proxy:params", idx, init_seed=0)
    with pytest.raises(InvalidArgumentError, match="unknown proxy 'synflow': this store has params, snip, zen"):
        st.get("proxy:synflow")
    with pytest.raises(StoreReadOnlyError):
        st.create_proxies(["nwot"], init_seeds=[3, 5])
    with pytest.raises(InvalidArgumentError, match="no proxies"):
        open_store(_store(tmp_path / "empty.zarr")).get("proxy:params")


def test_job_fills_resumes_and_matches_direct_computation(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from blox_env.build.proxies import build_proxies
    from blox_env.proxies import compute_proxies, proxy_batch
    from blox_env.shapes import ModelConfig
    from blox_env.space import Arch

    path = _store(tmp_path / "s.zarr")
    names = ["l2_norm", "params", "snip", "synflow"]
    first = build_proxies(path, data="gaussian", proxies=names, init_seeds=(0, 1), batch_size=8, limit=5,
                          every=2, progress=False)
    assert (first.pairs_before, first.pairs_computed, first.models) == (0, 10, 12)
    rest = build_proxies(path, data="gaussian", proxies=names, init_seeds=(0, 1), batch_size=8, progress=False)
    assert (rest.pairs_before, rest.pairs_computed) == (10, 14)
    again = build_proxies(path, data="gaussian", proxies=names, init_seeds=(0, 1), batch_size=8, progress=False)
    assert again.pairs_computed == 0
    st = open_store(path)
    assert st.proxy_done().all()
    attrs = st.proxy_attrs()
    assert attrs["batch_size"] == 8 and attrs["data"] == "gaussian" and attrs["init_seeds"] == [0, 1]
    assert "torch" in attrs["versions"] and "synflow" in attrs["conventions"]
    batch = proxy_batch("gaussian", batch_size=8, shape=(1, 8, 8), num_classes=10)
    i = int(st.index[7])
    direct = compute_proxies(Arch.from_index(i), batch, init_seed=1, proxies=names, config=ModelConfig(**MINI_CONFIG))
    for n in names:
        assert st.get(f"proxy:{n}", [i], init_seed=1)[0] == direct[n].value
    with pytest.raises(InvalidArgumentError, match="local folder"):
        build_proxies(tmp_path / "x.zip", progress=False)
    with pytest.raises(InvalidArgumentError, match="unknown proxy"):
        build_proxies(path, proxies=["nope"], progress=False)
    with pytest.raises(InvalidArgumentError, match="init_seeds"):
        build_proxies(path, init_seeds=(), progress=False)


@pytest.mark.slow
def test_job_resumes_after_kill_9_without_lost_or_duplicate_rows(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from blox_env.build.proxies import build_proxies

    path = _store(tmp_path / "s.zarr")
    names = ["l2_norm", "params", "snip", "synflow", "nwot"]
    script = textwrap.dedent(f"""
        from blox_env.build.proxies import build_proxies
        build_proxies({str(path)!r}, data="gaussian", proxies={names!r}, init_seeds=(0, 1), batch_size=8,
                      every=1, progress=False)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.2)
            try:
                st = open_store(path)
                done = int(st.proxy_done(names).sum()) if st.proxy_names() else 0
            except Exception:  # noqa: BLE001 - the store is being created
                done = 0
            if done >= 4:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    assert 4 <= done < 24, "the child must be killed mid-job"
    st = open_store(path)
    at_kill = int(st.proxy_done(names).sum())
    assert at_kill >= done
    report = build_proxies(path, data="gaussian", proxies=names, init_seeds=(0, 1), batch_size=8, progress=False)
    assert report.pairs_before == at_kill and report.pairs_before + report.pairs_computed == 24
    st = open_store(path)
    assert st.proxy_done(names).all()
    fresh = _store(tmp_path / "fresh.zarr")
    build_proxies(fresh, data="gaussian", proxies=names, init_seeds=(0, 1), batch_size=8, progress=False)
    ref = open_store(fresh)
    for n in names:
        for s in (0, 1):
            a, b = st.get(f"proxy:{n}", init_seed=s), ref.get(f"proxy:{n}", init_seed=s)
            assert np.array_equal(a, b) or all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b)), n


def test_report_against_scipy_and_the_cli(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from scipy.stats import kendalltau, spearmanr

    from blox_env.proxies.report import PUBLISHED, proxy_report, report_markdown

    path = _store(tmp_path / "s.zarr")
    rng = np.random.default_rng(0)
    with BloxStore.open(path, mode="a") as st:
        st.create_proxies(["snip", "synflow"], init_seeds=[0, 1])
        acc = st.get("test_top1", seed="mean")
        for s in (0, 1):
            st.write_proxies(st.index, init_seed=s,
                             values={"snip": acc + rng.normal(0, 1, 12), "synflow": rng.normal(0, 1, 12)},
                             seconds={"snip": np.full(12, 0.5), "synflow": np.full(12, 0.25)})
    st = open_store(path)
    rep = proxy_report(st)
    snip = st.get("proxy:snip", init_seed=1)
    assert rep["proxies"]["snip"]["per_seed"][1]["spearman"] == pytest.approx(spearmanr(snip, acc).statistic)
    assert rep["proxies"]["snip"]["per_seed"][1]["kendall"] == pytest.approx(kendalltau(snip, acc).statistic)
    assert rep["proxies"]["snip"]["seed_stability"] == pytest.approx(
        spearmanr(st.get("proxy:snip", init_seed=0), snip).statistic)
    train = np.nanmean(st.get("train_time_s", seed="mean"))
    assert rep["proxies"]["synflow"]["cost_in_trainings"] == pytest.approx(0.25 / train)
    assert rep["static"]["params"]["spearman"] == pytest.approx(spearmanr(st.get("params"), acc).statistic)
    text = report_markdown(rep)
    assert "| snip |" in text and f"{PUBLISHED['nb201_cifar10']['snip']:.2f}" in text
    from typer.testing import CliRunner

    from blox_env.cli.root import app

    res = CliRunner().invoke(app, ["proxies", "report", str(path)])
    assert res.exit_code == 0, res.output
    assert "| synflow |" in res.output


def test_job_restricted_to_some_models(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from blox_env.build.proxies import build_proxies

    path = _store(tmp_path / "s.zarr")
    pick = open_store(path).index[[1, 5, 6]]
    report = build_proxies(path, data="gaussian", proxies=["params"], init_seeds=(0, 1), batch_size=4, archs=pick,
                           progress=False)
    assert report.pairs_computed == 6
    done = open_store(path).proxy_done()
    assert done.sum() == 6 and done[:, [1, 5, 6]].all()


def test_cli_build_proxies(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from blox_env.cli.root import app

    path = _store(tmp_path / "s.zarr")
    args = ["build-proxies", str(path), "--data", "gaussian", "--proxies", "params,l2_norm", "--init-seeds", "4",
            "--batch-size", "4", "--limit", "3", "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "3 (model, init seed) pairs computed, 0 already done, 12 models" in res.output
    st = open_store(path)
    assert st.proxy_init_seeds() == (4,) and st.proxy_done().sum() == 3
    bad = CliRunner().invoke(app, [*args[:2], "--proxies", "snp"])
    assert bad.exit_code != 0 and "unknown proxy 'snp'" in str(bad.exception or bad.output)


#: the 13 proxies of NAS-Bench-Suite-Zero, as the issue names them (no torch needed to read the table)
PROXIES = ("epe_nas", "fisher", "flops", "grad_norm", "grasp", "jacov", "l2_norm", "nwot", "params", "plain", "snip",
           "synflow", "zen")


def test_the_bundled_blox_mini_carries_all_13_proxies_at_3_init_seeds() -> None:
    store = open_store("blox-mini")
    assert sorted(store.proxy_names()) == sorted(PROXIES) and tuple(store.proxy_init_seeds()) == (0, 1, 2)
    attrs = store.proxy_attrs()
    assert attrs["data"] == "digits" and attrs["batch_size"] == 64 and "conventions" in attrs and "versions" in attrs
    for name in PROXIES:
        for seed in (0, 1, 2):
            values = store.get(f"proxy:{name}", init_seed=seed)
            seconds = store.get_proxy(name, None, init_seed=seed, time=True)
            assert values.shape == (len(store),) and np.isfinite(values).all(), name
            assert np.isfinite(seconds).all() and (seconds >= 0).all(), name
    with pytest.raises(InvalidArgumentError, match="init_seed"):
        store.get("proxy:snip", seed=0)  # the training seed is not the initialisation seed
