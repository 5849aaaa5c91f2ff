"""The ``blox`` command line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def test_space_info_fits_80_columns() -> None:
    from blox_env.space import N_BLOCKS, block_name

    result = CliRunner().invoke(app, ["space", "info"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in result.output
    for b in range(N_BLOCKS):  # every row shows its id and full name, nothing cut
        assert any(re.match(rf"\s*{b}\s+{re.escape(block_name(b))}\s", line) for line in lines), b
    assert "1,182,720" in result.output  # block 0 at stage 2: the widest column is whole


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if hasattr(cmd, "commands"):
        return [c for name, sub in cmd.commands.items() for c in _commands(sub, (*path, name))]
    return [(path, cmd)]


def test_every_option_and_argument_has_help() -> None:
    import typer

    commands = _commands(typer.main.get_command(app))
    assert len(commands) >= 15
    missing = [f"blox {' '.join(path)} {p.opts[0] if p.opts else p.name}" for path, cmd in commands
               for p in cmd.params if not (getattr(p, "help", None) or "").strip()]
    assert not missing, f"options without help: {missing}"
    assert all((cmd.help or "").strip() for _, cmd in commands)
