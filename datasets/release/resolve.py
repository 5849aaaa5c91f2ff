"""Find the official release through GitHub's releases API instead of assuming its tag.

Why: dead or moved download links are the most reported problem of NAS benchmarks, and the
built-in manifest (:data:`~blox_env.datasets.release.manifest.DEFAULT_MANIFEST`) only assumes the
tag ``v1.0`` and knows no sizes or checksums. So ``blox data download`` first asks the API

- ``GET {api}/repos/{owner}/{repo}/releases/latest`` (no tag) or ``.../releases/tags/{tag}``;
- and takes each asset's ``name``, ``size``, ``browser_download_url`` and, where the API gives it,
  its ``digest`` (``"sha256:<hex>"``), so every download is checked by size and sha256 when known.

The API base is ``api_url=``, else ``$BLOX_RELEASE_API``, else ``https://api.github.com`` (tests
point it at a loopback server). A resolved manifest is cached, with the date it was resolved, under
``$BLOX_HOME/release-manifests/{owner}/{repo}/`` (``latest.json`` and ``tag-{tag}.json``). When the
API cannot be reached (no network, timeout, 5xx) the cache is used, then the built-in manifest;
``offline=True`` skips the API. A rate-limit reply uses the cache when there is one, else raises a
:class:`~blox_env.errors.DownloadError` saying when to retry and what to use meanwhile. A missing
tag (404) raises, naming the tags that have releases; so does a reply that is not the JSON the API
documents. :meth:`ResolvedRelease.describe` says where the manifest and each file came from.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from blox_env.datasets.release.manifest import (
    RELEASE_FORMATS,
    ReleaseAsset,
    ReleaseManifest,
    release_asset_names,
)
from blox_env.datasets.release.records import Report, write_text_atomic
from blox_env.errors import DownloadError, InvalidArgumentError
from blox_env.paths import blox_home

__all__ = [
    "API_ENV", "ASSUMED_TAG", "DEFAULT_API_URL", "DEFAULT_REPO", "ResolvedRelease", "api_base",
    "default_selection", "download_official", "manifest_from_release", "release_cache_path", "release_for",
    "resolve_release", "select", "selected_manifest",
]

DEFAULT_REPO = "SamsungLabs/blox"
"""The repository whose releases hold the official files."""
DEFAULT_API_URL = "https://api.github.com"
API_ENV = "BLOX_RELEASE_API"
"""Environment variable overriding the API base URL (a mirror, GitHub Enterprise, a test server)."""
ASSUMED_TAG = "v1.0"
"""The tag the built-in manifest assumes when neither the API nor a cached manifest names one."""
SOURCES = ("api", "cache", "built-in", "file")
_LABELS = {"api": "API", "cache": "cache", "built-in": "built-in", "file": "manifest file"}
_PREFERENCE = ("blox", "pickle", "csv")  # the importer's order: one format per file by default
_MAX_JSON = 8 << 20  # a release object is a few kB; refuse anything absurd
_CACHE_FORMAT = 1
_USER_AGENT = "blox-env-release-resolver/0.1 (+urllib)"
_REPO_RE = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_DIGEST_RE = re.compile(r"sha256:([0-9a-fA-F]{64})")


@dataclass(frozen=True)
class ResolvedRelease:
    """A manifest and where it came from.

    ``source`` is ``"api"``, ``"cache"``, ``"built-in"`` or ``"file"``; ``requested`` is ``"latest"``
    or the tag asked for, ``tag`` the release's tag (None for a manifest file); ``resolved_at`` is
    when the API answered (ISO 8601, UTC; None for built-in and file manifests); ``origin`` the API
    URL, cache file or manifest file; ``notes`` what the user should know (fallback reasons,
    skipped assets).
    """

    manifest: ReleaseManifest
    source: str
    repo: str | None
    tag: str | None
    requested: str
    resolved_at: str | None
    origin: str
    notes: tuple[str, ...] = ()

    def describe(self, names: Sequence[str] | None = None) -> list[str]:
        """One line on the manifest's origin, the notes, then ``name [source] url (size, sha256)`` per file."""
        what = f"release {self.repo} {self.tag}" if self.repo else "release"
        head = {
            "api": f"{what}: resolved through the releases API {self.origin} at {self.resolved_at}",
            "cache": f"{what}: cached manifest {self.origin} (resolved {self.resolved_at})",
            "built-in": f"{what}: built-in manifest (no sizes or checksums)"
                        + (f"; tag {self.tag} assumed, not verified" if self.requested == "latest" else ""),
            "file": f"release manifest file {self.origin}",
        }[self.source]
        lines = [head, *(f"  note: {n}" for n in self.notes)]
        label = _LABELS[self.source]
        for name in names if names is not None else self.manifest.names:
            a = self.manifest.asset(name)
            size = f"{a.size:,} bytes" if a.size is not None else "size unknown"
            sha = f"sha256 {a.sha256}" if a.sha256 else "no sha256"
            lines.append(f"  {name} [{label}] {self.manifest.url(name)} ({size}, {sha})")
        return lines

    def to_cache(self) -> str:
        """The JSON written to the cache: repo, tags, the date resolved, the API URL and the manifest."""
        return json.dumps({
            "blox_release_cache": _CACHE_FORMAT, "repo": self.repo, "tag": self.tag, "requested": self.requested,
            "resolved_at": self.resolved_at, "api_url": self.origin, "manifest": self.manifest.to_obj(),
        }, indent=2) + "\n"


