"""What every renderer takes and returns, and the cameras of a scene's images.

Camera frame: x right, y down, z forward (OpenCV). Pixel (row i, column j) has its centre at
continuous image coordinates (u, v) = (j + 0.5, i + 0.5) (COLMAP's convention); `Intrinsics.cx`,
`cy` are in those coordinates. Poses: `centre` (3,) world frame, `cam_from_world` (3, 3) the
rotation world -> camera, as in `geoposenet.scene`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from geoposenet.scene import Intrinsics


@dataclass(frozen=True)
class View:
    """A camera pose to render, and `source`: the index (into the training frames the sampler
    was given) of the training frame it was derived from (its nearest, or the one rotated)."""

    centre: np.ndarray
    cam_from_world: np.ndarray
    source: int


@dataclass
class Rendered:
    """A rendered image (H, W, 3) uint8 RGB and `valid` (H, W) bool: the pixels that had a
    source (after filling small holes). Pixels outside `valid` hold a filler colour (from
    their neighbours), never left black. `depth` (H, W) float32 camera z in metres where
    known, 0 elsewhere (None when the renderer has no depth)."""

    image: np.ndarray
    valid: np.ndarray
    depth: np.ndarray | None = None

    @property
    def coverage(self) -> float:
        """Fraction of pixels with a source."""
        return float(self.valid.mean())


class Renderer(Protocol):
    """Renders a view of one scene with a camera's intrinsics."""

    name: str

    def render(self, view: View, camera: Intrinsics) -> Rendered:
        """The colour image of `view` seen through `camera` (depth where the renderer knows)."""
        ...

    def render_depth(self, view: View, camera: Intrinsics) -> Rendered | None:
        """Only the depth of `view` through `camera` (e.g. the 7-Scenes depth camera); image
        may be empty. None when the renderer cannot give depth."""
        ...
