"""Handheld-camera trajectories through the room's free space.

A path is a Catmull-Rom spline through random waypoints that keep clear of the walls and
furniture, resampled at a varying walking speed. The camera looks roughly along the walk (yaw =
heading plus smooth noise), with smooth pitch (within 20 degrees), small roll and a height of
1.2-1.8 m. Poses are returned as camera centres (N, 3) and world -> camera rotations (N, 3, 3).
"""

from __future__ import annotations

import numpy as np

from geoposenet.synthetic.room import ROOM

WALL_MARGIN = 0.55  # metres kept clear of walls
BOX_MARGIN = 0.45  # metres kept clear of furniture footprints


def _clear(xy: np.ndarray, boxes: np.ndarray, slack: float = 0.0) -> np.ndarray:
    """(N,) True where the (N, 2) floor positions keep the margins (reduced by `slack`)."""
    wall = WALL_MARGIN - slack
    ok = (xy[:, 0] > ROOM[0, 0] + wall) & (xy[:, 0] < ROOM[1, 0] - wall)
    ok &= (xy[:, 1] > ROOM[0, 1] + wall) & (xy[:, 1] < ROOM[1, 1] - wall)
    for lo, hi in boxes[:, :, :2]:
        gap = np.maximum(np.maximum(lo - xy, xy - hi), 0.0)
        ok &= np.hypot(gap[:, 0], gap[:, 1]) > BOX_MARGIN - slack
    return ok


def _segment_clear(a: np.ndarray, b: np.ndarray, boxes: np.ndarray) -> bool:
    """True when the straight floor segment a -> b keeps the margins (checked every 5 cm)."""
    steps = max(int(np.linalg.norm(b - a) / 0.05), 1)
    s = np.linspace(0, 1, steps + 1)[:, None]
    return bool(_clear(a + s * (b - a), boxes).all())


def _waypoints(rng: np.random.Generator, boxes: np.ndarray, length: float) -> np.ndarray:
    """Random waypoints (K, 2), 1.2-3 m apart with connecting segments clear of obstacles,
    turning by at most ~110 degrees, until the polyline is `length` metres long."""
    while True:
        start = rng.uniform(ROOM[0, :2], ROOM[1, :2])
        if _clear(start[None], boxes)[0]:
            break
    points = [start]
    heading = rng.uniform(-np.pi, np.pi)
    total = 0.0
    while total < length:
        for attempt in range(200):
            spread = 1.9 if attempt < 100 else np.pi
            turn = heading + rng.uniform(-spread, spread)
            step = rng.uniform(1.2, 3.0)
            nxt = points[-1] + step * np.array([np.cos(turn), np.sin(turn)])
            if _segment_clear(points[-1], nxt, boxes):
                break
        else:
            raise RuntimeError("trajectory generation is stuck")
        heading = turn
        points.append(nxt)
        total += step
    return np.array(points)


def _catmull_rom(points: np.ndarray, per_segment: int = 60) -> np.ndarray:
    """Dense samples (M, D) of the centripetal-free (uniform) Catmull-Rom spline through points."""
    padded = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    out = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1 : i + 3]
        out.append(
            0.5
            * (
                2 * p1
                + (p2 - p0) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (3 * p1 - p0 - 3 * p2 + p3) * t**3
            )
        )
    out.append(points[-1:])
    return np.vstack(out)


def smooth_noise(rng: np.random.Generator, n: int, width: float) -> np.ndarray:
    """(n,) zero-mean, unit-std noise smoothed by a Gaussian of `width` samples."""
    pad = int(3 * width) + 1
    raw = rng.standard_normal(n + 2 * pad)
    kernel = np.exp(-0.5 * (np.arange(-pad, pad + 1) / width) ** 2)
    smooth = np.convolve(raw, kernel / kernel.sum(), mode="same")[pad : pad + n]
    return (smooth - smooth.mean()) / (smooth.std() + 1e-12)


def look_rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """World -> camera rotations (N, 3, 3) for a camera (x right, y down, z forward) looking
    along heading `yaw` (radians, from +x towards +y), tilted up by `pitch`, rolled by `roll`."""
    forward = np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], 1)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    down = np.cross(forward, right)
    c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
    right, down = c * right + s * down, c * down - s * right
    return np.stack([right, down, forward], axis=1)


def walk(
    rng: np.random.Generator, boxes: np.ndarray, frames: int, length: float
) -> tuple[np.ndarray, np.ndarray]:
    """A handheld sequence of `frames` poses along a ~`length` m walk: centres (N, 3) and world ->
    camera rotations (N, 3, 3)."""
    for _ in range(100):
        dense = _catmull_rom(_waypoints(rng, boxes, length))
        if _clear(dense, boxes, slack=0.15).all():
            break
    else:
        raise RuntimeError("could not find a clear trajectory")
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    speed = np.exp(0.35 * smooth_noise(rng, frames, frames / 12))
    s = np.concatenate([[0.0], np.cumsum(speed[:-1])])
    s *= arc[-1] / s[-1]
    xy = np.stack([np.interp(s, arc, dense[:, k]) for k in range(2)], axis=1)
    ahead = np.stack(
        [np.interp(np.minimum(s + 0.3, arc[-1]), arc, dense[:, k]) for k in range(2)], 1
    )
    behind = np.stack([np.interp(np.maximum(s - 0.3, 0), arc, dense[:, k]) for k in range(2)], 1)
    step = ahead - behind
    heading = np.unwrap(np.arctan2(step[:, 1], step[:, 0]))
    yaw = heading + np.radians(28) * smooth_noise(rng, frames, frames / 20)
    pitch = np.clip(
        np.radians(-4 + 8 * smooth_noise(rng, frames, frames / 25)), *np.radians([-20, 20])
    )
    roll = np.radians(3) * smooth_noise(rng, frames, frames / 15)
    height = np.clip(1.5 + 0.13 * smooth_noise(rng, frames, frames / 10), 1.2, 1.8)
    return np.column_stack([xy, height]), look_rotation(yaw, pitch, roll)
