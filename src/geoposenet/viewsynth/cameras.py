"""The cameras of a scene's images: colour intrinsics, and 7-Scenes depth maps and their camera.

Colour intrinsics come from, in order: the frame (COLMAP, nerfstudio); the built-in room's
`synth.json` (any format); a Cambridge scene's `reconstruction.nvm` focal length (principal point
at the image centre, as VisualSFM assumes); for 7-Scenes, the Kinect colour camera commonly used
with that dataset (f = 525 px, principal point at the centre of 640 x 480, scaled to the image's
size). A scene that gives none of these cannot be rendered: `CameraUnknown` says so.

7-Scenes depth maps are in the depth camera (f = 585, pixel (row i, col j) back-projects at
u = j - 320, the reader's convention) and share the frame's pose, as `readers.sevenscenes` reads
them: so do we, and points seen in depth are coloured by projecting them into the colour camera.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from geoposenet.errors import DatasetError
from geoposenet.scene import Frame, Intrinsics, Scene

SEVENSCENES_DEPTH = Intrinsics(640, 480, 585.0, 585.0, 320.5, 240.5)
KINECT_COLOUR = Intrinsics(640, 480, 525.0, 525.0, 320.0, 240.0)
DEPTH_INVALID_MM = (0, 65535)


class CameraUnknown(DatasetError):
    """The scene states no intrinsics for its images."""


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, from its header."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError) as error:
        raise DatasetError(path, f"cannot read the image size ({error})") from None


def scaled(camera: Intrinsics, width: int, height: int) -> Intrinsics:
    """`camera` for the same field of view at another image size."""
    sx, sy = width / camera.width, height / camera.height
    return Intrinsics(width, height, camera.fx * sx, camera.fy * sy, camera.cx * sx, camera.cy * sy)


def synth_camera(root: Path) -> Intrinsics | None:
    """The built-in room's colour camera, from ROOT/synth.json (None for other scenes)."""
    marker = root / "synth.json"
    if not marker.is_file():
        return None
    cam = json.loads(marker.read_text())["camera"]
    w, h, f = int(cam["width"]), int(cam["height"]), float(cam["focal"])
    return Intrinsics(w, h, f, f, w / 2, h / 2)


def nvm_focals(root: Path) -> dict[str, float]:
    """Cambridge: focal length (px) per image stem ('seq1/frame00001') from reconstruction.nvm."""
    from geoposenet.readers._common import Problems
    from geoposenet.readers._nvm import read_nvm
    from geoposenet.readers.cambridge import NVM_FILE, _stem_key

    path = root / NVM_FILE
    if not path.is_file():
        return {}
    model = read_nvm(path, Problems(strict=False))
    return {} if model is None else {_stem_key(c.name): c.focal for c in model.cameras}


class SceneCameras:
    """Colour intrinsics of each frame of `scene` (see the module docstring for the order)."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.room = synth_camera(scene.root)
        self.focals = nvm_focals(scene.root) if scene.format == "cambridge" else {}

    def colour(self, frame: Frame) -> Intrinsics:
        """The intrinsics of `frame`'s image."""
        if frame.intrinsics is not None:
            return frame.intrinsics
        if self.room is not None:
            return self.room
        width, height = image_size(frame.image)
        if self.scene.format == "7scenes":
            return scaled(KINECT_COLOUR, width, height)
        stem = frame.name.rsplit(".", 1)[0]
        if stem in self.focals:
            f = self.focals[stem]
            return Intrinsics(width, height, f, f, width / 2, height / 2)
        raise CameraUnknown(
            frame.image,
            "no intrinsics for this image (the format states none and no "
            "reconstruction.nvm names it): it cannot be rendered",
        )


def depth_path(frame: Frame) -> Path | None:
    """A 7-Scenes frame's depth map file, when it exists."""
    name = frame.image.name
    for suffix in (".color.png", ".color.jpg"):
        if name.endswith(suffix):
            path = frame.image.with_name(name.removesuffix(suffix) + ".depth.png")
            return path if path.is_file() else None
    return None


def read_depth_m(path: Path) -> np.ndarray:
    """A 7-Scenes depth PNG -> (480, 640) float32 metres, 0 where invalid (0 or 65535 mm)."""
    from geoposenet.readers._common import Problems
    from geoposenet.readers.sevenscenes import decode_depth

    depth = decode_depth(path, Problems(strict=True))
    assert depth is not None  # strict: a bad file raised
    metres = depth.astype(np.float32) / 1000.0
    metres[np.isin(depth, DEPTH_INVALID_MM)] = 0.0
    return metres


def world_from_cam(centre: np.ndarray, cam_from_world: np.ndarray) -> np.ndarray:
    """(4, 4) camera -> world transform of a pose."""
    out = np.eye(4)
    out[:3, :3] = cam_from_world.T
    out[:3, 3] = centre
    return out
