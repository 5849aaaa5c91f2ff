"""Fetch the official BLOX release files (``blox-info``, ``blox-base-{seed}``, ...) into the user cache.

Why a module of its own: the release files are large, the network is not always kind, and the
importer must never read a half-written or corrupt file. So every download

- goes to ``<dest>/<name>.part`` first, with ``<name>.part.json`` recording the URL and the total size
  the server announced. A part left by an earlier run is resumed (HTTP ``Range``) only when the
  server still reports that total, or when the manifest's size/sha256 will check the result; any
  other part is started over (a server that ignores ``Range`` and answers 200 restarts it too;
  416 with the same total means the part is already complete);
- counts as complete only when its length is known: the manifest's size, ``Content-Length``, the
  total of a ``Content-Range``, or the terminating chunk of a chunked answer. A transfer that ended
  early (short body; a chunked answer cut off, which ``http.client`` reports as ``IncompleteRead``)
  never takes the final name, and its part is kept for a later resume only if the server accepts
  ranges. An answer with no length at all is confirmed by one range request past its end; when the
  server cannot confirm it and the manifest knows neither size nor sha256, the download is refused;
- is retried with a short exponential backoff on connection errors, timeouts and 5xx answers,
  resuming from what was received; 404 and other 4xx answers fail at once;
- is checked against the expected size and sha256 (when the manifest knows them) before it is
  moved to its final name with :func:`os.replace`. A corrupt file never takes the final name;
- leaves a ``<name>.sha256`` sidecar (``sha256sum -c`` reads it) with the size and sha256 received.
  An existing final file is skipped only when it matches the manifest's sha256, or else its sidecar
  (and the manifest's size); otherwise it is fetched again. When the manifest knows neither, the
  output says so, and :func:`verify_download` (``blox data verify``) compares against the sidecar.

Everything here is driven by a :class:`ReleaseManifest` (see :mod:`blox_env.datasets.release.manifest`).
``blox data download`` gets it from :mod:`blox_env.datasets.release.resolve` (the GitHub releases
API with its sizes and sha256 digests, else its cached answer, else the built-in manifest), or
from a JSON file the user writes and passes with ``--manifest``::

    blox data download --write-manifest > blox-release.json   # the resolved manifest; edit if needed
    blox data download --manifest blox-release.json
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from blox_env.datasets.release.manifest import (
    DEFAULT_BENCH_DEVICES,
    DEFAULT_MANIFEST,
    DEFAULT_SEEDS,
    OFFICIAL_RELEASE_URL,
    RELEASE_FORMATS,
    ReleaseManifest,
    check_expectations,
    check_url,
    official_manifest,
    release_asset_names,
)
from blox_env.datasets.release.records import (
    Report,
    discard_part,
    existing_problem,
    keep_part,
    mismatch,
    part_record_path,
    read_part_record,
    read_record,
    record_path,
    sha256_file,
    verify_download,
    write_record,
    write_text_atomic,
)
from blox_env.errors import DownloadError, InvalidArgumentError
from blox_env.paths import blox_home

__all__ = [
    "DEFAULT_BENCH_DEVICES", "DEFAULT_MANIFEST", "DEFAULT_SEEDS", "OFFICIAL_RELEASE_URL", "RELEASE_FORMATS",
    "download_file", "download_release", "official_manifest",
    "read_record", "record_path", "release_asset_names", "sha256_file", "verify_download",
]

RETRY_BACKOFF_S = 0.5
"""First retry waits this long, then doubles (capped at 8 s); tests shrink it."""
_CHUNK = 1 << 16
_USER_AGENT = "blox-env-downloader/0.1 (+urllib)"
_RANGE_RE = re.compile(r"bytes\s+(\d+|\*)(?:-\d+)?/(\d+|\*)")


def _check_limits(*, timeout: float, retries: int) -> None:
    """A non-positive timeout would hang or fail at once; negative retries mean nothing."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise InvalidArgumentError(f"timeout={timeout!r} must be a positive number of seconds")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidArgumentError(f"retries={retries!r} must be a non-negative integer")


