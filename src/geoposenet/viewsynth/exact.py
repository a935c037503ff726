"""The built-in room's own renderer: its exact ray caster at any pose (the upper bound of what
view synthesis can give: no holes, no blur, the room's true light and sensor noise).

A view gets the lighting of its source frame's sequence. At a training frame's own pose (within
1e-6 m and 1e-6 of a rotation matrix entry) it renders from the room's original float64 pose and
that frame's noise seed, so the training image comes back bit for bit; other views get a noise
seed drawn from their pose.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from geoposenet.errors import DatasetError
from geoposenet.geometry import quaternion_to_matrix_np
from geoposenet.scene import Frame, Intrinsics
from geoposenet.synthetic.core import PRESETS, noise_seed, sequence_gain, sequence_poses
from geoposenet.synthetic.render import Camera, Caster, expose, render_colour
from geoposenet.synthetic.room import build_room
from geoposenet.synthetic.writers import FrameRecord, image_name
from geoposenet.threads import one_torch_thread
from geoposenet.viewsynth.views import Rendered, View

POSE_MATCH = 1e-6


def room_marker(root: Path) -> dict | None:
    """The room's synth.json in `root`, or None when `root` is not the built-in room."""
    path = root / "synth.json"
    return json.loads(path.read_text()) if path.is_file() else None


def as_camera(camera: Intrinsics) -> Camera:
    """The ray caster's camera for pinhole intrinsics with fx == fy."""
    if abs(camera.fx - camera.fy) > 1e-9 * camera.fx:
        raise ValueError(f"the room's caster needs fx == fy, got {camera.fx}, {camera.fy}")
    return Camera(camera.width, camera.height, camera.fx, principal=(camera.cx, camera.cy))


class ExactRenderer:
    """Renders the room of `root` (a `geoposenet synth` output, any format) for views derived
    from `train_frames` (the frames the views' `source` indices refer to). `metres_per_unit`:
    the scale the scene was read with (COLMAP, nerfstudio --scale): views and depths are in
    the scaled units, the room in its own."""

    name = "exact"

    def __init__(self, root: Path, train_frames: list[Frame], metres_per_unit: float = 1.0) -> None:
        self.scale = metres_per_unit
        marker = room_marker(root)
        if marker is None:
            raise DatasetError(root, "the exact renderer needs the built-in room (no synth.json)")
        self.preset = PRESETS[marker["preset"]]
        self.seed = int(marker["seed"])
        self.format = str(marker["format"])
        self.room = build_room(self.seed, self.preset.texel)
        self.casters: dict[Intrinsics, Caster] = {}
        originals: dict[str, tuple[int, int, np.ndarray, np.ndarray]] = {}
        for number, (split, centres, rotations) in enumerate(
            sequence_poses(self.preset, self.room, self.seed), start=1
        ):
            for index in range(len(centres)):
                record = FrameRecord(
                    number, index, split, centres[index], rotations[index], np.zeros(4)
                )
                name = image_name(self.format, record).removeprefix("images/")
                originals[name] = (number, index, centres[index], rotations[index])
        self.sources = []
        for frame in train_frames:
            key = frame.name.removeprefix("images/")
            if key not in originals:
                raise DatasetError(frame.image, "not a frame of the built-in room's sequences")
            self.sources.append(originals[key])

    def _caster(self, camera: Intrinsics) -> Caster:
        if camera not in self.casters:
            self.casters[camera] = Caster(self.room.faces, as_camera(camera))
        return self.casters[camera]

    def _pose(self, view: View) -> tuple[np.ndarray, np.ndarray, int | None]:
        """The pose to cast through, and the source frame's noise seed when the view is at it."""
        number, index, centre, rotation = self.sources[view.source]
        own = view.centre / self.scale  # the room's units
        same = np.abs(own - centre).max() <= POSE_MATCH and (
            np.abs(view.cam_from_world - rotation).max() <= POSE_MATCH
        )
        if same:
            return centre, rotation, noise_seed(self.seed, number, index)
        return own, view.cam_from_world, None

    def render(self, view: View, camera: Intrinsics) -> Rendered:
        """The room seen from `view` through `camera`: every pixel valid, exact depth."""
        number = self.sources[view.source][0]
        centre, rotation, seed = self._pose(view)
        if seed is None:
            pose_bytes = np.concatenate([centre, rotation.ravel()]).astype(np.float64).tobytes()
            seed = zlib.crc32(pose_bytes) + (number << 32)
        with one_torch_thread():
            depth, face, hits = self._caster(camera).cast(centre, rotation)
            colour = render_colour(self.room, face, hits)
            image = expose(colour, sequence_gain(self.seed, number), self.preset.noise, seed)
        valid = np.ones(image.shape[:2], dtype=bool)
        return Rendered(image, valid, depth.numpy() * np.float32(self.scale))

    def render_depth(self, view: View, camera: Intrinsics) -> Rendered:
        """Exact depth of `view` through `camera` (image empty)."""
        centre, rotation, _ = self._pose(view)
        with one_torch_thread():
            depth = self._caster(camera).cast(centre, rotation)[0].numpy() * np.float32(self.scale)
        return Rendered(np.zeros((0, 0, 3), np.uint8), np.ones(depth.shape, bool), depth)


def frame_view(frame: Frame, source: int) -> View:
    """The view at a frame's own pose."""
    return View(frame.centre, quaternion_to_matrix_np(frame.quaternion), source)
