"""Microsoft 7-Scenes: `TrainSplit.txt` / `TestSplit.txt` and `seq-01/frame-000000.*` files.

Split files list sequences as `sequenceN` (the folder `seq-NN`). Per frame: `.color.png` (a
`.color.jpg` is used when the png is absent), `.pose.txt` (4x4 camera-to-world matrix, any white
space, CRLF, `9.38e-001` exponents) and `.depth.png` (640x480, 16-bit, millimetres, 0 and 65535
invalid). Pose: centre c = T[:3, 3]; world -> camera rotation = T[:3, :3]^T (the nearest rotation
by SVD, since the files are orthonormal only to about 1e-4).

3D points: each frame with a depth map gets up to `points_per_frame` valid depth pixels, chosen by a
generator seeded from (seed, frame name) and kept in raster order, back-projected with the depth
camera (f = 585, principal point (320, 240)) into the world frame with the file's T:
X_cam = ((u - 320) z / 585, (v - 240) z / 585, z), X_world = T[:3, :3] X_cam + T[:3, 3].
They are cached on disk (geoposenet.cache), keyed by the depth/pose files and the parameters.
Frames without a depth map (and all frames when points_per_frame = 0) get no points.
The colour camera is not the depth camera: frames carry no intrinsics.

Completeness (no frame dropped in silence): every `frame-NNNNNN.*` file (colour, depth, pose) in
a listed sequence makes a frame, so a frame without its pose file is a problem, and so is one
without its colour image (unless images are not required). A sequence either has depth maps for
all its frames or for none (seq-05/06 of the real stairs have none: legal); a depth map missing
from a sequence that has others is a problem. Every `seq-NN` folder must be listed in
TrainSplit.txt or TestSplit.txt, and every listed one must exist. When both a .color.png and a
.color.jpg exist, the png is the frame's image.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geoposenet.cache import atomic_write, cache_path, fingerprint
from geoposenet.errors import InputError
from geoposenet.geometry import matrix_to_quaternion_np
from geoposenet.readers._common import (
    ImageCheck,
    Problems,
    check_image,
    content_lines,
    first_line,
    nearest_rotation,
    parse_floats,
    read_lines,
)
from geoposenet.scene import METRES, Frame, Scene, Split

FORMAT = "7scenes"
POSITION_UNIT = METRES
SPLIT_FILES: dict[Split, str] = {"train": "TrainSplit.txt", "test": "TestSplit.txt"}
LOOKED_FOR = "TrainSplit.txt and seq-XX folders (7-Scenes)"
DEPTH_FOCAL = 585.0
DEPTH_CENTRE = (320.0, 240.0)
DEPTH_SHAPE = (480, 640)  # rows, columns
INVALID_DEPTH = 65535
CACHE_VERSION = 1
_SEQUENCE = re.compile(r"(?:sequence|seq-)(\d{1,6})", re.IGNORECASE | re.ASCII)
_FRAME_FILE = re.compile(r"(frame-\d{1,9})\.(color\.png|color\.jpg|depth\.png|pose\.txt)", re.ASCII)
_SEQUENCE_FOLDER = re.compile(r"seq-\d+", re.ASCII)


@dataclass
class _Entry:
    frame: Frame
    stem: str  # 'seq-01/frame-000000': seeds the pixel sample
    pose_path: Path
    world_from_camera: np.ndarray  # (4, 4) as in the file
    depth: Path | None


def looks_like(root: Path) -> bool:
    """Whether `root` holds a 7-Scenes scene."""
    return (root / SPLIT_FILES["train"]).is_file() and any(p.is_dir() for p in root.glob("seq-*"))


def read(
    root: Path,
    problems: Problems,
    image_check: ImageCheck = "exists",
    points_per_frame: int = 512,
    seed: int = 0,
    cache: bool = True,
) -> Scene:
    """Read the scene folder `root` (frames of the train sequences, then the test ones)."""
    if points_per_frame < 0:
        raise InputError(f"points_per_frame must be >= 0, got {points_per_frame}")
    entries: list[_Entry] = []
    first_seen: dict[str, str] = {}
    for split, filename in SPLIT_FILES.items():
        path = root / filename
        lines = read_lines(path, problems)
        for number, text in content_lines(lines or []):
            match = _SEQUENCE.fullmatch(text.strip())
            if match is None:
                problems.add(path, f"expected 'sequenceN', found {text.strip()!r}", number)
                continue
            sequence = f"seq-{int(match.group(1)):02d}"
            if sequence in first_seen:
                problems.add(
                    path, f"{sequence} listed twice (first at {first_seen[sequence]})", number
                )
                continue
            first_seen[sequence] = f"{filename}:{number}"
            if not (root / sequence).is_dir():
                problems.add(path, f"sequence folder {root / sequence} not found", number)
                continue
            entries.extend(_read_sequence(root, sequence, split, problems, image_check))
    _check_unlisted_sequences(root, set(first_seen), problems)
    points, point_ids = _depth_points(entries, problems, points_per_frame, seed, cache)
    for entry, ids in zip(entries, point_ids, strict=True):
        entry.frame.point_ids = ids
    return Scene(root, root.name, FORMAT, [e.frame for e in entries], points)


def _check_unlisted_sequences(root: Path, listed: set[str], problems: Problems) -> None:
    """A `seq-NN` folder that neither split file lists is a problem (its frames would be lost)."""
    folders = sorted(p for p in root.iterdir() if _SEQUENCE_FOLDER.fullmatch(p.name) and p.is_dir())
    for folder in folders:
        if folder.name not in listed:
            problems.add(
                folder,
                f"sequence folder listed in neither {' nor '.join(SPLIT_FILES.values())} "
                f"(as sequence{int(folder.name[4:])})",
            )


def _frame_files(folder: Path, problems: Problems) -> dict[str, set[str]] | None:
    """Frame stem ('frame-000000') -> the kinds of file it has ('pose.txt', 'color.jpg', ...);
    None after reporting a folder that cannot be listed."""
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError as error:
        problems.add(folder, f"cannot list the sequence folder: {error.strerror or error}")
        return None
    files: dict[str, set[str]] = {}
    for name in names:
        match = _FRAME_FILE.fullmatch(name)
        if match is not None:
            files.setdefault(match.group(1), set()).add(match.group(2))
    if not files:
        problems.add(folder, "no frame-NNNNNN files in the sequence folder")
    return files


def _check_complete(folder: Path, files: dict[str, set[str]], problems: Problems) -> None:
    """Report the frames without a pose file, and the depth maps missing from a sequence whose
    other frames have one."""
    posed = {stem: kinds for stem, kinds in files.items() if "pose.txt" in kinds}
    with_depth = sum("depth.png" in kinds for kinds in posed.values())
    for stem, kinds in sorted(files.items()):
        if stem not in posed:
            present = ", ".join(f"{stem}.{kind}" for kind in sorted(kinds))
            problems.add(
                folder / f"{stem}.pose.txt", f"pose file not found, but there is {present}"
            )
        elif with_depth and "depth.png" not in kinds:
            problems.add(
                folder / f"{stem}.depth.png",
                f"depth map not found, while {with_depth} of the {len(posed)} frames of "
                f"{folder.name} have one",
            )


def _read_sequence(
    root: Path, sequence: str, split: Split, problems: Problems, image_check: ImageCheck
) -> list[_Entry]:
    folder = root / sequence
    files = _frame_files(folder, problems)
    if files is None:
        return []
    _check_complete(folder, files, problems)
    entries = []
    for stem in sorted(s for s, kinds in files.items() if "pose.txt" in kinds):
        pose_path = folder / f"{stem}.pose.txt"
        parsed = read_pose(pose_path, problems)
        if parsed is None:
            continue
        centre, quaternion, world_from_camera = parsed
        png, jpg = folder / f"{stem}.color.png", folder / f"{stem}.color.jpg"
        image = jpg if jpg.is_file() and not png.is_file() else png
        check_image(image, image_check, pose_path, None, problems)
        depth_path = folder / f"{stem}.depth.png"
        depth = depth_path if depth_path.exists() else None
        frame = Frame(f"{sequence}/{image.name}", image, centre, quaternion, sequence, split)
        entries.append(_Entry(frame, f"{sequence}/{stem}", pose_path, world_from_camera, depth))
    return entries


def read_pose(path: Path, problems: Problems) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Parse a camera-to-world `pose.txt` -> (centre (3,), world -> camera wxyz quaternion (4,),
    the (4, 4) matrix as written); None after reporting a problem."""
    rows = list(content_lines(read_lines(path, problems) or []))
    if not rows:
        return None
    if len(rows) != 4:
        problems.add(path, f"expected 4 rows of 4 numbers, found {len(rows)} rows", rows[-1][0])
        return None
    matrix = np.zeros((4, 4))
    for i, (number, text) in enumerate(rows):
        tokens = text.split()
        if len(tokens) != 4:
            problems.add(path, f"expected 4 numbers in a row, found {len(tokens)}", number)
            return None
        values = parse_floats(tokens, "pose", path, number, problems)
        if values is None:
            return None
        matrix[i] = values
    if np.abs(matrix[3] - [0.0, 0.0, 0.0, 1.0]).max() > 1e-6:
        problems.add(path, "the last row must be '0 0 0 1'", rows[3][0])
        return None
    world_from_camera, reason = nearest_rotation(matrix[:3, :3])
    if world_from_camera is None:
        problems.add(path, reason, rows[0][0])
        return None
    quaternion = matrix_to_quaternion_np(world_from_camera.T)
    return matrix[:3, 3].copy(), quaternion, matrix


