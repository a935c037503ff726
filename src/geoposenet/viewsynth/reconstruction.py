"""Synthesised frames added to a COLMAP model or a nerfstudio transforms.json (augment's output).

The frames' poses are in the file's own units (`output.finish` divides a scale back out) and
world frame. Every file changed is replaced by a new one (DATA's hard-linked files stay as they
are).

- COLMAP: the model is read with pycolmap, each frame added as a registered image (a trivial
  rig frame) with cam_from_world = (R, -R c). Its camera is its source image's when that one is
  a pure pinhole (SIMPLE_PINHOLE, PINHOLE) with the intrinsics the view was rendered with and a
  trivial rig; else a new PINHOLE camera with those intrinsics (one per distinct intrinsics:
  the renderers draw pinhole images, distortion dropped as the reader drops it). Its keypoints
  are the pixel coordinates of the 3D points visible in the view, whose tracks are extended
  with them. The model is written back in the formats DATA had (binary, text or both); its
  image names are appended to train.txt when the reader's split lists have one.
- nerfstudio: each frame becomes an entry of `frames` (file_path, transform_matrix: camera to
  world in the OpenGL convention) with its source frame's own intrinsics keys when that frame
  had any (else the top-level ones apply, as to the source); its file path is appended to
  train_filenames when the file has that key.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from geoposenet.geometry import quaternion_to_matrix_np
from geoposenet.readers._common import Problems, relative_image_name
from geoposenet.scene import Intrinsics
from geoposenet.synthetic.writers import OPENGL_FROM_OPENCV
from geoposenet.viewsynth.output import SynthFrame, append_lines, replace_text

PURE_PINHOLE = ("SIMPLE_PINHOLE", "PINHOLE")
NERFSTUDIO_CAMERA_KEYS = (
    "camera_model", "fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "k3", "k4", "p1", "p2",
)  # fmt: skip
MODEL_TMP = ".augment-model"


def extend_colmap(root: Path, frames: list[SynthFrame]) -> None:
    """Add `frames` (poses in the model's units) to the COLMAP model of the dataset at `root`
    (see the module docstring)."""
    import pycolmap

    from geoposenet.readers.colmap import find_model

    model = find_model(root)
    if model is None:
        raise RuntimeError(f"no COLMAP model in {root}")  # augment read one: cannot happen
    recon = pycolmap.Reconstruction(str(model))
    point3d_ids = sorted(recon.points3D)  # the reader's point order
    cameras: dict[Intrinsics, int] = {}
    image_id = max([*recon.images, *recon.frames], default=0) + 1
    for frame in frames:
        rotation = quaternion_to_matrix_np(frame.quaternion)
        w, x, y, z = frame.quaternion
        cam_from_world = pycolmap.Rigid3d(
            pycolmap.Rotation3d(np.array([x, y, z, w])), -rotation @ frame.centre
        )  # Eigen order xyzw
        image = pycolmap.Image(
            name=frame.name,
            keypoints=np.asarray(frame.uv, np.float64).reshape(-1, 2),
            camera_id=_camera_id(recon, frame, cameras),
            image_id=image_id,
        )
        recon.add_image_with_trivial_frame(image, cam_from_world)
        for feature, point in enumerate(frame.point_ids):
            recon.add_observation(point3d_ids[int(point)], pycolmap.TrackElement(image_id, feature))
        image_id += 1
    _write_model(recon, model, root / MODEL_TMP)
    lists = None  # the reader's split lists: beside the model, else in the dataset folder
    for folder in (model, root):
        if (folder / "train.txt").is_file() or (folder / "test.txt").is_file():
            lists = folder
            break
    if lists is not None and (lists / "train.txt").is_file():
        append_lines(lists / "train.txt", [frame.name for frame in frames])


def _camera_id(recon: Any, frame: SynthFrame, cameras: dict[Intrinsics, int]) -> int:
    """The camera of a synthesised image: its source image's, or a new PINHOLE one."""
    import pycolmap

    source = recon.find_image_with_name(frame.source)
    if source is not None and _same_pinhole(recon, source.camera_id, frame.camera):
        return int(source.camera_id)
    if frame.camera not in cameras:
        camera_id = max([*recon.cameras, *recon.rigs], default=0) + 1
        c = frame.camera
        recon.add_camera_with_trivial_rig(
            pycolmap.Camera(
                model="PINHOLE", width=c.width, height=c.height,
                params=[c.fx, c.fy, c.cx, c.cy], camera_id=camera_id,
            )
        )  # fmt: skip
        cameras[frame.camera] = camera_id
    return cameras[frame.camera]


def _same_pinhole(recon: Any, camera_id: int, wanted: Intrinsics) -> bool:
    """Whether camera `camera_id` is a pure pinhole with the intrinsics `wanted` and the only
    sensor of the rig of its id (what add_image_with_trivial_frame needs)."""
    camera = recon.camera(camera_id)
    if camera.model_name not in PURE_PINHOLE or not recon.exists_rig(camera_id):
        return False
    rig = recon.rig(camera_id)
    if rig.num_sensors() != 1 or rig.ref_sensor_id.id != camera_id:
        return False
    k = np.asarray(camera.calibration_matrix(), np.float64)
    size = (int(camera.width), int(camera.height)) == (wanted.width, wanted.height)
    return size and np.allclose(k, wanted.matrix(), rtol=1e-12, atol=1e-9)


def _write_model(recon: Any, model: Path, tmp: Path) -> None:
    """Write `recon` over the model files in `model`, in each format found there (binary,
    text), through `tmp`: each file is replaced, never written through a hard link."""
    kinds = [ext for ext in ("bin", "txt") if (model / f"images.{ext}").is_file()] or ["bin"]
    for ext in kinds:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (recon.write_binary if ext == "bin" else recon.write_text)(str(tmp))
        for written in sorted(tmp.iterdir()):
            os.replace(written, model / written.name)
    shutil.rmtree(tmp, ignore_errors=True)


def extend_nerfstudio(root: Path, frames: list[SynthFrame]) -> None:
    """Add `frames` (poses in the file's units) to ROOT/transforms.json (see the module
    docstring)."""
    path = root / "transforms.json"
    content = json.loads(path.read_text(encoding="utf-8"))
    items: list[Any] = content["frames"]
    by_name: dict[str, dict[str, Any]] = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("file_path"), str):
            name = relative_image_name(item["file_path"], path, None, Problems(strict=False))
            by_name.setdefault(name or "", item)
    for frame in frames:
        world_from_camera = np.eye(4)
        world_from_camera[:3, :3] = quaternion_to_matrix_np(frame.quaternion).T @ OPENGL_FROM_OPENCV
        world_from_camera[:3, 3] = frame.centre
        entry: dict[str, Any] = {
            "file_path": frame.name, "transform_matrix": world_from_camera.tolist(),
        }  # fmt: skip
        source = by_name.get(frame.source, {})
        entry |= {key: source[key] for key in NERFSTUDIO_CAMERA_KEYS if key in source}
        items.append(entry)
    if isinstance(content.get("train_filenames"), list):
        content["train_filenames"] += [frame.name for frame in frames]
    replace_text(path, json.dumps(content, indent=2) + "\n")
