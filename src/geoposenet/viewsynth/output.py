"""Writing an augmented dataset: DATA's files (hard links where the file system allows, else
copies) plus synthesised sequences in DATA's own format, appended to its training split.

- 7-Scenes: sequences `seq-901`, `seq-902`, ... (the format's names are numbers) of up to
  `SEQUENCE_LENGTH` frames, each `frame-NNNNNN.color.png`, `.pose.txt` and, when the renderer
  gives depth, `.depth.png` (depth camera, millimetres, 0 = unknown); listed in TrainSplit.txt.
- Cambridge: sequences `synthetic-1`, ... with `frameNNNNN.png`, appended to dataset_train.txt;
  when DATA has a reconstruction.nvm, every synthesised frame becomes a camera of its first model
  observing the 3D points visible in the view.
- COLMAP: images `synthetic-1/frameNNNNN.png` in the image folder (`images/`, or the --images
  one), each a new registered image of the model observing the 3D points visible in the view,
  and appended to train.txt when DATA has one (`viewsynth.reconstruction`).
- nerfstudio: images `<folder>/synthetic-1/frameNNNNN.png` (<folder>: the first folder of DATA's
  file paths, e.g. `images`, replaced by the --images one on disk), appended to transforms.json's
  frames and, when DATA has it, train_filenames.
All list the synthesised sequences in augment.json (see `geoposenet.readers._augmented`). A file
of DATA that changes is replaced by a new file in AUG, never written through its hard link.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from geoposenet.errors import InputError
from geoposenet.readers._augmented import MARKER
from geoposenet.scene import Intrinsics
from geoposenet.synthetic.writers import write_png

SEQUENCE_LENGTH = 1000
FIRST_7SCENES_SEQUENCE = 901
PARTIAL = ".augment-partial"
FORMATS = ("7scenes", "cambridge", "colmap", "nerfstudio")


@dataclass
class SynthFrame:
    """A written synthesised frame: its name (as the reader names frames), pose (centre (3,)
    world, in the scene's units as read, i.e. metres with a scale; quaternion (4,) world ->
    camera wxyz), the intrinsics it was rendered with, the training frame it came from, its
    coverage, and the ids of the scene's 3D points it sees with their pixel coordinates (k, 2)
    (centres at +0.5)."""

    name: str
    sequence: str
    centre: np.ndarray
    quaternion: np.ndarray
    camera: Intrinsics
    source: str
    coverage: float
    point_ids: np.ndarray
    uv: np.ndarray

    @property
    def focal(self) -> float:
        """Focal length in pixels (fx)."""
        return self.camera.fx

    @property
    def principal(self) -> tuple[float, float]:
        """Principal point (cx, cy) in pixels."""
        return self.camera.cx, self.camera.cy


def prepare(out: Path, data: Path) -> None:
    """Make `out` an empty folder marked partial: refuse DATA itself or inside it, a file, or a
    non-empty folder that is not an earlier (complete or interrupted) augment output."""
    out, data = out.resolve(), data.resolve()
    if out == data or data in out.parents:
        raise InputError(f"--out {out} is inside the dataset {data}; choose a folder outside it")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; augment needs a folder")
    if out.exists() and any(out.iterdir()):
        if not ((out / PARTIAL).exists() or (out / MARKER).exists()):
            raise InputError(f"--out {out} is not empty and holds no augmented dataset")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / PARTIAL).write_text("geoposenet augment: incomplete while this file exists\n")


def copy_dataset(data: Path, out: Path) -> None:
    """Every file of `data` into `out` (hard links, or copies across file systems), except an
    earlier augment marker (the new one lists every synthetic sequence)."""
    for folder, _, files in os.walk(data):
        target = out / Path(folder).relative_to(data)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            if Path(folder) == data and name in (MARKER, PARTIAL):
                continue
            try:
                os.link(Path(folder) / name, target / name)
            except OSError:
                shutil.copy2(Path(folder) / name, target / name)


def replace_text(path: Path, text: str) -> None:
    """Replace `path` (maybe a hard link to DATA's file) by a new file: DATA is never changed."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def append_lines(path: Path, lines: list[str]) -> None:
    """Replace the text file `path` by itself plus `lines` (see `replace_text`)."""
    text = path.read_text(encoding="utf-8")
    text += "" if text.endswith("\n") or not text else "\n"
    replace_text(path, text + "".join(line + "\n" for line in lines))


def sequence_names(fmt: str, count: int, existing: set[str]) -> list[str]:
    """Names of `count` new training sequences in format `fmt`, unused in `existing`."""
    names: list[str] = []
    k = FIRST_7SCENES_SEQUENCE if fmt == "7scenes" else 1
    while len(names) < count:
        name = f"seq-{k:02d}" if fmt == "7scenes" else f"synthetic-{k}"
        if name not in existing:
            names.append(name)
        k += 1
    return names


def frame_name(fmt: str, sequence: str, index: int, folder: str = "") -> str:
    """The frame name (as the reader names frames) of frame `index` (0-based) of `sequence`;
    `folder`: nerfstudio's first folder of the file paths (see `name_folder`)."""
    if fmt == "7scenes":
        return f"{sequence}/frame-{index:06d}.color.png"
    name = f"{sequence}/frame{index + 1:05d}.png"
    return f"{folder}/{name}" if folder else name


def name_folder(fmt: str, names: list[str]) -> str:
    """nerfstudio: the first folder of most of `names` (the training frames' file paths, e.g.
    'images'), '' when they have none; '' for the other formats."""
    firsts = [name.split("/")[0] for name in names if "/" in name]
    if fmt != "nerfstudio" or len(firsts) * 2 < len(names):
        return ""
    return max(sorted(set(firsts)), key=firsts.count)


def image_file(root: Path, fmt: str, name: str, images: str | None) -> Path:
    """The image file of the frame called `name` in the dataset at `root`, as the reader finds
    it: COLMAP names are relative to the image folder (`images` or the --images one);
    nerfstudio's --images folder replaces the name's first folder; others are below `root`."""
    if fmt == "colmap":
        return root / (images or "images") / name
    if fmt == "nerfstudio" and images is not None:
        parts = name.split("/")
        return root.joinpath(images, *(parts[1:] or parts))
    return root / name


def sequence_folders(root: Path, fmt: str, folder: str, images: str | None) -> set[str]:
    """Names of the folders where new sequence folders would go (none may be reused)."""
    parent = image_file(root, fmt, frame_name(fmt, "s", 0, folder), images).parent.parent
    try:
        return {path.name for path in parent.iterdir() if path.is_dir()}
    except OSError:
        return set()


@dataclass(frozen=True)
class Placement:
    """Where the synthesised frames of the dataset at `root` go: their names (see
    `frame_name`; `folder`: nerfstudio's first folder) and files (`images`: the --images
    folder, relative to `root`)."""

    root: Path
    fmt: str
    folder: str = ""
    images: str | None = None

    def name(self, sequence: str, index: int) -> str:
        """The name of frame `index` (0-based) of `sequence`."""
        return frame_name(self.fmt, sequence, index, self.folder)

    def file(self, name: str) -> Path:
        """The image file of the frame called `name`."""
        return image_file(self.root, self.fmt, name, self.images)


def write_frame(
    file: Path,
    fmt: str,
    image: np.ndarray,
    depth_m: np.ndarray | None,
    centre: np.ndarray,
    cam_from_world: np.ndarray,
) -> None:
    """Write one frame's files: the image `file`, and for 7-Scenes its pose and (if any) depth
    map beside it."""
    write_png(file, image)
    if fmt != "7scenes":
        return
    stem = file.name.removesuffix(".color.png")
    if depth_m is not None:
        depth_mm = np.where(np.isfinite(depth_m) & (depth_m > 0), np.round(depth_m * 1000), 0)
        write_png(file.with_name(f"{stem}.depth.png"),
                  np.minimum(depth_mm, 65534).astype(np.uint16))  # fmt: skip
    world_from_cam = np.eye(4)
    world_from_cam[:3, :3] = cam_from_world.T
    world_from_cam[:3, 3] = centre
    rows = ["\t".join(f"{v:.12e}" for v in row) for row in world_from_cam]
    file.with_name(f"{stem}.pose.txt").write_text("\n".join(rows) + "\n")


def finish(
    root: Path, fmt: str, frames: list[SynthFrame], metres_per_unit: float | None = None
) -> None:
    """Append the synthesised sequences to the training split (and the NVM or COLMAP model).
    `metres_per_unit`: the scale DATA was read with (COLMAP, nerfstudio): the poses are
    written back in DATA's own units."""
    sequences = sorted({f.sequence for f in frames})
    if fmt in ("colmap", "nerfstudio"):
        from geoposenet.viewsynth import reconstruction

        unscaled = [replace(f, centre=f.centre / (metres_per_unit or 1.0)) for f in frames]
        if fmt == "colmap":
            reconstruction.extend_colmap(root, unscaled)
        else:
            reconstruction.extend_nerfstudio(root, unscaled)
        return
    if fmt == "7scenes":
        append_lines(root / "TrainSplit.txt", [f"sequence{int(s[4:])}" for s in sequences])
        return
    append_lines(
        root / "dataset_train.txt",
        [f"{f.name} " + " ".join(f"{v:.12f}" for v in [*f.centre, *f.quaternion]) for f in frames],
    )
    if (root / "reconstruction.nvm").is_file():
        extend_nvm(root / "reconstruction.nvm", frames)


def extend_nvm(path: Path, frames: list[SynthFrame]) -> None:
    """Add `frames` as cameras of the first model of the NVM at `path`, and their observations
    (image index, feature index, x, y relative to the principal point) to its points."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [i for i, t in enumerate(lines) if t.strip() and not t.lstrip().startswith("#")]
    camera_row = rows[1]  # rows[0] is the NVM_V3 header
    cameras = int(lines[camera_row].split()[0])
    point_row = rows[2 + cameras]
    points = int(lines[point_row].split()[0])
    point_lines = rows[3 + cameras : 3 + cameras + points]
    observations: list[list[str]] = [[] for _ in range(points)]
    for k, frame in enumerate(frames):
        cam = cameras + k
        for feature, (pid, (u, v)) in enumerate(zip(frame.point_ids, frame.uv, strict=True)):
            cx, cy = frame.principal
            observations[pid].append(f"{cam} {feature} {u - cx:.4f} {v - cy:.4f}")
    for pid, row in enumerate(point_lines):
        if observations[pid]:
            tokens = lines[row].split()
            count = int(tokens[6]) + len(observations[pid])
            lines[row] = " ".join([*tokens[:6], str(count), *tokens[7:], *observations[pid]])
    new_cameras = [
        f"{f.name}\t{f.focal:.6f} "
        + " ".join(f"{v:.12f}" for v in [*f.quaternion, *f.centre])
        + " 0 0"
        for f in frames
    ]
    lines[camera_row] = str(cameras + len(frames))
    last_camera = rows[1 + cameras] if cameras else camera_row
    lines[last_camera + 1 : last_camera + 1] = new_cameras
    replace_text(path, "\n".join(lines) + "\n")
