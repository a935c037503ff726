"""Rotations about a training camera's centre, rendered exactly by a homography (any scene).

A view with the source frame's centre and another orientation sees the same rays, so its pixel
x_view comes from the source pixel x_src ~ K_src R_src R_view^T K_view^-1 x_view (R: world ->
camera rotations, pixels in continuous coordinates with centres at +0.5), sampled bilinearly.
Pixels whose ray leaves the source image are not covered (`valid` False) and hold the colour of
the nearest source border pixel. Depth (7-Scenes) is warped the same way, nearest-neighbour, and
converted to the view's camera z: z_view = z_src / (R_src R_view^T K_view^-1 x_view)_z.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

from geoposenet.geometry import quaternion_to_matrix_np
from geoposenet.images import decode_image
from geoposenet.scene import Frame, Intrinsics
from geoposenet.viewsynth.cameras import SEVENSCENES_DEPTH, SceneCameras, depth_path, read_depth_m
from geoposenet.viewsynth.views import Rendered, View

CENTRE_TOLERANCE_M = 1e-6
CACHED_SOURCES = 16


def source_rays(view_camera: Intrinsics, src_from_view: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float64 rays of the view's pixel centres in the source camera frame."""
    u = torch.arange(view_camera.width, dtype=torch.float64) + 0.5
    v = torch.arange(view_camera.height, dtype=torch.float64) + 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    pixels = torch.stack((uu, vv, torch.ones_like(uu)), dim=-1)
    k_inv = torch.from_numpy(np.linalg.inv(view_camera.matrix()))
    return pixels @ (torch.from_numpy(src_from_view) @ k_inv).T


def sample(
    source: torch.Tensor, source_camera: Intrinsics, rays: torch.Tensor, mode: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample a (C, h, w) float image at the source-frame `rays` (H, W, 3): the (C, H, W)
    samples (border pixels repeated outside) and the (H, W) mask of rays inside the image."""
    ahead = rays[..., 2] > 1e-9
    z = torch.where(ahead, rays[..., 2], torch.ones_like(rays[..., 2]))
    u = source_camera.fx * rays[..., 0] / z + source_camera.cx
    v = source_camera.fy * rays[..., 1] / z + source_camera.cy
    inside = ahead & (u >= 0) & (u <= source_camera.width) & (v >= 0)
    inside &= v <= source_camera.height
    grid = torch.stack((2 * u / source_camera.width - 1, 2 * v / source_camera.height - 1), -1)
    grid = torch.where(ahead[..., None], grid, torch.zeros_like(grid))
    out = F.grid_sample(
        source[None], grid[None].float(), mode=mode, padding_mode="border", align_corners=False
    )
    return out[0], inside


class RotationRenderer:
    """Homography views of `train_frames` (the frames the views' `source` indices refer to)."""

    name = "rotation"

    def __init__(self, train_frames: list[Frame], cameras: SceneCameras) -> None:
        self.frames = train_frames
        self.cameras = cameras
        self.images: OrderedDict[int, torch.Tensor] = OrderedDict()

    def _image(self, index: int) -> torch.Tensor:
        """(3, h, w) float32 source image, 0-255 (a few recent ones cached)."""
        if index not in self.images:
            self.images[index] = decode_image(self.frames[index].image).float()
            if len(self.images) > CACHED_SOURCES:
                self.images.popitem(last=False)
        self.images.move_to_end(index)
        return self.images[index]

    def _src_from_view(self, view: View) -> np.ndarray:
        frame = self.frames[view.source]
        if np.abs(view.centre - frame.centre).max() > CENTRE_TOLERANCE_M:
            raise ValueError(
                f"the rotation renderer renders rotations about a training camera's centre; the "
                f"view is {np.linalg.norm(view.centre - frame.centre):.3f} m from {frame.name}'s"
            )
        return quaternion_to_matrix_np(frame.quaternion) @ view.cam_from_world.T

    def render(self, view: View, camera: Intrinsics) -> Rendered:
        """The source image turned to `view`'s orientation, seen through `camera`."""
        rays = source_rays(camera, self._src_from_view(view))
        frame = self.frames[view.source]
        colour, inside = sample(
            self._image(view.source), self.cameras.colour(frame), rays, "bilinear"
        )
        image = colour.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        return Rendered(image, inside.numpy(), None)

    def render_depth(self, view: View, camera: Intrinsics) -> Rendered | None:
        """The source's 7-Scenes depth map turned to `view` (camera z, metres; 0: unknown);
        None when the source frame has no depth map."""
        path = depth_path(self.frames[view.source])
        if path is None:
            return None
        rays = source_rays(camera, self._src_from_view(view))
        depth_src = torch.from_numpy(read_depth_m(path))[None]
        z_src, inside = sample(depth_src, SEVENSCENES_DEPTH, rays, "nearest")
        z = torch.where(inside, z_src[0] / rays[..., 2].clamp_min(1e-9), torch.zeros(()))
        valid = (inside & (z_src[0] > 0)).numpy()
        return Rendered(np.zeros((0, 0, 3), np.uint8), valid, z.float().numpy())
