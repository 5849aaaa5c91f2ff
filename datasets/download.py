"""Fetch the official BLOX release files (``blox-info``, ``blox-base-{seed}``, ...) into the user cache.

Why a module of its own: the release files are large, the network is not always kind, and the
importer must never read a half-written or corrupt file. So every download

- goes to ``<dest>/<name>.part`` first and is resumed with an HTTP ``Range`` request when a part
  exists (a server that ignores ``Range`` and answers 200 makes us restart from zero; 416 means the
  part is already complete);
- is retried with a short exponential backoff on connection errors, timeouts and 5xx answers,
  resuming from what was received; 404 and other 4xx answers fail at once;
- is checked against the expected size and sha256 (when the manifest knows them) before it is
  moved to its final name with :func:`os.replace`. A corrupt file never takes the final name.

The URL and checksums of the official release are not verified here (no network on the build
machines), so everything is driven by a :class:`ReleaseManifest` that the user can write as JSON
and pass with ``--manifest``::

    blox data download --write-manifest > blox-release.json   # edit, add sizes and sha256
    blox data download --manifest blox-release.json

:data:`DEFAULT_MANIFEST` lists the ``.blox`` files of seeds 0-2 with no size or checksum, which
means only "downloaded completely" is checked. ``blox-bench-{device}`` files are not listed by
default because the device names of the official release are not known here; add them to a
manifest (or use :func:`official_manifest` with ``devices=``).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blox_env.errors import DownloadError, InvalidArgumentError
from blox_env.paths import blox_home

__all__ = [
    "DEFAULT_BENCH_DEVICES", "DEFAULT_MANIFEST", "DEFAULT_SEEDS", "OFFICIAL_RELEASE_URL", "RELEASE_FORMATS",
    "ReleaseAsset", "ReleaseManifest", "download_file", "download_release", "official_manifest",
    "release_asset_names", "sha256_file",
]

OFFICIAL_RELEASE_URL = "https://github.com/SamsungLabs/blox/releases/download/v1.0/"
"""Base URL of the official release (tag assumed, not verified offline; override with a manifest)."""
RELEASE_FORMATS = ("blox", "csv", "pickle")
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_BENCH_DEVICES: tuple[str, ...] = ()
ALLOWED_SCHEMES = ("http", "https", "file")
RETRY_BACKOFF_S = 0.5
"""First retry waits this long, then doubles (capped at 8 s); tests shrink it."""
_CHUNK = 1 << 16
_USER_AGENT = "blox-env-downloader/0.1 (+urllib)"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA_RE = re.compile(r"[0-9a-f]{64}")
_RANGE_RE = re.compile(r"bytes\s+(\d+|\*)(?:-\d+)?/(\d+|\*)")


def _check_url(url: str) -> None:
    """Only schemes urllib can fetch and we can reason about (no ftp, no data: URLs)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    if scheme not in ALLOWED_SCHEMES:
        raise InvalidArgumentError(f"URL {url!r} has an unsupported scheme; allowed: {', '.join(ALLOWED_SCHEMES)}")


def _check_expectations(*, size: int | None, sha256: str | None, what: str) -> None:
    """Expected size/sha256 must be usable before any byte is fetched."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise InvalidArgumentError(f"{what}: size={size!r} must be a non-negative integer (bytes) or None")
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA_RE.fullmatch(sha256.lower())):
        raise InvalidArgumentError(f"{what}: sha256={sha256!r} must be 64 hexadecimal characters or None")


def _check_limits(*, timeout: float, retries: int) -> None:
    """A non-positive timeout would hang or fail at once; negative retries mean nothing."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise InvalidArgumentError(f"timeout={timeout!r} must be a positive number of seconds")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidArgumentError(f"retries={retries!r} must be a non-negative integer")


