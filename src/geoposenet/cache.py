"""Derived-data cache (pre-resized images, depth back-projections) and atomic file writes.

Cache entries live under $GEOPOSENET_CACHE (default ~/.cache/geoposenet), keyed by a fingerprint
of their inputs (file paths, sizes, modification times) and parameters, so a changed input
makes a new key and the stale entry is simply never read again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """The folder all cache entries live in."""
    env = os.environ.get("GEOPOSENET_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "geoposenet"


def fingerprint(paths: Iterable[Path], **params: Any) -> str:
    """A short hex key over the files' (resolved path, size, mtime_ns) and JSON-able params."""
    digest = hashlib.sha256()
    for path in paths:
        stat = Path(path).stat()
        digest.update(f"{Path(path).resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


def cache_path(namespace: str, key: str, suffix: str) -> Path:
    """Where the entry `key` of `namespace` lives (its folder is created)."""
    folder = cache_root() / namespace
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}{suffix}"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, fsync it, then rename it over `path`:
    readers see either the old file or the complete new one, never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files (`.NAME.<random>.tmp`) that `atomic_write` leaves in `folder`
    when its process is killed mid-write; returns them. Call only while no other process writes
    into `folder`."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file atomically (UTF-8)."""

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(path, write)