# configuration -----------------------------------------------------------------------------------
def api_base(api_url: str | None = None) -> str:
    """The API base URL: ``api_url``, else ``$BLOX_RELEASE_API``, else GitHub's; http(s) only, no trailing /."""
    base = api_url or os.environ.get(API_ENV) or DEFAULT_API_URL
    scheme = urllib.parse.urlsplit(base).scheme.lower() if isinstance(base, str) else ""
    if scheme not in ("http", "https"):
        where = "api_url" if api_url else (f"${API_ENV}" if os.environ.get(API_ENV) else "the default")
        raise InvalidArgumentError(f"releases API URL {base!r} (from {where}) must be an http or https URL")
    return base.rstrip("/")


def _check_repo(repo: str) -> tuple[str, str]:
    if not isinstance(repo, str) or not _REPO_RE.fullmatch(repo) or any(p in (".", "..") for p in repo.split("/")):
        raise InvalidArgumentError(f"repo={repo!r} must be OWNER/NAME (letters, digits, '.', '_', '-'), "
                                   f"e.g. {DEFAULT_REPO}")
    owner, name = repo.split("/")
    return owner, name


def _check_tag(tag: str | None) -> None:
    if tag is not None and (not isinstance(tag, str) or not tag.strip() or any(ord(c) < 32 for c in tag)):
        raise InvalidArgumentError(f"tag={tag!r} must be a release tag name (e.g. {ASSUMED_TAG}) or None for the "
                                   "latest release")


def release_cache_path(repo: str = DEFAULT_REPO, tag: str | None = None, *, cache_dir: Path | None = None) -> Path:
    """Where the manifest resolved for ``repo`` and ``tag`` (None: latest) is cached."""
    owner, name = _check_repo(repo)
    _check_tag(tag)
    root = Path(cache_dir).expanduser() if cache_dir is not None else blox_home() / "release-manifests"
    leaf = "latest.json" if tag is None else f"tag-{urllib.parse.quote(tag, safe='')}.json"
    return root / owner / name / leaf


def _download_base(repo: str, tag: str) -> str:
    return f"https://github.com/{repo}/releases/download/{urllib.parse.quote(tag, safe='')}/"


# the API -----------------------------------------------------------------------------------------
class _Unreachable(Exception):
    """No usable answer (connection, timeout, 5xx): the caller falls back to the cache."""


class _Status(Exception):
    """A definite HTTP error answer from the API."""

    def __init__(self, code: int, reason: str, headers: Mapping[str, str], body: bytes) -> None:
        super().__init__(f"HTTP {code} {reason}")
        self.code, self.reason, self.headers, self.body = code, reason, headers, body