@dataclass(frozen=True)
class ReleaseAsset:
    """One release file: its name and, when known, its size in bytes and sha256 (lower-case hex)."""

    name: str
    size: int | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name) or self.name.endswith(".part"):
            raise InvalidArgumentError(
                f"asset name {self.name!r} is not a plain file name; allowed: letters, digits, '.', '_', '-' "
                "(no path separators, not ending in '.part')"
            )
        _check_expectations(size=self.size, sha256=self.sha256, what=self.name)
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", self.sha256.lower())


@dataclass(frozen=True)
class ReleaseManifest:
    """Where the release lives (``base_url``) and which files it holds; editable as JSON."""

    base_url: str
    assets: tuple[ReleaseAsset, ...]

    def __post_init__(self) -> None:
        _check_url(self.base_url)
        object.__setattr__(self, "assets", tuple(self.assets))
        if not all(isinstance(a, ReleaseAsset) for a in self.assets):
            raise InvalidArgumentError("manifest assets must be ReleaseAsset objects (use from_json for plain data)")
        names = [a.name for a in self.assets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidArgumentError(f"manifest lists assets more than once: {', '.join(dupes)}")

    @property
    def names(self) -> tuple[str, ...]:
        """Asset names in manifest order."""
        return tuple(a.name for a in self.assets)

    def asset(self, name: str) -> ReleaseAsset:
        """The asset called ``name``; unknown names raise :class:`InvalidArgumentError` listing the known ones."""
        for a in self.assets:
            if a.name == name:
                return a
        raise InvalidArgumentError(f"unknown release file {name!r}; the manifest has: {', '.join(self.names)}")

    def url(self, name: str) -> str:
        """Full download URL of one asset (``base_url`` joined with the quoted file name)."""
        return self.base_url.rstrip("/") + "/" + urllib.parse.quote(self.asset(name).name)

    @classmethod
    def from_json(cls, path_or_text: str | os.PathLike[str]) -> ReleaseManifest:
        """Read a manifest from a JSON file or JSON text (a string starting with ``{``).

        Format: ``{"base_url": "...", "assets": [{"name": "...", "size": 123, "sha256": "..."}, ...]}``;
        an asset may also be a bare name string.
        """
        if isinstance(path_or_text, str) and path_or_text.lstrip().startswith("{"):
            text, source = path_or_text, "manifest text"
        else:
            path = Path(path_or_text).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
                raise InvalidArgumentError(f"manifest file {path} cannot be read ({exc.strerror}); "
                                           "pass a JSON file path or JSON text") from None
            source = str(path)
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError(f"{source} is not valid JSON: {exc}") from None
        return cls._from_obj(raw, source=source)

    @classmethod
    def _from_obj(cls, raw: Any, *, source: str) -> ReleaseManifest:
        if not isinstance(raw, dict) or not isinstance(raw.get("base_url"), str) or not isinstance(
            raw.get("assets"), list
        ):
            raise InvalidArgumentError(f"{source}: expected an object with 'base_url' (string) and 'assets' (list)")
        unknown = sorted(set(raw) - {"base_url", "assets"})
        if unknown:
            raise InvalidArgumentError(f"{source}: unknown keys {unknown}; allowed: base_url, assets")
        assets = []
        for item in raw["assets"]:
            if isinstance(item, str):
                item = {"name": item}
            if not isinstance(item, dict) or not set(item) <= {"name", "size", "sha256"} or "name" not in item:
                raise InvalidArgumentError(f"{source}: asset {item!r} must be a name or an object with keys "
                                           "name, size (optional), sha256 (optional)")
            assets.append(ReleaseAsset(name=item["name"], size=item.get("size"), sha256=item.get("sha256")))
        return cls(base_url=raw["base_url"], assets=tuple(assets))

    def to_json(self) -> str:
        """The manifest as indented JSON (what :meth:`from_json` reads back)."""
        assets = [{"name": a.name, "size": a.size, "sha256": a.sha256} for a in self.assets]
        return json.dumps({"base_url": self.base_url, "assets": assets}, indent=2) + "\n"


def release_asset_names(
    *, seeds: Sequence[int] = DEFAULT_SEEDS, devices: Sequence[str] = DEFAULT_BENCH_DEVICES, ext: str = "blox"
) -> tuple[str, ...]:
    """Official file names: ``blox-info``, ``blox-{base,ext,env}-{seed}``, ``blox-bench-{device}``, one format."""
    if ext not in RELEASE_FORMATS:
        raise InvalidArgumentError(f"ext={ext!r} is not a release format; allowed: {', '.join(RELEASE_FORMATS)}")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise InvalidArgumentError(f"seeds={list(seeds)!r} must be non-negative integers")
    stems = ["blox-info"] + [f"blox-{part}-{s}" for s in seeds for part in ("base", "ext", "env")]
    stems += [f"blox-bench-{d}" for d in devices]
    return tuple(f"{stem}.{ext}" for stem in stems)


def official_manifest(
    *, base_url: str = OFFICIAL_RELEASE_URL, seeds: Sequence[int] = DEFAULT_SEEDS,
    devices: Sequence[str] = DEFAULT_BENCH_DEVICES, ext: str = "blox",
) -> ReleaseManifest:
    """A manifest of the official file names with unknown sizes and checksums."""
    names = release_asset_names(seeds=seeds, devices=devices, ext=ext)
    return ReleaseManifest(base_url=base_url, assets=tuple(ReleaseAsset(name=n) for n in names))


DEFAULT_MANIFEST = official_manifest()
"""The official ``.blox`` files of seeds 0-2 (no bench files, no checksums); see the module docstring."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Lower-case hex sha256 of a file, read in chunks (release files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_release(
    *, dest: Path | None = None, manifest: ReleaseManifest = DEFAULT_MANIFEST, names: Sequence[str] | None = None,
    timeout: float = 60.0, retries: int = 3, progress: bool = True,
) -> list[Path]:
    """Download the manifest's files (or just ``names``) into ``dest`` (default ``blox_home()/"release"``).

    Files already present and matching their size/sha256 are skipped. Every file is attempted; if
    any fails, one :class:`DownloadError` lists all failures after the others finished, so finished
    work is kept and a second call only fetches what is missing. Returns the final paths in the
    order requested.
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
                                       timeout=timeout, retries=retries, progress=progress))
        except DownloadError as exc:
            failures.append(exc)
    if failures:
        lines = "\n  ".join(str(f) for f in failures)
        raise DownloadError(f"{len(failures)} of {len(wanted)} release file(s) failed:\n  {lines}") from failures[0]
    return paths


