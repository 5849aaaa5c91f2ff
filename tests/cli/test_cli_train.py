"""``blox train`` on a model already in the live store answers from the store: no torch, no data loading."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from blox_env.cli import train as cli_train
from blox_env.cli.root import app
from blox_env.datasets.store.core import BloxStore
from blox_env.errors import InvalidArgumentError
from blox_env.space import Arch

RUN = "live-digits_mini-e8-digits"  # LiveReward's run of digits_mini (8 epochs) on digits
LINE = re.compile(r"val top-1 ([\d.]+)\s+test top-1 ([\d.]+)\s+train ([\d.]+) s")


def _store(path: Path) -> Path:
    st = BloxStore.create(path, index=[20710, 50000], name="live-digits")
    st.create_run(RUN, seeds=[0], epochs=8, attrs={"setup": "complete"})
    st.write_metric(RUN, "val_top1", np.array([[[50, 60, 70, 65, 66, 67, 68, 69], [1, 2, 3, 4, 5, 6, 7, 8]]]))
    st.write_metric(RUN, "test_top1", np.array([[80.0, 81.0]]))
    st.write_metric(RUN, "train_time_s", np.array([[3.0, 4.0]]))
    st.close()
    return path


def test_stored_result_read_from_the_store(tmp_path: Path) -> None:
    path = str(_store(tmp_path / "live.zarr"))
    got = cli_train.stored_result(Arch.from_index(20710), data="digits", recipe="digits_mini", seed=0, store=path,
                                  device="auto")
    assert got == {"val_top1": pytest.approx(70.0), "test_top1": 80.0, "train_time_s": 3.0, "compute_s": 0.0}


@pytest.mark.parametrize("change", [{"seed": 1}, {"data": "synthetic"}, {"data": "cifar100:/no/such/folder"},
                                    {"device": "tpu"}, {"recipe": "cifar100_blox"}, {"arch": 50001}])
def test_anything_else_goes_the_full_way(tmp_path: Path, change: dict) -> None:
    path = str(_store(tmp_path / "live.zarr"))
    kw = {"data": "digits", "recipe": "digits_mini", "seed": 0, "device": "auto", **change}
    arch = Arch.from_index(kw.pop("arch", 20710))  # 50001: in the space but not a row of this store
    assert cli_train.stored_result(arch, store=path, **kw) is None
    assert cli_train.stored_result(arch, store=str(tmp_path / "none.zarr"), **{**kw, "seed": 0}) is None


def test_unknown_recipe_is_refused_before_anything(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="recipe"):
        cli_train.stored_result(Arch.from_index(1), data="digits", recipe="nope", seed=0, store=None, device="auto")


def test_blox_train_twice_second_from_the_store_without_torch(tmp_path: Path) -> None:
    """The first run trains (digits_mini, seconds); the second reads what it recorded, in a process that never
    imports torch or scikit-learn."""
    pytest.importorskip("torch")
    store = str(tmp_path / "live.zarr")
    first = CliRunner().invoke(app, ["train", "20710", "--store", store], env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    code = ("import sys\nfrom blox_env.cli.root import main\n"
            f"sys.argv = ['blox', 'train', '20710', '--store', {store!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "heavy = sorted(m for m in ('torch', 'sklearn') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert LINE.search(proc.stdout).groups() == LINE.search(first.output).groups()
    assert "computed now: 0.0 s" in proc.stdout and "computed now: 0.0 s" not in first.output
