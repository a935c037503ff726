"""`geoposenet download NAME DIR`: fetch a scene's archive (resumable), verify it, unpack it into
DIR/NAME in the layout the readers expect.

- The archive is written to DIR/NAME.zip.part; when one exists, the download resumes from its end
  with an HTTP Range request (a server that ignores Range sends the whole file again).
- A transfer that stops early (connection lost, server closing before the announced size) keeps
  the .part and says to run the command again, which resumes it. A file longer than expected or
  with the wrong SHA-256 cannot be resumed: the .part is removed.
- Unpacking goes into a hidden DIR/.NAME.unpacking folder (7-Scenes: its per-sequence zips are
  unpacked in place and removed), renamed to DIR/NAME only when complete; the archive is then
  deleted. A damaged zip (bad CRC) removes the archive and the folder: DIR never holds a
  half-unpacked scene.
Every failure is an InputError (exit 2) naming the URL or the file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from geoposenet.catalog import ARCHIVES, URL_BASE_VARIABLE, Archive
from geoposenet.errors import InputError

CHUNK = 1 << 20  # bytes per read
TIMEOUT = 60.0  # seconds without data before giving up (the .part is kept)


def _announced_total(response: http.client.HTTPResponse, offset: int) -> int | None:
    """The full file size the server announces: Content-Range's total for a 206, else
    offset + Content-Length; None when it says nothing."""
    match = re.search(r"/(\d+)\s*$", response.headers.get("Content-Range", ""))
    if match:
        return int(match.group(1))
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, part: Path, size: int | None, sha256: str | None, progress: bool) -> None:
    """Download `url` into `part`, resuming from its current length, and verify it: the size
    (`size` if known, else the server's announced one) and `sha256` if known."""
    from tqdm import tqdm

    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "geoposenet"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    total = size
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            if response.status != 206:
                offset = 0  # the server sends the whole file: start over
            total = size if size is not None else _announced_total(response, offset)
            with (
                open(part, "ab" if offset else "wb") as out,
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=part.name,
                     disable=None if progress else True) as bar,
            ):  # fmt: skip
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:  # 416: nothing left to send after a complete .part
            raise InputError(f"{url}: the server answered {error.code} {error.reason}") from None
    except (OSError, http.client.HTTPException) as error:
        got = part.stat().st_size if part.is_file() else 0
        raise InputError(
            f"{url}: the download stopped at {got} of {total or '?'} bytes ({error}); "
            f"{part} is kept: run the same command again to resume it"
        ) from None
    _verify(part, total, sha256)


def _verify(part: Path, size: int | None, sha256: str | None) -> None:
    """InputError when `part` is shorter (kept, to resume), longer (removed) than `size`, or its
    SHA-256 is not `sha256` (removed)."""
    got = part.stat().st_size
    if size is not None and got < size:
        raise InputError(
            f"{part}: truncated, {got} of {size} bytes; kept: run the same command again to "
            "resume it"
        )
    if size is not None and got > size:
        part.unlink()
        raise InputError(f"{part}: {got} bytes, expected {size}; removed (download it again)")
    if sha256 is not None and (actual := _sha256(part)) != sha256.lower():
        part.unlink()
        raise InputError(
            f"{part}: SHA-256 {actual} does not match the expected {sha256}; removed (the "
            "download was damaged, or the mirror holds another file)"
        )


def _safe_members(archive: zipfile.ZipFile, where: Path) -> list[zipfile.ZipInfo]:
    """The members of `archive`, InputError for one that would land outside the folder."""
    members = archive.infolist()
    for member in members:
        name = PurePosixPath(member.filename)
        if name.is_absolute() or ".." in name.parts:
            raise InputError(f"{where}: member {member.filename!r} points outside the archive")
    return members


def _extract(zip_path: Path, into: Path) -> None:
    """Unpack `zip_path` into the folder `into`, checking every member's CRC."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(into, members=_safe_members(archive, zip_path))


def unpack(archive: Archive, zip_path: Path, target: Path) -> None:
    """Unpack `zip_path` into `target` (which must not exist) through a hidden staging folder
    beside it; 7-Scenes' per-sequence zips are unpacked in place and removed."""
    staging = target.parent / f".{target.name}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _extract(zip_path, staging)
        if archive.nested:
            for inner in sorted(staging.rglob("*.zip")):
                _extract(inner, inner.parent)
                inner.unlink()
        entries = [p for p in staging.iterdir() if not p.name.startswith("__MACOSX")]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        os.replace(root, target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as error:
        zip_path.unlink(missing_ok=True)
        raise InputError(f"{zip_path}: not a valid zip archive ({error}); removed") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(
    name: str, folder: str | Path, url_base: str | None = None, progress: bool = True
) -> Path:
    """Fetch the scene `name` (a key of catalog.ARCHIVES) into `folder`/name, unpacked; returns
    that folder. `url_base` (else $GEOPOSENET_URL_BASE) points at a mirror holding NAME.zip."""
    if name not in ARCHIVES:
        raise InputError(f"unknown dataset {name!r}; choose one of {', '.join(ARCHIVES)}")
    archive = ARCHIVES[name]
    folder = Path(folder)
    target = folder / name
    if target.exists():
        raise InputError(f"{target}: already exists; remove it to download {name} again")
    folder.mkdir(parents=True, exist_ok=True)
    url = archive.url_from(url_base or os.environ.get(URL_BASE_VARIABLE))
    zip_path = folder / f"{name}.zip"
    part = folder / f"{name}.zip.part"
    fetch(url, part, archive.size, archive.sha256, progress)
    os.replace(part, zip_path)
    unpack(archive, zip_path, target)
    zip_path.unlink()
    return target