def _get_json(url: str, *, timeout: float) -> Any:
    """GET ``url`` and parse its JSON; malformed replies raise :class:`DownloadError`."""
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
               "User-Agent": _USER_AGENT}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
            body = resp.read(_MAX_JSON + 1)
    except urllib.error.HTTPError as exc:
        with contextlib.closing(exc):
            try:
                body = exc.read(64 << 10)
            except (OSError, http.client.HTTPException):
                body = b""
            if exc.code >= 500:
                raise _Unreachable(f"HTTP {exc.code} {exc.reason}") from None
            raise _Status(exc.code, str(exc.reason), exc.headers or {}, body) from None
    except urllib.error.URLError as exc:
        raise _Unreachable(f"cannot connect: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Unreachable(f"request failed: {exc!r}") from None
    if len(body) > _MAX_JSON:
        raise _malformed(url, f"the reply is larger than {_MAX_JSON >> 20} MiB")
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _malformed(url, f"not JSON ({exc})") from None


def _malformed(url: str, what: str) -> DownloadError:
    return DownloadError(f"the releases API at {url} answered with malformed JSON: {what}. Use the cached or "
                         "built-in manifest (--offline) or a manifest of your own (--manifest FILE)")


def manifest_from_release(release: Any, *, repo: str, source: str) -> tuple[ReleaseManifest, list[str]]:
    """A manifest from one release object of the API: names, sizes, URLs and sha256 digests where given.

    Assets not fully uploaded (``state`` other than ``uploaded``) or whose names are not plain file
    names are skipped, with a note each. Anything else off the documented shape raises
    :class:`DownloadError` naming ``source``.
    """
    if not isinstance(release, dict) or not isinstance(release.get("tag_name"), str) or not isinstance(
        release.get("assets"), list
    ):
        raise _malformed(source, "expected a release object with 'tag_name' (string) and 'assets' (list)")
    tag = release["tag_name"]
    assets: list[ReleaseAsset] = []
    notes: list[str] = []
    for k, item in enumerate(release["assets"]):
        if not isinstance(item, dict):
            raise _malformed(source, f"assets[{k}] is not an object")
        name, size, url = item.get("name"), item.get("size"), item.get("browser_download_url")
        digest = item.get("digest")
        if not isinstance(name, str) or isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _malformed(source, f"assets[{k}] needs 'name' (string) and 'size' (non-negative integer), "
                                     f"got name={name!r}, size={size!r}")
        if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
            raise _malformed(source, f"asset {name!r}: browser_download_url={url!r} is not an http(s) URL")
        if digest is not None and not isinstance(digest, str):
            raise _malformed(source, f"asset {name!r}: digest={digest!r} is not a string")
        state = item.get("state", "uploaded")
        if state != "uploaded":
            notes.append(f"skipped asset {name!r}: its upload is not complete (state {state!r})")
            continue
        sha = None
        if digest is not None:
            m = _DIGEST_RE.fullmatch(digest)
            if m is None and digest.lower().startswith("sha256:"):
                raise _malformed(source, f"asset {name!r}: digest {digest!r} is not 'sha256:' + 64 hex digits")
            sha = m.group(1).lower() if m else None  # other algorithms: size only
        try:
            assets.append(ReleaseAsset(name=name, size=size, sha256=sha, url=url))
        except InvalidArgumentError as exc:
            notes.append(f"skipped asset {name!r}: {exc}")
    base = assets[0].url.rsplit("/", 1)[0] + "/" if assets and assets[0].url else _download_base(repo, tag)
    try:
        return ReleaseManifest(base_url=base, assets=tuple(assets)), notes
    except InvalidArgumentError as exc:  # e.g. an asset listed twice
        raise _malformed(source, str(exc)) from None


def _retry_hint(headers: Mapping[str, str], now: float) -> str | None:
    """When a rate-limited client may ask again: from ``Retry-After`` or ``X-RateLimit-Reset``."""
    wait: float | None = None
    after = (headers.get("Retry-After") or "").strip()
    if after.isdigit():
        wait = float(after)
    elif after:
        with contextlib.suppress(TypeError, ValueError):
            wait = email.utils.parsedate_to_datetime(after).timestamp() - now
    reset = (headers.get("X-RateLimit-Reset") or "").strip()
    if wait is None and reset.isdigit():
        wait = float(reset) - now
    if wait is None:
        return None
    wait = max(wait, 0.0)
    at = datetime.fromtimestamp(now + wait, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"retry after {at} (in {wait / 60:.0f} min)" if wait >= 90 else f"retry after {at} (in {wait:.0f} s)"


def _is_rate_limit(exc: _Status) -> bool:
    return exc.code == 429 or (exc.code == 403 and (
        (exc.headers.get("X-RateLimit-Remaining") or "").strip() == "0" or bool(exc.headers.get("Retry-After"))))


def _missing_tag(base: str, repo: str, tag: str | None, url: str, *, timeout: float) -> DownloadError:
    """The 404 error, naming the tags that have releases when the API lists them."""
    if tag is None:
        return DownloadError(f"{repo} has no published release, or the repository does not exist (HTTP 404 from "
                             f"{url}); pass --repo OWNER/NAME, --tag TAG or --manifest FILE")
    listing = f"{base}/repos/{repo}/releases?per_page=100"
    try:
        releases = _get_json(listing, timeout=timeout)
        if not isinstance(releases, list):
            raise DownloadError("not a list")
        tags = [r["tag_name"] for r in releases if isinstance(r, dict) and isinstance(r.get("tag_name"), str)]
        known = f"tags with releases: {', '.join(tags)}" if tags else f"{repo} lists no releases"
    except (_Unreachable, _Status, DownloadError) as exc:
        known = f"the list of releases could not be read ({exc})"
    return DownloadError(f"release tag {tag!r} not found in {repo} (HTTP 404 from {url}); {known}. "
                         "Omit --tag for the latest release")


# resolution --------------------------------------------------------------------------------------
def _read_cache(path: Path, *, repo: str) -> ResolvedRelease | str:
    """The cached resolution, or why it cannot be used."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no cached manifest at {path}"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"the cached manifest {path} is unreadable ({exc})"
    try:
        if not isinstance(raw, dict) or raw.get("blox_release_cache") != _CACHE_FORMAT or raw.get("repo") != repo:
            raise InvalidArgumentError("not a release cache of this repository and format")
        if not isinstance(raw.get("tag"), str) or not isinstance(raw.get("resolved_at"), str):
            raise InvalidArgumentError("no tag or date")
        manifest = ReleaseManifest.from_obj(raw.get("manifest"), source=str(path))
    except InvalidArgumentError as exc:
        return f"the cached manifest {path} is unusable ({exc})"
    return ResolvedRelease(manifest=manifest, source="cache", repo=repo, tag=raw["tag"],
                           requested=str(raw.get("requested", raw["tag"])), resolved_at=raw["resolved_at"],
                           origin=str(path))


def _write_cache(resolved: ResolvedRelease, paths: Sequence[Path]) -> list[str]:
    """Write the resolution to each cache path atomically; a failure is a note, never an error."""
    notes = []
    text = resolved.to_cache()
    for path in dict.fromkeys(paths):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, text)
        except OSError as exc:
            notes.append(f"could not cache the manifest at {path} ({exc.strerror or exc})")
    return notes


def _fallback(repo: str, tag: str | None, cache: Path, reason: str) -> ResolvedRelease:
    """The cached manifest if usable, else the built-in one; ``reason`` says why the API was not used."""
    cached = _read_cache(cache, repo=repo)
    if isinstance(cached, ResolvedRelease):
        return replace(cached, requested=tag or "latest", notes=(reason,))
    used = tag or ASSUMED_TAG
    names = [n for ext in RELEASE_FORMATS for n in release_asset_names(ext=ext)]  # default_selection picks one
    manifest = ReleaseManifest(base_url=_download_base(repo, used), assets=tuple(ReleaseAsset(name=n) for n in names))
    return ResolvedRelease(manifest=manifest, source="built-in", repo=repo, tag=used, requested=tag or "latest",
                           resolved_at=None, origin="built-in", notes=(reason, cached))


def resolve_release(
    tag: str | None = None, *, repo: str = DEFAULT_REPO, api_url: str | None = None, offline: bool = False,
    timeout: float = 30.0, cache_dir: Path | None = None,
) -> ResolvedRelease:
    """Resolve ``tag`` (None: the latest release) of ``repo`` to a manifest: API, then cache, then built-in.

    A successful answer is cached (``cache_dir``, default ``$BLOX_HOME/release-manifests``) under the
    requested name and under the release's tag. Raises :class:`DownloadError` for a missing tag, a
    rate limit with no cache to fall back to, and malformed replies; never touches the network with
    ``offline=True``.
    """
    _check_repo(repo)
    _check_tag(tag)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise InvalidArgumentError(f"timeout={timeout!r} must be a positive number of seconds")
    cache = release_cache_path(repo, tag, cache_dir=cache_dir)
    if offline:
        return _fallback(repo, tag, cache, "offline: the releases API was not asked")
    base = api_base(api_url)
    url = f"{base}/repos/{repo}/releases/" + ("latest" if tag is None else f"tags/{urllib.parse.quote(tag, safe='')}")
    try:
        release = _get_json(url, timeout=timeout)
    except _Unreachable as exc:
        return _fallback(repo, tag, cache, f"the releases API {url} could not be used: {exc}")
    except _Status as exc:
        if _is_rate_limit(exc):
            when = _retry_hint(exc.headers, time.time()) or "retry later (GitHub resets its limit within the hour)"
            cached = _read_cache(cache, repo=repo)
            if isinstance(cached, ResolvedRelease):
                return replace(cached, requested=tag or "latest", notes=(
                    f"the releases API is rate-limited (HTTP {exc.code} from {url}); {when}",))
            raise DownloadError(
                f"the GitHub releases API is rate-limited (HTTP {exc.code} from {url}); {when}. Meanwhile use the "
                f"built-in manifest (--offline; tag {tag or ASSUMED_TAG}, no checksums) or a manifest of your own "
                "(--manifest FILE)") from None
        if exc.code == 404:
            raise _missing_tag(base, repo, tag, url, timeout=timeout) from None
        raise DownloadError(f"the releases API answered {exc} for {url}; use --offline (cached or built-in "
                            "manifest) or --manifest FILE") from None
    manifest, notes = manifest_from_release(release, repo=repo, source=url)
    now = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    resolved = ResolvedRelease(manifest=manifest, source="api", repo=repo, tag=release["tag_name"],
                               requested=tag or "latest", resolved_at=now, origin=url, notes=tuple(notes))
    notes += _write_cache(resolved, [cache, release_cache_path(repo, release["tag_name"], cache_dir=cache_dir)])
    return replace(resolved, notes=tuple(notes))


def default_selection(manifest: ReleaseManifest, fmt: str | None = None) -> tuple[str, ...]:
    """The official data files of a manifest: one format per file (.blox, else .pickle, else .csv) or ``fmt``.

    Other assets (READMEs, code archives) are left out. Raises :class:`DownloadError` when none is left.
    """
    from blox_env.datasets.release.header import parse_release_file_name

    if fmt is not None and fmt not in RELEASE_FORMATS:
        raise InvalidArgumentError(f"format={fmt!r} is not a release format; allowed: {', '.join(RELEASE_FORMATS)}")
    best: dict[tuple[Any, ...], tuple[int, str]] = {}
    for name in manifest.names:
        parsed = parse_release_file_name(name)
        if parsed is None or (fmt is not None and parsed.ext != fmt):
            continue
        key = (parsed.kind, parsed.seed, parsed.device)
        rank = _PREFERENCE.index(parsed.ext)
        if key not in best or rank < best[key][0]:
            best[key] = (rank, name)
    chosen = {name for _, name in best.values()}
    if not chosen:
        raise DownloadError(f"the release holds no official data files{f' in .{fmt}' if fmt else ''} "
                            f"(blox-info, blox-base-SEED, ...); it has: {', '.join(manifest.names) or 'no assets'}. "
                            "Name files with --name")
    return tuple(n for n in manifest.names if n in chosen)


def download_official(
    tag: str | None = None, *, dest: Path | None = None, names: Sequence[str] | None = None, fmt: str | None = None,
    repo: str = DEFAULT_REPO, api_url: str | None = None, offline: bool = False,
    manifest: ReleaseManifest | str | os.PathLike[str] | None = None, timeout: float = 60.0, retries: int = 3,
    progress: bool = True, report: Report | None = None,
) -> list[Path]:
    """Resolve the release (or read ``manifest``), say where each file comes from, then download and verify.

    Without ``names`` an API, cached or built-in manifest yields :func:`default_selection` (one format
    per file, or ``fmt``); a manifest file yields all its files (those in ``fmt`` when given). Notes go to
    ``report`` (default: stderr). Returns the final paths (see
    :func:`~blox_env.datasets.release.download.download_release`).
    """
    resolved = release_for(tag, repo=repo, api_url=api_url, offline=offline, manifest=manifest, timeout=timeout)
    wanted = select(resolved, names=names, fmt=fmt)
    say = report if report is not None else _to_stderr
    for line in resolved.describe(wanted):
        say(line)
    from blox_env.datasets.release.download import download_release

    return download_release(dest=dest, manifest=resolved.manifest, names=wanted, timeout=timeout, retries=retries,
                            progress=progress, report=say)


def release_for(
    tag: str | None = None, *, repo: str = DEFAULT_REPO, api_url: str | None = None, offline: bool = False,
    manifest: ReleaseManifest | str | os.PathLike[str] | None = None, timeout: float = 30.0,
) -> ResolvedRelease:
    """``manifest`` (a :class:`ReleaseManifest`, JSON file or text) as a ``file`` source, else resolve the release."""
    if manifest is None:
        return resolve_release(tag, repo=repo, api_url=api_url, offline=offline, timeout=timeout)
    if tag is not None or offline:
        raise InvalidArgumentError("a manifest file names its files itself: pass either --manifest or "
                                   "--tag/--offline, not both")
    if isinstance(manifest, ReleaseManifest):
        return ResolvedRelease(manifest=manifest, source="file", repo=None, tag=None, requested="manifest",
                               resolved_at=None, origin="(given manifest)")
    origin = "(JSON text)" if isinstance(manifest, str) and manifest.lstrip().startswith("{") else str(manifest)
    return ResolvedRelease(manifest=ReleaseManifest.from_json(manifest), source="file", repo=None, tag=None,
                           requested="manifest", resolved_at=None, origin=origin)


def select(resolved: ResolvedRelease, *, names: Sequence[str] | None = None, fmt: str | None = None) -> list[str]:
    """The files to fetch: ``names`` as given, a manifest file's own list, else :func:`default_selection`."""
    if names is not None:
        return [names] if isinstance(names, str) else list(dict.fromkeys(names))
    if resolved.source == "file" and fmt is None:
        return list(resolved.manifest.names)  # the user's own list
    return list(default_selection(resolved.manifest, fmt))


def selected_manifest(resolved: ResolvedRelease, *, names: Sequence[str] | None = None,
                      fmt: str | None = None) -> ReleaseManifest:
    """The manifest cut to :func:`select`'s files: what ``--write-manifest`` prints, so ``--manifest`` fetches
    the same files (not a release's other formats or READMEs)."""
    man = resolved.manifest
    return ReleaseManifest(base_url=man.base_url, assets=tuple(man.asset(n) for n in select(resolved, names=names,
                                                                                           fmt=fmt)))


def _to_stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