def _to_stderr(message: str) -> None:
    """Default ``report``: notes go to stderr so stdout stays the list of paths."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


# downloads --------------------------------------------------------------------------------------
def download_release(
    *, dest: Path | None = None, manifest: ReleaseManifest = DEFAULT_MANIFEST, names: Sequence[str] | None = None,
    timeout: float = 60.0, retries: int = 3, progress: bool = True, report: Report | None = None,
) -> list[Path]:
    """Download the manifest's files (or just ``names``) into ``dest`` (default ``blox_home()/"release"``).

    Files already present and matching their size/sha256 (or their sidecar) are skipped. Every file
    is attempted; if any fails, one :class:`DownloadError` lists all failures after the others
    finished, so finished work is kept and a second call only fetches what is missing. Returns the
    final paths in the order requested. ``report`` receives notes (default: stderr).
    """
    if isinstance(names, str):
        names = [names]
    wanted = list(dict.fromkeys(names)) if names is not None else list(manifest.names)
    unknown = [n for n in wanted if n not in manifest.names]
    if unknown:
        raise InvalidArgumentError(f"unknown release file(s) {', '.join(map(repr, unknown))}; "
                                   f"the manifest has: {', '.join(manifest.names)}")
    _check_limits(timeout=timeout, retries=retries)
    folder = Path(dest).expanduser() if dest is not None else blox_home() / "release"
    paths: list[Path] = []
    failures: list[DownloadError] = []
    for name in wanted:
        asset = manifest.asset(name)
        try:
            paths.append(download_file(manifest.url(name), folder / name, size=asset.size, sha256=asset.sha256,
                                       timeout=timeout, retries=retries, progress=progress, report=report))
        except DownloadError as exc:
            failures.append(exc)
    if failures:
        lines = "\n  ".join(str(f) for f in failures)
        raise DownloadError(f"{len(failures)} of {len(wanted)} release file(s) failed:\n  {lines}") from failures[0]
    return paths


def download_file(
    url: str, dest: Path, *, size: int | None = None, sha256: str | None = None, timeout: float = 60.0,
    retries: int = 3, progress: bool = True, report: Report | None = None,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part`` with resume, retries and verification.

    ``retries`` counts extra attempts after the first. A final file that already matches ``size`` and
    ``sha256`` (or, when no sha256 is given, its ``.sha256`` sidecar) is not downloaded again. If
    verification fails after resuming an old part, the file is fetched once more from zero before
    giving up. ``report`` receives notes for the user (default: stderr).
    """
    check_url(url)
    check_expectations(size=size, sha256=sha256, what=url)
    _check_limits(timeout=timeout, retries=retries)
    say = report if report is not None else _to_stderr
    sha = sha256.lower() if sha256 is not None else None
    dest = Path(dest).expanduser()
    if dest.is_file():
        problem = existing_problem(dest, size=size, sha256=sha)
        if problem is None:
            return dest
        say(f"{dest.name}: {problem}; downloading it again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumed = keep_part(part, url=url, size=size, sha256=sha, say=say)
    unsized = size is None and sha is None
    with _progress_bar(label=dest.name, enabled=progress) as bar:
        fetcher = _Fetcher(url=url, part=part, size=size, checked=not unsized, timeout=timeout, bar=bar)
        fetcher.fetch(retries=retries, need_length=unsized)
        problem = mismatch(part, size=size, sha256=sha)
        if problem is not None and resumed:  # the old prefix may be the corrupt bit: one clean try
            discard_part(part)
            fetcher.fetch(retries=retries, need_length=unsized)
            problem = mismatch(part, size=size, sha256=sha)
    if problem is not None:
        discard_part(part)
        raise DownloadError(f"{dest.name}: {problem} (from {url}); the partial file was deleted")
    digest = sha if sha is not None else sha256_file(part)
    nbytes = part.stat().st_size
    os.replace(part, dest)
    write_record(dest, size=nbytes, sha256=digest, url=url)
    part_record_path(part).unlink(missing_ok=True)
    if unsized:
        say(f"no size or checksum known for {dest.name}; recorded sha256 {digest} ({nbytes} bytes) in "
            f"{record_path(dest).name} so `blox data verify` can compare later")
    return dest


class _Transient(Exception):
    """A failure worth retrying (connection lost, timeout, 5xx); never leaves this module."""


@contextlib.contextmanager
def _progress_bar(*, label: str, enabled: bool) -> Iterator[Callable[..., None]]:
    """Yield ``update(completed=, total=, advance=)`` for one file's rich bar; a no-op when disabled."""
    if not enabled:
        yield lambda **_: None
        return
    import rich.progress as rp  # only paid for when a bar is shown

    columns = (rp.TextColumn("{task.description}"), rp.BarColumn(), rp.DownloadColumn(), rp.TransferSpeedColumn(),
               rp.TimeRemainingColumn())
    with rp.Progress(*columns) as bar:
        task = bar.add_task(label, total=None)
        yield lambda **kw: bar.update(task, **kw)


class _Fetcher:
    """Moves one URL into one ``.part`` file: requests, resumes, retries; knows whether the server takes ranges."""

    def __init__(self, *, url: str, part: Path, size: int | None, checked: bool, timeout: float,
                 bar: Callable[..., None]) -> None:
        self.url, self.part, self.size, self.timeout, self.bar = url, part, size, timeout, bar
        self.checked = checked  # the manifest's size or sha256 will check the result
        self.ranges_ok = False  # the server answered 206 or announced "Accept-Ranges: bytes"
        self._last_416_total: int | None = None

    def fetch(self, *, retries: int, need_length: bool) -> None:
        """Fill the part; with ``need_length``, refuse (and delete) a transfer whose length nobody can confirm."""
        if self._with_retries(retries) or not need_length:
            return
        if self.ranges_ok and self._with_retries(retries):  # a range request past the end confirms the total
            return
        kept = self.part.stat().st_size if self.part.is_file() else 0
        discard_part(self.part)
        raise DownloadError(
            f"{self.url}: the server sent {kept} bytes with no Content-Length and cannot confirm the total with a "
            "range request, so a dropped connection cannot be told from the end of the file; nothing was kept. "
            f"Add size and sha256 for {self.part.name.removesuffix('.part')} to a manifest (--manifest)")

    def _with_retries(self, retries: int) -> bool:
        """Call :meth:`_once` until it succeeds or ``retries`` extra attempts failed (backoff in between)."""
        for attempt in range(retries + 1):
            try:
                return self._once(may_restart=True)
            except _Transient as exc:
                if attempt < retries:
                    time.sleep(min(RETRY_BACKOFF_S * 2**attempt, 8.0))
                    continue
                kept = self.part.stat().st_size if self.part.is_file() else 0
                resumable = self.checked or read_part_record(self.part, self.url) is not None
                if self.ranges_ok and kept and resumable:
                    where = f"{kept} bytes kept in {self.part}, run again to resume"
                else:
                    discard_part(self.part)
                    where = ("nothing received" if not kept else "the partial file was deleted: " + (
                        "the server does not accept range requests" if not self.ranges_ok
                        else "its total size is unknown, so a later run could not check it"))
                raise DownloadError(f"{self.url}: {exc} (gave up after {attempt + 1} attempt(s); {where})") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _restart(self) -> None:
        discard_part(self.part)

    def _write_part_record(self, total: int | None) -> None:
        write_text_atomic(part_record_path(self.part), json.dumps({"url": self.url, "total": total}))

    def _open(self, offset: int) -> http.client.HTTPResponse | None:
        """The response for the bytes from ``offset``; None when a 416 answer ends the transfer itself."""
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            return urllib.request.urlopen(urllib.request.Request(self.url, headers=headers), timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            with contextlib.closing(exc):
                if exc.code == 416 and offset:
                    self.ranges_ok = True
                    self._last_416_total = _content_range(exc.headers.get("Content-Range"))[1]
                    return None
                if exc.code == 404:
                    raise DownloadError(f"not found (HTTP 404): {self.url}") from None
                if exc.code >= 500 or exc.code in (408, 429):
                    raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
                raise DownloadError(f"HTTP {exc.code} {exc.reason}: {self.url}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, FileNotFoundError | IsADirectoryError):
                raise DownloadError(f"not found: {self.url}") from None
            raise _Transient(f"cannot connect: {exc.reason}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(f"request failed: {exc!r}") from exc

    def _once(self, *, may_restart: bool) -> bool:
        """One request appending to the part (or restarting it); True when the answer's length was known and met."""
        offset = self.part.stat().st_size if self.part.is_file() else 0
        want = read_part_record(self.part, self.url) if offset else None
        want = want if want is not None else self.size
        if want is not None and offset > want:
            self._restart()
            offset = 0
        if want is not None and offset == want and offset > 0:
            return True  # complete; the caller verifies it
        response = self._open(offset)
        if response is None:  # 416: the part is complete only if the server's total is what we hold
            return self._after_416(offset, want, may_restart)
        with response:
            status = response.getcode()  # None for file: URLs, which always send the whole file
            if status == 206 or (response.headers.get("Accept-Ranges") or "").strip().lower() == "bytes":
                self.ranges_ok = True
            length = response.headers.get("Content-Length")
            length_n = int(length) if length is not None and length.isdigit() else None
            if offset and status == 206:
                start, total = _content_range(response.headers.get("Content-Range"))
                if start != offset or (want is not None and total != want):
                    if not may_restart:
                        raise _Transient(f"server sent bytes {start} of {total}, asked for {offset} of {want}")
                    response.close()
                    self._restart()
                    return self._once(may_restart=False)
                expected = total if total is not None else (offset + length_n if length_n is not None else None)
                if want is None and expected is not None:
                    self._write_part_record(expected)
                mode = "ab"
            else:  # 200 (Range ignored or not sent): start over
                offset, expected, mode = 0, length_n, "wb"
                self._write_part_record(expected)
            received = self._copy(response, mode=mode, offset=offset, expected=expected)
            chunked = bool(getattr(response, "chunked", False))  # ended with its terminating chunk
        if expected is not None and received < expected:
            raise _Transient(f"connection closed after {received} of {expected} bytes")
        return expected is not None or chunked

    def _after_416(self, offset: int, want: int | None, may_restart: bool) -> bool:
        """416 to ``bytes=offset-``: done if the server's total equals ``offset`` (and the expected total)."""
        total = self._last_416_total
        if total == offset and want in (None, total):
            return True
        if not may_restart:
            raise _Transient(f"server answered 416 (total {total}) for a part of {offset} bytes")
        self._restart()
        return self._once(may_restart=False)

    def _copy(self, response: http.client.HTTPResponse, *, mode: str, offset: int, expected: int | None) -> int:
        """Stream the body into the part; returns the part's size afterwards. Read errors are transient."""
        self.bar(completed=offset, total=expected if expected is not None else self.size)
        received = offset
        with open(self.part, mode) as fh:  # disk errors are not transient: they propagate as they are
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:  # IncompleteRead: chunked answer cut off
                    if isinstance(exc, http.client.IncompleteRead) and exc.partial:  # whole chunks: good bytes
                        fh.write(exc.partial)
                        received += len(exc.partial)
                    raise _Transient(f"connection lost after {received} bytes: {type(exc).__name__}") from exc
                if not chunk:
                    return received
                fh.write(chunk)
                received += len(chunk)
                self.bar(advance=len(chunk))


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``Content-Range: bytes a-b/n`` or ``bytes */n`` -> (a, n), unknown parts None."""
    m = _RANGE_RE.fullmatch(value.strip()) if value else None
    if m is None:
        return None, None
    start, total = m.group(1), m.group(2)
    return (int(start) if start.isdigit() else None, int(total) if total.isdigit() else None)
