"""The release resolver against a loopback server that mimics GitHub's releases API.

The server (127.0.0.1, ephemeral port, 5 s socket timeouts, shut down after each test) answers
``/repos/{owner}/{repo}/releases/latest``, ``/releases/tags/{tag}`` and ``/releases`` like the API
and serves the assets under ``/dl/{tag}/{name}``; it can rate-limit, answer malformed JSON or fail
with 500. "Unreachable" is a closed loopback port. Nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from blox_test_helpers import local_http_server

from blox_env.datasets.release import download as dl
from blox_env.datasets.release import resolve as rs
from blox_env.datasets.release.manifest import ReleaseAsset, ReleaseManifest
from blox_env.errors import BloxError, DownloadError, InvalidArgumentError

REPO = "owner/blox"
INFO = b"info" * 3000
BASE0 = bytes(range(256)) * 150  # 38,400 bytes
PICKLE0 = b"pickle" * 100


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Api:
    """What the fake API serves: releases by tag, the latest tag, asset bytes by URL path, a misbehaviour."""

    base: str = ""
    releases: dict[str, dict[str, Any]] = field(default_factory=dict)
    latest: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    mode: str | None = None  # "rate403", "rate429", "malformed", "shape", "500", "nolist"
    cut: set[str] = field(default_factory=set)  # asset paths whose body stops short of its Content-Length
    log: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, tag: str, assets: list[tuple[str, bytes, bool]], *, size_of: dict[str, int] | None = None,
            digest_of: dict[str, str] | None = None) -> None:
        """A release ``tag`` with (name, served bytes, with digest) assets; sizes/digests may be overridden."""
        objs = []
        for name, data, with_digest in assets:
            path = f"/dl/{tag}/{name}"
            self.files[path] = data
            digest = (digest_of or {}).get(name, f"sha256:{_sha(data)}") if with_digest else None
            objs.append({"name": name, "size": (size_of or {}).get(name, len(data)), "state": "uploaded",
                         "browser_download_url": self.base.rstrip("/") + path, "digest": digest})
        self.releases[tag] = {"tag_name": tag, "assets": objs}


class _Handler(BaseHTTPRequestHandler):
    server: Any
    timeout = 5
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, *,
              length: int | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def do_GET(self) -> None:
        api: Api = self.server.state
        path = urlsplit(self.path).path
        with api.lock:
            api.log.append(path)
        if path.startswith("/dl/"):
            data = api.files.get(path)
            if data is None:
                return self._send(404, b"")
            if path in api.cut:  # announces the whole file, sends part of it
                return self._send(200, data[: len(data) // 2], length=len(data))
            return self._send(200, data)
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)/releases(/latest|/tags/(.+))?", path)
        if m is None:
            return self._json(404, {"message": "Not Found"})
        if api.mode == "rate403":
            reset = str(int(time.time()) + 600)
            return self._json(403, {"message": "API rate limit exceeded"},
                              {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
        if api.mode == "rate429":
            return self._json(429, {"message": "Too Many Requests"}, {"Retry-After": "120"})
        if api.mode == "500":
            return self._json(500, {"message": "Server Error"})
        if api.mode == "malformed":
            return self._send(200, b'{"tag_name": "v1.0", "assets": [', {"Content-Type": "application/json"})
        which, tag = m.group(3), m.group(4)
        if which is None:
            if api.mode == "nolist":
                return self._json(404, {"message": "Not Found"})
            return self._json(200, list(api.releases.values()))
        release = api.releases.get(api.latest or "") if which == "/latest" else api.releases.get(unquote(tag))
        if release is None:
            return self._json(404, {"message": "Not Found"})
        if api.mode == "shape":
            return self._json(200, {**release, "assets": {"not": "a list"}})
        return self._json(200, release)


@pytest.fixture()
def api() -> Iterator[Api]:
    """v1.0 (older: no digests), v2.0 (latest: digests, a .pickle twin, a README) and two broken releases."""
    with local_http_server(_Handler, Api()) as (base, state):
        state.base = base
        state.add("v1.0", [("blox-info.blox", INFO, False), ("blox-base-0.blox", BASE0, False)])
        state.add("v2.0", [("blox-info.blox", INFO, True), ("blox-base-0.blox", BASE0, True),
                           ("blox-base-0.pickle", PICKLE0, True), ("README.md", b"read me", True)])
        state.add("short", [("blox-base-0.blox", BASE0[:-1000], False)], size_of={"blox-base-0.blox": len(BASE0)})
        state.add("corrupt", [("blox-base-0.blox", BASE0, True)], digest_of={"blox-base-0.blox": "sha256:" + "0" * 64})
        state.add("cut", [("blox-base-0.blox", BASE0, True)])
        state.cut.add("/dl/cut/blox-base-0.blox")
        state.latest = "v2.0"
        yield state


@pytest.fixture()
def closed_port() -> str:
    """An API base URL on a loopback port nobody listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closed_port: str) -> None:
    """Own cache per test; the API default points at a closed loopback port, so nothing can reach GitHub."""
    monkeypatch.setenv("BLOX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(rs.API_ENV, closed_port)
    monkeypatch.setattr(dl, "RETRY_BACKOFF_S", 0.01)


def _download(api: Api, tag: str | None, dest: Path, notes: list[str], **kw: Any) -> list[Path]:
    kw.setdefault("api_url", api.base)
    return rs.download_official(tag, dest=dest, repo=REPO, timeout=5.0, retries=0, progress=False,
                                report=notes.append, **kw)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# resolution --------------------------------------------------------------------------------------
def test_latest_release_gives_names_sizes_digests_and_urls(api: Api, tmp_path: Path) -> None:
    res = rs.resolve_release(repo=REPO, api_url=api.base, timeout=5.0)
    assert (res.source, res.tag, res.requested, res.repo) == ("api", "v2.0", "latest", REPO)
    assert res.origin == f"{api.base.rstrip('/')}/repos/{REPO}/releases/latest"
    info = res.manifest.asset("blox-info.blox")
    assert (info.size, info.sha256) == (len(INFO), _sha(INFO))
    assert res.manifest.url("blox-base-0.pickle") == api.base + "dl/v2.0/blox-base-0.pickle"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", res.resolved_at or "")
    # cached under the request and under the tag, with the date it was resolved
    for leaf in ("latest.json", "tag-v2.0.json"):
        cached = json.loads((tmp_path / "home" / "release-manifests" / "owner" / "blox" / leaf).read_text())
        assert cached["resolved_at"] == res.resolved_at and cached["tag"] == "v2.0"
        assert ReleaseManifest.from_obj(cached["manifest"], source=leaf) == res.manifest
    lines = res.describe()
    assert "releases API" in lines[0] and res.resolved_at in lines[0]
    assert f"blox-info.blox [API] {api.base}dl/v2.0/blox-info.blox ({len(INFO):,} bytes, sha256 {_sha(INFO)})" in (
        line.strip() for line in lines)


def test_default_selection_takes_one_format_per_file() -> None:
    names = ["blox-info.blox", "blox-base-0.csv", "blox-base-0.pickle", "blox-base-0.blox", "blox-ext-0.csv",
             "README.md", "blox-bench-gpu.pickle"]
    man = ReleaseManifest(base_url="http://h/", assets=tuple(ReleaseAsset(name=n) for n in names))
    assert rs.default_selection(man) == ("blox-info.blox", "blox-base-0.blox", "blox-ext-0.csv",
                                         "blox-bench-gpu.pickle")
    assert rs.default_selection(man, "csv") == ("blox-base-0.csv", "blox-ext-0.csv")
    with pytest.raises(DownloadError, match=r"no official data files.*README\.md.*--name"):
        rs.default_selection(ReleaseManifest(base_url="http://h/", assets=(ReleaseAsset(name="README.md"),)))


def test_named_tag_downloads_verified_files(api: Api, tmp_path: Path) -> None:
    notes: list[str] = []
    paths = _download(api, "v2.0", tmp_path / "d", notes)
    assert [p.name for p in paths] == ["blox-info.blox", "blox-base-0.blox"]  # .pickle twin and README left out
    assert paths[0].read_bytes() == INFO and paths[1].read_bytes() == BASE0
    assert dl.read_record(paths[1]).sha256 == _sha(BASE0)  # type: ignore[union-attr]
    assert _leftovers(tmp_path / "d") == sorted(["blox-info.blox", "blox-base-0.blox", "blox-info.blox.sha256",
                                                 "blox-base-0.blox.sha256"])
    assert f"/repos/{REPO}/releases/tags/v2.0" in api.log and "/dl/v2.0/README.md" not in api.log
    assert any(f"blox-base-0.blox [API] {api.base}dl/v2.0/blox-base-0.blox" in n for n in notes)
    assert not any("no size or checksum" in n for n in notes)
    pickle = _download(api, "v2.0", tmp_path / "p", [], fmt="pickle")
    assert [p.read_bytes() for p in pickle] == [PICKLE0]


def test_assets_without_digest_are_checked_by_size_and_recorded(api: Api, tmp_path: Path) -> None:
    notes: list[str] = []
    paths = _download(api, "v1.0", tmp_path, notes)
    res = rs.resolve_release("v1.0", repo=REPO, api_url=api.base, timeout=5.0)
    assert res.manifest.asset("blox-base-0.blox").sha256 is None
    assert res.manifest.asset("blox-base-0.blox").size == len(BASE0)
    assert any(f"({len(BASE0):,} bytes, no sha256)" in n for n in notes)
    assert paths[1].read_bytes() == BASE0 and dl.read_record(paths[1]).sha256 == _sha(BASE0)  # type: ignore[union-attr]


@pytest.mark.parametrize(("tag", "match"), [
    ("short", rf"expected {len(BASE0)} bytes|{len(BASE0)}"),  # the server's file is shorter than the API says
    ("cut", r"connection closed after"),  # the transfer stops short of its Content-Length
    ("corrupt", "0" * 64),  # the bytes do not match the API's digest
])
def test_truncated_or_corrupt_asset_leaves_nothing(api: Api, tmp_path: Path, tag: str, match: str) -> None:
    with pytest.raises(DownloadError, match=match) as info:
        _download(api, tag, tmp_path / "d", [])
    assert "blox-base-0.blox" in str(info.value)
    assert _leftovers(tmp_path / "d") == []  # no final file, no part, no sidecar


def test_missing_tag_names_the_tags_that_exist(api: Api, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as info:
        _download(api, "v9", tmp_path / "d", [])
    msg = str(info.value)
    assert "'v9' not found" in msg and "404" in msg and "v1.0, v2.0" in msg
    assert not (tmp_path / "d").exists() and not (tmp_path / "home" / "release-manifests").exists()
    api.mode = "nolist"
    with pytest.raises(DownloadError, match="list of releases could not be read"):
        rs.resolve_release("v9", repo=REPO, api_url=api.base, timeout=5.0)
    api.releases.clear()
    api.mode, api.latest = None, None
    with pytest.raises(DownloadError, match="no published release"):
        rs.resolve_release(repo=REPO, api_url=api.base, timeout=5.0)


@pytest.mark.parametrize(("mode", "when"), [("rate403", r"retry after .* UTC \(in 1\d min\)"),
                                            ("rate429", r"retry after .* UTC \(in 2 min\)")])
def test_rate_limit_says_when_to_retry_and_what_to_use(api: Api, tmp_path: Path, mode: str, when: str) -> None:
    api.mode = mode
    with pytest.raises(DownloadError, match=when) as info:
        _download(api, None, tmp_path / "d", [])
    msg = str(info.value)
    assert "rate-limited" in msg and "--offline" in msg and "--manifest FILE" in msg
    assert not (tmp_path / "d").exists()
    api.mode = None
    rs.resolve_release(repo=REPO, api_url=api.base, timeout=5.0)  # now a cache exists: it is used, with a note
    api.mode = mode
    res = rs.resolve_release(repo=REPO, api_url=api.base, timeout=5.0)
    assert res.source == "cache" and res.tag == "v2.0" and "rate-limited" in res.notes[0]


@pytest.mark.parametrize("mode", ["malformed", "shape"])
def test_malformed_reply_is_a_clear_error(api: Api, mode: str) -> None:
    api.mode = mode
    with pytest.raises(DownloadError, match=r"malformed JSON.*--offline.*--manifest FILE"):
        rs.resolve_release("v2.0", repo=REPO, api_url=api.base, timeout=5.0)


def test_bad_assets_in_a_reply() -> None:
    good = {"name": "blox-info.blox", "size": 3, "browser_download_url": "https://x/blox-info.blox"}
    for bad, match in [({**good, "size": "3"}, "size"), ({**good, "browser_download_url": "file:///etc/passwd"},
                       "http"), ({**good, "digest": "sha256:abc"}, "64 hex")]:
        with pytest.raises(DownloadError, match=match):
            rs.manifest_from_release({"tag_name": "t", "assets": [bad]}, repo=REPO, source="src")
    man, notes = rs.manifest_from_release({"tag_name": "t", "assets": [
        {**good, "digest": "md5:00"}, {**good, "name": "../evil", "state": "uploaded"},
        {**good, "name": "blox-ext-0.blox", "state": "starter"}]}, repo=REPO, source="src")
    assert man.names == ("blox-info.blox",) and man.asset("blox-info.blox").sha256 is None
    assert len(notes) == 2 and "../evil" in notes[0] and "not complete" in notes[1]


# fallbacks ---------------------------------------------------------------------------------------
def test_unreachable_api_uses_the_cache_then_the_built_in_manifest(api: Api, tmp_path: Path,
                                                                    closed_port: str) -> None:
    fresh = rs.resolve_release("v2.0", repo=REPO, api_url=api.base, timeout=5.0)
    res = rs.resolve_release("v2.0", repo=REPO, api_url=closed_port, timeout=5.0)
    assert res.source == "cache" and res.manifest == fresh.manifest and res.resolved_at == fresh.resolved_at
    assert "could not be used" in res.notes[0] and closed_port in res.notes[0]
    assert "cached manifest" in res.describe()[0] and "[cache]" in res.describe()[-1]
    notes: list[str] = []
    paths = rs.download_official("v2.0", dest=tmp_path / "d", repo=REPO, timeout=5.0, progress=False,
                                 report=notes.append)  # $BLOX_RELEASE_API: the closed port; files: the live server
    assert [p.read_bytes() for p in paths] == [INFO, BASE0] and any("[cache]" in n for n in notes)
    # no cache for this tag: the built-in manifest, its URL built from the tag asked for
    res = rs.resolve_release("v3.0", repo=REPO, timeout=5.0)
    assert res.source == "built-in" and res.manifest.url("blox-info.blox") == (
        "https://github.com/owner/blox/releases/download/v3.0/blox-info.blox")
    assert any("no cached manifest" in n for n in res.notes)
    latest = rs.resolve_release(repo=rs.DEFAULT_REPO, timeout=5.0)
    assert latest.tag == rs.ASSUMED_TAG and "assumed, not verified" in latest.describe()[0]
    assert rs.select(latest) == list(dl.DEFAULT_MANIFEST.names)
    assert latest.manifest.url("blox-info.blox") == dl.DEFAULT_MANIFEST.url("blox-info.blox")
    assert "[built-in]" in latest.describe()[-1]


def test_server_error_and_corrupt_cache_fall_back(api: Api, tmp_path: Path) -> None:
    api.mode = "500"
    res = rs.resolve_release(repo=REPO, api_url=api.base, timeout=5.0)
    assert res.source == "built-in" and "HTTP 500" in res.notes[0]
    cache = rs.release_cache_path(REPO)
    cache.parent.mkdir(parents=True)
    cache.write_text("{half")
    res = rs.resolve_release(repo=REPO, api_url=api.base, timeout=5.0)
    assert res.source == "built-in" and "unreadable" in res.notes[1]


def test_offline_never_asks_the_api(api: Api) -> None:
    res = rs.resolve_release("v2.0", repo=REPO, api_url=api.base, offline=True)
    assert res.source == "built-in" and api.log == []
    rs.resolve_release("v2.0", repo=REPO, api_url=api.base, timeout=5.0)
    api.log.clear()
    assert rs.resolve_release("v2.0", repo=REPO, api_url=api.base, offline=True).source == "cache"
    assert api.log == []


# the command line --------------------------------------------------------------------------------
def test_cli_download_tag_and_latest(api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from blox_env.cli.root import app

    monkeypatch.setenv(rs.API_ENV, api.base)
    runner = CliRunner()
    res = runner.invoke(app, ["data", "download", "--repo", REPO, "--tag", "v1.0", "--dest", str(tmp_path / "a"),
                              "--quiet", "--timeout", "5"])
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == [str(tmp_path / "a" / n) for n in ("blox-info.blox", "blox-base-0.blox")]
    assert f"release {REPO} v1.0: resolved through the releases API" in res.stderr
    assert f"blox-base-0.blox [API] {api.base}dl/v1.0/blox-base-0.blox" in res.stderr
    res = runner.invoke(app, ["data", "download", "--repo", REPO, "--dest", str(tmp_path / "b"), "--quiet",
                              "--name", "blox-base-0.pickle"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "b" / "blox-base-0.pickle").read_bytes() == PICKLE0 and "releases/latest" in res.stderr
    res = runner.invoke(app, ["data", "download", "--repo", REPO, "--write-manifest"])
    assert res.exit_code == 0, res.output
    written = json.loads(res.stdout)["assets"]  # the files a download fetches: no .pickle twin, no README
    assert [(a["name"], a["url"], a["size"]) for a in written] == [
        (n, f"{api.base}dl/v2.0/{n}", len(d)) for n, d in (("blox-info.blox", INFO), ("blox-base-0.blox", BASE0))]
    assert written[1]["sha256"] == _sha(BASE0) and "releases API" in res.stderr
    (tmp_path / "m.json").write_text(res.stdout)  # replayed with the API gone: the same files, verified
    monkeypatch.setenv(rs.API_ENV, "ftp://nowhere")
    res = runner.invoke(app, ["data", "download", "--manifest", str(tmp_path / "m.json"), "--dest",
                              str(tmp_path / "c"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert _leftovers(tmp_path / "c") == sorted(["blox-info.blox", "blox-base-0.blox", "blox-info.blox.sha256",
                                                 "blox-base-0.blox.sha256"])
    monkeypatch.setenv(rs.API_ENV, api.base)
    res = runner.invoke(app, ["data", "download", "--repo", REPO, "--tag", "v9", "--quiet"])
    assert isinstance(res.exception, DownloadError) and "v1.0" in str(res.exception)
    res = runner.invoke(app, ["data", "download", "--tag", "v1.0", "--manifest", "{}"])
    assert isinstance(res.exception, InvalidArgumentError) and "not both" in str(res.exception)


@pytest.mark.parametrize(("call", "match"), [
    (lambda: rs.resolve_release(repo="../x"), "OWNER/NAME"),
    (lambda: rs.resolve_release(repo="a/.."), "OWNER/NAME"),
    (lambda: rs.resolve_release(tag=""), "tag"),
    (lambda: rs.resolve_release(api_url="ftp://h/"), "http or https"),
    (lambda: rs.resolve_release(timeout=0), "timeout"),
    (lambda: rs.default_selection(dl.DEFAULT_MANIFEST, "zip"), "blox, csv, pickle"),
    (lambda: ReleaseAsset(name="a.blox", url="ftp://h/a.blox"), "http, https, file"),
])
def test_bad_inputs(call: object, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match) as info:
        call()  # type: ignore[operator]
    assert isinstance(info.value, BloxError)
