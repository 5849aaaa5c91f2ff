"""CLI output is plain text: file and user data are never parsed as rich markup."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from blox_env.cli import root as cli
from blox_env.datasets.store.core import BloxStore
from blox_env.errors import InvalidArgumentError

NASTY = "cell [/oops] then [bold]x and list[int] :smile: [red]"


def _run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["blox", *argv])
    with pytest.raises(SystemExit) as info:
        cli.main()
    return int(info.value.code), capsys.readouterr().err


def test_error_message_prints_verbatim(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    long_tail = " and a long tail" * 20  # no line breaks inserted into long messages either

    def boom() -> None:
        raise InvalidArgumentError(NASTY + long_tail)

    monkeypatch.setattr(cli, "app", boom)
    code, err = _run_main(monkeypatch, capsys, [])
    assert code == 2
    assert f"error: {NASTY}{long_tail}" in err


def test_store_path_with_markup_in_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    missing = tmp_path / "[/oops]" / "[bold]x.zarr"
    code, err = _run_main(monkeypatch, capsys, ["data", "info", str(missing)])
    assert code == 2 and str(missing) in err and "Traceback" not in err


def _store(path: Path) -> Path:
    st = BloxStore.create(path, index=np.arange(4), name=NASTY, provenance={"note": NASTY})
    st.create_run("list[int]", seeds=[0], epochs=2, attrs={"dataset": "[/oops]"})
    st.write_metric("list[int]", "val_top1", np.full((1, 4, 2), 50.0))
    st.close()
    return path


def test_info_prints_names_and_attributes_verbatim(tmp_path: Path) -> None:
    path = _store(tmp_path / "[bold]store.zarr")
    result = CliRunner().invoke(cli.app, ["data", "info", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert str(path) in result.output and NASTY in result.output
    assert "list[int]" in result.output and "[/oops]" in result.output


def test_verify_and_query_print_verbatim(tmp_path: Path) -> None:
    path = _store(tmp_path / "[bold]store.zarr")
    result = CliRunner().invoke(cli.app, ["data", "verify", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 0 and f"store {path}: OK" in result.output
    result = CliRunner().invoke(cli.app, ["data", "query", "3", "--store", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 0 and "list[int]" in result.output


def test_query_bad_seed_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    path = _store(tmp_path / "s.zarr")
    code, err = _run_main(monkeypatch, capsys, ["data", "query", "3", "--store", str(path), "--seed", "[bold]x"])
    assert code == 2 and "--seed" in err and "'[bold]x'" in err


def test_option_help_has_no_text_that_rich_would_swallow_as_markup() -> None:
    """``--help`` renders option texts as rich markup: a ``[train]`` in a help string vanished ("needs )")."""
    import re

    import click
    import typer.main

    group = typer.main.get_command(cli.app)
    markup = re.compile(r"(?<!\\)\[/?[a-z][a-z0-9_ ,=#-]*\]")

    def walk(cmd: click.Command, path: str) -> list[str]:
        bad = [f"{path} {p.opts[0]}: {p.help!r}" for p in cmd.params if getattr(p, "help", None) and
               markup.search(p.help)]
        if cmd.help and markup.search(cmd.help):
            bad.append(f"{path}: {cmd.help!r}")
        for name, sub in getattr(cmd, "commands", {}).items():
            bad += walk(sub, f"{path} {name}")
        return bad

    assert walk(group, "blox") == []
