"""VisualSFM NVM_V3 models (the Cambridge Landmarks `reconstruction.nvm`).

Layout: a header `NVM_V3` (optionally followed by `FixedK fx cx fy cy`), then per model a camera
count, one line per camera `<file> <focal> <qw qx qy qz> <cx cy cz> <radial> 0`, a point count and
one line per point `X Y Z R G B n (image feature x y)*n`. A file may hold several models (ended by a
model with 0 cameras) and a trailing `#...` block about PLY files; only the first model is read
(VisualSFM puts the images it could not register in a later model without points; the Cambridge
reader reports a labelled frame whose camera is not in the first model). Lines starting with `#`
are comments. A bad camera line is a problem and stops the read (it would shift every later
camera's index); a bad point line is a problem and, when collecting, only that point is left out.
Camera rotations are world -> camera (w first) and positions are camera centres, as in DESIGN.md.
File names may contain spaces when a TAB separates them from the numbers (VisualSFM writes a TAB).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geoposenet.readers._common import (
    Problems,
    content_lines,
    parse_floats,
    parse_int,
    read_lines,
    unit_quaternion,
)

_Point = tuple[list[float], list[int], list[int]]  # xyz, rgb, indices of the observing cameras


@dataclass
class NvmCamera:
    """One NVM camera: file name as written, focal length (pixels), world -> camera quaternion
    (4,) wxyz unit, camera centre (3,) world frame, radial distortion, and its 1-based line."""

    name: str
    focal: float
    quaternion: np.ndarray
    centre: np.ndarray
    radial: float
    line: int


@dataclass
class NvmModel:
    """The first model of an NVM file.

    cameras: in file order (the point observations' image indices refer to this order).
    points: (M, 3) float64 world points; colors: (M, 3) uint8.
    observed: per camera, the sorted unique (k,) int64 indices of the points it observes.
    """

    cameras: list[NvmCamera]
    points: np.ndarray
    colors: np.ndarray
    observed: list[np.ndarray] = field(default_factory=list)


def read_nvm(path: Path, problems: Problems) -> NvmModel | None:
    """Read the first model of an NVM_V3 file; None when nothing usable could be read."""
    lines = read_lines(path, problems)
    if lines is None:
        return None
    header = lines[0]
    if header is None or not header.split() or header.split()[0] != "NVM_V3":
        problems.add(path, f"expected the header 'NVM_V3', found {header!r}", 1)
        return None
    rows = _rows(lines)
    cameras = _read_cameras(rows, path, problems)
    if cameras is None:
        return None
    points, colors, per_camera = _read_points(rows, len(cameras), path, problems)
    observed = [np.unique(np.asarray(ids, dtype=np.int64)) for ids in per_camera]
    return NvmModel(cameras, points, colors, observed)


def _rows(lines: list[str | None]) -> Iterator[tuple[int, str]]:
    """Non-blank, non-comment lines after the header."""
    for number, text in content_lines(lines, start=2):
        if not text.lstrip().startswith("#"):
            yield number, text


def _count(
    rows: Iterator[tuple[int, str]], what: str, path: Path, problems: Problems
) -> int | None:
    row = next(rows, None)
    if row is None:
        problems.add(path, f"file ends before the {what} count")
        return None
    number, text = row
    tokens = text.split()
    if len(tokens) != 1:
        problems.add(path, f"expected the {what} count, found {text.strip()!r}", number)
        return None
    return parse_int(tokens[0], f"{what} count", path, number, problems)


def _read_cameras(
    rows: Iterator[tuple[int, str]], path: Path, problems: Problems
) -> list[NvmCamera] | None:
    count = _count(rows, "camera", path, problems)
    if count is None:
        return None
    cameras: list[NvmCamera] = []
    for index in range(count):
        row = next(rows, None)
        if row is None:
            problems.add(path, f"file ends after {index} of {count} cameras")
            return None
        camera = _parse_camera(*row, path, problems)
        if camera is not None:
            cameras.append(camera)
    if len(cameras) < count:  # a bad camera line shifts every observation's image index
        return None
    return cameras


def _parse_camera(number: int, text: str, path: Path, problems: Problems) -> NvmCamera | None:
    if "\t" in text:
        name, _, rest = text.partition("\t")
        name, tokens = name.strip(), rest.split()
    else:
        name, *tokens = text.split()
    if not name or len(tokens) not in (9, 10):
        problems.add(
            path, "camera line needs '<file> <focal> <qw qx qy qz> <cx cy cz> <radial> 0'", number
        )
        return None
    values = parse_floats(tokens[:9], "camera", path, number, problems)
    if values is None:
        return None
    quaternion = unit_quaternion(values[1:5], path, number, problems)
    if quaternion is None:
        return None
    return NvmCamera(name, float(values[0]), quaternion, values[5:8], float(values[8]), number)


def _read_points(
    rows: Iterator[tuple[int, str]], num_cameras: int, path: Path, problems: Problems
) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    per_camera: list[list[int]] = [[] for _ in range(num_cameras)]
    points: list[list[float]] = []
    colors: list[list[int]] = []
    count = _count(rows, "point", path, problems) if num_cameras else 0
    for index in range(count or 0):
        row = next(rows, None)
        if row is None:
            problems.add(path, f"file ends after {index} of {count} points")
            break
        parsed = _parse_point(*row, num_cameras, path, problems)
        if parsed is None:
            continue
        xyz, rgb, images = parsed
        for image in images:
            per_camera[image].append(len(points))
        points.append(xyz)
        colors.append(rgb)
    xyz_array = np.array(points, dtype=np.float64).reshape(-1, 3)
    return xyz_array, np.array(colors, dtype=np.uint8).reshape(-1, 3), per_camera


def _fast_point(tokens: list[str], num_cameras: int) -> _Point | None:
    """The common case of a valid point line, without per-token bookkeeping; None when anything
    looks wrong (then `_parse_point` finds and reports the exact problem)."""
    try:
        n = int(tokens[6])
        if n < 0 or len(tokens) != 7 + 4 * n:
            return None
        xyz = [float(t) for t in tokens[:3]]
        rgb = [int(t) for t in tokens[3:6]]
        images = [int(t) for t in tokens[7::4]]
        features = [int(t) for t in tokens[8::4]]
        xy = [float(t) for t in tokens[9::4]] + [float(t) for t in tokens[10::4]]
    except (ValueError, IndexError):
        return None
    if not math.isfinite(sum(xyz) + sum(xy)):  # NaN, inf (or an overflowing sum: slow path)
        return None
    if min(rgb) < 0 or max(rgb) > 255 or min(features, default=0) < 0:
        return None
    if images and (min(images) < 0 or max(images) >= num_cameras):
        return None
    return xyz, rgb, images


def _parse_point(
    number: int, text: str, num_cameras: int, path: Path, problems: Problems
) -> _Point | None:
    tokens = text.split()
    fast = _fast_point(tokens, num_cameras)
    if fast is not None:
        return fast
    if len(tokens) < 7:
        problems.add(path, "point line needs 'X Y Z R G B n (image feature x y)*n'", number)
        return None
    xyz = parse_floats(tokens[:3], "point", path, number, problems)
    if xyz is None:
        return None
    rgb = []
    for token in tokens[3:6]:
        channel = parse_int(token, "point colour", path, number, problems)
        if channel is None or channel > 255:
            if channel is not None:
                problems.add(path, f"point colour {channel} above 255", number)
            return None
        rgb.append(channel)
    n = parse_int(tokens[6], "observation count", path, number, problems)
    if n is None:
        return None
    if len(tokens) != 7 + 4 * n:
        problems.add(
            path,
            f"point line has {len(tokens) - 7} values for {n} observations (needs 4 each)",
            number,
        )
        return None
    images: list[int] = []
    for k in range(n):
        image_token, feature, *xy = tokens[7 + 4 * k : 11 + 4 * k]
        image = parse_int(image_token, "observation image index", path, number, problems)
        if image is None or parse_int(feature, "feature index", path, number, problems) is None:
            return None
        if image >= num_cameras:
            problems.add(
                path,
                f"observation of camera {image}, but the model has {num_cameras} cameras",
                number,
            )
            return None
        if parse_floats(xy, "observation", path, number, problems) is None:
            return None
        images.append(image)
    return xyz.tolist(), rgb, images
