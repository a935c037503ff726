"""Pose geometry on torch tensors, with any leading batch dimensions.

Conventions (see DESIGN.md):
- quaternions are (w, x, y, z); "canonical" means unit length and w >= 0 (the paper's hemisphere);
- a pose is the camera centre `c` (world frame, metres) and `q` = rotation world -> camera, so a
  world point g is at R(q) (g - c) in the camera frame; the cam_from_world translation is
  t = -R(q) c.

The numpy helpers at the end serve I/O code; they call the torch functions in float64.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def normalize_quaternion(q: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale (..., 4) quaternions to unit length; a zero vector stays (near) zero instead of NaN."""
    return q / q.norm(dim=-1, keepdim=True).clamp_min(eps)


def canonical_quaternion(q: Tensor) -> Tensor:
    """Unit quaternion in the w >= 0 hemisphere, (..., 4). When w == 0 exactly, the first non-zero
    component of (x, y, z) is made positive, so every rotation has exactly one value."""
    q = normalize_quaternion(q)
    sign = torch.ones_like(q[..., 0])
    for i in reversed(range(4)):  # the first non-zero component decides
        s = torch.sign(q[..., i])
        sign = torch.where(s != 0, s, sign)
    return q * sign.unsqueeze(-1)


def quaternion_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product a * b of (..., 4) quaternions: the rotation b first, then a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        dim=-1,
    )


def quaternion_conjugate(q: Tensor) -> Tensor:
    """(w, -x, -y, -z); the inverse for unit quaternions."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quaternion_inverse(q: Tensor) -> Tensor:
    """Inverse of a non-zero (..., 4) quaternion: conjugate / |q|^2."""
    return quaternion_conjugate(q) / (q * q).sum(dim=-1, keepdim=True)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """(..., 4) quaternion (normalised here) -> (..., 3, 3) rotation matrix. Differentiable."""
    w, x, y, z = normalize_quaternion(q).unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(matrix: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrix -> canonical (..., 4) quaternion.

    Computes all four candidate components from the diagonal and, per matrix, keeps the
    candidate built around the largest one (Shepperd's method): accurate at every angle.
    """
    m = matrix
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 * component^2 for w, x, y, z
    squares = torch.stack(
        (1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22),
        dim=-1,
    )
    # Row k: 4 * q_k * (w, x, y, z) computed without square roots, then divided by 4 * q_k.
    candidates = torch.stack(
        (
            torch.stack((squares[..., 0], m21 - m12, m02 - m20, m10 - m01), dim=-1),
            torch.stack((m21 - m12, squares[..., 1], m10 + m01, m02 + m20), dim=-1),
            torch.stack((m02 - m20, m10 + m01, squares[..., 2], m21 + m12), dim=-1),
            torch.stack((m10 - m01, m20 + m02, m21 + m12, squares[..., 3]), dim=-1),
        ),
        dim=-2,
    )
    best = squares.argmax(dim=-1, keepdim=True)
    chosen = torch.gather(candidates, -2, best.unsqueeze(-1).expand(*best.shape, 4)).squeeze(-2)
    return canonical_quaternion(chosen)


def rotate(q: Tensor, points: Tensor) -> Tensor:
    """Rotate (..., N, 3) points by (..., 4) quaternions."""
    return points @ quaternion_to_matrix(q).transpose(-1, -2)


def rotation_angle_deg(q1: Tensor, q2: Tensor) -> Tensor:
    """Angle in degrees of the relative rotation q1^-1 q2, for (..., 4) quaternions (normalised
    here). The same for q and -q. Uses atan2 of the vector and scalar parts, which keeps full
    precision near 0 and near 180 degrees (acos of a dot product does not)."""
    relative = quaternion_multiply(
        quaternion_conjugate(normalize_quaternion(q1)), normalize_quaternion(q2)
    )
    half = torch.atan2(relative[..., 1:].norm(dim=-1), relative[..., 0].abs())
    return torch.rad2deg(2 * half)


def translation_from_centre(q: Tensor, centre: Tensor) -> Tensor:
    """cam_from_world translation t = -R(q) c, for (..., 4) q and (..., 3) camera centres."""
    return -(quaternion_to_matrix(q) @ centre.unsqueeze(-1)).squeeze(-1)


def centre_from_translation(q: Tensor, translation: Tensor) -> Tensor:
    """Camera centre c = -R(q)^T t from a cam_from_world (q, t)."""
    return -(quaternion_to_matrix(q).transpose(-1, -2) @ translation.unsqueeze(-1)).squeeze(-1)


def world_to_camera(points: Tensor, centre: Tensor, q: Tensor) -> Tensor:
    """(..., N, 3) world points -> camera frame R(q) (g - c); centre (..., 3), q (..., 4)."""
    return rotate(q, points - centre.unsqueeze(-2))


def project(
    points: Tensor,
    centre: Tensor,
    q: Tensor,
    intrinsics: Tensor | None = None,
    min_depth: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Project (..., N, 3) world points through the pose (centre (..., 3), q (..., 4)).

    Returns image coordinates (..., N, 2) and the depth z (..., N) in the camera frame.
    Without `intrinsics` (K = identity) the coordinates are normalised: (x / z, y / z).
    With a (..., 3, 3) K they are pixels. Depths below `min_depth` are clamped to it before
    the division (use a positive value to keep points at or behind the camera finite).
    """
    cam = world_to_camera(points, centre, q)
    depth = cam[..., 2]
    safe_depth = depth.clamp_min(min_depth) if min_depth > 0 else depth
    uv = cam[..., :2] / safe_depth.unsqueeze(-1)
    if intrinsics is not None:
        homogeneous = torch.cat((uv, torch.ones_like(uv[..., :1])), dim=-1)
        uv = (homogeneous @ intrinsics.transpose(-1, -2))[..., :2]
    return uv, depth


def position_error(c1: Tensor, c2: Tensor) -> Tensor:
    """Euclidean distance between (..., 3) camera centres, in their units (metres)."""
    return (c1 - c2).norm(dim=-1)


# ---- numpy helpers for I/O code (float64) ----


def quaternion_to_matrix_np(q: np.ndarray) -> np.ndarray:
    """numpy (..., 4) wxyz quaternion -> (..., 3, 3) rotation matrix (float64)."""
    return quaternion_to_matrix(torch.as_tensor(np.asarray(q, dtype=np.float64))).numpy()


def matrix_to_quaternion_np(matrix: np.ndarray) -> np.ndarray:
    """numpy (..., 3, 3) rotation matrix -> canonical (..., 4) wxyz quaternion (float64)."""
    return matrix_to_quaternion(torch.as_tensor(np.asarray(matrix, dtype=np.float64))).numpy()


def canonical_quaternion_np(q: np.ndarray) -> np.ndarray:
    """numpy (..., 4) wxyz quaternion -> unit, w >= 0 (float64)."""
    return canonical_quaternion(torch.as_tensor(np.asarray(q, dtype=np.float64))).numpy()
