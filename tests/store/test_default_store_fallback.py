"""Failed commands never break the default store (an empty or leftover default folder falls back to Blox-mini) and a
live run killed while allocating its arrays completes on a rerun."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blox_env.datasets.store.core import BloxStore, open_store
from blox_env.datasets.store.location import default_store_path, resolve_location
from blox_env.errors import StoreNotFoundError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BLOX_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_empty_default_folder_falls_back_to_blox_mini(home: Path) -> None:
    default_store_path().mkdir(parents=True)  # what a failed command used to leave behind
    loc = resolve_location(None)
    assert Path(loc).name == "blox-mini.zip"
    assert len(open_store()) == 729  # the bundled Blox-mini v2
    with pytest.raises(StoreNotFoundError, match="not a blox store"):
        resolve_location("blox")


def test_default_env_works_after_a_leftover_folder(home: Path) -> None:
    import gymnasium as gym

    import blox_env  # noqa: F401 - registers the ids

    default_store_path().mkdir(parents=True)
    env = gym.make("BloxOneShot-v0")
    env.reset(seed=0)
    _, reward, *_ = env.step(env.action_space.sample())
    assert 0.0 <= reward <= 1.0


def test_open_for_append_never_creates_a_store(tmp_path: Path) -> None:
    target = tmp_path / "nope.zarr"
    with pytest.raises(StoreNotFoundError):
        BloxStore.open(target, mode="a")
    assert not target.exists()
    assert not os.listdir(tmp_path)


def test_live_run_allocation_killed_then_rerun_completes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from blox_env.datasets.images import load_data
    from blox_env.datasets.synthetic import synthetic_store
    from blox_env.space import SubSpace
    from blox_env.training.recipes import DIGITS_MINI
    from blox_env.training.run_setup import ensure_run

    path = tmp_path / "s.zarr"
    synthetic_store(path, space=SubSpace(((0, 9), (1,), (2,))), seeds=(0,), epochs=3).close()
    data = load_data("synthetic")
    store = open_store(path, mode="a")
    calls = {"n": 0}
    real = BloxStore.allocate_metric

    def crash_on_third(self: BloxStore, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real(self, *args, **kwargs)

    monkeypatch.setattr(BloxStore, "allocate_metric", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        ensure_run(store, "live-x", seeds=[0], recipe=DIGITS_MINI, data=data, attrs={})
    monkeypatch.setattr(BloxStore, "allocate_metric", real)
    ensure_run(store, "live-x", seeds=[0], recipe=DIGITS_MINI, data=data, attrs={})  # the old code: wedged
    info = store.run_info("live-x")
    assert {"val_top1", "test_top1", "train_time_s"} <= set(info.metrics)
