"""nerfstudio / instant-ngp captures: `transforms.json` in the dataset folder (what
`ns-process-data`, instant-ngp's colmap2nerf, Polycam and Record3D exports write).

Frames: `frames[i].file_path` (relative to the dataset folder) and `frames[i].transform_matrix`,
the 4x4 camera-to-world matrix in the OpenGL convention (camera x right, y up, looking along -z).
Converted here to this project's pose: centre c = T[:3, 3] and world -> camera rotation
R = (T[:3, :3] diag(1, -1, -1))^T (OpenCV axes: x right, y down, z forward), after checking that
T[:3, :3] is a rotation (to 1e-2, then the nearest one by SVD). Frames are sorted by file_path;
the sequence is the image's folder name ('default' without one). The `images` option names
another image folder (e.g. `images_4`, nerfstudio's downscaled copies): it replaces the first
folder of every file_path.
Intrinsics: `fl_x`, `fl_y` (default fl_x), `cx`, `cy`, `w`, `h`, `camera_model` at the top level,
each overridable per frame. They describe images of w x h pixels; an image of another size (a
downscaled folder) gets them scaled by its actual size. Pinhole-family models (PINHOLE,
SIMPLE_PINHOLE, OPENCV, ...) give the frame's intrinsics, distortion (k1..k4, p1, p2) dropped;
others (OPENCV_FISHEYE, EQUIRECTANGULAR) give none, as for COLMAP.
Points: the vertices of `ply_file_path` (ASCII or binary PLY) when given; a frame is given the
points that project inside its image with positive depth (pinhole projection, no occlusion test).
World frame and units: exactly those of the file. nerfstudio's `applied_transform` (3x4 or 4x4) is
the transform it already applied to the original COLMAP world; the poses and points are in that
transformed frame and are kept so (the key is only checked); units are the capture's own ("model
units") unless a scale is given (see readers/_scale.py).
Splits: `train_filenames` and `test_filenames`/`val_filenames` (nerfstudio evaluates on both)
when present, else the options `test_list`/`test_every` (which win over the keys), else held-out
test stretches with a gap before them (readers/_split.py). The frames of a `geoposenet augment`
output's synthesised sequences (augment.json) are training frames whatever the rule, which sees
only the others.
Problems name the JSON key, e.g. `transforms.json: frames[12].transform_matrix: not a 4x4 matrix`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from geoposenet.geometry import matrix_to_quaternion_np
from geoposenet.readers._augmented import synthetic_sequences
from geoposenet.readers._common import (
    ImageCheck,
    Problems,
    check_image,
    nearest_rotation,
    relative_image_name,
)
from geoposenet.readers._ply import read_ply_points
from geoposenet.readers._split import (
    GAP_NOTE,
    Role,
    check_choice,
    chosen_split,
    synthetic_names,
)
from geoposenet.scene import MODEL_UNITS, Frame, Intrinsics, Scene

FORMAT = "nerfstudio"
POSITION_UNIT = MODEL_UNITS
TRANSFORMS = "transforms.json"
LOOKED_FOR = "transforms.json (nerfstudio / instant-ngp)"
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])  # flips camera y and z
PINHOLE_LIKE = frozenset(
    {"SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV"}
)
CAMERA_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "k3", "k4", "p1", "p2")
SPLIT_KEYS: dict[str, Role] = {
    "train_filenames": "train", "test_filenames": "test", "val_filenames": "test",
}  # fmt: skip


@dataclass
class _Camera:
    """A frame's pinhole intrinsics as stated (for w x h images) and its camera model."""

    model: str
    width: float
    height: float
    fx: float
    fy: float
    cx: float
    cy: float


def looks_like(root: Path) -> bool:
    """Whether `root` holds a transforms.json."""
    return (root / TRANSFORMS).is_file()


