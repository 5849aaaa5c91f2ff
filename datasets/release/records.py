"""What a download leaves next to its file: the ``NAME.sha256`` sidecar and the ``NAME.part.json`` record.

Split from :mod:`blox_env.datasets.release.download`. The sidecar is written after a download succeeded, in
``sha256sum`` format (``sha256sum -c NAME.sha256`` checks it) plus comment lines with the size and
URL; it is how an existing file is recognised as done when the manifest knows no checksum, and what
:func:`verify_download` (``blox data verify``) compares against later. The part record holds the URL
and the total size the server announced when a ``.part`` was started, so a later run resumes a
part only when the server still reports that total.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DownloadRecord", "Report", "discard_part", "existing_problem", "keep_part", "mismatch", "part_record_path",
    "read_part_record", "read_record", "record_path", "sha256_file", "verify_download", "write_record",
    "write_text_atomic",
]

Report = Callable[[str], None]
"""Where notes for the user go (one line each)."""
_SHA_RE = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Lower-case hex sha256 of a file, read in chunks (release files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class DownloadRecord:
    """What a finished download received (the ``NAME.sha256`` sidecar): size in bytes and sha256."""

    size: int
    sha256: str


def record_path(dest: str | os.PathLike[str]) -> Path:
    """The sidecar of a downloaded file: ``NAME.sha256`` next to it."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".sha256")


def part_record_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary sibling and :func:`os.replace`, so a crash never leaves half a record."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_record(dest: str | os.PathLike[str]) -> DownloadRecord | None:
    """The sidecar of ``dest``, or None when it is missing or unreadable (the file is then not trusted)."""
    dest = Path(dest)
    try:
        text = record_path(dest).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    size: int | None = None
    digest: str | None = None
    for line in text.splitlines():
        if line.startswith("# size "):
            value = line.removeprefix("# size ").strip()
            size = int(value) if value.isdigit() else None
        elif line and not line.startswith("#"):
            found, _, name = line.partition("  ")
            if _SHA_RE.fullmatch(found) and name == dest.name:
                digest = found
    return DownloadRecord(size, digest) if size is not None and digest is not None else None


def write_record(dest: Path, *, size: int, sha256: str, url: str) -> None:
    write_text_atomic(record_path(dest), (
        f"# blox-env download record; check with: sha256sum -c {record_path(dest).name}\n"
        f"# size {size}\n# url {url}\n{sha256}  {dest.name}\n"))


def verify_download(path: str | os.PathLike[str]) -> str | None:
    """Why a downloaded file no longer matches its ``NAME.sha256`` sidecar, or None when it does."""
    path = Path(path)
    if not path.is_file():
        return f"{path} is missing"
    record = read_record(path)
    if record is None:
        return f"{path.name} has no readable download record ({record_path(path).name})"
    return mismatch(path, size=record.size, sha256=record.sha256)


def mismatch(path: Path, *, size: int | None, sha256: str | None) -> str | None:
    """Why ``path`` does not match the expectations, or None when it does."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"size mismatch: expected {size} bytes, got {actual_size}"
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            return f"sha256 mismatch: expected {sha256}, got {actual}"
    return None


def existing_problem(dest: Path, *, size: int | None, sha256: str | None) -> str | None:
    """Why an existing final file cannot be taken as done (None when it can)."""
    if sha256 is not None:
        return mismatch(dest, size=size, sha256=sha256)
    record = read_record(dest)
    if record is None:
        if size is not None:
            return mismatch(dest, size=size, sha256=None)
        return f"exists, but no size or checksum is known and it has no download record ({record_path(dest).name})"
    if size is not None and record.size != size:
        return f"its download record says {record.size} bytes, the manifest {size}"
    problem = mismatch(dest, size=record.size, sha256=record.sha256)
    return None if problem is None else f"does not match its download record ({problem})"


def read_part_record(part: Path, url: str) -> int | None:
    """The total the server announced when ``part`` was started from ``url`` (None: unknown or no record)."""
    try:
        raw = json.loads(part_record_path(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    total = raw.get("total") if isinstance(raw, dict) and raw.get("url") == url else None
    return total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None


def discard_part(part: Path) -> None:
    part.unlink(missing_ok=True)
    part_record_path(part).unlink(missing_ok=True)


def keep_part(part: Path, *, url: str, size: int | None, sha256: str | None, say: Report) -> bool:
    """Whether a part left by an earlier run may be resumed; an untrustworthy one is deleted (with a note)."""
    if not part.is_file() or part.stat().st_size == 0:
        discard_part(part)
        return False
    total = read_part_record(part, url)
    reason = None
    if total is None and size is None and sha256 is None:
        reason = "no record of the total size it was started for, and no size or checksum is known"
    elif total is not None and size is not None and total != size:
        reason = f"it was started for a {total}-byte file, the manifest expects {size} bytes"
    if reason is None:
        return True
    say(f"{part.name}: {reason}; starting over")
    discard_part(part)
    return False
