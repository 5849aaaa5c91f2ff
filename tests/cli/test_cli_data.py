"""``blox data import`` without a folder imports ``$BLOX_HOME/release``, where ``blox data download`` writes."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from blox_test_helpers import local_http_server
from typer.testing import CliRunner

from blox_env.cli.root import app
from blox_env.datasets.release import importer
from blox_env.errors import StoreNotFoundError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BLOX_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record the folder the importer is given (the import itself is tested in test_importer.py)."""
    seen: list[Path] = []

    def fake(folder, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen.append(Path(folder))
        return Path("out.zarr")

    monkeypatch.setattr(importer, "import_release", fake)
    return seen


def test_import_defaults_to_blox_home_release(home: Path, calls: list[Path]) -> None:
    (home / "release").mkdir(parents=True)
    result = CliRunner().invoke(app, ["data", "import", "--quiet"])
    assert result.exit_code == 0, result.output
    assert calls == [home / "release"]


class _Bytes(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        body = self.server.state  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_import_finds_what_download_wrote(home: Path, calls: list[Path], tmp_path: Path) -> None:
    """`blox data download` then `blox data import`, both with no folder: the import reads the download's."""
    with local_http_server(_Bytes, b"release bytes") as (url, _):
        manifest = json.dumps({"base_url": url, "assets": [{"name": "blox-info.blox"}]})
        result = CliRunner().invoke(app, ["data", "download", "--manifest", manifest, "--quiet"])
        assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["data", "import", "--quiet"])
    assert result.exit_code == 0, result.output
    assert calls == [home / "release"] and (calls[0] / "blox-info.blox").read_bytes() == b"release bytes"


def test_import_without_a_release_folder_says_what_to_do(home: Path, calls: list[Path]) -> None:
    result = CliRunner().invoke(app, ["data", "import"])
    assert isinstance(result.exception, StoreNotFoundError)
    assert str(home / "release") in str(result.exception) and "blox data download" in str(result.exception)
    assert calls == []


def test_import_an_explicit_folder(tmp_path: Path, home: Path, calls: list[Path]) -> None:
    result = CliRunner().invoke(app, ["data", "import", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert calls == [tmp_path]
