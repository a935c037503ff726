"""Vectorised ray casting of the room, one ray per pixel, in torch (CPU).

Camera model: pinhole, no distortion; camera frame x right, y down, z forward. Pixel (row i,
column j) has its centre at continuous image coordinates (u, v) = (j + 0.5, i + 0.5), the COLMAP
convention, so `geoposenet.geometry.project` with K = [[f, 0, cx], [0, f, cy], [0, 0, 1]] gives
u, v in the same coordinates and the pixel that contains a projection is (floor(v), floor(u)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from geoposenet.synthetic.room import ROOM, Faces, Room

EPS = 1e-9
LAMPS = torch.tensor([[2.5, 2.5], [5.5, 3.5]])  # x, y of the two ceiling light pools
LIGHT_DIRECTION = torch.tensor([0.35, 0.5, 0.79])  # towards the main light


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics: image size in pixels, focal length f (fx = fy) and principal point
    (cx, cy) in the continuous coordinates above (the image centre when not given)."""

    width: int
    height: int
    focal: float
    principal: tuple[float, float] | None = None

    @property
    def cx(self) -> float:
        return self.principal[0] if self.principal else self.width / 2

    @property
    def cy(self) -> float:
        return self.principal[1] if self.principal else self.height / 2

    def matrix(self) -> np.ndarray:
        """(3, 3) calibration matrix K (float64)."""
        return np.array([[self.focal, 0, self.cx], [0, self.focal, self.cy], [0, 0, 1.0]])

    def rays(self) -> torch.Tensor:
        """(H, W, 3) float32 camera-frame ray directions through pixel centres, with z = 1."""
        u = (torch.arange(self.width, dtype=torch.float64) + 0.5 - self.cx) / self.focal
        v = (torch.arange(self.height, dtype=torch.float64) + 0.5 - self.cy) / self.focal
        vv, uu = torch.meshgrid(v, u, indexing="ij")
        return torch.stack((uu, vv, torch.ones_like(uu)), dim=-1).float()


