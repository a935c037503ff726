"""Cambridge Landmarks: `dataset_train.txt` / `dataset_test.txt` and the optional
`reconstruction.nvm` in the scene folder.

Label files: 3 header lines (`Visual Landmark Dataset V1`, `ImageFile, Camera Position [X Y Z W P Q
R]`, blank), then one line per image `seqN/frame00001.png X Y Z W P Q R`: XYZ the camera centre
(world frame, metres), WPQR the world -> camera quaternion, w first. Image paths are relative to
the scene folder; the sequence is the first path component ('default' when there is none).
The NVM names images `seqN/frame00001.jpg` while the labels say `.png`: frames and NVM cameras are
matched by path without extension. Frames the NVM does not cover keep empty `point_ids`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geoposenet.readers._common import (
    ImageCheck,
    Problems,
    check_image,
    content_lines,
    parse_floats,
    read_lines,
    relative_image_name,
    unit_quaternion,
)
from geoposenet.readers._nvm import NvmModel, read_nvm
from geoposenet.scene import Frame, Scene, Split

FORMAT = "cambridge"
LABEL_FILES: dict[Split, str] = {"train": "dataset_train.txt", "test": "dataset_test.txt"}
NVM_FILE = "reconstruction.nvm"
HEADER_PREFIXES = ("Visual Landmark Dataset", "ImageFile", "")
LOOKED_FOR = "dataset_train.txt (Cambridge Landmarks)"


def looks_like(root: Path) -> bool:
    """Whether `root` holds a Cambridge Landmarks scene."""
    return (root / LABEL_FILES["train"]).is_file()


def read(root: Path, problems: Problems, image_check: ImageCheck = "exists") -> Scene:
    """Read the scene folder `root` into a Scene (frames in file order, train then test)."""
    frames: list[Frame] = []
    first_seen: dict[str, str] = {}
    for split, filename in LABEL_FILES.items():
        path = root / filename
        lines = read_lines(path, problems)
        if lines is None:
            continue
        _check_header(lines, path, problems)
        for number, text in content_lines(lines, start=len(HEADER_PREFIXES) + 1):
            frame = _parse_label(number, text, split, root, path, problems, image_check)
            if frame is None:
                continue
            if frame.name in first_seen:
                problems.add(
                    path,
                    f"duplicate frame {frame.name} (first at {first_seen[frame.name]})",
                    number,
                )
                continue
            first_seen[frame.name] = f"{filename}:{number}"
            frames.append(frame)
    points = np.zeros((0, 3))
    if (root / NVM_FILE).exists():
        model = read_nvm(root / NVM_FILE, problems)
        if model is not None:
            points = model.points
            _attach_points(frames, model, root / NVM_FILE, problems)
    return Scene(root, root.name, FORMAT, frames, points)


def _check_header(lines: list[str | None], path: Path, problems: Problems) -> None:
    for number, prefix in enumerate(HEADER_PREFIXES, start=1):
        text = lines[number - 1] if number <= len(lines) else ""
        if text is None:
            continue  # already reported as non-UTF-8
        ok = text.strip().startswith(prefix) if prefix else not text.strip()
        if not ok:
            expected = f"a line starting with {prefix!r}" if prefix else "a blank line"
            problems.add(path, f"header: expected {expected}, found {text.strip()!r}", number)


def _parse_label(
    number: int,
    text: str,
    split: Split,
    root: Path,
    path: Path,
    problems: Problems,
    image_check: ImageCheck,
) -> Frame | None:
    tokens = text.split()
    if len(tokens) != 8:
        problems.add(
            path, f"expected 8 fields '<image> X Y Z W P Q R', found {len(tokens)}", number
        )
        return None
    name = relative_image_name(tokens[0], path, number, problems)
    values = parse_floats(tokens[1:], "pose", path, number, problems)
    if name is None or values is None:
        return None
    quaternion = unit_quaternion(values[3:], path, number, problems)
    if quaternion is None:
        return None
    image = root / name
    check_image(image, image_check, path, number, problems)
    sequence = name.split("/")[0] if "/" in name else "default"
    return Frame(name, image, values[:3], quaternion, sequence, split)


def _stem_key(name: str) -> str:
    """Path without extension, '/'-separated: the key matching labels to NVM cameras."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if parts:
        stem, dot, _ = parts[-1].rpartition(".")
        if dot and stem:
            parts[-1] = stem
    return "/".join(parts)


def _attach_points(frames: list[Frame], model: NvmModel, path: Path, problems: Problems) -> None:
    by_key: dict[str, int] = {}
    for index, camera in enumerate(model.cameras):
        key = _stem_key(camera.name)
        if key in by_key:
            problems.add(path, f"duplicate camera {camera.name}", camera.line)
            continue
        by_key[key] = index
    for frame in frames:
        match = by_key.get(_stem_key(frame.name))
        if match is not None:
            frame.point_ids = model.observed[match]