def backproject(
    pixels: np.ndarray, depth_m: np.ndarray, world_from_camera: np.ndarray
) -> np.ndarray:
    """(k, 2) pixel (u, v) coordinates with (k,) depths in metres -> (k, 3) world points, through
    the 7-Scenes depth camera and the (4, 4) camera-to-world matrix."""
    u, v = pixels[:, 0].astype(np.float64), pixels[:, 1].astype(np.float64)
    camera = np.stack(
        ((u - DEPTH_CENTRE[0]) * depth_m / DEPTH_FOCAL,
         (v - DEPTH_CENTRE[1]) * depth_m / DEPTH_FOCAL,
         depth_m),
        axis=-1,
    )  # fmt: skip
    return camera @ world_from_camera[:3, :3].T + world_from_camera[:3, 3]


def decode_depth(path: Path, problems: Problems) -> np.ndarray | None:
    """A 7-Scenes depth PNG -> (480, 640) uint16 millimetres; None after reporting.
    Decoded by PIL, not torchvision: torchvision 0.29's decode_png crashes the process
    (segfault) on corrupt compressed data, where PIL raises an exception we can report."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode, size = image.mode, image.size
            if image.format != "PNG" or mode not in ("I;16", "I;16B"):
                problems.add(path, f"depth PNG must be 16-bit grey, got {image.format} {mode}")
                return None
            depth = np.asarray(image, dtype=np.uint16)
    except Exception as error:  # PIL reports bad bytes as OSError, SyntaxError, ValueError...
        problems.add(path, f"cannot decode depth PNG ({first_line(error)})")
        return None
    if (size[1], size[0]) != DEPTH_SHAPE:
        problems.add(path, f"depth PNG is {size[0]}x{size[1]}, expected 640x480")
        return None
    return depth


def _frame_points(entry: _Entry, depth: np.ndarray, count: int, seed: int) -> np.ndarray:
    valid = np.flatnonzero((depth > 0) & (depth != INVALID_DEPTH))
    if len(valid) > count:
        rng = np.random.default_rng([seed, zlib.crc32(entry.stem.encode())])
        valid = np.sort(rng.choice(valid, size=count, replace=False))
    rows, cols = np.divmod(valid, DEPTH_SHAPE[1])
    pixels = np.stack((cols, rows), axis=-1)
    return backproject(pixels, depth.reshape(-1)[valid] / 1000.0, entry.world_from_camera)


def _depth_points(
    entries: list[_Entry], problems: Problems, count: int, seed: int, use_cache: bool
) -> tuple[np.ndarray, list[np.ndarray]]:
    """All frames' points (M, 3) and per-entry point ids, from the cache when possible."""
    empty = np.zeros(0, dtype=np.int64)
    with_depth = [i for i, e in enumerate(entries) if e.depth is not None] if count else []
    if not with_depth:
        return np.zeros((0, 3)), [empty] * len(entries)
    path = _cache_file(entries, with_depth, count, seed) if use_cache else None
    loaded = _load_cache(path, len(with_depth))
    if loaded is None:
        errors_before = len(problems)
        loaded = _compute_points([entries[i] for i in with_depth], problems, count, seed)
        if path is not None and len(problems) == errors_before:
            _save(path, *loaded)
    points, counts = loaded
    ids = [empty] * len(entries)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    for k, i in enumerate(with_depth):
        ids[i] = np.arange(offsets[k], offsets[k + 1], dtype=np.int64)
    return points, ids


