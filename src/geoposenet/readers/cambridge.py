"""Cambridge Landmarks: `dataset_train.txt` / `dataset_test.txt` and the optional
`reconstruction.nvm` in the scene folder.

Label files: 3 header lines (`Visual Landmark Dataset V1`, `ImageFile, Camera Position [X Y Z W P Q
R]`, blank), then one line per image `seqN/frame00001.png X Y Z W P Q R`: XYZ the camera centre
(world frame, metres), WPQR the world -> camera quaternion, w first. Image paths are relative to
the scene folder; the sequence is the first path component ('default' when there is none).
The NVM names images `seqN/frame00001.jpg` while the labels say `.png`: frames and NVM cameras are
matched by path without extension (sequence and stem).

Completeness (no frame dropped in silence): the label files define the frames. A label line whose
image is missing is a problem. When reconstruction.nvm is present it is the source of the 3D
points and was built from the same frames, so every camera of its (first) model must name a
labelled frame (else a label line was lost) and every labelled frame must have a camera (else the
frame would train without points): both are problems. An image file in a folder of labelled
images that no label line mentions has no pose in this format, so it cannot be a frame; `check`
notes these files with a count (a lost label line shows there), but they do not stop training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geoposenet.readers._common import (
    ImageCheck,
    Problems,
    check_image,
    content_lines,
    image_files,
    parse_floats,
    read_lines,
    relative_image_name,
    unit_quaternion,
)
from geoposenet.readers._nvm import NvmModel, read_nvm
from geoposenet.scene import METRES, Frame, Scene, Split

FORMAT = "cambridge"
POSITION_UNIT = METRES
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
    if image_check != "none":
        _note_unlabelled_images(root, frames, problems)
    points = np.zeros((0, 3))
    if (root / NVM_FILE).exists():
        model = read_nvm(root / NVM_FILE, problems)
        if model is not None:
            points = model.points
            _attach_points(frames, first_seen, model, root / NVM_FILE, problems)
    return Scene(root, root.name, FORMAT, frames, points)


def _note_unlabelled_images(root: Path, frames: list[Frame], problems: Problems) -> None:
    """Note the image files beside labelled images (same folders) that no label line names."""
    labelled = {frame.name for frame in frames}
    folders = sorted({frame.image.parent for frame in frames})
    unlabelled = [
        name
        for folder in folders
        for name in (image.relative_to(root).as_posix() for image in image_files(folder))
        if name not in labelled
    ]
    problems.note_files(root, "image file(s) that no label line names", unlabelled)


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


def _attach_points(
    frames: list[Frame],
    label_lines: dict[str, str],
    model: NvmModel,
    path: Path,
    problems: Problems,
) -> None:
    """Give each frame the points its NVM camera observes. `label_lines`: frame name ->
    'dataset_train.txt:5', for the messages. A camera without a labelled frame (or a second one for
    the same frame) and a labelled frame without a camera are problems."""
    labelled = {_stem_key(frame.name) for frame in frames}
    by_key: dict[str, int] = {}
    for index, camera in enumerate(model.cameras):
        key = _stem_key(camera.name)
        if key in by_key:
            problems.add(path, f"duplicate camera {camera.name}", camera.line)
        elif key not in labelled:
            problems.add(
                path, f"camera {camera.name} names no frame of the label files", camera.line
            )
        else:
            by_key[key] = index
    for frame in frames:
        match = by_key.get(_stem_key(frame.name))
        if match is None:
            problems.add(
                path,
                f"no camera for the frame {frame.name} ({label_lines[frame.name]}) in the first "
                "model: every labelled frame needs one",
            )
        else:
            frame.point_ids = model.observed[match]
