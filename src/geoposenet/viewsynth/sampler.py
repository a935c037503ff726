"""Where to put new cameras: poses near the training poses, in the scene's free space.

Two kinds of view, drawn by rejection sampling against a `FreeSpace`:

- jitter: a random training pose moved by at most `Limits.max_shift_m` (uniform in the ball) and
  turned by at most `Limits.max_angle_deg`, the turn composed on the camera side
  (cam_from_world_new = D @ cam_from_world_train, D in the training camera's frame);
- between: a training pose and a partner from another sequence (within `max_gap_m` and
  `max_gap_deg`), interpolated at t ~ U(0, 1) (centre linearly, rotation by slerp), then jittered
  by `between_jitter` times the jitter limits.

Roll: D is a swing (about an axis in the camera's x-y plane: it moves the optical axis, yaw and
pitch) followed by a twist about the new optical axis (roll). The twist is `max_roll_deg` at most,
so a jittered camera is rolled about its own optical axis by at most that, relative to the camera
swung minimally from its origin. This is measured against the training camera, not the world's
up (which a dataset's frame does not give): the data's cameras are held upright, and so stay
nearly upright.

Poses as in `geoposenet.scene`: centre (3,) world frame, metres; cam_from_world (3, 3) rotation
world -> camera; quaternions wxyz. A view's `source` is the training frame nearest to it by
metres + degrees / 25 (as `synthetic.core.difficulty`); for rotation-only views the frame turned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from scipy.spatial import cKDTree

from geoposenet.baselines import ANGLE_PER_METRE
from geoposenet.geometry import quaternion_to_matrix_np
from geoposenet.scene import Frame
from geoposenet.viewsynth.limits import Limits
from geoposenet.viewsynth.views import View

ATTEMPTS_PER_VIEW = 50  # candidates drawn per wanted view before giving up
SALT = 7302  # keeps the sampler's random streams apart from other users of the same seed

# FreeSpace.check codes
FREE, OUTSIDE, TOO_CLOSE, BLOCKED = 0, 1, 2, 3
NO_PARTNER = 4  # a between-view origin with no partner (not a FreeSpace code)


class FreeSpace:
    """Where a camera may stand: near the training cameras and clear of the scene's 3D points.

    A centre x with source camera centre s is free when
    (a) x lies in the axis-aligned box of the training centres grown by `limits.max_shift_m`,
        cut to the box of the 3D points (never outside the scene's extent);
    (b) every 3D point is at least `limits.clearance_m` = c from x (exact: a k-d tree query);
    (c) the samples of the segment s -> x, at most `step_m` = h apart and including both ends,
        all keep clearance c: every point of the segment is at least c - h/2 from every 3D point.

    What follows for the surfaces themselves depends on how densely the points cover them. If
    every surface point is within r of a 3D point (r: the covering radius; a square grid of
    spacing s has r = s / sqrt(2)), then a free centre x is at least c - r from every surface
    (any shape). It is at least sqrt(c^2 - r^2) from the surface when the 3D point q within r of
    the nearest surface point p is not behind p as seen from x ((q - p) . (x - p) >= 0: true on
    a flat face and in concave corners, not at convex edges). The segment from the source
    crosses no surface when c - h/2 > r: a camera is not put behind a wall its source sees. With
    sparse points (SfM) r is large and nothing about the surfaces is guaranteed; pass a denser
    `dense_points` set (e.g. depth back-projections) for the guarantee to mean something.

    train_frames: the frames the views derive from; points (M, 3) world points (Scene.points);
    dense_points (K, 3) more world points of the same geometry, used alongside.
    """

    def __init__(
        self,
        train_frames: Sequence[Frame],
        points: np.ndarray,
        limits: Limits,
        *,
        dense_points: np.ndarray | None = None,
        step_m: float = 0.05,
    ) -> None:
        if not train_frames:
            raise ValueError("FreeSpace needs at least one training frame")
        if not (math.isfinite(step_m) and step_m > 0):
            raise ValueError(f"FreeSpace step_m must be a positive number, got {step_m!r}")
        clouds = [np.asarray(points, dtype=np.float64).reshape(-1, 3)]
        if dense_points is not None:
            clouds.append(np.asarray(dense_points, dtype=np.float64).reshape(-1, 3))
        cloud = np.concatenate(clouds)
        if not len(cloud):
            raise ValueError(
                "FreeSpace needs the scene's 3D points: without geometry no position can be "
                "checked (rotation-only views need no FreeSpace: place_views(frames, None, "
                "Limits(rotation_only=True), ...))"
            )
        if not np.isfinite(cloud).all():
            raise ValueError("FreeSpace: the 3D points hold non-finite values")
        self.clearance_m = limits.clearance_m
        self.grow_m = limits.max_shift_m
        self.step_m = float(step_m)
        centres = np.stack([f.centre for f in train_frames])
        self.lo = np.maximum(centres.min(0) - self.grow_m, cloud.min(0))
        """(3,) low corner of the allowed box, world frame, metres."""
        self.hi = np.minimum(centres.max(0) + self.grow_m, cloud.max(0))
        """(3,) high corner of the allowed box."""
        self.point_count = len(cloud)
        self._tree = cKDTree(cloud)

    def distance(self, centres: np.ndarray) -> np.ndarray:
        """(N,) distance (metres) from (N, 3) world points to the nearest 3D point."""
        dist, _ = self._tree.query(np.asarray(centres, dtype=np.float64).reshape(-1, 3), k=1)
        return np.asarray(dist, dtype=np.float64)

    def _clear(self, x: np.ndarray) -> np.ndarray:
        """(N,) True where no 3D point is closer than the clearance to the (N, 3) points."""
        if not len(x):
            return np.zeros(0, dtype=bool)
        dist, _ = self._tree.query(x, k=1, distance_upper_bound=self.clearance_m)
        return np.asarray(dist >= self.clearance_m)

    def check(self, centres: np.ndarray, sources: np.ndarray) -> np.ndarray:
        """(N,) int8 code per centre: FREE (0), OUTSIDE (1, rule a), TOO_CLOSE (2, rule b) or
        BLOCKED (3, rule c). centres, sources: (N, 3) world, metres; sources are the centres of
        the cameras the new ones derive from."""
        x = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
        s = np.asarray(sources, dtype=np.float64).reshape(-1, 3)
        if len(x) != len(s):
            raise ValueError(f"{len(x)} centres but {len(s)} sources")
        code = np.full(len(x), FREE, dtype=np.int8)
        inside = ((x >= self.lo) & (x <= self.hi)).all(axis=1)
        code[~inside] = OUTSIDE
        todo = np.flatnonzero(inside)
        clear = self._clear(x[todo])
        code[todo[~clear]] = TOO_CLOSE
        todo = todo[clear]
        if len(todo):
            a, b = s[todo], x[todo]
            steps = np.maximum(np.ceil(np.linalg.norm(b - a, axis=1) / self.step_m), 1)
            n = steps.astype(np.int64) + 1  # samples per segment, both ends included
            starts = np.concatenate([[0], np.cumsum(n)[:-1]])
            seg = np.repeat(np.arange(len(todo)), n)
            frac = (np.arange(n.sum()) - starts[seg]) / steps[seg]
            samples = a[seg] + frac[:, None] * (b - a)[seg]
            blocked = np.logical_or.reduceat(~self._clear(samples), starts)
            code[todo[blocked]] = BLOCKED
        return code

    def free(self, centres: np.ndarray, sources: np.ndarray) -> np.ndarray:
        """(N,) bool: the (N, 3) centres that are free for cameras derived from the cameras at
        the (N, 3) sources (see the class docstring)."""
        return self.check(centres, sources) == FREE


@dataclass(frozen=True)
class Placements:
    """Sampled poses with how they were made, N of each.

    centre (N, 3) world, metres; cam_from_world (N, 3, 3); source (N,) nearest training frame
    (the frame turned, for rotation-only); origin (N,) the training frame jittered, or the first
    of a between-view's pair; partner (N,) the pair's second frame, -1 for a jitter; t (N,) the
    interpolation parameter (0 at origin), NaN for a jitter.
    """

    centre: np.ndarray
    cam_from_world: np.ndarray
    source: np.ndarray
    origin: np.ndarray
    partner: np.ndarray
    t: np.ndarray

    @property
    def between(self) -> np.ndarray:
        """(N,) bool: the between-trajectory views."""
        return self.partner >= 0

    def views(self) -> list[View]:
        """One View per pose, in order."""
        return [
            View(self.centre[i].copy(), self.cam_from_world[i].copy(), int(self.source[i]))
            for i in range(len(self.source))
        ]


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """(N, 3) rotation vectors (axis * angle, radians) -> (N, 3, 3) matrices (Rodrigues)."""
    v = np.asarray(rotvec, dtype=np.float64).reshape(-1, 3)
    angle = np.linalg.norm(v, axis=1)
    axis = v / np.where(angle > 0, angle, 1.0)[:, None]
    k = np.zeros((len(v), 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(0, 2, 1)
    sin, cos = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + sin * k + (1 - cos) * (k @ k)


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) angle (degrees) of the relative rotation between (N, 3, 3) rotations a and b."""
    trace = np.einsum("nij,nij->n", a, b)  # trace(a b^T)
    return np.degrees(np.arccos(np.clip((trace - 1) / 2, -1.0, 1.0)))


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(N, 4) unit quaternions (wxyz) on the shorter arc from q0 (t = 0) to q1 (t = 1), for
    (N, 4) unit q0, q1 and (N,) t."""
    q0 = np.asarray(q0, dtype=np.float64).reshape(-1, 4)
    q1 = np.asarray(q1, dtype=np.float64).reshape(-1, 4)
    t = np.asarray(t, dtype=np.float64).reshape(-1, 1)
    dot = np.sum(q0 * q1, axis=1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    small = sin < 1e-9
    safe = np.where(small, 1.0, sin)
    w0 = np.where(small, 1 - t, np.sin((1 - t) * theta) / safe)
    w1 = np.where(small, t, np.sin(t * theta) / safe)
    out = w0 * q0 + w1 * q1
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _ball(rng: np.random.Generator, n: int, radius: float) -> np.ndarray:
    """(n, 3) points uniform in the ball of `radius` around the origin."""
    direction = rng.standard_normal((n, 3))
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
    return direction * (radius * rng.random(n) ** (1 / 3))[:, None]


def _turn(
    rng: np.random.Generator, n: int, max_angle_deg: float, max_roll_deg: float | None
) -> np.ndarray:
    """(n, 3, 3) camera-side turns D: a rotation vector w uniform in the ball of max_angle_deg,
    applied as the swing about (w_x, w_y, 0) then the twist (roll) about z by w_z, clipped to
    max_roll_deg. cos(angle(D) / 2) = cos(|w_xy| / 2) cos(w_z / 2), so angle(D) <= |w|."""
    w = _ball(rng, n, math.radians(max_angle_deg))
    if max_roll_deg is not None:
        roll = math.radians(max_roll_deg)
        w[:, 2] = np.clip(w[:, 2], -roll, roll)
    swing = w.copy()
    swing[:, 2] = 0.0
    twist = np.zeros_like(w)
    twist[:, 2] = w[:, 2]
    return rotvec_to_matrix(twist) @ rotvec_to_matrix(swing)


def _nearest(
    centres: np.ndarray, rotations: np.ndarray, train_c: np.ndarray, train_r: np.ndarray
) -> np.ndarray:
    """(N,) index of the training pose nearest by metres + degrees / ANGLE_PER_METRE."""
    out = np.empty(len(centres), dtype=np.int64)
    chunk = max(1, 2_000_000 // max(len(train_c), 1))
    for start in range(0, len(centres), chunk):
        c, r = centres[start : start + chunk], rotations[start : start + chunk]
        dist = np.linalg.norm(c[:, None] - train_c[None], axis=-1)
        trace = np.einsum("nij,mij->nm", r, train_r)
        angle = np.degrees(np.arccos(np.clip((trace - 1) / 2, -1.0, 1.0)))
        out[start : start + chunk] = np.argmin(dist + angle / ANGLE_PER_METRE, axis=1)
    return out


def nearest_training(
    centres: np.ndarray, cam_from_world: np.ndarray, train_frames: Sequence[Frame]
) -> np.ndarray:
    """(N,) index into `train_frames` of the frame nearest to each pose (centres (N, 3) world,
    metres; cam_from_world (N, 3, 3)) by metres + degrees / 25."""
    train_c = np.stack([f.centre for f in train_frames])
    train_r = quaternion_to_matrix_np(np.stack([f.quaternion for f in train_frames]))
    return _nearest(
        np.asarray(centres, dtype=np.float64).reshape(-1, 3),
        np.asarray(cam_from_world, dtype=np.float64).reshape(-1, 3, 3),
        train_c,
        train_r,
    )


class _Partners:
    """Per training frame, the frames of other sequences within max_gap_m and max_gap_deg
    (looked up on demand and kept), and the frames known to have none."""

    def __init__(self, frames: Sequence[Frame], limits: Limits) -> None:
        self.centres = np.stack([f.centre for f in frames])
        self.quats = np.stack([f.quaternion for f in frames])
        _, self.sequence = np.unique([f.sequence for f in frames], return_inverse=True)
        self.radius = limits.max_gap_m
        self.min_dot = math.cos(math.radians(limits.max_gap_deg) / 2)
        self.tree = cKDTree(self.centres)
        self.known: dict[int, np.ndarray] = {}
        self.lonely = np.zeros(len(frames), dtype=bool)

    def of(self, origins: np.ndarray) -> list[np.ndarray]:
        """The sorted partner indices of each origin."""
        new = [int(i) for i in np.unique(origins) if int(i) not in self.known]
        if new:
            found = self.tree.query_ball_point(self.centres[new], self.radius)
            for i, near in zip(new, found, strict=True):
                near = np.sort(np.asarray(near, dtype=np.int64))
                other = self.sequence[near] != self.sequence[i]
                close = np.abs(self.quats[near] @ self.quats[i]) >= self.min_dot - 1e-12
                self.known[i] = near[other & close]
                self.lonely[i] = not len(self.known[i])
        return [self.known[int(i)] for i in origins]


@dataclass
class _Poses:
    """A batch of candidate poses (see Placements)."""

    centre: np.ndarray
    rotation: np.ndarray
    origin: np.ndarray
    partner: np.ndarray
    t: np.ndarray

    def take(self, keep: np.ndarray | slice) -> _Poses:
        """The candidates at `keep` (indices, a mask or a slice)."""
        return _Poses(*(getattr(self, f.name)[keep] for f in fields(self)))


def _empty_poses() -> tuple[np.ndarray, ...]:
    """The fields of an empty _Poses."""
    empty = np.zeros(0, dtype=np.int64)
    return np.zeros((0, 3)), np.zeros((0, 3, 3)), empty, empty, np.zeros(0)


def _jitters(
    rng: np.random.Generator, n: int, train_c: np.ndarray, train_r: np.ndarray, limits: Limits
) -> _Poses:
    """n jittered training poses."""
    origin = rng.integers(len(train_c), size=n)
    shift = np.zeros((n, 3)) if limits.rotation_only else _ball(rng, n, limits.max_shift_m)
    turn = _turn(rng, n, limits.max_angle_deg, limits.max_roll_deg)
    return _Poses(
        train_c[origin] + shift,
        turn @ train_r[origin],
        origin,
        np.full(n, -1, dtype=np.int64),
        np.full(n, np.nan),
    )


def _betweens(
    rng: np.random.Generator,
    n: int,
    train_c: np.ndarray,
    partners: _Partners,
    limits: Limits,
) -> tuple[_Poses, int]:
    """Up to n poses between a training pose and a partner, and how many of the n drawn
    origins had no partner (dropped). Origins are drawn from the frames not yet known to have
    none (all lonely: n dropped)."""
    hopeful = np.flatnonzero(~partners.lonely)
    if not len(hopeful):
        return _Poses(*_empty_poses()), n
    origin = hopeful[rng.integers(len(hopeful), size=n)]
    pick = rng.random(n)
    t = rng.random(n)
    shift = _ball(rng, n, limits.between_jitter * limits.max_shift_m)
    turn = _turn(rng, n, limits.between_jitter * limits.max_angle_deg, limits.max_roll_deg)
    lists = partners.of(origin)
    counts = np.array([len(p) for p in lists])
    has = counts > 0
    partner = np.full(n, -1, dtype=np.int64)
    for i in np.flatnonzero(has):
        partner[i] = lists[i][min(int(pick[i] * counts[i]), counts[i] - 1)]
    origin, partner, t, shift, turn = origin[has], partner[has], t[has], shift[has], turn[has]
    centre = (1 - t)[:, None] * train_c[origin] + t[:, None] * train_c[partner] + shift
    q = slerp(partners.quats[origin], partners.quats[partner], t)
    rotation = turn @ quaternion_to_matrix_np(q).reshape(-1, 3, 3)
    return _Poses(centre, rotation, origin, partner, t), int((~has).sum())


def _too_small(kind: str, placed: int, wanted: int, tries: int, reasons: np.ndarray) -> ValueError:
    """The error for a free space (or pair set) too small to place `wanted` views."""
    names = {
        OUTSIDE: ("left the scene's extent", "Lower max_shift_m"),
        TOO_CLOSE: ("came within clearance_m of a 3D point", "Lower clearance_m"),
        BLOCKED: ("had the path from their source camera blocked", "Lower clearance_m"),
        NO_PARTNER: (
            "had no partner of another sequence within max_gap_m and max_gap_deg",
            "Raise max_gap_m or max_gap_deg, or lower between",
        ),
    }
    rejected = max(int(reasons.sum()), 1)
    parts = [
        f"{100 * reasons[code] / rejected:.0f}% {text}"
        for code, (text, _) in names.items()
        if reasons[code]
    ]
    worst = int(np.argmax(reasons))
    hint = names[worst][1] if worst in names else "Relax the limits"
    return ValueError(
        f"the free space is too small: placed {placed} of {wanted} {kind} views in {tries} "
        f"attempts; of the rejected candidates {', '.join(parts)}. {hint} (or ask for fewer "
        "views)"
    )


def place_views(
    train_frames: Sequence[Frame],
    free: FreeSpace | None,
    limits: Limits,
    count: int,
    seed: int,
) -> Placements:
    """`count` new poses near `train_frames` (round(between * count) of them between two
    trajectories, none when rotation_only), with how each was made. Each centre is free in
    `free` for the camera of its source (not needed, may be None, when rotation_only). Seeded
    and reproducible; sorted by source (stable). Raises ValueError when they cannot be placed,
    naming the limit to relax."""
    if count < 0:
        raise ValueError(f"count must be at least 0, got {count}")
    if not train_frames:
        raise ValueError("no training frames to place views near")
    if free is None:
        if not limits.rotation_only:
            raise ValueError("views that move the camera need a FreeSpace (free=None)")
    elif (free.clearance_m, free.grow_m) != (limits.clearance_m, limits.max_shift_m):
        raise ValueError(
            "the FreeSpace was built with another clearance_m or max_shift_m than these limits"
        )
    train_c = np.stack([f.centre for f in train_frames])
    train_r = quaternion_to_matrix_np(np.stack([f.quaternion for f in train_frames]))
    n_between = 0 if limits.rotation_only else round(limits.between * count)
    wanted = {"jittered": count - n_between, "between-trajectory": n_between}
    partners = _Partners(train_frames, limits) if n_between else None
    if partners is not None and len(np.unique(partners.sequence)) < 2:
        raise ValueError(
            "between-trajectory views need training frames of two sequences; these are all "
            "one sequence: set Limits.between=0"
        )
    batches: list[_Poses] = []
    sources: list[np.ndarray] = []
    for stream, (kind, need) in enumerate(wanted.items(), start=1):
        rng = np.random.default_rng([seed, SALT, stream])
        reasons = np.zeros(5, dtype=np.int64)
        placed, tries, budget = 0, 0, ATTEMPTS_PER_VIEW * need
        while placed < need:
            if tries >= budget:
                raise _too_small(kind, placed, need, tries, reasons)
            n = min(max(2 * (need - placed), 32), budget - tries)
            tries += n
            if partners is None or kind == "jittered":
                poses = _jitters(rng, n, train_c, train_r, limits)
            else:
                poses, lonely = _betweens(rng, n, train_c, partners, limits)
                reasons[NO_PARTNER] += lonely
                if partners.lonely.all():  # no pair anywhere: more attempts cannot help
                    raise _too_small(kind, placed, need, tries, reasons)
            if free is None or limits.rotation_only:
                source = poses.origin
            else:
                source = _nearest(poses.centre, poses.rotation, train_c, train_r)
                code = free.check(poses.centre, train_c[source])
                reasons += np.bincount(code, minlength=5)[:5] * (np.arange(5) != FREE)
                ok = np.flatnonzero(code == FREE)
                poses, source = poses.take(ok), source[ok]
            keep = slice(0, need - placed)
            batches.append(poses.take(keep))
            sources.append(source[keep])
            placed += len(sources[-1])
    if not batches:
        centre, rotation, empty, _, t = _empty_poses()
        return Placements(centre, rotation, empty, empty, empty, t)
    source = np.concatenate(sources)
    order = np.argsort(source, kind="stable")
    return Placements(
        np.concatenate([b.centre for b in batches])[order],
        np.concatenate([b.rotation for b in batches])[order],
        source[order],
        np.concatenate([b.origin for b in batches])[order],
        np.concatenate([b.partner for b in batches])[order],
        np.concatenate([b.t for b in batches])[order],
    )


def sample_views(
    train_frames: Sequence[Frame],
    free: FreeSpace | None,
    limits: Limits,
    count: int,
    seed: int,
) -> list[View]:
    """`count` Views near `train_frames` in the free space (see `place_views`); each View's
    source indexes `train_frames`."""
    return place_views(train_frames, free, limits, count, seed).views()
