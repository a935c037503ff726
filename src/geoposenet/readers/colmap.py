"""COLMAP sparse models (text or binary, read with pycolmap 4.x).

The model (`cameras`, `images`, `points3D` as .bin or .txt) is looked for in the dataset folder,
then `sparse/`, then `sparse/0/`; images are in `images/` in the dataset folder unless the option
`images` names another folder (relative to the dataset folder, or absolute).
Poses: pycolmap's `cam_from_world` (R, t), quaternion stored x, y, z, w (Eigen order), converted
here to w, x, y, z; camera centre c = -R^T t. Only images with a pose are frames, in name order.
Points: all points3D, indexed in ascending point3D_id order; a frame's point_ids are the points its
2D features observe. Sequence: the image's parent folder name, or 'default'.
Intrinsics: for the pinhole-family models (SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV,
FULL_OPENCV) the pinhole part of the calibration matrix, distortion dropped; None for fisheye and
other models, whose projection a pinhole K would misdescribe.
Splits: the options `test_list` (a file of test image names) or `test_every` (every N-th name)
when given; else `train.txt` / `test.txt` (one image name a line) beside the model, else in the
dataset folder: with both, they define the splits and must together list every registered image;
with one, the other split is every remaining image; with none, held-out test stretches with a gap
before them (readers/_split.py). The images of a `geoposenet augment` output's synthesised
sequences (augment.json) are training images whatever the rule, which sees only the others.
Units: the model's own (arbitrary) ones; `load_scene`'s `scale`/`scale_from` turn them into metres.

Completeness (no frame dropped in silence): every registered image (one with a pose) is a frame,
but for the gap images of the default split, which `check` notes.
Its file missing from the image folder, its name registered twice, a split list naming an image
the model does not register, and a registered image in neither of two split lists are problems.
Image files in the image folder that the model does not register (or registers without a pose)
are normal for COLMAP: the images it could not register. They have no pose, so they are not
frames; `check` notes them with a count, and they do not stop training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from geoposenet.geometry import quaternion_to_matrix_np
from geoposenet.readers._augmented import synthetic_sequences
from geoposenet.readers._colmap_layout import check_binary_model
from geoposenet.readers._common import (
    ImageCheck,
    Problems,
    check_image,
    content_lines,
    first_line,
    image_files,
    read_lines,
    relative_image_name,
    unit_quaternion,
)
from geoposenet.readers._split import (
    GAP_NOTE,
    Role,
    check_choice,
    chosen_split,
    synthetic_names,
)
from geoposenet.scene import MODEL_UNITS, Frame, Intrinsics, Scene, Split

FORMAT = "colmap"
POSITION_UNIT = MODEL_UNITS
MODEL_FILES = ("cameras", "images", "points3D")
LOOKED_FOR = (
    "a COLMAP model (cameras/images/points3D .bin or .txt) in the folder, sparse/ or sparse/0"
)
PINHOLE_LIKE = frozenset(
    {"SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV"}
)


@dataclass
class _Image:
    """A registered image as plain data: quaternion (4,) wxyz, translation (3,) cam_from_world."""

    image_id: int
    name: str
    quaternion: np.ndarray
    translation: np.ndarray
    intrinsics: Intrinsics | None
    point3d_ids: list[int]


def find_model(root: Path) -> Path | None:
    """The folder holding the model files: `root`, `root/sparse` or `root/sparse/0`."""
    for folder in (root, root / "sparse", root / "sparse" / "0"):
        if any((folder / f"{n}.{ext}").is_file() for n in MODEL_FILES for ext in ("bin", "txt")):
            return folder
    return None


def looks_like(root: Path) -> bool:
    """Whether `root` holds a COLMAP model."""
    return find_model(root) is not None


def read(
    root: Path,
    problems: Problems,
    image_check: ImageCheck = "exists",
    images: str | Path | None = None,
    test_list: str | Path | None = None,
    test_every: int | None = None,
) -> Scene:
    """Read the COLMAP dataset folder `root` into a Scene, in the model's units. `images`: the
    image folder (default `images`), relative to `root` or absolute; `test_list`, `test_every`:
    the test split (see the module docstring)."""
    check_choice(test_list, test_every)
    empty = Scene(root, root.name, FORMAT, [], position_unit=MODEL_UNITS)
    model = find_model(root)
    if model is None:
        problems.add(root, f"no COLMAP model found: looked for {LOOKED_FOR}")
        return empty
    missing = [
        n for n in MODEL_FILES if not any((model / f"{n}.{e}").exists() for e in ("bin", "txt"))
    ]
    if missing:
        problems.add(model, "the model lacks " + ", ".join(f"{n}.bin/.txt" for n in missing))
        return empty
    loaded = _load(model, problems)
    if loaded is None:
        return empty
    records, index, points = loaded
    images_file = _model_file(model, "images")
    if not records:
        problems.add(images_file, "the COLMAP model has no registered images with poses")
        return empty
    _check_unique_names(records, images_file, problems)
    image_dir = root / images if images is not None else root / "images"
    names = sorted(r.name for r in records)
    sequences = {n: PurePosixPath(n).parent.name or "default" for n in names}
    # augment.json's problems are reported once, by load_scene's mark_synthetic
    synthetic = synthetic_names(sequences, synthetic_sequences(root, Problems(strict=False)))
    given = test_list is not None or test_every is not None
    own = None if given else _own_split(names, model, root, problems, synthetic)
    roles = chosen_split(sequences, own, test_list, test_every, problems, synthetic)
    frames, gap = [], []
    for record in sorted(records, key=lambda r: (r.name, r.image_id)):
        frame = _frame(record, index, image_dir, roles, images_file, image_check, problems)
        if frame is not None and roles[record.name] == "gap":
            gap.append(frame.name)
        elif frame is not None:
            frames.append(frame)
    problems.note_files(images_file, GAP_NOTE, gap)
    if image_check != "none":
        _note_unregistered(image_dir, {record.name for record in records}, problems)
    return Scene(root, root.name, FORMAT, frames, points, MODEL_UNITS)


def _note_unregistered(image_dir: Path, registered: set[str], problems: Problems) -> None:
    """Note the image files below `image_dir` that are no registered image (not a problem: the
    images COLMAP could not register stay in the image folder)."""
    files = (path.relative_to(image_dir).as_posix() for path in image_files(image_dir, True))
    unregistered = [name for name in files if name not in registered]
    problems.note_files(image_dir, "image file(s) that the model does not register", unregistered)


def _check_unique_names(records: list[_Image], images_file: Path, problems: Problems) -> None:
    """Two registered images of the same name would be two frames of one file: a problem."""
    first: dict[str, int] = {}
    for record in sorted(records, key=lambda r: r.image_id):
        if record.name in first:
            problems.add(
                images_file,
                f"image name {record.name!r} registered twice (image ids {first[record.name]} "
                f"and {record.image_id})",
            )
        first.setdefault(record.name, record.image_id)


def _model_file(model: Path, name: str) -> Path:
    """The binary file `name`.bin when present (pycolmap prefers it), else `name`.txt."""
    binary = model / f"{name}.bin"
    return binary if binary.exists() else model / f"{name}.txt"


def _load(
    model: Path, problems: Problems
) -> tuple[list[_Image], dict[int, int], np.ndarray] | None:
    """Read the model with pycolmap: the registered images, point3D_id -> row of the (M, 3) xyz
    array, and that array. None after reporting a problem."""
    import pycolmap

    broken = check_binary_model(model)
    if broken is not None:
        problems.add(*broken)
        return None
    try:
        reconstruction = pycolmap.Reconstruction(str(model))
        ids = sorted(reconstruction.points3D)
        xyz = np.array([reconstruction.points3D[i].xyz for i in ids], dtype=np.float64)
        records = [_record(image) for image in reconstruction.images.values() if image.has_pose]
    except Exception as error:  # pycolmap raises ValueError/IndexError/RuntimeError on bad files
        problems.add(model, f"cannot read the COLMAP model: {first_line(error)}")
        return None
    xyz = xyz.reshape(-1, 3)
    if not np.isfinite(xyz).all():
        problems.add(_model_file(model, "points3D"), "non-finite 3D point coordinates")
        return None
    return records, {point_id: k for k, point_id in enumerate(ids)}, xyz


def _record(image: Any) -> _Image:
    pose = image.cam_from_world()
    x, y, z, w = np.asarray(pose.rotation.quat, dtype=np.float64)
    camera = image.camera
    intrinsics = None
    if camera.model_name in PINHOLE_LIKE:
        k = np.asarray(camera.calibration_matrix(), dtype=np.float64)
        if np.isfinite(k).all():
            intrinsics = Intrinsics(
                int(camera.width), int(camera.height), k[0, 0], k[1, 1], k[0, 2], k[1, 2]
            )
    observed = [p.point3D_id for p in image.points2D if p.has_point3D()]
    return _Image(
        int(image.image_id),
        str(image.name),
        np.array([w, x, y, z]),
        np.asarray(pose.translation, dtype=np.float64).reshape(3),
        intrinsics,
        observed,
    )


def _frame(
    record: _Image,
    index: dict[int, int],
    image_dir: Path,
    roles: dict[str, Role],
    images_file: Path,
    image_check: ImageCheck,
    problems: Problems,
) -> Frame | None:
    """The frame of a registered image (split 'train' for a gap image), or None (reported)."""
    if record.name not in roles:
        return None
    name = relative_image_name(record.name, images_file, None, problems)
    if name is None:
        return None
    if not (np.isfinite(record.quaternion).all() and np.isfinite(record.translation).all()):
        problems.add(images_file, f"image {record.name}: non-finite pose")
        return None
    quaternion = unit_quaternion(record.quaternion, images_file, None, problems)
    if quaternion is None:
        return None
    centre = -quaternion_to_matrix_np(quaternion).T @ record.translation
    unknown = [i for i in record.point3d_ids if i not in index]
    if unknown:
        problems.add(images_file, f"image {record.name} observes unknown 3D point {unknown[0]}")
        return None
    point_ids = np.unique(np.array([index[i] for i in record.point3d_ids], dtype=np.int64))
    check_image(image_dir / name, image_check, images_file, None, problems)
    sequence = PurePosixPath(name).parent.name or "default"
    split: Split = "test" if roles[record.name] == "test" else "train"
    return Frame(
        name, image_dir / name, centre, quaternion, sequence, split, point_ids, record.intrinsics
    )


def _own_split(
    names: list[str], model: Path, root: Path, problems: Problems, synthetic: set[str]
) -> dict[str, Role] | None:
    """Image name -> split from the train.txt/test.txt lists; None when there are none. The
    `synthetic` images (augment's) need not be listed, and must not be in test.txt."""
    folder = next(
        (f for f in (model, root) if (f / "train.txt").is_file() or (f / "test.txt").is_file()),
        None,
    )
    if folder is None:
        return None
    listed: dict[Role, set[str]] = {}
    known = set(names)
    where: dict[str, str] = {}
    for split in ("train", "test"):
        path = folder / f"{split}.txt"
        if not path.is_file():
            continue
        listed[split] = set()
        for number, text in content_lines(read_lines(path, problems) or []):
            name = text.strip()
            if name not in known:
                problems.add(path, f"image {name!r} is not a registered image of the model", number)
            elif name in where:
                problems.add(path, f"image {name!r} listed again (first at {where[name]})", number)
            elif split == "test" and name in synthetic:
                problems.add(path, f"image {name!r} is synthesised (augment.json): never a test "
                             "image", number)  # fmt: skip
            else:
                where[name] = f"{path.name}:{number}"
                listed[split].add(name)
    if len(listed) == 2:
        for name in names:
            if name not in where and name not in synthetic:
                problems.add(
                    folder / "train.txt",
                    f"registered image {name!r} is in neither train.txt nor test.txt",
                )
        return {n: s for s, group in listed.items() for n in group}
    only, group = next(iter(listed.items()))
    other: Role = "test" if only == "train" else "train"
    return {n: only if n in group else other for n in names}
