"""Helpers shared by the readers: problem collection, text lines, numbers, image paths.

Every reader reports what is wrong in the data through a `Problems` collector. In strict mode
(`load_scene`) the first problem raises a DatasetError; otherwise (`check_dataset`) problems are
collected and the reader skips the bad item and carries on, so one pass lists all of them.
A note is weaker than a problem: something `geoposenet check` reports (with a count) but that does
not stop training, e.g. image files on disk that the format does not make frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from geoposenet.errors import DatasetError, reason

ImageCheck = Literal["none", "exists", "decode"]
"""How much readers check the image files: not at all, existence, or a full decode."""

QUATERNION_MIN_NORM = 1e-6
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


class Problems:
    """Collects DatasetErrors; `strict` raises the first one instead. Notes are only collected."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.errors: list[DatasetError] = []
        self.notes: list[str] = []

    def add(self, path: str | Path, message: str, line: int | None = None) -> None:
        """Record (or, in strict mode, raise) a problem at `path`:`line`."""
        error = DatasetError(path, message, line)
        if self.strict:
            raise error
        self.errors.append(error)

    def note_files(self, path: Path, what: str, files: Sequence[str]) -> None:
        """Note (never raise) `files`, names relative to the dataset, that are not frames: their
        count and the first few names, at `path`. Nothing when there are none."""
        if files:
            shown = ", ".join(files[:3]) + (", ..." if len(files) > 3 else "")
            self.notes.append(str(DatasetError(path, f"{len(files)} {what}, not frames: {shown}")))

    def __len__(self) -> int:
        return len(self.errors)


def read_lines(path: Path, problems: Problems) -> list[str | None] | None:
    """The lines of a UTF-8 text file (LF or CRLF), without line ends.

    A line that is not valid UTF-8 is reported and returned as None (callers skip it).
    Returns None (after reporting) when the file is missing, unreadable or empty.
    """
    if not path.is_file():
        problems.add(path, "expected a file, found a folder" if path.is_dir() else "file not found")
        return None
    try:
        data = path.read_bytes()
    except OSError as error:
        problems.add(path, f"cannot read file: {error.strerror or error}")
        return None
    if not data.strip():
        problems.add(path, "file is empty")
        return None
    lines: list[str | None] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            problems.add(path, f"bytes that are not UTF-8 text at column {error.start + 1}", number)
            lines.append(None)
            continue
        lines.append(text.removeprefix("\ufeff") if number == 1 else text)
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") if line is not None else None for line in lines]


def content_lines(lines: Sequence[str | None], start: int = 1) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of the non-blank, decodable lines from line `start` on."""
    for number, text in enumerate(lines, start=1):
        if number >= start and text is not None and text.strip():
            yield number, text


def parse_floats(
    tokens: Sequence[str], what: str, path: Path, line: int, problems: Problems
) -> np.ndarray | None:
    """Parse tokens as finite floats -> (len(tokens),) float64, or report and return None."""
    values = []
    for token in tokens:
        try:
            value = float(token)
        except ValueError:
            problems.add(path, f"{what}: {token!r} is not a number", line)
            return None
        if not math.isfinite(value):
            problems.add(path, f"{what}: {token!r} is not a finite number", line)
            return None
        values.append(value)
    return np.array(values, dtype=np.float64)


def parse_int(token: str, what: str, path: Path, line: int, problems: Problems) -> int | None:
    """Parse a non-negative integer, or report and return None."""
    try:
        value = int(token)
    except ValueError:
        problems.add(path, f"{what}: {token!r} is not an integer", line)
        return None
    if value < 0:
        problems.add(path, f"{what}: {value} is negative", line)
        return None
    return value


def unit_quaternion(
    q: np.ndarray, path: Path, line: int | None, problems: Problems
) -> np.ndarray | None:
    """Scale a finite (4,) wxyz quaternion to unit length; report a zero-length one."""
    scale = float(np.abs(q).max())
    if scale == 0.0:
        problems.add(path, "zero-length quaternion", line)
        return None
    q = q / scale
    norm = float(np.linalg.norm(q))
    if norm * scale < QUATERNION_MIN_NORM:
        problems.add(path, f"quaternion of near-zero length {norm * scale:.3g}", line)
        return None
    return q / norm


def relative_image_name(name: str, path: Path, line: int | None, problems: Problems) -> str | None:
    """Check an image path from a dataset file: relative, '/'-separated, staying inside the
    dataset folder, no control characters. Returns the normalised name or None (reported)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        problems.add(path, f"image path {name!r} contains control characters", line)
        return None
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        problems.add(path, f"image path {name!r} is absolute; paths must be relative", line)
        return None
    parts: list[str] = []
    for part in PurePosixPath(posix).parts:
        if part == "..":
            if not parts:
                problems.add(path, f"image path {name!r} leaves the dataset folder", line)
                return None
            parts.pop()
        elif part != ".":
            parts.append(part)
    if not parts:
        problems.add(path, f"image path {name!r} names no file", line)
        return None
    return "/".join(parts)


def image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """The image files (IMAGE_SUFFIXES, any case) in `folder`, or below it when `recursive`,
    sorted; empty when the folder is missing or cannot be listed."""
    try:
        found = folder.rglob("*") if recursive else folder.iterdir()
        return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except OSError:
        return []


def check_image(
    image: Path, mode: ImageCheck, path: Path, line: int | None, problems: Problems
) -> None:
    """Check an image file referenced at `path`:`line`: existence and (mode 'decode') decoding
    with `geoposenet.images.decode_image`, what training uses, so the reasons are the same."""
    if mode == "none":
        return
    if not image.is_file():
        problems.add(path, f"image {image} not found", line)
        return
    if mode == "decode":
        from geoposenet.images import decode_image

        try:
            decode_image(image)
        except DatasetError as error:
            problems.add(path, f"image {image} cannot be decoded ({error.reason})", line)


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for problem texts."""
    return reason(error)


ROTATION_TOLERANCE = 1e-2  # largest |R^T R - I| and |det R - 1| accepted from a pose file


def nearest_rotation(matrix: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The rotation nearest (by SVD) to a (3, 3) matrix that is one up to ROTATION_TOLERANCE
    (the rounding of text files), and ''; or None and the reason it is not a rotation."""
    error = float(np.abs(matrix.T @ matrix - np.eye(3)).max())
    det = float(np.linalg.det(matrix))
    if error > ROTATION_TOLERANCE or abs(det - 1.0) > ROTATION_TOLERANCE:
        return None, f"the 3x3 part is not a rotation (|R^T R - I| = {error:.3g}, det = {det:.3g})"
    u, _, vt = np.linalg.svd(matrix)
    return u @ vt, ""
