"""Release manifests: which official BLOX files exist, where they live and (when known) their size and sha256.

Split from :mod:`blox_env.datasets.release.download` (which re-exports everything here) so the network code
stays short. A manifest is plain JSON the user can edit and pass with ``--manifest``::

    {"base_url": "https://.../", "assets": [{"name": "blox-info.blox", "size": 123, "sha256": "..."}, ...]}

An asset may carry its own ``url`` (what the GitHub releases API calls ``browser_download_url``);
otherwise it lives at ``base_url`` + its name. :mod:`blox_env.datasets.release.resolve` builds a
manifest with URLs, sizes and sha256 digests from the releases API, which is what ``blox data
download`` uses first.

:data:`DEFAULT_MANIFEST` lists the ``.blox`` files of seeds 0-2 with no size or checksum (not
verifiable offline; the resolver's built-in fallback lists all three formats); the downloader
then checks completeness against the server's length and records the sha256 it saw in a
``NAME.sha256`` sidecar. ``blox-bench-{device}`` files are not listed by default because the
device names of the official release are not known here; add them
to a manifest (or use :func:`official_manifest` with ``devices=``).
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blox_env.errors import InvalidArgumentError

__all__ = [
    "DEFAULT_BENCH_DEVICES", "DEFAULT_MANIFEST", "DEFAULT_SEEDS", "OFFICIAL_RELEASE_URL", "RELEASE_FORMATS",
    "RESERVED_SUFFIXES", "ReleaseAsset", "ReleaseManifest", "official_manifest", "release_asset_names",
]

OFFICIAL_RELEASE_URL = "https://github.com/SamsungLabs/blox/releases/download/v1.0/"
"""Base URL of the built-in manifest (tag v1.0 assumed: the offline fallback when the API and its cache fail)."""
RELEASE_FORMATS = ("blox", "csv", "pickle")
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_BENCH_DEVICES: tuple[str, ...] = ()
ALLOWED_SCHEMES = ("http", "https", "file")
RESERVED_SUFFIXES = (".part", ".part.json", ".sha256")
"""Endings the downloader uses for its own files next to a download (partial file, its record, the sidecar)."""
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA_RE = re.compile(r"[0-9a-f]{64}")


def check_url(url: str) -> None:
    """Only schemes urllib can fetch and we can reason about (no ftp, no data: URLs)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    if scheme not in ALLOWED_SCHEMES:
        raise InvalidArgumentError(f"URL {url!r} has an unsupported scheme; allowed: {', '.join(ALLOWED_SCHEMES)}")


def check_expectations(*, size: int | None, sha256: str | None, what: str) -> None:
    """Expected size/sha256 must be usable before any byte is fetched."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise InvalidArgumentError(f"{what}: size={size!r} must be a non-negative integer (bytes) or None")
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA_RE.fullmatch(sha256.lower())):
        raise InvalidArgumentError(f"{what}: sha256={sha256!r} must be 64 hexadecimal characters or None")


@dataclass(frozen=True)
class ReleaseAsset:
    """One release file: its name, when known its size in bytes and sha256 (lower-case hex), and its own URL.

    ``url`` None means ``base_url`` + name (see :meth:`ReleaseManifest.url`).
    """

    name: str
    size: int | None = None
    sha256: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name) or self.name.endswith(
            RESERVED_SUFFIXES
        ):
            raise InvalidArgumentError(
                f"asset name {self.name!r} is not a plain file name; allowed: letters, digits, '.', '_', '-' "
                f"(no path separators, not ending in {', '.join(map(repr, RESERVED_SUFFIXES))})"
            )
        check_expectations(size=self.size, sha256=self.sha256, what=self.name)
        if self.url is not None:
            check_url(self.url)
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", self.sha256.lower())


@dataclass(frozen=True)
class ReleaseManifest:
    """Where the release lives (``base_url``) and which files it holds; editable as JSON."""

    base_url: str
    assets: tuple[ReleaseAsset, ...]

    def __post_init__(self) -> None:
        check_url(self.base_url)
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
        """Full download URL of one asset: its own ``url``, else ``base_url`` joined with the quoted file name."""
        asset = self.asset(name)
        if asset.url is not None:
            return asset.url
        return self.base_url.rstrip("/") + "/" + urllib.parse.quote(asset.name)

    @classmethod
    def from_json(cls, path_or_text: str | os.PathLike[str]) -> ReleaseManifest:
        """Read a manifest from a JSON file or JSON text (a string starting with ``{``).

        Format: ``{"base_url": "...", "assets": [{"name": "...", "size": 123, "sha256": "...", "url": "..."}]}``;
        size, sha256 and url are optional; an asset may also be a bare name string.
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
        return cls.from_obj(raw, source=source)

    @classmethod
    def from_obj(cls, raw: Any, *, source: str) -> ReleaseManifest:
        """A manifest from parsed JSON (``source`` names where it came from in errors)."""
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
            if not isinstance(item, dict) or not set(item) <= {"name", "size", "sha256", "url"} or "name" not in item:
                raise InvalidArgumentError(f"{source}: asset {item!r} must be a name or an object with keys "
                                           "name, size (optional), sha256 (optional), url (optional)")
            assets.append(ReleaseAsset(name=item["name"], size=item.get("size"), sha256=item.get("sha256"),
                                       url=item.get("url")))
        return cls(base_url=raw["base_url"], assets=tuple(assets))

    def to_json(self) -> str:
        """The manifest as indented JSON (what :meth:`from_json` reads back)."""
        return json.dumps(self.to_obj(), indent=2) + "\n"

    def to_obj(self) -> dict[str, Any]:
        """The manifest as plain data (an asset's ``url`` only when it has its own)."""
        assets = [{"name": a.name, "size": a.size, "sha256": a.sha256, **({"url": a.url} if a.url else {})}
                  for a in self.assets]
        return {"base_url": self.base_url, "assets": assets}


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