def download_file(
    url: str, dest: Path, *, size: int | None = None, sha256: str | None = None, timeout: float = 60.0,
    retries: int = 3, progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part`` with resume, retries and verification.

    ``retries`` counts extra attempts after the first. A final file that already matches ``size``
    and ``sha256`` (or exists, when neither is given) is not downloaded again. If verification fails
    after resuming an old part, the file is fetched once more from zero before giving up.
    """
    _check_url(url)
    _check_expectations(size=size, sha256=sha256, what=url)
    _check_limits(timeout=timeout, retries=retries)
    sha = sha256.lower() if sha256 is not None else None
    dest = Path(dest).expanduser()
    if dest.is_file() and _mismatch(dest, size=size, sha256=sha) is None:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumed = part.is_file() and part.stat().st_size > 0
    fetch = {"url": url, "part": part, "size": size, "timeout": timeout, "retries": retries, "progress": progress}
    _fetch_with_retries(**fetch)
    problem = _mismatch(part, size=size, sha256=sha)
    if problem is not None and resumed:  # the old prefix may be the corrupt bit: one clean try
        part.unlink(missing_ok=True)
        _fetch_with_retries(**fetch)
        problem = _mismatch(part, size=size, sha256=sha)
    if problem is not None:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{dest.name}: {problem} (from {url}); the partial file was deleted")
    os.replace(part, dest)
    return dest


class _Transient(Exception):
    """A failure worth retrying (connection lost, timeout, 5xx); never leaves this module."""


def _mismatch(path: Path, *, size: int | None, sha256: str | None) -> str | None:
    """Why ``path`` does not match the expectations, or None when it does."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"size mismatch: expected {size} bytes, got {actual_size}"
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            return f"sha256 mismatch: expected {sha256}, got {actual}"
    return None


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


def _fetch_with_retries(*, url: str, part: Path, size: int | None, timeout: float, retries: int,
                        progress: bool) -> None:
    """Call :func:`_fetch_once` until it succeeds or ``retries`` extra attempts failed (backoff in between)."""
    with _progress_bar(label=part.name.removesuffix(".part"), enabled=progress) as bar:
        for attempt in range(retries + 1):
            try:
                _fetch_once(url=url, part=part, size=size, timeout=timeout, bar=bar, may_restart=True)
                return
            except _Transient as exc:
                if attempt == retries:
                    kept = part.stat().st_size if part.is_file() else 0
                    raise DownloadError(f"{url}: {exc} (gave up after {attempt + 1} attempt(s); {kept} bytes kept "
                                        f"in {part}, run again to resume)") from exc
                time.sleep(min(RETRY_BACKOFF_S * 2**attempt, 8.0))


def _fetch_once(
    *, url: str, part: Path, size: int | None, timeout: float, bar: Callable[..., None], may_restart: bool
) -> None:
    """One request: append to ``part`` from where it ends (or restart it); raise _Transient to retry."""
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size and offset > 0:
        return  # complete; the caller verifies it
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    restart = {"url": url, "part": part, "size": size, "timeout": timeout, "bar": bar, "may_restart": False}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        with contextlib.closing(exc):
            if exc.code == 416 and offset and may_restart:
                _, total = _content_range(exc.headers.get("Content-Range"))
                if total == offset:
                    return  # the part already holds the whole file
                part.unlink()
                return _fetch_once(**restart)
            if exc.code == 404:
                raise DownloadError(f"not found (HTTP 404): {url}") from None
            if exc.code >= 500 or exc.code in (408, 429):
                raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
            raise DownloadError(f"HTTP {exc.code} {exc.reason}: {url}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, FileNotFoundError | IsADirectoryError):
            raise DownloadError(f"not found: {url}") from None
        raise _Transient(f"cannot connect: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _Transient(f"request failed: {exc!r}") from exc
    with response:
        status = response.getcode()  # None for file: URLs, which always send the whole file
        length = response.headers.get("Content-Length")
        length_n = int(length) if length is not None and length.isdigit() else None
        if offset and status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                if not may_restart:
                    raise _Transient(f"server sent bytes from {start}, asked for {offset}")
                part.unlink()
                response.close()
                return _fetch_once(**restart)
            expected = total if total is not None else (offset + length_n if length_n is not None else None)
            mode = "ab"
        else:  # 200 (Range ignored or not sent): start over
            offset, expected, mode = 0, length_n, "wb"
        bar(completed=offset, total=expected if expected is not None else size)
        received = offset
        with open(part, mode) as fh:  # disk errors are not transient: they propagate as they are
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Transient(f"connection lost after {received} bytes: {exc!r}") from exc
                if not chunk:
                    break
                fh.write(chunk)
                received += len(chunk)
                bar(advance=len(chunk))
    if expected is not None and received < expected:
        raise _Transient(f"connection closed after {received} of {expected} bytes")


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``Content-Range: bytes a-b/n`` or ``bytes */n`` -> (a, n), unknown parts None."""
    m = _RANGE_RE.fullmatch(value.strip()) if value else None
    if m is None:
        return None, None
    start, total = m.group(1), m.group(2)
    return (int(start) if start.isdigit() else None, int(total) if total.isdigit() else None)