def read(
    root: Path,
    problems: Problems,
    image_check: ImageCheck = "exists",
    images: str | Path | None = None,
    test_list: str | Path | None = None,
    test_every: int | None = None,
) -> Scene:
    """Read the capture folder `root` into a Scene, in the file's units. `images`: an image
    folder replacing the first folder of every file_path; `test_list`, `test_every`: the test
    split (see the module docstring)."""
    check_choice(test_list, test_every)
    path = root / TRANSFORMS
    empty = Scene(root, root.name, FORMAT, [], position_unit=MODEL_UNITS)
    content = _load(path, problems)
    if content is None:
        return empty
    items = content.get("frames")
    if not isinstance(items, list) or not items:
        problems.add(path, "frames: expected a non-empty list of frames")
        return empty
    _check_matrix(content, "applied_transform", ((3, 4), (4, 4)), path, problems)
    frames: dict[str, Frame] = {}
    cameras: dict[str, _Camera] = {}  # each frame's projection, for `_visible`
    where: dict[str, str] = {}
    for i, item in enumerate(items):
        key = f"frames[{i}]"
        read_frame = _frame(item, key, content, root, images, path, image_check, problems)
        if read_frame is None:
            continue
        frame, camera = read_frame
        if frame.name in frames:
            first = where[frame.name]
            problems.add(path, f"{key}.file_path: {frame.name!r} again (first at {first})")
            continue
        frames[frame.name], cameras[frame.name], where[frame.name] = frame, camera, key
    sequences = {name: frame.sequence for name, frame in frames.items()}
    # augment.json's problems are reported once, by load_scene's mark_synthetic
    synthetic = synthetic_names(sequences, synthetic_sequences(root, Problems(strict=False)))
    given = test_list is not None or test_every is not None
    own = None if given else _own_split(content, list(frames), path, problems, synthetic)
    roles = chosen_split(sequences, own, test_list, test_every, problems, synthetic)
    kept = sorted((f for f in frames.values() if roles.get(f.name, "gap") != "gap"),
                  key=lambda f: f.name)  # fmt: skip
    for frame in kept:
        frame.split = "test" if roles[frame.name] == "test" else "train"
    gap = sorted(name for name in frames if roles.get(name) == "gap")
    problems.note_files(path, GAP_NOTE, gap)
    points = np.zeros((0, 3))
    if "ply_file_path" in content:
        points = _points(content["ply_file_path"], root, path, problems)
        for frame in kept:
            frame.point_ids = _visible(points, frame, cameras[frame.name])
    return Scene(root, root.name, FORMAT, kept, points, MODEL_UNITS)


def _load(path: Path, problems: Problems) -> dict[str, Any] | None:
    """The JSON object in `path`, or None (reported, with the line of a syntax error)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        problems.add(path, f"cannot read file: {error.strerror or error}")
        return None
    except UnicodeDecodeError as error:
        problems.add(path, f"bytes that are not UTF-8 text at byte {error.start}")
        return None
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        problems.add(path, f"not valid JSON: {error.msg} (column {error.colno})", error.lineno)
        return None
    if not isinstance(content, dict):
        problems.add(path, "expected a JSON object with a 'frames' list")
        return None
    return content


def _number(value: Any) -> float | None:
    """A finite JSON number as float, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _check_matrix(
    content: dict[str, Any], key: str, shapes: tuple[tuple[int, int], ...], path: Path,
    problems: Problems, where: str = "",
) -> np.ndarray | None:  # fmt: skip
    """content[key] as a finite matrix of one of `shapes`; None when absent or bad (reported)."""
    if key not in content:
        return None
    value = content[key]
    shown = " or ".join(f"{r}x{c}" for r, c in shapes)
    rows = value if isinstance(value, list) and all(isinstance(r, list) for r in value) else None
    numbers = [[_number(v) for v in row] for row in rows] if rows is not None else None
    if (
        numbers is None
        or (len(numbers), len(numbers[0]) if numbers else 0) not in shapes
        or any(len(row) != len(numbers[0]) for row in numbers)
    ):
        problems.add(path, f"{where}{key}: not a {shown} matrix of numbers")
        return None
    if any(v is None for row in numbers for v in row):
        problems.add(path, f"{where}{key}: a value that is not a finite number")
        return None
    return np.array(numbers, dtype=np.float64)