class Caster:
    """Casts the rays of one camera against the room (slab exit) and the exposed box faces."""

    def __init__(self, faces: Faces, camera: Camera) -> None:
        self.camera = camera
        rays = camera.rays()
        self.u, self.v = rays[..., 0].contiguous(), rays[..., 1].contiguous()
        self.room = torch.from_numpy(ROOM).float()
        ids = [i for i in range(6, len(faces.exposed)) if faces.exposed[i]]
        self.face_ids = ids
        self.axis = [int(np.flatnonzero(faces.normal[i])[0]) for i in ids]
        self.sign = [float(faces.normal[i][a]) for i, a in zip(ids, self.axis, strict=True)]
        self.lo = faces.lo[ids].astype(np.float64)
        self.hi = faces.hi[ids].astype(np.float64)

    def _window(self, k: int, centre: np.ndarray, rotation: np.ndarray) -> tuple[int, ...]:
        """Pixel rows/cols (y0, y1, x0, x1) that can see box face k (empty when out of view)."""
        lo, hi = self.lo[k], self.hi[k]
        corners = np.array(
            [
                [(hi if i & 1 else lo)[0], (hi if i & 2 else lo)[1], (hi if i & 4 else lo)[2]]
                for i in range(8)
            ]
        )
        cam = (corners - centre) @ rotation.T
        z = cam[:, 2]
        c = self.camera
        if (z <= 0.01).all():
            return (0, 0, 0, 0)
        if (z <= 0.01).any():
            return (0, c.height, 0, c.width)
        u = c.focal * cam[:, 0] / z + c.cx
        v = c.focal * cam[:, 1] / z + c.cy
        x0, x1 = (
            int(np.clip(x, 0, c.width)) for x in (np.floor(u.min()) - 1, np.ceil(u.max()) + 1)
        )
        y0, y1 = (
            int(np.clip(y, 0, c.height)) for y in (np.floor(v.min()) - 1, np.ceil(v.max()) + 1)
        )
        return (y0, y1, x0, x1)

    def cast(self, centre: np.ndarray, rotation: np.ndarray) -> tuple[torch.Tensor, ...]:
        """Cast through the pose (centre (3,) world metres, rotation (3, 3) world -> camera).

        Returns depth (H, W) float32 (camera z, metres), face ids (H, W) int64 and world hit
        points (H, W, 3) float32.
        """
        centre = np.asarray(centre, dtype=np.float64)
        rotation = np.asarray(rotation, dtype=np.float64)
        o = [float(x) for x in centre]
        # world direction d = R^T (u, v, 1), per component (elementwise: deterministic).
        d = [
            self.u * float(rotation[0, k]) + self.v * float(rotation[1, k]) + float(rotation[2, k])
            for k in range(3)
        ]
        d = [torch.where(x.abs() < EPS, torch.full_like(x, EPS), x) for x in d]
        inv = [1.0 / x for x in d]
        depth = torch.empty(0)
        face = torch.empty(0, dtype=torch.int64)
        for k in range(3):
            positive = d[k] > 0
            wall = torch.where(positive, self.room[1, k], self.room[0, k])
            t = (wall - o[k]) * inv[k]
            if k == 0:
                depth, face = t, positive.long()
            else:
                closer = t < depth
                depth = torch.where(closer, t, depth)
                face = torch.where(closer, 2 * k + positive.long(), face)
        for k, (fid, a, sign) in enumerate(zip(self.face_ids, self.axis, self.sign, strict=True)):
            plane = self.lo[k, a]
            if sign * (o[a] - plane) <= 0:
                continue  # back-facing
            y0, y1, x0, x1 = self._window(k, centre, rotation)
            if y1 <= y0 or x1 <= x0:
                continue
            window = depth[y0:y1, x0:x1]
            t = (plane - o[a]) * inv[a][y0:y1, x0:x1]
            hit = (t > 0) & (t < window)
            for b in range(3):
                if b != a:
                    x = o[b] + t * d[b][y0:y1, x0:x1]
                    hit &= (x >= self.lo[k, b]) & (x <= self.hi[k, b])
            depth[y0:y1, x0:x1] = torch.where(hit, t, window)
            face[y0:y1, x0:x1] = torch.where(hit, fid, face[y0:y1, x0:x1])
        points = torch.stack([o[k] + depth * d[k] for k in range(3)], dim=-1)
        return depth, face, points


def shading(room: Room, face: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """View-independent light (P,) at surface points (P, 3) on faces (P,): ambient plus a
    directional term from the face normal, and two soft pools of light from ceiling lamps."""
    normal = torch.from_numpy(room.faces.normal).float()
    direct = (normal @ (LIGHT_DIRECTION / LIGHT_DIRECTION.norm())).abs()
    light = (0.45 + 0.3 * direct).index_select(0, face)
    x, y = points[:, 0], points[:, 1]
    for lx, ly in LAMPS.tolist():
        dist2 = (x - lx).square_() + (y - ly).square_()
        light += 0.3 * torch.exp_(dist2.mul_(-1 / (2 * 2.2**2)))
    return light


def render_colour(room: Room, face: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Noise-free linear colour (H, W, 3) in [0, 1.5] of a cast: albedo times shading."""
    shape = face.shape
    flat_face = face.reshape(-1)
    flat_points = points.reshape(-1, 3)
    colour = room.albedo(flat_face, flat_points) * shading(room, flat_face, flat_points)[:, None]
    return colour.reshape(*shape, 3)


def expose(colour: torch.Tensor, gain: np.ndarray, noise_sigma: float, seed: int) -> np.ndarray:
    """Apply a sequence's lighting (gain (3,) per channel: brightness times tint), sensor noise
    (Gaussian, std `noise_sigma`, from a torch generator seeded with `seed`) and 8-bit
    quantisation: (H, W, 3) uint8."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(colour.shape, generator=generator).mul_(noise_sigma)
    image = noise.addcmul_(colour, torch.from_numpy(gain.astype(np.float32)))
    return image.clamp_(0, 1).mul_(255).round_().to(torch.uint8).numpy()
