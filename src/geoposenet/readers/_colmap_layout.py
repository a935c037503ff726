"""Structural check of COLMAP binary model files before pycolmap reads them.

COLMAP's binary reader trusts the element counts in the files: a corrupt count makes it reserve
or loop for billions of elements (many GB of memory) instead of failing. This walk follows the
layout of cameras/images/points3D/rigs/frames.bin (COLMAP 3.x and 4.x, little endian) and checks
that every count fits in the bytes that remain and that each file ends exactly where its last
element does. It reads only the counts and names, not the values.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from pathlib import Path


class LayoutError(ValueError):
    """A binary model file whose structure does not match its size; message names the offset."""


class _Cursor:
    """Reads little-endian integers from `data`, failing cleanly at the end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def skip(self, size: int, what: str) -> None:
        if size < 0 or self.offset + size > len(self.data):
            raise LayoutError(f"{what} at byte {self.offset} runs past the end of the file")
        self.offset += size

    def uint(self, fmt: str, what: str) -> int:
        size = struct.calcsize(fmt)
        start = self.offset
        self.skip(size, what)
        return int(struct.unpack_from(fmt, self.data, start)[0])

    def count(self, fmt: str, element_size: int, what: str) -> int:
        """A count of elements at least `element_size` bytes each that must fit in the rest."""
        start = self.offset
        n = self.uint(fmt, what)
        if n * element_size > len(self.data) - self.offset:
            raise LayoutError(f"{what} {n} at byte {start} does not fit in the file")
        return n


@functools.cache
def _num_params(model_id: int) -> int | None:
    """Number of parameters of a COLMAP camera model id, asked of pycolmap; None if unknown."""
    import pycolmap

    model = {int(m): m for m in pycolmap.CameraModelId.__members__.values()}.get(model_id)
    if model is None:
        return None
    try:
        camera = pycolmap.Camera.create_from_model_id(1, model, 1.0, 1, 1)
    except Exception:  # INVALID and any id pycolmap cannot build
        return None
    return len(camera.params)


def _cameras(c: _Cursor) -> None:
    for _ in range(c.count("<Q", 32, "camera count")):
        c.skip(4, "camera id")
        model_id = c.uint("<i", "camera model")
        params = _num_params(model_id)
        if params is None:
            raise LayoutError(f"unknown camera model id {model_id} at byte {c.offset - 4}")
        c.skip(16 + 8 * params, "camera size and parameters")


def _images(c: _Cursor) -> None:
    for _ in range(c.count("<Q", 69, "image count")):
        c.skip(4 + 7 * 8 + 4, "image record")  # id, qvec, tvec, camera id
        end = c.data.find(b"\0", c.offset)
        if end < 0:
            raise LayoutError(f"image name at byte {c.offset} is not terminated")
        c.offset = end + 1
        c.skip(24 * c.count("<Q", 24, "2D point count"), "2D points")


def _points3d(c: _Cursor) -> None:
    for _ in range(c.count("<Q", 51, "point count")):
        c.skip(8 + 3 * 8 + 3 + 8, "point record")  # id, xyz, rgb, error
        c.skip(8 * c.count("<Q", 8, "track length"), "track")


def _rigs(c: _Cursor) -> None:
    for _ in range(c.count("<Q", 8, "rig count")):
        c.skip(4, "rig id")
        sensors = c.count("<I", 8, "sensor count")
        if sensors:
            c.skip(8, "reference sensor")
        for _ in range(max(sensors - 1, 0)):
            c.skip(8, "sensor id")
            if c.uint("<B", "sensor pose flag"):
                c.skip(7 * 8, "sensor pose")


def _frames(c: _Cursor) -> None:
    for _ in range(c.count("<Q", 68, "frame count")):
        c.skip(4 + 4 + 7 * 8, "frame record")  # frame id, rig id, rig_from_world
        c.skip(16 * c.count("<I", 16, "data id count"), "data ids")


_WALKERS: dict[str, Callable[[_Cursor], None]] = {
    "cameras.bin": _cameras,
    "images.bin": _images,
    "points3D.bin": _points3d,
    "rigs.bin": _rigs,
    "frames.bin": _frames,
}


def check_binary_model(model: Path) -> tuple[Path, str] | None:
    """(file, what is wrong) for the first binary file in `model` whose layout is broken;
    None when every present .bin file is consistent (text files are not checked)."""
    for name, walk in _WALKERS.items():
        path = model / name
        if not path.is_file():
            continue
        try:
            cursor = _Cursor(path.read_bytes())
            walk(cursor)
            if cursor.offset != len(cursor.data):
                extra = len(cursor.data) - cursor.offset
                raise LayoutError(f"{extra} unexpected bytes after the last element")
        except OSError as error:
            return path, f"cannot read file: {error.strerror or error}"
        except LayoutError as error:
            return path, f"not a valid COLMAP binary file: {error}"
    return None