def _camera(item: dict[str, Any], content: dict[str, Any], key: str, path: Path,
            problems: Problems) -> _Camera | None:  # fmt: skip
    """The frame's intrinsics: its own keys over the top-level ones (None, reported, if bad)."""
    values: dict[str, float] = {}
    for name in CAMERA_KEYS:
        source, raw = (item, item[name]) if name in item else (content, content.get(name))
        if raw is None and name not in source:
            continue
        number = _number(raw)
        where = f"{key}.{name}" if source is item else name
        if number is None or (name in ("fl_x", "fl_y", "w", "h") and number <= 0):
            problems.add(path, f"{where}: expected a positive finite number, found {raw!r}")
            return None
        values[name] = number
    missing = [name for name in ("fl_x", "w", "h") if name not in values]
    if missing:
        problems.add(path, f"{key}: no {missing[0]} (neither in the frame nor at the top level)")
        return None
    model = item.get("camera_model", content.get("camera_model", "OPENCV"))
    if not isinstance(model, str):
        problems.add(path, f"camera_model: expected a name such as OPENCV, found {model!r}")
        return None
    w, h, fx = values["w"], values["h"], values["fl_x"]
    fy, cx, cy = values.get("fl_y", fx), values.get("cx", w / 2), values.get("cy", h / 2)
    return _Camera(model, w, h, fx, fy, cx, cy)


def _frame(
    item: Any, key: str, content: dict[str, Any], root: Path, images: str | Path | None,
    path: Path, image_check: ImageCheck, problems: Problems,
) -> tuple[Frame, _Camera] | None:  # fmt: skip
    """One entry of `frames` as a Frame (split 'train' for now) and the projection of its
    image, or None (reported)."""
    if not isinstance(item, dict):
        problems.add(path, f"{key}: expected an object with file_path and transform_matrix")
        return None
    file_path = item.get("file_path")
    if not isinstance(file_path, str):
        problems.add(path, f"{key}.file_path: expected a string, found {file_path!r}")
        return None
    name = _relative_name(file_path, f"{key}.file_path", path, problems)
    if name is None:
        return None
    if "transform_matrix" not in item:
        problems.add(path, f"{key}.transform_matrix: missing")
        return None
    matrix = _check_matrix(item, "transform_matrix", ((4, 4),), path, problems, f"{key}.")
    camera = _camera(item, content, key, path, problems)
    pose = _pose(matrix, f"{key}.transform_matrix", path, problems) if matrix is not None else None
    if pose is None or camera is None:
        return None
    parts = PurePosixPath(name).parts
    image = root / name if images is None else Path(root, images, *parts[1:] or parts)
    check_image(image, image_check, path, None, problems)
    camera = _scaled_to(image, camera, key, path, problems) if image_check != "none" else camera
    if camera is None:
        return None
    intrinsics = None
    if camera.model in PINHOLE_LIKE:
        intrinsics = Intrinsics(round(camera.width), round(camera.height), camera.fx, camera.fy,
                                camera.cx, camera.cy)  # fmt: skip
    sequence = PurePosixPath(name).parent.name or "default"
    frame = Frame(name, image, pose[0], pose[1], sequence, "train", intrinsics=intrinsics)
    return frame, camera


def _pose(
    matrix: np.ndarray, key: str, path: Path, problems: Problems
) -> tuple[np.ndarray, np.ndarray] | None:
    """(centre (3,), world -> camera quaternion (4,) wxyz) of a camera-to-world OpenGL matrix."""
    if np.abs(matrix[3] - [0.0, 0.0, 0.0, 1.0]).max() > 1e-6:
        problems.add(path, f"{key}: the last row must be [0, 0, 0, 1]")
        return None
    world_from_camera, reason = nearest_rotation(matrix[:3, :3])
    if world_from_camera is None:
        problems.add(path, f"{key}: {reason}")
        return None
    cam_from_world = (world_from_camera @ OPENGL_TO_OPENCV).T
    return matrix[:3, 3].copy(), matrix_to_quaternion_np(cam_from_world)


