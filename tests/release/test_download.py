"""Release download: resume, retries, verification and manifests, against a loopback HTTP server only."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from blox_test_helpers import local_http_server

from blox_env.datasets.release import download as dl
from blox_env.datasets.release.manifest import ReleaseAsset, ReleaseManifest
from blox_env.errors import BloxError, DownloadError, InvalidArgumentError

PAYLOAD = bytes(range(256)) * 200  # 51,200 bytes, several read chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class ServerState:
    """What the handler serves and how it misbehaves; ``log`` records (path, Range header, status)."""

    root: Path
    support_range: bool = True
    drops: int = 0  # the next `drops` responses send only `drop_after` body bytes, then close
    drop_after: int = 5000
    fail: int = 0  # the next `fail` requests get 503
    log: list[tuple[str, str | None, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: Any  # the helper server, carrying ``state``
    timeout = 5  # bounded socket reads on the server side
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
        pass

    def _answer(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(body)

    def do_GET(self) -> None:
        state = self.server.state
        name = unquote(urlsplit(self.path).path).lstrip("/")
        rng = self.headers.get("Range")
        with state.lock:
            fail, state.fail = state.fail > 0, max(state.fail - 1, 0)
            drop, state.drops = state.drops > 0, max(state.drops - 1, 0)
        target = state.root / name
        if fail:
            status, headers, body = 503, {"Content-Length": "0"}, b""
        elif "/" in name or not target.is_file():
            status, headers, body = 404, {"Content-Length": "0"}, b""
        else:
            data = target.read_bytes()
            m = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if m and state.support_range:
                start = int(m.group(1))
                if start >= len(data):
                    status, headers, body = 416, {"Content-Range": f"bytes */{len(data)}", "Content-Length": "0"}, b""
                else:
                    body = data[start:]
                    status = 206
                    headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            else:
                status, headers, body = 200, {"Accept-Ranges": "bytes"} if state.support_range else {}, data
            if status in (200, 206):
                headers["Content-Length"] = str(len(body))
                if drop:
                    body = body[: state.drop_after]
        with state.lock:
            state.log.append((name, rng, status))
        self._answer(status, headers, body)


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, ServerState]]:
    """A threaded HTTP server on 127.0.0.1 (ephemeral port) serving ``tmp_path/srv``; shut down afterwards."""
    root = tmp_path / "srv"
    root.mkdir()
    (root / "blox-base-0.blox").write_bytes(PAYLOAD)
    (root / "blox-info.blox").write_bytes(b"info" * 1000)
    with local_http_server(_Handler, ServerState(root=root)) as served:
        yield served


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "RETRY_BACKOFF_S", 0.01)


def _get(url: str, dest: Path, **kw: object) -> Path:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("progress", False)
    return dl.download_file(url, dest, **kw)  # type: ignore[arg-type]


def test_full_download_with_checksum(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "out" / "blox-base-0.blox"
    path = _get(base + "blox-base-0.blox", dest, size=len(PAYLOAD), sha256=PAYLOAD_SHA.upper())
    assert path == dest and dest.read_bytes() == PAYLOAD
    assert not dest.with_name(dest.name + ".part").exists()
    assert state.log == [("blox-base-0.blox", None, 200)]
    assert dl.sha256_file(dest) == PAYLOAD_SHA


def test_resume_from_existing_part(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "blox-base-0.blox"
    dest.with_name(dest.name + ".part").write_bytes(PAYLOAD[:1234])
    _get(base + "blox-base-0.blox", dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert state.log == [("blox-base-0.blox", "bytes=1234-", 206)]


def test_dropped_connection_is_resumed(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    state.drops, state.drop_after = 1, 5000
    dest = tmp_path / "blox-base-0.blox"
    _get(base + "blox-base-0.blox", dest, size=len(PAYLOAD), sha256=PAYLOAD_SHA, retries=2)
    assert dest.read_bytes() == PAYLOAD
    assert [(r, s) for _, r, s in state.log] == [(None, 200), ("bytes=5000-", 206)]


def test_out_of_retries_keeps_part_for_later(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    state.drops = 1
    dest = tmp_path / "blox-base-0.blox"
    part = dest.with_name(dest.name + ".part")
    with pytest.raises(DownloadError, match="5000 bytes kept"):
        _get(base + "blox-base-0.blox", dest, sha256=PAYLOAD_SHA, retries=0)
    assert not dest.exists() and part.stat().st_size == 5000
    _get(base + "blox-base-0.blox", dest, sha256=PAYLOAD_SHA, retries=0)
    assert dest.read_bytes() == PAYLOAD and state.log[-1][1] == "bytes=5000-"


def test_5xx_is_retried_then_gives_up(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    state.fail = 2
    _get(base + "blox-base-0.blox", tmp_path / "a.blox", sha256=PAYLOAD_SHA, retries=2)
    assert [s for *_, s in state.log] == [503, 503, 200]
    state.fail = 5
    with pytest.raises(DownloadError, match="503"):
        _get(base + "blox-base-0.blox", tmp_path / "b.blox", retries=1)
    assert not (tmp_path / "b.blox").exists()


@pytest.mark.parametrize("bad", [{"sha256": "0" * 64}, {"size": len(PAYLOAD) + 1}])
def test_mismatch_leaves_nothing(server: tuple[str, ServerState], tmp_path: Path, bad: dict[str, object]) -> None:
    base, _ = server
    dest = tmp_path / "blox-base-0.blox"
    with pytest.raises(DownloadError) as info:
        _get(base + "blox-base-0.blox", dest, **bad)
    msg = str(info.value)
    assert "blox-base-0.blox" in msg and "expected" in msg
    if "sha256" in bad:
        assert "0" * 64 in msg and PAYLOAD_SHA in msg
    else:
        assert str(len(PAYLOAD) + 1) in msg and str(len(PAYLOAD)) in msg
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()


def test_corrupt_resumed_part_is_fetched_again_from_zero(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "blox-base-0.blox"
    dest.with_name(dest.name + ".part").write_bytes(b"\xff" * 100)
    _get(base + "blox-base-0.blox", dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert [(r, s) for _, r, s in state.log] == [("bytes=100-", 206), (None, 200)]


def test_server_without_range_restarts_cleanly(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    state.support_range = False
    dest = tmp_path / "blox-base-0.blox"
    dest.with_name(dest.name + ".part").write_bytes(b"garbage" * 10)
    _get(base + "blox-base-0.blox", dest, sha256=PAYLOAD_SHA)  # only the 200 restart makes this right
    assert dest.read_bytes() == PAYLOAD
    assert state.log == [("blox-base-0.blox", "bytes=70-", 200)]


def test_416_means_part_complete(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "blox-base-0.blox"
    dest.with_name(dest.name + ".part").write_bytes(PAYLOAD)
    _get(base + "blox-base-0.blox", dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and state.log == [("blox-base-0.blox", f"bytes={len(PAYLOAD)}-", 416)]


def test_oversized_part_after_416_restarts(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "blox-base-0.blox"
    dest.with_name(dest.name + ".part").write_bytes(PAYLOAD + b"extra")
    _get(base + "blox-base-0.blox", dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and [s for *_, s in state.log] == [416, 200]


def test_complete_file_skipped_and_bad_one_replaced(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "blox-base-0.blox"
    dest.write_bytes(PAYLOAD)
    assert _get(base + "blox-base-0.blox", dest, size=len(PAYLOAD), sha256=PAYLOAD_SHA) == dest
    assert state.log == []
    dest.write_bytes(b"stale")
    _get(base + "blox-base-0.blox", dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and len(state.log) == 1


def test_404_fails_at_once_naming_url(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    with pytest.raises(DownloadError, match=re.escape(base + "missing.blox")) as info:
        _get(base + "missing.blox", tmp_path / "missing.blox", retries=3)
    assert isinstance(info.value, OSError) and isinstance(info.value, BloxError)
    assert len(state.log) == 1 and not (tmp_path / "missing.blox").exists()


def test_file_url_and_progress_bar(tmp_path: Path) -> None:
    src = tmp_path / "src.blox"
    src.write_bytes(PAYLOAD)
    dest = dl.download_file(src.as_uri(), tmp_path / "copy.blox", sha256=PAYLOAD_SHA, progress=True)
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match="not found"):
        dl.download_file((tmp_path / "nope").as_uri(), tmp_path / "x", progress=False)


def _manifest(base: str) -> ReleaseManifest:
    return ReleaseManifest(base_url=base, assets=(
        ReleaseAsset(name="blox-info.blox"),
        ReleaseAsset(name="blox-base-0.blox", size=len(PAYLOAD), sha256=PAYLOAD_SHA),
    ))


def test_download_release_default_dest(server: tuple[str, ServerState], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    base, state = server
    monkeypatch.setenv("BLOX_HOME", str(tmp_path / "home"))
    paths = dl.download_release(manifest=_manifest(base), timeout=5.0, progress=False)
    assert paths == [tmp_path / "home" / "release" / n for n in ("blox-info.blox", "blox-base-0.blox")]
    assert paths[1].read_bytes() == PAYLOAD
    again = dl.download_release(manifest=_manifest(base), names=["blox-base-0.blox"], timeout=5.0, progress=False)
    assert again == paths[1:] and len(state.log) == 2  # complete files are not fetched again


def test_download_release_reports_all_failures(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, _ = server
    manifest = ReleaseManifest(base_url=base, assets=(ReleaseAsset(name="blox-ext-0.blox"),
                                                         *_manifest(base).assets))
    with pytest.raises(DownloadError, match="1 of 3") as info:
        dl.download_release(dest=tmp_path, manifest=manifest, timeout=5.0, progress=False)
    assert "blox-ext-0.blox" in str(info.value)
    assert (tmp_path / "blox-base-0.blox").read_bytes() == PAYLOAD  # the others finished


def test_manifest_json_round_trip(tmp_path: Path) -> None:
    manifest = _manifest("https://example.invalid/rel/")
    assert ReleaseManifest.from_json(manifest.to_json()) == manifest
    path = tmp_path / "m.json"
    path.write_text(manifest.to_json())
    assert ReleaseManifest.from_json(path) == manifest and ReleaseManifest.from_json(str(path)) == manifest
    assert ReleaseManifest.from_json(dl.DEFAULT_MANIFEST.to_json()) == dl.DEFAULT_MANIFEST
    short = ReleaseManifest.from_json('{"base_url": "http://h/x", "assets": ["a.csv"]}')
    assert short.url("a.csv") == "http://h/x/a.csv" and short.asset("a.csv").size is None


def test_default_manifest_names() -> None:
    names = dl.DEFAULT_MANIFEST.names
    assert names[0] == "blox-info.blox" and len(names) == 10
    assert {"blox-base-2.blox", "blox-ext-1.blox", "blox-env-0.blox"} <= set(names)
    assert dl.DEFAULT_MANIFEST.base_url == dl.OFFICIAL_RELEASE_URL
    assert dl.release_asset_names(seeds=[0], devices=["gpu"], ext="csv") == (
        "blox-info.csv", "blox-base-0.csv", "blox-ext-0.csv", "blox-env-0.csv", "blox-bench-gpu.csv")


def test_cli(server: tuple[str, ServerState], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from blox_env.cli.root import app

    base, _ = server
    path = tmp_path / "m.json"
    path.write_text(_manifest(base).to_json())
    runner = CliRunner()
    res = runner.invoke(app, ["data", "download", "--manifest", str(path), "--write-manifest"])
    assert res.exit_code == 0 and json.loads(res.stdout)["base_url"] == base  # where it came from: stderr
    assert f"release manifest file {path}" in res.stderr
    res = runner.invoke(app, ["data", "download", "--manifest", str(path), "--dest", str(tmp_path / "d"), "--quiet",
                              "--timeout", "5"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "d" / "blox-base-0.blox").read_bytes() == PAYLOAD
    res = runner.invoke(app, ["data", "download", "--manifest", str(path), "--name", "nope.blox", "--quiet"])
    assert res.exit_code != 0 and "nope.blox" in str(res.exception)


@pytest.mark.parametrize(("call", "match"), [
    (lambda: dl.download_release(manifest=_manifest("http://h/"), names=["blox-zzz.blox"]), "blox-info.blox"),
    (lambda: dl.download_file("ftp://h/x", Path("x")), "http, https, file"),
    (lambda: dl.download_file("http://h/x", Path("x"), size=-1), "non-negative"),
    (lambda: dl.download_file("http://h/x", Path("x"), sha256="abc"), "64 hexadecimal"),
    (lambda: dl.download_file("http://h/x", Path("x"), retries=-1), "retries"),
    (lambda: dl.download_file("http://h/x", Path("x"), timeout=0), "timeout"),
    (lambda: ReleaseAsset(name="../evil"), "plain file name"),
    (lambda: ReleaseAsset(name="a.blox", size=-5), "non-negative"),
    (lambda: ReleaseManifest(base_url="gopher://h/", assets=()), "allowed"),
    (lambda: ReleaseManifest(base_url="http://h/", assets=(ReleaseAsset(name="a"),) * 2), "more than once"),
    (lambda: ReleaseManifest.from_json("{not json"), "not valid JSON"),
    (lambda: ReleaseManifest.from_json('{"base_url": "http://h/", "assets": [], "x": 1}'), "unknown keys"),
    (lambda: ReleaseManifest.from_json("/nonexistent/manifest.json"), "cannot be read"),
    (lambda: dl.release_asset_names(ext="zip"), "blox, csv, pickle"),
])
def test_bad_inputs(call: object, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match) as info:
        call()  # type: ignore[operator]
    assert isinstance(info.value, ValueError) and isinstance(info.value, BloxError)
