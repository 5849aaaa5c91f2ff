"""The ``blox`` command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from blox_env.cli.root import app


def test_space_info() -> None:
    result = CliRunner().invoke(app, ["space", "info"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "91,125 unique" in result.output and "45 unique blocks" in result.output
    assert "1,717,636 .. 3,784,036" in result.output


def test_space_show_by_vector_index_and_hash() -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["space", "show", "[[[0],[1,1,1,1]],[[1],[1,1,0,0]],[[0],[0,1,1,0]]]"]).output
    assert "c3bc16e69893c8ea08f1e89e61f4caa5" in out and "3,104,164" in out
    out = runner.invoke(app, ["space", "show", "8c0b7ead308c6d62427fbe4b6a9a8426"]).output
    assert "index   50000" in out


def test_bad_arch_exits_2_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from blox_env.cli.root import main; main()", "space", "show", "99999999"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parent,  # not the repo root (shadows installs)
    )
    assert proc.returncode == 2
    assert "out of range" in proc.stderr and "Traceback" not in proc.stderr