def _scaled_to(
    image: Path, camera: _Camera, key: str, path: Path, problems: Problems
) -> _Camera | None:
    """The intrinsics scaled to the image's actual size (a downscaled copy); unchanged when the
    image cannot be opened (its problem is reported by the image check)."""
    from PIL import Image

    try:
        with Image.open(image) as opened:
            width, height = opened.size
    except Exception:  # missing or undecodable: check_image says so
        return camera
    sx, sy = width / camera.width, height / camera.height
    if abs(sx - sy) > 0.02 * max(sx, sy):
        problems.add(
            path, f"{key}: image {image} is {width}x{height}, not {camera.width:g}x"
            f"{camera.height:g} (w, h) or a downscaled copy of that size",
        )  # fmt: skip
        return None
    return _Camera(camera.model, width, height, camera.fx * sx, camera.fy * sy,
                   camera.cx * sx, camera.cy * sy)  # fmt: skip


def _own_split(
    content: dict[str, Any], names: list[str], path: Path, problems: Problems, synthetic: set[str]
) -> dict[str, Role] | None:
    """Frame name -> split from train_filenames / test_filenames / val_filenames; None when
    the file has none of these keys. The `synthetic` frames (augment's) need not be listed, and
    must not be test frames."""
    present = [key for key in SPLIT_KEYS if key in content]
    if not present:
        return None
    known = set(names)
    listed: dict[str, tuple[str, Role]] = {}
    for key in present:
        value = content[key]
        if not isinstance(value, list):
            problems.add(path, f"{key}: expected a list of file paths")
            continue
        for k, entry in enumerate(value):
            if not isinstance(entry, str):
                problems.add(path, f"{key}[{k}]: expected a file path, found {entry!r}")
                continue
            name = _relative_name(entry, f"{key}[{k}]", path, problems)
            if name is None:
                continue
            if name not in known:
                problems.add(path, f"{key}[{k}]: {entry!r} is not the file_path of a frame")
            elif name in listed and listed[name][1] != SPLIT_KEYS[key]:
                problems.add(path, f"{key}[{k}]: {name!r} is also in {listed[name][0]}")
            elif SPLIT_KEYS[key] == "test" and name in synthetic:
                problems.add(path, f"{key}[{k}]: {name!r} is synthesised (augment.json): never "
                             "a test frame")  # fmt: skip
            else:
                listed[name] = (f"{key}[{k}]", SPLIT_KEYS[key])
    splits = {SPLIT_KEYS[key] for key in present}
    if len(splits) == 2:
        for name in names:
            if name not in listed and name not in synthetic:
                problems.add(path, f"frame {name!r} is in none of {', '.join(present)}")
        return {name: split for name, (_, split) in listed.items()}
    (split,) = splits
    other: Role = "test" if split == "train" else "train"
    return {name: listed[name][1] if name in listed else other for name in names}


def _points(value: Any, root: Path, path: Path, problems: Problems) -> np.ndarray:
    """The vertices of the PLY that ply_file_path names; (0, 3) after reporting a problem."""
    if not isinstance(value, str):
        problems.add(path, f"ply_file_path: expected a string, found {value!r}")
        return np.zeros((0, 3))
    name = _relative_name(value, "ply_file_path", path, problems)
    points = read_ply_points(root / name, problems) if name is not None else None
    return points if points is not None else np.zeros((0, 3))


def _relative_name(value: str, key: str, path: Path, problems: Problems) -> str | None:
    """`value` as a path inside the dataset folder (see relative_image_name), or None after a
    problem naming the JSON `key`."""
    found = Problems(strict=False)
    name = relative_image_name(value, path, None, found)
    for error in found.errors:
        problems.add(path, f"{key}: {error.reason}")
    return name


def _visible(points: np.ndarray, frame: Frame, camera: _Camera) -> np.ndarray:
    """(k,) indices of the (M, 3) `points` in front of the frame's camera whose pinhole
    projection falls inside its image."""
    from geoposenet.geometry import quaternion_to_matrix_np

    in_camera = (points - frame.centre) @ quaternion_to_matrix_np(frame.quaternion).T
    z = in_camera[:, 2]
    front = z > 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        u = camera.fx * in_camera[:, 0] / z + camera.cx
        v = camera.fy * in_camera[:, 1] / z + camera.cy
    inside = front & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    return np.flatnonzero(inside).astype(np.int64)
