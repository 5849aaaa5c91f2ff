"""Downloads with no expected size or checksum: nothing truncated or corrupt is kept.

A loopback HTTP server (127.0.0.1, ephemeral port, 5 s socket timeouts, shut down after each test)
answers 200 with one of three framings: ``Content-Length``, close-delimited (no length at all) or
chunked; it can cut a body short, refuse ranges, or report another file's total in ``Content-Range``.
"""

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

import pytest
from blox_test_helpers import local_http_server

from blox_env.datasets.release import download as dl
from blox_env.datasets.release.manifest import ReleaseAsset
from blox_env.datasets.release.records import DownloadRecord
from blox_env.errors import DownloadError, InvalidArgumentError

DATA = bytes(range(251)) * 204  # 51,204 bytes: several read chunks, not a power of two
DATA_SHA = hashlib.sha256(DATA).hexdigest()
NAME = "blox-base-0.blox"


@dataclass
class State:
    """How the server answers; ``log`` records (Range header, status) per request."""

    framing: str = "length"  # 200 bodies: "length" (Content-Length), "close" (no length) or "chunked"
    ranges: bool = True
    cut: int = 0  # the next `cut` 200/206 bodies stop after `cut_after` bytes (chunked: no terminating chunk)
    cut_after: int = 5000
    total: int | None = None  # Content-Range total to report instead of the true one (a different file)
    log: list[tuple[str | None, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: Any  # the helper server, carrying ``state``
    timeout = 5
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
        pass

    def do_GET(self) -> None:
        st = self.server.state
        rng = self.headers.get("Range")
        with st.lock:
            cut, st.cut = st.cut > 0, max(st.cut - 1, 0)
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        headers: dict[str, str] = {"Connection": "close"}
        framing = "length"
        if m and st.ranges:
            start = int(m.group(1))
            total = st.total if st.total is not None else len(DATA)
            if start >= len(DATA):
                status, body = 416, b""
                headers["Content-Range"] = f"bytes */{total}"
            else:
                status, body = 206, DATA[start:]
                headers["Content-Range"] = f"bytes {start}-{len(DATA) - 1}/{total}"
        else:
            status, body, framing = 200, DATA, st.framing
            if st.ranges:
                headers["Accept-Ranges"] = "bytes"
        if framing == "length":
            headers["Content-Length"] = str(len(body))
        elif framing == "chunked":
            headers["Transfer-Encoding"] = "chunked"
        if cut and status in (200, 206):
            body = body[: st.cut_after]
        with st.lock:
            st.log.append((rng, status))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.close_connection = True
        if framing != "chunked":
            self.wfile.write(body)
            return
        for lo in range(0, len(body), 4096):
            piece = body[lo : lo + 4096]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        if not cut:
            self.wfile.write(b"0\r\n\r\n")


@pytest.fixture()
def server() -> Iterator[tuple[str, State]]:
    """The server and the URL of its one file; stopped (bounded join) after the test."""
    with local_http_server(_Handler, State()) as (base, state):
        yield f"{base}{NAME}", state


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "RETRY_BACKOFF_S", 0.01)


def _get(url: str, dest: Path, notes: list[str] | None = None, **kw: object) -> Path:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("retries", 0)
    return dl.download_file(url, dest, progress=False, report=(notes if notes is not None else []).append,
                            **kw)  # type: ignore[arg-type]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# transfers that end early ------------------------------------------------------------------------
@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_dropped_without_content_length_keeps_nothing(server: tuple[str, State], tmp_path: Path,
                                                      framing: str) -> None:
    url, st = server
    st.framing, st.ranges, st.cut = framing, False, 1
    with pytest.raises(DownloadError) as info:
        _get(url, tmp_path / NAME)
    assert url in str(info.value)
    assert _leftovers(tmp_path) == []  # no final file, no part a later run could resume blindly


def test_close_delimited_answer_is_refused_without_size_or_checksum(server: tuple[str, State],
                                                                      tmp_path: Path) -> None:
    url, st = server
    st.framing, st.ranges = "close", False  # a complete body, but nothing can tell it from a dropped one
    with pytest.raises(DownloadError, match=r"no Content-Length.*manifest"):
        _get(url, tmp_path / NAME)
    assert _leftovers(tmp_path) == []
    assert _get(url, tmp_path / NAME, sha256=DATA_SHA).read_bytes() == DATA  # a manifest checksum settles it


def test_close_delimited_answer_is_confirmed_with_a_range_request(server: tuple[str, State], tmp_path: Path) -> None:
    url, st = server
    st.framing = "close"
    assert _get(url, tmp_path / "a.blox").read_bytes() == DATA
    assert st.log == [(None, 200), (f"bytes={len(DATA)}-", 416)]  # 416 with the same total confirms it
    st.log.clear()
    st.cut = 1  # dropped after 5000 bytes: the confirming request fetches the rest
    assert _get(url, tmp_path / "b.blox").read_bytes() == DATA
    assert st.log == [(None, 200), ("bytes=5000-", 206)]


def test_chunked_answer_with_its_terminating_chunk_is_complete(server: tuple[str, State], tmp_path: Path) -> None:
    url, st = server
    st.framing, st.ranges = "chunked", False
    assert _get(url, tmp_path / NAME).read_bytes() == DATA
    assert st.log == [(None, 200)]


def test_cut_chunked_answer_is_resumed_only_where_it_can_be_checked(server: tuple[str, State],
                                                                     tmp_path: Path) -> None:
    url, st = server
    st.framing, st.cut = "chunked", 1
    with pytest.raises(DownloadError, match="partial file was deleted: its total size is unknown"):
        _get(url, tmp_path / NAME)  # no total and no checksum: a later run could not trust the part
    assert _leftovers(tmp_path) == []
    st.cut, st.log[:] = 1, []
    assert _get(url, tmp_path / NAME, retries=1).read_bytes() == DATA  # within one run, the 206 total completes it
    assert st.log == [(None, 200), ("bytes=5000-", 206)]
    st.cut, st.log[:] = 1, []
    with pytest.raises(DownloadError, match="run again to resume"):
        _get(url, tmp_path / "b.blox", sha256=DATA_SHA)
    assert (tmp_path / "b.blox.part").read_bytes() == DATA[:5000]  # whole chunks before the cut are kept
    assert _get(url, tmp_path / "b.blox", sha256=DATA_SHA).read_bytes() == DATA
    assert st.log == [(None, 200), ("bytes=5000-", 206)]


def test_short_body_against_content_length_keeps_nothing(server: tuple[str, State], tmp_path: Path) -> None:
    url, st = server
    st.ranges, st.cut = False, 1
    with pytest.raises(DownloadError, match=f"5000 of {len(DATA)} bytes.*partial file was deleted"):
        _get(url, tmp_path / NAME)
    assert _leftovers(tmp_path) == []


# parts left by an earlier run --------------------------------------------------------------------
def _part(folder: Path, data: bytes, record: dict[str, object] | None) -> Path:
    part = folder / f"{NAME}.part"
    part.write_bytes(data)
    if record is not None:
        (folder / f"{NAME}.part.json").write_text(json.dumps(record))
    return part


def test_part_started_for_another_total_is_restarted(server: tuple[str, State], tmp_path: Path) -> None:
    url, st = server
    _part(tmp_path, b"\xee" * 100, {"url": url, "total": 99_999})
    assert _get(url, tmp_path / NAME).read_bytes() == DATA
    assert st.log == [("bytes=100-", 206), (None, 200)]  # the server's total 51204 is not the part's 99999


def test_part_whose_recorded_total_matches_the_server_is_resumed(server: tuple[str, State], tmp_path: Path) -> None:
    url, st = server
    _part(tmp_path, DATA[:100], {"url": url, "total": len(DATA)})
    assert _get(url, tmp_path / NAME).read_bytes() == DATA
    assert st.log == [("bytes=100-", 206)]
    assert _leftovers(tmp_path) == [NAME, f"{NAME}.sha256"]  # the part record went with the part


def test_part_without_record_is_not_trusted_when_nothing_is_known(server: tuple[str, State], tmp_path: Path) -> None:
    url, st = server
    _part(tmp_path, b"\xee" * 100, None)  # a corrupt prefix: before, it was resumed into the final file
    notes: list[str] = []
    assert _get(url, tmp_path / NAME, notes).read_bytes() == DATA
    assert st.log == [(None, 200)]
    assert any("starting over" in n and f"{NAME}.part" in n for n in notes)
    _part(tmp_path, b"\xee" * 100, {"url": url + "?other", "total": len(DATA)})  # record of another URL
    (tmp_path / NAME).unlink()
    st.log.clear()
    assert _get(url, tmp_path / NAME).read_bytes() == DATA and st.log == [(None, 200)]


# existing final files ---------------------------------------------------------------------------
def test_corrupt_final_file_whose_sidecar_disagrees_is_downloaded_again(server: tuple[str, State],
                                                                        tmp_path: Path) -> None:
    url, st = server
    dest = _get(url, tmp_path / NAME)
    assert _get(url, dest) == dest and len(st.log) == 1  # intact and recorded: skipped
    dest.write_bytes(DATA[:-1] + b"\x00")  # same size, one byte changed
    assert dl.verify_download(dest) is not None
    notes: list[str] = []
    assert _get(url, dest, notes).read_bytes() == DATA and len(st.log) == 2
    assert any("does not match its download record" in n for n in notes)
    assert dl.verify_download(dest) is None


def test_final_file_without_record_is_downloaded_again(server: tuple[str, State], tmp_path: Path) -> None:
    url, st = server
    (tmp_path / NAME).write_bytes(DATA[:5000])  # e.g. the truncated result of an older version
    notes: list[str] = []
    assert _get(url, tmp_path / NAME, notes).read_bytes() == DATA and len(st.log) == 1
    assert any("no download record" in n for n in notes)


def test_unknown_size_and_checksum_is_said_and_recorded(server: tuple[str, State], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = server
    dl.download_file(url, tmp_path / NAME, timeout=5.0, progress=False)  # default report: stderr
    err = capsys.readouterr().err
    assert f"no size or checksum known for {NAME}" in err and DATA_SHA in err and "blox data verify" in err
    sidecar = (tmp_path / f"{NAME}.sha256").read_text().splitlines()
    assert f"{DATA_SHA}  {NAME}" in sidecar and f"# size {len(DATA)}" in sidecar  # sha256sum -c format
    assert dl.read_record(tmp_path / NAME) == DownloadRecord(len(DATA), DATA_SHA)
    assert _leftovers(tmp_path) == [NAME, f"{NAME}.sha256"]
    dl.download_file(url, tmp_path / "b.blox", sha256=DATA_SHA, timeout=5.0, progress=False)
    assert "no size or checksum" not in capsys.readouterr().err  # said only when nothing is known


def test_cli_prints_the_note(server: tuple[str, State], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from blox_env.cli.root import app

    url, _ = server
    manifest = {"base_url": url.rsplit("/", 1)[0] + "/", "assets": [NAME]}
    res = CliRunner().invoke(app, ["data", "download", "--manifest", json.dumps(manifest), "--dest", str(tmp_path),
                                   "--quiet", "--timeout", "5"])
    assert res.exit_code == 0, res.output
    assert f"no size or checksum known for {NAME}" in res.output and str(tmp_path / NAME) in res.output


@pytest.mark.parametrize("suffix", [".part", ".part.json", ".sha256"])
def test_asset_names_cannot_clash_with_the_downloaders_own_files(suffix: str) -> None:
    with pytest.raises(InvalidArgumentError, match="plain file name"):
        ReleaseAsset(name="blox-info.blox" + suffix)