def _compute_points(
    entries: list[_Entry], problems: Problems, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Decode each entry's depth map and back-project: (M, 3) points and (F,) counts per entry."""
    chunks = []
    for entry in entries:
        depth = decode_depth(entry.depth, problems) if entry.depth is not None else None
        chunks.append(
            np.zeros((0, 3)) if depth is None else _frame_points(entry, depth, count, seed)
        )
    return np.concatenate(chunks), np.array([len(c) for c in chunks], dtype=np.int64)


def _cache_file(entries: list[_Entry], with_depth: list[int], count: int, seed: int) -> Path | None:
    """Where the points of these frames and parameters are cached; None if it cannot be used."""
    files = [p for i in with_depth for p in (entries[i].pose_path, entries[i].depth) if p]
    stems = [entries[i].stem for i in with_depth]
    try:
        key = fingerprint(
            files, stems=stems, points_per_frame=count, seed=seed, version=CACHE_VERSION
        )
        return cache_path("7scenes-points", key, ".npz")
    except OSError:  # a file vanished, or the cache folder cannot be created
        return None


def _save(path: Path, points: np.ndarray, counts: np.ndarray) -> None:
    """Write the cache entry atomically; a cache that cannot be written is skipped."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, points=points, counts=counts)

    try:
        atomic_write(path, write)
    except OSError:
        return


def _load_cache(path: Path | None, frames: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (points, per-frame counts), or None when absent or inconsistent."""
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path) as data:
            points, counts = data["points"], data["counts"]
    except Exception:  # a damaged entry (bad zip, truncated array...) is recomputed
        return None
    if points.ndim != 2 or points.shape[1] != 3 or counts.shape != (frames,):
        return None
    if int(counts.sum()) != len(points) or (counts < 0).any():
        return None
    return points.astype(np.float64), counts.astype(np.int64)
